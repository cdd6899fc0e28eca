"""SequentialRunner through the public API: results, failures, memory release, long chains."""

from __future__ import annotations

import gc
import sys
import traceback
import weakref

import pytest
from chariots_test_ops import AddOneOp, IsOddOp

from chariots_core import (
    BaseOp,
    BaseRunner,
    ChariotsError,
    Node,
    Pipeline,
    PipelineCallback,
    SequentialRunner,
)
from chariots_core.errors import (
    NodeExecutionError,
    NotAPipelineError,
    PipelineDefinitionError,
    describe_failure,
    failed_node,
)

IN, OUT = "__pipeline_input__", "__pipeline_output__"


class Payload:
    """A weak-referenceable intermediate value."""

    def __init__(self, number):
        self.number = number


class MakePayload(BaseOp):
    def execute(self, number):
        return Payload(number)


class Unwrap(BaseOp):
    def execute(self, payload):
        return payload.number


class Probe(BaseOp):
    """Records, while it runs, whether the watched intermediate is still alive."""

    def __init__(self, watched: list):
        super().__init__()
        self.watched = watched
        self.alive_when_run: list[bool] = []

    def execute(self, value, *others):
        gc.collect()  # only refcounting should matter; this rules out a pending cycle
        self.alive_when_run.append(self.watched[0]() is not None)
        return value


class WatchingMakePayload(MakePayload):
    def __init__(self, watched: list):
        super().__init__()
        self.watched = watched

    def execute(self, number):
        payload = super().execute(number)
        self.watched.append(weakref.ref(payload))
        return payload


def run(pipeline, pipeline_input=None):
    return SequentialRunner().run(pipeline, pipeline_input)


def test_runner_is_a_base_runner_and_runs_the_seed_is_odd_pipeline():
    is_odd_pipeline = Pipeline([
        Node(AddOneOp(), input_nodes=[IN], output_nodes="modified"),
        Node(IsOddOp(), input_nodes=["modified"], output_nodes=[OUT]),
    ], "simple_pipeline")
    runner = SequentialRunner()
    assert isinstance(runner, BaseRunner)
    assert runner.run(is_odd_pipeline, 4) is True
    assert runner.run(pipeline=is_odd_pipeline, pipeline_input=3) is False
    assert runner.run(is_odd_pipeline, 4) is True  # a pipeline runs again from scratch


def test_running_something_that_is_not_a_pipeline_is_a_chariots_type_error():
    expected = (
        r"'pipeline' must be a Pipeline \(got <AddOneOp op 'addoneop'> that is a AddOneOp\); "
        r"build one with Pipeline\(nodes, name\)"
    )
    with pytest.raises(NotAPipelineError, match=expected) as info:
        run(AddOneOp(), 1)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ChariotsError)


# -- failures ----------------------------------------------------------------------------------
class Explode(BaseOp):
    def execute(self, value):
        raise ZeroDivisionError(f"cannot handle {value}")


@pytest.mark.parametrize("with_hooks", [False, True])
def test_an_op_raises_its_own_exception_noted_with_node_and_pipeline(with_hooks):
    """As in chariots 0.2, `except ZeroDivisionError` catches what the op raised."""

    class NodeWatcher(PipelineCallback):
        def before_node_execution(self, pipeline, node, args):
            pass

    pipeline = Pipeline(
        [
            Node(AddOneOp(), input_nodes=[IN], output_nodes="x"),
            Node(Explode(), input_nodes=["x"], output_nodes=OUT, name="exploder"),
        ],
        "fragile",
        pipeline_callbacks=[NodeWatcher()] if with_hooks else [],
    )
    with pytest.raises(ZeroDivisionError) as info:
        run(pipeline, 1)
    error = info.value
    assert str(error) == "cannot handle 2"
    assert error.__notes__ == ["in node 'exploder' of pipeline 'fragile'"]
    assert failed_node(error) == "exploder"
    assert describe_failure(error) == {
        "type": "ZeroDivisionError",
        "message": "cannot handle 2 (in node 'exploder' of pipeline 'fragile')",
        "node": "exploder",
    }
    assert "in node 'exploder' of pipeline 'fragile'" in "".join(traceback.format_exception(error))


