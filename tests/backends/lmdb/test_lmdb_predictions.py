"""The prediction log in LMDB: retention, several processes, a killed writer, a disk that is full."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("lmdb")
pytest.importorskip("chariots_fsspec")

from chariots_test_deploy import remember_app, train_and_save  # noqa: E402
from chariots_test_processes import wait_until  # noqa: E402

from chariots_core.errors import StoreError  # noqa: E402
from chariots_core.serving.prediction_log import PredictionLog, snapshot  # noqa: E402
from chariots_lmdb import LMDBOpStore, LMDBPredictionSink  # noqa: E402

SUPPORT = Path(__file__).resolve().parents[2] / "support"
ENV = {**os.environ, "PYTHONPATH": str(SUPPORT)}


def add(log, pipeline, value, at=None):
    at_ns = time.time_ns() if at is None else int(at * 1e9)
    log.add(pipeline, at_ns, 1_000_000, None, {"op": "v1"}, snapshot(value), snapshot(value))


def test_an_app_logs_into_its_path_by_default_and_a_new_app_reads_it(tmp_path):
    with remember_app(tmp_path, log_predictions=["pred"]) as app:
        train_and_save(app, "model")
        app.load_pipeline("pred")
        for number in range(3):
            app.call_pipeline("pred", number)
    assert (tmp_path / "predictions" / "data.mdb").exists()
    with remember_app(tmp_path, log_predictions=["pred"]) as again:
        assert [record.input for record in again.predictions("pred")] == [2, 1, 0]
        assert {record.output for record in again.predictions("pred")} == {"model"}


def test_retention_by_count_and_age_per_pipeline(tmp_path):
    log = PredictionLog(LMDBPredictionSink(tmp_path / "log"), keep=3)
    for number in range(10):
        add(log, "a", number)
        add(log, "b", -number)
    log.flush()
    assert [r.input for r in log.read("a", limit=None)] == [9, 8, 7]
    assert [r.input for r in log.read("b", limit=None)] == [-9, -8, -7]
    log.close()
    aged = PredictionLog(LMDBPredictionSink(tmp_path / "aged"), keep=None, max_age=75)
    now = time.time()
    for number in range(6):  # 150, 120 ... 0 s old
        add(aged, "a", number, at=now - 150 + 30 * number)
    aged.flush()
    assert [r.input for r in aged.read("a", limit=None)] == [5, 4, 3]
    aged.close()


def test_since_and_limit_read_a_range_newest_first(tmp_path):
    log = PredictionLog(LMDBPredictionSink(tmp_path / "log"))
    for number in range(5):
        add(log, "a", number, at=1000.0 + number)
    add(log, "ab", "another pipeline sharing a prefix", at=1002.5)
    assert [r.input for r in log.read("a", since=1002.0, limit=None)] == [4, 3, 2]
    assert [r.input for r in log.read("a", limit=2)] == [4, 3]
    assert [r.input for r in log.read("ab")] == ["another pipeline sharing a prefix"]
    assert log.read("nothing") == []
    log.close()


def test_a_directory_holding_an_op_store_is_refused(tmp_path):
    LMDBOpStore(tmp_path / "store").close()
    with pytest.raises(StoreError, match="not a prediction log"):
        LMDBPredictionSink(tmp_path / "store")


WRITER = textwrap.dedent(
    """
    import sys, time
    from chariots_core.serving.prediction_log import PredictionLog, snapshot
    log = PredictionLog(sys.argv[1], flush_interval=0.005)
    name = sys.argv[2]
    for number in range(int(sys.argv[3])):
        log.add(name, time.time_ns(), 0, None, {}, snapshot(number), snapshot([name] * 20))
        if number % 50 == 0:
            time.sleep(0.001)  # calls arrive at some rate
    log.close()
    """
)


def test_several_processes_log_into_one_directory(tmp_path):
    directory = str(tmp_path / "log")
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, directory, f"p{index}", "500"], env=ENV)
        for index in range(3)
    ]
    assert [writer.wait(120) for writer in writers] == [0, 0, 0]
    log = PredictionLog(directory)
    for index in range(3):
        assert sorted(r.input for r in log.read(f"p{index}", limit=None)) == list(range(500))
    log.close()


def test_a_writer_killed_mid_batch_leaves_a_readable_log(tmp_path):
    directory = str(tmp_path / "log")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, directory, "p", "10000000"], env=ENV)
    try:
        wait_until(lambda: os.path.exists(os.path.join(directory, "data.mdb")), timeout=60)
        log = PredictionLog(directory)
        wait_until(lambda: len(log.read("p", limit=2000)) >= 2000, timeout=60)  # read while it writes
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(30)
    records = log.read("p", limit=None)
    assert records and all(record.output == ["p"] * 20 for record in records)
    numbers = sorted(record.input for record in records)
    assert numbers == list(range(len(numbers)))  # a prefix of what was logged: whole batches only
    add(log, "p", "after the crash")  # and the log takes new records
    assert log.read("p", limit=1)[0].input == "after the crash"
    log.close()


FULL_DISK = textwrap.dedent(
    """
    # A disk that fills up: past RLIMIT_FSIZE every write fails with EFBIG ("File too large"),
    # as it fails with ENOSPC on a full disk, without needing root to make a small filesystem.
    import json, logging, os, resource, signal, sys
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the process
    from chariots_test_deploy import remember_app, train_and_save
    from chariots_core.serving.prediction_log import PredictionLog

    root = sys.argv[1]
    log = PredictionLog(os.path.join(root, "predictions"), flush_interval=0.01)
    with remember_app(root, log_predictions=["pred"], prediction_log=log) as app:
        train_and_save(app, "model")
        app.load_pipeline("pred")
        app.call_pipeline("pred", "before")
        log.flush()
        size = os.path.getsize(os.path.join(root, "predictions", "data.mdb"))
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))
        answers = [app.call_pipeline("pred", ["x" * 200, n]).value for n in range(3000)]
        log.flush()
        full = log.stats()
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        app.call_pipeline("pred", "space again")
        log.flush()
        kept = [record.input for record in app.predictions("pred", limit=None)]
        print(json.dumps({"answers": answers.count("model"), "full": full, "kept": kept, "after": log.stats()}))
    log.close()
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE (POSIX)")
def test_a_full_disk_drops_records_with_one_warning_and_every_prediction_is_answered(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK, str(tmp_path)], env=ENV, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    import json

    outcome = json.loads(done.stdout)
    assert outcome["answers"] == 3000
    assert outcome["full"]["dropped"] > 0 and outcome["full"]["written"] + outcome["full"]["dropped"] == 3001
    assert outcome["kept"][0] == "space again" and outcome["kept"][-1] == "before"
    assert outcome["after"]["written"] == outcome["full"]["written"] + 1
    warnings = [line for line in done.stderr.splitlines() if line.startswith("chariots.predictions WARNING")]
    assert len(warnings) == 1 and "File too large" in warnings[0], done.stderr


def test_the_writer_thread_of_an_unreferenced_log_stops(tmp_path):
    import threading

    def threads():
        return [thread for thread in threading.enumerate() if thread.name == "chariots-prediction-log"]

    before = len(threads())
    log = PredictionLog(LMDBPredictionSink(tmp_path / "log"), flush_interval=0.01)
    add(log, "p", 1)
    del log
    wait_until(lambda: len(threads()) == before)
