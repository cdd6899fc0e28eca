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
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import threading
import uuid
import weakref
from typing import TYPE_CHECKING, Any

import dill
import multiprocess
from multiprocess import connection

from chariots_core.errors import SerializationError, WorkerError
from chariots_core.workers import (
    BaseWorkerPool,
    JobStatus,
    PipelineResponse,
    failure_details,
    finish_job,
    job_response,
    mark_job,
    new_job,
)

from . import _worker

if TYPE_CHECKING:
    from chariots_core.app import Chariots
    from chariots_core.pipeline import Pipeline
    from chariots_core.runners import BaseRunner
    from chariots_core.store import JobRecord

__all__ = ["MultiprocessWorkerPool"]

logger = logging.getLogger(__name__)

_START_METHODS = ("forkserver", "spawn")
_STOP_GRACE = 5.0  # seconds a worker gets to exit once its job pipe is closed, then SIGKILL


class _Task:
    """One submitted job on its way through the pool."""

    __slots__ = ("job", "app", "versions", "token", "payload", "input_bytes")

    def __init__(
        self,
        job: JobRecord,
        app: Chariots,
        versions: dict[str, str],
        token: str,
        payload: bytes,
        input_bytes: bytes,
    ) -> None:
        self.job, self.app, self.versions = job, app, versions
        self.token, self.payload, self.input_bytes = token, payload, input_bytes


class _Worker:
    """The parent's handle on one worker process."""

    __slots__ = ("process", "tasks", "results", "task", "tokens", "eof")

    def __init__(self, process: Any, tasks: Any, results: Any, cache_size: int) -> None:
        self.process, self.tasks, self.results = process, tasks, results
        self.task: _Task | None = None
        self.tokens = _worker.TokenLRU(cache_size)  # mirrors the worker's pipeline cache
        self.eof = False


