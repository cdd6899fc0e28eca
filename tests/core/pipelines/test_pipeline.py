"""Pipelines through the public API: validation errors, DAG shapes, nesting, descriptions."""

from __future__ import annotations

import pytest
from chariots_test_ops import AddOneOp, IsOddOp

from chariots_core import (
    BaseOp,
    ChariotsError,
    LoadableOp,
    Node,
    Pipeline,
    PipelineCallback,
    SequentialRunner,
    Version,
    VersionedField,
    VersionType,
)
from chariots_core.errors import PipelineDefinitionError

IN, OUT = "__pipeline_input__", "__pipeline_output__"


class DoubleOp(BaseOp):
    factor = VersionedField(2, VersionType.MAJOR)

    def execute(self, value):
        return value * self.factor


class SumOp(BaseOp):
    def execute(self, *values):
        return sum(values)


class PairOp(BaseOp):
    def execute(self, value):
        return value, value * 10


class ModelOp(LoadableOp):
    def execute(self, value):
        return value

    def serialize(self) -> bytes:
        return b""

    def load(self, serialized_object: bytes) -> None:
        pass


def run(pipeline, pipeline_input=None):
    return SequentialRunner().run(pipeline, pipeline_input)


def definition_error(nodes, name="broken", **kwargs) -> str:
    """Build the pipeline, expecting a PipelineDefinitionError; return its message."""
    with pytest.raises(PipelineDefinitionError) as info:
        Pipeline(nodes, name, **kwargs)
    assert isinstance(info.value, ChariotsError) and isinstance(info.value, ValueError)
    return str(info.value)


# -- validation: each error names the node and the fix ----------------------------------------
def test_unknown_input_names_the_node_and_suggests_the_closest_value():
    message = definition_error([
        Node(AddOneOp(), input_nodes=[IN], output_nodes="added_number"),
        Node(IsOddOp(), input_nodes=["added_numbr"], output_nodes=OUT),
    ])
    assert message == (
        "pipeline 'broken' is invalid: node 'isoddop' takes input 'added_numbr', which no node "
        "produces; did you mean 'added_number'?"
    )


def test_unknown_input_without_close_match_says_to_add_a_producer():
    message = definition_error([Node(IsOddOp(), input_nodes=["zzz"], output_nodes=OUT)])
    assert "node 'isoddop' takes input 'zzz', which no node produces; add a node that outputs it" in message


def test_input_from_a_node_missing_from_the_pipeline_names_that_node():
    outside = Node(AddOneOp(), input_nodes=[IN], name="forgotten")
    message = definition_error([Node(IsOddOp(), input_nodes=[outside], output_nodes=OUT)])
    assert "node 'isoddop' takes the output of node 'forgotten', which is not part of pipeline 'broken'" in message
    assert "add that node to the pipeline's nodes" in message


def test_duplicate_outputs_name_both_nodes():
    message = definition_error([
        Node(AddOneOp(), input_nodes=[IN], output_nodes="x"),
        Node(DoubleOp(), input_nodes=[IN], output_nodes="x"),
        Node(SumOp(), input_nodes=["x"], output_nodes=OUT),
    ])
    assert "output 'x' is produced by two nodes, 'addoneop' and 'doubleop'; rename one of the outputs" in message


def test_a_node_listing_an_output_twice_is_reported_as_such():
    message = definition_error([Node(PairOp(), input_nodes=[IN], output_nodes=["a", "a"])])
    assert "node 'pairop' lists output 'a' twice in output_nodes; give each output its own name" in message


def test_pipeline_output_produced_twice_is_its_own_error():
    # The seed's "async_pipeline" example wires two IsOddOp nodes to the output.
    with pytest.raises(PipelineDefinitionError) as info:
        Pipeline(use_worker=True, pipeline_nodes=[
            Node(AddOneOp(), input_nodes=[IN], output_nodes=["added_number"]),
            Node(IsOddOp(), input_nodes=["added_number"], output_nodes=[OUT]),
            Node(IsOddOp(), input_nodes=["added_number"], output_nodes=[OUT]),
        ], name="async_pipeline")
    assert "'__pipeline_output__' is produced twice, by nodes 'isoddop' and 'isoddop'" in str(info.value)
    assert "a pipeline has one output, so rename one of them" in str(info.value)


