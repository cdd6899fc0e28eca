"""DaskWorkerPool against a real LocalCluster with worker processes: what only it does.

What every pool does is in ``tests/conformance/test_worker_pool_conformance.py``.
"""

from __future__ import annotations

import sys
import types

import pytest

pytest.importorskip("distributed")

import dask_pool_ops as ops  # noqa: E402  (importable thanks to conftest.py)
from chariots_test_processes import free_port  # noqa: E402

from chariots_core import Chariots, JobStatus, Node, Pipeline  # noqa: E402
from chariots_core.errors import WorkerError  # noqa: E402
from chariots_dask import DaskWorkerPool  # noqa: E402


@pytest.fixture(scope="module")
def pool(dask_client):
    dask_client.wait_for_workers(2, timeout=60)
    pool = DaskWorkerPool(dask_client)
    yield pool
    pool.close()


@pytest.fixture
def app(pool):
    with_pool = Chariots(ops.simple_pipelines(), op_store="memory", saver="memory", worker_pool=pool)
    yield with_pool
    with_pool.op_store.close()


def test_a_job_record_names_the_dask_worker_that_ran_it(pool, app):
    job_id = app.call_pipeline("square_plus_one", 3, use_worker=True).job_id
    assert pool.wait(job_id, timeout=60).value == 10
    record = app.job_store.get_job(job_id)
    assert record.worker.startswith("tcp://127.0.0.1:") and "pid" in record.worker
    assert set(record.versions) == {"square", "addone"}
    assert pool.n_workers == 2


def test_a_worker_that_dies_once_has_its_job_retried_by_dask(pool, app, tmp_path):
    job_id = app.call_pipeline("kill", (str(tmp_path / "died-once"), False), use_worker=True).job_id
    done = pool.wait(job_id, timeout=120)
    assert (done.job_status, done.value) == (JobStatus.done, "survived")


def test_a_job_whose_workers_keep_dying_ends_failed_not_stuck(pool, app, tmp_path):
    job_id = app.call_pipeline("kill", (str(tmp_path / "always"), True), use_worker=True).job_id
    failed = pool.wait(job_id, timeout=120)
    assert failed.job_status is JobStatus.failed
    assert failed.error["type"] == "KilledWorker"
    assert "workers running it died" in failed.error["message"]
    # The cluster replaced its workers and serves the next job.
    follow_up = app.call_pipeline("square_plus_one", 2, use_worker=True).job_id
    assert pool.wait(follow_up, timeout=120).value == 5


def test_ops_the_workers_cannot_import_fail_the_job_with_an_explanation(pool):
    # A module that exists only in this process: pickled by reference, missing on the workers.
    phantom = types.ModuleType("chariots_phantom_ops")
    sys.modules[phantom.__name__] = phantom
    try:
        exec("from chariots_core import BaseOp\nclass Ghost(BaseOp):\n    def execute(self, x):\n        return x\n", phantom.__dict__)
        pipeline = Pipeline([Node(phantom.Ghost(), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")], "ghost")
        app = Chariots([pipeline], op_store="memory", saver="memory", worker_pool=pool)
        job_id = app.call_pipeline("ghost", 1, use_worker=True).job_id
        failed = pool.wait(job_id, timeout=60)
    finally:
        del sys.modules[phantom.__name__]
    assert failed.job_status is JobStatus.failed
    assert "could not rebuild the job's pipeline" in failed.error["message"]
    assert "chariots_phantom_ops" in failed.error["message"]


def test_job_records_can_live_in_the_object_store(pool, tmp_path):
    pytest.importorskip("fsspec")
    from chariots_fsspec.object_store import ObjectOpStore

    store = ObjectOpStore(f"memory://dask-{tmp_path.name}")
    app = Chariots(ops.simple_pipelines(), op_store=store, saver="memory", worker_pool=pool)
    job_id = app.call_pipeline("square_plus_one", 4, use_worker=True).job_id
    assert pool.wait(job_id, timeout=60).value == 17
    assert [job.status for job in store.jobs()] == ["done"]
    store.close()


def test_a_pool_on_a_bare_address_cannot_spawn_workers_and_closes_its_own_client(dask_client):
    dask_client.wait_for_workers(2, timeout=60)  # a test above had workers killed
    bare = DaskWorkerPool(dask_client.scheduler.address)
    try:
        assert bare.n_workers == 2
        with pytest.raises(WorkerError, match="dask worker"):
            bare.spawn_worker()
    finally:
        bare.close()
    assert bare.client.status == "closed"
    assert dask_client.status == "running"
    with pytest.raises(WorkerError, match="closed"):
        bare.execute_pipeline_async(ops.simple_pipelines()[0], 1, Chariots(ops.simple_pipelines(), op_store="memory", saver="memory"))


def test_an_unreachable_scheduler_is_a_worker_error():
    with pytest.raises(WorkerError, match="cannot connect to the Dask scheduler"):
        DaskWorkerPool(f"tcp://127.0.0.1:{free_port()}", timeout=1)


# -- map_pipeline on the cluster ------------------------------------------------------------
def test_map_pipeline_on_dying_workers_is_a_worker_error(pool, app, tmp_path):
    inputs = [(str(tmp_path / "always"), True)]
    with pytest.raises(WorkerError, match=r"KilledWorker.*Inputs #0-#0 did not complete"):
        app.map_pipeline("kill", inputs, worker_pool=pool, progress=False)
