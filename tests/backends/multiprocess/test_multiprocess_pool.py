"""MultiprocessWorkerPool with real worker processes: what only it does (crashes, processes,
pipelines sent by value, shutdown and interpreter exit). What every pool does is in
``tests/conformance/test_worker_pool_conformance.py``.

The plain pipeline comes from ``chariots_test_jobs``, which workers import; ops defined inside
a test are sent by value (the "lambdas and locally defined ops" promise): the workers never
import this module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("multiprocess")

import chariots_test_jobs  # noqa: E402
from chariots_test_jobs import add_pipeline  # noqa: E402
from chariots_test_processes import is_running, wait_until  # noqa: E402

from chariots_core import (  # noqa: E402
    BaseOp,
    Chariots,
    JobStatus,
    Node,
    Pipeline,
)
from chariots_core.errors import SerializationError, WorkerError  # noqa: E402
from chariots_core.ml import MLMode  # noqa: E402
from chariots_multiprocess import MultiprocessWorkerPool  # noqa: E402

IN, OUT = "__pipeline_input__", "__pipeline_output__"


def make_app(pool, *pipelines, **kwargs) -> Chariots:
    return Chariots(list(pipelines), op_store="memory", saver="memory", worker_pool=pool, **kwargs)


@pytest.fixture
def pool():
    with MultiprocessWorkerPool(n_workers=2) as worker_pool:
        yield worker_pool


# -- what runs where ---------------------------------------------------------------------------
def test_a_running_job_names_its_worker_process(pool, tmp_path):
    pipeline = add_pipeline()
    app = make_app(pool, pipeline)
    gate = str(tmp_path / "gate")
    job_id = app.call_pipeline(pipeline, gate, use_worker=True).job_id
    wait_until(lambda: app.fetch_job(job_id).job_status is JobStatus.running)
    assert app.job_store.get_job(job_id).worker in {f"pid {pid}" for pid in pool.worker_pids}
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
        after = pool.wait(app.call_pipeline(pipeline, 2, use_worker=True).job_id, timeout=20)
        assert after.value == 5, after  # the whole response, should this ever fail


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
    assert app.job_store.jobs() == []  # nothing half-submitted


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


def test_a_model_defined_by_value_comes_back_trained_as_the_apps_own_class(pool):
    """The worker sends the trained state (serialize()), not the op: dill would rebuild a class
    sent by value as another class object, which the app's pipelines would not recognise."""

    class MeanModel(chariots_test_jobs.MeanModel):
        """Defined here, so dill sends this class by value."""

    train = Pipeline([Node(MeanModel(MLMode.FIT), input_nodes=[IN])], name="train")
    predict = Pipeline([Node(MeanModel(MLMode.PREDICT), input_nodes=[IN], output_nodes=OUT)], name="predict")
    app = make_app(pool, train, predict)
    submitted = app.serving_pipeline(train).pipeline_nodes[0].op
    done = pool.wait(app.call_pipeline(train, [1, 2, 3, 6], use_worker=True).job_id, timeout=20)
    assert done.job_status is JobStatus.done, done.error
    installed = app.serving_pipeline(train).pipeline_nodes[0].op
    assert type(installed) is MeanModel and installed is not submitted
    assert submitted.op_version == MeanModel.__version__  # the op as submitted is left untrained
    app.save_pipeline(train)
    app.load_pipeline(predict)
    assert app.call_pipeline(predict, 10).value == 7.0


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


SLEEPING_APP = textwrap.dedent(
    """
    import json, os, signal, sys, time
    from chariots_core import BaseOp, Chariots, Node, Pipeline
    from chariots_multiprocess import MultiprocessWorkerPool

    class SleepOp(BaseOp):
        def execute(self, x):
            time.sleep(120)

    if __name__ == "__main__":
        data, ending = sys.argv[1], sys.argv[2]
        pool = MultiprocessWorkerPool(2)
        nodes = [Node(SleepOp(), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")]
        app = Chariots([Pipeline(nodes, name="sleep")], path=data, worker_pool=pool)
        jobs = [app.call_pipeline("sleep", n, use_worker=True).job_id for n in range(3)]  # the third waits
        while [app.fetch_job(job).job_status.value for job in jobs[:2]] != ["running"] * 2:
            time.sleep(0.01)
        print(json.dumps({"jobs": jobs, "workers": pool.worker_pids}), flush=True)
        if ending == "crash":
            os.kill(os.getpid(), signal.SIGKILL)  # no close(), no atexit
        # else the program ends, its pool never closed
    """
)


def run_sleeping_app(tmp_path, ending: str) -> dict:
    """Run SLEEPING_APP on an LMDB store under ``tmp_path / "data"``; what it printed."""
    pytest.importorskip("chariots_lmdb")
    pytest.importorskip("chariots_fsspec")
    script = tmp_path / "sleeping_app.py"
    script.write_text(SLEEPING_APP)
    result = run_script(script, str(tmp_path / "data"), ending)
    assert result.stdout, result.stderr
    return json.loads(result.stdout)


def test_workers_exit_when_the_parent_process_dies(tmp_path):
    report = run_sleeping_app(tmp_path, "crash")
    assert len(report["workers"]) == 2
    wait_until(lambda: not any(is_running(pid) for pid in report["workers"]), timeout=20)


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


# -- a program that never closes its pool ------------------------------------------------------
FORGETFUL_SCRIPT = textwrap.dedent(
    """
    from chariots_core import Chariots
    from chariots_multiprocess import MultiprocessWorkerPool

    if __name__ == "__main__":
        app = Chariots([], op_store="memory", saver="memory", worker_pool=MultiprocessWorkerPool(2))
    """
)


def run_script(path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_a_program_that_never_closes_its_pool_exits_every_time(tmp_path):
    script = tmp_path / "forgetful.py"
    script.write_text(FORGETFUL_SCRIPT)
    with ThreadPoolExecutor(3) as runs:  # several at once: a loaded machine is where exits raced
        results = list(runs.map(lambda _: run_script(script), range(30)))  # each raises TimeoutExpired if it hangs
    assert [result.returncode for result in results] == [0] * 30, [result.stderr for result in results]


def test_exiting_never_waits_on_a_replacement_worker(tmp_path):
    """multiprocess's exit handler terminates the children, then joins those alive: a worker
    replaced in between was joined for ever. Widen that window to a second to see it closed."""
    script = tmp_path / "slow_exit.py"
    script.write_text(
        textwrap.dedent(
            """
            import time
            from multiprocess import popen_forkserver
            from chariots_core import Chariots
            from chariots_multiprocess import MultiprocessWorkerPool

            terminate = popen_forkserver.Popen.terminate

            def terminate_then_wait(self):
                terminate(self)
                time.sleep(1.0)  # the pool's supervisor sees the death meanwhile

            popen_forkserver.Popen.terminate = terminate_then_wait
            if __name__ == "__main__":
                app = Chariots([], op_store="memory", saver="memory", worker_pool=MultiprocessWorkerPool(2))
            """
        )
    )
    result = run_script(script, timeout=30)
    assert result.returncode == 0, result.stderr


def test_jobs_left_unfinished_at_exit_are_recorded_failed_with_the_reason(tmp_path):
    report = run_sleeping_app(tmp_path, "exit")
    assert not any(is_running(pid) for pid in report["workers"])
    with Chariots([], path=tmp_path / "data") as app:
        for job_id in report["jobs"]:  # two running, one queued
            failed = app.fetch_job(job_id)
            assert failed.job_status is JobStatus.failed
            assert failed.error["message"] == (
                "the program exited before the job finished (its worker pool was never closed)"
            )
