"""Errors of the HTTP layer, and how every Chariots error crosses the wire.

The server turns an exception into a status code and a JSON body
``{"error": {"type": <class name>, "message": <text>, "node": <node name, if any>}}``;
the client turns that body back into the exception class the in-process
:class:`~chariots_core.Chariots` would have raised, so ``except VersionError`` works the
same against both. The two directions live here, side by side, so they cannot drift apart.

Errors only the HTTP layer can raise::

    ChariotsError
    ├── ServerUnavailableError (ConnectionError)
    │                       the client cannot reach the server, or it did not answer in time
    ├── ServeError (OSError)
    │                       the server cannot start listening (port in use, bad host)
    └── RequestError (ValueError)
                            the server rejected the request itself (bad JSON, unknown route,
                            wrong method, body too large); ``status`` holds the HTTP status
"""

from __future__ import annotations

from typing import Any

from chariots_core import errors as core_errors
from chariots_core.errors import ChariotsError, NodeExecutionError, describe_failure, mark_failed_node

__all__ = ["ServerUnavailableError", "ServeError", "RequestError", "status_for", "error_body", "error_from_body"]


class ServerUnavailableError(ChariotsError, ConnectionError):
    """The client could not reach the Chariots server or got no answer in time."""


class ServeError(ChariotsError, OSError):
    """The server could not start listening on the requested address."""


class RequestError(ChariotsError, ValueError):
    """The server rejected the HTTP request itself; ``status`` is the HTTP status code.

    ``headers`` are extra response headers the refusal needs (``Allow`` for a 405).
    """

    def __init__(self, message: str, status: int = 400, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


# The most specific class listed along an exception's MRO decides its status.
_STATUS_BY_CLASS: dict[type[BaseException], int] = {
    core_errors.UnknownPipelineError: 404,
    core_errors.JobNotFoundError: 404,
    core_errors.VersionError: 409,
    core_errors.NotSavedError: 409,
    core_errors.NotFittedError: 409,
    core_errors.NodeExecutionError: 500,
    core_errors.StoreError: 500,
    core_errors.SerializationError: 500,
    core_errors.BackendError: 500,
    core_errors.WorkerError: 503,
    # The core raises the root class for arguments it rejects (e.g. an unknown strategy).
    core_errors.ChariotsError: 400,
}

# Every ChariotsError class the client may rebuild, by the name the server sends.
_CLASSES: dict[str, type[ChariotsError]] = {
    name: cls
    for name, cls in [*vars(core_errors).items(), ("ServerUnavailableError", ServerUnavailableError)]
    if isinstance(cls, type) and issubclass(cls, ChariotsError)
}


def status_for(exc: BaseException) -> int:
    """The HTTP status for an exception raised by the app (500 for anything unexpected)."""
    if isinstance(exc, RequestError):
        return exc.status
    for cls in type(exc).__mro__:
        status = _STATUS_BY_CLASS.get(cls)
        if status is not None:
            return status
    return 500


def error_body(exc: BaseException) -> dict[str, Any]:
    """The JSON body describing ``exc``: its class name, message and failing node.

    An op's own exception (``ZeroDivisionError``) keeps its type name; the client raises a
    :class:`NodeExecutionError` with that name in ``error_type``.
    """
    error = describe_failure(exc)
    if error["node"] is None:
        del error["node"]
    return {"error": error}


def error_from_body(body: Any, status: int, where: str) -> ChariotsError:
    """The exception the server described in ``body`` (answered with ``status`` to ``where``).

    Types the client does not know become a plain :class:`ChariotsError` whose message keeps
    the server's type name.
    """
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("type"), str):
        return ChariotsError(f"{where} answered HTTP {status} without a Chariots error body: {body!r:.300}")
    kind, message = error["type"], str(error.get("message", ""))
    if kind == RequestError.__name__:
        return RequestError(message, status)
    node = error.get("node") if isinstance(error.get("node"), str) else None
    if kind == NodeExecutionError.__name__:
        return NodeExecutionError(message, node_name=node)
    cls = _CLASSES.get(kind)
    if cls is None:
        if node is not None:  # an op's own exception, which cannot be rebuilt here
            return NodeExecutionError(message, node_name=node, error_type=kind)
        return ChariotsError(f"the server failed with {kind}: {message}")
    rebuilt = cls(message)
    if node is not None:
        mark_failed_node(rebuilt, node)
    return rebuilt
