"""The behaviour every worker pool shares, run against each pool in ``POOLS``.

In-process threads, ``multiprocess`` worker processes and a Dask ``LocalCluster`` all run the
same jobs through the same job records (``chariots_core.serving.jobs``); a new pool adds one
``PoolKind`` here and gets every test. A pool whose optional dependency is missing skips.
What only one pool does (killed workers, its own configuration) is tested beside that pool.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from chariots_test_jobs import AddHundredOp, SlowStore, add_pipeline, mean_pipelines
from chariots_test_processes import wait_until

from chariots_core import BaseWorkerPool, Chariots, InProcessWorkerPool, JobStatus
from chariots_core.errors import JobNotFoundError, NodeExecutionError, SerializationError, WorkerError
from chariots_core.savers import MemorySaver

TIMEOUT = 60  # seconds any one job may take on a loaded machine


@attrs.frozen
class PoolKind:
    """How to open one kind of pool for a test."""

    name: str
    open: Callable[[pytest.FixtureRequest], BaseWorkerPool]
    crosses_processes: bool  # jobs are serialized, so what cannot be is refused at submission
    closes_with_timeout: bool = True  # close(timeout=...) fails what is unfinished by then
    starts_threads: bool = False  # tests/conftest.py runs these last


def _multiprocess(request: pytest.FixtureRequest) -> BaseWorkerPool:
    pytest.importorskip("multiprocess")
    from chariots_multiprocess import MultiprocessWorkerPool

    return MultiprocessWorkerPool(n_workers=2)


def _dask(request: pytest.FixtureRequest) -> BaseWorkerPool:
    pytest.importorskip("distributed")
    from chariots_dask import DaskWorkerPool

    client = request.getfixturevalue("dask_client")
    client.wait_for_workers(2, timeout=TIMEOUT)  # tests elsewhere kill workers: Dask replaces them
    return DaskWorkerPool(client)


POOLS = [
    PoolKind("inprocess", lambda request: InProcessWorkerPool(n_workers=2), False, closes_with_timeout=False),
    PoolKind("multiprocess", _multiprocess, True),
    PoolKind("dask", _dask, True, starts_threads=True),
]


@pytest.fixture(scope="module", params=POOLS, ids=lambda kind: kind.name)
def kind(request: pytest.FixtureRequest) -> PoolKind:
    """Each kind of pool in turn."""
    return request.param


@pytest.fixture(scope="module")
def pool(kind: PoolKind, request: pytest.FixtureRequest) -> Iterator[BaseWorkerPool]:
    """One pool of each kind, shared by the module's tests (starting workers takes time)."""
    with kind.open(request) as shared:
        yield shared


@pytest.fixture
def fresh_pool(kind: PoolKind, request: pytest.FixtureRequest) -> Iterator[BaseWorkerPool]:
    """A pool of each kind of the test's own, for the tests that close it."""
    with kind.open(request) as own:
        yield own


def make_app(pool: BaseWorkerPool | None, *pipelines, **kwargs: Any) -> Chariots:
    kwargs.setdefault("op_store", "memory")
    kwargs.setdefault("saver", "memory")
    return Chariots(list(pipelines) or [add_pipeline()], worker_pool=pool, **kwargs)


def submit(app: Chariots, pipeline: str, pipeline_input: Any) -> str:
    return app.call_pipeline(pipeline, pipeline_input, use_worker=True).job_id


# -- outcomes ------------------------------------------------------------------------------------
def test_a_job_is_queued_then_done_with_its_value_and_versions(pool):
    app = make_app(pool)
    response = app.call_pipeline("add", 4, use_worker=True)
    assert (response.job_status, response.value) == (JobStatus.queued, None)
    done = pool.wait(response.job_id, timeout=TIMEOUT)
    assert (done.job_status, done.value, done.error) == (JobStatus.done, 7, None)
    assert done.versions == app.pipeline_versions("add")
    assert app.fetch_job(response.job_id) == done
    assert json.loads(pool.get_pipeline_response_json_for_id(response.job_id)) == done.to_json()
    assert app.op_store.get_job(response.job_id).worker  # the record says who ran it


