"""Hot reload: an app that follows its op store while other processes save."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from chariots_test_deploy import chain_pipelines, remember_app, train_and_save, train_chain
from chariots_test_processes import wait_until

from chariots_core import Chariots
from chariots_core.errors import ConfigError

pytest.importorskip("chariots_lmdb")
pytest.importorskip("chariots_fsspec")

SUPPORT = Path(__file__).resolve().parents[2] / "support"
ENV = {**os.environ, "PYTHONPATH": str(SUPPORT)}
SAVE = "import sys; from chariots_test_deploy import remember_app, train_and_save\n" \
       "with remember_app(sys.argv[1]) as app: train_and_save(app, sys.argv[2])"  # fmt: skip


def reload_threads():
    return [thread for thread in threading.enumerate() if thread.name == "chariots-reload"]


def save_in_another_process(path, value):
    subprocess.run([sys.executable, "-c", SAVE, str(path), value], env=ENV, check=True, timeout=120)


def test_a_version_saved_by_another_process_is_served_and_recorded_as_a_reload(tmp_path):
    with remember_app(tmp_path, reload="latest", reload_interval=0.05) as app:
        train_and_save(app, "first")
        app.load_pipeline("pred")
        save_in_another_process(tmp_path, "second")
        saved_at = time.time()
        wait_until(lambda: app.call_pipeline("pred", 0).value == "second")
        assert time.time() - saved_at < 0.05 + 1
        reload, load = app.deployments("pred", limit=2)
        assert (reload.kind, reload.outcome, reload.strategy) == ("reload", "deployed", "latest")
        assert load.kind == "load"
        assert reload.versions == {"remember": str(app.call_pipeline("pred", 0).versions["remember"])}
        # Polls that find nothing new record nothing.
        time.sleep(0.3)
        assert app.deployments("pred", limit=1) == [reload]
        # Only loaded pipelines are followed: "train" was never loaded.
        assert [d.kind for d in app.deployments("train")] == []


def test_a_refused_reload_keeps_the_models_serving_and_is_recorded_once_per_new_refusal(tmp_path):
    with Chariots(chain_pipelines(), path=tmp_path, reload="latest", reload_interval=0.02) as app:
        with Chariots(chain_pipelines(), path=tmp_path) as trainer:
            train_chain(trainer, 10, 1)
            app.load_pipeline("pred_chain")
            assert app.call_pipeline("pred_chain", 0).value == 11
            train_and_save(trainer, 20, "train_offset")  # the saved model is now stale
            wait_until(lambda: app.deployments("pred_chain", limit=1)[0].outcome == "refused")
            time.sleep(0.3)  # many polls later
            refused, load = app.deployments("pred_chain")
            assert (refused.kind, refused.strategy) == ("reload", "latest") and "VersionError" in refused.reason
            assert app.call_pipeline("pred_chain", 0).value == 11
            # A compatible set again (its two saves may be seen apart: one more refusal between).
            train_chain(trainer, 30, 2)
            wait_until(lambda: app.call_pipeline("pred_chain", 0).value == 32)
            train_and_save(trainer, 40, "train_offset")  # stale again: a new refusal, recorded
            wait_until(lambda: app.deployments("pred_chain", limit=1)[0].outcome == "refused")
            time.sleep(0.2)
            history = app.deployments("pred_chain")
            assert [(d.kind, d.outcome) for d in history[:2]] == [("reload", "refused"), ("reload", "deployed")]
            refusals = [d.reason for d in history if d.outcome == "refused"]
            assert 2 <= len(refusals) <= 3 and len(set(refusals)) == len(refusals)  # never one twice


def test_latest_compatible_keeps_the_compatible_set_when_an_upstream_op_moves_alone(tmp_path):
    with Chariots(chain_pipelines(), path=tmp_path, reload="latest_compatible", reload_interval=0.02) as app:
        train_chain(app, 10, 1)
        app.load_pipeline("pred_chain", "latest_compatible")
        with Chariots(chain_pipelines(), path=tmp_path) as trainer:
            train_and_save(trainer, 20, "train_offset")
            time.sleep(0.3)
            assert [d.kind for d in app.deployments("pred_chain")] == ["load"]
            train_chain(trainer, 30, 2)
            wait_until(lambda: app.call_pipeline("pred_chain", 0).value == 32)
            assert app.deployments("pred_chain", limit=1)[0].strategy == "latest_compatible"


def test_a_split_pipeline_is_not_reloaded(tmp_path):
    with remember_app(tmp_path, reload="latest", reload_interval=0.02) as app:
        train_and_save(app, "a")
        app.load_pipeline("pred")
        split = app.split("pred", {"x": "serving", "y": "latest"})
        save_in_another_process(tmp_path, "b")
        time.sleep(0.3)
        assert app.deployments("pred", limit=1) == [split]
        assert {app.call_pipeline("pred", 0).value for _ in range(20)} == {"a"}


def test_close_stops_the_thread_and_an_unreferenced_app_stops_it_too(tmp_path):
    before = len(reload_threads())
    app = remember_app(tmp_path, reload="latest", reload_interval=0.01)
    assert len(reload_threads()) == before + 1 and reload_threads()[-1].daemon
    app.close()
    assert len(reload_threads()) == before
    forgotten = remember_app(tmp_path / "other", reload="latest", reload_interval=0.01)
    assert len(reload_threads()) == before + 1
    del forgotten
    gc.collect()
    wait_until(lambda: len(reload_threads()) == before)


def test_the_thread_never_keeps_the_interpreter_alive(tmp_path):
    script = "import sys; from chariots_test_deploy import remember_app\n" \
             "app = remember_app(sys.argv[1], reload='latest', reload_interval=30)"  # fmt: skip
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=ENV, timeout=60, capture_output=True)
    assert done.returncode == 0 and time.monotonic() - started < 25, done.stderr


@pytest.mark.parametrize(
    "options, message",
    [
        ({"reload": "newest"}, "'reload' must be one of None, 'latest', 'latest_compatible'"),
        ({"reload": "latest", "reload_interval": 0}, "'reload_interval' must be a number of seconds > 0"),
        ({"reload": "latest", "reload_interval": "5"}, "'reload_interval' must be"),
    ],
)
def test_reload_settings_are_checked(options, message):
    with pytest.raises(ConfigError, match=message):
        Chariots([], op_store="memory", saver="memory", **options)
