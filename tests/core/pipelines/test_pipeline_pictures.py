"""Pipelines drawn through their public API: to_dot, to_mermaid, picture, the notebook SVG, repr."""

from __future__ import annotations

import pytest
from chariots_test_ops import AddOneOp, IsOddOp, ScaleOp
from chariots_test_pictures import HOSTILE, node_groups, svg_tree, texts

from chariots_core import BaseOp, DataLoadingNode, DataSavingNode, Node, Pipeline
from chariots_core.ml import BaseMLOp, JSONSerializer, MLMode
from chariots_core.show import Picture, render

IN, OUT = "__pipeline_input__", "__pipeline_output__"


class Split(BaseOp):
    def execute(self, value):
        return value, -value


class Join(BaseOp):
    def execute(self, first, second):
        return first + second


class Mean(BaseMLOp):
    def fit(self, values):
        self._model = sum(values) / len(values)

    def predict(self, values):
        return [value - self._model for value in values]


def branching() -> Pipeline:
    """Input -> split (two outputs) -> a branch each -> join -> output, plus a dataset and a model."""
    return Pipeline([
        Node(Split(), input_nodes=[IN], output_nodes=["left", "right"]),
        Node(AddOneOp(), input_nodes=["left"], output_nodes="left_plus"),
        Node(ScaleOp(), input_nodes=["right"], output_nodes="right_scaled"),
        Node(Join(), input_nodes=["left_plus", "right_scaled"], output_nodes=OUT),
        DataLoadingNode(JSONSerializer(), "values.json", output_nodes="values"),
        Node(Mean(MLMode.FIT), input_nodes=["values"]),
    ], "branching")  # fmt: skip


def nested() -> Pipeline:
    inner = Pipeline([
        Node(AddOneOp(), input_nodes=[IN], output_nodes="plus"),
        Node(IsOddOp(), input_nodes=["plus"], output_nodes=OUT),
    ], "inner")  # fmt: skip
    return Pipeline([
        Node(AddOneOp(), input_nodes=[IN], output_nodes="first"),
        Node(inner, input_nodes=["first"], output_nodes="odd", name="check"),
        DataSavingNode(JSONSerializer(), "odd.json", input_nodes=["odd"], output_nodes=OUT),
    ], "outer")  # fmt: skip


def by_label(picture: Picture) -> dict[str, object]:
    return {node.label: node for node in picture.nodes}


def edges_by_label(picture: Picture) -> set[tuple[str, str, str]]:
    labels = {node.id: node.label for node in picture.nodes}
    return {(labels[edge.source], labels[edge.target], edge.label) for edge in picture.edges}


def test_the_picture_has_a_box_per_node_shaped_by_kind_and_an_arrow_per_value():
    picture = branching().picture()
    nodes = by_label(picture)
    assert {label: node.kind for label, node in nodes.items()} == {
        "input": "input", "split": "op", "addoneop": "op", "scaleop": "loadable", "join": "op", "output": "output",
        "load:values.json": "data", "mean": "loadable",
    }  # fmt: skip
    assert nodes["mean"].detail == "Mean · fit"
    assert "saved to and loaded from the op store" in nodes["scaleop"].tooltip
    assert edges_by_label(picture) == {
        ("input", "split", ""), ("split", "addoneop", "left"), ("split", "scaleop", "right"),
        ("addoneop", "join", "left_plus"), ("scaleop", "join", "right_scaled"), ("join", "output", ""),
        ("load:values.json", "mean", "values"),
    }  # fmt: skip


def test_a_nested_pipeline_is_a_frame_with_its_own_input_and_output():
    picture = nested().picture()
    assert [(cluster.label, cluster.parent) for cluster in picture.clusters] == [("check", None)]
    inside = sorted((node.label, node.kind) for node in picture.nodes if node.cluster == picture.clusters[0].id)
    assert inside == [("addoneop", "op"), ("input", "input"), ("isoddop", "op"), ("output", "output")]
    labels = {node.id: (node.label, node.cluster is not None) for node in picture.nodes}
    edges = {(labels[edge.source], labels[edge.target], edge.label) for edge in picture.edges}
    assert (("addoneop", False), ("input", True), "first") in edges  # the outer value enters the frame
    assert (("output", True), ("save:odd.json", False), "odd") in edges  # and its result leaves it
    assert (("save:odd.json", False), ("output", False), "") in edges


