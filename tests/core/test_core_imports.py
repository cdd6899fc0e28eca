"""``import chariots_core`` loads no backend and no heavy optional dependency."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ["lmdb", "fsspec", "waitress", "multiprocess", "pandas", "numpy", "sklearn", "keras", "dask"]


def modules_after(statement: str) -> set[str]:
    """Top-level modules loaded by a fresh interpreter after running ``statement``."""
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return {name.partition(".")[0] for name in json.loads(completed.stdout.splitlines()[-1])}


@pytest.mark.parametrize(
    "statement",
    [
        "import chariots_core",
        "from chariots_core import Pipeline, Node, SequentialRunner, Chariots, VersionedField",
        "import chariots_core.ml",
    ],
)
def test_importing_the_core_loads_no_backend(statement):
    loaded = modules_after(statement)
    assert "chariots_core" in loaded
    assert sorted(loaded & set(HEAVY)) == []
    assert not any(name.startswith("chariots_") and name != "chariots_core" for name in loaded)


def test_the_check_can_see_a_heavy_module_when_one_is_imported():
    # guards the test above against a probe that never sees anything
    pytest.importorskip("fsspec")
    assert "fsspec" in modules_after("import chariots_core, fsspec")
