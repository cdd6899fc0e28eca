"""``app.status()`` on LMDB while another process saves: every status reads one committed state."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from chariots_test_explain import iris_pipelines, train

from chariots_core import Chariots
from chariots_core.op_store.explain import short

pytest.importorskip("chariots_lmdb")
pytest.importorskip("chariots_fsspec")

SUPPORT = Path(__file__).resolve().parents[2] / "support"
RETRAIN = textwrap.dedent(
    """
    import sys
    from chariots_test_explain import iris_pipelines, train
    from chariots_core import Chariots

    with Chariots(list(iris_pipelines()), path=sys.argv[1]) as app:
        for _ in range(30):
            train(app, "train_pca")
    """
)


def test_status_reads_one_committed_state_while_another_process_retrains(tmp_path):
    with Chariots(list(iris_pipelines()), path=tmp_path) as app:
        train(app, "train_iris")
        app.load_pipeline("pred_iris")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SUPPORT), os.environ.get("PYTHONPATH", "")])}
        other = subprocess.Popen([sys.executable, "-c", RETRAIN, str(tmp_path)], env=env)
        checked = 0
        try:
            while other.poll() is None:
                pred = {p["name"]: p for p in app.status()["pipelines"]}["pred_iris"]
                if pred["stale"]:  # the edge names the very PCA the same status reports as newest
                    assert short(pred["stale"][0]["change"]["new"]) == pred["ops"][0]["newest"]
                    checked += 1
        finally:
            assert other.wait(timeout=120) == 0
        final = {p["name"]: p for p in app.status()["pipelines"]}["pred_iris"]
        assert short(final["stale"][0]["change"]["new"]) == final["ops"][0]["newest"]
        assert final["ops"][0]["newest"] == short(app.op_store.op_versions("irispca", limit=1)[0].version)
    assert checked > 0
