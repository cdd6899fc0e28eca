"""``GET /``: the app's status page, as HTML, for people (every other route answers JSON).

The page is drawn by :func:`chariots_core.show.render_status_page`: one self-contained document,
no script, every asset inline. The response forbids scripts, frames and outside resources
through its Content-Security-Policy, as a second wall behind the page's own escaping.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from chariots_core import Chariots
from chariots_core.serving.status import page_status
from chariots_core.show import render_status_page

from .errors import error_body, status_for

__all__ = ["serve_status_page", "SECURITY_HEADERS"]

logger = logging.getLogger("chariots_waitress")

SECURITY_HEADERS = [
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
]


def serve_status_page(app: Chariots, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answer a request for ``/``: the page for ``GET`` and ``HEAD``, 405 for other methods."""
    method = environ.get("REQUEST_METHOD", "GET")
    if method not in ("GET", "HEAD"):
        message = f"{method} is not allowed on '/'; the status page is read-only, use GET"
        return _json(start_response, 405, {"error": {"type": "RequestError", "message": message}}, [("Allow", "GET, HEAD")])
    try:
        body = render_status_page(page_status(app)).encode()
    except Exception as exc:  # the page must fail like every route: a JSON error, logged
        logger.error("GET / failed", exc_info=exc)
        return _json(start_response, status_for(exc), error_body(exc), [])
    headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))), *SECURITY_HEADERS]
    start_response(_status_line(200), headers)
    return [b"" if method == "HEAD" else body]


def _json(start_response: Callable[..., Any], status: int, payload: Any, extra: list[tuple[str, str]]) -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(_status_line(status), [("Content-Type", "application/json"), ("Content-Length", str(len(body))), *extra])
    return [body]


def _status_line(status: int) -> str:
    return f"{status} {HTTPStatus(status).phrase}"
