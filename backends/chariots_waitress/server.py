"""Running the WSGI app on waitress: in the foreground (:func:`serve`) or on a thread.

:func:`serve` blocks like ``waitress.serve`` and is what a deployment runs::

    from chariots_waitress import serve
    serve(Chariots([train_iris, pred_iris], path="./iris_data"), port=8080)

:class:`ServerThread` runs any WSGI callable on a background thread and stops it cleanly,
for notebooks, tests and benchmarks::

    with ServerThread(make_wsgi_app(app)) as server:
        PipelinesClient(server.url).call_pipeline("pred_iris", [[1, 2, 3, 4]])
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from waitress.server import create_server

from chariots_core import Chariots
from chariots_core.errors import ConfigError

from .errors import ServeError
from .wsgi import DEFAULT_MAX_BODY_BYTES, ChariotsWSGIApp, make_wsgi_app

__all__ = ["serve", "ServerThread", "DEFAULT_PORT"]

DEFAULT_PORT = 8080
"""The port :func:`serve` listens on and :class:`~chariots_waitress.PipelinesClient` calls by default."""


def serve(
    app: Chariots,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    threads: int = 4,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    **waitress_options: Any,
) -> None:
    """Serve ``app`` over HTTP on waitress until interrupted.

    :param host: the interface to listen on; the default only accepts local connections,
        pass ``"0.0.0.0"`` to accept remote ones.
    :param threads: how many requests waitress handles at once.
    :param max_body_bytes: request bodies larger than this are refused with 413. waitress
        is given the same limit, so it refuses a larger ``Content-Length`` from the headers,
        before reading the body (its own default would buffer up to 1 GiB first), and stops
        a chunked body there (counting its chunk framing too).
    :param waitress_options: any other waitress setting (``channel_timeout``, ``url_prefix``...).
    :raises ServeError: if the address cannot be listened on (e.g. the port is in use).
    :raises ConfigError: if a waitress option is unknown or invalid.
    """
    wsgi_app = make_wsgi_app(app, max_body_bytes)
    server = _create_server(wsgi_app, host=host, port=port, threads=threads, **waitress_options)
    logging.basicConfig()  # as waitress.serve does: show waitress's own warnings
    server.print_listen("Serving on http://{}:{}")
    server.run()


def _create_server(wsgi_app: Any, **options: Any) -> Any:
    """``waitress.create_server``, with the app's body limit and Chariots errors.

    waitress buffers a whole request body before the app runs, so only waitress can refuse
    an oversized body before reading it: a Chariots app hands its limit down.
    """
    if isinstance(wsgi_app, ChariotsWSGIApp):
        if "max_request_body_size" in options:
            msg = (
                "pass the body limit as max_body_bytes (to serve() or make_wsgi_app), not as the "
                "waitress option max_request_body_size: the app and waitress must share one limit"
            )
            raise ConfigError(msg)
        # waitress refuses bodies of max_request_body_size bytes *or more*.
        options["max_request_body_size"] = wsgi_app.max_body_bytes + 1
    try:
        return create_server(wsgi_app, **options)
    except OSError as exc:
        where = f"{options.get('host')}:{options.get('port')}"
        msg = f"cannot listen on {where}: {exc}; pick another port (port=...) or stop what uses this one"
        raise ServeError(msg) from exc
    except ValueError as exc:
        raise ConfigError(f"invalid waitress option: {exc}; see waitress's 'Arguments to serve'") from exc


class ServerThread:
    """A waitress server running ``wsgi_app`` on a daemon thread until :meth:`stop`.

    ``port=0`` (the default) picks a free port; :attr:`url` says which one. A Chariots app's
    ``max_body_bytes`` is handed to waitress as :func:`serve` does. Raises like :func:`serve`
    when the server cannot start.
    """

    def __init__(
        self, wsgi_app: Any, host: str = "127.0.0.1", port: int = 0, threads: int = 4, **waitress_options: Any
    ) -> None:
        # A map of our own lets stop() empty it, which is what ends waitress's loop.
        self._map: dict[int, Any] = {}
        self._server = _create_server(
            wsgi_app, map=self._map, host=host, port=port, threads=threads, **waitress_options
        )
        self.host = str(self._server.effective_host)
        self.port = int(self._server.effective_port)
        self._thread = threading.Thread(target=self._server.run, name=f"waitress-{self.port}", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The server's base URL, e.g. ``http://127.0.0.1:54321``."""
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literals need brackets
        return f"http://{host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        """Close every connection and the listening socket, then wait for the threads."""
        if not self._thread.is_alive():
            return
        # asyncore objects belong to the loop's thread: close them from inside it.
        try:
            self._server.trigger.pull_trigger(self._close_all)
        except OSError:
            # The trigger's pipe is already closed: the loop is ending by itself, and there is
            # nothing left to wake. Seen rarely (EBADF) when many servers start and stop.
            pass
        self._thread.join(timeout)
        self._server.task_dispatcher.shutdown(timeout=timeout)

    def _close_all(self) -> None:
        for dispatcher in list(self._map.values()):
            dispatcher.close()

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
