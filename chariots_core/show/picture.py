"""The picture model: a graph of boxes, arrows and nested frames, as plain data.

Everything Chariots draws (a pipeline, the lineage of op versions, the DAGs of the status page)
is first turned into a :class:`Picture`, then written out by one of the renderers
(:mod:`.dot`, :mod:`.mermaid`, :mod:`.svg`). A picture knows nothing about pipelines or
stores, so it can travel as JSON (``picture.to_dict()`` / ``Picture.from_dict``) in a status
report and be drawn by another process.

A picture holds:

- **nodes** (:class:`PictureNode`): a box with a ``label`` (the user's name for it), a
  ``kind`` that picks its shape (see :data:`NODE_KINDS`), an optional ``detail`` line,
  ``marks`` that pick its colours (see :data:`MARKS`) and a ``tooltip``;
- **edges** (:class:`PictureEdge`): an arrow from one node to another, with an optional
  ``label`` (the value that flows along it), ``marks`` and ``tooltip``;
- **clusters** (:class:`Cluster`): a frame around the nodes whose ``cluster`` names it, nested
  through ``parent`` (a nested pipeline, or all versions of one op).

Every string is the user's text as is: each renderer escapes it for its own format.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.v import format_exception

from ..errors import PictureError

__all__ = [
    "Picture",
    "PictureNode",
    "PictureEdge",
    "Cluster",
    "NODE_KINDS",
    "MARKS",
    "combine",
]

NODE_KINDS = ("op", "loadable", "data", "input", "output", "version", "missing")
"""The shapes of nodes: a plain op, an op saved in the store (``loadable``), a dataset read or
written by a data node (``data``), a pipeline's input or output, a saved op version, and a
version a link names but the picture was not given (``missing``)."""

MARKS = ("serving", "newest", "stale", "behind")
"""What a node or edge can be marked as: the version a pipeline serves, the newest saved
version, a stale edge (the downstream model was built on another upstream version), and an op
that serves an older version than the newest one saved."""


def _check_kind(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if value not in NODE_KINDS:
        msg = f"'{attribute.name}' of a picture node must be one of {', '.join(NODE_KINDS)} (got {value!r})"
        raise PictureError(msg)


def _check_marks(instance: Any, attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
    unknown = [mark for mark in value if mark not in MARKS]
    if unknown:
        msg = f"'{attribute.name}' may only hold {', '.join(MARKS)} (got {', '.join(map(repr, unknown))})"
        raise PictureError(msg)


def _text(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str):
        msg = f"'{attribute.name}' of a {type(instance).__name__} must be a string (got {value!r})"
        raise PictureError(msg)


def _optional_text(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None:
        _text(instance, attribute, value)


_T = TypeVar("_T")
_marks_field = attrs.field(default=(), converter=tuple, validator=_check_marks)


@attrs.frozen
class PictureNode:
    """A box of the picture.

    :param id: unique within the picture; never shown.
    :param label: the box's text (an op, node or version name).
    :param kind: its shape, one of :data:`NODE_KINDS`.
    :param detail: a second, smaller line (a class name, a dataset path, a saved time...).
    :param cluster: the id of the innermost :class:`Cluster` drawn around it.
    :param marks: any of :data:`MARKS`.
    :param tooltip: shown when the pointer rests on the box.
    :param name: the op or node name it stands for, to find it again (defaults to ``label``).
    """

    id: str = attrs.field(validator=_text)
    label: str = attrs.field(validator=_text)
    kind: str = attrs.field(default="op", validator=_check_kind)
    detail: str = attrs.field(default="", validator=_text)
    cluster: str | None = attrs.field(default=None, validator=_optional_text)
    marks: tuple[str, ...] = _marks_field
    tooltip: str = attrs.field(default="", validator=_text)
    name: str = attrs.field(default=attrs.Factory(lambda self: self.label, takes_self=True), validator=_text)


@attrs.frozen
class PictureEdge:
    """An arrow from node ``source`` to node ``target`` (ids), labelled with what flows along it."""

    source: str = attrs.field(validator=_text)
    target: str = attrs.field(validator=_text)
    label: str = attrs.field(default="", validator=_text)
    marks: tuple[str, ...] = _marks_field
    tooltip: str = attrs.field(default="", validator=_text)


@attrs.frozen
class Cluster:
    """A frame drawn around the nodes (and clusters) that name it."""

    id: str = attrs.field(validator=_text)
    label: str = attrs.field(validator=_text)
    parent: str | None = attrs.field(default=None, validator=_optional_text)
    tooltip: str = attrs.field(default="", validator=_text)


def strict_converter() -> cattrs.Converter:
    """A converter that takes strings, numbers and booleans only as they are.

    cattrs would otherwise turn ``None`` into ``"None"`` and ``"1.5"`` into ``1.5``: data
    from another process that is wrong must be reported, not repaired.
    """
    converter = cattrs.Converter()
    for kind, accepted in ((str, str), (float, (int, float)), (bool, bool), (int, int)):
        converter.register_structure_hook(kind, functools.partial(_exactly, accepted=accepted))
    return converter


def _exactly(value: Any, kind: type, accepted: type | tuple[type, ...]) -> Any:
    if isinstance(value, bool) and kind is not bool or not isinstance(value, accepted):
        raise TypeError(f"expected {kind.__name__} (got {value!r})")
    return kind(value)


_converter = strict_converter()


@attrs.frozen
class Picture:
    """Nodes, edges and clusters to draw (see the module docstring).

    :raises PictureError: listing every inconsistency: duplicate ids, edges or nodes naming
        an unknown node or cluster, clusters nested in a loop.
    """

    title: str = attrs.field(validator=_text)
    nodes: tuple[PictureNode, ...] = attrs.field(default=(), converter=tuple)
    edges: tuple[PictureEdge, ...] = attrs.field(default=(), converter=tuple)
    clusters: tuple[Cluster, ...] = attrs.field(default=(), converter=tuple)

    def __attrs_post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            listed = "\n".join(f"  - {problem}" for problem in problems)
            raise PictureError(f"picture {self.title!r} is inconsistent:\n{listed}")

    def to_dict(self) -> dict[str, Any]:
        """The picture as JSON-safe dicts and lists (``Picture.from_dict`` reads it back)."""
        return _converter.unstructure(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Picture:
        """Rebuild a picture from :meth:`to_dict`'s output.

        :raises PictureError: if ``data`` is not a picture's dict, naming what is wrong where.
        """
        return structure(_converter, data, cls, "a picture dict; make it with Picture.to_dict()")

    def node(self, node_id: str) -> PictureNode:
        """The node with id ``node_id``."""
        return next(node for node in self.nodes if node.id == node_id)

    def cluster_path(self, cluster_id: str | None) -> list[str]:
        """The ids of ``cluster_id`` and the clusters around it, innermost first."""
        parents = {cluster.id: cluster.parent for cluster in self.clusters}
        path: list[str] = []
        while cluster_id is not None:
            path.append(cluster_id)
            cluster_id = parents[cluster_id]
        return path

    def nesting(self) -> Iterator[tuple[str, PictureNode | Cluster, int]]:
        """Nodes and clusters depth first, as ``("open", cluster, depth)``, ``("node", node,
        depth)`` and ``("close", cluster, depth)``; top-level nodes have depth 0. For writers
        of nested text formats: no recursion, so any depth works."""
        members: dict[str | None, list[PictureNode]] = defaultdict(list)
        for node in self.nodes:
            members[node.cluster].append(node)
        children: dict[str | None, list[Cluster]] = defaultdict(list)
        for cluster in self.clusters:
            children[cluster.parent].append(cluster)
        stack: list[tuple[bool, Cluster | None, int]] = [(False, None, 0)]
        while stack:
            closing, cluster, depth = stack.pop()
            if closing:
                yield "close", cluster, depth
                continue
            if cluster is not None:
                yield "open", cluster, depth
                stack.append((True, cluster, depth))
            key = cluster.id if cluster is not None else None
            for node in members[key]:
                yield "node", node, depth + (cluster is not None)
            stack += [(False, child, depth + (cluster is not None)) for child in reversed(children[key])]

    def _repr_svg_(self) -> str:
        from .svg import to_svg

        return to_svg(self)


def structure(converter: cattrs.Converter, data: Any, cls: type[_T], what: str) -> _T:
    """``data`` structured as ``cls``, or one :class:`PictureError` listing each wrong key by its path.

    :param what: what ``data`` should be, and how to make one, for the message.
    """
    if not isinstance(data, Mapping):
        raise PictureError(f"expected {what} (got a {type(data).__name__})")
    try:
        return converter.structure(dict(data), cls)
    except cattrs.BaseValidationError as exc:
        problems = "; ".join(cattrs.transform_error(exc, format_exception=_describe))
        raise PictureError(f"expected {what}: {problems}") from exc


def _describe(exc: BaseException, type_: type | None) -> str:
    # Our validators' messages name the field and the expectation: keep them as they are.
    return str(exc) if isinstance(exc, PictureError) else format_exception(exc, type_)


def _problems(picture: Picture) -> list[str]:
    problems: list[str] = []
    for what, items in (("node", picture.nodes), ("edge", picture.edges), ("cluster", picture.clusters)):
        wanted = {"node": PictureNode, "edge": PictureEdge, "cluster": Cluster}[what]
        problems += [f"{item!r} is not a {wanted.__name__}" for item in items if not isinstance(item, wanted)]
    if problems:
        return problems
    node_ids = _unique_ids("node", (node.id for node in picture.nodes), problems)
    cluster_ids = _unique_ids("cluster", (cluster.id for cluster in picture.clusters), problems)
    problems += [f"{both!r} is the id of a node and of a cluster; give each its own" for both in sorted(node_ids & cluster_ids)]
    problems += [
        f"node {node.id!r} is in cluster {node.cluster!r}, which the picture does not have"
        for node in picture.nodes
        if node.cluster is not None and node.cluster not in cluster_ids
    ]
    problems += [
        f"edge {edge.source!r} -> {edge.target!r} names node {end!r}, which the picture does not have"
        for edge in picture.edges
        for end in dict.fromkeys((edge.source, edge.target))
        if end not in node_ids
    ]
    parents = {cluster.id: cluster.parent for cluster in picture.clusters}
    for cluster in picture.clusters:
        if cluster.parent is not None and cluster.parent not in cluster_ids:
            problems.append(f"cluster {cluster.id!r} is inside cluster {cluster.parent!r}, which the picture does not have")
    for cluster in picture.clusters:
        seen, current = {cluster.id}, parents.get(cluster.id)
        while current is not None and current in parents:
            if current in seen:
                problems.append(f"cluster {cluster.id!r} is nested inside itself (through {current!r})")
                break
            seen.add(current)
            current = parents[current]
    return problems


def _unique_ids(what: str, ids: Iterable[str], problems: list[str]) -> set[str]:
    seen: set[str] = set()
    for item_id in ids:
        if item_id in seen:
            problems.append(f"two {what}s have the id {item_id!r}; give each its own")
        seen.add(item_id)
    return seen


def combine(pictures: Iterable[Picture], title: str) -> Picture:
    """One picture holding each of ``pictures`` in a frame of its own, labelled with its title.

    Ids are prefixed with the picture's position, so pictures made separately never clash.
    """
    nodes: list[PictureNode] = []
    edges: list[PictureEdge] = []
    clusters: list[Cluster] = []
    for index, picture in enumerate(pictures):
        prefix = f"p{index}."
        frame = f"{prefix}frame"
        clusters.append(Cluster(frame, picture.title))
        clusters += [
            attrs.evolve(cluster, id=prefix + cluster.id, parent=prefix + cluster.parent if cluster.parent else frame)
            for cluster in picture.clusters
        ]
        nodes += [
            attrs.evolve(node, id=prefix + node.id, cluster=prefix + node.cluster if node.cluster else frame)
            for node in picture.nodes
        ]
        edges += [attrs.evolve(edge, source=prefix + edge.source, target=prefix + edge.target) for edge in picture.edges]
    return Picture(title, nodes, edges, clusters)