@pytest.mark.parametrize(
    ("wiring", "expected"),
    [
        ({"input_nodes": ["__pipeline_inpt__"]},
         "node 'addoneop' uses '__pipeline_inpt__' in input_nodes: names of the form '__x__' are "
         "reserved and the only ones are '__pipeline_input__' and '__pipeline_output__'; "
         "did you mean '__pipeline_input__'?"),
        ({"input_nodes": [IN], "output_nodes": "__pipeline_ouptut__"},
         "node 'addoneop' uses '__pipeline_ouptut__' in output_nodes: names of the form '__x__' "
         "are reserved and the only ones are '__pipeline_input__' and '__pipeline_output__'; "
         "did you mean '__pipeline_output__'?"),
        ({"input_nodes": ["__private__"]}, "give the value a name without '__'"),
        ({"input_nodes": [IN], "output_nodes": IN},
         "node 'addoneop' produces '__pipeline_input__', which only the caller provides. "
         "Give the output another name"),
        ({"input_nodes": [OUT]},
         "node 'addoneop' takes '__pipeline_output__' as an input; it can only be an output. "
         "Give the value another name"),
    ],
)
def test_reserved_name_misuse_is_reported_with_the_fix(wiring, expected):
    assert expected in definition_error([Node(AddOneOp(), **wiring)])


def test_an_item_that_is_not_a_node_is_reported_with_how_to_wrap_it():
    message = definition_error([AddOneOp()])
    assert "item 0 of pipeline 'broken' must be a node (got <AddOneOp op 'addoneop'> that is a AddOneOp)" in message
    assert "wrap ops as Node(op, input_nodes=..., output_nodes=...)" in message


def test_a_single_node_instead_of_a_list_is_reported():
    node = Node(AddOneOp(), input_nodes=[IN], output_nodes=OUT)
    assert "'pipeline_nodes' must be a list of nodes" in definition_error(node)


def test_the_same_node_listed_twice_is_reported():
    node = Node(AddOneOp(), input_nodes=[IN], output_nodes=OUT)
    message = definition_error([node, node])
    assert "node 'addoneop' is listed twice (items 0 and 1)" in message


@pytest.mark.parametrize("name", ["", "has space", "slash/name", "_leading", None, 3])
def test_bad_names_are_rejected(name):
    message = definition_error([Node(AddOneOp(), input_nodes=[IN], output_nodes=OUT)], name=name)
    assert (
        "'name' must be a non-empty string of letters, digits, '_', '.' and '-' starting with "
        f"a letter or digit (got {name!r})"
    ) in message


@pytest.mark.parametrize("name", ["is_odd", "v1.2-beta", "A", "0day"])
def test_good_names_are_accepted(name):
    assert Pipeline([Node(AddOneOp(), input_nodes=[IN], output_nodes=OUT)], name).name == name


def test_bad_options_are_rejected():
    nodes = [Node(AddOneOp(), input_nodes=[IN], output_nodes=OUT)]
    assert "'use_worker' must be True, False or None (got 1)" in definition_error(nodes, use_worker=1)
    message = definition_error(nodes, pipeline_callbacks=[print])
    assert "'pipeline_callbacks' must hold PipelineCallback objects" in message


def test_every_problem_is_reported_together():
    message = definition_error(
        [
            Node(AddOneOp(), input_nodes=["missing"], output_nodes="x"),
            Node(DoubleOp(), input_nodes=[IN], output_nodes="x"),
            Node(IsOddOp(), input_nodes=["__pipeline_inpt__"], output_nodes=OUT),
            Node(SumOp(), input_nodes=["loop_b"], output_nodes="loop_a"),
            Node(SumOp(), input_nodes=["loop_a"], output_nodes="loop_b"),
            "not a node",
        ],
        name="bad name",
        use_worker="yes",
    )
    assert message.startswith("pipeline 'bad name' is invalid (7 problems):\n  - ")
    for fragment in [
        "'name' must be",
        "'use_worker' must be",
        "item 5 of pipeline 'bad name' must be a node",
        "output 'x' is produced by two nodes",
        "'__pipeline_inpt__' in input_nodes",
        "node 'addoneop' takes input 'missing'",
        "its nodes form a cycle",
    ]:
        assert fragment in message


# -- cycles name the nodes and the values along them ------------------------------------------
def test_cycle_names_the_values_along_it_when_nodes_share_a_name():
    message = definition_error([
        Node(AddOneOp(), input_nodes=["b"], output_nodes="a"),
        Node(AddOneOp(), input_nodes=["a"], output_nodes="b"),
        Node(IsOddOp(), input_nodes=["b"], output_nodes=OUT),
    ])
    assert message == (
        "pipeline 'broken' is invalid: its nodes form a cycle: 'addoneop' (item 0) --'a'--> "
        "'addoneop' (item 1) --'b'--> 'addoneop' (item 0). A node cannot depend on its own "
        "output: take one of 'a', 'b' from outside the cycle (rename that input or output)"
    )