def test_an_op_that_raises_fails_its_job_naming_the_node(pool):
    app = make_app(pool)
    failed = pool.wait(submit(app, "add", "boom"), timeout=TIMEOUT)
    assert (failed.job_status, failed.value) == (JobStatus.failed, None)
    assert failed.error["type"] == "ValueError" and failed.error["node"] == "addop"
    assert "(in node 'addop' of pipeline 'add')" in failed.error["message"]
    assert "boom on purpose" in failed.error["message"]
    assert failed.versions == app.pipeline_versions("add")
    assert "traceback" not in failed.error  # kept in the record, not sent to clients
    assert "Traceback" in app.job_store.get_job(failed.job_id).error["traceback"]
    assert pool.wait(submit(app, "add", 1), timeout=TIMEOUT).value == 4  # the pool carries on


def test_a_running_job_says_so_and_wait_can_time_out(pool, tmp_path):
    app = make_app(pool)
    gate = str(tmp_path / "gate")
    job_id = submit(app, "add", gate)
    wait_until(lambda: app.fetch_job(job_id).job_status is JobStatus.running, timeout=TIMEOUT)
    with pytest.raises(WorkerError, match=f"job '{job_id}' (is still running|has not finished) after 0.05 s"):
        pool.wait(job_id, timeout=0.05)
    Path(gate).touch()
    assert pool.wait(job_id, timeout=TIMEOUT).value == gate


def test_unknown_job_ids_are_refused(pool):
    app = make_app(pool)
    with pytest.raises(JobNotFoundError, match="no job has id 'nope'"):
        app.fetch_job("nope")
    with pytest.raises(JobNotFoundError, match="no job has id 'nope'"):
        pool.wait("nope", timeout=1)
    with pytest.raises(JobNotFoundError, match="no job has id 'nope'"):
        pool.get_pipeline_response_json_for_id("nope")


