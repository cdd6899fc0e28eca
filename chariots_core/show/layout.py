"""Where each box and arrow of a picture goes: a small layered (Sugiyama-style) layout.

Arrows flow left to right. Each frame (cluster) is laid out on its own first, innermost
first, and then takes part in its parent's layout as one big box, so frames never overlap
anything and boxes never overlap each other: within a column they are stacked with a gap, and
columns are side by side. One level is laid out in four steps:

1. **Columns** (layers): longest path from the sources, after reversing the arrows that close
   a cycle (a picture from outside may have one). Sources move right next to what they feed,
   boxes with arrows leaving their frame go to its last column and those entering to its first,
   so such arrows cross no box on their way to the frame's border.
2. **Waypoints**: an arrow spanning several columns gets one invisible waypoint per column it
   crosses (shared by all arrows between the same two boxes), so it runs between boxes.
3. **Order** within each column: barycenter sweeps down and up, keeping the order with the
   fewest crossings (counted exactly, by inversions).
4. **Heights**: each box moves towards the mean height of its neighbours; the positions that
   keep the order and the gaps are found by packing down and packing up, then averaging the
   two (both satisfy the gaps, so their mean does too).

Nothing recurses: frames are visited deepest first, and the graph walks use explicit stacks,
so very long pipelines and deep nesting work.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Hashable

import attrs

from .picture import Picture, PictureNode
from .text import shorten, text_width

__all__ = ["Layout", "layout", "node_size", "LABEL_LIMIT", "CYLINDER_TOP", "FONT_SIZE", "DETAIL_FONT_SIZE", "EDGE_FONT_SIZE"]

LABEL_LIMIT = 40  # characters of a label drawn; the whole text is in the tooltip
FONT_SIZE, DETAIL_FONT_SIZE, EDGE_FONT_SIZE = 12.0, 10.0, 10.0
_PAD_X, _ONE_LINE, _TWO_LINES, _PORT_GAP = 10.0, 24.0, 38.0, 14.0
_GAP_X, _GAP_Y, _FRAME_PAD, _FRAME_TITLE, _MARGIN = 36.0, 16.0, 12.0, 20.0, 12.0
_WAYPOINT_HEIGHT, _SWEEPS = 6.0, 6
CYLINDER_TOP = 8.0  # a data node's box is taller by its cylinder's top

Box = tuple[float, float, float, float]  # x, y (top left), width, height
Point = tuple[float, float]


@attrs.frozen
class Layout:
    """Absolute positions: boxes and frames by id, one route per edge (``None`` for a loop),
    each edge's label anchor (``None`` when it has no label or shares its port's), the size."""

    boxes: dict[str, Box]
    frames: dict[str, Box]
    routes: list[list[Point] | None]
    label_anchors: list[Point | None]
    width: float
    height: float


def node_size(node: PictureNode, ports: int) -> tuple[float, float]:
    """The size of a node's box, tall enough for ``ports`` arrows on one side."""
    width = max(text_width(shorten(node.label, LABEL_LIMIT), FONT_SIZE), text_width(shorten(node.detail, LABEL_LIMIT), DETAIL_FONT_SIZE))
    height = (_TWO_LINES if node.detail else _ONE_LINE) + (CYLINDER_TOP if node.kind == "data" else 0.0)
    return max(width + 2 * _PAD_X, 40.0), max(height, ports * _PORT_GAP + 6)


@attrs.define
class _Level:
    """One frame's (or the whole picture's) own layout, in coordinates relative to its corner."""

    items: list[Hashable]  # node ids and frame ids directly inside
    positions: dict[Hashable, Point] = attrs.Factory(dict)
    waypoints: dict[tuple[Hashable, Hashable], list[Point]] = attrs.Factory(dict)
    width: float = 0.0
    height: float = 0.0


