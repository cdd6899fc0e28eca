"""Asynchronous pipeline runs: job states, responses, and the worker-pool interface.

A worker pool takes a pipeline and an input, runs it somewhere else (a thread, a process, a
cluster) and lets the app fetch the result later by job id. Job records live in the app's op
store, so a job is never only in a pool's memory; results are written through the app's
saver. :class:`InProcessWorkerPool` runs jobs on threads of the current process;
``chariots_multiprocess.MultiprocessWorkerPool`` runs them in worker processes.

Job records and results must survive the app or a worker process being killed, but not an
OS crash or power cut, which may lose the latest job states (the job can be run again).
Stores and savers that can skip their fsync for them do: ``LMDBOpStore`` writes job records
unsynced and ``FsspecSaver.save`` takes ``durable=False`` (see :func:`save_job_result`),
which spares each job several disk flushes. Saved op versions keep their full durability.

A job whose app process dies (killed, out of memory) before the job finishes takes its pool's
workers with it, so nobody will ever finish the job. Each job therefore records its owner, the
app process that created it (host, pid and the process's start time, so that a recycled pid is
not taken for the owner). Reading a ``queued`` or ``running`` job (:func:`job_response`, hence
``Chariots.fetch_job`` and :meth:`BaseWorkerPool.wait`) records it ``failed`` when its owner
ran on this host and is gone. An owner on another host (or in another pid namespace, e.g.
another container) cannot be checked: its jobs keep their state until that process finishes
them. Where there is no ``/proc`` (macOS) the pid alone is checked; on Windows nothing is.

Whether a call runs in a worker follows chariots 0.2: the app, the pipeline and the request
may each say ``use_worker``; an explicit ``False`` anywhere wins, else any ``True`` makes the
call asynchronous (see :func:`wants_worker`).
"""

from __future__ import annotations

import abc
import enum
import hashlib
import inspect
import json
import os
import queue
import socket
import sys
import threading
import time
import traceback
import uuid
from typing import TYPE_CHECKING, Any

import attrs
import dill

from ..errors import (
    JobNotFoundError,
    SerializationError,
    WorkerError,
    describe_failure,
)
from ..op_store.store import JobRecord, JobStore
from ..savers import BaseSaver, read_verified
from ..versioning import Version
from .jsonsafe import to_jsonable

if TYPE_CHECKING:
    from ..pipelines.pipeline import Pipeline
    from ..pipelines.runners import BaseRunner
    from .app import Chariots

__all__ = [
    "JobStatus",
    "PipelineResponse",
    "BaseWorkerPool",
    "InProcessWorkerPool",
    "wants_worker",
    "new_job",
    "run_job",
    "mark_job",
    "finish_job",
    "save_job_result",
    "failure_details",
    "op_versions",
    "job_response",
    "TERMINAL_STATES",
]


class JobStatus(enum.Enum):
    """The states a job goes through: queued -> running -> done | failed."""

    deferred = "deferred"
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


@attrs.define
class PipelineResponse:
    """What a pipeline call returns.

    :param value: the pipeline's output (``None`` while an async job is not done).
    :param versions: the version of each op node the run used, by node name.
    :param job_id: the job's id, for async calls.
    :param job_status: the job's state, for async calls.
    :param error: ``{"type", "message", "node"}`` when an async job failed.
    """

    value: Any = None
    versions: dict[str, Version] = attrs.field(factory=dict)
    job_id: str | None = None
    job_status: JobStatus | None = None
    error: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (the HTTP wire format)."""
        return {
            "value": to_jsonable(self.value),
            "versions": {name: str(version) for name, version in self.versions.items()},
            "job_id": self.job_id,
            "job_status": None if self.job_status is None else self.job_status.value,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PipelineResponse:
        """Rebuild a response from :meth:`to_json`'s output."""
        status = data.get("job_status")
        return cls(
            value=data.get("value"),
            versions={name: Version.parse(text) for name, text in (data.get("versions") or {}).items()},
            job_id=data.get("job_id"),
            job_status=None if status is None else JobStatus(status),
            error=data.get("error"),
        )


def wants_worker(*flags: bool | None) -> bool:
    """Apply the precedence rule: any explicit ``False`` wins, else any ``True``, else no."""
    if any(flag is False for flag in flags):
        return False
    return any(flag is True for flag in flags)


TERMINAL_STATES = frozenset({JobStatus.done, JobStatus.failed})
_TERMINAL_VALUES = frozenset(state.value for state in TERMINAL_STATES)


# -- job owners: which app process must finish a job ---------------------------------------
_HAS_PROC = os.path.isdir("/proc/self")
_current_owner: tuple[int, str] | None = None  # (pid, owner) of this process, cached per pid


