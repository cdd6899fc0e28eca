"""Code-aware versions: the version follows the code of execute/fit/predict and what it calls,
not its comments, docstrings or layout, and classes without a SourceVersion keep seed versions.

Each variant of an op module is written to a file of its own and imported under one module
name, as a user's module would be after an edit.
"""

from __future__ import annotations

import importlib
import linecache
import sys
import textwrap
import types
from pathlib import Path

import pytest

from chariots_core import BaseOp, VersionedField, VersionType
from chariots_core.errors import ChariotsError, SourceUnavailableError

BASE = '''
from chariots_core import BaseOp, SourceVersion, VersionType
from chariots_core.ml import BaseMLOp

LIMIT = 10


class Scale(BaseOp):
    """Doubles values, clipped."""

    code = SourceVersion(VersionType.MAJOR)

    def execute(self, values):
        # double every clipped value
        return [clip(value) * 2 for value in values]


class Plain(BaseOp):
    def execute(self, values):
        return values


class Mean(BaseMLOp):
    code = SourceVersion(VersionType.MINOR)

    def fit(self, values):
        self._model = self.average(values)

    def predict(self, values):
        return [value - self._model for value in values]

    def average(self, values):
        return sum(values) / len(values)


def clip(value):
    return min(value, LIMIT)
'''


@pytest.fixture
def load(tmp_path: Path):
    """``load(source)``: import ``source`` as module ``cv_ops`` from a file of its own."""
    counter = iter(range(1000))

    def load_module(source: str) -> types.ModuleType:
        folder = tmp_path / f"variant{next(counter)}"
        folder.mkdir()
        (folder / "cv_ops.py").write_text(textwrap.dedent(source))
        sys.path.insert(0, str(folder))
        try:
            return importlib.import_module("cv_ops")
        finally:
            sys.path.remove(str(folder))
            sys.modules.pop("cv_ops", None)

    return load_module


def version(module: types.ModuleType, name: str = "Scale"):
    return getattr(module, name).__version__


def test_changing_a_line_of_execute_changes_the_version(load):
    base = load(BASE)
    edited = load(BASE.replace("clip(value) * 2", "clip(value) * 3"))
    assert version(base) != version(edited)
    assert version(base).major != version(edited).major  # the subversion the SourceVersion names
    assert (version(base).minor, version(base).patch) == (version(edited).minor, version(edited).patch)


def test_comments_docstrings_and_layout_do_not_count(load):
    base = load(BASE)
    reworded = BASE.replace("# double every clipped value", "# times two").replace('"""Doubles values, clipped."""', '"""Other words."""')
    reformatted = BASE.replace("return [clip(value) * 2 for value in values]", "return [\n            clip(value)  *  2\n            for value in values\n        ]")
    assert version(load(reworded)) == version(base)
    assert version(load(reformatted)) == version(base)
    assert Scale_code(load(reworded)) == Scale_code(base)


def Scale_code(module):  # noqa: N802 - reads as the attribute it returns
    return module.Scale.code


def test_a_helper_function_and_a_constant_it_reads_count(load):
    base = load(BASE)
    assert version(load(BASE.replace("return min(value, LIMIT)", "return max(value, LIMIT)"))) != version(base)
    assert version(load(BASE.replace("LIMIT = 10", "LIMIT = 11"))) != version(base)
    assert version(load(BASE + "\n\ndef unused():\n    return 1\n")) == version(base)  # only what execute reaches


def test_ml_ops_follow_fit_predict_and_the_methods_they_call(load):
    base = load(BASE)
    changed_helper = load(BASE.replace("return sum(values) / len(values)", "return sum(values) / max(len(values), 1)"))
    assert version(base, "Mean") != version(changed_helper, "Mean")
    assert version(base, "Mean").minor != version(changed_helper, "Mean").minor
    assert version(base, "Scale") == version(changed_helper, "Scale")


def test_a_class_without_source_version_keeps_its_version_whatever_its_code(load):
    base = load(BASE)
    edited = load(BASE.replace("        return values\n", "        return list(values)\n"))
    assert version(base, "Plain") == version(edited, "Plain") == BaseOp.__version__


def test_seed_versions_are_unchanged():
    class MyVersionedClass(BaseOp):
        foo = VersionedField(3, VersionType.MINOR)

    assert repr(MyVersionedClass.__version__) == "<Version, major:94e72, minor: 36d3c, patch: 94e72>"


def test_other_modules_are_followed_only_when_named(load, tmp_path, monkeypatch):
    helpers = tmp_path / "cv_helpers.py"
    helpers.write_text("def shift(value):\n    return value + 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    source = '''
    import cv_helpers
    from chariots_core import BaseOp, SourceVersion

    class Shift(BaseOp):
        code = SourceVersion(modules=[{modules}])

        def execute(self, value):
            return cv_helpers.shift(value)
    '''
    import cv_helpers

    def versions() -> tuple:
        linecache.checkcache()
        return version(load(source.format(modules="")), "Shift"), version(load(source.format(modules="cv_helpers")), "Shift")

    before = versions()
    helpers.write_text("def shift(value):\n    return value + 2\n")
    importlib.reload(cv_helpers)
    after = versions()
    assert before[0] == after[0]  # not followed by default
    assert before[1] != after[1]  # followed when named
    sys.modules.pop("cv_helpers", None)


def test_an_op_without_readable_source_is_refused_clearly():
    namespace: dict = {}
    exec(  # noqa: S102 - code with no source file, as typed in a bare REPL
        "from chariots_core import BaseOp, SourceVersion\n"
        "class Typed(BaseOp):\n    code = SourceVersion()\n    def execute(self, x):\n        return x\n",
        namespace,
    )
    with pytest.raises(SourceUnavailableError, match=r"Typed versions itself by its code \(SourceVersion\), but the source of Typed.execute cannot be read"):
        namespace["Typed"].__version__
    assert issubclass(SourceUnavailableError, ChariotsError) and issubclass(SourceUnavailableError, OSError)


def test_a_class_rebuilt_elsewhere_without_its_file_keeps_its_code_version(load):
    module = load(BASE)
    original = version(module)
    path = Path(module.__file__)
    path.unlink()  # the source is gone, as on a worker machine that unpickled the class
    linecache.clearcache()
    rebuilt = type(module.Scale)("Scale", module.Scale.__bases__, dict(vars(module.Scale)))  # what dill does
    rebuilt.__module__ = module.Scale.__module__
    assert rebuilt.__version__ == original
    carried = dict(vars(module.Scale))
    del carried["__chariots_source_digests__"]
    with pytest.raises(SourceUnavailableError):  # without the carried digest there is nothing to go on
        type(module.Scale)("Scale", module.Scale.__bases__, carried).__version__


def test_reading_the_version_while_the_module_imports_too_early_is_refused(load):
    early = BASE.replace("class Plain(BaseOp):", "Scale.__version__\n\n\nclass Plain(BaseOp):")
    with pytest.raises(SourceUnavailableError, match=r"while module 'cv_ops' is still being imported, before 'clip' is defined"):
        load(early)
