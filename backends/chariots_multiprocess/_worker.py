"""The worker-process side of :class:`~chariots_multiprocess.MultiprocessWorkerPool`.

A worker is a loop over two one-way pipes: it receives work on ``tasks`` and answers each piece
on ``results``, one at a time, until ``tasks`` is closed. It never touches the op store or the
saver: the parent records every state, so any store works and a dead worker cannot leave a
half-written record behind.

A piece of work is a pipeline job (``JOB``) or one call of a batch function (``CALL``, from
:meth:`~chariots_multiprocess.MultiprocessWorkerPool.map_unordered`). Messages are dill bytes
(so lambdas and locally defined ops travel by value):

- parent -> worker: ``(kind, key, token, payload or None, argument_bytes)``. ``payload`` is the
  dill of what every piece of that kind shares: ``(pipeline, runner)`` for a job, ``(function,
  shared)`` for a call; ``token`` names it. The parent sends the payload only when this
  worker's cache does not hold ``token``; both sides keep the same :class:`TokenLRU`, so they
  always agree on what the worker has. ``argument_bytes`` is the job's input or the call's item.
- worker -> parent: ``(key, reply)``, the key of the piece it answers (the parent attributes a
  reply to nothing else) and, for a job, a :class:`~chariots_core.serving.jobs.JobOutcome`, which
  carries the ``serialize()`` bytes of each op the run trained, for the parent to install; for a
  call, ``("done", key, result_bytes)`` or ``("failed", key, error)``.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import dill
import multiprocess
from multiprocess import connection

from chariots_core.serving.jobs import JobOutcome, failure_details, run_pipeline

if TYPE_CHECKING:
    from multiprocess.connection import Connection

__all__ = ["TokenLRU", "serve", "DONE", "FAILED", "JOB", "CALL"]

DONE, FAILED = "done", "failed"  # outcomes
JOB, CALL = "job", "call"  # kinds of work


class TokenLRU:
    """The pipelines a worker holds, least recently used first; both pipe ends keep one.

    :param capacity: how many pipelines a worker keeps deserialized at most.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, Any] = OrderedDict()

    def __contains__(self, token: str) -> bool:
        return token in self._entries

    def get(self, token: str) -> Any:
        """The entry of ``token``, now the most recently used."""
        self._entries.move_to_end(token)
        return self._entries[token]

    def put(self, token: str, entry: Any) -> None:
        """Add or replace ``token``'s entry, dropping the least recently used beyond capacity."""
        self._entries[token] = entry
        self._entries.move_to_end(token)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)


class _Cached:
    """A pipeline payload kept by a worker: the bytes, and the objects while they are pristine."""

    __slots__ = ("payload", "objects")

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.objects: tuple[Any, Any] | None = None

    def take(self) -> tuple[Any, Any]:
        if self.objects is None:
            self.objects = dill.loads(self.payload)
        return self.objects


def serve(tasks: Connection, results: Connection, cache_size: int) -> None:
    """The worker's main loop: run work from ``tasks`` until the parent closes it."""
    # Ctrl-C in a terminal reaches the whole process group; the parent decides when workers
    # stop (by closing ``tasks``), so an interrupt never cuts a job short here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocess.parent_process()
    if parent is not None:
        # A busy worker would only see its pipe close after its job: watch the parent instead,
        # so a dead parent never leaves workers running.
        threading.Thread(target=_exit_with, args=(parent.sentinel,), daemon=True).start()
    cache = TokenLRU(cache_size)
    while True:
        try:
            message = tasks.recv_bytes()
        except (EOFError, OSError):
            return
        kind, key, token, payload, argument_bytes = dill.loads(message)
        if payload is not None:
            cache.put(token, _Cached(payload))
        run = _run if kind == JOB else _call
        results.send_bytes(dill.dumps((key, run(key, cache.get(token), argument_bytes))))


def _exit_with(parent_sentinel: int) -> None:
    connection.wait([parent_sentinel])
    os._exit(1)


def _run(job_id: str, cached: _Cached, input_bytes: bytes) -> JobOutcome:
    try:
        pipeline, runner = cached.take()
        pipeline_input = dill.loads(input_bytes)
    except Exception as exc:  # e.g. an op's module cannot be imported in the worker
        cached.objects = None
        return JobOutcome.unloadable(
            exc,
            "the worker could not load the job's pipeline or input",
            "Ops and inputs must be importable in a fresh process, or defined where dill can send "
            "them by value (a function's locals, __main__)",
        )
    outcome = run_pipeline(pipeline, runner, pipeline_input, ship_trained=True)
    if outcome.error is not None or outcome.trained:
        # A run that failed half-way may have changed the cached ops, and a fit changed them in
        # place: the next job must start from the ops as submitted, so rebuild them from the bytes.
        cached.objects = None
    return outcome


def _call(key: str, cached: _Cached, item_bytes: bytes) -> tuple:
    """One call of a batch function; the shared objects stay cached for the batch's next items."""
    try:
        function, shared = cached.take()
        return (DONE, key, dill.dumps(function(shared, dill.loads(item_bytes))))
    except Exception as exc:  # reported to the batch instead of killing the worker
        cached.objects = None  # a call that failed half-way may have changed the shared objects
        return (FAILED, key, failure_details(exc))
