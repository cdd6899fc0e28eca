"""``PipelinesClient``: the :class:`~chariots_core.Chariots` API, answered by a remote server.

Its methods have the names, signatures and return types of ``Chariots``'s, and raise the
same exception classes, so moving code from an in-process app to a server is a one-line
swap::

    client = PipelinesClient("http://127.0.0.1:8080")
    client.call_pipeline(train_iris)
    client.save_pipeline(train_iris)
    client.load_pipeline(pred_iris)
    client.call_pipeline(pred_iris, [[1, 2, 3, 4]]).value

It is built on the standard library's :mod:`http.client`: the wire format is a handful of
small JSON requests to one host, which needs neither a connection pool across hosts, nor
redirects, nor cookies, so a third-party HTTP library would add a dependency without adding
speed. Each thread keeps one persistent (keep-alive) connection, which saves a TCP handshake
per call. An idle connection the server has closed is noticed before use and replaced; if the
server closes it in the instant between that check and the request, the request is sent again
once on a fresh connection (the server closed it before reading the request, so nothing ran).
"""

from __future__ import annotations

import http.client
import json
import select
import threading
from typing import Any
from urllib.parse import quote, urlsplit

from chariots_core import Pipeline, PipelineResponse, Version
from chariots_core.errors import ChariotsError, UnknownPipelineError
from chariots_core.op_store.explain import Staleness
from chariots_core.op_store.records import check_limit
from chariots_core.serving.jsonsafe import to_jsonable

from .errors import ServerUnavailableError, error_from_body

__all__ = ["PipelinesClient"]

PipelineRef = str | Pipeline