def test_a_failure_inside_a_nested_pipeline_names_the_inner_node_and_pipeline():
    inner = Pipeline([Node(Explode(), input_nodes=[IN], output_nodes=OUT)], "inner")
    outer = Pipeline([
        Node(AddOneOp(), input_nodes=[IN], output_nodes="x"),
        Node(inner, input_nodes=["x"], output_nodes=OUT),
    ], "outer")
    with pytest.raises(ZeroDivisionError) as info:
        run(outer, 1)
    assert info.value.__notes__ == ["in node 'explode' of pipeline 'inner'", "in node 'inner' of pipeline 'outer'"]
    assert failed_node(info.value) == "explode"


def test_a_failure_in_the_middle_of_a_chain_names_that_node_and_stops_the_run():
    ran = []

    class Tracked(AddOneOp):
        def execute(self, value):
            ran.append(value)
            return super().execute(value)

    names = [f"step_{index}" for index in range(5)]
    nodes = []
    for index, name in enumerate(names):
        op = Explode() if index == 2 else Tracked()
        source = IN if index == 0 else names[index - 1]
        target = OUT if index == 4 else name
        nodes.append(Node(op, input_nodes=[source], output_nodes=target, name=name))
    with pytest.raises(ZeroDivisionError, match="cannot handle 12") as info:
        run(Pipeline(nodes, "chain_failure"), 10)
    assert failed_node(info.value) == "step_2"
    assert info.value.__notes__ == ["in node 'step_2' of pipeline 'chain_failure'"]
    assert ran == [10, 11]  # the nodes after the failure never ran


def test_a_new_runner_implements_only_run_and_inherits_checks_and_hook_order():
    calls = []

    class Recording(PipelineCallback):
        def before_execution(self, pipeline, args):
            calls.append(("before", pipeline.name, args))

        def before_node_execution(self, pipeline, node, args):
            calls.append(("node", node.name, args))

        def after_execution(self, pipeline, args, output):
            calls.append(("after", pipeline.name, output))

    class ReversedArgsRunner(BaseRunner):
        """Runs each node by hand from the plan: only _run is written."""

        def _run(self, pipeline, pipeline_input, node_hooks):
            value = pipeline_input
            for node in pipeline.ordered_nodes:
                for hook in node_hooks:
                    hook.before_node_execution(pipeline, node, [value])
                value = node.execute(value)
            return value

    pipeline = Pipeline(
        [Node(AddOneOp(), input_nodes=[IN], output_nodes="x"), Node(IsOddOp(), input_nodes=["x"], output_nodes=OUT)],
        "custom",
        pipeline_callbacks=[Recording()],
    )
    assert ReversedArgsRunner().run(pipeline, 2) is True
    assert calls == [("before", "custom", 2), ("node", "addoneop", [2]), ("node", "isoddop", [3]), ("after", "custom", True)]
    with pytest.raises(NotAPipelineError):
        ReversedArgsRunner().run("custom", 2)
    with pytest.raises(NotImplementedError, match="Unfinished must implement _run"):

        class Unfinished(BaseRunner):
            pass

        Unfinished().run(pipeline, 1)


def test_a_chariots_0_2_runner_that_overrides_run_still_works():
    class ConstantRunner(BaseRunner):
        def run(self, pipeline, pipeline_input=None):
            return 42

    assert ConstantRunner().run(Pipeline([Node(AddOneOp(), input_nodes=[IN], output_nodes=OUT)], "p"), 1) == 42


