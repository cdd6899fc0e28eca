"""The HTTP face of a :class:`~chariots_core.Chariots` app: a plain WSGI callable.

No web framework: the routes are few and fixed, so a dictionary lookup on the path does the
routing, and each request costs little more than the app call itself. Serve it with
:func:`chariots_waitress.serve` or any WSGI server.

Routes (reads are ``GET``; anything that runs or changes a pipeline is ``POST``)::

    POST /pipelines/<name>/main          {"pipeline_input": <JSON>, "use_worker": <bool|null>}
                                         -> PipelineResponse JSON (202 when a job was queued)
    GET  /pipelines/<name>/versions      -> {"versions": {<node>: <version string>}}
    POST /pipelines/<name>/load          {"strategy": "latest" | "latest_compatible"}
                                         -> {"versions": {<node>: <version string>}}
    POST /pipelines/<name>/save          -> {"pipeline": <name>, "saved": true}
    GET  /pipelines/<name>/health_check  -> {"pipeline": <name>, "is_loaded": <bool>}
    GET  /health_check                   -> the app's health_check()
    GET  /available_pipelines            -> {"pipelines": [<name>, ...]}
    GET  /status[?limit=<n>]             -> the app's status() (chariots_core.serving.status)
    GET  /pipelines/<name>/why_stale     -> the app's why_stale(<name>), as Staleness.to_dict()
    POST /jobs/fetch/                    {"job_id": <id>, "pipeline": <name, optional>}
    GET  /jobs/fetch/<job_id>            -> PipelineResponse JSON
    GET  /                               -> the status page (HTML, see chariots_waitress.status_page)

Request bodies are optional (every key has a default), must be JSON objects sent as
``application/json``, and are never unpickled. ``GET`` routes read their options from the
query string. Names travel percent-encoded in the path; a
name containing ``/`` cannot be addressed over HTTP. Every error answers
``{"error": {"type", "message", "node"?}}`` with the status chosen by
:func:`chariots_waitress.errors.status_for`: 400 malformed request, 404 unknown route,
pipeline or job, 405 wrong method (with an ``Allow`` header), 409 version conflict or
missing saved state, 413 body over ``max_body_bytes``, 500 a failed op (naming the node).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from chariots_core import Chariots
from chariots_core.errors import ChariotsError
from chariots_core.serving.jsonsafe import to_jsonable

from .errors import RequestError, error_body, status_for
from .status_page import serve_status_page

__all__ = ["make_wsgi_app", "ChariotsWSGIApp", "DEFAULT_MAX_BODY_BYTES"]

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024

logger = logging.getLogger("chariots_waitress")

StartResponse = Callable[..., Any]
Payload = tuple[int, Any]
_STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Built once: json.loads/json.dumps with options build a new decoder/encoder per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def make_wsgi_app(app: Chariots, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> ChariotsWSGIApp:
    """A WSGI callable serving ``app`` on the routes listed in the module docstring.

    :param app: the in-process app to serve.
    :param max_body_bytes: request bodies larger than this are refused with 413.
    """
    if not isinstance(app, Chariots):
        msg = f"'app' must be a chariots_core.Chariots (got {app!r} that is a {type(app).__name__})"
        raise ChariotsError(msg)
    if not isinstance(max_body_bytes, int) or isinstance(max_body_bytes, bool) or max_body_bytes < 0:
        raise ChariotsError(f"'max_body_bytes' must be a non-negative int (got {max_body_bytes!r})")
    return ChariotsWSGIApp(app, max_body_bytes)


class ChariotsWSGIApp:
    """The WSGI callable :func:`make_wsgi_app` returns; ``.app`` is the served app."""

    def __init__(self, app: Chariots, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "/") in ("", "/"):  # the status page, HTML for people
            return serve_status_page(self.app, environ, start_response)
        headers = [("Content-Type", "application/json")]
        try:
            status, payload = self._dispatch(environ, headers)
            body = _ENCODER.encode(payload).encode()
        except Exception as exc:  # every failure must still answer JSON
            status = status_for(exc)
            if status >= 500:
                logger.error("%s %s failed", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"), exc_info=exc)
            body = _ENCODER.encode(error_body(exc)).encode()
        headers.append(("Content-Length", str(len(body))))
        start_response(_STATUS_LINES[status], headers)
        return [body]

    def _dispatch(self, environ: dict[str, Any], headers: list[tuple[str, str]]) -> Payload:
        parts = _path_parts(environ.get("PATH_INFO") or "/")
        handlers, arg = _route(parts)
        method = environ.get("REQUEST_METHOD", "GET")
        handler = handlers.get(method)
        if handler is None:
            allowed = ", ".join(handlers)
            headers.append(("Allow", allowed))
            raise RequestError(f"{method} is not allowed on {'/'.join(parts)!r}; use {allowed}", 405)
        body = self._read_body(environ) if method == "POST" else _query(environ)
        return handler(self.app, arg, body)

    def _read_body(self, environ: dict[str, Any]) -> dict[str, Any]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise RequestError(f"Content-Length must be a number (got {environ['CONTENT_LENGTH']!r})") from None
        if length > self.max_body_bytes:
            msg = f"the request body has {length} bytes; this server accepts at most {self.max_body_bytes}"
            raise RequestError(msg, 413)
        if length <= 0:
            return {}
        media_type = (environ.get("CONTENT_TYPE") or "").partition(";")[0].strip().lower()
        if media_type != "application/json" and not media_type.endswith("+json"):
            msg = f"the request body must be JSON sent as Content-Type: application/json (got {media_type or 'none'!r})"
            raise RequestError(msg)
        raw = environ["wsgi.input"].read(length)
        try:
            body = _DECODER.decode(raw.decode("utf-8"))  # RFC 8259: JSON exchanged between systems is UTF-8
        except (ValueError, RecursionError) as exc:
            raise RequestError(f"the request body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise RequestError(f"the request body must be a JSON object (got a JSON {type(body).__name__})")
        return body


def _path_parts(path_info: str) -> list[str]:
    """The path's segments, decoded: WSGI hands the path over as latin-1 of the raw bytes."""
    try:
        path = path_info.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise RequestError("the request path is not UTF-8") from None
    return path.strip("/").split("/")


