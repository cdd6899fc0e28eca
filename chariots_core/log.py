"""Chariots's loggers: one ``logging`` hierarchy under ``"chariots"``, quiet unless you ask.

The library only creates loggers and never configures output: the ``"chariots"`` logger has a
:class:`logging.NullHandler`, so nothing is printed until the application configures logging
(``logging.basicConfig(level=logging.INFO)``, or :func:`log_to_stderr`; ``chariots -v`` does it
for the command line). The loggers, by what they report:

=========================  =======================================================================
``chariots.config``        INFO: the worker pool started, the address served; DEBUG: how the app is built
``chariots.cli``           INFO: what each command restored, held, saved and loaded; DEBUG: timings
``chariots.runner``        DEBUG: each pipeline run (name, number of nodes, runner)
``chariots.deployments``   INFO: each deployment (load, rollback, reload, split); WARNING: a refused
                           hot reload (once per new refusal)
``chariots.reload``        WARNING: hot reload could not read the store (once per new error; it retries)
``chariots.shadow``        WARNING: a shadow variant failed (once per split; the rest are counted)
``chariots.predictions``   WARNING: prediction records dropped (once until a write succeeds again)
=========================  =======================================================================

Each module asks for its logger with :func:`get_logger`, so the names above stay the only
source of truth.
"""

from __future__ import annotations

import logging

__all__ = ["ROOT", "get_logger", "log_to_stderr"]

ROOT = "chariots"

logging.getLogger(ROOT).addHandler(logging.NullHandler())


def get_logger(name: str) -> logging.Logger:
    """The ``chariots.<name>`` logger."""
    return logging.getLogger(f"{ROOT}.{name}")


def log_to_stderr(level: int = logging.INFO) -> logging.Handler:
    """Print Chariots's log records at ``level`` and above on stderr; returns the handler added.

    For scripts and the command line; applications that configure logging themselves do not
    need it.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger(ROOT)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
