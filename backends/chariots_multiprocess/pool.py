"""A worker pool of real processes, on ``multiprocess`` (the dill-based fork of multiprocessing).

Why not ``multiprocess.Pool``: a pool worker killed mid-task leaves ``apply_async`` waiting
forever, and workers sharing one task queue share its lock, which a killed worker can take to
its grave. Here each worker owns two one-way pipes (jobs in, results out) and the parent hands a
job to an idle worker itself, so the parent always knows which job each worker holds. One
supervisor thread in the parent waits on every result pipe and every process sentinel at once:
a result settles its job; a dead process fails its job with the reason and is replaced.

The parent writes every job record (queued, running, done/failed) and every result blob, so the
op store and saver need not be shareable between processes; with an LMDB store and a file
saver, records and results survive the app. Workers start with ``forkserver`` (``spawn`` where
that is missing): a fork of a threaded parent can inherit held locks, and both start methods
give a worker only its own pipe ends. Each worker also watches its parent and exits with it,
busy or not, so a crashed app leaves no process behind.

A job carries the pipeline object as the app served it when the job was submitted, with its
runner, serialized once per pipeline object and op versions and sent once per worker; a job
whose run fitted models sends the fitted ops back, and the parent installs them in the app
(:meth:`~chariots_core.Chariots.install_ops`) before recording the job ``done``.

A batch (:meth:`MultiprocessWorkerPool.map_unordered`, which ``Chariots.map_pipeline`` uses)
goes through the same workers, queue and supervisor without job records: its items queue as
calls, its shared objects (the pipeline) cross once per worker, and a call whose worker dies
runs once more on another worker before the batch fails.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import dill
import multiprocess
from multiprocess import connection

from chariots_core.errors import SerializationError, WorkerError
from chariots_core.serving.workers import (
    BaseWorkerPool,
    JobStatus,
    PipelineResponse,
    job_response,
    new_job,
)

from . import _worker
from ._units import Batch, Call, Task, Unit

if TYPE_CHECKING:
    from chariots_core.pipelines.pipeline import Pipeline
    from chariots_core.pipelines.runners import BaseRunner
    from chariots_core.serving.app import Chariots

__all__ = ["MultiprocessWorkerPool"]

logger = logging.getLogger(__name__)

_START_METHODS = ("forkserver", "spawn")
_STOP_GRACE = 5.0  # seconds a worker gets to exit once its job pipe is closed, then SIGKILL


class _Worker:
    """The parent's handle on one worker process."""

    __slots__ = ("process", "tasks", "results", "unit", "tokens", "eof")

    def __init__(self, process: Any, tasks: Any, results: Any, cache_size: int) -> None:
        self.process, self.tasks, self.results = process, tasks, results
        self.unit: Unit | None = None
        self.tokens = _worker.TokenLRU(cache_size)  # mirrors the worker's pipeline cache
        self.eof = False


