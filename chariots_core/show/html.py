"""HTML pages around pictures: one picture on its own page, and the page skeleton others share.

Pages are self-contained: the style is inline, the pictures are inline SVG, there is no
script and no link to anything outside the page, so they work offline and from a file.
"""

from __future__ import annotations

from html import escape

from .picture import Picture
from .svg import STYLE, to_svg
from .text import clean

__all__ = ["to_html", "html_document", "html_text", "PAGE_STYLE"]

PAGE_STYLE = """\
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5rem; color: #1d2733; background: #fbfbfa; }
h1 { font-size: 1.4rem; margin: 0 0 .3rem; } h2 { font-size: 1.15rem; margin: 1.6rem 0 .4rem; } h3 { font-size: 1rem; margin: 1rem 0 .3rem; }
.muted { color: #5b6675; } .ok { color: #1b7f3b; } .warn { color: #c26a00; } .bad { color: #c62828; }
.picture { overflow-x: auto; background: #fff; border: 1px solid #e1e4e8; border-radius: 6px; padding: .4rem; }
table { border-collapse: collapse; margin: .4rem 0; font-size: .9rem; }
th, td { text-align: left; padding: .25rem .7rem .25rem 0; border-bottom: 1px solid #e6e8eb; vertical-align: top; }
th { color: #5b6675; font-weight: 600; }
code, .mono { font-family: "DejaVu Sans Mono", ui-monospace, Menlo, Consolas, monospace; font-size: .85rem; }
section.pipeline { margin-bottom: 1.2rem; } nav a { margin-right: .8rem; }
.legend span { margin-right: 1rem; }
"""


def html_text(text: str) -> str:
    """``text`` escaped for HTML content and attribute values."""
    return escape(clean(text), quote=True)


def html_document(title: str, body: str) -> str:
    """A complete HTML page with the page and picture styles inline; ``body`` is trusted HTML."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html_text(title)}</title>\n"
        f"<style>\n{PAGE_STYLE}{STYLE}</style>\n"
        f"</head><body>\n{body}\n</body></html>\n"
    )


def to_html(picture: Picture) -> str:
    """One picture on a page of its own, with a legend of the shapes."""
    legend = (
        '<p class="legend muted"><span>▭ op</span><span>▭▭ loadable op (saved in the op store)</span>'
        "<span>⛁ dataset</span><span>⬭ pipeline input/output</span><span>┄ nested pipeline</span></p>"
    )
    body = f"<h1>{html_text(picture.title)}</h1>\n{legend}\n" f'<div class="picture">{to_svg(picture, style=False)}</div>'
    return html_document(picture.title, body)