def test_many_jobs_from_several_threads_all_finish(pool):
    app = make_app(pool)
    ids: dict[int, str] = {}

    def submit_from(start: int) -> None:
        for number in range(start, start + 25):
            ids[number] = submit(app, "add", number)

    threads = [threading.Thread(target=submit_from, args=(start,)) for start in (0, 25, 50, 75)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {number: pool.wait(job_id, timeout=TIMEOUT).value for number, job_id in ids.items()} == {
        number: number + 3 for number in range(100)
    }
    assert {job.status for job in app.op_store.jobs()} == {"done"}


# -- which ops a job runs, and what it trains -------------------------------------------------------
def test_a_job_runs_the_ops_served_when_it_was_submitted(pool):
    app = make_app(pool)
    old_versions = app.pipeline_versions("add")
    before = submit(app, "add", 1)
    app.install_ops("add", {"addop": AddHundredOp()})
    after = submit(app, "add", 1)
    old, new = pool.wait(before, timeout=TIMEOUT), pool.wait(after, timeout=TIMEOUT)
    assert (old.value, new.value) == (4, 101)
    assert old.versions == old_versions
    assert new.versions == app.pipeline_versions("add") != old_versions


def test_a_job_that_fits_brings_the_trained_model_back_for_save_pipeline(pool):
    app = make_app(pool, *mean_pipelines())
    untrained = app.pipeline_versions("train")["meanmodel"]
    done = pool.wait(submit(app, "train", [1, 2, 3, 6]), timeout=TIMEOUT)
    assert done.job_status is JobStatus.done, done.error
    trained = done.versions["meanmodel"]
    assert trained != untrained
    assert app.pipeline_versions("train")["meanmodel"] == trained  # installed before "done"

    app.save_pipeline("train")
    assert app.load_pipeline("predict") == {"meanmodel": trained}
    assert app.call_pipeline("predict", 10).value == 7.0
    in_worker = pool.wait(submit(app, "predict", 4), timeout=TIMEOUT)  # the loaded model, in a worker
    assert (in_worker.value, in_worker.versions["meanmodel"]) == (1.0, trained)


# -- when a call goes to a worker ------------------------------------------------------------------
def test_an_explicit_false_anywhere_wins_else_any_true_means_a_worker(pool):
    flags = (True, False, None)
    for app_flag, pipeline_flag, request_flag in itertools.product(flags, repeat=3):
        app = make_app(pool, add_pipeline(use_worker=pipeline_flag), use_worker=app_flag)
        asynchronous = False not in (app_flag, pipeline_flag, request_flag) and True in (
            app_flag,
            pipeline_flag,
            request_flag,
        )
        response = app.call_pipeline("add", 1, use_worker=request_flag)
        assert (response.job_id is not None) is asynchronous
        value = pool.wait(response.job_id, timeout=TIMEOUT).value if asynchronous else response.value
        assert value == 4
        assert len(app.op_store.jobs()) == asynchronous


# -- one pool, several apps, and who closes what ---------------------------------------------------
def test_a_pool_shared_by_two_apps_finds_the_jobs_of_each(pool):
    first, second = make_app(pool), make_app(pool)
    first_job, second_job = submit(first, "add", 1), submit(second, "add", 2)
    assert pool.wait(first_job, timeout=TIMEOUT).value == 4  # the app that attached last is second
    assert pool.wait(second_job, timeout=TIMEOUT).value == 5
    assert json.loads(pool.get_pipeline_response_json_for_id(first_job))["value"] == 4
    assert first.op_store.get_job(second_job) is None and second.op_store.get_job(first_job) is None

    first.close()  # detaches it: its jobs are no longer the pool's to find
    with pytest.raises(JobNotFoundError):
        pool.wait(first_job, timeout=1)
    assert pool.wait(second_job, timeout=1).value == 5


def test_closing_an_app_leaves_the_pool_it_was_given_running(pool):
    with make_app(pool):
        pass
    app = make_app(pool)
    assert pool.wait(submit(app, "add", 1), timeout=TIMEOUT).value == 4


def test_an_app_closes_a_pool_handed_over_to_it(fresh_pool):
    app = make_app(fresh_pool)
    assert app.take_ownership(fresh_pool) is fresh_pool
    job_id = submit(app, "add", 1)
    app.close()
    assert app.fetch_job(job_id).value == 4  # the pool finished its job before the app closed
    with pytest.raises(WorkerError, match="closed"):
        fresh_pool.execute_pipeline_async(app.serving_pipeline("add"), 1, make_app(None))
    app.close()  # idempotent


# -- closing the pool ----------------------------------------------------------------------------
def test_close_lets_submitted_jobs_finish_then_refuses_new_ones(fresh_pool):
    app = make_app(fresh_pool)
    job_ids = [submit(app, "add", number) for number in range(6)]
    fresh_pool.close()
    assert [app.fetch_job(job_id).value for job_id in job_ids] == [number + 3 for number in range(6)]
    fresh_pool.close()
    with pytest.raises(WorkerError, match="this worker pool is closed"):
        app.call_pipeline("add", 1, use_worker=True)


def test_close_with_a_timeout_fails_the_unfinished_jobs(kind, fresh_pool, tmp_path):
    if not kind.closes_with_timeout:
        pytest.skip(f"{kind.name} pools wait for their jobs: a thread cannot be stopped")
    app = make_app(fresh_pool)
    gate = tmp_path / "gate"
    try:
        stuck = submit(app, "add", str(gate))
        wait_until(lambda: app.fetch_job(stuck).job_status is JobStatus.running, timeout=TIMEOUT)
        fresh_pool.close(timeout=0.1)
        failed = app.fetch_job(stuck)
        assert failed.job_status is JobStatus.failed
        assert "the pool was closed before the job finished" in failed.error["message"]
    finally:
        gate.touch()  # a cluster's worker is not killed with the pool: let it go


# -- where records and results go ---------------------------------------------------------------
class SaverWithFastPath(MemorySaver):
    """A saver that, like FsspecSaver, can skip its fsync; it records how it was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.durable_flags: list[tuple[str, bool]] = []

    def save(self, path: str, data: bytes, *, durable: bool = True) -> None:
        self.durable_flags.append((path, durable))
        super().save(path, data)

    def open_write(self, path: str, *, durable: bool = True):  # op states stream through it
        self.durable_flags.append((path, durable))
        return super().open_write(path, durable=durable)


def test_a_job_result_takes_the_savers_fast_path_and_op_saves_do_not(pool):
    saver = SaverWithFastPath()
    app = make_app(pool, *mean_pipelines(), saver=saver)
    job_id = submit(app, "train", [1, 2, 3])
    assert pool.wait(job_id, timeout=TIMEOUT).job_status is JobStatus.done
    app.save_pipeline("train")
    assert (f"jobs/{job_id}", False) in saver.durable_flags
    op_saves = [durable for path, durable in saver.durable_flags if not path.startswith("jobs/")]
    assert op_saves and all(op_saves)


def test_job_records_and_results_survive_an_app_restart(pool, tmp_path):
    pytest.importorskip("chariots_lmdb")
    pytest.importorskip("chariots_fsspec")
    with make_app(pool, path=tmp_path, op_store=None, saver=None) as app:
        done, failed = submit(app, "add", 4), submit(app, "add", "boom")
        pool.wait(done, timeout=TIMEOUT)
        pool.wait(failed, timeout=TIMEOUT)
    with Chariots([add_pipeline()], path=tmp_path) as restarted:
        assert restarted.fetch_job(done).value == 7
        assert restarted.fetch_job(failed).error["node"] == "addop"


def test_a_slow_job_write_holds_up_no_other_job(pool):
    slow_store = SlowStore()
    slow, fast = make_app(pool, op_store=slow_store), make_app(pool)
    slow_store.hold_next()
    stalled = threading.Thread(target=submit, args=(slow, "add", 1))
    stalled.start()
    try:
        assert slow_store.held.wait(TIMEOUT)
        outcome: dict[str, Any] = {}
        other = threading.Thread(target=lambda: outcome.update(value=pool.wait(submit(fast, "add", 2), TIMEOUT).value))
        other.start()
        other.join(TIMEOUT)
        assert outcome == {"value": 5}  # ran while the other app's job record was being written
    finally:
        slow_store.let_through.set()
        stalled.join(TIMEOUT)
    (job,) = slow_store.jobs()
    assert pool.wait(job.job_id, timeout=TIMEOUT).value == 4


# -- batches -------------------------------------------------------------------------------------
def test_map_pipeline_returns_values_in_input_order_and_names_a_failing_input(pool):
    app = make_app(None)
    assert app.map_pipeline("add", range(60), worker_pool=pool, progress=False) == [n + 3 for n in range(60)]
    inputs = ["boom" if n == 37 else n for n in range(60)]
    with pytest.raises(NodeExecutionError, match=r"input #37 \('boom'\): ValueError: .*boom on purpose") as caught:
        app.map_pipeline("add", inputs, worker_pool=pool, progress=False)
    assert caught.value.node_name == "addop"


def test_what_cannot_reach_a_worker_is_refused_at_submission(kind, pool):
    if not kind.crosses_processes:
        pytest.skip(f"{kind.name} pools hand objects over without serializing them")
    app = make_app(pool)
    with pytest.raises(SerializationError, match="the input of pipeline 'add'"):
        app.call_pipeline("add", (number for number in range(3)), use_worker=True)  # generators do not pickle
    assert app.op_store.jobs() == []  # nothing half-submitted
