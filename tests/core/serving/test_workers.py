"""The worker-pool interface, the precedence rule and what only the in-process pool does.

What every pool does (in-process threads included) is in
``tests/conformance/test_worker_pool_conformance.py``.
"""

from __future__ import annotations

import itertools
import json
import threading

import pytest
from chariots_test_jobs import AddOp, SlowStore, add_pipeline

from chariots_core import BaseWorkerPool, Chariots, InProcessWorkerPool, JobStatus, Version
from chariots_core.errors import JobNotFoundError, WorkerError
from chariots_core.serving.workers import wants_worker

FLAGS = (True, False, None)


def make_app(pool, *pipelines, **kwargs) -> Chariots:
    kwargs.setdefault("op_store", "memory")
    return Chariots(list(pipelines) or [add_pipeline()], saver="memory", worker_pool=pool, **kwargs)


@pytest.mark.parametrize("flags", list(itertools.product(FLAGS, repeat=3)), ids=str)
def test_wants_worker_false_anywhere_wins_else_any_true(flags):
    expected = False if False in flags else True in flags
    assert wants_worker(*flags) is expected


def test_unattached_pool_says_so():
    with InProcessWorkerPool(1) as pool:
        with pytest.raises(WorkerError, match="not attached to an app"):
            pool.get_pipeline_response_json_for_id("x")
        with pytest.raises(WorkerError, match="not attached to an app"):
            pool.wait("x")


def test_a_pool_holds_the_apps_it_served_weakly():
    with InProcessWorkerPool(1) as pool:
        app = make_app(pool)
        job_id = pool.wait(app.call_pipeline("add", 1, use_worker=True).job_id, timeout=10).job_id
        kept = make_app(pool)
        del app  # nothing else refers to the first app: the pool does not keep it alive
        with pytest.raises(JobNotFoundError):
            pool.wait(job_id, timeout=1)
        assert kept.fetch_job(pool.wait(kept.call_pipeline("add", 2, use_worker=True).job_id, 10).job_id).value == 5


def test_a_pool_closed_while_a_job_is_recorded_records_it_failed():
    store = SlowStore()
    pool = InProcessWorkerPool(n_workers=1)
    app = make_app(pool, op_store=store)
    store.hold_next()
    outcome: dict[str, BaseException] = {}

    def submit() -> None:
        try:
            app.call_pipeline("add", 1, use_worker=True)
        except WorkerError as exc:
            outcome["error"] = exc

    submitting = threading.Thread(target=submit)
    submitting.start()
    assert store.held.wait(10)
    pool.close()  # while the job's record is being written
    store.let_through.set()
    submitting.join(10)
    assert "this worker pool is closed" in str(outcome["error"])
    (job,) = store.jobs()
    assert job.status == "failed" and job.error["message"] == "the pool was closed before the job could start"
    with pytest.raises(WorkerError, match="closed"):
        app.call_pipeline("add", 1, use_worker=True)


def test_spawn_worker_and_invalid_sizes():
    with InProcessWorkerPool(n_workers=1) as pool:
        pool.spawn_worker()
        assert pool.n_workers == 2
    for bad in (0, -1, 1.5, True):
        with pytest.raises(WorkerError, match="'n_workers' must be a positive int"):
            InProcessWorkerPool(bad)


def test_a_custom_pool_needs_only_the_three_primitives():
    """The seed's contract: n_workers, spawn_worker, execute_pipeline_async (sync here)."""

    class InlinePool(BaseWorkerPool):
        n_workers = 1

        def spawn_worker(self):
            raise WorkerError("an inline pool has exactly one worker")

        def execute_pipeline_async(self, pipeline, pipeline_input, app):
            self.attach(app)
            job = app.jobs.new(pipeline.name)
            app.jobs.run(job, pipeline, pipeline_input, app.runner)
            return job.job_id

    with InlinePool() as pool:
        app = make_app(pool)
        job_id = app.call_pipeline("add", 1, use_worker=True).job_id
        assert pool.wait(job_id, timeout=1).value == 4
        assert json.loads(pool.get_pipeline_response_json_for_id(job_id))["versions"] == {
            "addop": str(AddOp().op_version)
        }
        assert isinstance(app.fetch_job(job_id).versions["addop"], Version)
        assert app.fetch_job(job_id).job_status is JobStatus.done