def test_chains_next_to_branches_and_joins_compute_the_right_values():
    class Sub(BaseOp):
        def execute(self, left, right):
            return left - right

    nodes = [
        Node(AddOneOp(), input_nodes=[IN], output_nodes="a"),          # a = x + 1
        Node(AddOneOp(), input_nodes=["a"], output_nodes="b"),         # b = x + 2, read twice
        Node(AddOneOp(), input_nodes=["b"], output_nodes="c"),         # chain c, d, e
        Node(AddOneOp(), input_nodes=["c"], output_nodes="d"),
        Node(AddOneOp(), input_nodes=["d"], output_nodes="e"),         # e = x + 5
        Node(Sub(), input_nodes=["e", "b"], output_nodes="f"),         # f = 3
        Node(AddOneOp(), input_nodes=["f"], output_nodes="g"),
        Node(Sub(), input_nodes=["g", IN], output_nodes=OUT),          # 4 - x
    ]
    for listing in (nodes, list(reversed(nodes))):
        assert run(Pipeline(listing, "mixed"), 10) == -6


class TwoOrNot(BaseOp):
    def __init__(self, result):
        super().__init__()
        self.result = result

    def execute(self, value):
        return self.result


@pytest.mark.parametrize(
    ("result", "got"), [((1, 2, 3), "3 values"), (5, "a int"), ([1], "1 values")]
)
@pytest.mark.parametrize("with_hooks", [False, True])
def test_wrong_number_of_outputs_names_the_node(result, got, with_hooks):
    class NodeWatcher(PipelineCallback):
        def after_node_execution(self, pipeline, node, args, output):
            pass

    pipeline = Pipeline(
        [Node(TwoOrNot(result), input_nodes=[IN], output_nodes=["a", "b"], name="splitter"),
         Node(AddOneOp(), input_nodes=["a"], output_nodes=OUT)],
        "outputs",
        pipeline_callbacks=[NodeWatcher()] if with_hooks else [],
    )
    with pytest.raises(NodeExecutionError) as info:
        run(pipeline, 0)
    assert str(info.value) == (
        f"node 'splitter' declares 2 outputs but its op returned {got}; "
        "return a tuple of 2 values or change output_nodes"
    )
    assert info.value.__notes__ == ["in node 'splitter' of pipeline 'outputs'"]
    assert info.value.node_name == "splitter" and info.value.error_type is None
    assert isinstance(info.value, ChariotsError) and isinstance(info.value, RuntimeError)


# -- memory: intermediates are dropped after their last consumer -----------------------------
@pytest.mark.parametrize("with_hooks", [False, True])
def test_an_intermediate_is_freed_as_soon_as_its_last_consumer_ran(with_hooks):
    class NodeWatcher(PipelineCallback):
        def before_node_execution(self, pipeline, node, args):
            pass

    watched: list = []
    probe = Probe(watched)
    pipeline = Pipeline(
        [
            Node(WatchingMakePayload(watched), input_nodes=[IN], output_nodes="payload"),
            Node(Unwrap(), input_nodes=["payload"], output_nodes="number"),
            Node(probe, input_nodes=["number"], output_nodes=OUT),
        ],
        "release",
        pipeline_callbacks=[NodeWatcher()] if with_hooks else [],
    )
    assert run(pipeline, 7) == 7
    assert probe.alive_when_run == [False]


def test_a_branched_intermediate_lives_until_its_last_consumer_ran():
    watched: list = []
    during, after = Probe(watched), Probe(watched)

    class KeepFirst(BaseOp):
        def execute(self, number, payload):
            return number

    pipeline = Pipeline(
        [
            Node(WatchingMakePayload(watched), input_nodes=[IN], output_nodes="payload"),
            Node(Unwrap(), input_nodes=["payload"], output_nodes="number"),
            Node(during, input_nodes=["number"], output_nodes="checked"),
            Node(KeepFirst(), input_nodes=["checked", "payload"], output_nodes="kept"),
            Node(after, input_nodes=["kept"], output_nodes=OUT),
        ],
        "branched_release",
    )
    assert run(pipeline, 3) == 3
    assert during.alive_when_run == [True]  # "payload" still has a consumer to come
    assert after.alive_when_run == [False]  # ... and is gone once KeepFirst ran


