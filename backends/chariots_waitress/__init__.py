"""Serve a Chariots app over HTTP on waitress, and call it with the same API from elsewhere.

The server side is a plain WSGI callable (:func:`make_wsgi_app`, no web framework) that
:func:`serve` runs on waitress; the client side, :class:`PipelinesClient`, has the methods
of :class:`chariots_core.Chariots` and raises the same exceptions. Requests and responses
are JSON only: nothing sent to the server is ever unpickled.

Install with ``pip install 'chariots[serve]'``.
"""

from .client import PipelinesClient
from .errors import RequestError, ServeError, ServerUnavailableError
from .server import DEFAULT_PORT, ServerThread, serve
from .wsgi import make_wsgi_app

__all__ = [
    "make_wsgi_app",
    "serve",
    "ServerThread",
    "DEFAULT_PORT",
    "PipelinesClient",
    "RequestError",
    "ServeError",
    "ServerUnavailableError",
]
