"""The picture model: checked on creation, every problem named, and round-tripped through JSON."""

from __future__ import annotations

import json

import pytest

from chariots_core.errors import PictureError
from chariots_core.show import Cluster, Picture, PictureEdge, PictureNode, combine


def test_a_consistent_picture_round_trips_through_json():
    picture = Picture(
        "t",
        [PictureNode("a", "A", "loadable", "detail", "c", ("serving",), "tip"), PictureNode("b", "B")],
        [PictureEdge("a", "b", "value", ("stale",), "why")],
        [Cluster("c", "frame", tooltip="nested")],
    )
    assert Picture.from_dict(json.loads(json.dumps(picture.to_dict()))) == picture
    assert picture.node("a").name == "A"  # the name defaults to the label


def test_every_inconsistency_is_reported_at_once():
    with pytest.raises(PictureError) as caught:
        Picture(
            "broken",
            [PictureNode("a", "A", cluster="nowhere"), PictureNode("a", "again"), PictureNode("c", "C")],
            [PictureEdge("a", "ghost")],
            [Cluster("c", "both a node and a cluster"), Cluster("x", "X", parent="y"), Cluster("y", "Y", parent="x")],
        )
    message = str(caught.value)
    assert "picture 'broken' is inconsistent" in message
    for expected in (
        "two nodes have the id 'a'",
        "node 'a' is in cluster 'nowhere', which the picture does not have",
        "edge 'a' -> 'ghost' names node 'ghost'",
        "'c' is the id of a node and of a cluster",
        "cluster 'x' is nested inside itself",
    ):
        assert expected in message


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: PictureNode("a", "A", kind="hexagon"), "'kind' of a picture node must be one of op, loadable"),
        (lambda: PictureNode("a", "A", marks=("shiny",)), "'marks' may only hold serving, newest, stale, behind (got 'shiny')"),
        (lambda: PictureNode("a", 3), "'label' of a PictureNode must be a string (got 3)"),
        (lambda: PictureEdge("a", None), "'target' of a PictureEdge must be a string (got None)"),
        (lambda: Picture("t", ["not a node"]), "'not a node' is not a PictureNode"),
    ],
)
def test_wrong_values_are_refused_with_the_field_named(make, expected):
    with pytest.raises(PictureError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_from_dict_names_what_is_wrong():
    with pytest.raises(PictureError, match=r"expected a picture dict.*required field missing @ \$.nodes\[0\].label"):
        Picture.from_dict({"title": "t", "nodes": [{"id": "a"}]})
    with pytest.raises(PictureError, match=r"expected a picture dict; make it with Picture.to_dict\(\) \(got a list\)"):
        Picture.from_dict([])
    with pytest.raises(PictureError, match=r"'kind' of a picture node"):
        Picture.from_dict({"title": "t", "nodes": [{"id": "a", "label": "A", "kind": "blob"}]})


def test_combine_frames_each_picture_and_keeps_ids_apart():
    first = Picture("one", [PictureNode("a", "A", cluster="c")], [], [Cluster("c", "inner")])
    second = Picture("two", [PictureNode("a", "A"), PictureNode("b", "B")], [PictureEdge("a", "b")])
    both = combine([first, second], "both")
    assert [(cluster.label, cluster.parent) for cluster in both.clusters] == [
        ("one", None), ("inner", "p0.frame"), ("two", None),
    ]  # fmt: skip
    assert [(node.id, node.cluster) for node in both.nodes] == [("p0.a", "p0.c"), ("p1.a", "p1.frame"), ("p1.b", "p1.frame")]
    assert [(edge.source, edge.target) for edge in both.edges] == [("p1.a", "p1.b")]
