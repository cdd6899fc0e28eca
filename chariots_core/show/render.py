"""One entry point for every format: what ``chariots dag`` and other tools call.

``render(subject, "svg")`` draws a :class:`~chariots_core.Pipeline`, a
:class:`~chariots_core.show.Lineage`, a :class:`~chariots_core.show.Picture`, or a list of
any of them (each in a frame of its own), as ``dot``, ``mermaid``, ``svg`` or ``html`` text.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import ConfigError, PictureError
from .dot import to_dot
from .html import to_html
from .mermaid import to_mermaid
from .picture import Picture, combine
from .svg import to_svg

__all__ = ["render", "FORMATS", "as_picture"]

FORMATS = {"dot": to_dot, "mermaid": to_mermaid, "svg": to_svg, "html": to_html}
"""Format name -> function turning a :class:`Picture` into that format's text."""


def as_picture(subject: Any, title: str = "pipelines") -> Picture:
    """``subject`` as a picture: a picture as is, anything with a ``picture()`` method (a
    pipeline, a lineage) through it, a list of those combined under ``title``.

    :raises PictureError: if ``subject`` cannot be drawn.
    """
    if isinstance(subject, Picture):
        return subject
    if callable(getattr(subject, "picture", None)):
        return subject.picture()
    if isinstance(subject, Iterable) and not isinstance(subject, (str, bytes)):
        pictures = [as_picture(item) for item in subject]
        if len(pictures) == 1:
            return pictures[0]
        return combine(pictures, title)
    msg = f"cannot draw {subject!r}: give a Pipeline, a Lineage, a Picture or a list of them"
    raise PictureError(msg)


def render(subject: Any, format: str = "svg", title: str = "pipelines") -> str:  # noqa: A002 - the CLI's word
    """The text of ``subject`` drawn in ``format`` (``dot``, ``mermaid``, ``svg`` or ``html``).

    :param title: the title of a combined picture, when ``subject`` is a list.
    :raises ConfigError: if ``format`` is not one of :data:`FORMATS`.
    :raises PictureError: if ``subject`` cannot be drawn.
    """
    if format not in FORMATS:
        msg = f"'format' must be one of {', '.join(FORMATS)} (got {format!r})"
        raise ConfigError(msg)
    return FORMATS[format](as_picture(subject, title))
