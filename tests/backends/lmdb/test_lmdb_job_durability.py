"""Job records and results are written without fsync, op versions with it: what each write
must still survive (the writing process SIGKILLed) and what keeps its full durability."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("lmdb")
pytest.importorskip("fsspec")

from chariots_core import Chariots, JobStatus  # noqa: E402
from chariots_core.op_store.records import Commit, JobRecord, LinkRecord, OpVersionRecord  # noqa: E402
from chariots_lmdb import LMDBOpStore  # noqa: E402


def run_until_killed(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter, SIGKILL it once it prints ``ready``, and return
    the lines it printed before that (it never gets to close or flush anything itself)."""
    script = textwrap.dedent(code) + "\nprint('ready', flush=True)\nimport time\ntime.sleep(120)\n"
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        lines = []
        while (line := process.stdout.readline().strip()) != "ready":
            if not line and process.poll() is not None:
                pytest.fail(f"the writer died before it was killed: {process.stderr.read()}")
            lines.append(line)
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
    return lines


def test_job_records_survive_the_writing_process_being_killed(tmp_path: Path):
    path = tmp_path / "store"
    run_until_killed(
        f"""
        from chariots_core.op_store.records import Commit, JobRecord, OpVersionRecord
        from chariots_lmdb import LMDBOpStore
        store = LMDBOpStore({str(path)!r})
        store.put_job(JobRecord("j1", "train", "queued", 1.0, 1.0))
        store.put_job(JobRecord("j1", "train", "done", 1.0, 2.0, result_path="jobs/j1"))
        store.put_job(JobRecord("j2", "train", "running", 3.0, 3.0))
        record = OpVersionRecord("pca", "v1", "code", "train", 1.0, "ops/pca/v1", "sha", 1)
        store.commit(Commit((record,)))
        """
    )

    store = LMDBOpStore(path)
    try:
        assert [(job.job_id, job.status) for job in store.jobs()] == [("j2", "running"), ("j1", "done")]
        assert store.get_job("j1").result_path == "jobs/j1"
        assert [record.version for record in store.op_versions("pca")] == ["v1"]
    finally:
        store.close()


def test_saves_are_fsynced_and_job_records_are_not(tmp_path: Path):
    store = LMDBOpStore(tmp_path / "store")
    try:
        assert store.fsyncs_saves is True
        assert store.fsyncs_jobs is False
        # The same holds where the store is reopened: in a worker process, after pickling.
        copy = pickle.loads(pickle.dumps(store))
        assert (copy.fsyncs_saves, copy.fsyncs_jobs) == (True, False)
    finally:
        store.close()


def test_job_records_live_apart_from_saves_and_keep_their_order(tmp_path: Path):
    path = tmp_path / "store"
    store = LMDBOpStore(path)
    try:
        store.put_job(JobRecord("late", "p", "queued", 5.0, 5.0))
        record = OpVersionRecord("pca", "v1", "code", "train", 1.0, "ops/pca/v1", "sha", 1)
        link = LinkRecord("up", "u1", "pca", "v1")
        store.commit(Commit((record,), (link,)))
        store.put_job(JobRecord("b", "p", "queued", 1.0, 1.0))
        store.put_job(JobRecord("a", "p", "queued", 1.0, 1.0))
        store.put_job(JobRecord("b", "p", "done", 1.0, 2.0))
    finally:
        store.close()

    # Jobs are in their own LMDB environment, so what an OS crash may do to it stays there.
    assert (path / "jobs" / "data.mdb").is_file()
    store = LMDBOpStore(path)
    try:
        # Newest created first, whatever their submission times; replacing a record keeps its place.
        jobs = [(job.job_id, job.status) for job in store.jobs()]
        assert jobs == [("a", "queued"), ("b", "done"), ("late", "queued")]
        assert [link.upstream_op for link in store.links("pca", "v1")] == ["up"]
    finally:
        store.close()


def test_an_app_job_and_its_result_survive_the_app_being_killed(tmp_path: Path):
    code = f"""
        from chariots_core import BaseOp, Chariots, InProcessWorkerPool, Node, Pipeline

        class Double(BaseOp):
            def execute(self, x):
                return {{"doubled": x * 2}}

        node = Node(Double(), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")
        pool = InProcessWorkerPool()
        app = Chariots([Pipeline([node], name="double")], path={str(tmp_path)!r}, worker_pool=pool)
        job_id = app.call_pipeline("double", 21, use_worker=True).job_id
        assert pool.wait(job_id, timeout=60).value == {{"doubled": 42}}
        print(job_id, flush=True)
        """
    (job_id,) = run_until_killed(code)

    app = Chariots([], path=tmp_path)
    try:
        response = app.fetch_job(job_id)
    finally:
        app.op_store.close()

    assert response.job_status is JobStatus.done
    assert response.value == {"doubled": 42}
