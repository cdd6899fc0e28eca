"""Job states, responses, the precedence rule and the in-process (thread) worker pool."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import socket
import subprocess
import sys
import threading

import attrs
import pytest

from chariots_core import (
    BaseOp,
    BaseWorkerPool,
    Chariots,
    InProcessWorkerPool,
    JobStatus,
    Node,
    Pipeline,
    PipelineResponse,
    Version,
    VersionedField,
    VersionType,
)
from chariots_core.errors import IntegrityError, JobNotFoundError, SerializationError, StoreError, WorkerError
from chariots_core.ml import BaseMLOp, MLMode
from chariots_core.op_store.store import JobRecord, from_json, to_json
from chariots_core.savers import MemorySaver
from chariots_core.serving.workers import new_job, save_job_result, wants_worker

IN, OUT = "__pipeline_input__", "__pipeline_output__"
FLAGS = (True, False, None)


class AddOp(BaseOp):
    number = VersionedField(3, VersionType.MAJOR)

    def execute(self, x):
        if x == "boom":
            raise KeyError("no such thing")
        if isinstance(x, threading.Event):
            x.wait(10)
            return "released"
        return x + self.number


class MeanModel(BaseMLOp):
    def fit(self, numbers):
        self._model = sum(numbers) / len(numbers)

    def predict(self, number):
        return number - self._model


def add_pipeline(use_worker: bool | None = None) -> Pipeline:
    return Pipeline([Node(AddOp(), input_nodes=[IN], output_nodes=OUT)], name="add", use_worker=use_worker)


@pytest.fixture
def pool():
    with InProcessWorkerPool(n_workers=2) as thread_pool:
        yield thread_pool


def make_app(pool, *pipelines, **kwargs) -> Chariots:
    return Chariots(list(pipelines), op_store="memory", saver="memory", worker_pool=pool, **kwargs)


# -- the precedence rule and the response format ---------------------------------------------
@pytest.mark.parametrize("flags", list(itertools.product(FLAGS, repeat=3)), ids=str)
def test_wants_worker_false_anywhere_wins_else_any_true(flags):
    expected = False if False in flags else True in flags
    assert wants_worker(*flags) is expected


def test_pipeline_response_json_round_trip():
    version = AddOp().op_version
    response = PipelineResponse(
        value=[1, 2],
        versions={"addop": version},
        job_id="abc",
        job_status=JobStatus.failed,
        error={"type": "ValueError", "message": "bad", "node": "addop"},
    )
    wire = json.loads(json.dumps(response.to_json()))
    assert wire["job_status"] == "failed" and wire["versions"] == {"addop": str(version)}
    assert PipelineResponse.from_json(wire) == response


def test_job_status_values_match_chariots_0_2():
    assert [status.value for status in JobStatus] == ["deferred", "queued", "running", "done", "failed"]


# -- the in-process pool -------------------------------------------------------------------
def test_in_process_job_is_queued_then_done(pool):
    pipeline = add_pipeline()
    app = make_app(pool, pipeline)
    response = app.call_pipeline(pipeline, 4, use_worker=True)
    assert response.job_status is JobStatus.queued and response.value is None
    done = pool.wait(response.job_id, timeout=10)
    assert (done.value, done.job_status) == (7, JobStatus.done)
    assert done.versions == app.pipeline_versions(pipeline)
    assert app.fetch_job(response.job_id).value == 7
    assert json.loads(pool.get_pipeline_response_json_for_id(response.job_id))["value"] == 7


class SaverWithFastPath(MemorySaver):
    """A saver that, like FsspecSaver, can skip its fsync; it records how it was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.durable_flags: list[tuple[str, bool]] = []

    def save(self, path: str, data: bytes, *, durable: bool = True) -> None:
        self.durable_flags.append((path, durable))
        super().save(path, data)


