"""What a pipeline call answers: :class:`PipelineResponse`, and :class:`JobStatus` for async calls.

A response is the same object in process (``Chariots.call_pipeline``) and over HTTP
(``chariots_waitress``), where it travels as the JSON of :meth:`PipelineResponse.to_json`.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs

from ..versioning import Version
from .jsonsafe import to_jsonable

__all__ = ["JobStatus", "PipelineResponse", "TERMINAL_STATES"]


class JobStatus(enum.Enum):
    """The states a job goes through: queued -> running -> done | failed."""

    deferred = "deferred"
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


TERMINAL_STATES = frozenset({JobStatus.done, JobStatus.failed})


@attrs.define
class PipelineResponse:
    """What a pipeline call returns.

    :param value: the pipeline's output (``None`` while an async job is not done).
    :param versions: the version of each op node the run used, by node name.
    :param job_id: the job's id, for async calls.
    :param job_status: the job's state, for async calls.
    :param error: ``{"type", "message", "node"}`` when an async job failed.
    :param variant: the variant of a split pipeline that answered (``None``: not split; see
        ``Chariots.split``).
    """

    value: Any = None
    versions: dict[str, Version] = attrs.field(factory=dict)
    job_id: str | None = None
    job_status: JobStatus | None = None
    error: dict[str, str] | None = None
    variant: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (the HTTP wire format)."""
        return {
            "value": to_jsonable(self.value),
            "versions": {name: str(version) for name, version in self.versions.items()},
            "job_id": self.job_id,
            "job_status": None if self.job_status is None else self.job_status.value,
            "error": self.error,
            "variant": self.variant,
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
            variant=data.get("variant"),
        )
