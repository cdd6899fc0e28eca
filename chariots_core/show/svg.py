"""A picture as SVG, laid out by :mod:`.layout`: no dependency, no binary, no script.

The SVG is plain shapes and text with CSS classes (``node``, ``op``, ``loadable``, ``serving``,
``edge``, ``stale``...) styled by :data:`STYLE`, which is embedded unless the caller puts it
once on a page holding many pictures. Tooltips are SVG ``<title>`` elements. Every user string
is XML-escaped and stripped of characters XML forbids, so any name yields a well-formed
document, and no element carries an id, so many pictures can share one HTML page.
"""

from __future__ import annotations

from html import escape

from .layout import CYLINDER_TOP, LABEL_LIMIT, Layout, layout
from .picture import Picture, PictureNode
from .text import clean, shorten

__all__ = ["to_svg", "STYLE"]

STYLE = """\
.chariots-picture { font-family: "DejaVu Sans Mono", ui-monospace, Menlo, Consolas, monospace; }
.chariots-picture text { font-size: 12px; fill: #1d2733; }
.chariots-picture .node text { text-anchor: middle; }
.chariots-picture .picture-title { font-size: 13px; font-weight: bold; }
.chariots-picture .detail { font-size: 10px; fill: #5b6675; }
.chariots-picture .node rect, .chariots-picture .node path.shape { fill: #ffffff; stroke: #44505e; stroke-width: 1.2; }
.chariots-picture .node.loadable rect.outer { stroke-width: 2; }
.chariots-picture .node.data path.shape { fill: #f3f4f6; }
.chariots-picture .node.input rect, .chariots-picture .node.output rect { fill: #f7f7f2; stroke-dasharray: 4 3; }
.chariots-picture .node.missing rect { stroke: #9aa3ad; stroke-dasharray: 4 3; }
.chariots-picture .node.missing text { fill: #7b8590; }
.chariots-picture .node.newest rect { fill: #e8f1fb; }
.chariots-picture .node.serving rect { stroke: #1b7f3b; stroke-width: 2.6; }
.chariots-picture .node.behind rect { stroke: #c26a00; stroke-width: 2.6; }
.chariots-picture .node.stale rect { stroke: #c62828; stroke-width: 2.6; }
.chariots-picture .frame rect { fill: none; stroke: #8a94a0; stroke-dasharray: 5 3; }
.chariots-picture .frame text { font-size: 11px; fill: #5b6675; }
.chariots-picture .edge path { fill: none; stroke: #6b7683; stroke-width: 1.3; }
.chariots-picture .edge path.head { fill: #6b7683; stroke: none; }
.chariots-picture .edge.stale path { stroke: #c62828; stroke-width: 2; stroke-dasharray: 6 3; }
.chariots-picture .edge.stale path.head { fill: #c62828; stroke: none; }
.chariots-picture .edge-label { font-size: 10px; fill: #3d4a58; }
"""

_TITLE_HEIGHT = 22.0


def to_svg(picture: Picture, style: bool = True) -> str:
    """The picture as an SVG document.

    :param style: embed :data:`STYLE`; pass ``False`` when the page around it holds the style.
    """
    placed = layout(picture)
    width, height = placed.width, placed.height + _TITLE_HEIGHT
    title = _text(picture.title)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chariots-picture" width="{_n(width)}" '
        f'height="{_n(height)}" viewBox="0 0 {_n(width)} {_n(height)}" role="img" aria-label="{title}">',
        f"<title>{title}</title>",
    ]
    if style:
        parts.append(f"<style>{STYLE}</style>")
    parts.append(f'<text class="picture-title" x="12" y="16">{_text(shorten(picture.title, 80))}</text>')
    parts.append(f'<g transform="translate(0 {_n(_TITLE_HEIGHT)})">')
    labels = {cluster.id: cluster for cluster in picture.clusters}
    for frame_id, (x, y, w, h) in placed.frames.items():
        cluster = labels[frame_id]
        tooltip = f"<title>{_text(cluster.tooltip)}</title>" if cluster.tooltip else ""
        parts.append(
            f'<g class="frame">{tooltip}<rect x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}" rx="8"/>'
            f'<text x="{_n(x + 8)}" y="{_n(y + 14)}">{_text(shorten(cluster.label, LABEL_LIMIT))}</text></g>'
        )
    parts += _edges(picture, placed)
    parts += [_node(node, placed.boxes[node.id]) for node in picture.nodes]
    parts.append("</g></svg>")
    return "\n".join(parts) + "\n"


