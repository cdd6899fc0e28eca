"""The SVG engine: well-formed documents, every node drawn, nothing overlapping, arrows that
reach their ends, any name escaped."""

from __future__ import annotations

import itertools

import pytest
from chariots_test_pictures import HOSTILE, SVG, node_groups, random_picture, svg_tree, texts

from chariots_core.show import Cluster, Picture, PictureEdge, PictureNode, render
from chariots_core.show.layout import LABEL_LIMIT, layout
from chariots_core.show.svg import to_svg


def overlap(a, b) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    return ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah


def inside(inner, outer) -> bool:
    ix, iy, iw, ih = inner
    ox, oy, ow, oh = outer
    return ox <= ix and oy <= iy and ix + iw <= ox + ow and iy + ih <= oy + oh


def check_geometry(picture: Picture) -> None:
    placed = layout(picture)
    boxes = placed.boxes
    assert set(boxes) == {node.id for node in picture.nodes}
    for (a, box_a), (b, box_b) in itertools.combinations(boxes.items(), 2):
        assert not overlap(box_a, box_b), (a, b)
    parents = {cluster.id: cluster.parent for cluster in picture.clusters}
    for node in picture.nodes:  # a node is inside every frame around it, and outside all others
        around = set(picture.cluster_path(node.cluster))
        for frame_id, frame in placed.frames.items():
            if frame_id in around:
                assert inside(boxes[node.id], frame), (node.id, frame_id)
            else:
                assert not overlap(boxes[node.id], frame), (node.id, frame_id)
    for (a, frame_a), (b, frame_b) in itertools.combinations(placed.frames.items(), 2):
        nested = a in picture.cluster_path(parents[b]) or b in picture.cluster_path(parents[a])
        assert nested or not overlap(frame_a, frame_b), (a, b)
    for edge, route in zip(picture.edges, placed.routes):
        sx, sy, sw, sh = boxes[edge.source]
        tx, ty, tw, th = boxes[edge.target]
        (x0, y0), (x1, y1) = route[0], route[-1]
        assert x0 == pytest.approx(sx + sw) and sy < y0 < sy + sh  # leaves its source's right side
        assert x1 == pytest.approx(tx) and ty < y1 < ty + th  # reaches its target's left side
        for x, y in route[1:-1]:  # waypoints run between boxes, never through one
            assert not any(bx < x < bx + bw and by < y < by + bh for bx, by, bw, bh in boxes.values())
    assert placed.width >= max(x + w for x, _, w, _ in boxes.values())
    assert placed.height >= max(y + h for _, y, _, h in boxes.values())


@pytest.mark.parametrize(("seed", "n_nodes", "n_clusters"), [(1, 5, 0), (2, 20, 0), (3, 20, 4), (4, 60, 6), (5, 120, 10)])
def test_random_pictures_lay_out_without_overlap(seed, n_nodes, n_clusters):
    check_geometry(random_picture(seed, n_nodes, n_clusters))


def test_every_node_is_drawn_once_with_its_label_and_kind():
    picture = random_picture(7, 30, 3)
    root = svg_tree(to_svg(picture))
    groups = node_groups(root)
    assert len(groups) == len(picture.nodes)
    drawn = sorted((group.get("class").split()[1], texts(group)[0]) for group in groups)
    assert drawn == sorted((node.kind, node.label) for node in picture.nodes)
    assert len([g for g in root.iter(f"{SVG}g") if g.get("class", "").startswith("edge")]) == len(picture.edges)


def test_a_cycle_from_outside_data_is_drawn_rather_than_refused():
    nodes = [PictureNode(name, name) for name in "abc"]
    edges = [PictureEdge("a", "b"), PictureEdge("b", "c"), PictureEdge("c", "a"), PictureEdge("b", "b")]
    placed = layout(Picture("cycle", nodes, edges))
    assert placed.routes[3] is None  # a loop on one node is not drawn
    assert all(route is not None for route in placed.routes[:3])
    svg_tree(to_svg(Picture("cycle", nodes, edges)))


def test_a_hostile_name_stays_text_in_the_svg():
    picture = Picture(HOSTILE, [PictureNode("a", HOSTILE, detail=HOSTILE, tooltip=HOSTILE)], [], [Cluster("c", HOSTILE)])
    svg = to_svg(picture)
    root = svg_tree(svg)  # still well-formed XML, despite the control character
    assert "<script" not in svg and not list(root.iter(f"{SVG}script"))
    drawn = texts(node_groups(root)[0])
    assert drawn[0] == HOSTILE.replace("\x01", "\ufffd")[: LABEL_LIMIT - 1] + "…"  # shortened, full in the tooltip
    assert root.find(f"{SVG}g/{SVG}g/{SVG}title").text == HOSTILE.replace("\x01", "\ufffd")


def test_long_labels_are_shortened_on_the_box_and_whole_in_the_tooltip():
    name = "a_really_long_op_name_" * 5
    root = svg_tree(to_svg(Picture("t", [PictureNode("a", name)])))
    group = node_groups(root)[0]
    assert texts(group)[0] == name[: LABEL_LIMIT - 1] + "…"
    assert group.find(f"{SVG}title").text == name


def test_an_empty_picture_is_a_valid_svg():
    root = svg_tree(render(Picture("nothing"), "svg"))
    assert node_groups(root) == []


def test_a_long_chain_lays_out_without_recursion():
    nodes = [PictureNode(f"n{index}", f"op{index}") for index in range(3000)]
    edges = [PictureEdge(f"n{index}", f"n{index + 1}") for index in range(2999)]
    placed = layout(Picture("chain", nodes, edges))
    xs = [placed.boxes[f"n{index}"][0] for index in range(3000)]
    assert xs == sorted(xs) and len(set(xs)) == 3000  # one column each, in order
