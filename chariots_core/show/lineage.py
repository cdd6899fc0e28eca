"""The lineage of op versions as a picture: which version of each op was built on which.

The model is plain data, filled from an op store by a few lines of adapter code (the store
keeps exactly these facts: each saved version, and links from the upstream versions a
trained version was built on)::

    Lineage(
        versions=[
            OpVersion("irispca", "bfe909d/36d3c1a/94e72a1", saved_at=1717000000.0, pipeline="train_pca",
                      serving=("pred_iris",), newest=True),
            OpVersion("irisrf", "0c1f2aa/36d3c1a/94e72a1", saved_at=1716990000.0, pipeline="train_iris",
                      serving=("pred_iris",), newest=True),
            OpVersion("irispca", "5d41402/36d3c1a/94e72a1", saved_at=1716990000.0, pipeline="train_iris"),
        ],
        links=[
            VersionLink("irispca", "5d41402/36d3c1a/94e72a1", "irisrf", "0c1f2aa/36d3c1a/94e72a1",
                        stale="irispca was retrained by train_pca since; run train_iris"),
        ],
    )

Each op is a frame holding its versions, newest on top; an arrow goes from each upstream
version to each version built on it. Versions a pipeline serves are marked ``serving`` (and
say which pipelines in their detail line), the newest version of each op ``newest``; a link
with a ``stale`` reason is drawn as a stale edge whose tooltip is the reason. A link may name a
version the lineage was not given (pruned, or beyond ``max_versions_per_op``): it is drawn
as a dashed ``missing`` box rather than dropped.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from ..errors import PictureError
from .picture import Cluster, Picture, PictureEdge, PictureNode, strict_converter, structure

__all__ = ["Lineage", "OpVersion", "VersionLink"]


def _text(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str) or not value:
        msg = f"'{attribute.name}' of a {type(instance).__name__} must be a non-empty string (got {value!r})"
        raise PictureError(msg)


def _pipelines(value: Iterable[str] | str) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


@attrs.frozen
class OpVersion:
    """One saved version of one op.

    :param op_name: the op (node) name the store files it under.
    :param version: a short form of the version, unique among the op's versions (the page
        shows it as given, e.g. ``"bfe909d/36d3c1a/94e72a1"``).
    :param saved_at: when it was saved, in seconds since the epoch.
    :param pipeline: the pipeline whose save wrote it (the one to run again to rebuild it).
    :param serving: the pipelines that serve this version now.
    :param newest: whether it is the op's newest saved version.
    """

    op_name: str = attrs.field(validator=_text)
    version: str = attrs.field(validator=_text)
    saved_at: float = attrs.field(converter=float)
    pipeline: str = attrs.field(validator=_text)
    serving: tuple[str, ...] = attrs.field(default=(), converter=_pipelines)
    newest: bool = False


@attrs.frozen
class VersionLink:
    """``downstream_op`` at ``downstream_version`` was built on ``upstream_op`` at ``upstream_version``.

    :param stale: why this link makes the downstream version stale (empty when it does not).
    """

    upstream_op: str = attrs.field(validator=_text)
    upstream_version: str = attrs.field(validator=_text)
    downstream_op: str = attrs.field(validator=_text)
    downstream_version: str = attrs.field(validator=_text)
    stale: str = ""


_converter = strict_converter()


@attrs.frozen
class Lineage:
    """Op versions and the links between them (see the module docstring)."""

    versions: tuple[OpVersion, ...] = attrs.field(default=(), converter=tuple)
    links: tuple[VersionLink, ...] = attrs.field(default=(), converter=tuple)

    def to_dict(self) -> dict[str, Any]:
        """The lineage as JSON-safe dicts and lists (``Lineage.from_dict`` reads it back)."""
        return _converter.unstructure(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Lineage:
        """Rebuild a lineage from :meth:`to_dict`'s output.

        :raises PictureError: if ``data`` is not a lineage's dict, naming what is wrong.
        """
        return structure(_converter, data, cls, "a lineage dict; make it with Lineage.to_dict()")

    def picture(self, title: str = "lineage", max_versions_per_op: int | None = 10) -> Picture:
        """The lineage as a picture.

        :param max_versions_per_op: draw at most this many versions of each op, newest first
            (versions being served are always drawn); ``None`` draws every version.
        """
        by_op: dict[str, list[OpVersion]] = defaultdict(list)
        for version in self.versions:
            by_op[version.op_name].append(version)
        for op_name in _linked_ops(self.links):
            by_op.setdefault(op_name, [])
        clusters: list[Cluster] = []
        nodes: list[PictureNode] = []
        ids: dict[tuple[str, str], str] = {}
        frames = {op_name: f"op{index}" for index, op_name in enumerate(by_op)}
        for op_name, versions in by_op.items():
            frame = frames[op_name]
            versions = sorted(versions, key=lambda version: -version.saved_at)
            kept = [
                version
                for rank, version in enumerate(versions)
                if max_versions_per_op is None or rank < max_versions_per_op or version.serving
            ]
            hidden = len(versions) - len(kept)
            label = f"{op_name} (+{hidden} older)" if hidden else op_name
            clusters.append(Cluster(frame, label, tooltip=f"versions of op {op_name!r}, newest first"))
            for version in kept:
                node_id = f"v{len(nodes)}"
                ids[(op_name, version.version)] = node_id
                nodes.append(_version_node(node_id, frame, version))
        edges: list[PictureEdge] = []
        for link in self.links:
            ends = []
            for op_name, version in ((link.upstream_op, link.upstream_version), (link.downstream_op, link.downstream_version)):
                if (op_name, version) not in ids:
                    ids[(op_name, version)] = node_id = f"v{len(nodes)}"
                    tooltip = f"{op_name} {version}: not in this picture"
                    nodes.append(PictureNode(node_id, version, "missing", "not shown", frames[op_name], tooltip=tooltip, name=op_name))
                ends.append(ids[(op_name, version)])
            built_on = f"{link.downstream_op} {link.downstream_version} was built on {link.upstream_op} {link.upstream_version}"
            marks = ("stale",) if link.stale else ()
            edges.append(PictureEdge(ends[0], ends[1], marks=marks, tooltip=link.stale or built_on))
        return Picture(title, nodes, edges, clusters)

    def _repr_svg_(self) -> str:
        from .svg import to_svg

        return to_svg(self.picture())


def _linked_ops(links: Iterable[VersionLink]) -> list[str]:
    return list(dict.fromkeys(name for link in links for name in (link.upstream_op, link.downstream_op)))


def _version_node(node_id: str, frame: str, version: OpVersion) -> PictureNode:
    saved = time.strftime("%Y-%m-%d %H:%M", time.localtime(version.saved_at))
    marks = tuple(mark for mark, on in (("serving", bool(version.serving)), ("newest", version.newest)) if on)
    detail = f"serving {', '.join(version.serving)}" if version.serving else f"{saved} by {version.pipeline}"
    tooltip = f"{version.op_name} {version.version}, saved {saved} by pipeline {version.pipeline!r}"
    if version.serving:
        tooltip += f"; served by {', '.join(map(repr, version.serving))}"
    if version.newest:
        tooltip += "; the newest saved version"
    return PictureNode(node_id, version.version, "version", detail, frame, marks, tooltip, version.op_name)