# Failures of a reused keep-alive connection that mean "the server had closed it".
_STALE_CONNECTION = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class PipelinesClient:
    """Query, train, save and load the pipelines of a Chariots app served over HTTP.

    :param backend_url: the server's URL (``http://host:port``, optionally with a path prefix
        when the app is mounted below one, or ``https://``).
    :param timeout: seconds to wait for the server to answer each request (``None`` waits
        forever); long trainings belong in a worker (``use_worker=True``).
    """

    def __init__(self, backend_url: str = "http://127.0.0.1:5000", timeout: float | None = 120.0) -> None:
        parts = urlsplit(str(backend_url))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            msg = f"'backend_url' must look like http://host:port (got {backend_url!r})"
            raise ChariotsError(msg)
        self.backend_url = str(backend_url)
        self.timeout = timeout
        self._connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self._netloc = parts.netloc.rpartition("@")[2]
        self._prefix = parts.path.rstrip("/")
        self._local = threading.local()
        self._connections: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    # -- the Chariots API --------------------------------------------------------------------
    def call_pipeline(
        self, pipeline: PipelineRef, pipeline_input: Any = None, use_worker: bool | None = None
    ) -> PipelineResponse:
        """Run the pipeline on the server and return its :class:`PipelineResponse`.

        ``pipeline_input`` must be JSON-safe (numpy arrays and pandas frames are converted);
        the response's ``value`` comes back as plain JSON values (lists, dicts, numbers).
        """
        body = {"pipeline_input": to_jsonable(pipeline_input), "use_worker": use_worker}
        return PipelineResponse.from_json(self._request("POST", _pipeline_path(pipeline, "main"), body))

    def save_pipeline(self, pipeline: PipelineRef) -> None:
        """Save, on the server, the state of the pipeline's loadable ops."""
        self._request("POST", _pipeline_path(pipeline, "save"), None)

    def load_pipeline(self, pipeline: PipelineRef, strategy: str = "latest") -> dict[str, Version]:
        """Load the pipeline's saved ops on the server and return the versions picked."""
        answer = self._request("POST", _pipeline_path(pipeline, "load"), {"strategy": strategy})
        return _parse_versions(answer)

    def pipeline_versions(self, pipeline: PipelineRef) -> dict[str, Version]:
        """The version of each op node of the pipeline as the server serves it now."""
        return _parse_versions(self._request("GET", _pipeline_path(pipeline, "versions"), None))

    def is_pipeline_loaded(self, pipeline: PipelineRef) -> bool:
        """Whether a load of the pipeline succeeded on the server."""
        return bool(self._request("GET", _pipeline_path(pipeline, "health_check"), None)["is_loaded"])

    def fetch_job(self, job_id: str, pipeline: PipelineRef | None = None) -> PipelineResponse:
        """The current state of an asynchronous call (and its value once done).

        ``pipeline`` is accepted for symmetry with ``Chariots.fetch_job``; job ids are unique.
        """
        path = f"/jobs/fetch/{quote(str(job_id), safe='')}"
        return PipelineResponse.from_json(self._request("GET", path, None))

    def why_stale(self, pipeline: PipelineRef) -> Staleness:
        """Why the server's ``load_pipeline(pipeline)`` would refuse the newest saved versions."""
        return Staleness.from_dict(self._request("GET", _pipeline_path(pipeline, "why_stale"), None))

    def status(self, limit: int = 10) -> dict[str, Any]:
        """The server app's status: what it serves, its newest versions, stale edges, jobs."""
        check_limit(limit)
        return self._request("GET", f"/status?limit={limit}", None)

    def available_pipelines(self) -> list[str]:
        """The names of the pipelines the server serves."""
        return list(self._request("GET", "/available_pipelines", None)["pipelines"])

    def health_check(self) -> dict[str, Any]:
        """The server app's status report."""
        return self._request("GET", "/health_check", None)

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Close the client's connections (it reconnects if used again)."""
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()

    def __enter__(self) -> PipelinesClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<PipelinesClient of {self.backend_url}>"

    # -- HTTP --------------------------------------------------------------------------------
    def _request(self, method: str, path: str, payload: dict[str, Any] | None) -> Any:
        url = self._prefix + path
        headers = {"Accept": "application/json"}
        data = None
        if payload is not None:
            data = json.dumps(payload, allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            connection, reused = self._connection()
            try:
                connection.request(method, url, data, headers)
                response = connection.getresponse()
                raw = response.read()
            except _STALE_CONNECTION as exc:
                self._drop(connection)
                if reused and attempt == 1:
                    continue
                raise self._unavailable(exc, method, url) from exc
            except (OSError, http.client.HTTPException) as exc:
                self._drop(connection)
                raise self._unavailable(exc, method, url) from exc
            break
        self._local.used = True
        if response.will_close:
            self._drop(connection)
        return self._decode(response.status, raw, f"{method} {url}")

    def _decode(self, status: int, raw: bytes, where: str) -> Any:
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            msg = (
                f"{where} on {self.backend_url} answered HTTP {status} with a body that is not "
                f"JSON: {raw[:200]!r}; is it a Chariots server?"
            )
            raise ChariotsError(msg) from None
        if status >= 400:
            raise error_from_body(answer, status, f"{where} on {self.backend_url}")
        return answer

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            # An idle kept-alive socket that is readable was closed by the server: replace it
            # now rather than fail on it (the retry in _request only covers the race left).
            if connection.sock is None or not select.select([connection.sock], [], [], 0)[0]:
                return connection, self._local.used
            self._drop(connection)
        connection = self._connection_class(self._netloc, timeout=self.timeout)
        self._local.connection, self._local.used = connection, False
        with self._lock:
            self._connections.append(connection)
        return connection, False

    def _drop(self, connection: http.client.HTTPConnection) -> None:
        connection.close()
        self._local.connection = None
        with self._lock:
            if connection in self._connections:
                self._connections.remove(connection)

    def _unavailable(self, exc: BaseException, method: str, url: str) -> ServerUnavailableError:
        if isinstance(exc, TimeoutError):
            msg = (
                f"{method} {url} on {self.backend_url} got no answer within {self.timeout} s; "
                "raise PipelinesClient(timeout=...) or run long pipelines with use_worker=True"
            )
        elif isinstance(exc, ConnectionRefusedError):
            msg = (
                f"no Chariots server is listening at {self.backend_url} ({exc}); start one with "
                "chariots_waitress.serve(app, host=..., port=...) or check the URL"
            )
        else:
            msg = f"{method} {url} on {self.backend_url} failed: {type(exc).__name__}: {exc}"
        return ServerUnavailableError(msg)


def _pipeline_path(pipeline: PipelineRef, action: str) -> str:
    name = pipeline.name if isinstance(pipeline, Pipeline) else pipeline
    if not isinstance(name, str):
        msg = f"there is no pipeline {name!r}: pass a Pipeline or a pipeline name (a str)"
        raise UnknownPipelineError(msg)
    return f"/pipelines/{quote(name, safe='')}/{action}"


def _parse_versions(answer: dict[str, Any]) -> dict[str, Version]:
    return {node: Version.parse(text) for node, text in answer["versions"].items()}
