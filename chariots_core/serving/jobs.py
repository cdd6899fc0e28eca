"""Job records: how every worker pool creates, runs, settles and reads back a job.

A worker pool takes a pipeline and an input, runs it somewhere else (a thread, a process, a
cluster) and lets the app fetch the result later by job id. Job records live in the app's job
store and results go through the app's saver, both reached through the app's :class:`JobBook`
(``app.jobs``), so a job is never only in a pool's memory and no pool touches a store itself.

There are two ways to run a job and one way to record it:

- in this process (:class:`~chariots_core.serving.workers.InProcessWorkerPool`):
  :meth:`JobBook.run` runs the app's own pipeline object, so a fit trains the served op in place;
- in another process or machine (``chariots_multiprocess``, ``chariots_dask``): the pool ships
  ``(pipeline, runner)`` as bytes made once (:class:`PayloadCache`), the worker runs them with
  :func:`run_pipeline` and answers a :class:`JobOutcome`, and the pool records it through the
  job's :class:`Submission`. An op the run trained comes back as its ``serialize()`` bytes,
  the state the op store would save, and is loaded into a
  :func:`~chariots_core.pipelines.ops.fresh_copy` of the op as submitted. The op object itself
  never crosses back: the parent keeps its own op classes (dill rebuilds a class defined in
  ``__main__`` as a new class object) and nothing but the op's state is pickled.

Job records and results must survive the app or a worker process being killed, but not an OS
crash or power cut, which may lose the latest job states (the job can be run again). Stores
and savers that can skip their fsync for them do: ``LMDBOpStore`` writes job records unsynced
and ``FsspecSaver.save`` takes ``durable=False`` (see :func:`save_job_result`). Saved op
versions keep their full durability.

Each job names its owner, the app process that created it (:mod:`.owners`): reading a
``queued`` or ``running`` job whose owner on this host is gone records it ``failed``, since
that process took its pool's workers with it and nobody will finish the job.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import threading
import time
import traceback
import uuid
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import dill

from ..errors import JobNotFoundError, NodeExecutionError, SerializationError, describe_failure
from ..op_store.store import JobRecord, JobStore
from ..pipelines.ops import BaseOp, fresh_copy, trained_since
from ..savers import BaseSaver
from ..verified import read_verified
from ..versioning import Version
from .owners import describe_owner, owner_is_gone, owner_of_this_process
from .responses import TERMINAL_STATES, JobStatus, PipelineResponse

if TYPE_CHECKING:
    from ..pipelines.pipeline import Pipeline
    from ..pipelines.runners import BaseRunner
    from .app import Chariots

__all__ = [
    "JobBook",
    "JobOutcome",
    "Submission",
    "Payload",
    "PayloadCache",
    "run_pipeline",
    "failure_details",
    "job_error",
    "no_such_job",
    "op_versions",
    "save_job_result",
]

logger = logging.getLogger(__name__)

_TERMINAL_VALUES = frozenset(state.value for state in TERMINAL_STATES)


# -- what a run reports ------------------------------------------------------------------------
@attrs.frozen
class JobOutcome:
    """How a job's run ended, as a worker reports it to the pool that records it.

    It crosses process boundaries, so it holds only bytes, strings and dicts.
    """

    value: bytes | None  # dill bytes of the pipeline's value; None when the run failed
    versions: dict[str, str]  # the op versions after the run, by node name ({} if it never ran)
    error: dict[str, str] | None = None  # failure_details(...) when the run failed
    trained: dict[str, bytes] = attrs.field(factory=dict)  # node name -> serialize() of each op it trained
    worker: str | None = None  # who ran it, when the pool learns that only from the outcome

    @classmethod
    def unloadable(cls, exc: BaseException, what_failed: str, fix: str, worker: str | None = None) -> JobOutcome:
        """A worker could not rebuild the job's pipeline or input: say what failed and the fix."""
        error = failure_details(exc)
        error["message"] = f"{what_failed}: {type(exc).__name__}: {exc}. {fix}"
        return cls(None, {}, error, worker=worker)


