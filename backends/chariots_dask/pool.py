"""``DaskWorkerPool``: Chariots jobs as tasks on a Dask ``distributed`` cluster.

Where the job records are written: on the client, by the pool, never on the workers. The
app's op store may be a local LMDB file or an in-memory store that workers on other machines
cannot reach; the client always can. A worker only computes: it rebuilds the pipeline from
bytes, runs it, and returns the dill bytes of the value, the op versions and the
``serialize()`` bytes of every op the run trained. The client then installs the trained ops
in the app (:meth:`~chariots_core.Chariots.install_ops`), writes the value through the app's
saver and records the job ``done`` (or ``failed`` with the error and the failing node). The
worker announces the start of a job through a Dask event, on which the client records the job
``running``.

A lost worker: Dask gives its task to another worker; a task whose workers keep dying
(``distributed.scheduler.allowed-failures``) ends with ``KilledWorker``, and a cancelled task
ends cancelled. Every one of these ends calls the pool back, which records the job
``failed`` with the reason, so a job never stays ``running``. All record writes go through one
thread, in the order Dask reported the events.
"""

from __future__ import annotations

import concurrent.futures
import copy
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import cloudpickle
import distributed

from chariots_core.errors import SerializationError, WorkerError
from chariots_core.serving.workers import (
    BaseWorkerPool,
    JobStatus,
    PipelineResponse,
    failure_details,
    finish_job,
    job_response,
    mark_job,
    new_job,
    op_versions,
)

from . import _remote

if TYPE_CHECKING:
    from chariots_core.op_store.store import JobRecord
    from chariots_core.pipelines.pipeline import Pipeline
    from chariots_core.pipelines.runners import BaseRunner
    from chariots_core.serving.app import Chariots

__all__ = ["DaskWorkerPool"]

logger = logging.getLogger(__name__)

_CANCEL_GRACE = 10.0  # seconds a cancelled task gets to call back before the pool records it


