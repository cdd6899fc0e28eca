"""The HTTP face of a :class:`~chariots_core.Chariots` app: a plain WSGI callable.

No web framework: the routes are few and fixed, so a table of path templates does the
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
    GET  /status[?limit=<n>]             -> the app's status() (see chariots_core.serving.status)
    GET  /pipelines/<name>/why_stale     -> the app's why_stale(<name>), as Staleness.to_dict()
    POST /jobs/fetch/                    {"job_id": <id>, "pipeline": <name, optional>}
    GET  /jobs/fetch/<job_id>            -> PipelineResponse JSON
    GET  /                               -> the status page (HTML, see chariots_waitress.status_page)

To add a route, add its template to :data:`ROUTES` with a handler
``handler(app, body, *path_values) -> (status, payload)``; ``<...>`` segments match one
path segment each and are passed in order. A ``GET`` handler's ``body`` holds the query
string's parameters (strings).

Request bodies are optional (every key has a default), must be JSON objects sent as
``application/json``, and are never unpickled; :mod:`chariots_waitress.body` checks their
size, nesting (a pipeline input nests at most
:data:`~chariots_core.serving.jsonsafe.MAX_DEPTH` levels) and numbers (``NaN``,
``Infinity`` and overflowing literals such as ``1e999`` are refused). Responses never hold
a non-finite number either: such an output is an error (see
:mod:`chariots_core.serving.jsonsafe`). Names travel percent-encoded in the path; a name
containing ``/`` cannot be addressed over HTTP.

Every error answers ``{"error": {"type", "message", "node"?}}`` with the status chosen by
:func:`chariots_waitress.errors.status_for`: 400 malformed request, 404 unknown route,
pipeline or job, 405 wrong method (with an ``Allow`` header), 409 version conflict or
missing saved state, 413 body over ``max_body_bytes``, 500 a failed op (naming the node).
Only 5xx answers are logged (with the traceback): a client's mistake is not the server's.
Under :func:`~chariots_waitress.serve`, a body declared over ``max_body_bytes`` is refused by
waitress itself before it is read, with a plain-text 413 (the client raises
:class:`~chariots_waitress.RequestError` for it all the same).
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

from .body import read_json_body
from .errors import RequestError, error_body, status_for
from .status_page import serve_status_page

__all__ = ["make_wsgi_app", "ChariotsWSGIApp", "DEFAULT_MAX_BODY_BYTES", "ROUTES"]

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024

logger = logging.getLogger("chariots_waitress")

StartResponse = Callable[..., Any]
Payload = tuple[int, Any]
Handler = Callable[..., Payload]
_STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}
_JSON_TYPE = ("Content-Type", "application/json")
_RECENT_PATHS = 4096


_C_MAKE_ENCODER: Callable[..., Any] | None = getattr(json.encoder, "c_make_encoder", None)  # None without _json


def json_encoder(make_c_encoder: Callable[..., Any] | None = _C_MAKE_ENCODER) -> Callable[[Any], str]:
    """A compact JSON encoder that refuses NaN and infinities, built once.

    ``json.JSONEncoder.encode`` builds json's C encoder anew on every call, which is a
    quarter of the cost of encoding a small response; here it is built once, when the
    interpreter has it (``make_c_encoder``), else the plain encoder is used. Payloads are
    acyclic by construction (handlers build them from ``to_jsonable`` output), so no
    cycle check. ``allow_nan=False`` is a last guard: ``to_jsonable`` already refuses
    non-finite numbers, naming where they are.
    """
    encoder = json.JSONEncoder(allow_nan=False, separators=(",", ":"), check_circular=False)
    if make_c_encoder is None:
        return encoder.encode
    c_encode = make_c_encoder(
        None, encoder.default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, False
    )

    def encode(payload: Any) -> str:
        return "".join(c_encode(payload, 0))

    return encode


_encode = json_encoder()


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
        try:
            status, payload = self._dispatch(environ)
            body = _encode(payload).encode()
            headers = [_JSON_TYPE, ("Content-Length", str(len(body)))]
        except Exception as exc:  # every failure must still answer JSON
            status = status_for(exc)
            if status >= 500:
                logger.error("%s %s failed", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"), exc_info=exc)
            body = _encode(error_body(exc)).encode()
            headers = [_JSON_TYPE, ("Content-Length", str(len(body))), *getattr(exc, "headers", ())]
        start_response(_STATUS_LINES[status], headers)
        return [body]

    def _dispatch(self, environ: dict[str, Any]) -> Payload:
        methods, path_values = _ROUTER.match(environ.get("PATH_INFO") or "/")
        method = environ.get("REQUEST_METHOD", "GET")
        handler = methods.get(method)
        if handler is None:
            allowed = ", ".join(methods)
            msg = f"{method} is not allowed on {environ.get('PATH_INFO')!r}; use {allowed}"
            raise RequestError(msg, 405, (("Allow", allowed),))
        body = read_json_body(environ, self.max_body_bytes) if method == "POST" else _query(environ)
        return handler(self.app, body, *path_values)


# -- the handlers: (app, request body, *values from the path) -> (status, payload) ---------
def _expect(body: dict[str, Any], allowed: frozenset[str], route: str) -> None:
    if allowed.issuperset(body):  # the usual answer, without building a set
        return
    unknown = ", ".join(map(repr, sorted(body.keys() - allowed)))
    expected = ", ".join(sorted(allowed)) or "no keys"
    raise RequestError(f"unknown key(s) {unknown} in the body of {route}; expected {expected}")


def _response_payload(response: Any) -> Payload:
    return (202 if response.job_id is not None and response.value is None else 200), response.to_json()


_MAIN_KEYS = frozenset({"pipeline_input", "use_worker"})


def _call(app: Chariots, body: dict[str, Any], name: str) -> Payload:
    _expect(body, _MAIN_KEYS, "/main")
    use_worker = body.get("use_worker")
    if use_worker is not None and not isinstance(use_worker, bool):
        raise RequestError(f"'use_worker' must be true, false or null (got {use_worker!r})")
    return _response_payload(app.call_pipeline(name, body.get("pipeline_input"), use_worker))


def _versions(app: Chariots, body: dict[str, Any], name: str) -> Payload:
    return 200, {"versions": {node: str(version) for node, version in app.pipeline_versions(name).items()}}


_LOAD_KEYS = frozenset({"strategy"})


def _load(app: Chariots, body: dict[str, Any], name: str) -> Payload:
    _expect(body, _LOAD_KEYS, "/load")
    strategy = body.get("strategy", "latest")
    if not isinstance(strategy, str):
        raise RequestError(f"'strategy' must be a string (got {strategy!r})")
    versions = app.load_pipeline(name, strategy)
    return 200, {"versions": {node: str(version) for node, version in versions.items()}}


def _save(app: Chariots, body: dict[str, Any], name: str) -> Payload:
    _expect(body, frozenset(), "/save")
    app.save_pipeline(name)
    return 200, {"pipeline": name, "saved": True}


def _pipeline_health(app: Chariots, body: dict[str, Any], name: str) -> Payload:
    return 200, {"pipeline": name, "is_loaded": app.is_pipeline_loaded(name)}


def _why_stale(app: Chariots, query: dict[str, str], name: str) -> Payload:
    return 200, app.why_stale(name).to_dict()


def _status(app: Chariots, query: dict[str, str]) -> Payload:
    if not {"limit"}.issuperset(query):
        unknown = ", ".join(map(repr, sorted(query.keys() - {"limit"})))
        raise RequestError(f"unknown parameter(s) {unknown} in the query of /status; expected limit")
    limit = query.get("limit", "10")
    if not (limit.isascii() and limit.isdigit()):
        raise RequestError(f"'limit' must be a number >= 0 (got {limit!r})")
    return 200, app.status(int(limit))


def _health(app: Chariots, body: dict[str, Any]) -> Payload:
    return 200, to_jsonable(app.health_check())


def _available(app: Chariots, body: dict[str, Any]) -> Payload:
    return 200, {"pipelines": app.available_pipelines()}


_FETCH_KEYS = frozenset({"job_id", "pipeline"})


def _fetch_from_body(app: Chariots, body: dict[str, Any]) -> Payload:
    _expect(body, _FETCH_KEYS, "/jobs/fetch/")
    job_id, pipeline = body.get("job_id"), body.get("pipeline")
    if not isinstance(job_id, str) or not job_id:
        raise RequestError(f"the body of /jobs/fetch/ must hold a 'job_id' string (got {job_id!r})")
    if pipeline is not None and not isinstance(pipeline, str):
        raise RequestError(f"'pipeline' must be a pipeline name (got {pipeline!r})")
    return _fetch(app, body, _check_segment(job_id, "job id"))


def _fetch(app: Chariots, body: dict[str, Any], job_id: str) -> Payload:
    return _response_payload(app.fetch_job(job_id, body.get("pipeline")))


ROUTES: dict[str, dict[str, Handler]] = {
    "/pipelines/<pipeline_name>/main": {"POST": _call},
    "/pipelines/<pipeline_name>/versions": {"GET": _versions},
    "/pipelines/<pipeline_name>/load": {"POST": _load},
    "/pipelines/<pipeline_name>/save": {"POST": _save},
    "/pipelines/<pipeline_name>/health_check": {"GET": _pipeline_health},
    "/pipelines/<pipeline_name>/why_stale": {"GET": _why_stale},
    "/health_check": {"GET": _health},
    "/available_pipelines": {"GET": _available},
    "/status": {"GET": _status},
    "/jobs/fetch/": {"POST": _fetch_from_body},
    "/jobs/fetch/<job_id>": {"GET": _fetch},
}
"""Every route: path template -> {HTTP method: handler}. The one place to add a route."""


# -- routing -----------------------------------------------------------------------------
class _Router:
    """Matches a path against :data:`ROUTES` with one dict lookup per template shape.

    A template's *shape* is the positions of its ``<...>`` segments; paths are looked up
    with those positions blanked, literal templates first. The last few thousand matched
    paths are remembered, so the hot routes of a server cost one lookup.
    """

    def __init__(self, routes: dict[str, dict[str, Handler]]) -> None:
        self._recent: dict[str, tuple[dict[str, Handler], tuple[str, ...]]] = {}
        # {segment count: [(variable positions, their descriptions, {blanked segments: methods})]}
        self._tables: dict[int, list[tuple[tuple[int, ...], tuple[str, ...], dict[tuple[str, ...], Any]]]] = {}
        for template, methods in routes.items():
            segments = template.strip("/").split("/")
            variables = tuple(i for i, segment in enumerate(segments) if segment.startswith("<"))
            what = tuple(segments[i].strip("<>").replace("_", " ") for i in variables)
            blanked = tuple("" if i in variables else segment for i, segment in enumerate(segments))
            shapes = self._tables.setdefault(len(segments), [])
            table = next((table for shape, _, table in shapes if shape == variables), None)
            if table is None:
                table = {}
                shapes.append((variables, what, table))
                shapes.sort(key=lambda entry: len(entry[0]))
            table[blanked] = methods

    def match(self, path_info: str) -> tuple[dict[str, Handler], tuple[str, ...]]:
        """The methods of the route matching ``path_info``, and the values of its variables.

        :raises RequestError: 404 if no route matches, 400 if a variable is not a valid name.
        """
        found = self._recent.get(path_info)
        if found is None:
            found = self._match(path_info)
            if len(self._recent) >= _RECENT_PATHS:  # job ids are endless: start over
                self._recent.clear()
            self._recent[path_info] = found
        return found

    def _match(self, path_info: str) -> tuple[dict[str, Handler], tuple[str, ...]]:
        parts = _path_parts(path_info)
        for variables, what, table in self._tables.get(len(parts), ()):
            if variables:
                key = list(parts)
                for position in variables:
                    key[position] = ""
                methods = table.get(tuple(key))
                if methods is not None:
                    return methods, tuple(_check_segment(parts[i], w) for i, w in zip(variables, what))
            else:
                methods = table.get(tuple(parts))
                if methods is not None:
                    return methods, ()
        raise RequestError(f"no route /{'/'.join(parts)}; see the routes in chariots_waitress.wsgi", 404)


def _query(environ: dict[str, Any]) -> dict[str, str]:
    """The query string's parameters (the last value of a repeated one); ``{}`` without one."""
    query = environ.get("QUERY_STRING")
    if not query:
        return {}
    try:
        return dict(parse_qsl(query, keep_blank_values=True, errors="strict"))
    except UnicodeError:
        raise RequestError("the query string is not UTF-8") from None


def _path_parts(path_info: str) -> list[str]:
    """The path's segments, decoded: WSGI hands the path over as latin-1 of the raw bytes."""
    if path_info.isascii():
        path = path_info
    else:
        try:
            path = path_info.encode("latin-1").decode("utf-8")
        except UnicodeError:
            raise RequestError("the request path is not UTF-8") from None
    return path.strip("/").split("/")


def _check_segment(value: str, what: str) -> str:
    if not value or value in (".", "..") or not value.isprintable():
        raise RequestError(f"{value!r} is not a valid {what}")
    return value


_ROUTER = _Router(ROUTES)
