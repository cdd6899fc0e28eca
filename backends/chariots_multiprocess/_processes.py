"""The parent's handles on worker processes: starting one, stopping some, saying how one died."""

from __future__ import annotations

import signal
from typing import Any

from chariots_core.errors import WorkerError

from . import _worker
from ._units import Unit

__all__ = ["WorkerProcess", "start_worker", "stop_workers", "death_reason"]

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
