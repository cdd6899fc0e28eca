"""What :class:`~chariots_multiprocess.MultiprocessWorkerPool` hands to its workers: units.

A unit is a job (:class:`Task`: its record is written at every step) or one call of a batch
(:class:`Call`: no record, its reply goes to its :class:`Batch`). The pool queues, sends and
supervises units alike; each unit says what its start, its outcome and its loss mean.
"""

from __future__ import annotations

import abc
import logging
import queue
from typing import TYPE_CHECKING

import dill

from chariots_core.serving.workers import JobStatus, failure_details, finish_job, mark_job

from . import _worker

if TYPE_CHECKING:
    from chariots_core.op_store.store import JobRecord
    from chariots_core.serving.app import Chariots

__all__ = ["Unit", "Task", "Batch", "Call"]

logger = logging.getLogger(__name__)


class Unit(abc.ABC):
    """One piece of work on its way through the pool, under ``key`` in its bookkeeping; the
    worker gets ``payload`` (named ``token``) once and ``argument`` each time."""

    kind: str  # _worker.JOB or _worker.CALL
    noun: str  # what a user re-runs when it is lost: "job" or "batch"
    __slots__ = ("key", "token", "payload", "argument")

    def __init__(self, key: str, token: str, payload: bytes, argument: bytes) -> None:
        self.key, self.token, self.payload, self.argument = key, token, payload, argument

    @abc.abstractmethod
    def describe(self) -> str:
        """What the unit is, for error messages."""

    def start(self, worker_name: str) -> None:  # noqa: B027 - most units record nothing here
        """Called with the pool's lock held just before the unit is sent to a worker."""

    def unsent(self) -> None:  # noqa: B027 - most units record nothing here
        """Its worker died before receiving it: it goes back to the queue. Lock held."""

    def retry(self) -> bool:
        """Its worker died while running it: whether to run it again. Lock held."""
        return False

    @abc.abstractmethod
    def settle(self, reply: tuple) -> None:
        """Record the worker's reply; never raises."""

    @abc.abstractmethod
    def fail(self, message: str, error_type: str) -> None:
        """Record that the unit will not finish; never raises."""


class Task(Unit):
    """One submitted job: its record is written at every step."""

    kind, noun = _worker.JOB, "job"
    __slots__ = ("job", "app", "versions")

    def __init__(
        self, job: JobRecord, app: Chariots, versions: dict[str, str], token: str, payload: bytes, input_bytes: bytes
    ) -> None:
        super().__init__(job.job_id, token, payload, input_bytes)
        self.job, self.app, self.versions = job, app, versions

    def describe(self) -> str:
        return f"job {self.job.job_id!r} of pipeline {self.job.pipeline_name!r}"

    def start(self, worker_name: str) -> None:
        # "running" is recorded before the job is sent, so the outcome, recorded later by the
        # supervisor, can never be overwritten by it.
        self.job = mark_job(self.app.op_store, self.job, JobStatus.running, worker=worker_name)

    def unsent(self) -> None:
        self.job = mark_job(self.app.op_store, self.job, JobStatus.queued, worker=None)

    def settle(self, reply: tuple) -> None:
        app = self.app
        try:
            if reply[0] == _worker.DONE:
                _, _, value_bytes, versions, trained_bytes = reply
                if trained_bytes is not None:
                    # Before "done": whoever sees the job done can save what it trained.
                    app.install_ops(self.job.pipeline_name, dill.loads(trained_bytes))
                finish_job(app.op_store, app.saver, self.job, value_bytes, versions)
            else:
                _, _, error, versions = reply
                versions = versions or self.versions  # empty when the worker could not load the job
                mark_job(app.op_store, self.job, JobStatus.failed, versions=versions, error=error)
        except Exception as exc:
            details = failure_details(exc)
            self.fail(f"the job ran but its outcome could not be recorded: {details['message']}", details["type"])

    def fail(self, message: str, error_type: str) -> None:
        """Record the job failed; a store that refuses even that is logged, not raised."""
        error = {"type": error_type, "message": message, "node": ""}
        versions = self.job.versions or self.versions
        try:
            self.job = mark_job(self.app.op_store, self.job, JobStatus.failed, versions=versions, error=error)
        except Exception:
            logger.exception("could not record job %s as failed: %s", self.job.job_id, message)


class Batch:
    """The calls of one :meth:`MultiprocessWorkerPool.map_unordered`: their replies, in the
    order they come, for the caller's thread."""

    __slots__ = ("name", "replies", "cancelled")

    def __init__(self, name: str) -> None:
        self.name = name
        self.replies: queue.SimpleQueue[tuple[int, tuple]] = queue.SimpleQueue()
        self.cancelled = False


class Call(Unit):
    """One item of a batch: no record, its reply goes to the batch."""

    kind, noun = _worker.CALL, "batch"
    __slots__ = ("batch", "index", "retried")

    def __init__(self, batch: Batch, index: int, token: str, payload: bytes, item_bytes: bytes) -> None:
        super().__init__(f"{batch.name}#{index}", token, payload, item_bytes)
        self.batch, self.index, self.retried = batch, index, False

    def describe(self) -> str:
        again = " (its second try: a worker had already died running it)" if self.retried else ""
        return f"item #{self.index} of batch {self.batch.name!r}{again}"

    def retry(self) -> bool:
        # Once: a worker killed from outside (OOM killer, an operator) should not sink the batch,
        # but an item that kills every worker it touches must not take the pool down with it.
        if self.retried or self.batch.cancelled:
            return False
        self.retried = True
        return True

    def settle(self, reply: tuple) -> None:
        self.batch.replies.put((self.index, reply))

    def fail(self, message: str, error_type: str) -> None:
        error = {"type": error_type, "message": message, "node": ""}
        self.batch.replies.put((self.index, (_worker.FAILED, self.key, error)))