def _query(environ: dict[str, Any]) -> dict[str, str]:
    """The query string's parameters (the last value of a repeated one)."""
    try:
        pairs = parse_qsl(environ.get("QUERY_STRING") or "", keep_blank_values=True, strict_parsing=False, errors="strict")
    except UnicodeError:
        raise RequestError("the query string is not UTF-8") from None
    return dict(pairs)


def _name(value: str, what: str) -> str:
    if value in (".", "..") or not value.isprintable():
        raise RequestError(f"{value!r} is not a valid {what}")
    return value


# -- the handlers: (app, name or id from the path, request body) -> (status, payload) -----
def _expect(body: dict[str, Any], allowed: frozenset[str], route: str) -> None:
    unknown = body.keys() - allowed
    if unknown:
        expected = ", ".join(sorted(allowed)) or "no keys"
        msg = f"unknown key(s) {', '.join(map(repr, sorted(unknown)))} in the body of {route}; expected {expected}"
        raise RequestError(msg)


def _response_payload(response: Any) -> Payload:
    return (202 if response.job_id is not None and response.value is None else 200), response.to_json()


_MAIN_KEYS = frozenset({"pipeline_input", "use_worker"})


def _call(app: Chariots, name: str, body: dict[str, Any]) -> Payload:
    _expect(body, _MAIN_KEYS, "/main")
    use_worker = body.get("use_worker")
    if use_worker is not None and not isinstance(use_worker, bool):
        raise RequestError(f"'use_worker' must be true, false or null (got {use_worker!r})")
    return _response_payload(app.call_pipeline(name, body.get("pipeline_input"), use_worker))


def _versions(app: Chariots, name: str, body: dict[str, Any]) -> Payload:
    return 200, {"versions": {node: str(version) for node, version in app.pipeline_versions(name).items()}}


_LOAD_KEYS = frozenset({"strategy"})


