"""Worker pools: the interface that runs pipelines asynchronously, and the in-process pool.

A worker pool takes a pipeline and an input, runs it somewhere else (a thread, a process, a
cluster) and lets the app fetch the result later by job id; how jobs are recorded is
:mod:`chariots_core.serving.jobs`. :class:`InProcessWorkerPool` runs jobs on threads of this
process; ``chariots_multiprocess.MultiprocessWorkerPool`` runs them in worker processes and
``chariots_dask.DaskWorkerPool`` on a Dask cluster.

Whether a call runs in a worker follows chariots 0.2: the app, the pipeline and the request
may each say ``use_worker``; an explicit ``False`` anywhere wins, else any ``True`` makes the
call asynchronous (see :func:`wants_worker`).
"""

from __future__ import annotations

import abc
import functools
import json
import queue
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from ..errors import WorkerError
from .jobs import JobBook, job_error, no_such_job
from .responses import TERMINAL_STATES, JobStatus, PipelineResponse

if TYPE_CHECKING:
    from ..pipelines.pipeline import Pipeline
    from .app import Chariots

__all__ = ["BaseWorkerPool", "InProcessWorkerPool", "JobStatus", "PipelineResponse", "wants_worker"]


def wants_worker(*flags: bool | None) -> bool:
    """Apply the precedence rule: any explicit ``False`` wins, else any ``True``, else no."""
    # Membership tests, not any() over generators: this runs on every call of every pipeline.
    return False not in flags and True in flags


class BaseWorkerPool(abc.ABC):
    """Runs pipelines asynchronously. Subclass it to use another job system.

    A pool implements :attr:`n_workers`, :meth:`spawn_worker` and
    :meth:`execute_pipeline_async`, which calls :meth:`attach` and records the job through the
    app's job book (``app.jobs``, a :class:`~chariots_core.serving.jobs.JobBook`);
    :meth:`wait` blocks until a job is done or failed. Pools are context managers; a subclass
    that defines ``__init__`` calls ``super().__init__()``.

    One pool may serve several apps (apps of one process sharing their workers, or
    ``map_pipeline(worker_pool=...)`` of an app that has another pool). Each job is recorded in
    the book of the app that submitted it, and :meth:`wait` and
    :meth:`get_pipeline_response_json_for_id` find a job in the books of the apps attached to
    the pool. The pool holds those apps weakly, and an app detaches itself when it closes, so a
    long-lived pool does not keep the apps it once served alive.
    """

    def __init__(self) -> None:
        self._books_lock = threading.Lock()
        self._books: weakref.WeakSet[JobBook] = weakref.WeakSet()

    def attach(self, app: Chariots) -> None:
        """Let the pool find the jobs of ``app`` (the app and the pool's submissions do this)."""
        with self._books_lock:
            self._books.add(app.jobs)

    def detach(self, app: Chariots) -> None:
        """Forget ``app``'s jobs (the app does this when it closes, since its store closes)."""
        with self._books_lock:
            self._books.discard(app.jobs)

    @property
    @abc.abstractmethod
    def n_workers(self) -> int:
        """How many workers the pool has (busy or idle)."""

    @abc.abstractmethod
    def spawn_worker(self) -> None:
        """Add one worker to the pool."""

    @abc.abstractmethod
    def execute_pipeline_async(self, pipeline: Pipeline, pipeline_input: Any, app: Chariots) -> str:
        """Queue a run of ``pipeline`` on ``pipeline_input`` for ``app`` and return the job id."""

    def get_pipeline_response_json_for_id(self, job_id: str) -> str:
        """The JSON of the job's :class:`PipelineResponse` (status, and value once done).

        :raises JobNotFoundError: if no app attached to the pool has that job.
        """
        return json.dumps(self.book_of(job_id).response(job_id).to_json())

    def wait(self, job_id: str, timeout: float | None = None) -> PipelineResponse:
        """Block until the job is ``done`` or ``failed`` and return its response.

        This implementation polls the job record (every millisecond at first, backing off to
        every 50 ms); pools that know when their jobs finish override it.

        :raises JobNotFoundError: if no app attached to the pool has that job.
        :raises WorkerError: if the job has not finished after ``timeout`` seconds.
        """
        book = self.book_of(job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        while True:
            response = book.response(job_id)
            if response.job_status in TERMINAL_STATES:
                return response
            if deadline is not None and time.monotonic() >= deadline:
                msg = (
                    f"job {job_id!r} is still {response.job_status.value} after {timeout} s; "
                    "wait longer or fetch it later with fetch_job"
                )
                raise WorkerError(msg)
            time.sleep(delay if deadline is None else min(delay, max(deadline - time.monotonic(), 0)))
            delay = min(delay * 2, 0.05)

    def book_of(self, job_id: str) -> JobBook:
        """The job book, among those of the apps attached to the pool, that holds ``job_id``.

        :raises WorkerError: if no app is attached (the pool has run no job).
        :raises JobNotFoundError: if none of them has that job.
        """
        with self._books_lock:
            books = list(self._books)
        if not books:
            raise WorkerError("this worker pool has run no job yet: it is not attached to an app")
        for book in books:
            if book.store.get_job(str(job_id)) is not None:
                return book
        raise no_such_job(job_id)

    def close(self) -> None:
        """Stop the workers (waiting for running jobs). Idempotent."""

    def __enter__(self) -> BaseWorkerPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class InProcessWorkerPool(BaseWorkerPool):
    """Runs jobs on threads of this process: async calls without any extra process.

    :param n_workers: how many jobs may run at once.
    """

    def __init__(self, n_workers: int = 1) -> None:
        if not isinstance(n_workers, int) or isinstance(n_workers, bool) or n_workers < 1:
            raise WorkerError(f"'n_workers' must be a positive int (got {n_workers!r})")
        super().__init__()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()  # orders submissions with close: no job is queued after the last thread left
        self._closed = False
        for _ in range(n_workers):
            self.spawn_worker()

    @property
    def n_workers(self) -> int:
        return len(self._threads)

    def spawn_worker(self) -> None:
        thread = threading.Thread(
            target=self._work, name=f"chariots-worker-{len(self._threads)}", daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def _work(self) -> None:
        for run in iter(self._queue.get, None):
            run()
            del run  # wait for the next job holding no app: the pool holds apps weakly

    def execute_pipeline_async(self, pipeline: Pipeline, pipeline_input: Any, app: Chariots) -> str:
        if self._closed:
            raise WorkerError("this worker pool is closed; create a new one to run jobs")
        self.attach(app)
        job = app.jobs.new(pipeline.name)
        with self._lock:
            refused = self._closed
            if not refused:
                self._queue.put(functools.partial(app.jobs.run, job, pipeline, pipeline_input, app.runner))
        if refused:  # closed while the job was being recorded
            app.jobs.mark(job, JobStatus.failed, error=job_error("the pool was closed before the job could start"))
            raise WorkerError("this worker pool is closed; create a new one to run jobs")
        return job.job_id

    def close(self) -> None:
        """Refuse new jobs, let the queued and running ones finish, then stop the threads. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._queue.put(None)
        for thread in self._threads:
            thread.join()