def test_an_unconsumed_output_is_not_kept():
    watched: list = []
    probe = Probe(watched)
    pipeline = Pipeline(
        [
            Node(WatchingMakePayload(watched), input_nodes=[IN], output_nodes="nobody_reads_this"),
            Node(probe, input_nodes=[IN], output_nodes=OUT),
        ],
        "discard",
    )
    assert run(pipeline, 1) == 1
    assert probe.alive_when_run == [False]


def test_outputs_split_from_a_tuple_are_freed_independently():
    watched: list = []
    probe = Probe(watched)

    class MakeBoth(WatchingMakePayload):
        def execute(self, number):
            return super().execute(number), number

    pipeline = Pipeline(
        [
            Node(MakeBoth(watched), input_nodes=[IN], output_nodes=["payload", "number"]),
            Node(Unwrap(), input_nodes=["payload"], output_nodes="unwrapped"),
            Node(probe, input_nodes=["unwrapped", "number"], output_nodes=OUT),
        ],
        "split_release",
    )
    assert run(pipeline, 5) == 5
    assert probe.alive_when_run == [False]


def test_a_nested_pipeline_frees_its_input_and_its_own_intermediates():
    watched: list = []
    probe = Probe(watched)
    inner = Pipeline([Node(Unwrap(), input_nodes=[IN], output_nodes=OUT)], "inner")
    pipeline = Pipeline(
        [
            Node(WatchingMakePayload(watched), input_nodes=[IN], output_nodes="payload"),
            Node(inner, input_nodes=["payload"], output_nodes="number"),
            Node(probe, input_nodes=["number"], output_nodes=OUT),
        ],
        "nested_release",
    )
    assert run(pipeline, 9) == 9
    assert probe.alive_when_run == [False]


# -- long chains: no recursion anywhere ------------------------------------------------------
def chain(length: int) -> Pipeline:
    nodes = [Node(AddOneOp(), input_nodes=[IN], output_nodes="v0")]
    for index in range(1, length - 1):
        nodes.append(Node(AddOneOp(), input_nodes=[f"v{index - 1}"], output_nodes=f"v{index}"))
    nodes.append(Node(AddOneOp(), input_nodes=[f"v{length - 2}"], output_nodes=OUT))
    return Pipeline(nodes, f"chain_{length}")


def test_a_ten_thousand_node_chain_builds_and_runs():
    assert run(chain(10_000), 0) == 10_000


def test_a_long_chain_needs_no_recursion_to_build_validate_or_run():
    previous = sys.getrecursionlimit()
    # Enough for pytest's own frames plus a few, far below the chain length.
    depth = len(_frames())
    sys.setrecursionlimit(depth + 60)
    try:
        nodes = [Node(AddOneOp(), input_nodes=[IN], output_nodes="v0")]
        for index in range(1, 3_000):
            # wire by node object, listed in reverse: the sort must do the work
            nodes.append(Node(AddOneOp(), input_nodes=[nodes[-1]], output_nodes=f"v{index}"))
        nodes.append(Node(IsOddOp(), input_nodes=[nodes[-1]], output_nodes=OUT))
        pipeline = Pipeline(list(reversed(nodes)), "deep")
        result = SequentialRunner().run(pipeline, 0)
        edges = pipeline.op_edges()
    finally:
        sys.setrecursionlimit(previous)
    assert result is False  # 3000 is even
    assert len(edges) == 3_000


def test_a_long_cycle_is_reported_without_recursion():
    nodes = [Node(AddOneOp(), input_nodes=["v4999"], output_nodes="v0")]
    nodes += [
        Node(AddOneOp(), input_nodes=[f"v{i - 1}"], output_nodes=f"v{i}") for i in range(1, 5_000)
    ]
    expected = r"its nodes form a cycle: 'addoneop' \(item 0\) --'v0'--> 'addoneop' \(item 1\)"
    with pytest.raises(PipelineDefinitionError, match=expected):
        Pipeline(nodes, "long_cycle")


def _frames() -> list:
    frames, frame = [], sys._getframe()
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return frames
