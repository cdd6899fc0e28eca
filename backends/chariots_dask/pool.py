"""``DaskWorkerPool``: Chariots jobs as tasks on a Dask ``distributed`` cluster.

Where the job records are written: on the client, by the pool, never on the workers. The
app's op store may be a local LMDB file or an in-memory store that workers on other machines
cannot reach; the client always can. A worker only computes: it rebuilds the pipeline from
bytes, runs it, and returns a :class:`~chariots_core.serving.jobs.JobOutcome` (the value's
bytes, the op versions and the ``serialize()`` bytes of every op the run trained), which the
client records as every pool does (:mod:`chariots_core.serving.jobs`): trained ops installed in
the app, then the value saved and the job ``done``, or ``failed`` with the error and the failing
node. The worker announces the start of a job through a Dask event, on which the client records
the job ``running``.

A lost worker: Dask gives its task to another worker; a task whose workers keep dying
(``distributed.scheduler.allowed-failures``) ends with ``KilledWorker``, and a cancelled task
ends cancelled. Every one of these ends calls the pool back, which records the job
``failed`` with the reason, so a job never stays ``running``. All record writes go through one
thread, in the order Dask reported the events.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import cloudpickle
import distributed

from chariots_core.errors import SerializationError, WorkerError
from chariots_core.serving.jobs import PayloadCache, Submission, failure_details, job_error
from chariots_core.serving.responses import PipelineResponse
from chariots_core.serving.workers import BaseWorkerPool

from . import _remote

if TYPE_CHECKING:
    from chariots_core.pipelines.pipeline import Pipeline
    from chariots_core.serving.app import Chariots

__all__ = ["DaskWorkerPool"]

logger = logging.getLogger(__name__)

_CANCEL_GRACE = 10.0  # seconds a cancelled task gets to call back before the pool records it


@attrs.define(eq=False)
class _Task:
    """A submitted job until its outcome is recorded."""

    submission: Submission
    future: Any = None
    settled: threading.Event = attrs.field(factory=threading.Event)


def _dumps(obj: Any, what: str) -> bytes:
    try:
        return cloudpickle.dumps(obj)
    except Exception as exc:
        msg = (
            f"{what} cannot be sent to Dask workers: {type(exc).__name__}: {exc}. Ops, inputs "
            "and runners must be picklable (no open files, locks or connections)"
        )
        raise SerializationError(msg) from exc


class DaskWorkerPool(BaseWorkerPool):
    """Runs pipeline jobs on a Dask cluster; job records stay in the app's op store.

    :param client_or_address: a ``distributed.Client``, a cluster object (``LocalCluster``...)
        or a scheduler address such as ``"tcp://10.0.0.5:8786"``. The pool closes only what
        it opened (see :mod:`chariots_core.serving.app`): a client it created, never one it was given.
    :param timeout: seconds to wait for the scheduler when connecting.
    :raises WorkerError: if the scheduler cannot be reached.
    """

    def __init__(self, client_or_address: Any, timeout: float = 30.0) -> None:
        super().__init__()
        self._owns_client = not isinstance(client_or_address, distributed.Client)
        if self._owns_client:
            try:
                client_or_address = distributed.Client(client_or_address, timeout=timeout)
            except (OSError, TimeoutError, ValueError) as exc:
                msg = (
                    f"cannot connect to the Dask scheduler at {client_or_address!r} ({type(exc).__name__}: "
                    f"{exc}); start one with `dask scheduler` (and workers with `dask worker <address>`) "
                    "or pass a distributed.Client"
                )
                raise WorkerError(msg) from exc
        self._client: distributed.Client = client_or_address
        self._lock = threading.Lock()
        self._outstanding: dict[str, _Task] = {}
        self._payloads = PayloadCache(_dumps)
        self._closed = False
        # One writer thread keeps the records of a job in the order Dask reported its events.
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="chariots-dask-records")
        self._topic = f"chariots-job-started-{uuid.uuid4().hex}"
        self._client.subscribe_topic(self._topic, self._on_started)

    @property
    def client(self) -> distributed.Client:
        """The Dask client the pool submits through."""
        return self._client

    # -- the BaseWorkerPool interface -------------------------------------------------------
    @property
    def n_workers(self) -> int:
        """How many jobs the cluster runs at once: the sum of its workers' threads."""
        return sum(self._client.nthreads().values())

    def spawn_worker(self) -> None:
        """Add one worker to a cluster the client manages (``LocalCluster``, ...).

        :raises WorkerError: if the pool only knows the scheduler's address.
        """
        cluster = getattr(self._client, "cluster", None)
        if cluster is None or not hasattr(cluster, "scale"):
            msg = (
                f"the pool reaches the scheduler at {self._client.scheduler.address} but does not "
                "manage its cluster; start another worker with `dask worker <scheduler address>`"
            )
            raise WorkerError(msg)
        target = len(cluster.workers) + 1
        cluster.scale(target)
        self._client.wait_for_workers(target)

    def execute_pipeline_async(self, pipeline: Pipeline, pipeline_input: Any, app: Chariots) -> str:
        """Record a queued job, submit it to the cluster and return its id.

        :raises SerializationError: if the pipeline or the input cannot be pickled.
        :raises WorkerError: if the pool is closed.
        """
        if self._closed:
            raise WorkerError("this worker pool is closed; create a new one to run jobs")
        payload = self._payloads.get(pipeline, app.runner)
        input_bytes = _dumps(pipeline_input, f"the input of pipeline {pipeline.name!r}")
        self.attach(app)
        task = _Task(Submission(app, app.jobs.new(pipeline.name), pipeline, payload))
        job_id = task.submission.job_id
        with self._lock:
            refused = self._closed
            if not refused:
                self._outstanding[job_id] = task
        if refused:  # closed while this job was being recorded
            task.submission.fail(_cancelled(task, "the pool was closed before the job could be submitted"))
            raise WorkerError("this worker pool is closed; create a new one to run jobs")
        try:
            task.future = self._client.submit(
                _remote.run_job, job_id, self._topic, payload.data, input_bytes, key=f"chariots-job-{job_id}", pure=False
            )
        except Exception as exc:
            task.submission.fail(failure_details(exc))
            self._forget(task)
            raise WorkerError(f"job {job_id!r} could not be submitted to the Dask cluster: {exc}") from exc
        task.future.add_done_callback(lambda future: self._writer.submit(self._settle, task))
        return job_id

    def wait(self, job_id: str, timeout: float | None = None) -> PipelineResponse:
        """Block until the job is recorded ``done`` or ``failed`` and return its response.

        :raises JobNotFoundError: if no job has that id.
        :raises WorkerError: if the job has not finished after ``timeout`` seconds.
        """
        with self._lock:
            task = self._outstanding.get(job_id)
        if task is None:
            return super().wait(job_id, timeout)
        if not task.settled.wait(timeout):
            msg = f"job {job_id!r} has not finished after {timeout} s; wait longer or fetch it later with fetch_job"
            raise WorkerError(msg)
        return task.submission.app.jobs.response(job_id)

    def close(self, timeout: float | None = None) -> None:
        """Refuse new jobs, wait for submitted ones to be recorded, then release the client.

        Idempotent. Jobs unfinished after ``timeout`` seconds are cancelled and recorded
        ``failed``. The cluster keeps running unless the pool created the client itself,
        which it then closes.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            tasks = list(self._outstanding.values())
        deadline = None if timeout is None else time.monotonic() + timeout
        for task in tasks:
            task.settled.wait(None if deadline is None else max(deadline - time.monotonic(), 0.0))
        unfinished = [task for task in tasks if not task.settled.is_set()]
        for task in unfinished:  # before the cancellation reports a vaguer reason
            task.submission.fail(_cancelled(task, f"the pool was closed before the job finished (timeout {timeout} s)"))
        if unfinished:
            self._client.cancel([task.future for task in unfinished if task.future is not None])
            for task in unfinished:
                if not task.settled.wait(_CANCEL_GRACE):
                    self._forget(task)  # a client that lost its scheduler may never call back
        try:
            self._client.unsubscribe_topic(self._topic)
        except ValueError:
            pass  # the client already forgot its handlers (it was closed by its owner)
        self._writer.shutdown(wait=True)
        if self._owns_client:
            self._client.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"on {self._client.scheduler.address}"
        return f"<DaskWorkerPool {state}, {len(self._outstanding)} jobs in flight>"

    # -- batches (chariots_core.serving.batch) ------------------------------------------------------
    def map_unordered(
        self, function: Callable[[Any, Any], Any], shared: Any, items: Sequence[Any]
    ) -> Iterator[tuple[int, Any]]:
        """Run ``function(shared, item)`` for each item on the cluster; yield ``(index, result)``
        as each finishes. ``shared`` is pickled once and sent with each task (batches make few
        tasks); the items of a lost worker are retried by Dask.

        :raises SerializationError: if ``shared`` cannot be pickled.
        """
        if self._closed:
            raise WorkerError("this worker pool is closed; create a new one to run batches")
        shared_bytes = _dumps(shared, "the pipeline of the batch")
        futures = self._client.map(_remote.call_batch, [function] * len(items), [shared_bytes] * len(items), items, pure=False)
        index_of = {future.key: index for index, future in enumerate(futures)}
        try:
            for future in distributed.as_completed(futures):
                yield index_of[future.key], future.result()
        finally:
            self._client.cancel([future for future in futures if not future.done()])

    # -- records ------------------------------------------------------------------------------
    def _on_started(self, event: tuple[float, dict[str, str]]) -> None:
        """Dask event handler (on the client's event loop): hand the write to the writer."""
        _, message = event
        with self._lock:
            task = self._outstanding.get(message.get("job_id", ""))
        if task is not None and not self._closed:
            self._writer.submit(self._mark_running, task, message.get("worker"))

    def _mark_running(self, task: _Task, worker: str | None) -> None:
        if task.settled.is_set() or task.future is None or task.future.done():
            return  # the outcome is known (or about to be recorded): "running" would be stale
        try:
            task.submission.start(worker or "")
        except Exception:  # the outcome, recorded later, is what matters
            logger.exception("could not record %s as running", task.submission.describe())

    def _settle(self, task: _Task) -> None:
        """Record the outcome of a finished, failed or cancelled Dask task; never raises."""
        future = task.future
        if future is None:
            return  # already recorded (by close, after the cluster failed to call back in time)
        try:
            if future.cancelled():
                why = "the task was cancelled on the Dask cluster (the pool was closed, or the client lost its scheduler)"
                task.submission.fail(_cancelled(task, why))
            elif future.status == "error":
                task.submission.fail(_infrastructure_failure(task, future.exception()))
            else:
                task.submission.settle(future.result())
        except Exception as exc:  # e.g. the outcome could not be fetched from the cluster
            details = failure_details(exc)
            details["message"] = f"the job ran but its outcome could not be recorded: {details['message']}"
            task.submission.fail(details)
        finally:
            self._forget(task)

    def _forget(self, task: _Task) -> None:
        """The job's outcome is recorded: drop it from the pool and wake its waiters."""
        with self._lock:
            self._outstanding.pop(task.submission.job_id, None)
        task.future = None  # lets Dask release the result
        task.settled.set()

def _cancelled(task: _Task, why: str) -> dict[str, str]:
    return job_error(f"{task.submission.describe()} did not run to the end: {why}; run it again", "CancelledError")


def _infrastructure_failure(task: _Task, exc: BaseException | None) -> dict[str, str]:
    """The error of a task that Dask itself failed (the job function never raises)."""
    why = (
        "the workers running it died (killed, out of memory, or a crash in native code) and "
        "Dask stopped retrying it; check the workers' logs and memory"
        if isinstance(exc, distributed.scheduler.KilledWorker)
        else "the Dask cluster could not run it"
    )
    name = type(exc).__name__
    return job_error(f"{task.submission.describe()} failed: {why} ({name}: {exc})", name)
