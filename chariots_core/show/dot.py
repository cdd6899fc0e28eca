"""A picture as Graphviz DOT text (render it with ``dot -Tsvg`` where Graphviz is installed).

Every id and label is written as a double-quoted DOT string: quotes and backslashes are
escaped, so no name can end the string early, inject attributes or be read as one of
Graphviz's ``\\N``-style escapes. Shapes follow the node kinds, colours the marks.
"""

from __future__ import annotations

from .picture import Picture, PictureEdge, PictureNode
from .text import clean

__all__ = ["to_dot", "dot_string"]

# kind -> (shape, styles, extra attributes)
_SHAPES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "op": ("box", ("rounded",), ""),
    "loadable": ("box", ("rounded", "bold"), "peripheries=2"),
    "data": ("cylinder", (), ""),
    "input": ("box", ("rounded", "dashed"), ""),
    "output": ("box", ("rounded", "dashed"), ""),
    "version": ("box", ("rounded",), ""),
    "missing": ("box", ("rounded", "dashed"), "color=gray50, fontcolor=gray50"),
}
_MARK_COLOURS = {"serving": "darkgreen", "behind": "darkorange3", "stale": "red3"}


def dot_string(*lines: str) -> str:
    """The lines as one double-quoted DOT string that Graphviz shows literally, one per line."""
    escaped = (clean(line).replace("\\", "\\\\").replace('"', '\\"') for line in lines)
    return '"' + "\\n".join(escaped) + '"'


def to_dot(picture: Picture) -> str:
    """The picture as a ``digraph``, laid out left to right, clusters as ``subgraph cluster_*``."""
    lines = [
        f"digraph {dot_string(picture.title)} {{",
        f'  graph [rankdir=LR, fontname="Helvetica", label={dot_string(picture.title)}, labelloc=t];',
        '  node [fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    for event, item, depth in picture.nesting():
        indent = "  " * (depth + 1)
        if event == "open":
            lines.append(f"{indent}subgraph {dot_string('cluster_' + item.id)} {{")
            lines.append(f'{indent}  label={dot_string(item.label)}; style="rounded,dashed"; color=gray40;')
            if item.tooltip:
                lines.append(f"{indent}  tooltip={dot_string(item.tooltip)};")
        elif event == "close":
            lines.append(f"{indent}}}")
        else:
            lines.append(f"{indent}{_node_line(item)}")
    lines += [f"  {_edge_line(edge)}" for edge in picture.edges]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _node_line(node: PictureNode) -> str:
    shape, styles, extra = _SHAPES[node.kind]
    label = dot_string(node.label, node.detail) if node.detail else dot_string(node.label)
    attributes = [f"label={label}", f"shape={shape}"]
    styles = styles + ("filled",) if "newest" in node.marks else styles
    if styles:
        attributes.append(f'style="{",".join(styles)}"')
    if "newest" in node.marks:
        attributes.append('fillcolor="#e8f1fb"')
    attributes += [_mark_attributes(mark) for mark in node.marks if mark in _MARK_COLOURS]
    if extra:
        attributes.append(extra)
    if node.tooltip:
        attributes.append(f"tooltip={dot_string(node.tooltip)}")
    return f"{dot_string(node.id)} [{', '.join(attributes)}];"


def _edge_line(edge: PictureEdge) -> str:
    attributes = [f"label={dot_string(edge.label)}"] if edge.label else []
    attributes += [_mark_attributes(mark) for mark in edge.marks if mark in _MARK_COLOURS]
    if "stale" in edge.marks:
        attributes.append("style=dashed")
    if edge.tooltip:
        attributes.append(f"tooltip={dot_string(edge.tooltip)}")
    suffix = f" [{', '.join(attributes)}]" if attributes else ""
    return f"{dot_string(edge.source)} -> {dot_string(edge.target)}{suffix};"


def _mark_attributes(mark: str) -> str:
    return f"color={_MARK_COLOURS[mark]}, fontcolor={_MARK_COLOURS[mark]}, penwidth=2"
