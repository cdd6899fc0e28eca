"""The object op store's job records: one object per job, and markers of the order jobs came in.

Below the store's ``meta/`` directory::

    jobs/_<job id>              the job's record and its creation stamp (replaced on each change)
    job-order/<stamp>_<job id>  empty: its name lists the job in creation order

(job ids are URL-quoted behind a ``_``, so ``""``, ``"."`` or ``"a/b"`` stay one segment). A
stamp is a nanosecond time and a uuid: jobs are listed in the order of their creators' clocks.
A new job's marker is written before its record, so every job with a record is listed; a
marker without a record is a job being created, or debris of a creation that was killed
(:meth:`JobFiles.collect_debris` removes those once old).
"""

from __future__ import annotations

import posixpath
import threading
import time
import uuid
from urllib.parse import quote, unquote

from chariots_core.errors import IntegrityError, NotSavedError
from chariots_core.op_store.records import JobRecord, check_limit, from_plain, to_plain

from ._object_bucket import Bucket, seal, unseal

__all__ = ["JobFiles"]

_STAMP_WIDTH = 53  # _creation_stamp(): 20 digits, "-", 32 hex digits
_last_stamp = 0
_stamp_lock = threading.Lock()


def _creation_stamp() -> str:
    """A name part that sorts by creation time (in this process: strictly) and no other writer makes."""
    global _last_stamp
    with _stamp_lock:
        _last_stamp = max(time.time_ns(), _last_stamp + 1)
        stamp = _last_stamp
    return f"{stamp:020d}-{uuid.uuid4().hex}"


def _segment(job_id: str) -> str:
    return "_" + quote(str(job_id), safe="")


class JobFiles:
    """The job records of the store whose ``meta/`` directory is ``directory`` in ``bucket``."""

    def __init__(self, bucket: Bucket, directory: str) -> None:
        self.bucket, self.directory = bucket, directory
        self.store = f"<ObjectOpStore at {bucket.url!r}>"
        self._created: dict[str, str] = {}  # job id -> creation stamp, for the jobs seen here
        self._lock = threading.Lock()

    def put(self, job: JobRecord) -> None:
        """Create or replace the record of ``job.job_id``: one request for a job this store
        wrote or read before, else up to three."""
        with self._lock:
            created = self._created.get(job.job_id)
        if created is None:
            found = self._read(job.job_id)
            if found is not None:
                created = found[0]
            else:
                created = _creation_stamp()
                self.bucket.put(f"{self.directory}/job-order/{created}{_segment(job.job_id)}", b"")
        self.bucket.put(self._path(job.job_id), seal("chariots-job", {"created": created, "job": to_plain(job)}))
        with self._lock:
            self._created[job.job_id] = created

    def get(self, job_id: str) -> JobRecord | None:
        """The record of ``job_id``, or ``None``."""
        found = self._read(job_id)
        return None if found is None else found[1]

    def page(self, limit: int | None, before: str | None) -> list[JobRecord]:
        """Job records, newest created first: lists the markers (one request per 1,000 jobs on
        S3), then reads the page's records."""
        check_limit(limit)
        order = self._order()
        if before is not None:
            if before not in order:
                raise NotSavedError(f"{self.store} has no job {before!r} to list jobs before")
            order = order[order.index(before) + 1 :]
        found: list[JobRecord] = []
        chunk = max(limit or 0, 64)
        for start in range(0, len(order), chunk):
            wanted = order[start : start + chunk]
            records = self._read_many(wanted)
            found += [records[job_id] for job_id in wanted if job_id in records]
            if limit is not None and len(found) >= limit:
                return found[:limit]
        return found

    def collect_debris(self, older_than: float, dry_run: bool) -> list[str]:
        """Remove (unless ``dry_run``) the markers of jobs without a record made more than
        ``older_than`` seconds ago; return their paths below the store's URL."""
        cutoff = time.time_ns() - int(older_than * 1e9)
        markers = self.bucket.list(f"{self.directory}/job-order")
        records = self._read_many([_job_id(marker) for marker in markers])
        removed = []
        for marker in markers:
            name = posixpath.basename(marker)
            if _job_id(marker) not in records and int(name[:20]) < cutoff:
                if not dry_run:
                    self.bucket.delete(marker)
                removed.append(f"meta/job-order/{name}")
        return removed

    def _path(self, job_id: str) -> str:
        return f"{self.directory}/jobs/{_segment(job_id)}"

    def _order(self) -> list[str]:
        """Job ids, newest created first (a job with two markers counts where it was first)."""
        first = dict.fromkeys(_job_id(marker) for marker in self.bucket.list(f"{self.directory}/job-order"))
        return list(reversed(first))

    def _read(self, job_id: str) -> tuple[str, JobRecord] | None:
        """``(creation stamp, record)`` of ``job_id``, or ``None``."""
        data = self.bucket.get(self._path(job_id))
        return None if data is None else self._decode(self._path(job_id), data, job_id)

    def _read_many(self, job_ids: list[str]) -> dict[str, JobRecord]:
        """The records of those of ``job_ids`` that have one."""
        paths = {self._path(job_id): job_id for job_id in job_ids}
        return {
            paths[path]: self._decode(path, data, paths[path])[1]
            for path, data in self.bucket.get_many(list(paths)).items()
            if data is not None
        }

    def _decode(self, path: str, data: bytes, job_id: str) -> tuple[str, JobRecord]:
        where = f"the job record {path!r} of {self.store}"
        body = unseal("chariots-job", data, where)
        try:
            created, job = body["created"], from_plain(body["job"], JobRecord)
        except (TypeError, ValueError, KeyError) as exc:
            raise IntegrityError(f"{where} is not a job record ({exc}): it was not written by Chariots") from exc
        if job.job_id != job_id:
            raise IntegrityError(f"{where} holds job {job.job_id!r}: the store is damaged, restore it from a backup")
        with self._lock:
            self._created.setdefault(job_id, created)
        return created, job


def _job_id(marker: str) -> str:
    return unquote(posixpath.basename(marker)[_STAMP_WIDTH + 1 :])