def test_a_job_result_takes_the_savers_fast_path_and_op_saves_do_not(pool):
    saver = SaverWithFastPath()
    train = Pipeline([Node(MeanModel(MLMode.FIT), input_nodes=[IN])], name="train")
    app = Chariots([train], op_store="memory", saver=saver, worker_pool=pool)
    job_id = app.call_pipeline(train, [1, 2, 3], use_worker=True).job_id
    assert pool.wait(job_id, timeout=10).job_status is JobStatus.done
    app.save_pipeline(train)

    assert (f"jobs/{job_id}", False) in saver.durable_flags
    op_saves = [durable for path, durable in saver.durable_flags if not path.startswith("jobs/")]
    assert op_saves and all(op_saves)


def test_a_saver_without_the_fast_path_is_called_as_the_protocol_says():
    # MemorySaver.save takes (path, data) only: passing durable=... would raise TypeError.
    saver = MemorySaver()
    save_job_result(saver, "jobs/j1", b"value")
    assert saver.load("jobs/j1") == b"value"


def test_in_process_failure_records_the_op_error_type_and_node(pool):
    pipeline = add_pipeline()
    app = make_app(pool, pipeline)
    failed = pool.wait(app.call_pipeline(pipeline, "boom", use_worker=True).job_id, timeout=10)
    assert failed.job_status is JobStatus.failed
    assert failed.error["type"] == "KeyError"
    assert failed.error["node"] == "addop"
    assert "(in node 'addop' of pipeline 'add')" in failed.error["message"]
    assert "traceback" not in failed.error  # kept in the record, not sent to clients
    assert "Traceback" in app.op_store.get_job(failed.job_id).error["traceback"]


def test_fit_job_records_the_trained_version(pool):
    train = Pipeline([Node(MeanModel(MLMode.FIT), input_nodes=[IN])], name="train")
    app = make_app(pool, train)
    before = app.pipeline_versions(train)["meanmodel"]
    done = pool.wait(app.call_pipeline(train, [1, 2, 3], use_worker=True).job_id, timeout=10)
    assert done.job_status is JobStatus.done, done.error
    assert done.versions["meanmodel"] != before
    assert done.versions == app.pipeline_versions(train)  # the thread trained the app's op


def test_job_status_is_running_while_the_op_runs(pool):
    pipeline = add_pipeline()
    app = make_app(pool, pipeline)
    release = threading.Event()
    job_id = app.call_pipeline(pipeline, release, use_worker=True).job_id
    for _ in range(1000):
        if app.fetch_job(job_id).job_status is JobStatus.running:
            break
        threading.Event().wait(0.01)
    assert app.fetch_job(job_id).job_status is JobStatus.running
    with pytest.raises(WorkerError, match="is still running after 0.05 s"):
        pool.wait(job_id, timeout=0.05)
    release.set()
    assert pool.wait(job_id, timeout=10).value == "released"