def run_pipeline(pipeline: Pipeline, runner: BaseRunner, pipeline_input: Any, ship_trained: bool) -> JobOutcome:
    """Run a job's pipeline and report how it ended; never raises for the run's failure.

    :param ship_trained: the run happens away from the app (another process): the outcome then
        carries the ``serialize()`` bytes of each op the run trained, for the app to install.
    """
    before = {name: op.op_version for name, op in _loadable_ops(pipeline).items()} if ship_trained else {}
    try:
        value = dill.dumps(runner.run(pipeline, pipeline_input))
        trained = _serialized(pipeline, trained_since(_loadable_ops(pipeline), before)) if ship_trained else {}
    except Exception as exc:  # a job records its failure instead of raising it
        return JobOutcome(None, op_versions(pipeline), failure_details(exc))
    return JobOutcome(value, op_versions(pipeline), trained=trained)


def _loadable_ops(pipeline: Pipeline) -> dict[str, BaseOp]:
    return {node.name: node.op for node in pipeline.loadable_nodes()}


def _serialized(pipeline: Pipeline, trained: dict[str, Any]) -> dict[str, bytes]:
    states = {}
    for name, op in trained.items():
        try:
            states[name] = op.serialize()
        except Exception as exc:
            msg = (
                f"node {name!r} of pipeline {pipeline.name!r} was trained in a worker but its op "
                f"could not be serialized to send it back: {type(exc).__name__}: {exc}"
            )
            raise NodeExecutionError(msg, node_name=name, error_type=type(exc).__name__) from exc
    return states


def op_versions(pipeline: Pipeline) -> dict[str, str]:
    """The version of every op node of ``pipeline``, as strings, by node name."""
    return {node.name: str(node.node_version) for node in pipeline.op_nodes()}


def failure_details(exc: BaseException) -> dict[str, str]:
    """What a failed job records: the error's type and message, the failing node, a traceback.

    For an op that raised, ``type`` is the op's own exception class (``ValueError``...), the
    message ends with the notes naming the node and the pipeline, and ``node`` is the node
    (see :func:`~chariots_core.errors.describe_failure`).
    """
    details = describe_failure(exc)
    return {
        "type": str(details["type"]),
        "message": str(details["message"]),
        "node": details["node"] or "",
        "traceback": "".join(traceback.format_exception(exc))[-4000:],
    }


def job_error(message: str, error_type: str = "WorkerError") -> dict[str, str]:
    """The error of a job that failed outside its pipeline (a worker died, the pool closed...)."""
    return {"type": error_type, "message": message, "node": ""}