def _load(app: Chariots, name: str, body: dict[str, Any]) -> Payload:
    _expect(body, _LOAD_KEYS, "/load")
    strategy = body.get("strategy", "latest")
    if not isinstance(strategy, str):
        raise RequestError(f"'strategy' must be a string (got {strategy!r})")
    versions = app.load_pipeline(name, strategy)
    return 200, {"versions": {node: str(version) for node, version in versions.items()}}


def _save(app: Chariots, name: str, body: dict[str, Any]) -> Payload:
    _expect(body, frozenset(), "/save")
    app.save_pipeline(name)
    return 200, {"pipeline": name, "saved": True}


def _pipeline_health(app: Chariots, name: str, body: dict[str, Any]) -> Payload:
    return 200, {"pipeline": name, "is_loaded": app.is_pipeline_loaded(name)}


def _why_stale(app: Chariots, name: str, query: dict[str, Any]) -> Payload:
    return 200, app.why_stale(name).to_dict()


def _status(app: Chariots, _: str, query: dict[str, Any]) -> Payload:
    unknown = query.keys() - {"limit"}
    if unknown:
        raise RequestError(f"unknown parameter(s) {', '.join(map(repr, sorted(unknown)))} in the query of /status; expected limit")
    limit = query.get("limit", "10")
    if not limit.isdigit():
        raise RequestError(f"'limit' must be a number >= 0 (got {limit!r})")
    return 200, app.status(int(limit))


def _health(app: Chariots, _: str, body: dict[str, Any]) -> Payload:
    return 200, to_jsonable(app.health_check())


def _available(app: Chariots, _: str, body: dict[str, Any]) -> Payload:
    return 200, {"pipelines": app.available_pipelines()}


_FETCH_KEYS = frozenset({"job_id", "pipeline"})


def _fetch_from_body(app: Chariots, _: str, body: dict[str, Any]) -> Payload:
    _expect(body, _FETCH_KEYS, "/jobs/fetch/")
    job_id, pipeline = body.get("job_id"), body.get("pipeline")
    if not isinstance(job_id, str) or not job_id:
        raise RequestError(f"the body of /jobs/fetch/ must hold a 'job_id' string (got {job_id!r})")
    if pipeline is not None and not isinstance(pipeline, str):
        raise RequestError(f"'pipeline' must be a pipeline name (got {pipeline!r})")
    return _fetch(app, _name(job_id, "job id"), body)


def _fetch(app: Chariots, job_id: str, body: dict[str, Any]) -> Payload:
    return _response_payload(app.fetch_job(job_id, body.get("pipeline")))


Handler = Callable[[Chariots, str, dict[str, Any]], Payload]

_PIPELINE_ROUTES: dict[str, dict[str, Handler]] = {
    "main": {"POST": _call},
    "versions": {"GET": _versions},
    "load": {"POST": _load},
    "save": {"POST": _save},
    "health_check": {"GET": _pipeline_health},
    "why_stale": {"GET": _why_stale},
}
_APP_ROUTES: dict[str, dict[str, Handler]] = {
    "health_check": {"GET": _health},
    "available_pipelines": {"GET": _available},
    "status": {"GET": _status},
}
_FETCH_BODY_ROUTE: dict[str, Handler] = {"POST": _fetch_from_body}
_FETCH_ID_ROUTE: dict[str, Handler] = {"GET": _fetch}


def _route(parts: list[str]) -> tuple[dict[str, Handler], str]:
    """The handlers of the path's route, and the pipeline name or job id it carries."""
    count = len(parts)
    if count == 1 and parts[0] in _APP_ROUTES:
        return _APP_ROUTES[parts[0]], ""
    if count == 3 and parts[0] == "pipelines" and parts[2] in _PIPELINE_ROUTES:
        return _PIPELINE_ROUTES[parts[2]], _name(parts[1], "pipeline name")
    if count >= 2 and parts[0] == "jobs" and parts[1] == "fetch":
        if count == 2:
            return _FETCH_BODY_ROUTE, ""
        if count == 3:
            return _FETCH_ID_ROUTE, _name(parts[2], "job id")
    raise RequestError(f"no route /{'/'.join(parts)}; see the routes in chariots_waitress.wsgi", 404)
