"""DaskWorkerPool against a real LocalCluster with worker processes."""

from __future__ import annotations

import sys
import threading
import types

import pytest

pytest.importorskip("distributed")

import dask_pool_ops as ops  # noqa: E402  (importable thanks to conftest.py)

from chariots_core import Chariots, JobStatus, Node, Pipeline  # noqa: E402
from chariots_core.errors import JobNotFoundError, NodeExecutionError, SerializationError, WorkerError  # noqa: E402
from chariots_dask import DaskWorkerPool  # noqa: E402


@pytest.fixture(scope="module")
def pool(dask_client):
    pool = DaskWorkerPool(dask_client)
    yield pool
    pool.close()


@pytest.fixture
def app(pool):
    with_pool = Chariots(ops.simple_pipelines(), op_store="memory", saver="memory", worker_pool=pool)
    yield with_pool
    with_pool.op_store.close()


def test_an_async_call_runs_on_a_worker_process_and_is_recorded(pool, app):
    response = app.call_pipeline("square_plus_one", 3, use_worker=True)
    assert response.job_status is JobStatus.queued and response.value is None

    done = pool.wait(response.job_id, timeout=60)
    assert (done.job_status, done.value) == (JobStatus.done, 10)
    assert app.fetch_job(response.job_id).value == 10
    record = app.op_store.get_job(response.job_id)
    assert record.status == "done"
    assert record.worker.startswith("tcp://127.0.0.1:") and "pid" in record.worker
    assert set(record.versions) == {"square", "addone"}
    assert pool.n_workers == 2


def test_many_jobs_at_once_all_finish(pool, app):
    job_ids = [app.call_pipeline("square_plus_one", n, use_worker=True).job_id for n in range(20)]
    assert [pool.wait(job_id, timeout=60).value for job_id in job_ids] == [n * n + 1 for n in range(20)]


def test_a_failing_op_fails_its_job_with_the_node_named(pool, app):
    job_id = app.call_pipeline("explode", -2, use_worker=True).job_id
    failed = pool.wait(job_id, timeout=60)
    assert failed.job_status is JobStatus.failed and failed.value is None
    assert failed.error["node"] == "explode"
    assert failed.error["type"] == "ValueError"
    assert "negative input -2" in failed.error["message"]


def test_a_job_shows_running_while_it_runs(pool, app):
    job_id = app.call_pipeline("sleep", 2.0, use_worker=True).job_id
    statuses = set()
    while (status := app.fetch_job(job_id).job_status) not in (JobStatus.done, JobStatus.failed):
        statuses.add(status)
        threading.Event().wait(0.05)
    assert status is JobStatus.done
    assert JobStatus.running in statuses


def test_a_model_trained_on_a_worker_is_installed_and_can_be_saved(pool, tmp_path):
    app = Chariots(ops.ml_pipelines(), path=tmp_path, op_store="memory", saver="memory", worker_pool=pool)
    untrained = app.pipeline_versions("train")["mean"]
    job_id = app.call_pipeline("train", [1.0, 2.0, 6.0], use_worker=True).job_id
    done = pool.wait(job_id, timeout=60)
    assert done.job_status is JobStatus.done
    trained = app.pipeline_versions("train")["mean"]
    assert trained != untrained and done.versions["mean"] == trained

    app.save_pipeline("train")
    assert app.load_pipeline("predict")["mean"] == trained
    assert app.call_pipeline("predict", [3.0]).value == [0.0]


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


def test_an_unpicklable_input_is_refused_at_submission(app):
    with pytest.raises(SerializationError, match="the input of pipeline 'square_plus_one' cannot be sent"):
        app.call_pipeline("square_plus_one", threading.Lock(), use_worker=True)
    assert app.op_store.jobs() == []


def test_job_records_can_live_in_the_object_store(pool, tmp_path):
    pytest.importorskip("fsspec")
    from chariots_fsspec.object_store import ObjectOpStore

    store = ObjectOpStore(f"memory://dask-{tmp_path.name}", cache_dir=tmp_path / "index")
    app = Chariots(ops.simple_pipelines(), op_store=store, saver="memory", worker_pool=pool)
    job_id = app.call_pipeline("square_plus_one", 4, use_worker=True).job_id
    assert pool.wait(job_id, timeout=60).value == 17
    assert [job.status for job in store.jobs()] == ["done"]
    store.close()


def test_unknown_job_ids_raise(pool, app):
    with pytest.raises(JobNotFoundError):
        pool.wait("no-such-job", timeout=1)


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
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(WorkerError, match="cannot connect to the Dask scheduler"):
        DaskWorkerPool(f"tcp://127.0.0.1:{port}", timeout=1)


def test_closing_with_a_timeout_cancels_unfinished_jobs_and_records_them_failed(dask_client):
    closing = DaskWorkerPool(dask_client)
    app = Chariots(ops.simple_pipelines(), op_store="memory", saver="memory", worker_pool=closing)
    job_id = app.call_pipeline("sleep", 3.0, use_worker=True).job_id
    closing.close(timeout=0.2)
    failed = app.fetch_job(job_id)
    assert failed.job_status is JobStatus.failed
    assert failed.error["type"] == "CancelledError"
    assert "did not run to the end" in failed.error["message"]
    assert dask_client.status == "running"  # a client the pool was given stays open


# -- map_pipeline on the cluster ------------------------------------------------------------
def test_map_pipeline_runs_chunks_on_the_cluster_in_input_order(pool, app, capsys):
    assert app.map_pipeline("square_plus_one", range(200), worker_pool=pool) == [n * n + 1 for n in range(200)]
    assert app.op_store.jobs() == []
    assert "map_pipeline 'square_plus_one': 200/200 inputs (100%)" in capsys.readouterr().err


def test_map_pipeline_names_the_failing_input(pool, app):
    inputs = [-5 if n == 57 else n for n in range(100)]
    with pytest.raises(NodeExecutionError, match=r"input #57 \(-5\): ValueError: .*negative input -5") as caught:
        app.map_pipeline("explode", inputs, worker_pool=pool, progress=False)
    assert caught.value.node_name == "explode"


def test_map_pipeline_on_dying_workers_is_a_worker_error(pool, app, tmp_path):
    inputs = [(str(tmp_path / "always"), True)]
    with pytest.raises(WorkerError, match=r"KilledWorker.*Inputs #0-#0 did not complete"):
        app.map_pipeline("kill", inputs, worker_pool=pool, progress=False)
