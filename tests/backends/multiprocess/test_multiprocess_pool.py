"""MultiprocessWorkerPool with real worker processes: outcomes, crashes, load, shutdown.

Ops are defined inside functions on purpose: dill sends them to the workers by value, which
is the "lambdas and locally defined ops" promise, and the workers never import this module.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

pytest.importorskip("multiprocess")

from chariots_multiprocess import MultiprocessWorkerPool  # noqa: E402
from chariots_test_processes import is_running

from chariots_core import (  # noqa: E402
    BaseOp,
    Chariots,
    JobStatus,
    Node,
    Pipeline,
    VersionedField,
    VersionType,
)
from chariots_core.errors import JobNotFoundError, SerializationError, WorkerError  # noqa: E402
from chariots_core.ml import BaseMLOp, MLMode  # noqa: E402

IN, OUT = "__pipeline_input__", "__pipeline_output__"


def add_pipeline(name: str = "add", amount: int = 3, use_worker: bool | None = None) -> Pipeline:
    """x -> x + amount; "boom" raises ValueError; a path string waits for that file to exist."""

    class AddOp(BaseOp):
        number = VersionedField(amount, VersionType.MAJOR)

        def execute(self, x):
            if x == "boom":
                raise ValueError("boom on purpose")
            if isinstance(x, str):
                while not os.path.exists(x):
                    time.sleep(0.01)
                return x
            return x + self.number

    return Pipeline([Node(AddOp(), input_nodes=[IN], output_nodes=OUT)], name=name, use_worker=use_worker)


def make_app(pool, *pipelines, **kwargs) -> Chariots:
    return Chariots(list(pipelines), op_store="memory", saver="memory", worker_pool=pool, **kwargs)


def wait_until(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


@pytest.fixture
def pool():
    with MultiprocessWorkerPool(n_workers=2) as worker_pool:
        yield worker_pool


# -- outcomes ------------------------------------------------------------------------------
def test_async_call_is_queued_then_done_with_value_and_versions(pool):
    pipeline = add_pipeline()
    app = make_app(pool, pipeline)
    response = app.call_pipeline(pipeline, 4, use_worker=True)
    assert response.job_status is JobStatus.queued and response.value is None
    assert app.fetch_job(response.job_id).job_status in {JobStatus.queued, JobStatus.running, JobStatus.done}
    done = pool.wait(response.job_id, timeout=20)
    assert done.job_status is JobStatus.done
    assert done.value == 7
    assert done.versions == app.pipeline_versions(pipeline)
    fetched = app.fetch_job(response.job_id)
    assert (fetched.value, fetched.job_status, fetched.error) == (7, JobStatus.done, None)
    as_json = json.loads(pool.get_pipeline_response_json_for_id(response.job_id))
    assert as_json["value"] == 7 and as_json["job_status"] == "done"


def test_op_that_raises_fails_the_job_naming_the_node(pool):
    pipeline = add_pipeline()
    app = make_app(pool, pipeline)
    job_id = app.call_pipeline(pipeline, "boom", use_worker=True).job_id
    failed = pool.wait(job_id, timeout=20)
    assert failed.job_status is JobStatus.failed
    assert failed.value is None
    assert failed.error["type"] == "ValueError"
    assert failed.error["node"] == "addop"
    assert "boom on purpose" in failed.error["message"] and "'add'" in failed.error["message"]
    # the worker survived its job's failure
    assert app.call_pipeline(pipeline, 1, use_worker=True).job_id
    assert pool.n_workers == 2


def test_running_job_reports_running_and_its_worker(pool, tmp_path):
    pipeline = add_pipeline()
    app = make_app(pool, pipeline)
    gate = str(tmp_path / "gate")
    job_id = app.call_pipeline(pipeline, gate, use_worker=True).job_id
    wait_until(lambda: app.fetch_job(job_id).job_status is JobStatus.running)
    assert app.op_store.get_job(job_id).worker in {f"pid {pid}" for pid in pool.worker_pids}
    open(gate, "w").close()
    assert pool.wait(job_id, timeout=20).value == gate


def test_lambdas_and_local_ops_run_in_workers(pool):
    scale = 10

    class ApplyOp(BaseOp):
        def __init__(self, function):
            super().__init__()
            self.function = function

        def execute(self, x):
            return self.function(x)

    pipeline = Pipeline(
        [
            Node(ApplyOp(lambda x: x * scale), input_nodes=[IN], output_nodes="scaled", name="scale"),
            Node(ApplyOp(lambda x: [x, x + 1]), input_nodes=["scaled"], output_nodes=OUT, name="pair"),
        ],
        name="lambdas",
    )
    app = make_app(pool, pipeline)
    job_id = app.call_pipeline(pipeline, 2, use_worker=True).job_id
    response = pool.wait(job_id, timeout=20)
    assert response.job_status is JobStatus.done, response.error
    assert response.value == [20, 21]


def test_unknown_job_id_is_a_clear_error(pool):
    app = make_app(pool, add_pipeline())
    with pytest.raises(JobNotFoundError, match="no job has id 'nope'"):
        app.fetch_job("nope")
    with pytest.raises(JobNotFoundError):
        pool.get_pipeline_response_json_for_id("nope")
    with pytest.raises(JobNotFoundError):
        pool.wait("nope", timeout=1)


def test_wait_times_out_on_a_job_still_running(pool, tmp_path):
    pipeline = add_pipeline()
    app = make_app(pool, pipeline)
    gate = str(tmp_path / "gate")
    job_id = app.call_pipeline(pipeline, gate, use_worker=True).job_id
    with pytest.raises(WorkerError, match="has not finished"):
        pool.wait(job_id, timeout=0.05)
    open(gate, "w").close()
    assert pool.wait(job_id, timeout=20).job_status is JobStatus.done


# -- crashes -------------------------------------------------------------------------------
def test_killed_worker_fails_its_job_and_is_replaced(tmp_path):
    with MultiprocessWorkerPool(n_workers=1) as pool:
        pipeline = add_pipeline()
        app = make_app(pool, pipeline)
        gate = str(tmp_path / "never-opened")
        doomed = app.call_pipeline(pipeline, gate, use_worker=True).job_id
        behind = app.call_pipeline(pipeline, 5, use_worker=True).job_id  # queued behind it
        wait_until(lambda: app.fetch_job(doomed).job_status is JobStatus.running)
        (victim,) = pool.worker_pids
        os.kill(victim, signal.SIGKILL)

        failed = pool.wait(doomed, timeout=20)
        assert failed.job_status is JobStatus.failed
        assert failed.error["type"] == "WorkerError"
        assert f"worker process {victim} was killed by signal SIGKILL" in failed.error["message"]
        assert failed.versions == app.pipeline_versions(pipeline)
        assert pool.n_workers == 1 and pool.worker_pids != [victim]
        assert not is_running(victim)
        # the job queued behind the dead one runs on the replacement
        assert pool.wait(behind, timeout=20).value == 8


def test_job_sent_to_a_worker_that_just_died_waits_for_the_replacement():
    with MultiprocessWorkerPool(n_workers=1) as pool:
        pipeline = add_pipeline()
        app = make_app(pool, pipeline)
        (victim,) = pool.worker_pids
        os.kill(victim, signal.SIGKILL)
        # Submitted at once: either it reaches the dead worker's pipe (and fails with the
        # reason) or it waits for the replacement; it never stays running forever.
        job_id = app.call_pipeline(pipeline, 1, use_worker=True).job_id
        response = pool.wait(job_id, timeout=20)
        assert response.value == 4 or "was killed by signal SIGKILL" in response.error["message"]
        wait_until(lambda: pool.worker_pids and victim not in pool.worker_pids)
        assert pool.wait(app.call_pipeline(pipeline, 2, use_worker=True).job_id, timeout=20).value == 5


def test_worker_that_cannot_load_the_pipeline_fails_the_job_with_the_reason(pool, tmp_path, monkeypatch):
    module_dir = tmp_path / "parent_only"
    module_dir.mkdir()
    (module_dir / "parent_only_ops.py").write_text(
        "from chariots_core import BaseOp\n"
        "class ParentOnlyOp(BaseOp):\n"
        "    def execute(self, x):\n"
        "        return x\n"
    )
    monkeypatch.syspath_prepend(str(module_dir))  # the parent can import it, the workers cannot
    from parent_only_ops import ParentOnlyOp

    pipeline = Pipeline([Node(ParentOnlyOp(), input_nodes=[IN], output_nodes=OUT)], name="parent-only")
    app = make_app(pool, pipeline)
    response = pool.wait(app.call_pipeline(pipeline, 1, use_worker=True).job_id, timeout=20)
    assert response.job_status is JobStatus.failed
    assert response.error["type"] == "ModuleNotFoundError"
    assert "could not load the job's pipeline" in response.error["message"]
    assert "parent_only_ops" in response.error["message"]


def test_unserializable_pipeline_or_input_is_refused_at_submission(pool):
    class StreamingOp(BaseOp):
        def __init__(self):
            super().__init__()
            self.stream = (number for number in range(3))  # generators cannot be pickled

        def execute(self, x):
            return x

    locked = Pipeline([Node(StreamingOp(), input_nodes=[IN], output_nodes=OUT)], name="locked")
    plain = add_pipeline()
    app = make_app(pool, locked, plain)
    with pytest.raises(SerializationError, match="pipeline 'locked' cannot be sent to a worker process"):
        app.call_pipeline(locked, 1, use_worker=True)
    with pytest.raises(SerializationError, match="the input of pipeline 'add'"):
        app.call_pipeline(plain, (number for number in range(3)), use_worker=True)
    assert app.op_store.jobs() == []  # nothing half-submitted


# -- load ----------------------------------------------------------------------------------
def test_200_jobs_from_4_threads_all_reach_done_with_correct_values(pool):
    pipeline = add_pipeline(amount=1000)
    app = make_app(pool, pipeline)
    submitted: dict[int, str] = {}
    lock = threading.Lock()

    def submit(thread_index: int) -> None:
        for number in range(thread_index * 50, thread_index * 50 + 50):
            job_id = app.call_pipeline(pipeline, number, use_worker=True).job_id
            with lock:
                submitted[number] = job_id

    threads = [threading.Thread(target=submit, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(submitted.values())) == 200
    for number, job_id in submitted.items():
        response = pool.wait(job_id, timeout=60)
        assert response.job_status is JobStatus.done
        assert response.value == number + 1000
    assert {job.status for job in app.op_store.jobs()} == {"done"}


# -- which ops a job runs --------------------------------------------------------------------
def test_job_runs_the_ops_loaded_when_it_was_submitted(tmp_path):
    with MultiprocessWorkerPool(n_workers=1) as pool:
        pipeline = add_pipeline(amount=3)
        app = make_app(pool, pipeline)
        gate = str(tmp_path / "gate")
        blocker = app.call_pipeline(pipeline, gate, use_worker=True).job_id
        old = app.call_pipeline(pipeline, 1, use_worker=True).job_id  # queued behind the blocker
        old_versions = app.pipeline_versions(pipeline)
        replacement_op = add_pipeline(amount=100).pipeline_nodes[0].op
        app.install_ops(pipeline, {"addop": replacement_op})
        new = app.call_pipeline(pipeline, 1, use_worker=True).job_id
        open(gate, "w").close()
        assert pool.wait(blocker, timeout=20).job_status is JobStatus.done
        old_response, new_response = pool.wait(old, timeout=20), pool.wait(new, timeout=20)
        assert (old_response.value, new_response.value) == (4, 101)
        assert old_response.versions == old_versions
        assert new_response.versions == app.pipeline_versions(pipeline) != old_versions


def test_a_pipeline_crosses_to_a_worker_once_not_once_per_job(tmp_path):
    loads = tmp_path / "loads.txt"

    class CountedOp(BaseOp):
        """Appends a line to ``loads`` each time it is unpickled."""

        def __init__(self, path):
            super().__init__()
            self.path = str(path)

        def __setstate__(self, state):
            self.__dict__.update(state)
            with open(self.path, "a") as file:
                file.write("loaded\n")

        def execute(self, x):
            return x

    pipeline = Pipeline([Node(CountedOp(loads), input_nodes=[IN], output_nodes=OUT)], name="counted")
    with MultiprocessWorkerPool(n_workers=1) as pool:
        app = make_app(pool, pipeline)
        for number in range(5):
            assert pool.wait(app.call_pipeline(pipeline, number, use_worker=True).job_id, 20).value == number
        assert loads.read_text().count("loaded") == 1
        app.install_ops(pipeline, {"countedop": CountedOp(loads)})  # a new pipeline object
        assert pool.wait(app.call_pipeline(pipeline, 9, use_worker=True).job_id, 20).value == 9
        assert loads.read_text().count("loaded") == 2


def test_job_that_fits_brings_the_trained_model_back_for_save_pipeline(pool):
    class MeanModel(BaseMLOp):
        training_update_version = VersionType.MAJOR

        def fit(self, numbers):
            self._model = sum(numbers) / len(numbers)

        def predict(self, number):
            return number - self._model

    train = Pipeline([Node(MeanModel(MLMode.FIT), input_nodes=[IN])], name="train")
    predict = Pipeline([Node(MeanModel(MLMode.PREDICT), input_nodes=[IN], output_nodes=OUT)], name="predict")
    app = make_app(pool, train, predict)
    untrained = app.pipeline_versions(train)["meanmodel"]

    response = pool.wait(app.call_pipeline(train, [1, 2, 3, 6], use_worker=True).job_id, timeout=20)
    assert response.job_status is JobStatus.done, response.error
    trained = response.versions["meanmodel"]
    assert trained != untrained
    assert app.pipeline_versions(train)["meanmodel"] == trained  # installed before "done"

    app.save_pipeline(train)
    assert app.load_pipeline(predict) == {"meanmodel": trained}
    assert app.call_pipeline(predict, 10).value == 7.0
    # the loaded model also predicts in a worker
    in_worker = pool.wait(app.call_pipeline(predict, 4, use_worker=True).job_id, timeout=20)
    assert (in_worker.value, in_worker.versions["meanmodel"]) == (1.0, trained)


# -- when a call goes to a worker ------------------------------------------------------------
FLAGS = (True, False, None)


@pytest.mark.parametrize("with_pool", [True, False], ids=["pool", "no-pool"])
def test_precedence_of_app_pipeline_and_request_flags(pool, with_pool):
    """Every combination: an explicit False anywhere wins, else any True means a worker."""
    for app_flag, pipeline_flag, request_flag in itertools.product(FLAGS, repeat=3):
        flags = (app_flag, pipeline_flag, request_flag)
        pipeline = add_pipeline(use_worker=pipeline_flag)
        app = make_app(pool if with_pool else None, pipeline, use_worker=app_flag)
        asynchronous = False not in flags and True in flags
        if asynchronous and not with_pool:
            with pytest.raises(WorkerError, match="asked to run in a worker but the app has no worker pool"):
                app.call_pipeline(pipeline, 1, use_worker=request_flag)
            continue
        response = app.call_pipeline(pipeline, 1, use_worker=request_flag)
        if asynchronous:
            assert response.job_status is JobStatus.queued, flags
            assert pool.wait(response.job_id, timeout=20).value == 4
        else:
            assert (response.value, response.job_id, response.job_status) == (4, None, JobStatus.done), flags  # a synchronous call is done
            assert app.op_store.jobs() == []


# -- persistence ---------------------------------------------------------------------------
def test_job_record_survives_an_app_restart(tmp_path):
    pytest.importorskip("chariots_lmdb")
    pytest.importorskip("chariots_fsspec")
    pipeline = add_pipeline()
    with MultiprocessWorkerPool(n_workers=1) as pool:
        app = Chariots([pipeline], path=tmp_path, worker_pool=pool)
        done = app.call_pipeline(pipeline, 4, use_worker=True).job_id
        failed = app.call_pipeline(pipeline, "boom", use_worker=True).job_id
        pool.wait(failed, timeout=20)
        app.close()
    restarted = Chariots([pipeline], path=tmp_path)
    try:
        assert restarted.fetch_job(done).value == 7
        assert restarted.fetch_job(failed).error["node"] == "addop"
    finally:
        restarted.close()


# -- shutdown ------------------------------------------------------------------------------
def test_close_is_idempotent_and_leaves_no_process_behind():
    pool = MultiprocessWorkerPool(n_workers=2)
    pipeline = add_pipeline()
    app = make_app(pool, pipeline)
    job_id = app.call_pipeline(pipeline, 1, use_worker=True).job_id
    pids = pool.worker_pids
    assert len(pids) == 2 and all(is_running(pid) for pid in pids)
    pool.close()
    assert app.fetch_job(job_id).value == 4  # close let the job finish
    assert not any(is_running(pid) for pid in pids)
    pool.close()
    assert pool.n_workers == 0
    with pytest.raises(WorkerError, match="closed"):
        app.call_pipeline(pipeline, 1, use_worker=True)
    with pytest.raises(WorkerError, match="closed"):
        pool.spawn_worker()


def test_workers_exit_when_the_parent_process_dies(tmp_path):
    script = tmp_path / "doomed_parent.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, signal, time
            from chariots_core import BaseOp, Chariots, Node, Pipeline
            from chariots_multiprocess import MultiprocessWorkerPool

            class SleepOp(BaseOp):
                def execute(self, x):
                    time.sleep(120)

            if __name__ == "__main__":
                pool = MultiprocessWorkerPool(2)
                nodes = [Node(SleepOp(), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")]
                app = Chariots([Pipeline(nodes, name="sleep")], op_store="memory", saver="memory", worker_pool=pool)
                job_id = app.call_pipeline("sleep", 1, use_worker=True).job_id
                while app.fetch_job(job_id).job_status.value != "running":
                    time.sleep(0.01)
                print(*pool.worker_pids, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)  # no close(), no atexit: a crash
            """
        )
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    pids = [int(pid) for pid in result.stdout.split()]
    assert len(pids) == 2, result.stderr
    wait_until(lambda: not any(is_running(pid) for pid in pids), timeout=20)