# -- an app's job records ------------------------------------------------------------------------
@attrs.frozen(eq=False)
class JobBook:
    """The job records of one app: the store that keeps them and the saver that keeps results.

    Every pool writes and reads jobs through the book of the app that submitted them
    (``app.jobs``); nothing else of the store is used.
    """

    store: JobStore
    saver: BaseSaver

    def new(
        self, pipeline_name: str, status: JobStatus = JobStatus.queued, worker: str | None = None, owned: bool = True
    ) -> JobRecord:
        """Create and persist a job record, ``queued`` unless a pool starts the job at once.

        The record names this process as its owner, so the job is recorded failed if this
        process dies before finishing it. A pool whose jobs are finished by something that
        outlives this process passes ``owned=False``.
        """
        now = time.time()
        owner = owner_of_this_process() if owned else None
        job = JobRecord(uuid.uuid4().hex, pipeline_name, status.value, now, now, worker=worker, owner=owner)
        self.store.put_job(job)
        return job

    def mark(self, job: JobRecord, status: JobStatus, **changes: Any) -> JobRecord:
        """Persist ``job`` in a new state and return the new record."""
        updated = attrs.evolve(job, status=status.value, updated_at=time.time(), **changes)
        self.store.put_job(updated)
        return updated

    def record(self, job: JobRecord, outcome: JobOutcome) -> JobRecord:
        """Persist how ``job`` ended: its value and ``done``, or ``failed`` with the error.

        The value is written before the record, so a ``done`` record always has its value
        (after an OS crash both may be lost, or the value alone: fetching it then raises
        :class:`~chariots_core.errors.IntegrityError`, and running the job again fixes it).
        """
        changes: dict[str, Any] = {"versions": outcome.versions}
        if outcome.worker is not None:
            changes["worker"] = outcome.worker
        if outcome.error is not None or outcome.value is None:
            return self.mark(job, JobStatus.failed, error=outcome.error, **changes)
        path = f"jobs/{job.job_id}"
        save_job_result(self.saver, path, outcome.value)
        sha256 = hashlib.sha256(outcome.value).hexdigest()
        return self.mark(job, JobStatus.done, result_path=path, result_sha256=sha256, **changes)

    def run(self, job: JobRecord, pipeline: Pipeline, pipeline_input: Any, runner: BaseRunner) -> JobRecord:
        """Run one job here to completion, recording each state; never raises for an op's failure.

        The versions recorded are those the pipeline has after the run, as for a synchronous
        call (a pipeline that fits a model reports the freshly trained version).
        """
        job = self.mark(job, JobStatus.running, worker=f"pid {os.getpid()}")
        return self.record(job, run_pipeline(pipeline, runner, pipeline_input, ship_trained=False))

    def get(self, job_id: str) -> JobRecord | None:
        """The record of ``job_id`` (``None`` if unknown); an unfinished job whose owner is gone
        is recorded ``failed`` first."""
        job = self.store.get_job(str(job_id))
        if job is None or job.status in _TERMINAL_VALUES or job.owner is None or not owner_is_gone(job.owner):
            return job
        message = f"{describe_owner(job.owner)} that owned job {job.job_id!r} exited before it finished; run the job again"
        return self.mark(job, JobStatus.failed, error=job_error(message))

    def response(self, job_id: str) -> PipelineResponse:
        """The :class:`PipelineResponse` of a job, with its value once done.

        :raises JobNotFoundError: if no job has that id.
        :raises IntegrityError: if the result's bytes are missing or corrupt.
        :raises SerializationError: if the result cannot be deserialized in this process.
        """
        job = self.get(job_id)
        if job is None:
            raise no_such_job(job_id)
        return PipelineResponse(
            value=self._value_of(job),
            versions={name: Version.parse(text) for name, text in job.versions.items()},
            job_id=job.job_id,
            job_status=JobStatus(job.status),
            error=None if job.error is None else {k: v for k, v in job.error.items() if k != "traceback"},
        )

    def _value_of(self, job: JobRecord) -> Any:
        if job.status != JobStatus.done.value or job.result_path is None:
            return None
        what = f"the result of job {job.job_id!r}"
        fix = "run the job again (an in-memory saver does not survive a restart)"
        data = read_verified(self.saver, job.result_path, job.result_sha256 or "", what, fix)
        try:
            return dill.loads(data)
        except Exception as exc:  # e.g. the value's class is not importable in this process
            msg = (
                f"{what} cannot be deserialized here ({type(exc).__name__}: {exc}); make the "
                "modules its value needs importable in this process"
            )
            raise SerializationError(msg) from exc


def no_such_job(job_id: str) -> JobNotFoundError:
    """The error for a job id that no job has."""
    return JobNotFoundError(f"no job has id {job_id!r}; use the job_id of a PipelineResponse returned by call_pipeline")


def save_job_result(saver: BaseSaver, path: str, data: bytes) -> None:
    """Save a job's result, without an fsync where the saver offers that.

    A saver offers it by taking a ``durable`` keyword in ``save`` (as
    ``chariots_fsspec.FsspecSaver`` does); any other saver is called with ``(path, data)``
    alone, so :class:`~chariots_core.savers.BaseSaver` itself asks nothing more of savers.
    """
    try:
        offers_fast_path = "durable" in inspect.signature(saver.save).parameters
    except (TypeError, ValueError):  # a callable whose signature Python cannot read
        offers_fast_path = False
    if offers_fast_path:
        saver.save(path, data, durable=False)  # type: ignore[call-arg]
    else:
        saver.save(path, data)


# -- jobs that run away from the app -----------------------------------------------------------
@attrs.frozen(eq=False)
class Payload:
    """``(pipeline, runner)`` as bytes for workers, and the token that names those bytes."""

    versions: dict[str, str]  # the pipeline's op versions when the bytes were made
    runner: BaseRunner
    token: str
    data: bytes


