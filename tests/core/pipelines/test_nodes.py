"""Nodes through the public API: names, wiring by strings and by node objects, reserved names."""

from __future__ import annotations

import pytest
from chariots_test_ops import AddOneOp, IsOddOp

from chariots_core import (
    BaseNode,
    BaseOp,
    ChariotsError,
    LoadableOp,
    Node,
    Pipeline,
    ReservedNodes,
    SequentialRunner,
    VersionedField,
    VersionType,
)
from chariots_core.errors import PipelineDefinitionError


class SplitOp(BaseOp):
    def execute(self, value):
        return value, -value


class AddOp(BaseOp):
    def execute(self, left, right):
        return left + right


class ConstantOp(BaseOp):
    value = VersionedField(7, VersionType.MAJOR)

    def execute(self):
        return self.value


def run(nodes, pipeline_input=None, name="under_test"):
    return SequentialRunner().run(Pipeline(nodes, name), pipeline_input)


def test_reserved_nodes_have_the_seed_names():
    assert ReservedNodes.pipeline_input.reference == "__pipeline_input__"
    assert ReservedNodes.pipeline_output.reference == "__pipeline_output__"
    assert ReservedNodes("__pipeline_input__") is ReservedNodes.pipeline_input


def test_reserved_nodes_can_be_used_instead_of_their_names():
    nodes = [
        Node(AddOneOp(), input_nodes=[ReservedNodes.pipeline_input], output_nodes="added"),
        Node(IsOddOp(), input_nodes=["added"], output_nodes=ReservedNodes.pipeline_output),
    ]
    assert run(nodes, 4) is True


def test_node_name_defaults_to_the_op_name_and_can_be_overridden():
    assert Node(AddOneOp()).name == "addoneop"
    renamed = Node(AddOneOp(), name="first_increment")
    assert renamed.name == "first_increment"
    assert renamed.op.name == "addoneop"  # the op keeps its own name
    assert repr(renamed) == "<Node 'first_increment'>"


def test_node_version_and_flags_come_from_the_op():
    class Saved(LoadableOp):
        def execute(self, value):
            return value

    assert Node(ConstantOp()).node_version is ConstantOp.__version__
    assert Node(Saved()).is_loadable is True
    assert Node(ConstantOp()).is_loadable is False
    assert Node(ConstantOp()).requires_runner is False
    inner = Pipeline([Node(AddOneOp(), input_nodes=["__pipeline_input__"],
                           output_nodes="__pipeline_output__")], "inner")
    assert Node(inner).requires_runner is True
    assert Node(inner).node_version == inner.op_version


def test_node_rejects_what_is_not_an_op_with_the_fix():
    expected = r"'op' must be a BaseOp or a Pipeline.*got <function.*wrap your function in a BaseOp"
    with pytest.raises(PipelineDefinitionError, match=expected):
        Node(lambda x: x)


def test_output_nodes_as_a_string_or_a_list():
    assert Node(AddOneOp(), output_nodes="a").output_references == ["a"]
    assert Node(SplitOp(), output_nodes=["a", "b"]).output_references == ["a", "b"]
    assert Node(AddOneOp(), input_nodes=["x", "y"]).input_references == ["x", "y"]


def test_a_single_input_may_be_given_without_a_list():
    nodes = [
        Node(AddOneOp(), input_nodes="__pipeline_input__", output_nodes="added"),
        Node(IsOddOp(), input_nodes="added", output_nodes="__pipeline_output__"),
    ]
    assert nodes[1].input_references == ["added"]  # not ['a', 'd', 'd', 'e', 'd']
    assert run(nodes, 2) is True


def test_wiring_that_is_not_a_list_is_rejected_at_once():
    expected = r"'input_nodes' must be a list of value names or nodes \(got 3 that is a int\)"
    with pytest.raises(PipelineDefinitionError, match=expected):
        Node(AddOneOp(), input_nodes=3)
    with pytest.raises(PipelineDefinitionError, match="'output_nodes' must be a list"):
        Node(AddOneOp(), output_nodes=2.5)


def test_a_tuple_result_is_split_across_output_nodes():
    nodes = [
        Node(SplitOp(), input_nodes=["__pipeline_input__"], output_nodes=["pos", "neg"]),
        Node(AddOp(), input_nodes=["neg", "pos"], output_nodes="__pipeline_output__"),
    ]
    assert run(nodes, 5) == 0