def _pid_namespace() -> str:
    """The inode of this process's pid namespace ("" without /proc): pids mean nothing outside it."""
    try:
        return os.readlink("/proc/self/ns/pid").partition("[")[2].rstrip("]")
    except OSError:
        return ""


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name, or ``None`` if no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces or ")".
    return text.rpartition(")")[2].split()


def _start_time(pid: int) -> str:
    """When ``pid`` started, in clock ticks after boot (field 22 of its stat; "" if unknown)."""
    fields = _stat_fields(pid) if _HAS_PROC else None
    return fields[19] if fields is not None and len(fields) > 19 else ""


def _owner_of_this_process() -> str:
    """This process as a job owner: ``"<host>/<pid namespace>/<pid>/<start time>"``."""
    global _current_owner
    pid = os.getpid()
    if _current_owner is None or _current_owner[0] != pid:  # a fork is another owner
        _current_owner = (pid, f"{socket.gethostname()}/{_pid_namespace()}/{pid}/{_start_time(pid)}")
    return _current_owner[1]


def _owner_is_gone(owner: str) -> bool:
    """Whether ``owner`` ran in this host's pid namespace and that process no longer exists.

    ``False`` whenever it cannot be told (another host or container, a malformed owner, Windows).
    """
    mine = _owner_of_this_process()
    if owner == mine:
        return False
    host, namespace, pid_text, start = (owner.rsplit("/", 3) + ["", "", ""])[:4]
    my_host, my_namespace = mine.rsplit("/", 3)[:2]
    if (host, namespace) != (my_host, my_namespace) or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if _HAS_PROC:
        fields = _stat_fields(pid)
        # A zombie has exited (its parent has not reaped it yet); another start time is
        # another process that was given the same pid.
        return fields is None or fields[0] in ("Z", "X") or (start != "" and fields[19:20] != [start])
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate the process there
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, as another user's process
        return False
    return False


def _fail_orphan(op_store: JobStore, job: JobRecord) -> JobRecord:
    """Record ``job`` failed if its owner is gone, and return its latest record."""
    if job.owner is None or not _owner_is_gone(job.owner):
        return job
    host, _, pid = job.owner.rsplit("/", 3)[:3]
    message = (
        f"the app process {pid} on {host} that owned job {job.job_id!r} exited before it "
        "finished; run the job again"
    )
    error = {"type": "WorkerError", "message": message, "node": ""}
    return mark_job(op_store, job, JobStatus.failed, error=error)


# -- job bookkeeping shared by every pool --------------------------------------------------
def new_job(
    op_store: JobStore,
    pipeline_name: str,
    status: JobStatus = JobStatus.queued,
    worker: str | None = None,
    owned: bool = True,
) -> JobRecord:
    """Create and persist a job record, ``queued`` unless a pool starts the job at once.

    The record names this process as its owner, so the job is recorded failed if this process
    dies before finishing it (see the module's docstring). A pool whose jobs are finished by
    something that outlives this process passes ``owned=False``.
    """
    now = time.time()
    owner = _owner_of_this_process() if owned else None
    job = JobRecord(uuid.uuid4().hex, pipeline_name, status.value, now, now, worker=worker, owner=owner)
    op_store.put_job(job)
    return job


def mark_job(op_store: JobStore, job: JobRecord, status: JobStatus, **changes: Any) -> JobRecord:
    """Persist ``job`` in a new state and return the new record."""
    updated = attrs.evolve(job, status=status.value, updated_at=time.time(), **changes)
    op_store.put_job(updated)
    return updated


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


def finish_job(
    op_store: JobStore, saver: BaseSaver, job: JobRecord, value_data: bytes, versions: dict[str, str]
) -> JobRecord:
    """Save a job's dill-serialized value through the saver, then record the job ``done``.

    The bytes are written before the record, so a ``done`` record always has its value
    (after an OS crash both may be lost, or the value alone: fetching it then raises
    :class:`~chariots_core.errors.IntegrityError`, and running the job again fixes it).
    """
    path = f"jobs/{job.job_id}"
    save_job_result(saver, path, value_data)
    return mark_job(
        op_store,
        job,
        JobStatus.done,
        versions=versions,
        result_path=path,
        result_sha256=hashlib.sha256(value_data).hexdigest(),
    )


def save_job_result(saver: BaseSaver, path: str, data: bytes) -> None:
    """Save a job's result, without an fsync where the saver offers that.

    A saver offers it by taking a ``durable`` keyword in ``save`` (as
    ``chariots_fsspec.FsspecSaver`` does); any other saver is called with ``(path, data)``
    alone, so :class:`BaseSaver` itself asks nothing more of savers.
    """
    try:
        offers_fast_path = "durable" in inspect.signature(saver.save).parameters
    except (TypeError, ValueError):  # a callable whose signature Python cannot read
        offers_fast_path = False
    if offers_fast_path:
        saver.save(path, data, durable=False)  # type: ignore[call-arg]
    else:
        saver.save(path, data)


