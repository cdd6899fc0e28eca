"""map_pipeline: in process, as jobs on any pool, and in chunks on a pool that maps."""

from __future__ import annotations

import io
import sys

import pytest

from chariots_core import BaseOp, Chariots, InProcessWorkerPool, Node, Pipeline
from chariots_core.errors import NodeExecutionError, UnknownPipelineError, WorkerError
from chariots_core.serving.batch import BatchWorkerPool

IN, OUT = "__pipeline_input__", "__pipeline_output__"


class Triple(BaseOp):
    def execute(self, x):
        if x < 0:
            raise ValueError(f"negative {x}")
        return 3 * x


def triple_pipeline() -> Pipeline:
    return Pipeline([Node(Triple(), input_nodes=[IN], output_nodes=OUT)], "triple")


def with_negative_at(index: int, length: int) -> list[int]:
    """``range(length)`` with -1 at ``index``: the input that fails."""
    return [-1 if n == index else n for n in range(length)]


class ReversedMapPool(InProcessWorkerPool):
    """A pool that maps: it runs the chunks here and hands them back last first."""

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__(n_workers=2)
        self.fail_after = fail_after
        self.calls = 0

    def map_unordered(self, function, shared, items):
        results = [(index, function(shared, item)) for index, item in enumerate(items)]
        for count, result in enumerate(reversed(results)):
            if self.fail_after is not None and count == self.fail_after:
                raise OSError("the cluster went away")
            self.calls += 1
            yield result


@pytest.fixture
def app():
    with Chariots([triple_pipeline()], op_store="memory", saver="memory") as chariots:
        yield chariots


@pytest.fixture
def without_tqdm(monkeypatch):
    """As if tqdm were not installed (it is optional)."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)


def test_without_a_pool_values_come_in_input_order_with_progress(app, capsys, without_tqdm):
    assert app.map_pipeline("triple", range(20)) == [3 * n for n in range(20)]
    err = capsys.readouterr().err
    assert "map_pipeline 'triple': 20/20 inputs (100%)" in err
    assert "map_pipeline 'triple': 2/20 inputs (10%)" in err
    assert err.count("\n") == 10  # not a terminal: a line every 10%


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_plain_progress_line_is_rewritten_in_place(app, monkeypatch, without_tqdm):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert app.map_pipeline("triple", range(300)) == [3 * n for n in range(300)]
    text = terminal.getvalue()
    last = text.rsplit("\r", 1)[1]
    assert text.startswith("\rmap_pipeline 'triple': ")
    assert last.startswith("map_pipeline 'triple': 300/300 inputs (100%), ") and last.endswith(" inputs/s\n")
    assert text.count("\n") == 1  # one line, finished once


def test_with_tqdm_installed_progress_is_a_tqdm_bar(app, capsys):
    pytest.importorskip("tqdm")
    assert app.map_pipeline("triple", range(20)) == [3 * n for n in range(20)]
    err = capsys.readouterr().err
    assert "map_pipeline 'triple': 100%|" in err and "20/20" in err and "input/s" in err


def test_progress_can_be_silenced_and_no_input_gives_no_value(app, capsys):
    assert app.map_pipeline("triple", [1, 2], progress=False) == [3, 6]
    assert app.map_pipeline("triple", []) == []
    assert capsys.readouterr().err == ""


def test_the_first_failing_input_is_named_with_its_index_and_node(app):
    with pytest.raises(NodeExecutionError, match=r"input #13 \(-1\): ValueError: .*negative -1") as caught:
        app.map_pipeline("triple", with_negative_at(13, 20), progress=False)
    assert caught.value.node_name == "triple"


def test_an_unknown_pipeline_is_refused(app):
    with pytest.raises(UnknownPipelineError):
        app.map_pipeline("nope", [1])


def test_any_worker_pool_runs_a_batch_as_jobs(app):
    with InProcessWorkerPool(n_workers=3) as pool:
        assert not isinstance(pool, BatchWorkerPool)
        assert app.map_pipeline("triple", range(12), worker_pool=pool, progress=False) == [3 * n for n in range(12)]
        assert len(app.job_store.jobs()) == 12
        with pytest.raises(NodeExecutionError, match="input #13"):
            app.map_pipeline("triple", with_negative_at(13, 15), worker_pool=pool, progress=False)


def test_the_app_pool_is_used_by_default():
    with InProcessWorkerPool(n_workers=2) as pool:
        chariots = Chariots([triple_pipeline()], op_store="memory", saver="memory", worker_pool=pool)
        assert chariots.map_pipeline("triple", [1, 2, 3], progress=False) == [3, 6, 9]
        assert len(chariots.job_store.jobs()) == 3


def test_a_mapping_pool_gets_chunks_and_its_results_are_put_back_in_order(app):
    with ReversedMapPool() as pool:
        assert isinstance(pool, BatchWorkerPool)
        assert app.map_pipeline("triple", range(100), worker_pool=pool, progress=False) == [3 * n for n in range(100)]
        assert 1 < pool.calls <= pool.n_workers * 8
        assert app.job_store.jobs() == []  # a batch leaves no job records
        with pytest.raises(NodeExecutionError, match="input #13"):
            app.map_pipeline("triple", with_negative_at(13, 100), worker_pool=pool, progress=False)


def test_a_pool_that_breaks_mid_batch_is_a_worker_error_naming_the_missing_inputs(app):
    with ReversedMapPool(fail_after=1) as pool:
        with pytest.raises(WorkerError, match=r"OSError: the cluster went away\. Inputs #0-#.* did not complete"):
            app.map_pipeline("triple", range(40), worker_pool=pool, progress=False)
