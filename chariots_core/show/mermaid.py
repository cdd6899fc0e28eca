"""A picture as a Mermaid flowchart (GitHub, GitLab and many notebooks draw these natively).

Mermaid reads labels as HTML, so every user string goes into a quoted label with each
character outside a small safe set written as a Mermaid entity (``#60;`` for ``<``): no name
can close the label, start markup or a Mermaid directive. Node and cluster ids are generated
(``n0``, ``c0``...), never taken from user text. Tooltips are not written: Mermaid only shows
them through click handlers, which need its loose security level.
"""

from __future__ import annotations

from collections import defaultdict

from .picture import Picture
from .text import clean

__all__ = ["to_mermaid", "mermaid_text"]

_SAFE_PUNCTUATION = frozenset(" _.,:/-")
_SHAPES = {  # kind -> (opening, closing) around the quoted label
    "op": ("[", "]"),
    "loadable": ("[[", "]]"),
    "data": ("[(", ")]"),
    "input": ("([", "])"),
    "output": ("([", "])"),
    "version": ("[", "]"),
    "missing": ("[", "]"),
}
_CLASS_STYLES = {
    "loadable": "stroke-width:3px",
    "data": "fill:#f4f4f4",
    "input": "stroke-dasharray:4 3",
    "output": "stroke-dasharray:4 3",
    "missing": "stroke-dasharray:4 3,color:#888",
    "newest": "fill:#e8f1fb",
    "serving": "stroke:#1b7f3b,stroke-width:3px",
    "behind": "stroke:#c26a00,stroke-width:3px",
    "stale": "stroke:#c62828,stroke-width:3px",
}


def mermaid_text(text: str) -> str:
    """``text`` safe inside a double-quoted Mermaid label: letters, digits and a little
    punctuation as they are, anything else as a ``#<code point>;`` entity."""
    return "".join(char if char.isalnum() or char in _SAFE_PUNCTUATION else f"#{ord(char)};" for char in clean(text))


def to_mermaid(picture: Picture) -> str:
    """The picture as ``flowchart LR``; clusters become ``subgraph`` blocks."""
    node_ids = {node.id: f"n{index}" for index, node in enumerate(picture.nodes)}
    cluster_ids = {cluster.id: f"c{index}" for index, cluster in enumerate(picture.clusters)}
    lines = ["---", f'title: "{mermaid_text(picture.title)}"', "---", "flowchart LR"]
    for event, item, depth in picture.nesting():
        indent = "  " * (depth + 1)
        if event == "open":
            lines.append(f'{indent}subgraph {cluster_ids[item.id]} ["{mermaid_text(item.label)}"]')
            lines.append(f"{indent}  direction LR")
        elif event == "close":
            lines.append(f"{indent}end")
        else:
            opening, closing = _SHAPES[item.kind]
            text = mermaid_text(item.label) + (f"<br/><small>{mermaid_text(item.detail)}</small>" if item.detail else "")
            lines.append(f'{indent}{node_ids[item.id]}{opening}"{text}"{closing}')
    for edge in picture.edges:
        arrow = f'-->|"{mermaid_text(edge.label)}"|' if edge.label else "-->"
        lines.append(f"  {node_ids[edge.source]} {arrow} {node_ids[edge.target]}")
    lines += _styles(picture, node_ids)
    return "\n".join(lines) + "\n"


def _styles(picture: Picture, node_ids: dict[str, str]) -> list[str]:
    classes: dict[str, list[str]] = defaultdict(list)
    for node in picture.nodes:
        for name in (node.kind, *node.marks):
            if name in _CLASS_STYLES:
                classes[name].append(node_ids[node.id])
    lines = [f"  classDef {name} {_CLASS_STYLES[name]}" for name in classes]
    lines += [f"  class {','.join(ids)} {name}" for name, ids in classes.items()]
    stale = [str(index) for index, edge in enumerate(picture.edges) if "stale" in edge.marks]
    if stale:
        lines.append(f"  linkStyle {','.join(stale)} stroke:#c62828,stroke-width:2px,stroke-dasharray:5 3")
    return lines