class MultiprocessWorkerPool(BaseWorkerPool):
    """Runs pipeline jobs and batches in worker processes; a killed worker is replaced, and
    fails its job (a batch runs the worker's chunk once more before it fails).

    Use it as a context manager, or call :meth:`close`::

        with MultiprocessWorkerPool(2) as pool:
            app = Chariots([train], path="./data", worker_pool=pool)
            job_id = app.call_pipeline(train, use_worker=True).job_id
            pool.wait(job_id).value

    :param n_workers: how many worker processes run jobs at once.
    :param start_method: ``"forkserver"`` (default where available) or ``"spawn"``.
    :param pipeline_cache_size: how many pipelines each worker keeps, so that a pipeline (and
        its models) crosses the pipe once per worker rather than once per job.
    :raises WorkerError: if an argument is invalid.
    """

    def __init__(
        self, n_workers: int = 2, start_method: str | None = None, pipeline_cache_size: int = 8
    ) -> None:
        for name, value in (("n_workers", n_workers), ("pipeline_cache_size", pipeline_cache_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise WorkerError(f"'{name}' must be a positive int (got {value!r})")
        available = [m for m in _START_METHODS if m in multiprocess.get_all_start_methods()]
        start_method = start_method or available[0]
        if start_method not in available:
            msg = (
                f"'start_method' must be one of {', '.join(map(repr, available))} (got "
                f"{start_method!r}); 'fork' is refused because forking a threaded parent can "
                "copy locks held by other threads into the worker"
            )
            raise WorkerError(msg)
        self._context = multiprocess.get_context(start_method)
        if start_method == "forkserver":
            # The fork server imports the worker module once; each worker is then a cheap fork.
            self._context.set_forkserver_preload([_worker.__name__])
        self._cache_size = pipeline_cache_size
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)  # notified whenever a job settles
        self._workers: list[_Worker] = []
        self._idle: collections.deque[_Worker] = collections.deque()
        self._pending: collections.deque[Unit] = collections.deque()
        self._outstanding: dict[str, Unit] = {}  # submitted, not yet settled, by key
        self._payloads: weakref.WeakKeyDictionary[Pipeline, tuple[tuple, BaseRunner, str, bytes]] = (
            weakref.WeakKeyDictionary()
        )
        self._closed = False  # no new jobs
        self._stopping = False  # the supervisor exits, workers are not replaced
        self._shut_down = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._supervisor = threading.Thread(
            target=self._supervise, name="chariots-multiprocess-supervisor", daemon=True
        )
        self._supervisor.start()
        try:
            for _ in range(n_workers):
                self.spawn_worker()
        except BaseException:
            self.close()
            raise

    # -- the BaseWorkerPool interface ---------------------------------------------------------
    @property
    def n_workers(self) -> int:
        """How many worker processes the pool has (busy or idle)."""
        with self._lock:
            return len(self._workers)

    @property
    def worker_pids(self) -> list[int]:
        """The process ids of the pool's workers."""
        with self._lock:
            return [worker.process.pid for worker in self._workers]

    def spawn_worker(self) -> None:
        """Start one more worker process; it takes a queued job at once if there is one."""
        with self._lock:
            if self._stopping:
                raise WorkerError("this worker pool is closed; create a new one to add workers")
        task_reader, task_writer = self._context.Pipe(duplex=False)
        result_reader, result_writer = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_worker.serve,
            args=(task_reader, result_writer, self._cache_size),
            name="chariots-worker",
            daemon=True,
        )
        try:
            process.start()
        except OSError as exc:
            msg = f"could not start a worker process ({exc}); free memory or process slots and retry"
            raise WorkerError(msg) from exc
        finally:
            # The parent keeps only its own ends, so each side sees end-of-file when the other dies.
            task_reader.close()
            result_writer.close()
        worker = _Worker(process, task_writer, result_reader, self._cache_size)
        with self._lock:
            closed_meanwhile = self._stopping
            if not closed_meanwhile:
                self._workers.append(worker)
                self._give_work(worker)
        if closed_meanwhile:  # close() already took its list of workers: this one is ours to stop
            _stop([worker])
            raise WorkerError("this worker pool was closed while a worker was starting")
        self._wake()

    def execute_pipeline_async(self, pipeline: Pipeline, pipeline_input: Any, app: Chariots) -> str:
        """Record a queued job, hand it to an idle worker (or queue it) and return its id.

        :raises SerializationError: if the pipeline or the input cannot be sent to a process.
        :raises WorkerError: if the pool is closed.
        """
        if self._closed:
            raise WorkerError("this worker pool is closed; create a new one to run jobs")
        versions, token, payload = self._payload(pipeline, app.runner)
        input_bytes = _dumps(pipeline_input, f"the input of pipeline {pipeline.name!r}")
        self.attach(app)
        with self._lock:
            if self._closed:
                raise WorkerError("this worker pool is closed; create a new one to run jobs")
            worker = self._idle.popleft() if self._idle else None
            try:
                if worker is None:
                    job = new_job(app.op_store, pipeline.name)
                else:  # it starts at once: record it running straight away, one write less
                    job = new_job(app.op_store, pipeline.name, JobStatus.running, f"pid {worker.process.pid}")
            except BaseException:
                if worker is not None:
                    self._idle.appendleft(worker)
                raise
            task = Task(job, app, dict(versions), token, payload, input_bytes)
            self._outstanding[job.job_id] = task
            if worker is None:
                self._pending.append(task)
            else:
                self._send(worker, task)
            return job.job_id

    def wait(self, job_id: str, timeout: float | None = None) -> PipelineResponse:
        """Block until the job is ``done`` or ``failed`` and return its response.

        :raises JobNotFoundError: if no job has that id.
        :raises WorkerError: if the job has not finished after ``timeout`` seconds.
        """
        with self._lock:
            task = self._outstanding.get(job_id)
            if isinstance(task, Task):
                if not self._settled.wait_for(lambda: job_id not in self._outstanding, timeout):
                    msg = f"job {job_id!r} has not finished after {timeout} s; wait longer or fetch it later"
                    raise WorkerError(msg)
        if isinstance(task, Task):
            return job_response(task.app.op_store, task.app.saver, job_id)
        return super().wait(job_id, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Refuse new jobs and batches, let queued and running ones finish, then stop every worker.

        Idempotent. Jobs still unfinished after ``timeout`` seconds are recorded ``failed``,
        batches still running fail with a :class:`WorkerError`, and their workers are killed.
        """
        with self._lock:
            already_closed, self._closed = self._closed, True
        if already_closed:
            self._shut_down.wait()
            return
        with self._lock:
            self._settled.wait_for(lambda: not self._outstanding, timeout)
            self._stopping = True
            unfinished = list(self._outstanding.values())
            self._outstanding.clear()
            self._pending.clear()
            workers = list(self._workers)
            self._workers.clear()
            self._idle.clear()
        self._wake()
        self._supervisor.join()
        _stop(workers)
        for unit in unfinished:
            unit.fail(f"the pool was closed before the {unit.noun} finished (timeout {timeout} s)", "WorkerError")
        wake_r, wake_w, self._wake_r, self._wake_w = self._wake_r, self._wake_w, -1, -1
        os.close(wake_r)
        os.close(wake_w)
        self._shut_down.set()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.n_workers} workers"
        return f"<MultiprocessWorkerPool {state}, {len(self._outstanding)} jobs and batch items in flight>"

    # -- batches (chariots_core.serving.batch) ----------------------------------------------------------
    def map_unordered(
        self, function: Callable[[Any, Any], Any], shared: Any, items: Sequence[Any]
    ) -> Iterator[tuple[int, Any]]:
        """Run ``function(shared, item)`` for every item in the workers; yield ``(index of the
        item, result)`` as each finishes. No job record is written.

        ``shared`` crosses to each worker once per batch, whatever the number of items (send
        few, large items: ``map_pipeline`` sends chunks of inputs). An item whose worker dies
        runs once more on another worker; closing the iterator early drops the items that
        have not started.

        :raises SerializationError: at once, if ``function``, ``shared`` or an item cannot be
            sent to a worker process.
        :raises WorkerError: at once if the pool is closed; while iterating, if ``function``
            raised on an item, or an item's workers died twice.
        """
        if self._closed:
            raise WorkerError("this worker pool is closed; create a new one to run batches")
        name = f"{getattr(function, '__qualname__', 'function')}-{uuid.uuid4().hex[:8]}"
        payload = _dumps((function, shared), f"the shared objects of batch {name!r}")
        token = uuid.uuid4().hex  # one per batch: each worker loads the pipeline once for it
        batch = Batch(name)
        calls = [
            Call(batch, index, token, payload, _dumps(item, f"item #{index} of batch {name!r}"))
            for index, item in enumerate(items)
        ]
        return self._completions(batch, calls)

    def _completions(self, batch: Batch, calls: list[Call]) -> Iterator[tuple[int, Any]]:
        """Queue ``calls`` and yield their results as they come; cancel the rest on exit."""
        try:
            with self._lock:
                if self._closed:
                    raise WorkerError("this worker pool was closed before the batch could start")
                for call in calls:
                    self._outstanding[call.key] = call
                    self._queue(call)
            for _ in calls:
                index, reply = batch.replies.get()
                if reply[0] == _worker.FAILED:
                    error = reply[2]
                    msg = (
                        f"item #{index} of batch {batch.name!r} did not finish in a worker process: "
                        f"{error.get('type', 'Error')}: {error.get('message', '')}"
                    )
                    raise WorkerError(msg)
                yield index, dill.loads(reply[2])
        finally:
            self._cancel(batch, calls)

    def _cancel(self, batch: Batch, calls: list[Call]) -> None:
        """Drop the batch's calls that have not started; those running finish unread."""
        with self._lock:
            batch.cancelled = True
            keys = {call.key for call in calls}
            for unit in self._pending:
                if unit.key in keys:
                    self._outstanding.pop(unit.key)
            self._pending = collections.deque(unit for unit in self._pending if unit.key not in keys)
            self._settled.notify_all()

    # -- submission -----------------------------------------------------------------------------
    def _payload(self, pipeline: Pipeline, runner: BaseRunner) -> tuple[tuple, str, bytes]:
        """The op versions, token and bytes of ``(pipeline, runner)``, serialized once per
        pipeline object, runner and op versions (a model refitted in place is sent again)."""
        versions = tuple((node.name, str(node.node_version)) for node in pipeline.op_nodes())
        with self._lock:
            cached = self._payloads.get(pipeline)
        if cached is not None and cached[0] == versions and cached[1] is runner:
            return versions, cached[2], cached[3]
        payload = _dumps((pipeline, runner), f"pipeline {pipeline.name!r}")
        token = uuid.uuid4().hex
        with self._lock:
            self._payloads[pipeline] = (versions, runner, token, payload)
        return versions, token, payload

    def _queue(self, unit: Unit, first: bool = False) -> None:
        """Start ``unit`` on an idle worker, or queue it (at the head if ``first``). Called
        with the lock held."""
        if not self._idle:
            if first:
                self._pending.appendleft(unit)
            else:
                self._pending.append(unit)
            return
        worker = self._idle.popleft()
        if not self._dispatch(worker, unit):
            self._idle.appendleft(worker)

    def _dispatch(self, worker: _Worker, unit: Unit) -> bool:
        """Start a queued ``unit`` on the idle ``worker``; ``False`` if it could not start
        (e.g. the store refused to record a job running), in which case it is settled failed.
        Called with the lock held."""
        try:
            unit.start(f"pid {worker.process.pid}")
        except Exception as exc:
            unit.fail(f"the {unit.noun} could not be started: {type(exc).__name__}: {exc}", type(exc).__name__)
            self._outstanding.pop(unit.key, None)
            self._settled.notify_all()
            return False
        self._send(worker, unit)
        return True

    def _send(self, worker: _Worker, unit: Unit) -> None:
        """Send a started ``unit`` to ``worker``. Called with the lock held."""
        if unit.token in worker.tokens:
            worker.tokens.get(unit.token)
            payload = None
        else:
            worker.tokens.put(unit.token, True)
            payload = unit.payload
        try:
            worker.tasks.send_bytes(dill.dumps((unit.kind, unit.key, unit.token, payload, unit.argument)))
        except OSError:
            # The worker died before it could receive the unit: it never started, so it waits
            # for the replacement the supervisor starts when it sees the death.
            unit.unsent()
            self._pending.appendleft(unit)
            return
        worker.unit = unit

    def _give_work(self, worker: _Worker) -> None:
        """Hand the next queued unit to ``worker``, or mark it idle. Called with the lock held."""
        while self._pending:
            if self._dispatch(worker, self._pending.popleft()):
                return
        self._idle.append(worker)

    # -- supervision ----------------------------------------------------------------------------
    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # a wake-up is already pending, or the pool is shut down

    def _supervise(self) -> None:
        """Settle results and replace dead workers until the pool stops."""
        while True:
            with self._lock:
                if self._stopping:
                    return
                workers = list(self._workers)
            waitables: list[Any] = [self._wake_r]
            waitables += [worker.results for worker in workers if not worker.eof]
            waitables += [worker.process.sentinel for worker in workers]
            ready = set(connection.wait(waitables))
            try:
                if self._wake_r in ready:
                    while _drain(self._wake_r):
                        pass
                for worker in workers:
                    if worker.results in ready and not worker.eof:
                        self._receive(worker)
                for worker in workers:
                    if worker.process.sentinel in ready:
                        self._bury(worker)
            except Exception:  # e.g. a store that refuses writes: keep supervising regardless
                logger.exception("the worker-pool supervisor hit an error and carries on")

    def _receive(self, worker: _Worker) -> None:
        try:
            message = dill.loads(worker.results.recv_bytes())
        except (EOFError, OSError):
            worker.eof = True  # the worker died; its sentinel will tell
            return
        with self._lock:
            unit, worker.unit = worker.unit, None
            if not self._stopping:
                self._give_work(worker)
        if unit is not None:
            unit.settle(message)
            self._forget([unit])

    def _forget(self, units: list[Unit]) -> None:
        """``units`` are settled: drop them and wake whoever waits for them."""
        with self._lock:
            for unit in units:
                self._outstanding.pop(unit.key, None)
            self._settled.notify_all()

    def _bury(self, worker: _Worker) -> None:
        """A worker process ended: settle what it sent, retry or fail the unit it was running,
        start a replacement."""
        while not worker.eof and worker.results.poll():
            self._receive(worker)
        worker.process.join()
        with self._lock:
            self._workers.remove(worker)
            if worker in self._idle:
                self._idle.remove(worker)
            unit, worker.unit = worker.unit, None
            replace = not self._stopping
            reason = "" if unit is None else _death_reason(worker, unit)  # before retry() counts the try
            if unit is not None and replace and unit.retry():
                logger.warning("%s; running it again", reason)
                self._queue(unit, first=True)
                unit = None
        worker.tasks.close()
        worker.results.close()
        if replace:  # first, so that whoever sees the unit failed finds the pool whole again
            try:
                self.spawn_worker()
            except WorkerError:
                logger.exception("could not replace dead worker process %s", worker.process.pid)
                self._fail_stranded()
        if unit is not None:
            unit.fail(
                f"{reason}; the pool started a replacement. Run the {unit.noun} "
                "again; if it dies again, the pipeline may be running out of memory (the kernel's "
                "OOM killer sends SIGKILL) or crashing the interpreter",
                "WorkerError",
            )
            self._forget([unit])

    def _fail_stranded(self) -> None:
        """With no worker left, queued units would wait forever: fail them instead."""
        with self._lock:
            if self._workers:
                return
            stranded = list(self._pending)
            self._pending.clear()
        for unit in stranded:
            unit.fail(f"no worker process is left to run the {unit.noun} (could not start one)", "WorkerError")
        self._forget(stranded)


def _stop(workers: list[_Worker]) -> None:
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


def _dumps(obj: Any, what: str) -> bytes:
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


def _drain(fd: int) -> bool:
    try:
        return bool(os.read(fd, 4096))
    except BlockingIOError:
        return False


def _death_reason(worker: _Worker, unit: Unit) -> str:
    code = worker.process.exitcode
    if code is not None and code < 0:
        how = f"was killed by signal {signal.Signals(-code).name}"
    else:
        how = f"exited with code {code}"
    return f"worker process {worker.process.pid} {how} while running {unit.describe()}"