def test_cycle_downstream_of_the_first_stuck_node_is_found():
    message = definition_error([
        Node(IsOddOp(), input_nodes=["c"], output_nodes=OUT),
        Node(SumOp(), input_nodes=["c", IN], output_nodes="a", name="first"),
        Node(SumOp(), input_nodes=["a"], output_nodes="b", name="second"),
        Node(SumOp(), input_nodes=["b"], output_nodes="c", name="third"),
    ])
    assert "'first' --'a'--> 'second' --'b'--> 'third' --'c'--> 'first'" in message


def test_a_node_consuming_its_own_output_is_a_cycle():
    message = definition_error([Node(AddOneOp(), input_nodes=["self"], output_nodes="self")])
    assert "its nodes form a cycle: 'addoneop' --'self'--> 'addoneop'" in message


# -- shapes ---------------------------------------------------------------------------------
def test_nodes_run_in_topological_order_whatever_the_listing_order():
    order = []

    class Recording(BaseOp):
        def __init__(self, label):
            super().__init__()
            self.label = label

        def execute(self, *values):
            order.append(self.label)
            return sum(values) + 1

    nodes = [
        Node(Recording("d"), input_nodes=["b", "c"], output_nodes=OUT),
        Node(Recording("c"), input_nodes=["a"], output_nodes="c"),
        Node(Recording("b"), input_nodes=["a"], output_nodes="b"),
        Node(Recording("a"), input_nodes=[IN], output_nodes="a"),
    ]
    pipeline = Pipeline(nodes, "reversed")
    # a=1+1=2, b=c=3, d=7
    assert run(pipeline, 1) == 7
    assert order == ["a", "c", "b", "d"]  # ties keep the listing order
    assert [node.op.label for node in pipeline.ordered_nodes] == order
    assert pipeline.pipeline_nodes == nodes


def test_branches_and_several_inputs_and_outputs():
    pipeline = Pipeline([
        Node(PairOp(), input_nodes=[IN], output_nodes=["small", "big"]),
        Node(AddOneOp(), input_nodes=["small"], output_nodes="small_plus"),
        Node(DoubleOp(), input_nodes=["big"], output_nodes="big_double"),
        Node(SumOp(), input_nodes=["small_plus", "big_double", "small", IN], output_nodes=OUT),
    ], "branches")
    # small=3, big=30, small_plus=4, big_double=60 -> 4 + 60 + 3 + 3
    assert run(pipeline, 3) == 70


def test_the_same_value_can_feed_a_node_twice():
    pipeline = Pipeline([Node(SumOp(), input_nodes=[IN, IN, IN], output_nodes=OUT)], "thrice")
    assert run(pipeline, 4) == 12


def test_node_with_no_outputs_runs_and_the_pipeline_returns_none():
    seen = []

    class Sink(BaseOp):
        def execute(self, value):
            seen.append(value)
            return "ignored"

    pipeline = Pipeline([
        Node(AddOneOp(), input_nodes=[IN], output_nodes="x"),
        Node(Sink(), input_nodes=["x"]),
    ], "sink")
    assert run(pipeline, 1) is None
    assert seen == [2]


def test_pipeline_without_input_ignores_what_it_is_given():
    class Source(BaseOp):
        def execute(self):
            return 41

    pipeline = Pipeline([
        Node(Source(), output_nodes="x"),
        Node(AddOneOp(), input_nodes=["x"], output_nodes=OUT),
    ], "source")
    assert run(pipeline) == 42
    assert run(pipeline, "unused") == 42


def test_pipeline_input_can_be_passed_straight_to_the_output():
    class Identity(BaseOp):
        def execute(self, value):
            return value

    pipeline = Pipeline([Node(Identity(), input_nodes=[IN], output_nodes=OUT)], "identity")
    payload = {"a": [1, 2]}
    assert run(pipeline, payload) is payload


# -- nesting -----------------------------------------------------------------------------------
def is_odd_after_add_one() -> Pipeline:
    return Pipeline([
        Node(AddOneOp(), input_nodes=[IN], output_nodes="added"),
        Node(IsOddOp(), input_nodes=["added"], output_nodes=OUT),
    ], "inner")