def test_nesting_two_levels_deep_nests_the_frames():
    deepest = nested()
    outer = Pipeline([Node(deepest, input_nodes=[IN], output_nodes=OUT, name="wrapped")], "top")
    picture = outer.picture()
    parents = {cluster.label: cluster.parent for cluster in picture.clusters}
    ids = {cluster.label: cluster.id for cluster in picture.clusters}
    assert parents == {"wrapped": None, "check": ids["wrapped"]}
    svg_tree(outer._repr_svg_())


def test_to_dot_and_to_mermaid_draw_the_same_picture():
    pipeline = branching()
    assert pipeline.to_dot() == render(pipeline, "dot")
    assert pipeline.to_mermaid() == render(pipeline, "mermaid")
    dot = pipeline.to_dot()
    assert dot.startswith('digraph "branching"') and "shape=cylinder" in dot and "peripheries=2" in dot
    assert '-> "n' in dot and 'label="right_scaled"' in dot


def test_the_notebook_svg_shows_every_node():
    pipeline = branching()
    root = svg_tree(pipeline._repr_svg_())
    assert sorted(texts(group)[0] for group in node_groups(root)) == sorted(by_label(pipeline.picture()))


def test_a_hostile_node_name_is_escaped_in_every_format():
    pipeline = Pipeline([Node(AddOneOp(), input_nodes=[IN], output_nodes=OUT, name=HOSTILE)], "hostile")
    svg = pipeline._repr_svg_()
    svg_tree(svg)
    assert "<script" not in svg and "<script" not in pipeline.to_mermaid()
    assert '"<script>alert(\\"x\\")' in pipeline.to_dot()


def test_the_picture_travels_as_json():
    picture = nested().picture()
    assert Picture.from_dict(picture.to_dict()) == picture


def test_repr_summarises_the_pipeline_and_str_keeps_the_seed_form():
    pipeline = branching()
    assert repr(pipeline) == (
        "<Pipeline 'branching' (input -> output): 6 nodes: split, addoneop, scaleop*, join, load:values.json, "
        "mean*; * saved in the op store>"
    )
    assert str(pipeline) == "<OP branching>"
    assert repr(nested()) == "<Pipeline 'outer' (input -> output): 3 nodes: addoneop, check[2 nodes], save:odd.json>"


def test_repr_of_a_long_pipeline_is_cut():
    chain = [Node(AddOneOp(), input_nodes=[IN], output_nodes="v0", name="n0")]
    chain += [Node(AddOneOp(), input_nodes=[f"v{i - 1}"], output_nodes=f"v{i}", name=f"n{i}") for i in range(1, 30)]
    text = repr(Pipeline(chain, "long"))
    assert text == "<Pipeline 'long' (input -> no output): 30 nodes: n0, n1, n2, n3, n4, n5, n6, n7, ... 22 more>"


@pytest.mark.parametrize("fmt", ["dot", "mermaid", "svg", "html"])
def test_a_pipeline_of_many_ops_draws_in_every_format(fmt):
    nodes = [Node(AddOneOp(), input_nodes=[IN], output_nodes="v0", name="n0")]
    for index in range(1, 200):
        inputs = [f"v{index - 1}"] + ([f"v{index // 2}"] if index % 7 == 0 and index // 2 < index - 1 else [])
        op = Join() if len(inputs) == 2 else AddOneOp()
        nodes.append(Node(op, input_nodes=inputs, output_nodes=f"v{index}", name=f"n{index}"))
    text = render(Pipeline(nodes, "big"), fmt)
    assert "n199" in text