def layout(picture: Picture) -> Layout:
    """Lay ``picture`` out (see the module docstring)."""
    paths = {cluster.id: picture.cluster_path(cluster.id)[::-1] for cluster in picture.clusters}  # outermost first
    chain = {node.id: [*paths.get(node.cluster, []), node.id] if node.cluster else [node.id] for node in picture.nodes}
    out_ports, in_ports = _ports(picture)
    sizes: dict[Hashable, tuple[float, float]] = {
        node.id: node_size(node, max(len(out_ports[node.id]), len(in_ports[node.id]))) for node in picture.nodes
    }
    members: dict[str | None, list[Hashable]] = defaultdict(list)
    for cluster in picture.clusters:
        members[cluster.parent].append(cluster.id)
    leaving: dict[str | None, set[Hashable]] = defaultdict(set)
    entering: dict[str | None, set[Hashable]] = defaultdict(set)
    for node in picture.nodes:
        members[node.cluster].append(node.id)
        # a pipeline's input and output boxes stand at its first and last columns
        if node.kind == "output":
            leaving[node.cluster].add(node.id)
        elif node.kind == "input":
            entering[node.cluster].add(node.id)

    # Each edge is laid out in the innermost frame holding both ends, between the two items of
    # that frame that hold them; the frames it leaves and enters see it as an outside arrow.
    level_edges: dict[str | None, list[tuple[Hashable, Hashable]]] = defaultdict(list)
    label_width: dict[Hashable, float] = defaultdict(float)  # room after a box for its arrows' labels
    for edge in picture.edges:
        source, target = chain[edge.source], chain[edge.target]
        depth = 0
        while depth < min(len(source), len(target)) - 1 and source[depth] == target[depth]:
            depth += 1
        if source[depth] == target[depth]:
            continue  # a loop on one node: not drawn
        level = source[depth - 1] if depth else None
        level_edges[level].append((source[depth], target[depth]))
        for index in range(depth, len(source) - 1):
            leaving[source[index]].add(source[index + 1])
        for index in range(depth, len(target) - 1):
            entering[target[index]].add(target[index + 1])
        if edge.label:
            label_width[edge.source] = max(label_width[edge.source], text_width(shorten(edge.label, LABEL_LIMIT), EDGE_FONT_SIZE) + 8)

    levels: dict[str | None, _Level] = {}
    depth_of = {cluster_id: len(path) for cluster_id, path in paths.items()}
    for level in [*sorted(paths, key=lambda key: -depth_of[key]), None]:
        placed = _layout_level(members[level], sizes, level_edges[level], leaving[level], entering[level], label_width)
        levels[level] = placed
        if level is not None:
            sizes[level] = (placed.width + 2 * _FRAME_PAD, placed.height + _FRAME_PAD + _FRAME_TITLE)

    # Absolute positions, outermost first.
    boxes: dict[str, Box] = {}
    frames: dict[str, Box] = {}
    corners: dict[str | None, Point] = {None: (_MARGIN, _MARGIN)}
    waypoints: dict[tuple[Hashable, Hashable], list[Point]] = {}
    for level in [None, *sorted(paths, key=lambda key: depth_of[key])]:
        left, top = corners[level]
        placed = levels[level]
        for item in placed.items:
            x, y = placed.positions[item]
            width, height = sizes[item]
            if item in paths:
                frames[item] = (left + x, top + y, width, height)
                corners[item] = (left + x + _FRAME_PAD, top + y + _FRAME_TITLE)
            else:
                boxes[item] = (left + x, top + y, width, height)
        for pair, points in placed.waypoints.items():
            waypoints[pair] = [(left + x, top + y) for x, y in points]

    routes, anchors = _routes(picture, chain, boxes, frames, waypoints, out_ports, in_ports)
    root = levels[None]
    return Layout(boxes, frames, routes, anchors, root.width + 2 * _MARGIN, root.height + 2 * _MARGIN)


def _ports(picture: Picture) -> tuple[dict[str, list[Hashable]], dict[str, list[Hashable]]]:
    """The distinct ports on each node's right (one per label sent) and left (one per edge received)."""
    out_ports: dict[str, list[Hashable]] = defaultdict(list)
    in_ports: dict[str, list[Hashable]] = defaultdict(list)
    for index, edge in enumerate(picture.edges):
        if edge.source == edge.target:
            continue
        key = edge.label or ("edge", index)
        if key not in out_ports[edge.source]:
            out_ports[edge.source].append(key)
        in_ports[edge.target].append(index)
    return out_ports, in_ports