def test_nested_pipeline_with_a_single_input():
    outer = Pipeline([
        Node(DoubleOp(), input_nodes=[IN], output_nodes="doubled"),
        Node(is_odd_after_add_one(), input_nodes=["doubled"], output_nodes=OUT),
    ], "outer")
    assert run(outer, 3) is True  # 6 + 1 = 7 is odd


def test_nested_pipeline_with_several_inputs_receives_a_tuple():
    class Unpack(BaseOp):
        def execute(self, pair):
            left, right = pair
            return left - right

    inner = Pipeline([Node(Unpack(), input_nodes=[IN], output_nodes=OUT)], "difference")
    outer = Pipeline([
        Node(PairOp(), input_nodes=[IN], output_nodes=["small", "big"]),
        Node(inner, input_nodes=["big", "small"], output_nodes=OUT),
    ], "outer")
    assert run(outer, 2) == 18


def test_nested_pipeline_inside_a_nested_pipeline():
    middle = Pipeline([
        Node(AddOneOp(), input_nodes=[IN], output_nodes="x"),
        Node(is_odd_after_add_one(), input_nodes=["x"], output_nodes=OUT),
    ], "middle")
    outer = Pipeline([
        Node(middle, input_nodes=[IN], output_nodes="odd"),
        Node(SumOp(), input_nodes=["odd", IN], output_nodes=OUT),
    ], "outer")
    assert run(outer, 1) == 2  # 1+1+1 = 3 is odd -> True (1) + 1
    assert run(outer, 2) == 2  # 4 is even -> False (0) + 2
    assert [node.name for node in outer.op_nodes()] == ["addoneop", "addoneop", "isoddop", "sumop"]


def test_nested_pipeline_with_several_outputs():
    inner = Pipeline([Node(PairOp(), input_nodes=[IN], output_nodes=OUT)], "pairs")
    outer = Pipeline([
        Node(inner, input_nodes=[IN], output_nodes=["a", "b"]),
        Node(SumOp(), input_nodes=["b", "a"], output_nodes=OUT),
    ], "outer")
    assert run(outer, 2) == 22


def test_a_pipeline_cannot_be_executed_like_an_op():
    with pytest.raises(PipelineDefinitionError, match=r"run it with a runner, e\.g\. SequentialRunner\(\)\.run"):
        is_odd_after_add_one().execute(1)


# -- descriptions ----------------------------------------------------------------------------
def test_descriptions_of_a_pipeline():
    pipeline = is_odd_after_add_one()
    assert str(pipeline) == "<OP inner>"  # what chariots 0.2 printed
    assert set(pipeline.node_for_name) == {"addoneop", "isoddop"}
    versions = pipeline.get_pipeline_versions()
    assert [node.name for node in versions] == ["addoneop", "isoddop"]
    assert all(isinstance(version, Version) for version in versions.values())
    assert pipeline.op_version == Version() + AddOneOp.__version__ + IsOddOp.__version__
    assert pipeline.use_worker is None and pipeline.pipeline_callbacks == []


def test_op_edges_and_loadable_nodes_see_through_nesting():
    model = Node(ModelOp(), input_nodes=["added"], output_nodes=OUT, name="model")
    inner = Pipeline([Node(AddOneOp(), input_nodes=[IN], output_nodes="added"), model], "inner")
    first = Node(DoubleOp(), input_nodes=[IN], output_nodes="doubled")
    nested = Node(inner, input_nodes=["doubled"], output_nodes="modelled")
    last = Node(IsOddOp(), input_nodes=["modelled"], output_nodes=OUT)
    outer = Pipeline([last, nested, first], "outer")
    edges = [(up.name, down.name) for up, down in outer.op_edges()]
    assert edges == [("doubleop", "addoneop"), ("addoneop", "model"), ("model", "isoddop")]
    assert [node.name for node in outer.loadable_nodes()] == ["model"]


def test_replace_ops_rebuilds_the_pipeline_with_new_ops_including_nested_ones():
    class AddTwoOp(BaseOp):
        def execute(self, value):
            return value + 2

    outer = Pipeline([
        Node(is_odd_after_add_one(), input_nodes=[IN], output_nodes=OUT),
    ], "outer", pipeline_callbacks=[PipelineCallback()], use_worker=False)
    replaced = outer.replace_ops({"addoneop": AddTwoOp()})
    assert run(outer, 2) is True and run(replaced, 2) is False
    assert replaced.name == "outer" and replaced.use_worker is False
    assert len(replaced.pipeline_callbacks) == 1