@attrs.define(eq=False)
class _Task:
    """A submitted job until its outcome is recorded."""

    job: JobRecord
    app: Chariots
    pipeline: Pipeline  # as submitted: trained ops are rebuilt from its ops
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
        or a scheduler address such as ``"tcp://10.0.0.5:8786"``. The pool closes a client
        it created itself, never one it was given.
    :param timeout: seconds to wait for the scheduler when connecting.
    :raises WorkerError: if the scheduler cannot be reached.
    """

    def __init__(self, client_or_address: Any, timeout: float = 30.0) -> None:
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
        self._payloads: weakref.WeakKeyDictionary[Pipeline, tuple[tuple, BaseRunner, bytes]] = (
            weakref.WeakKeyDictionary()
        )
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
        payload = self._payload(pipeline, app.runner)
        input_bytes = _dumps(pipeline_input, f"the input of pipeline {pipeline.name!r}")
        self.attach(app)
        task = _Task(new_job(app.op_store, pipeline.name), app, pipeline)
        job_id = task.job.job_id
        with self._lock:
            refused = self._closed
            if not refused:
                self._outstanding[job_id] = task
        if refused:  # closed while this job was being recorded
            self._record_failure(task, _cancelled(task.job, "the pool was closed before the job could be submitted"))
            raise WorkerError("this worker pool is closed; create a new one to run jobs")
        try:
            task.future = self._client.submit(
                _remote.run_job, job_id, self._topic, payload, input_bytes, key=f"chariots-job-{job_id}", pure=False
            )
        except Exception as exc:
            self._record_failure(task, failure_details(exc))
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
        return job_response(task.app.op_store, task.app.saver, job_id)

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
        if unfinished:
            # Each cancellation reaches _settle, which records the job failed; a client that
            # lost its scheduler may never call back, so the pool then records it itself.
            self._client.cancel([task.future for task in unfinished if task.future is not None])
            for task in unfinished:
                if not task.settled.wait(_CANCEL_GRACE):
                    self._record_failure(task, _cancelled(task.job, "the pool was closed before the job finished"))
                    self._forget(task)
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
    def _payload(self, pipeline: Pipeline, runner: BaseRunner) -> bytes:
        """``(pipeline, runner)`` pickled once per pipeline object, runner and op versions."""
        versions = tuple(op_versions(pipeline).items())
        with self._lock:
            cached = self._payloads.get(pipeline)
        if cached is not None and cached[0] == versions and cached[1] is runner:
            return cached[2]
        payload = _dumps((pipeline, runner), f"pipeline {pipeline.name!r}")
        with self._lock:
            self._payloads[pipeline] = (versions, runner, payload)
        return payload

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
            task.job = mark_job(task.app.op_store, task.job, JobStatus.running, worker=worker)
        except Exception:  # the outcome, recorded later, is what matters
            logger.exception("could not record job %s as running", task.job.job_id)

    def _settle(self, task: _Task) -> None:
        """Record the outcome of a finished, failed or cancelled Dask task; never raises."""
        future, job = task.future, task.job
        if future is None:
            return  # already recorded (by close, after the cluster failed to call back in time)
        try:
            if future.cancelled():
                why = "the task was cancelled on the Dask cluster (the pool was closed, or the client lost its scheduler)"
                self._record_failure(task, _cancelled(job, why))
            elif future.status == "error":
                self._record_failure(task, _infrastructure_failure(job, future.exception()))
            else:
                self._record_outcome(task, future.result())
        except Exception as exc:
            details = failure_details(exc)
            details["message"] = f"the job ran but its outcome could not be recorded: {details['message']}"
            self._record_failure(task, details)
        finally:
            self._forget(task)

    def _forget(self, task: _Task) -> None:
        """The job's outcome is recorded: drop it from the pool and wake its waiters."""
        with self._lock:
            self._outstanding.pop(task.job.job_id, None)
        task.future = None  # lets Dask release the result
        task.settled.set()

    def _record_outcome(self, task: _Task, outcome: tuple) -> None:
        app = task.app
        if outcome[0] == _remote.DONE:
            _, worker, value_bytes, versions, trained = outcome
            if trained:
                # Before "done": whoever sees the job done can save what it trained.
                app.install_ops(task.job.pipeline_name, _rebuild(task.pipeline, trained))
            task.job = finish_job(app.op_store, app.saver, attrs.evolve(task.job, worker=worker), value_bytes, versions)
        else:
            _, worker, error, versions = outcome
            task.job = mark_job(
                app.op_store, task.job, JobStatus.failed, versions=versions or op_versions(task.pipeline), error=error, worker=worker
            )

    def _record_failure(self, task: _Task, error: dict[str, str]) -> None:
        try:
            task.job = mark_job(
                task.app.op_store, task.job, JobStatus.failed, versions=op_versions(task.pipeline), error=error
            )
        except Exception:
            logger.exception("could not record job %s as failed: %s", task.job.job_id, error.get("message"))


def _cancelled(job: JobRecord, why: str) -> dict[str, str]:
    return {
        "type": "CancelledError",
        "message": f"job {job.job_id!r} of pipeline {job.pipeline_name!r} did not run to the end: {why}; run it again",
        "node": "",
    }


def _infrastructure_failure(job: JobRecord, exc: BaseException | None) -> dict[str, str]:
    """The error of a task that Dask itself failed (the job function never raises)."""
    name = type(exc).__name__
    why = (
        "the workers running it died (killed, out of memory, or a crash in native code) and "
        "Dask stopped retrying it; check the workers' logs and memory"
        if isinstance(exc, distributed.scheduler.KilledWorker)
        else "the Dask cluster could not run it"
    )
    return {
        "type": name,
        "message": f"job {job.job_id!r} of pipeline {job.pipeline_name!r} failed: {why} ({name}: {exc})",
        "node": "",
    }


def _rebuild(pipeline: Pipeline, trained: dict[str, bytes]) -> dict[str, Any]:
    """Copies of the submitted pipeline's ops with the state a worker trained loaded into them."""
    ops = {}
    for node in pipeline.loadable_nodes():
        if node.name in trained:
            op = copy.deepcopy(node.op)
            op.load(trained[node.name])
            ops[node.name] = op
    return ops