class MultiprocessWorkerPool(BaseWorkerPool):
    """Runs pipeline jobs in worker processes; a killed worker fails its job and is replaced.

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
        self._pending: collections.deque[_Task] = collections.deque()
        self._outstanding: dict[str, _Task] = {}  # submitted, not yet settled
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
            task = _Task(job, app, dict(versions), token, payload, input_bytes)
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
            if task is not None:
                if not self._settled.wait_for(lambda: job_id not in self._outstanding, timeout):
                    msg = f"job {job_id!r} has not finished after {timeout} s; wait longer or fetch it later"
                    raise WorkerError(msg)
        if task is not None:
            return job_response(task.app.op_store, task.app.saver, job_id)
        return super().wait(job_id, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Refuse new jobs, let queued and running jobs finish, then stop every worker.

        Idempotent. Jobs still unfinished after ``timeout`` seconds are recorded ``failed``
        and their workers are killed.
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
        for task in unfinished:
            reason = f"the pool was closed before the job finished (timeout {timeout} s)"
            _record_failure(task, reason, "WorkerError")
        wake_r, wake_w, self._wake_r, self._wake_w = self._wake_r, self._wake_w, -1, -1
        os.close(wake_r)
        os.close(wake_w)
        self._shut_down.set()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.n_workers} workers"
        return f"<MultiprocessWorkerPool {state}, {len(self._outstanding)} jobs in flight>"

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

    def _dispatch(self, worker: _Worker, task: _Task) -> bool:
        """Start a queued ``task`` on the idle ``worker``; ``False`` if the store refused.

        Called with the lock held. "running" is recorded before the job is sent, so the
        outcome, recorded later by the supervisor, can never be overwritten by it.
        """
        try:
            worker_name = f"pid {worker.process.pid}"
            task.job = mark_job(task.app.op_store, task.job, JobStatus.running, worker=worker_name)
        except Exception as exc:
            reason = f"the job could not be started: {type(exc).__name__}: {exc}"
            _record_failure(task, reason, type(exc).__name__)
            self._outstanding.pop(task.job.job_id, None)
            self._settled.notify_all()
            return False
        self._send(worker, task)
        return True

    def _send(self, worker: _Worker, task: _Task) -> None:
        """Send a job recorded running to ``worker``. Called with the lock held."""
        if task.token in worker.tokens:
            worker.tokens.get(task.token)
            payload = None
        else:
            worker.tokens.put(task.token, True)
            payload = task.payload
        try:
            worker.tasks.send_bytes(dill.dumps((task.job.job_id, task.token, payload, task.input_bytes)))
        except OSError:
            # The worker died before it could receive the job: the job never started, so it
            # waits for the replacement the supervisor starts when it sees the death.
            task.job = mark_job(task.app.op_store, task.job, JobStatus.queued, worker=None)
            self._pending.appendleft(task)
            return
        worker.task = task

    def _give_work(self, worker: _Worker) -> None:
        """Hand the next queued job to ``worker``, or mark it idle. Called with the lock held."""
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
            task, worker.task = worker.task, None
            if not self._stopping:
                self._give_work(worker)
        if task is not None:
            self._settle(task, message)

    def _settle(self, task: _Task, message: tuple) -> None:
        """Record a job's outcome as the worker reported it; never raises."""
        app = task.app
        try:
            if message[0] == _worker.DONE:
                _, _, value_bytes, versions, trained_bytes = message
                if trained_bytes is not None:
                    # Before "done": whoever sees the job done can save what it trained.
                    app.install_ops(task.job.pipeline_name, dill.loads(trained_bytes))
                finish_job(app.op_store, app.saver, task.job, value_bytes, versions)
            else:
                _, _, error, versions = message
                versions = versions or task.versions  # empty when the worker could not load the job
                mark_job(app.op_store, task.job, JobStatus.failed, versions=versions, error=error)
        except Exception as exc:
            details = failure_details(exc)
            reason = f"the job ran but its outcome could not be recorded: {details['message']}"
            _record_failure(task, reason, details["type"])
        with self._lock:
            self._outstanding.pop(task.job.job_id, None)
            self._settled.notify_all()

    def _bury(self, worker: _Worker) -> None:
        """A worker process ended: settle what it sent, fail its job, start a replacement."""
        while not worker.eof and worker.results.poll():
            self._receive(worker)
        worker.process.join()
        with self._lock:
            self._workers.remove(worker)
            if worker in self._idle:
                self._idle.remove(worker)
            task, worker.task = worker.task, None
            replace = not self._stopping
        worker.tasks.close()
        worker.results.close()
        if replace:  # first, so that whoever sees the job failed finds the pool whole again
            try:
                self.spawn_worker()
            except WorkerError:
                logger.exception("could not replace dead worker process %s", worker.process.pid)
                self._fail_stranded()
        if task is not None:
            _record_failure(task, _death_reason(worker, task), "WorkerError")
            with self._lock:
                self._outstanding.pop(task.job.job_id, None)
                self._settled.notify_all()

    def _fail_stranded(self) -> None:
        """With no worker left, queued jobs would wait forever: fail them instead."""
        with self._lock:
            if self._workers:
                return
            stranded = list(self._pending)
            self._pending.clear()
        for task in stranded:
            reason = "no worker process is left to run the job (could not start one)"
            _record_failure(task, reason, "WorkerError")
        with self._lock:
            for task in stranded:
                self._outstanding.pop(task.job.job_id, None)
            self._settled.notify_all()


def _stop(workers: list[_Worker]) -> None:
    """Stop worker processes: idle ones exit on end-of-file, busy ones are killed."""
    for worker in workers:
        worker.tasks.close()  # end-of-file: an idle worker's loop returns
        if worker.task is not None:
            worker.process.kill()  # its job outlived close()'s timeout and is recorded failed
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


def _death_reason(worker: _Worker, task: _Task) -> str:
    code = worker.process.exitcode
    if code is not None and code < 0:
        how = f"was killed by signal {signal.Signals(-code).name}"
    else:
        how = f"exited with code {code}"
    return (
        f"worker process {worker.process.pid} {how} while running job {task.job.job_id!r} of "
        f"pipeline {task.job.pipeline_name!r}; the pool started a replacement. Run the job again; "
        "if it dies again, the pipeline may be running out of memory (the kernel's OOM killer "
        "sends SIGKILL) or crashing the interpreter"
    )


def _record_failure(task: _Task, message: str, error_type: str) -> None:
    """Record ``task``'s job as failed; a store that refuses even that is logged, not raised."""
    error = {"type": error_type, "message": message, "node": ""}
    versions = task.job.versions or task.versions
    try:
        task.job = mark_job(task.app.op_store, task.job, JobStatus.failed, versions=versions, error=error)
    except Exception:
        logger.exception("could not record job %s as failed: %s", task.job.job_id, message)
