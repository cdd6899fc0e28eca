"""An app process killed with jobs in its MultiprocessWorkerPool: a later app on the same LMDB
store finds those jobs failed with the reason, and the dead app's workers gone."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("multiprocess")
pytest.importorskip("chariots_lmdb")
pytest.importorskip("chariots_fsspec")

from chariots_test_processes import is_running, wait_until

from chariots_core import Chariots, JobStatus  # noqa: E402

APP_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    from chariots_core import BaseOp, Chariots, Node, Pipeline
    from chariots_multiprocess import MultiprocessWorkerPool

    class SleepOp(BaseOp):
        def execute(self, x):
            time.sleep(120)

    if __name__ == "__main__":
        pool = MultiprocessWorkerPool(1)
        nodes = [Node(SleepOp(), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")]
        app = Chariots([Pipeline(nodes, name="sleep")], path=sys.argv[1], worker_pool=pool)
        running = app.call_pipeline("sleep", 1, use_worker=True).job_id
        queued = app.call_pipeline("sleep", 2, use_worker=True).job_id  # behind it: one worker
        while app.fetch_job(running).job_status.value != "running":
            time.sleep(0.01)
        report = {"running": running, "queued": queued, "pid": os.getpid(), "workers": pool.worker_pids}
        print(json.dumps(report), flush=True)
        time.sleep(120)  # until the test kills this process
    """
)



@pytest.fixture
def killed_app(tmp_path):
    """Run an app with one running and one queued job in a subprocess, then SIGKILL it."""
    script = tmp_path / "doomed_app.py"
    script.write_text(APP_SCRIPT)
    process = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "data")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = process.stdout.readline()
        assert line, process.stderr.read()
        report = json.loads(line)
    finally:
        process.kill()  # SIGKILL: no close(), no atexit
        process.wait(timeout=30)
        process.stdout.close()
        process.stderr.close()
    return report


def test_jobs_of_a_killed_app_are_failed_with_the_reason_for_the_next_app(tmp_path, killed_app):
    wait_until(lambda: not any(is_running(pid) for pid in killed_app["workers"]))
    app = Chariots([], path=tmp_path / "data")
    try:
        for job_id in (killed_app["running"], killed_app["queued"]):
            response = app.fetch_job(job_id)
            assert response.job_status is JobStatus.failed
            assert response.error["type"] == "WorkerError"
            assert response.error["message"] == (
                f"the app process {killed_app['pid']} on {socket.gethostname()} that owned job "
                f"{job_id!r} exited before it finished; run the job again"
            )
            assert app.job_store.get_job(job_id).status == "failed"
    finally:
        app.close()


def test_the_failure_is_recorded_in_the_store_once(tmp_path, killed_app):
    """The first app that reads the job records its failure; later apps read it as stored."""
    first = Chariots([], path=tmp_path / "data")
    try:
        failed = first.fetch_job(killed_app["running"])
    finally:
        first.close()
    second = Chariots([], path=tmp_path / "data")
    try:
        assert second.job_store.get_job(killed_app["running"]).status == "failed"
        assert second.fetch_job(killed_app["running"]) == failed
    finally:
        second.close()
