"""Type checkers read Chariots's types: every package of the wheel ships ``py.typed`` (PEP 561).

The wheel is built from this checkout and unpacked into a directory on mypy's search path, as
``pip install chariots`` would put it in site-packages (an editable install uses an import hook
that mypy does not follow, so it cannot stand in for a user's install).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ["chariots_core", *sorted(path.name for path in (REPO / "backends").iterdir() if (path / "__init__.py").exists())]

USER_CODE = """\
from chariots_core import BaseOp, Chariots, Node, Pipeline, PipelineResponse
from chariots_core.ml import BaseMLOp, MLMode
from chariots_sklearn import SKSupervisedOp
from chariots_waitress import PipelinesClient


class AddOne(BaseOp):
    def execute(self, value: int) -> int:
        return value + 1


pipeline = Pipeline([Node(AddOne(), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")], "add")
app = Chariots([pipeline], op_store="memory", saver="memory")
response: PipelineResponse = app.call_pipeline(pipeline, 1)
client: PipelinesClient = PipelinesClient("http://127.0.0.1:8080")
names: int = app.available_pipelines()  # the one mistake mypy must find
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel of this checkout, unpacked as an install; returns its directory."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(root / "dist"), f"{source}/"],
        capture_output=True, text=True, timeout=600,
    )
    assert built.returncode == 0, built.stderr
    wheel = next((root / "dist").glob("chariots-*.whl"))
    target = root / "site"
    zipfile.ZipFile(wheel).extractall(target)
    return target


@pytest.mark.slow
def test_every_package_of_the_wheel_ships_py_typed(installed):
    missing = [package for package in PACKAGES if not (installed / package / "py.typed").is_file()]
    assert missing == []
    assert len(PACKAGES) >= 8  # the core and its backends


@pytest.mark.slow
def test_mypy_on_user_code_reads_chariots_types(installed, tmp_path):
    pytest.importorskip("mypy", reason="mypy is in the [test] extra: pip install -e '.[test]'")
    user = tmp_path / "user.py"
    user.write_text(textwrap.dedent(USER_CODE))
    env = {**os.environ, "PYTHONPATH": str(installed)}

    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", str(user)],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )

    errors = checked.stdout.splitlines()
    assert len(errors) == 1, checked.stdout + checked.stderr
    assert 'Incompatible types in assignment (expression has type "list[str]", variable has type "int")' in errors[0]
    assert "py.typed" not in checked.stdout and "library stub" not in checked.stdout