def _edges(picture: Picture, placed: Layout) -> list[str]:
    drawn = []
    for edge, route, anchor in zip(picture.edges, placed.routes, placed.label_anchors):
        if route is None:
            continue
        classes = " ".join(["edge", *edge.marks])
        tooltip = edge.tooltip or (f"{edge.label}" if edge.label else "")
        title = f"<title>{_text(tooltip, lines=True)}</title>" if tooltip else ""
        drawn.append(f'<g class="{classes}">{title}<path d="{_curve(route)}"/><path class="head" d="{_head(route[-1])}"/></g>')
        if anchor is not None:
            drawn.append(f'<text class="edge-label" x="{_n(anchor[0])}" y="{_n(anchor[1])}">{_text(shorten(edge.label, LABEL_LIMIT))}</text>')
    return drawn


def _node(node: PictureNode, box: tuple[float, float, float, float]) -> str:
    x, y, w, h = box
    classes = " ".join(["node", node.kind, *node.marks])
    # the whole label first: the box may show it shortened
    tooltip = node.label if node.tooltip in ("", node.label) else f"{node.label}\n{node.tooltip}"
    shape = _shape(node.kind, x, y, w, h)
    if node.kind == "data":  # the text goes below the cylinder's top
        y, h = y + CYLINDER_TOP, h - CYLINDER_TOP
    if node.detail:
        text = (
            f'<text x="{_n(x + w / 2)}" y="{_n(y + h / 2 - 3)}">{_text(shorten(node.label, LABEL_LIMIT))}</text>'
            f'<text class="detail" x="{_n(x + w / 2)}" y="{_n(y + h / 2 + 11)}">'
            f"{_text(shorten(node.detail, LABEL_LIMIT))}</text>"
        )
    else:
        text = f'<text x="{_n(x + w / 2)}" y="{_n(y + h / 2 + 4)}">{_text(shorten(node.label, LABEL_LIMIT))}</text>'
    return f'<g class="{classes}"><title>{_text(tooltip, lines=True)}</title>{shape}{text}</g>'


def _shape(kind: str, x: float, y: float, w: float, h: float) -> str:
    if kind == "data":  # a cylinder: the top ellipse, the sides, the bottom curve
        r = CYLINDER_TOP / 2
        return (
            f'<path class="shape" d="M{_n(x)} {_n(y + r)} A{_n(w / 2)} {_n(r)} 0 0 1 {_n(x + w)} {_n(y + r)} '
            f"V{_n(y + h - r)} A{_n(w / 2)} {_n(r)} 0 0 1 {_n(x)} {_n(y + h - r)} Z "
            f'M{_n(x)} {_n(y + r)} A{_n(w / 2)} {_n(r)} 0 0 0 {_n(x + w)} {_n(y + r)}"/>'
        )
    radius = h / 2 if kind in ("input", "output") else 5.0
    outer = f'<rect class="outer" x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}" rx="{_n(radius)}"/>'
    if kind == "loadable":  # a double border: saved in the op store
        outer += f'<rect x="{_n(x + 3)}" y="{_n(y + 3)}" width="{_n(w - 6)}" height="{_n(h - 6)}" rx="3" fill="none"/>'
    return outer


def _curve(points: list[tuple[float, float]]) -> str:
    """A smooth path through the points, leaving and reaching each one horizontally."""
    (x0, y0), *rest = points
    parts = [f"M{_n(x0)} {_n(y0)}"]
    for x1, y1 in rest:
        if y1 == y0:
            parts.append(f"L{_n(x1)} {_n(y1)}")
        else:
            middle = (x0 + x1) / 2
            parts.append(f"C{_n(middle)} {_n(y0)} {_n(middle)} {_n(y1)} {_n(x1)} {_n(y1)}")
        x0, y0 = x1, y1
    return " ".join(parts)


def _head(point: tuple[float, float]) -> str:
    x, y = point
    return f"M{_n(x)} {_n(y)} L{_n(x - 7)} {_n(y - 3.5)} L{_n(x - 7)} {_n(y + 3.5)} Z"


def _n(value: float) -> str:
    """A coordinate with one decimal at most: the SVG stays small."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _text(text: str, lines: bool = False) -> str:
    return escape(clean(text, lines), quote=True)
