"""map_pipeline on MultiprocessWorkerPool: batches in chunks on real worker processes.

Ops are defined inside functions on purpose: dill sends them to the workers by value, so the
workers never import this module.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time

import pytest

pytest.importorskip("multiprocess")

from chariots_test_processes import wait_until  # noqa: E402

from chariots_core import BaseOp, Chariots, Node, Pipeline  # noqa: E402
from chariots_core.errors import NodeExecutionError, SerializationError, WorkerError  # noqa: E402
from chariots_core.serving.batch import BatchWorkerPool  # noqa: E402
from chariots_multiprocess import MultiprocessWorkerPool  # noqa: E402

IN, OUT = "__pipeline_input__", "__pipeline_output__"


def add_pipeline(log_loads_to: str | None = None) -> Pipeline:
    """x -> x + 3, with test hooks chosen by the input:

    - ``"boom"`` raises ValueError;
    - ``("gate", started, gate)``: writes the worker's pid to ``started``, waits until ``gate``
      exists, then returns ``"gated"``;
    - ``("die", marker)``: the worker SIGKILLs itself (and notes its pid in ``marker``);
    - ``("die once", marker)``: the same, unless ``marker`` exists (a retry then succeeds).

    With ``log_loads_to``, each unpickling of the op appends the process id to that file.
    """

    class AddOp(BaseOp):
        def __init__(self):
            super().__init__()
            self.log = log_loads_to

        def __setstate__(self, state):
            self.__dict__.update(state)
            if self.log is not None:
                with open(self.log, "a") as file:
                    file.write(f"{os.getpid()}\n")

        def execute(self, x):
            if x == "boom":
                raise ValueError("boom on purpose")
            if isinstance(x, tuple) and x[0] == "gate":
                _, started, gate = x
                with open(started, "w") as file:
                    file.write(str(os.getpid()))
                while not os.path.exists(gate):
                    time.sleep(0.01)
                return "gated"
            if isinstance(x, tuple) and x[0] in ("die", "die once"):
                kind, marker = x
                if kind == "die" or not os.path.exists(marker):
                    with open(marker, "a") as file:
                        file.write(f"{os.getpid()}\n")
                    os.kill(os.getpid(), signal.SIGKILL)
                return "survived"
            return x + 3

    return Pipeline([Node(AddOp(), input_nodes=[IN], output_nodes=OUT)], name="add")


def make_app(pipeline: Pipeline | None = None) -> Chariots:
    return Chariots([pipeline or add_pipeline()], op_store="memory", saver="memory")



def missing_ranges(message: str) -> list[range]:
    """The input ranges a map_pipeline WorkerError says did not complete."""
    listed = message.split("Inputs ", 1)[1].split(" did not complete", 1)[0]
    return [range(int(first), int(last) + 1) for first, last in re.findall(r"#(\d+)-#(\d+)", listed)]


@pytest.fixture
def pool():
    with MultiprocessWorkerPool(n_workers=2) as worker_pool:
        yield worker_pool


# -- results ---------------------------------------------------------------------------------
def test_values_come_in_input_order_and_leave_no_job_record(pool):
    app = Chariots([add_pipeline()], op_store="memory", saver="memory", worker_pool=pool)
    assert isinstance(pool, BatchWorkerPool)
    assert app.map_pipeline("add", range(300), progress=False) == [n + 3 for n in range(300)]  # the app's pool
    assert app.job_store.jobs() == []
    # jobs still run on the same workers after a batch
    job_id = app.call_pipeline("add", 1, use_worker=True).job_id
    assert pool.wait(job_id, timeout=20).value == 4


def test_the_pipeline_crosses_once_per_worker_not_once_per_chunk(pool, tmp_path):
    loads = tmp_path / "loads.txt"
    app = make_app(add_pipeline(log_loads_to=str(loads)))
    loads.write_text("")  # whatever the parent did while building the app
    assert app.map_pipeline("add", range(200), worker_pool=pool, progress=False) == [n + 3 for n in range(200)]
    worker_loads = [int(pid) for pid in loads.read_text().split() if int(pid) != os.getpid()]
    # 16 chunks went out; each worker unpickled the pipeline at most once
    assert 1 <= len(worker_loads) <= pool.n_workers
    assert len(set(worker_loads)) == len(worker_loads)
    assert set(worker_loads) <= set(pool.worker_pids)


def test_map_unordered_yields_every_index_once(pool):
    results = dict(pool.map_unordered(lambda shared, item: shared * item, 10, list(range(25))))
    assert results == {index: 10 * index for index in range(25)}


def test_no_input_gives_no_value_and_starts_nothing(pool, capsys):
    app = make_app()
    assert app.map_pipeline("add", [], worker_pool=pool) == []
    assert list(pool.map_unordered(lambda shared, item: item, None, [])) == []
    assert capsys.readouterr().err == ""


def test_progress_goes_to_stderr(pool, capsys):
    app = make_app()
    assert app.map_pipeline("add", range(40), worker_pool=pool) == [n + 3 for n in range(40)]
    captured = capsys.readouterr()
    assert "map_pipeline 'add': " in captured.err and "40/40" in captured.err  # a tqdm bar or a plain line
    assert captured.out == ""


# -- failures --------------------------------------------------------------------------------
def test_an_op_failing_on_one_input_names_its_index_and_node(pool):
    app = make_app()
    inputs = ["boom" if n == 57 else n for n in range(100)]
    with pytest.raises(NodeExecutionError, match=r"input #57 \('boom'\): ValueError: .*boom on purpose") as caught:
        app.map_pipeline("add", inputs, worker_pool=pool, progress=False)
    assert caught.value.node_name == "addop"
    # the workers survived, and the rest of the failed batch does not leak into the next one
    assert app.map_pipeline("add", range(30), worker_pool=pool, progress=False) == [n + 3 for n in range(30)]
    assert pool.n_workers == 2


def test_a_function_that_raises_is_a_worker_error_naming_the_item(pool):
    def halve(shared, item):
        if item == 7:
            raise ArithmeticError("seven is not welcome")
        return item // 2

    with pytest.raises(WorkerError, match=r"item #7 of batch .* ArithmeticError: seven is not welcome"):
        list(pool.map_unordered(halve, None, list(range(12))))


def test_a_worker_killed_mid_batch_has_its_chunk_retried_on_the_replacement(pool, tmp_path):
    app = make_app()
    started, gate = str(tmp_path / "started"), str(tmp_path / "gate")
    inputs: list = list(range(40))
    inputs[17] = ("gate", started, gate)
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["values"] = app.map_pipeline("add", inputs, worker_pool=pool, progress=False)
        except Exception as exc:  # reported to the test thread below
            outcome["error"] = exc

    batch = threading.Thread(target=run)
    batch.start()
    wait_until(lambda: os.path.exists(started) and open(started).read())
    victim = int(open(started).read())
    assert victim in pool.worker_pids
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in pool.worker_pids and pool.n_workers == 2)
    open(gate, "w").close()  # the retried chunk may now finish
    batch.join(60)
    assert not batch.is_alive()
    assert "error" not in outcome, outcome.get("error")
    assert outcome["values"] == [("gated" if n == 17 else n + 3) for n in range(40)]


def test_an_input_that_dies_once_is_retried_and_the_batch_completes(pool, tmp_path, caplog):
    app = make_app()
    marker = str(tmp_path / "died")
    inputs: list = list(range(30))
    inputs[5] = ("die once", marker)
    with caplog.at_level(logging.WARNING, logger="chariots_multiprocess"):
        values = app.map_pipeline("add", inputs, worker_pool=pool, progress=False)
    assert values == [("survived" if n == 5 else n + 3) for n in range(30)]
    (victim,) = map(int, open(marker).read().split())
    assert victim not in pool.worker_pids and pool.n_workers == 2
    (warning,) = [record.getMessage() for record in caplog.records if "running it again" in record.getMessage()]
    assert f"worker process {victim} was killed by signal SIGKILL while running item #" in warning
    assert "second try" not in warning


def test_an_input_that_kills_every_worker_fails_the_batch_naming_the_missing_inputs(pool, tmp_path):
    app = make_app()
    marker = str(tmp_path / "died")
    inputs: list = list(range(40))
    inputs[21] = ("die", marker)
    with pytest.raises(WorkerError, match="was killed by signal SIGKILL") as caught:
        app.map_pipeline("add", inputs, worker_pool=pool, progress=False)
    message = str(caught.value)
    assert "map_pipeline of 'add'" in message and "second try" in message
    assert any(21 in missing for missing in missing_ranges(message))
    victims = [int(pid) for pid in open(marker).read().split()]
    assert len(victims) == 2  # tried twice, on two different workers
    assert len(set(victims)) == 2
    # the pool replaced both and still works
    wait_until(lambda: pool.n_workers == 2 and not set(victims) & set(pool.worker_pids))
    assert app.map_pipeline("add", range(10), worker_pool=pool, progress=False) == [n + 3 for n in range(10)]


def test_an_unserializable_input_is_refused_before_anything_runs(pool):
    app = make_app()
    generator = (number for number in range(3))  # generators cannot be pickled
    with pytest.raises(SerializationError, match=r"item #\d+ of batch .* cannot be sent to a worker process"):
        app.map_pipeline("add", [1, generator], worker_pool=pool, progress=False)


# -- shutdown --------------------------------------------------------------------------------
def test_map_after_close_is_a_worker_error():
    app = make_app()
    pool = MultiprocessWorkerPool(n_workers=1)
    pool.close()
    with pytest.raises(WorkerError, match="this worker pool is closed"):
        app.map_pipeline("add", [1, 2], worker_pool=pool, progress=False)
    with pytest.raises(WorkerError, match="this worker pool is closed"):
        pool.map_unordered(lambda shared, item: item, None, [1])


def test_close_with_timeout_fails_a_running_batch(tmp_path):
    app = make_app()
    pool = MultiprocessWorkerPool(n_workers=1)
    started = str(tmp_path / "started")
    inputs: list = list(range(20))
    inputs[0] = ("gate", started, str(tmp_path / "never"))
    outcome: dict = {}

    def run() -> None:
        try:
            app.map_pipeline("add", inputs, worker_pool=pool, progress=False)
        except Exception as exc:  # reported to the test thread below
            outcome["error"] = exc

    batch = threading.Thread(target=run)
    batch.start()
    wait_until(lambda: os.path.exists(started))
    pids = pool.worker_pids
    pool.close(timeout=0.1)
    batch.join(30)
    assert not batch.is_alive()
    assert isinstance(outcome.get("error"), WorkerError)
    assert "the pool was closed before the batch finished" in str(outcome["error"])
    assert any(0 in missing for missing in missing_ranges(str(outcome["error"])))
    assert pool.n_workers == 0 and pids
