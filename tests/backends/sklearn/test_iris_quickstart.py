"""The README's main command: examples/iris/quickstart.py, run as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("chariots_lmdb")
pytest.importorskip("chariots_fsspec")

REPO = Path(__file__).resolve().parents[3]
QUICKSTART = REPO / "examples" / "iris" / "quickstart.py"


def run_quickstart(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(QUICKSTART.relative_to(REPO)), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_quickstart_tells_the_whole_version_story_and_exits_0():
    result = run_quickstart()
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("raises VersionError") == 2
    assert out.count("'irispca' -> 'irisrf'") == 2
    assert "pred_iris keeps serving the models it had loaded" in out
    assert out.count("-> predicted class [") == 2
    steps = [out.index(f"\n{number}. ") for number in range(1, 5)]
    assert steps == sorted(steps)
    assert "Traceback" not in result.stderr


def test_quickstart_can_run_again_on_a_kept_store(tmp_path):
    store = tmp_path / "iris_data"
    for _ in range(2):
        result = run_quickstart("--path", str(store))
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("raises VersionError") == 2
    assert (store / "store").is_dir() and (store / "blobs").is_dir()
