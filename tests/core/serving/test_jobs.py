"""Job records: results, jobs whose app process is gone, and what a run elsewhere reports.

The behaviour every pool shares is in ``tests/conformance/test_worker_pool_conformance.py``;
here are the parts of ``chariots_core.serving.jobs`` that need no pool at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading

import attrs
import dill
import pytest
from chariots_test_jobs import add_pipeline, mean_pipelines
from chariots_test_ops import ScaleOp

from chariots_core import (
    BaseOp,
    Chariots,
    InProcessWorkerPool,
    JobStatus,
    MemoryOpStore,
    Node,
    Pipeline,
    SequentialRunner,
)
from chariots_core.errors import IntegrityError, SerializationError, StoreError
from chariots_core.ml import BaseMLOp, MLMode
from chariots_core.op_store.store import JobRecord, from_json, to_json
from chariots_core.savers import MemorySaver
from chariots_core.serving.jobs import JobBook, JobOutcome, PayloadCache, Submission, run_pipeline, save_job_result
from chariots_core.serving.owners import owner_of_this_process

IN, OUT = "__pipeline_input__", "__pipeline_output__"


@pytest.fixture
def pool():
    with InProcessWorkerPool(n_workers=1) as thread_pool:
        yield thread_pool


def done_job(app, pool) -> str:
    return pool.wait(app.call_pipeline("add", 1, use_worker=True).job_id, timeout=10).job_id


# -- results --------------------------------------------------------------------------------------
def test_a_saver_without_the_fast_path_is_called_as_the_protocol_says():
    # MemorySaver.save takes (path, data) only: passing durable=... would raise TypeError.
    saver = MemorySaver()
    save_job_result(saver, "jobs/j1", b"value")
    assert saver.load("jobs/j1") == b"value"


def test_corrupt_or_missing_result_is_a_clear_error(app_for, pool):
    app = app_for([add_pipeline()], worker_pool=pool)
    job_id = done_job(app, pool)
    path = app.op_store.get_job(job_id).result_path
    app.saver.save(path, b"tampered")
    with pytest.raises(IntegrityError, match="corrupt"):
        app.fetch_job(job_id)
    app.saver.delete(path)
    with pytest.raises(StoreError, match="the result of job .* the bytes are missing"):
        app.fetch_job(job_id)


def test_result_that_cannot_be_deserialized_is_a_clear_error(app_for, pool):
    app = app_for([add_pipeline()], worker_pool=pool)
    job_id = done_job(app, pool)
    record = app.op_store.get_job(job_id)
    garbage = b"these bytes are not dill"
    app.saver.save(record.result_path, garbage)
    app.op_store.put_job(attrs.evolve(record, result_sha256=hashlib.sha256(garbage).hexdigest()))
    with pytest.raises(SerializationError, match=f"the result of job '{job_id}' cannot be deserialized"):
        app.fetch_job(job_id)


# -- jobs whose app process is gone ----------------------------------------------------------
def with_owner(owner: str | None, status: str = "queued", **changes) -> JobRecord:
    return JobRecord("orphan", "add", status, 1.0, 1.0, owner=owner, **changes)


def exited_pid() -> int:
    """The pid of a real process that has exited (and been reaped)."""
    script = "import os; print(os.getpid())"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return int(done.stdout)


class WaitOp(BaseOp):
    """Returns its input once its event is set."""

    def __init__(self, event: threading.Event) -> None:
        super().__init__()
        self.event = event

    def execute(self, x):
        self.event.wait(10)
        return x


def test_a_job_names_this_process_as_owner_and_stays_running_while_it_lives(app_for, pool):
    gate = threading.Event()
    blocker = Pipeline([Node(WaitOp(gate), input_nodes=[IN], output_nodes=OUT)], "wait")
    app = app_for([blocker], worker_pool=pool)
    job_id = app.call_pipeline("wait", 1, use_worker=True).job_id
    owner = app.op_store.get_job(job_id).owner
    assert owner == owner_of_this_process()
    assert owner.startswith(f"{socket.gethostname()}/") and f"/{os.getpid()}/" in owner
    for _ in range(1000):
        if app.fetch_job(job_id).job_status is JobStatus.running:
            break
        threading.Event().wait(0.01)
    assert app.fetch_job(job_id).job_status is JobStatus.running
    assert app.op_store.get_job(job_id).status == "running"
    gate.set()
    assert pool.wait(job_id, timeout=10).value == 1


@pytest.mark.parametrize("how", ["exited", "recycled"])
@pytest.mark.parametrize("status", ["queued", "running"])
def test_a_job_whose_owner_is_gone_is_recorded_failed_with_the_reason(app_for, how, status):
    app = app_for([add_pipeline()])
    host, namespace, pid, start = owner_of_this_process().rsplit("/", 3)
    if how == "exited":
        pid = str(exited_pid())
    else:  # this very pid, but another process: one that had it before this one
        if not start:
            pytest.skip("process start times need /proc")
        start = str(int(start) - 1)
    app.op_store.put_job(with_owner(f"{host}/{namespace}/{pid}/{start}", status, worker="pid 1"))

    response = app.fetch_job("orphan")
    assert response.job_status is JobStatus.failed
    assert response.error == {
        "type": "WorkerError",
        "message": f"the app process {pid} on {host} that owned job 'orphan' exited before it "
        "finished; run the job again",
        "node": "",
    }
    assert app.op_store.get_job("orphan").status == "failed"  # recorded, not only reported


@pytest.mark.parametrize("owner", [None, "elsewhere.example/4026531836/1/1", "other-namespace", "not an owner"])
def test_jobs_whose_owner_cannot_be_checked_keep_their_state(app_for, owner):
    app = app_for([add_pipeline()])
    if owner == "other-namespace":  # same host name, another container's pids
        host, _, _, start = owner_of_this_process().rsplit("/", 3)
        owner = f"{host}/1/{exited_pid()}/{start}"
    app.op_store.put_job(with_owner(owner))
    assert app.fetch_job("orphan").job_status is JobStatus.queued
    assert app.op_store.get_job("orphan") == with_owner(owner)


def test_a_finished_job_of_a_gone_owner_keeps_its_outcome(app_for):
    app = app_for([add_pipeline()])
    host, namespace, _, start = owner_of_this_process().rsplit("/", 3)
    error = {"type": "KeyError", "message": "its own failure", "node": "addop"}
    record = with_owner(f"{host}/{namespace}/{exited_pid()}/{start}", "failed", error=error)
    app.op_store.put_job(record)
    assert app.fetch_job("orphan").error == error
    assert app.op_store.get_job("orphan") == record


def test_a_pool_whose_jobs_outlive_this_process_records_no_owner(app_for):
    app = app_for([add_pipeline()])
    job = app.jobs.new("add", owned=False)
    assert job.owner is None and app.op_store.get_job(job.job_id) == job


def test_a_job_record_written_before_owners_existed_still_loads(app_for):
    record = with_owner(None)
    old = json.loads(to_json(record))
    del old["owner"]
    assert from_json(json.dumps(old), JobRecord) == record
    app = app_for([add_pipeline()])
    app.op_store.put_job(from_json(json.dumps(old), JobRecord))
    assert app.fetch_job("orphan").job_status is JobStatus.queued


# -- a run elsewhere, and how its outcome is recorded -------------------------------------------
def test_a_run_elsewhere_sends_back_the_state_of_the_ops_it_trained_and_nothing_else():
    train = Pipeline(
        [
            Node(mean_pipelines()[0].pipeline_nodes[0].op, input_nodes=[IN], output_nodes="ignored"),
            Node(ScaleOp(2), input_nodes=[IN], output_nodes=OUT),
        ],
        "train",
    )
    outcome = run_pipeline(train, SequentialRunner(), [1, 2, 3], ship_trained=True)
    assert outcome.error is None and dill.loads(outcome.value) == [2, 4, 6]
    (trained,) = train.loadable_nodes()[:1]
    assert outcome.trained == {"meanmodel": trained.op.serialize()}  # ScaleOp's version names no state
    assert outcome.versions == {node.name: str(node.node_version) for node in train.op_nodes()}
    assert run_pipeline(train, SequentialRunner(), [1, 2, 3], ship_trained=False).trained == {}


def test_a_trained_op_that_cannot_be_serialized_fails_the_run_naming_it():
    class Unsaveable(BaseMLOp):
        def fit(self, xs):
            self._model = len(xs)

        def predict(self, x):
            return x

        def serialize(self):
            raise OSError("disk full")

    train = Pipeline([Node(Unsaveable(MLMode.FIT), input_nodes=[IN])], "train")
    outcome = run_pipeline(train, SequentialRunner(), [1], ship_trained=True)
    assert outcome.value is None and outcome.error["type"] == "OSError"
    assert outcome.error["node"] == "unsaveable"
    assert "was trained in a worker but its op could not be serialized" in outcome.error["message"]


def test_a_settled_job_is_never_overwritten_by_a_late_start():
    pipeline = add_pipeline()
    app = Chariots([pipeline], op_store="memory", saver="memory")
    payload = PayloadCache(lambda obj, what: b"").get(pipeline, app.runner)
    submission = Submission(app, app.jobs.new("add"), pipeline, payload)
    submission.settle(JobOutcome(dill.dumps(4), payload.versions, worker="pid 1"))
    submission.start("pid 2")  # e.g. a dispatcher that recorded slower than the worker ran
    submission.requeue()
    submission.fail({"type": "WorkerError", "message": "too late", "node": ""})
    record = app.op_store.get_job(submission.job_id)
    assert (record.status, record.worker, record.error) == ("done", "pid 1", None)
    assert app.fetch_job(submission.job_id).value == 4


def test_a_store_that_refuses_the_outcome_is_logged_and_the_job_recorded_failed(caplog):
    class FlakyStore(MemoryOpStore):
        refuse = False

        def put_job(self, job):
            if self.refuse and job.status == "done":
                raise OSError("the disk went away")
            super().put_job(job)

    store = FlakyStore()
    pipeline = add_pipeline()
    app = Chariots([pipeline], op_store=store, saver="memory")
    payload = PayloadCache(lambda obj, what: b"").get(pipeline, app.runner)
    submission = Submission(app, app.jobs.new("add"), pipeline, payload)
    store.refuse = True
    submission.settle(JobOutcome(dill.dumps(4), {}))
    failed = app.fetch_job(submission.job_id)
    assert failed.job_status is JobStatus.failed
    assert failed.error["message"] == "the job ran but its outcome could not be recorded: the disk went away"
    assert failed.versions == app.pipeline_versions(pipeline)  # the versions it was submitted with


def test_a_payload_is_made_once_per_pipeline_object_runner_and_op_versions():
    made: list[str] = []
    cache = PayloadCache(lambda obj, what: made.append(what) or dill.dumps(obj))
    train, _ = mean_pipelines()
    runner = SequentialRunner()
    first = cache.get(train, runner)
    assert cache.get(train, runner) is first and made == ["pipeline 'train'"]
    SequentialRunner().run(train, [1, 2])  # a fit in place changes the op versions
    refitted = cache.get(train, runner)
    assert refitted.token != first.token and refitted.versions != first.versions
    assert cache.get(train, SequentialRunner()).token != refitted.token
    assert len(made) == 3


def test_a_job_book_writes_only_job_records_through_its_store():
    store, saver = MemoryOpStore(), MemorySaver()
    book = JobBook(store, saver)
    job = book.new("add")
    versions = {"addop": str(add_pipeline().pipeline_nodes[0].node_version)}
    done = book.record(job, JobOutcome(dill.dumps("value"), versions))
    assert store.jobs() == [done] and saver.load(done.result_path) == dill.dumps("value")
    assert book.response(job.job_id).value == "value"