class PayloadCache:
    """The payload of each pipeline a pool ships, made once per pipeline object, runner and op
    versions (a model refitted in place is shipped again).

    :param dumps: ``dumps(obj, what)`` turns ``obj`` into bytes, or raises
        :class:`~chariots_core.errors.SerializationError` naming ``what``.
    """

    def __init__(self, dumps: Callable[[Any, str], bytes]) -> None:
        self._dumps = dumps
        self._lock = threading.Lock()
        self._payloads: weakref.WeakKeyDictionary[Pipeline, Payload] = weakref.WeakKeyDictionary()

    def get(self, pipeline: Pipeline, runner: BaseRunner) -> Payload:
        """The payload of ``(pipeline, runner)`` as they are now."""
        versions = op_versions(pipeline)
        with self._lock:
            cached = self._payloads.get(pipeline)
        if cached is not None and cached.versions == versions and cached.runner is runner:
            return cached
        data = self._dumps((pipeline, runner), f"pipeline {pipeline.name!r}")
        payload = Payload(versions, runner, uuid.uuid4().hex, data)
        with self._lock:
            self._payloads[pipeline] = payload
        return payload


class Submission:
    """A job that a pool runs away from the app, from its submission until its outcome is recorded.

    Several threads of a pool may write one job's record in turn (the submitter, a dispatcher,
    a supervisor); the submission's own lock orders those writes, and once the job is settled or
    failed, a late :meth:`start` or :meth:`requeue` is ignored, so a stale ``running`` can never
    overwrite an outcome. A pool never holds its own lock while a record is written: with an
    object store each write is a network request.
    """

    def __init__(self, app: Chariots, job: JobRecord, pipeline: Pipeline, payload: Payload) -> None:
        self.app, self.job, self.pipeline, self.payload = app, job, pipeline, payload
        self._lock = threading.Lock()
        self._final = False

    @property
    def job_id(self) -> str:
        return self.job.job_id

    def describe(self) -> str:
        """The job, for error messages."""
        return f"job {self.job.job_id!r} of pipeline {self.job.pipeline_name!r}"

    def start(self, worker: str) -> None:
        """Record the job ``running`` on ``worker``.

        :raises Exception: whatever the store raised; the job is not started then.
        """
        with self._lock:
            if not self._final:
                self.job = self.app.jobs.mark(self.job, JobStatus.running, worker=worker)

    def requeue(self) -> None:
        """Record the job ``queued`` again: its worker died before receiving it."""
        with self._lock:
            if not self._final:
                self.job = self._quietly(lambda: self.app.jobs.mark(self.job, JobStatus.queued, worker=None))

    def settle(self, outcome: JobOutcome) -> None:
        """Install what the run trained in the app, then record the outcome; never raises.

        Trained ops are installed before the job is recorded ``done``, so whoever sees it done
        can save them.
        """
        with self._lock:
            if self._final:
                return
            self._final = True
            try:
                if outcome.trained:
                    self.app.install_ops(self.job.pipeline_name, self._load_trained(outcome.trained))
                versions = outcome.versions or self.payload.versions  # {} if the worker could not load the job
                self.job = self.app.jobs.record(self.job, attrs.evolve(outcome, versions=versions))
            except Exception as exc:
                error = failure_details(exc)
                error["message"] = f"the job ran but its outcome could not be recorded: {error['message']}"
                self._write_failure(error)

    def fail(self, error: dict[str, str]) -> None:
        """Record the job ``failed`` with ``error``, unless its outcome is already recorded; never raises."""
        with self._lock:
            if not self._final:
                self._final = True
                self._write_failure(error)

    def _load_trained(self, trained: dict[str, bytes]) -> dict[str, BaseOp]:
        """Copies of the submitted ops with the state the worker trained loaded into them."""
        ops = {}
        for node in self.pipeline.loadable_nodes():
            if node.name in trained:
                op = fresh_copy(node.op)
                op.load(trained[node.name])
                ops[node.name] = op
        return ops

    def _write_failure(self, error: dict[str, str]) -> None:
        versions = self.job.versions or self.payload.versions
        self.job = self._quietly(lambda: self.app.jobs.mark(self.job, JobStatus.failed, versions=versions, error=error))

    def _quietly(self, write: Callable[[], JobRecord]) -> JobRecord:
        """Write a record; a store that refuses is logged, not raised (the pool must carry on)."""
        try:
            return write()
        except Exception:
            logger.exception("could not record %s", self.describe())
            return self.job
