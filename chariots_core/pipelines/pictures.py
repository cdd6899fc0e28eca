"""A pipeline as a :class:`~chariots_core.show.Picture`: its nodes, the values between them, its nesting.

Each node is a box shaped by what it is: a plain op, a loadable op (saved in the op store), a
data node (a dataset through the saver). An arrow goes from the node producing a value to
each node consuming it, labelled with the value's name. The pipeline's input and output are
boxes of their own. A nested pipeline is a frame holding its own nodes and its own input and
output boxes, which the arrows of the outer pipeline reach.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterator

from ..show.picture import Cluster, Picture, PictureEdge, PictureNode
from .nodes import BaseNode, Node, ReservedNodes, is_implicit_output
from .ops import LoadableOp

__all__ = ["pipeline_picture", "describe"]

PIPELINE_INPUT = ReservedNodes.pipeline_input.value
PIPELINE_OUTPUT = ReservedNodes.pipeline_output.value


def pipeline_picture(pipeline: object) -> Picture:
    """The picture of ``pipeline`` (a :class:`~chariots_core.Pipeline`), titled with its name."""
    builder = _Builder()
    builder.draw(pipeline, cluster=None, outer_inputs=[])
    return Picture(pipeline.name, builder.nodes, list(dict.fromkeys(builder.edges)), builder.clusters)


class _Builder:
    """Collects the nodes, edges and clusters of a picture, one pipeline level at a time."""

    def __init__(self) -> None:
        self.nodes: list[PictureNode] = []
        self.edges: list[PictureEdge] = []
        self.clusters: list[Cluster] = []
        self._ids: Iterator[int] = itertools.count()

    def draw(self, pipeline: object, cluster: str | None, outer_inputs: list[tuple[str, str]]) -> str | None:
        """Draw one pipeline level; return the id of its output box (``None`` if it has none).

        :param outer_inputs: (producer id, value name) of what feeds the level from outside
            (a nested pipeline's node inputs); they point at the level's input box.
        """
        producers: dict[str, str] = {}
        if outer_inputs or any(PIPELINE_INPUT in node.input_references for node in pipeline.ordered_nodes):
            producers[PIPELINE_INPUT] = self._box(
                "input", "input", cluster, f"{PIPELINE_INPUT}: what the caller passes to {pipeline.name!r}"
            )
            self.edges += [PictureEdge(source, producers[PIPELINE_INPUT], label) for source, label in outer_inputs]
        output_box: str | None = None
        for node in pipeline.ordered_nodes:
            inputs = [(producers[name], _value_label(name)) for name in node.input_references if name in producers]
            if isinstance(node, Node) and node.requires_runner:
                frame = f"c{next(self._ids)}"
                self.clusters.append(Cluster(frame, node.name, cluster, f"nested pipeline {node.op.name!r}"))
                drawn = self.draw(node.op, frame, inputs)
            else:
                drawn = self._node_box(node, cluster)
                self.edges += [PictureEdge(source, drawn, label) for source, label in inputs]
            for name in node.output_references:
                if name == PIPELINE_OUTPUT and drawn is not None:
                    output_box = self._box(
                        "output", "output", cluster, f"{PIPELINE_OUTPUT}: what {pipeline.name!r} returns"
                    )
                    self.edges.append(PictureEdge(drawn, output_box))
                elif drawn is not None:
                    producers[name] = drawn
        return output_box

    def _box(self, label: str, kind: str, cluster: str | None, tooltip: str, detail: str = "", name: str = "") -> str:
        box = f"n{next(self._ids)}"
        self.nodes.append(PictureNode(box, label, kind, detail, cluster, tooltip=tooltip, name=name or label))
        return box

    def _node_box(self, node: BaseNode, cluster: str | None) -> str:
        if node.require_saver:
            path, serializer = node.path, type(node.serializer).__name__  # type: ignore[attr-defined]
            tooltip = f"{type(node).__name__} of dataset {path!r} ({serializer})"
            return self._box(node.name, "data", cluster, tooltip, serializer if path in node.name else path)
        op = node.op if isinstance(node, Node) else node
        kind = "loadable" if isinstance(op, LoadableOp) else "op"
        detail = type(op).__name__
        mode = getattr(op, "mode", None)
        if isinstance(mode, enum.Enum):  # an ML op says whether it fits, predicts or both
            detail += f" · {mode.value}"
        version = node.node_version
        short = "/".join(part[:7] for part in (version.major, version.minor, version.patch))
        tooltip = f"{type(op).__module__}.{type(op).__qualname__}, version {short}"
        if kind == "loadable":
            tooltip += " (saved to and loaded from the op store)"
        return self._box(node.name, kind, cluster, tooltip, detail)


def _value_label(name: str) -> str:
    """What an arrow carrying the value ``name`` is labelled with: nothing for unnamed values."""
    return "" if name == PIPELINE_INPUT or is_implicit_output(name) else name


_REPR_NODES = 8


def describe(pipeline: object) -> str:
    """A one-line summary of a pipeline for ``repr``: its name, what it takes and returns, and
    its nodes in run order (``*`` marks ops saved in the op store, ``[n nodes]`` a nested pipeline)."""
    nodes = pipeline.ordered_nodes
    names = []
    for node in nodes[:_REPR_NODES]:
        if isinstance(node, Node) and node.requires_runner:
            names.append(f"{node.name}[{len(node.op.ordered_nodes)} nodes]")
        else:
            names.append(node.name + ("*" if node.is_loadable else ""))
    if len(nodes) > _REPR_NODES:
        names.append(f"... {len(nodes) - _REPR_NODES} more")
    takes = any(PIPELINE_INPUT in node.input_references for node in nodes)
    returns = any(PIPELINE_OUTPUT in node.output_references for node in nodes)
    flow = f" ({'input' if takes else 'no input'} -> {'output' if returns else 'no output'})"
    legend = "; * saved in the op store" if any(name.endswith("*") for name in names) else ""
    count = f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}"
    return f"<Pipeline {pipeline.name!r}{flow}: {count}: {', '.join(names)}{legend}>"
