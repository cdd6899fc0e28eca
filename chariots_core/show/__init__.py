"""Pictures: pipelines, lineage and the status page, drawn as DOT, Mermaid, SVG or HTML.

Everything here is pure: functions of plain data (a :class:`Picture`, a :class:`Lineage`, a
status dict) that return text. Nothing needs a network, a binary or a script: SVG is laid out
here (:mod:`.layout`) and drawn server-side, so notebooks, the command line and the status
page show the same picture. It imports nothing from the rest of Chariots but its errors:
pipelines turn themselves into pictures (``Pipeline.picture()``), and the app fills the status
dict that :func:`render_status_page` draws.

    >>> print(render(train_iris, "mermaid"))            # doctest: +SKIP
    >>> open("iris.svg", "w").write(render([train_iris, pred_iris], "svg"))  # doctest: +SKIP
"""

from .lineage import Lineage, OpVersion, VersionLink
from .picture import MARKS, NODE_KINDS, Cluster, Picture, PictureEdge, PictureNode, combine
from .render import FORMATS, as_picture, render
from .status_page import render_status_page

__all__ = [
    "as_picture",
    "Cluster",
    "combine",
    "FORMATS",
    "Lineage",
    "MARKS",
    "NODE_KINDS",
    "OpVersion",
    "Picture",
    "PictureEdge",
    "PictureNode",
    "render",
    "render_status_page",
    "VersionLink",
]
