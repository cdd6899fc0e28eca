"""The op store: metadata about saved ops, links between their versions, pipeline snapshots
and async jobs.

An op store never holds model bytes (a saver does) and never pickles: every record is an attrs
value that :func:`to_json` / :func:`from_json` turn into JSON with cattrs. Backends implement
the :class:`OpStore` protocol; :class:`MemoryOpStore` here serves tests and throw-away apps,
``chariots_lmdb.LMDBOpStore`` is the embedded default.

A backend's one hard duty is atomicity: :meth:`OpStore.commit_save` writes every record of one
pipeline save, or none of them.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Protocol, TypeVar, runtime_checkable

import attrs
import cattrs

__all__ = [
    "OpStore",
    "MemoryOpStore",
    "OpVersionRecord",
    "LinkRecord",
    "SnapshotRecord",
    "SaveRecord",
    "JobRecord",
    "to_json",
    "from_json",
]

_converter = cattrs.Converter()
_Record = TypeVar("_Record")


def to_json(record: Any) -> bytes:
    """Encode an attrs record as compact, key-sorted UTF-8 JSON."""
    return json.dumps(_converter.unstructure(record), sort_keys=True, separators=(",", ":")).encode()


def from_json(data: bytes | str, record_type: type[_Record]) -> _Record:
    """Decode JSON made by :func:`to_json` back into a ``record_type``."""
    return _converter.structure(json.loads(data), record_type)


@attrs.frozen
class OpVersionRecord:
    """One saved version of one op."""

    op_name: str
    version: str  # str(op.op_version): what downstream links refer to
    code_version: str  # str(type(op).__version__): the code that produced it
    pipeline_name: str  # the pipeline whose save wrote it (the one to re-run to retrain it)
    saved_at: float
    blob_path: str
    sha256: str
    size: int

    @property
    def holds_trained_state(self) -> bool:
        """Whether this version names trained state (it is not just its code's version)."""
        return self.version.split("_")[:3] != self.code_version.split("_")[:3]


@attrs.frozen
class LinkRecord:
    """``downstream_op`` at ``downstream_version`` was built on ``upstream_op`` at ``upstream_version``."""

    upstream_op: str
    upstream_version: str
    downstream_op: str
    downstream_version: str


@attrs.frozen
class SnapshotRecord:
    """Which version each op node of a pipeline ran with when the pipeline was saved."""

    pipeline_name: str
    saved_at: float
    versions: dict[str, str]


@attrs.frozen
class SaveRecord:
    """Everything one save writes: committed in one transaction."""

    ops: tuple[OpVersionRecord, ...]
    links: tuple[LinkRecord, ...]
    snapshot: SnapshotRecord


@attrs.frozen
class JobRecord:
    """The state of one asynchronous pipeline run."""

    job_id: str
    pipeline_name: str
    status: str  # a JobStatus value
    submitted_at: float
    updated_at: float
    versions: dict[str, str] = attrs.field(factory=dict)
    result_path: str | None = None  # saver path of the value (dill), once done
    result_sha256: str | None = None
    error: dict[str, str] | None = None  # {"type", "message", "node"} once failed
    worker: str | None = None  # which worker ran it (e.g. "pid 1234")
    # The process responsible for finishing the job, "<host>/<pid namespace>/<pid>/<start time>"
    # (see chariots_core.serving.workers.new_job); None for records written before owners existed
    # and for jobs that no process of this host answers for.
    owner: str | None = None


@runtime_checkable
class OpStore(Protocol):
    """Where versions, links, snapshots and jobs are recorded.

    Lists come back oldest first, in the order they were committed; the last op version is
    the latest. Implementations must be safe to use from several threads.
    """

    def commit_save(self, save: SaveRecord) -> None:
        """Record every op version, link and the snapshot of one save, all or nothing."""

    def op_versions(self, op_name: str) -> list[OpVersionRecord]:
        """Every saved version of ``op_name``, oldest first (a re-saved version moves last)."""

    def links(self, downstream_op: str) -> list[LinkRecord]:
        """Every link whose downstream is ``downstream_op``."""

    def snapshots(self, pipeline_name: str) -> list[SnapshotRecord]:
        """Every snapshot saved for ``pipeline_name``, oldest first."""

    def put_job(self, job: JobRecord) -> None:
        """Create or replace the record of ``job.job_id``."""

    def get_job(self, job_id: str) -> JobRecord | None:
        """The record of ``job_id``, or ``None``."""

    def jobs(self) -> list[JobRecord]:
        """Every job record, oldest submission first."""

    def close(self) -> None:
        """Release the store's resources."""


class MemoryOpStore:
    """An op store held in memory: for tests and apps that need no persistence."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: dict[str, dict[str, OpVersionRecord]] = {}
        self._links: dict[str, dict[LinkRecord, None]] = {}
        self._snapshots: dict[str, list[SnapshotRecord]] = {}
        self._jobs: dict[str, JobRecord] = {}

    def commit_save(self, save: SaveRecord) -> None:
        with self._lock:
            for record in save.ops:
                versions = self._versions.setdefault(record.op_name, {})
                versions.pop(record.version, None)  # re-saving moves a version to latest
                versions[record.version] = record
            for link in save.links:
                self._links.setdefault(link.downstream_op, {})[link] = None
            self._snapshots.setdefault(save.snapshot.pipeline_name, []).append(save.snapshot)

    def op_versions(self, op_name: str) -> list[OpVersionRecord]:
        with self._lock:
            return list(self._versions.get(op_name, {}).values())

    def links(self, downstream_op: str) -> list[LinkRecord]:
        with self._lock:
            return list(self._links.get(downstream_op, {}))

    def snapshots(self, pipeline_name: str) -> list[SnapshotRecord]:
        with self._lock:
            return list(self._snapshots.get(pipeline_name, []))

    def put_job(self, job: JobRecord) -> None:
        with self._lock:
            self._jobs[job.job_id] = job

    def get_job(self, job_id: str) -> JobRecord | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self) -> list[JobRecord]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda job: job.submitted_at)

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"<MemoryOpStore with {len(self._versions)} ops>"