def _layout_level(
    items: list[Hashable],
    sizes: dict[Hashable, tuple[float, float]],
    edges: list[tuple[Hashable, Hashable]],
    leaving: set[Hashable],
    entering: set[Hashable],
    label_width: dict[Hashable, float],
) -> _Level:
    placed = _Level(items)
    if not items:
        return placed
    pairs = list(dict.fromkeys(edges))
    layer = _layers(items, pairs, leaving, entering)
    # Waypoints: one per column crossed, shared by every edge between the same two items.
    successors: dict[Hashable, list[Hashable]] = defaultdict(list)
    predecessors: dict[Hashable, list[Hashable]] = defaultdict(list)
    chains: dict[tuple[Hashable, Hashable], list[Hashable]] = {}
    for source, target in pairs:
        forward = layer[source] < layer[target]
        low, high = (source, target) if forward else (target, source)
        steps = [("waypoint", source, target, column) for column in range(layer[low] + 1, layer[high])]
        for column, step in zip(range(layer[low] + 1, layer[high]), steps):
            layer[step] = column
        path = [low, *steps, high]
        for up, down in zip(path, path[1:]):
            successors[up].append(down)
            predecessors[down].append(up)
        chains[(source, target)] = steps if forward else steps[::-1]
    columns: list[list[Hashable]] = [[] for _ in range(max(layer.values()) + 1)]
    for item in layer:  # items first, in the picture's order, then waypoints
        columns[layer[item]].append(item)
    columns = _order(columns, successors, predecessors)

    height_of = {item: sizes[item][1] if item in sizes else _WAYPOINT_HEIGHT for item in layer}
    centers = _heights(columns, height_of, successors, predecessors)
    top = min(centers[item] - height_of[item] / 2 for item in layer)
    left = 0.0
    for column in columns:
        width = max((sizes[item][0] for item in column if item in sizes), default=0.0)
        for item in column:
            y = centers[item] - top
            if item in sizes:
                placed.positions[item] = (left + (width - sizes[item][0]) / 2, y - sizes[item][1] / 2)
            else:
                placed.waypoints.setdefault(item, [(left, y), (left + width, y)])
        labels = max((label_width[item] for item in column if item in sizes), default=0.0)
        placed.width = left + width + labels
        left += width + labels + _GAP_X
    # An edge drawn against the columns (it closed a cycle) crosses each column right to left.
    placed.waypoints = {
        pair: [point for step in steps for point in placed.waypoints[step][:: 1 if layer[pair[0]] < layer[pair[1]] else -1]]
        for pair, steps in chains.items()
    }
    placed.height = max(y + sizes[item][1] for item, (x, y) in placed.positions.items())
    return placed


def _layers(
    items: list[Hashable], pairs: list[tuple[Hashable, Hashable]], leaving: set[Hashable], entering: set[Hashable]
) -> dict[Hashable, int]:
    """Longest-path columns, cycles broken, sources pulled right, frame ports pinned."""
    forward = _acyclic(items, pairs)
    successors: dict[Hashable, list[Hashable]] = defaultdict(list)
    waiting = {item: 0 for item in items}
    for source, target in forward:
        successors[source].append(target)
        waiting[target] += 1
    layer = dict.fromkeys(items, 0)
    waiting_at_start = dict(waiting)
    ready = [item for item in items if not waiting[item]]
    order = []
    while ready:
        item = ready.pop()
        order.append(item)
        for target in successors[item]:
            layer[target] = max(layer[target], layer[item] + 1)
            waiting[target] -= 1
            if not waiting[target]:
                ready.append(target)
    last = max(layer.values())
    for item in items:
        if item in leaving and not successors[item]:
            layer[item] = last
    for item in reversed(order):  # pull sources next to what they feed, latest first
        if not waiting_at_start[item] and successors[item] and item not in entering:
            layer[item] = min(layer[target] for target in successors[item]) - 1
    return layer


def _acyclic(items: list[Hashable], pairs: list[tuple[Hashable, Hashable]]) -> list[tuple[Hashable, Hashable]]:
    """The edges, those that close a cycle reversed (iterative depth-first search)."""
    successors: dict[Hashable, list[Hashable]] = defaultdict(list)
    for source, target in pairs:
        successors[source].append(target)
    state: dict[Hashable, int] = {}  # 1 on the stack, 2 done
    back: set[tuple[Hashable, Hashable]] = set()
    for root in items:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(successors[root]))]
        while stack:
            item, pending = stack[-1]
            target = next(pending, None)
            if target is None:
                state[item] = 2
                stack.pop()
            elif state.get(target) == 1:
                back.add((item, target))
            elif target not in state:
                state[target] = 1
                stack.append((target, iter(successors[target])))
    return [(t, s) if (s, t) in back else (s, t) for s, t in pairs if s != t]


def _order(
    columns: list[list[Hashable]], successors: dict[Hashable, list[Hashable]], predecessors: dict[Hashable, list[Hashable]]
) -> list[list[Hashable]]:
    """Barycenter sweeps; the ordering with the fewest crossings wins."""
    best, best_crossings = [list(column) for column in columns], _crossings(columns, successors)
    current = [list(column) for column in columns]
    for sweep in range(_SWEEPS):
        downward = sweep % 2 == 0
        indices = range(1, len(current)) if downward else range(len(current) - 2, -1, -1)
        for index in indices:
            neighbour = current[index - 1] if downward else current[index + 1]
            position = {item: rank for rank, item in enumerate(neighbour)}
            links = predecessors if downward else successors
            own = {item: rank for rank, item in enumerate(current[index])}

            def barycenter(item: Hashable) -> float:
                ranks = [position[other] for other in links[item] if other in position]
                return sum(ranks) / len(ranks) if ranks else own[item]

            current[index].sort(key=barycenter)
        crossings = _crossings(current, successors)
        if crossings < best_crossings:
            best, best_crossings = [list(column) for column in current], crossings
    return best