def test_many_jobs_from_several_threads(pool):
    pipeline = add_pipeline()
    app = make_app(pool, pipeline)
    ids: dict[int, str] = {}

    def submit(start: int) -> None:
        for number in range(start, start + 25):
            ids[number] = app.call_pipeline(pipeline, number, use_worker=True).job_id

    threads = [threading.Thread(target=submit, args=(start,)) for start in (0, 25, 50, 75)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {number: pool.wait(job_id, timeout=10).value for number, job_id in ids.items()} == {
        number: number + 3 for number in range(100)
    }


@pytest.mark.parametrize("with_pool", [True, False], ids=["pool", "no-pool"])
def test_precedence_through_the_app(with_pool):
    with InProcessWorkerPool(1) as pool:
        for app_flag, pipeline_flag, request_flag in itertools.product(FLAGS, repeat=3):
            flags = (app_flag, pipeline_flag, request_flag)
            pipeline = add_pipeline(use_worker=pipeline_flag)
            app = make_app(pool if with_pool else None, pipeline, use_worker=app_flag)
            asynchronous = False not in flags and True in flags
            if asynchronous and not with_pool:
                with pytest.raises(WorkerError, match="no worker pool; pass worker_pool="):
                    app.call_pipeline(pipeline, 1, use_worker=request_flag)
                continue
            response = app.call_pipeline(pipeline, 1, use_worker=request_flag)
            assert (response.job_id is not None) is asynchronous, flags
            value = pool.wait(response.job_id, timeout=10).value if asynchronous else response.value
            assert value == 4, flags


def test_unknown_job_id(pool):
    app = make_app(pool, add_pipeline())
    with pytest.raises(JobNotFoundError, match="no job has id 'missing'"):
        app.fetch_job("missing")
    with pytest.raises(JobNotFoundError):
        pool.wait("missing", timeout=1)
    assert issubclass(JobNotFoundError, LookupError) and issubclass(JobNotFoundError, WorkerError)


def test_unattached_pool_says_so():
    with InProcessWorkerPool(1) as pool:
        with pytest.raises(WorkerError, match="not attached to an app"):
            pool.get_pipeline_response_json_for_id("x")
        with pytest.raises(WorkerError, match="not attached to an app"):
            pool.wait("x")


def test_corrupt_or_missing_result_is_a_clear_error(pool):
    pipeline = add_pipeline()
    app = make_app(pool, pipeline)
    job_id = pool.wait(app.call_pipeline(pipeline, 1, use_worker=True).job_id, timeout=10).job_id
    path = app.op_store.get_job(job_id).result_path
    app.saver.save(path, b"tampered")
    with pytest.raises(IntegrityError, match="corrupt"):
        app.fetch_job(job_id)
    app.saver.delete(path)
    with pytest.raises(StoreError, match="the result of job .* the bytes are missing"):
        app.fetch_job(job_id)


def test_result_that_cannot_be_deserialized_is_a_clear_error(pool):
    pipeline = add_pipeline()
    app = make_app(pool, pipeline)
    job_id = pool.wait(app.call_pipeline(pipeline, 1, use_worker=True).job_id, timeout=10).job_id
    record = app.op_store.get_job(job_id)
    garbage = b"these bytes are not dill"
    app.saver.save(record.result_path, garbage)
    app.op_store.put_job(attrs.evolve(record, result_sha256=hashlib.sha256(garbage).hexdigest()))
    with pytest.raises(SerializationError, match=f"the result of job '{job_id}' cannot be deserialized"):
        app.fetch_job(job_id)


def test_close_is_idempotent_and_refuses_new_jobs():
    pool = InProcessWorkerPool(n_workers=2)
    pipeline = add_pipeline()
    app = make_app(pool, pipeline)
    job_id = app.call_pipeline(pipeline, 2, use_worker=True).job_id
    pool.close()
    assert app.fetch_job(job_id).value == 5  # queued work finishes before close returns
    pool.close()
    with pytest.raises(WorkerError, match="closed"):
        app.call_pipeline(pipeline, 1, use_worker=True)


def test_spawn_worker_and_invalid_sizes():
    with InProcessWorkerPool(n_workers=1) as pool:
        pool.spawn_worker()
        assert pool.n_workers == 2
    for bad in (0, -1, 1.5, True):
        with pytest.raises(WorkerError, match="'n_workers' must be a positive int"):
            InProcessWorkerPool(bad)


def test_a_custom_pool_needs_only_the_three_primitives():
    """The seed's contract: n_workers, spawn_worker, execute_pipeline_async (sync here)."""
    from chariots_core.serving.workers import new_job, run_job

    class InlinePool(BaseWorkerPool):
        n_workers = 1

        def spawn_worker(self):
            raise WorkerError("an inline pool has exactly one worker")

        def execute_pipeline_async(self, pipeline, pipeline_input, app):
            self.attach(app)
            job = new_job(app.op_store, pipeline.name)
            run_job(job, pipeline, pipeline_input, app.runner, app.op_store, app.saver)
            return job.job_id

    pipeline = add_pipeline()
    with InlinePool() as pool:
        app = make_app(pool, pipeline)
        job_id = app.call_pipeline(pipeline, 1, use_worker=True).job_id
        assert pool.wait(job_id, timeout=1).value == 4
        assert json.loads(pool.get_pipeline_response_json_for_id(job_id))["versions"] == {
            "addop": str(AddOp().op_version)
        }
        assert isinstance(app.fetch_job(job_id).versions["addop"], Version)


# -- jobs whose app process is gone ----------------------------------------------------------
def with_owner(owner: str | None, status: str = "queued", **changes) -> JobRecord:
    return JobRecord("orphan", "add", status, 1.0, 1.0, owner=owner, **changes)


def this_process_owner(app) -> str:
    return new_job(app.op_store, "add").owner


def exited_pid() -> int:
    """The pid of a real process that has exited (and been reaped)."""
    script = "import os; print(os.getpid())"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_a_job_names_this_process_as_owner_and_stays_running_while_it_lives(app_for):
    with InProcessWorkerPool(1) as pool:
        pipeline = add_pipeline()
        app = app_for([pipeline], worker_pool=pool)
        release = threading.Event()
        job_id = app.call_pipeline(pipeline, release, use_worker=True).job_id
        owner = app.op_store.get_job(job_id).owner
        assert owner.startswith(f"{socket.gethostname()}/") and f"/{os.getpid()}/" in owner
        for _ in range(1000):
            if app.fetch_job(job_id).job_status is JobStatus.running:
                break
            threading.Event().wait(0.01)
        assert app.fetch_job(job_id).job_status is JobStatus.running
        assert app.op_store.get_job(job_id).status == "running"
        release.set()
        assert pool.wait(job_id, timeout=10).value == "released"


@pytest.mark.parametrize("how", ["exited", "recycled"])
@pytest.mark.parametrize("status", ["queued", "running"])
def test_a_job_whose_owner_is_gone_is_recorded_failed_with_the_reason(app_for, how, status):
    app = app_for([add_pipeline()])
    host, namespace, pid, start = this_process_owner(app).rsplit("/", 3)
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


@pytest.mark.parametrize(
    "owner",
    [None, "elsewhere.example/4026531836/1/1", "other-namespace", "not an owner"],
)
def test_jobs_whose_owner_cannot_be_checked_keep_their_state(app_for, owner):
    app = app_for([add_pipeline()])
    if owner == "other-namespace":  # same host name, another container's pids
        host, _, _, start = this_process_owner(app).rsplit("/", 3)
        owner = f"{host}/1/{exited_pid()}/{start}"
    app.op_store.put_job(with_owner(owner))
    assert app.fetch_job("orphan").job_status is JobStatus.queued
    assert app.op_store.get_job("orphan") == with_owner(owner)


def test_a_finished_job_of_a_gone_owner_keeps_its_outcome(app_for):
    app = app_for([add_pipeline()])
    host, namespace, _, start = this_process_owner(app).rsplit("/", 3)
    error = {"type": "KeyError", "message": "its own failure", "node": "addop"}
    record = with_owner(f"{host}/{namespace}/{exited_pid()}/{start}", "failed", error=error)
    app.op_store.put_job(record)
    assert app.fetch_job("orphan").error == error
    assert app.op_store.get_job("orphan") == record


def test_a_pool_whose_jobs_outlive_this_process_records_no_owner(app_for):
    app = app_for([add_pipeline()])
    job = new_job(app.op_store, "add", owned=False)
    assert job.owner is None and app.op_store.get_job(job.job_id) == job


def test_a_job_record_written_before_owners_existed_still_loads(app_for):
    record = with_owner(None)
    old = json.loads(to_json(record))
    del old["owner"]
    assert from_json(json.dumps(old), JobRecord) == record
    app = app_for([add_pipeline()])
    app.op_store.put_job(from_json(json.dumps(old), JobRecord))
    assert app.fetch_job("orphan").job_status is JobStatus.queued
