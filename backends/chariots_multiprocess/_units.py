"""What :class:`~chariots_multiprocess.MultiprocessWorkerPool` hands to its workers: units.

A unit is a job (:class:`Task`: its record is written at every step, through its
:class:`~chariots_core.serving.jobs.Submission`) or one call of a batch (:class:`Call`: no
record, its reply goes to its :class:`Batch`). The pool queues, sends and supervises units
alike; each unit says what its start, its outcome and its loss mean. The pool never holds its
lock while it calls a unit's :meth:`~Unit.start`, :meth:`~Unit.unsent`, :meth:`~Unit.settle`
or :meth:`~Unit.fail`: for a job, they write its record.
"""

from __future__ import annotations

import abc
import queue
from typing import TYPE_CHECKING

from chariots_core.serving.jobs import job_error

from . import _worker

if TYPE_CHECKING:
    from chariots_core.serving.jobs import JobOutcome, Submission

__all__ = ["Unit", "Task", "Batch", "Call"]


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
        """Called just before the unit is sent to a worker; raising means it cannot start."""

    def unsent(self) -> None:  # noqa: B027 - most units record nothing here
        """Its worker died before receiving it: it goes back to the queue."""

    def retry(self) -> bool:
        """Its worker died while running it: whether to run it again. Called with the pool's lock held."""
        return False

    @abc.abstractmethod
    def settle(self, reply: object) -> None:
        """Record the worker's reply; never raises."""

    @abc.abstractmethod
    def fail(self, message: str, error_type: str) -> None:
        """Record that the unit will not finish; never raises."""


class Task(Unit):
    """One submitted job: its record is written at every step."""

    kind, noun = _worker.JOB, "job"
    __slots__ = ("submission",)

    def __init__(self, submission: Submission, input_bytes: bytes) -> None:
        payload = submission.payload
        super().__init__(submission.job_id, payload.token, payload.data, input_bytes)
        self.submission = submission

    def describe(self) -> str:
        return self.submission.describe()

    def start(self, worker_name: str) -> None:
        # "running" is recorded before the job is sent, so the outcome, recorded later by the
        # supervisor, can never be overwritten by it.
        self.submission.start(worker_name)

    def unsent(self) -> None:
        self.submission.requeue()

    def settle(self, reply: JobOutcome) -> None:  # type: ignore[override]
        self.submission.settle(reply)

    def fail(self, message: str, error_type: str) -> None:
        self.submission.fail(job_error(message, error_type))


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

    def settle(self, reply: object) -> None:
        self.batch.replies.put((self.index, reply))  # type: ignore[arg-type]

    def fail(self, message: str, error_type: str) -> None:
        self.batch.replies.put((self.index, (_worker.FAILED, self.key, job_error(message, error_type))))