def test_a_node_with_a_single_output_keeps_a_tuple_whole():
    nodes = [Node(SplitOp(), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")]
    assert run(nodes, 5) == (5, -5)


def test_a_node_can_be_referenced_by_object_for_its_single_output():
    first = Node(AddOneOp(), input_nodes=["__pipeline_input__"], output_nodes="added")
    second = Node(IsOddOp(), input_nodes=[first], output_nodes="__pipeline_output__")
    assert second.input_references == ["added"]
    assert run([first, second], 2) is True


def test_a_node_without_outputs_can_be_referenced_by_object():
    constant = Node(ConstantOp())  # no output name at all
    added = Node(AddOp(), input_nodes=[constant, "__pipeline_input__"], output_nodes="__pipeline_output__")
    assert run([added, constant], 3) == 10
    # its implicit output is unique to the node
    assert Node(ConstantOp()).output_references != constant.output_references


def test_an_output_can_be_declared_with_a_node_object():
    first = Node(AddOneOp(), input_nodes=["__pipeline_input__"], output_nodes="added")
    echo = Node(AddOneOp(), input_nodes=[first], output_nodes=[first])
    assert echo.output_references == ["added"]
    with pytest.raises(PipelineDefinitionError, match="'added' is produced by two nodes"):
        Pipeline([first, echo], "twice")


def test_using_a_multi_output_node_by_object_names_the_outputs_to_choose_from():
    split = Node(SplitOp(), input_nodes=["__pipeline_input__"], output_nodes=["pos", "neg"])
    consumer = Node(IsOddOp(), input_nodes=[split], output_nodes="__pipeline_output__")
    with pytest.raises(ChariotsError) as info:
        Pipeline([split, consumer], "ambiguous")
    message = str(info.value)
    assert isinstance(info.value, PipelineDefinitionError)
    assert "node 'isoddop' uses node 'splitop' in input_nodes" in message
    assert "2 outputs ('pos', 'neg')" in message
    assert "name the output you mean as a string" in message


def test_a_wiring_entry_that_is_neither_string_nor_node_is_reported():
    bad = Node(AddOneOp(), input_nodes=[3], output_nodes="__pipeline_output__")
    expected = r"'input_nodes' of node 'addoneop' must hold strings or nodes \(got 3 that is a int\)"
    with pytest.raises(PipelineDefinitionError, match=expected):
        Pipeline([bad], "bad_wiring")


def test_custom_base_node_subclass_runs_in_a_pipeline():
    class DoubleNode(BaseNode):
        @property
        def name(self):
            return "double"

        @property
        def node_version(self):
            return ConstantOp.__version__

        def execute(self, value):
            return value * 2

    nodes = [
        DoubleNode(input_nodes=["__pipeline_input__"], output_nodes="doubled"),
        Node(AddOneOp(), input_nodes=["doubled"], output_nodes="__pipeline_output__"),
    ]
    assert run(nodes, 4) == 9


def test_base_node_must_define_its_abstract_members():
    class Incomplete(BaseNode):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()


# -- savers and rebuilding -----------------------------------------------------------------
def test_op_nodes_need_no_saver_and_binding_one_changes_nothing():
    from chariots_core import MemorySaver

    node = Node(AddOneOp(), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")
    assert node.require_saver is False
    assert node.bind_saver(MemorySaver()) is node
    pipeline = Pipeline([node], "plain")
    assert pipeline.bind_saver(MemorySaver()) is pipeline
    assert list(pipeline.saver_nodes()) == []


def test_replace_nodes_rebuilds_around_node_objects_used_as_inputs():
    first = Node(AddOneOp(), input_nodes=["__pipeline_input__"])  # unnamed output, used by object
    last = Node(IsOddOp(), input_nodes=[first], output_nodes="__pipeline_output__")
    inner = Pipeline([first, last], "inner")
    outer = Pipeline([Node(inner, input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")], "outer")
    assert outer.replace_nodes(lambda node: node) is outer

    def swap(node):
        return node.with_op(IsOddOp()) if node is first else node

    swapped = outer.replace_nodes(swap)
    assert swapped is not outer and swapped.name == "outer"
    assert SequentialRunner().run(swapped, 4) is False  # 4 is even, and so is False (0)
    assert SequentialRunner().run(outer, 4) is True and isinstance(first.op, AddOneOp)
    assert [node.name for node in swapped.op_nodes()] == ["addoneop", "isoddop"]  # the name is kept
