"""A worker pool of real processes, on ``multiprocess`` (the dill-based fork of multiprocessing).

Why not ``multiprocess.Pool``: a pool worker killed mid-task leaves ``apply_async`` waiting
forever, and workers sharing one task queue share its lock, which a killed worker can take to
its grave. Here each worker owns two one-way pipes (jobs in, results out) and the parent hands a
job to an idle worker itself, so the parent always knows which job each worker holds. One
supervisor thread in the parent waits on every result pipe and every process sentinel at once:
a result settles its job; a dead process fails its job with the reason and is replaced.

The parent writes every job record (queued, running, done/failed) and every result blob, so the
op store and saver need not be shareable between processes; with an LMDB store and a file
saver, records and results survive the app. No record is written under the pool's lock: with
an object store each write is a network request, and the lock is what every submission, result
and death waits for. Workers start with ``forkserver`` (``spawn`` where that is missing): a
fork of a threaded parent can inherit held locks, and both start methods give a worker only its
own pipe ends. Each worker also watches its parent and exits with it, busy or not, so a crashed
app leaves no process behind; a program that ends without closing its pool has it closed at
exit (its unfinished jobs recorded failed) before ``multiprocess`` reaps its children.

A job carries the pipeline object as the app served it when the job was submitted, with its
runner, serialized once per pipeline object and op versions and sent once per worker
(:mod:`chariots_core.serving.jobs`); a job whose run fitted models sends their state back, and
the parent installs them in the app before recording the job ``done``.

A batch (:meth:`MultiprocessWorkerPool.map_unordered`, which ``Chariots.map_pipeline`` uses)
goes through the same workers, queue and supervisor without job records: its items queue as
calls, its shared objects (the pipeline) cross once per worker, and a call whose worker dies
runs once more on another worker before the batch fails.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import dill
import multiprocess
from multiprocess import connection, util

from chariots_core.errors import WorkerError
from chariots_core.serving.jobs import PayloadCache, Submission
from chariots_core.serving.responses import JobStatus, PipelineResponse
from chariots_core.serving.workers import BaseWorkerPool

from . import _worker
from ._processes import WorkerProcess, death_reason, dumps_for_worker, start_worker, stop_workers
from ._units import Batch, Call, Task, Unit

if TYPE_CHECKING:
    from chariots_core.pipelines.pipeline import Pipeline
    from chariots_core.serving.app import Chariots

__all__ = ["MultiprocessWorkerPool"]

logger = logging.getLogger(__name__)

_START_METHODS = ("forkserver", "spawn")
# multiprocess runs finalizers of priority >= 0 at exit before it terminates and joins its
# children; a pool closed then leaves no worker for that join, nor a replacement started meanwhile.
_EXIT_PRIORITY = 10


class MultiprocessWorkerPool(BaseWorkerPool):
    """Runs pipeline jobs and batches in worker processes; a killed worker is replaced, and
    fails its job (a batch runs the worker's chunk once more before it fails).

    Use it as a context manager, or call :meth:`close`::

        with MultiprocessWorkerPool(2) as pool:
            app = Chariots([train], path="./data", worker_pool=pool)
            job_id = app.call_pipeline(train, use_worker=True).job_id
            pool.wait(job_id).value

    A pool still open when the program exits is closed then without waiting: its unfinished
    jobs are recorded failed and its workers stopped, as ``multiprocessing.Pool`` terminates.

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
        super().__init__()
        self._context = multiprocess.get_context(start_method)
        if start_method == "forkserver":
            # The fork server imports the worker module once; each worker is then a cheap fork.
            self._context.set_forkserver_preload([_worker.__name__])
        self._cache_size = pipeline_cache_size
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)  # notified whenever a job settles
        self._workers: list[WorkerProcess] = []
        self._idle: collections.deque[WorkerProcess] = collections.deque()
        self._pending: collections.deque[Unit] = collections.deque()
        self._outstanding: dict[str, Unit] = {}  # submitted, not yet settled, by key
        self._payloads = PayloadCache(dumps_for_worker)
        self._closed = False  # no new jobs
        self._stopping = False  # the supervisor exits, workers are not replaced
        self._shut_down = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._at_exit = util.Finalize(self, self._close_at_exit, exitpriority=_EXIT_PRIORITY)
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
        worker = start_worker(self._context, self._cache_size)
        with self._lock:
            closed_meanwhile = self._stopping
            if not closed_meanwhile:
                self._workers.append(worker)
                self._idle.append(worker)
        if closed_meanwhile:  # close() already took its list of workers: this one is ours to stop
            stop_workers([worker])
            raise WorkerError("this worker pool was closed while a worker was starting")
        self._wake()
        self._dispatch()

    def execute_pipeline_async(self, pipeline: Pipeline, pipeline_input: Any, app: Chariots) -> str:
        """Record a queued job, hand it to an idle worker (or queue it) and return its id.

        :raises SerializationError: if the pipeline or the input cannot be sent to a process.
        :raises WorkerError: if the pool is closed.
        """
        if self._closed:
            raise WorkerError("this worker pool is closed; create a new one to run jobs")
        payload = self._payloads.get(pipeline, app.runner)
        input_bytes = dumps_for_worker(pipeline_input, f"the input of pipeline {pipeline.name!r}")
        self.attach(app)
        with self._lock:
            if self._closed:
                raise WorkerError("this worker pool is closed; create a new one to run jobs")
            # An idle worker (with nothing queued before this job) is reserved for it: the job is
            # then recorded running straight away, one write less.
            worker = self._idle.popleft() if self._idle and not self._pending else None
        try:
            if worker is None:
                job = app.jobs.new(pipeline.name)
            else:
                job = app.jobs.new(pipeline.name, JobStatus.running, worker.name)
        except BaseException:
            if worker is not None:
                self._release(worker)
                self._dispatch()
            raise
        task = Task(Submission(app, job, pipeline, payload), input_bytes)
        with self._lock:
            stopped = self._stopping
            handed = not stopped and worker is not None and worker.alive
            if not stopped:
                self._outstanding[task.key] = task
                if handed:
                    worker.unit = task
                elif worker is None:
                    self._pending.append(task)
        if stopped:  # closed while the job was being recorded: its workers are gone
            task.fail("the pool was closed before the job could start", "WorkerError")
            raise WorkerError("this worker pool is closed; create a new one to run jobs")
        if handed:
            self._send(worker, task)
        elif worker is not None:  # the reserved worker died while the job was recorded running
            self._requeue(task)
        self._dispatch()
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
            return task.submission.app.jobs.response(job_id)
        return super().wait(job_id, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Refuse new jobs and batches, let queued and running ones finish, then stop every worker.

        Idempotent. Jobs still unfinished after ``timeout`` seconds are recorded ``failed``,
        batches still running fail with a :class:`WorkerError`, and their workers are killed.
        """
        self._shut(timeout, f"the pool was closed before the {{noun}} finished (timeout {timeout} s)")

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
        payload = dumps_for_worker((function, shared), f"the shared objects of batch {name!r}")
        token = uuid.uuid4().hex  # one per batch: each worker loads the pipeline once for it
        batch = Batch(name)
        calls = [
            Call(batch, index, token, payload, dumps_for_worker(item, f"item #{index} of batch {name!r}"))
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
                    self._pending.append(call)
            self._dispatch()
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

    # -- handing work to workers (never with the lock held while a unit records) -------------------
    def _dispatch(self) -> None:
        """Start queued units on idle workers until either runs out. Whoever queues a unit or
        frees a worker calls it (the helpers below do not, so that it never recurses)."""
        while True:
            with self._lock:
                if self._stopping or not self._pending or not self._idle:
                    return
                worker, unit = self._idle.popleft(), self._pending.popleft()
            self._start(worker, unit)

    def _start(self, worker: WorkerProcess, unit: Unit) -> None:
        """Record ``unit`` started on the reserved ``worker`` and send it there; a unit that
        cannot start is failed and the worker released."""
        try:
            unit.start(worker.name)
        except Exception as exc:
            unit.fail(f"the {unit.noun} could not be started: {type(exc).__name__}: {exc}", type(exc).__name__)
            self._forget([unit])
            self._release(worker)
            return
        with self._lock:
            handed = worker.alive and not self._stopping
            if handed:
                worker.unit = unit
        if handed:
            self._send(worker, unit)
        else:  # the worker died (or the pool stopped) while the start was recorded
            self._requeue(unit)

    def _send(self, worker: WorkerProcess, unit: Unit) -> None:
        """Send ``unit``, handed to ``worker``, down its pipe. Only the holder of a unit sends
        it, so the worker's token cache and its pipe see one unit at a time."""
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
            # for another worker, unless the supervisor already buried the worker with it.
            with self._lock:
                mine = worker.unit is unit
                if mine:
                    worker.unit = None
            if mine:
                self._requeue(unit)

    def _requeue(self, unit: Unit) -> None:
        """``unit`` never reached a worker: back to the head of the queue (closing fails it)."""
        unit.unsent()
        with self._lock:
            if self._stopping:
                return
            self._pending.appendleft(unit)

    def _release(self, worker: WorkerProcess) -> None:
        """A reserved ``worker`` got nothing to run after all: idle again."""
        with self._lock:
            if worker.alive and not self._stopping and worker not in self._idle:
                self._idle.appendleft(worker)

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

    def _receive(self, worker: WorkerProcess) -> None:
        try:
            key, reply = dill.loads(worker.results.recv_bytes())
        except (EOFError, OSError):
            worker.eof = True  # the worker died; its sentinel will tell
            return
        with self._lock:
            unit = worker.unit
            # Never settle a unit with another one's reply: a worker may answer a piece the pool
            # no longer expects from it, and the unit it holds now, if any, is still to come.
            answered = unit if unit is not None and unit.key == key else None
            freed = unit is None or answered is not None
            if freed:
                worker.unit = None
                if not self._stopping and worker not in self._idle:
                    self._idle.append(worker)
        if freed:
            self._dispatch()  # the next unit first: the worker idles for no record write
        if answered is None:
            logger.warning("worker %s answered %s, which it does not hold; the reply is dropped", worker.name, key)
            return
        answered.settle(reply)
        self._forget([answered])

    def _forget(self, units: list[Unit]) -> None:
        """``units`` are settled: drop them and wake whoever waits for them."""
        with self._lock:
            for unit in units:
                self._outstanding.pop(unit.key, None)
            self._settled.notify_all()

    def _bury(self, worker: WorkerProcess) -> None:
        """A worker process ended: settle what it sent, retry or fail the unit it was running,
        start a replacement."""
        while not worker.eof and worker.results.poll():
            self._receive(worker)
        worker.process.join()
        with self._lock:
            worker.alive = False
            self._workers.remove(worker)
            if worker in self._idle:
                self._idle.remove(worker)
            unit, worker.unit = worker.unit, None
            # Never once the interpreter exits: multiprocess's exit handler would join the
            # replacement, which serves until its parent exits: a hang.
            replace = not self._stopping and not util.is_exiting()
            reason = "" if unit is None else death_reason(worker, unit)  # before retry() counts the try
            retried = unit is not None and replace and unit.retry()
            if retried:
                logger.warning("%s; running it again", reason)
                self._pending.appendleft(unit)
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

    # -- shutting down --------------------------------------------------------------------------
    def _close_at_exit(self) -> None:
        self._shut(0, "the program exited before the {noun} finished (its worker pool was never closed)")

    def _shut(self, timeout: float | None, why: str) -> None:
        """Stop as :meth:`close` says; units unfinished after ``timeout`` fail with ``why``,
        in which ``{noun}`` stands for "job" or "batch"."""
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
        stop_workers(workers)
        for unit in unfinished:
            unit.fail(why.format(noun=unit.noun), "WorkerError")
        wake_r, wake_w, self._wake_r, self._wake_w = self._wake_r, self._wake_w, -1, -1
        os.close(wake_r)
        os.close(wake_w)
        self._at_exit.cancel()  # the exit registry would otherwise keep every closed pool
        self._shut_down.set()


def _drain(fd: int) -> bool:
    try:
        return bool(os.read(fd, 4096))
    except BlockingIOError:
        return False
