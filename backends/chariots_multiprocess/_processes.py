"""The parent's side of worker processes: starting one, what it can be sent, stopping some,
saying how one died."""

from __future__ import annotations

import signal
from typing import Any

import dill

from chariots_core.errors import SerializationError, WorkerError

from . import _worker
from ._units import Unit

__all__ = ["WorkerProcess", "start_worker", "stop_workers", "death_reason", "dumps_for_worker"]

_STOP_GRACE = 5.0  # seconds a worker gets to exit once its job pipe is closed, then SIGKILL


class WorkerProcess:
    """The parent's handle on one worker process and the unit it holds.

    ``unit`` is set, under the pool's lock, once the unit is handed to the worker (its start
    recorded); ``alive`` turns false, under the same lock, when the pool buries the worker.
    """

    __slots__ = ("process", "tasks", "results", "unit", "tokens", "eof", "alive")

    def __init__(self, process: Any, tasks: Any, results: Any, cache_size: int) -> None:
        self.process, self.tasks, self.results = process, tasks, results
        self.unit: Unit | None = None
        self.tokens = _worker.TokenLRU(cache_size)  # mirrors the worker's pipeline cache
        self.eof = False
        self.alive = True

    @property
    def name(self) -> str:
        """How job records name the worker: ``"pid <pid>"``."""
        return f"pid {self.process.pid}"


def start_worker(context: Any, cache_size: int) -> WorkerProcess:
    """Start one worker process on two one-way pipes of its own.

    :raises WorkerError: if the system cannot start a process.
    """
    task_reader, task_writer = context.Pipe(duplex=False)
    result_reader, result_writer = context.Pipe(duplex=False)
    process = context.Process(
        target=_worker.serve, args=(task_reader, result_writer, cache_size), name="chariots-worker", daemon=True
    )
    try:
        process.start()
    except OSError as exc:
        task_writer.close()
        result_reader.close()
        msg = f"could not start a worker process ({exc}); free memory or process slots and retry"
        raise WorkerError(msg) from exc
    finally:
        # The parent keeps only its own ends, so each side sees end-of-file when the other dies.
        task_reader.close()
        result_writer.close()
    return WorkerProcess(process, task_writer, result_reader, cache_size)


def stop_workers(workers: list[WorkerProcess]) -> None:
    """Stop worker processes: idle ones exit on end-of-file, busy ones are killed."""
    for worker in workers:
        worker.tasks.close()  # end-of-file: an idle worker's loop returns
        if worker.unit is not None:
            worker.process.kill()  # its job or batch item outlived close()'s timeout and is recorded failed
    for worker in workers:
        worker.process.join(_STOP_GRACE)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.results.close()


def death_reason(worker: WorkerProcess, unit: Unit) -> str:
    """How ``worker`` ended while it ran ``unit``, for the unit's error."""
    code = worker.process.exitcode
    if code is not None and code < 0:
        how = f"was killed by signal {signal.Signals(-code).name}"
    else:
        how = f"exited with code {code}"
    return f"worker process {worker.process.pid} {how} while running {unit.describe()}"


def dumps_for_worker(obj: Any, what: str) -> bytes:
    """``obj`` as dill bytes a worker can load; ``what`` names it in the error.

    :raises SerializationError: if dill cannot serialize it.
    """
    try:
        # recurse: a function defined in __main__ or a test carries the globals it uses (its
        # imports included) instead of a reference to a module the worker does not have.
        return dill.dumps(obj, recurse=True)
    except Exception as exc:
        msg = (
            f"{what} cannot be sent to a worker process: dill cannot serialize it "
            f"({type(exc).__name__}: {exc}). Keep locks, open files and connections out of ops "
            "and inputs (open them inside execute()), or run it with use_worker=False"
        )
        raise SerializationError(msg) from exc