def test_context_manager_closes_the_pool():
    with MultiprocessWorkerPool(n_workers=1) as pool:
        pids = pool.worker_pids
    assert not any(is_running(pid) for pid in pids)


def test_close_with_timeout_fails_unfinished_jobs_and_kills_their_workers(tmp_path):
    pool = MultiprocessWorkerPool(n_workers=1)
    pipeline = add_pipeline()
    app = make_app(pool, pipeline)
    stuck = app.call_pipeline(pipeline, str(tmp_path / "never"), use_worker=True).job_id
    queued = app.call_pipeline(pipeline, 1, use_worker=True).job_id
    wait_until(lambda: app.fetch_job(stuck).job_status is JobStatus.running)
    pids = pool.worker_pids
    pool.close(timeout=0.1)
    for job_id in (stuck, queued):
        response = app.fetch_job(job_id)
        assert response.job_status is JobStatus.failed
        assert "the pool was closed before the job finished" in response.error["message"]
    assert not any(is_running(pid) for pid in pids)


def test_spawn_worker_adds_a_worker(pool):
    pool.spawn_worker()
    assert pool.n_workers == 3 and len(set(pool.worker_pids)) == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_workers": 0}, "'n_workers' must be a positive int"),
        ({"n_workers": True}, "'n_workers' must be a positive int"),
        ({"pipeline_cache_size": 0}, "'pipeline_cache_size' must be a positive int"),
        ({"start_method": "fork"}, "'fork' is refused"),
    ],
)
def test_invalid_arguments_are_refused(kwargs, message):
    with pytest.raises(WorkerError, match=message):
        MultiprocessWorkerPool(**kwargs)
