"""The public API exactly as DESIGN.md lists it: every name importable from where it says."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

import pytest

from chariots_core import BackendError

PUBLIC_API = {
    "chariots_core": [
        "Pipeline", "Node", "BaseNode", "ReservedNodes", "BaseOp", "LoadableOp",
        "SequentialRunner", "BaseRunner", "OpCallBack", "PipelineCallback", "Version",
        "VersionType", "VersionedField", "VersionedFieldDict", "VersionableMeta", "OpStore",
        "Chariots", "PipelineResponse", "BaseWorkerPool", "JobStatus", "VersionError",
        "BackendError", "ChariotsConfig",
    ],
    "chariots_core.ml": ["MLMode", "BaseMLOp", "DillSerializer", "JSONSerializer", "CSVSerializer"],
    "chariots_sklearn": ["SKSupervisedOp", "SKUnsupervisedOp"],
    "chariots_keras": ["KerasOp"],
    "chariots_lmdb": ["LMDBOpStore"],
    "chariots_fsspec": ["FsspecSaver", "ObjectOpStore"],
    "chariots_multiprocess": ["MultiprocessWorkerPool"],
    "chariots_waitress": ["make_wsgi_app", "serve", "PipelinesClient"],
    "chariots_dask": ["DaskWorkerPool"],
}  # fmt: skip


def import_or_skip(module_name: str) -> ModuleType:
    """Import a public module; skip if a third-party package it needs is not installed (an
    optional backend without its extra), but fail if one of Chariots' own modules is missing."""
    try:
        return importlib.import_module(module_name)
    except BackendError as exc:  # a backend that checks for its dependency says which extra to install
        pytest.skip(str(exc))
    except ImportError as exc:
        cause = exc if exc.name else exc.__cause__
        missing = getattr(cause, "name", None) or ""
        if not missing or missing.split(".")[0].startswith("chariots_"):
            raise
        pytest.skip(f"{module_name} needs {missing}, which is not installed")


@pytest.mark.parametrize("module_name", sorted(PUBLIC_API))
def test_every_public_name_is_importable_and_listed(module_name: str) -> None:
    module = import_or_skip(module_name)
    for name in PUBLIC_API[module_name]:
        assert getattr(module, name) is not None, f"{module_name}.{name}"
        assert name in module.__all__, f"{name} missing from {module_name}.__all__"


def test_version_error_and_backend_error_refine_the_builtins_they_replace() -> None:
    from chariots_core import BackendError, VersionError
    from chariots_core.errors import ChariotsError

    assert issubclass(VersionError, ChariotsError) and issubclass(VersionError, TypeError)
    assert issubclass(BackendError, ChariotsError) and issubclass(BackendError, ImportError)


def test_a_backend_whose_dependency_is_missing_is_skipped_not_failed(monkeypatch) -> None:
    for name in [name for name in sys.modules if name == "chariots_lmdb" or name.startswith("chariots_lmdb.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "lmdb", None)  # as if lmdb were not installed
    with pytest.raises(pytest.skip.Exception, match="chariots_lmdb needs lmdb, which is not installed"):
        import_or_skip("chariots_lmdb")
    with pytest.raises(ModuleNotFoundError):
        import_or_skip("chariots_no_such_backend")  # a missing Chariots module is a failure