def _crossings(columns: list[list[Hashable]], successors: dict[Hashable, list[Hashable]]) -> int:
    """How many pairs of segments cross between neighbouring columns (inversions of the targets)."""
    total = 0
    for column, following in zip(columns, columns[1:]):
        rank = {item: index for index, item in enumerate(following)}
        segments = sorted(
            (index, rank[target]) for index, item in enumerate(column) for target in successors[item] if target in rank
        )
        seen: list[int] = []
        for _, target in segments:
            total += len(seen) - bisect.bisect_right(seen, target)
            bisect.insort(seen, target)
    return total


def _heights(
    columns: list[list[Hashable]],
    height_of: dict[Hashable, float],
    successors: dict[Hashable, list[Hashable]],
    predecessors: dict[Hashable, list[Hashable]],
) -> dict[Hashable, float]:
    """The center height of every item: stacked, then drawn towards its neighbours."""
    centers: dict[Hashable, float] = {}
    for column in columns:
        y = 0.0
        for item in column:
            centers[item] = y + height_of[item] / 2
            y += height_of[item] + _GAP_Y
    for sweep in range(_SWEEPS):
        downward = sweep % 2 == 0
        links = predecessors if downward else successors
        for column in columns if downward else reversed(columns):
            wanted = [
                sum(centers[other] for other in links[item]) / len(links[item]) if links[item] else centers[item]
                for item in column
            ]
            gaps = [(height_of[a] + height_of[b]) / 2 + _GAP_Y for a, b in zip(column, column[1:])]
            down, up = list(wanted), list(wanted)
            for index in range(1, len(column)):
                down[index] = max(wanted[index], down[index - 1] + gaps[index - 1])
            for index in range(len(column) - 2, -1, -1):
                up[index] = min(wanted[index], up[index + 1] - gaps[index])
            for item, low, high in zip(column, down, up):
                centers[item] = (low + high) / 2
    return centers


def _routes(
    picture: Picture,
    chain: dict[str, list[str]],
    boxes: dict[str, Box],
    frames: dict[str, Box],
    waypoints: dict[tuple[Hashable, Hashable], list[Point]],
    out_ports: dict[str, list[Hashable]],
    in_ports: dict[str, list[Hashable]],
) -> tuple[list[list[Point] | None], list[Point | None]]:
    """Each edge's points: its source port, its way out of frames, waypoints, its way in, its target port."""

    def middle_y(node_id: str) -> float:
        x, y, width, height = boxes[node_id]
        return y + height / 2

    # Ports are ordered by the height of the other end, so arrows leave and arrive uncrossed.
    heights: dict[tuple[str, Hashable], float] = {}
    for index, edge in enumerate(picture.edges):
        if edge.source != edge.target:
            key = (edge.source, edge.label or ("edge", index))
            heights[key] = min(heights.get(key, float("inf")), middle_y(edge.target))
    out_rank: dict[tuple[str, Hashable], int] = {}
    for node_id, ports in out_ports.items():
        for rank, port in enumerate(sorted(ports, key=lambda port: heights[(node_id, port)])):
            out_rank[(node_id, port)] = rank
    in_rank: dict[int, int] = {}
    for node_id, indices in in_ports.items():
        for rank, index in enumerate(sorted(indices, key=lambda index: middle_y(picture.edges[index].source))):
            in_rank[index] = rank

    def port(node_id: str, rank: int, count: int, right: bool) -> Point:
        x, y, width, height = boxes[node_id]
        return (x + width if right else x, y + height * (rank + 1) / (count + 1))

    routes: list[list[Point] | None] = []
    anchors: list[Point | None] = []
    labelled: set[tuple[str, Hashable]] = set()
    for index, edge in enumerate(picture.edges):
        source, target = chain[edge.source], chain[edge.target]
        if edge.source == edge.target:
            routes.append(None)
            anchors.append(None)
            continue
        depth = 0
        while source[depth] == target[depth]:
            depth += 1
        key = edge.label or ("edge", index)
        start = port(edge.source, out_rank[(edge.source, key)], len(out_ports[edge.source]), True)
        end = port(edge.target, in_rank[index], len(in_ports[edge.target]), False)
        points = [start]
        if len(source) - 1 > depth:  # leave the frames around the source, straight to the right
            x, _, width, _ = frames[source[depth]]
            points.append((x + width, start[1]))
        points += waypoints.get((source[depth], target[depth]), [])
        if len(target) - 1 > depth:
            points.append((frames[target[depth]][0], end[1]))
        points.append(end)
        routes.append(points)
        anchors.append((start[0] + 4, start[1] - 3) if edge.label and (edge.source, key) not in labelled else None)
        labelled.add((edge.source, key))
    return routes, anchors
