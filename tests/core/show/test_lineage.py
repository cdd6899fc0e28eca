"""The lineage of versions: a frame per op, versions newest first, links, marks and missing ends."""

from __future__ import annotations

import pytest
from chariots_test_pictures import node_groups, svg_tree, texts

from chariots_core.errors import PictureError
from chariots_core.show import Lineage, OpVersion, VersionLink, render

T = 1_717_000_000.0


def iris_lineage() -> Lineage:
    return Lineage(
        versions=[
            OpVersion("irispca", "aaaaaaa/1111111/2222222", T - 7200, "train_iris"),
            OpVersion("irispca", "bbbbbbb/1111111/2222222", T - 3600, "train_iris", serving="pred_iris"),
            OpVersion("irispca", "ccccccc/1111111/2222222", T, "train_pca", newest=True),
            OpVersion("irisrf", "ddddddd/3333333/4444444", T - 3600, "train_iris", serving=("pred_iris",), newest=True),
        ],
        links=[
            VersionLink("irispca", "bbbbbbb/1111111/2222222", "irisrf", "ddddddd/3333333/4444444", stale="irispca was retrained by train_pca"),
            VersionLink("irispca", "0000000/1111111/2222222", "irisrf", "eeeeeee/3333333/4444444"),
        ],
    )


def test_each_op_is_a_frame_of_its_versions_newest_first():
    picture = iris_lineage().picture()
    frames = {cluster.id: cluster.label for cluster in picture.clusters}
    rows = [(frames[node.cluster], node.label, node.kind, node.marks) for node in picture.nodes]
    assert rows == [
        ("irispca", "ccccccc/1111111/2222222", "version", ("newest",)),
        ("irispca", "bbbbbbb/1111111/2222222", "version", ("serving",)),
        ("irispca", "aaaaaaa/1111111/2222222", "version", ()),
        ("irisrf", "ddddddd/3333333/4444444", "version", ("serving", "newest")),
        ("irispca", "0000000/1111111/2222222", "missing", ()),  # a link names it: drawn dashed, not dropped
        ("irisrf", "eeeeeee/3333333/4444444", "missing", ()),
    ]
    serving = next(node for node in picture.nodes if node.label.startswith("bbbbbbb"))
    assert serving.detail == "serving pred_iris" and "saved" in serving.tooltip and "'train_iris'" in serving.tooltip


def test_links_become_edges_and_stale_ones_say_why():
    picture = iris_lineage().picture()
    labels = {node.id: node.label[:7] for node in picture.nodes}
    edges = [(labels[edge.source], labels[edge.target], edge.marks, edge.tooltip) for edge in picture.edges]
    assert edges[0] == ("bbbbbbb", "ddddddd", ("stale",), "irispca was retrained by train_pca")
    assert edges[1][:3] == ("0000000", "eeeeeee", ()) and "was built on" in edges[1][3]


def test_old_versions_are_cut_but_served_ones_kept():
    versions = [OpVersion("op", f"v{index:02d}", T + index, "train", serving="pred" if index == 0 else ()) for index in range(30)]
    picture = Lineage(versions).picture(max_versions_per_op=5)
    assert [node.label for node in picture.nodes] == ["v29", "v28", "v27", "v26", "v25", "v00"]
    assert picture.clusters[0].label == "op (+24 older)"
    assert len(Lineage(versions).picture(max_versions_per_op=None).nodes) == 30


def test_the_lineage_draws_in_every_format_and_travels_as_json():
    lineage = iris_lineage()
    assert Lineage.from_dict(lineage.to_dict()) == lineage
    root = svg_tree(lineage._repr_svg_())
    assert len(node_groups(root)) == 6
    assert [g.get("class") for g in root.iter("{http://www.w3.org/2000/svg}g") if "edge" in g.get("class", "")][0] == "edge stale"
    assert "serving pred_iris" in {text for group in node_groups(root) for text in texts(group)}
    assert render(lineage, "dot").count("subgraph") == 2
    assert "classDef serving" in render(lineage, "mermaid")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: OpVersion("", "v", T, "p"), "'op_name' of a OpVersion must be a non-empty string"),
        (lambda: OpVersion("op", "v", "yesterday", "p"), "could not convert string to float"),
        (lambda: Lineage.from_dict({"versions": [{"op_name": "op"}]}), r"expected a lineage dict.*required field missing @ \$\.versions\[0\]\.version"),
    ],
)
def test_malformed_lineage_data_is_refused(make, expected):
    with pytest.raises((PictureError, ValueError), match=expected):
        make()