def run_job(
    job: JobRecord,
    pipeline: Pipeline,
    pipeline_input: Any,
    runner: BaseRunner,
    op_store: JobStore,
    saver: BaseSaver,
) -> JobRecord:
    """Run one job to completion, recording each state; never raises for an op's failure.

    The versions recorded are those the pipeline has after the run, as for a synchronous
    call (a pipeline that fits a model reports the freshly trained version).
    """
    job = mark_job(op_store, job, JobStatus.running, worker=f"pid {os.getpid()}")
    try:
        value = runner.run(pipeline, pipeline_input)
        data = dill.dumps(value)
    except Exception as exc:  # a job records its failure instead of raising it
        error = failure_details(exc)
        return mark_job(op_store, job, JobStatus.failed, versions=op_versions(pipeline), error=error)
    return finish_job(op_store, saver, job, data, op_versions(pipeline))


def job_response(op_store: JobStore, saver: BaseSaver, job_id: str) -> PipelineResponse:
    """The :class:`PipelineResponse` of a job, with its value once done.

    :raises JobNotFoundError: if no job has that id.
    """
    job = op_store.get_job(str(job_id))
    if job is None:
        msg = f"no job has id {job_id!r}; use the job_id of a PipelineResponse returned by call_pipeline"
        raise JobNotFoundError(msg)
    if job.status not in _TERMINAL_VALUES:
        job = _fail_orphan(op_store, job)
    value = None
    if job.status == JobStatus.done.value and job.result_path is not None:
        data = read_verified(
            saver,
            job.result_path,
            job.result_sha256 or "",
            f"the result of job {job_id!r}",
            "run the job again (an in-memory saver does not survive a restart)",
        )
        try:
            value = dill.loads(data)
        except Exception as exc:  # e.g. the value's class is not importable in this process
            msg = (
                f"the result of job {job_id!r} cannot be deserialized here ({type(exc).__name__}: "
                f"{exc}); make the modules its value needs importable in this process"
            )
            raise SerializationError(msg) from exc
    return PipelineResponse(
        value=value,
        versions={name: Version.parse(text) for name, text in job.versions.items()},
        job_id=job.job_id,
        job_status=JobStatus(job.status),
        error=None if job.error is None else {k: v for k, v in job.error.items() if k != "traceback"},
    )


class BaseWorkerPool(abc.ABC):
    """Runs pipelines asynchronously. Subclass it to use another job system.

    A pool implements :attr:`n_workers`, :meth:`spawn_worker` and
    :meth:`execute_pipeline_async`; job records go through :func:`new_job`,
    :func:`run_job` / :func:`mark_job` into the app's op store, which is what
    :meth:`get_pipeline_response_json_for_id` reads; :meth:`wait` blocks until a job is done
    or failed. Pools are context managers.
    """

    _app: Chariots | None = None

    def attach(self, app: Chariots) -> None:
        """Bind the pool to the app whose store records its jobs (the app does this)."""
        self._app = app

    @property
    @abc.abstractmethod
    def n_workers(self) -> int:
        """How many workers the pool has (busy or idle)."""

    @abc.abstractmethod
    def spawn_worker(self) -> None:
        """Add one worker to the pool."""

    @abc.abstractmethod
    def execute_pipeline_async(self, pipeline: Pipeline, pipeline_input: Any, app: Chariots) -> str:
        """Queue a run of ``pipeline`` on ``pipeline_input`` and return the job id."""

    def get_pipeline_response_json_for_id(self, job_id: str) -> str:
        """The JSON of the job's :class:`PipelineResponse` (status, and value once done)."""
        if self._app is None:
            raise WorkerError("this worker pool has run no job yet: it is not attached to an app")
        response = job_response(self._app.job_store, self._app.saver, job_id)
        return json.dumps(response.to_json())

    def wait(self, job_id: str, timeout: float | None = None) -> PipelineResponse:
        """Block until the job is ``done`` or ``failed`` and return its response.

        This implementation polls the job record (every millisecond at first, backing off to
        every 50 ms); pools that know when their jobs finish override it.

        :raises JobNotFoundError: if no job has that id.
        :raises WorkerError: if the job has not finished after ``timeout`` seconds.
        """
        if self._app is None:
            raise WorkerError("this worker pool has run no job yet: it is not attached to an app")
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        while True:
            response = job_response(self._app.job_store, self._app.saver, job_id)
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
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
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
        while (task := self._queue.get()) is not None:
            run_job(*task)

    def execute_pipeline_async(self, pipeline: Pipeline, pipeline_input: Any, app: Chariots) -> str:
        if self._closed:
            raise WorkerError("this worker pool is closed; create a new one to run jobs")
        self.attach(app)
        job = new_job(app.job_store, pipeline.name)
        self._queue.put((job, pipeline, pipeline_input, app.runner, app.job_store, app.saver))
        return job.job_id

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()
