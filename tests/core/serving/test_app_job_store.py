"""Where an app keeps its job records: ``Chariots(job_store=...)`` and ``app.job_store``."""

from __future__ import annotations

from contextlib import AbstractContextManager

import pytest

from chariots_core import BaseOp, Chariots, InProcessWorkerPool, JobStatus, MemoryOpStore, MemorySaver, Node, Pipeline
from chariots_core.errors import WorkerError
from chariots_core.op_store import JobStore, OpStore, OpStoreView
from chariots_core.op_store.records import Commit, Position


class Double(BaseOp):
    def execute(self, x):
        return 2 * x


def double() -> Pipeline:
    return Pipeline([Node(Double(), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")], "double")


class OpsOnly(OpStore):
    """An op store that keeps no jobs (a backend implementing only the OpStore protocol)."""

    def __init__(self) -> None:
        self.inner = MemoryOpStore()

    def _view(self) -> AbstractContextManager[OpStoreView]:
        return self.inner._view()

    def _commit(self, commit: Commit) -> Position:
        return self.inner._commit(commit)

    def close(self) -> None:
        self.inner.close()


def test_the_op_store_keeps_the_jobs_when_it_can():
    store = MemoryOpStore()
    app = Chariots([double()], op_store=store, saver=MemorySaver())

    assert app.job_store is store


def test_a_job_store_of_its_own_receives_every_job_record():
    op_store, job_store, pool = MemoryOpStore(), MemoryOpStore(), InProcessWorkerPool()
    with Chariots([double()], op_store=op_store, saver=MemorySaver(), job_store=job_store, worker_pool=pool) as app:
        job_id = app.call_pipeline("double", 21, use_worker=True).job_id
        assert pool.wait(job_id, timeout=30).value == 42

        assert app.job_store is job_store
        assert [job.job_id for job in job_store.jobs()] == [job_id]
        assert job_store.get_job(job_id).status == JobStatus.done.value
        assert op_store.jobs() == []
        assert app.fetch_job(job_id).value == 42


def test_an_op_store_without_jobs_serves_saves_and_loads_but_refuses_workers():
    store = OpsOnly()
    assert not isinstance(store, JobStore)
    app = Chariots([double()], op_store=store, saver=MemorySaver())

    assert app.job_store is None
    assert app.call_pipeline("double", 4).value == 8
    app.save_pipeline("double")
    with pytest.raises(WorkerError, match="needs a job store.*pass job_store=") as caught:
        app.fetch_job("any")
    assert "OpsOnly" in str(caught.value)
    with pytest.raises(WorkerError, match="a worker pool needs a job store"):
        Chariots([double()], op_store=OpsOnly(), saver=MemorySaver(), worker_pool=InProcessWorkerPool())


def test_an_op_store_without_jobs_works_with_a_job_store_beside_it():
    pool = InProcessWorkerPool()
    with Chariots([double()], op_store=OpsOnly(), saver=MemorySaver(), job_store=MemoryOpStore(), worker_pool=pool) as app:
        job_id = app.call_pipeline("double", 5, use_worker=True).job_id

        assert pool.wait(job_id, timeout=30).value == 10
