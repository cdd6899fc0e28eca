"""``LMDBOpStore``: the embedded op store, in an LMDB directory.

Layout: named sub-databases whose keys and values are JSON made by
:func:`chariots_core.op_store.store.to_json` (never pickles), in two LMDB environments: the store's
directory, whose commits are fsynced, and its ``jobs`` subdirectory, whose commits are not
(see :class:`LMDBOpStore` for what that means):

=========  ====================================  ===========================================
database   key                                   value
=========  ====================================  ===========================================
versions   ``[op_name, version]``                ``{"seq": n, "record": OpVersionRecord}``
links      ``[downstream_op, upstream_op,        ``n``
           upstream_version, downstream_version]``
snapshots  ``[pipeline_name, n]``                ``SnapshotRecord``
meta       ``"seq"``, ``"format"``               the commit counter, the layout version
jobs/jobs  ``job_id``                            ``{"seq": n, "record": JobRecord}``
jobs/meta  ``"seq"``                             the job counter
=========  ====================================  ===========================================

``n`` comes from a counter of its environment bumped inside each write transaction, so
sorting by it gives commit order across every process that writes to the directory. Keys
start with the name they are listed by, so a listing is one cursor range scan.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import attrs
import lmdb

from chariots_core.errors import StoreError
from chariots_core.op_store.store import (
    JobRecord,
    LinkRecord,
    OpVersionRecord,
    SaveRecord,
    SnapshotRecord,
    from_json,
    to_json,
)

from . import environments
from .environments import JOBS, OPS, Layout, SharedEnvironment

__all__ = ["LMDBOpStore", "DEFAULT_MAP_SIZE"]

DEFAULT_MAP_SIZE = 64 * 1024 * 1024  # grows on demand; on Linux the file only takes what is used
FORMAT = 1
_SEQ_KEY = to_json("seq")
_FORMAT_KEY = to_json("format")
_Record = TypeVar("_Record")


@attrs.frozen
class _StoredVersion:
    seq: int
    record: OpVersionRecord


@attrs.frozen
class _StoredJob:
    seq: int
    record: JobRecord


def _sequenced(seq: int, record_json: bytes) -> bytes:
    # Same bytes to_json(_Stored*(seq, record)) would give, without re-encoding the record.
    return b'{"record":%s,"seq":%d}' % (record_json, seq)


def _prefix(name: str) -> bytes:
    """The key prefix shared by every ``[name, ...]`` key and by no other name's keys."""
    return to_json([name])[:-1] + b","


class LMDBOpStore:
    """An :class:`~chariots_core.OpStore` kept in an LMDB directory.

    Several processes may open one directory and save and load at once: LMDB serialises
    writers with its lock file and readers see every committed save. All records of one
    :meth:`commit_save` go in one write transaction, so a crash leaves all of them or none.
    A killed process loses no committed save; an OS crash or power cut may undo the last
    one (LMDB's ``metasync=False``, which halves the fsyncs of a commit), never part of it.
    The memory map grows by itself when full.

    Job records (:meth:`put_job`) are not fsynced: a job changes state several times and an
    fsync each would cost more than a small job. A record is in the kernel's hands when
    :meth:`put_job` returns, so it survives the writing process being killed; an OS crash or
    power cut may lose the latest job states (and, on a filesystem that reorders writes,
    leave the ``jobs`` subdirectory unreadable: delete it to start a fresh job history).
    They live in their own LMDB environment, so that never touches saved op versions.
    :attr:`fsyncs_saves` and :attr:`fsyncs_jobs` tell which writes are fsynced.

    The store pickles as its path and options and reopens the directory where it is
    unpickled (worker processes receive it that way); after a ``fork()`` the child opens its
    own environment on first use. :meth:`close` releases the environment; using the store
    again reopens it.

    :param path: the directory of the store (created if missing).
    :param map_size: initial size in bytes of LMDB's memory map.
    :raises StoreError: if ``path`` is a file, cannot be created or written, or is not an
        LMDB store.
    """

    def __init__(self, path: str | os.PathLike, map_size: int = DEFAULT_MAP_SIZE) -> None:
        if not isinstance(map_size, int) or map_size <= 0:
            msg = f"'map_size' must be a positive number of bytes (got {map_size!r})"
            raise StoreError(msg)
        self.path = os.path.abspath(os.fspath(path))
        self.map_size = map_size
        # Per layout, the environment borrowed and the pid that borrowed it.
        self._handles: dict[Layout, tuple[int, SharedEnvironment]] = {}
        self._check_format(self._shared())

    # -- the OpStore protocol -------------------------------------------------------------
    def commit_save(self, save: SaveRecord) -> None:
        """Record every op version, link and the snapshot of one save in one transaction."""
        ops = [(to_json([r.op_name, r.version]), self._encode(r)) for r in save.ops]
        links = [
            to_json([link.downstream_op, link.upstream_op, link.upstream_version, link.downstream_version])
            for link in save.links
        ]
        snapshot = self._encode(save.snapshot)

        def write(txn: lmdb.Transaction) -> None:
            dbs = self._shared().dbs
            seq = self._read_seq(txn)
            for key, value in ops:
                seq += 1
                txn.put(key, _sequenced(seq, value), db=dbs["versions"])
            for key in links:
                # A link already known keeps its place (first-seen order).
                if txn.get(key, db=dbs["links"]) is None:
                    seq += 1
                    txn.put(key, to_json(seq), db=dbs["links"])
            seq += 1
            txn.put(to_json([save.snapshot.pipeline_name, seq]), snapshot, db=dbs["snapshots"])
            txn.put(_SEQ_KEY, to_json(seq), db=dbs["meta"])

        self._transaction(write, write=True)

    def op_versions(self, op_name: str) -> list[OpVersionRecord]:
        """Every saved version of ``op_name``, oldest first (a re-saved version moves last)."""

        def decode(key: bytes, value: bytes) -> tuple[int, OpVersionRecord]:
            stored = self._decode("versions", key, value, _StoredVersion)
            return stored.seq, stored.record

        return self._scan("versions", _prefix(op_name), decode)

    def links(self, downstream_op: str) -> list[LinkRecord]:
        """Every link whose downstream is ``downstream_op``, in the order first recorded."""

        def decode(key: bytes, value: bytes) -> tuple[int, LinkRecord]:
            down, up, up_version, down_version = self._decode("links", key, key, tuple[str, str, str, str])
            return self._decode("links", key, value, int), LinkRecord(up, up_version, down, down_version)

        return self._scan("links", _prefix(downstream_op), decode)

    def snapshots(self, pipeline_name: str) -> list[SnapshotRecord]:
        """Every snapshot saved for ``pipeline_name``, oldest first."""

        def decode(key: bytes, value: bytes) -> tuple[int, SnapshotRecord]:
            _, seq = self._decode("snapshots", key, key, tuple[str, int])
            return seq, self._decode("snapshots", key, value, SnapshotRecord)

        return self._scan("snapshots", _prefix(pipeline_name), decode)

    def put_job(self, job: JobRecord) -> None:
        """Create or replace the record of ``job.job_id``."""
        key, value = to_json(job.job_id), self._encode(job)

        def write(txn: lmdb.Transaction) -> None:
            dbs = self._shared(JOBS).dbs
            existing = txn.get(key, db=dbs["jobs"])
            if existing is not None:
                # Replacing a job keeps its place among jobs submitted at the same time.
                seq = self._decode("jobs", key, existing, _StoredJob).seq
            else:
                seq = self._read_seq(txn, JOBS) + 1
                txn.put(_SEQ_KEY, to_json(seq), db=dbs["meta"])
            txn.put(key, _sequenced(seq, value), db=dbs["jobs"])

        self._transaction(write, write=True, layout=JOBS)

    def get_job(self, job_id: str) -> JobRecord | None:
        """The record of ``job_id``, or ``None``."""
        key = to_json(job_id)
        value = self._transaction(lambda txn: txn.get(key, db=self._shared(JOBS).dbs["jobs"]), layout=JOBS)
        return None if value is None else self._decode("jobs", key, value, _StoredJob).record

    def jobs(self) -> list[JobRecord]:
        """Every job record, oldest submission first."""

        def decode(key: bytes, value: bytes) -> tuple[tuple[float, int], JobRecord]:
            stored = self._decode("jobs", key, value, _StoredJob)
            return (stored.record.submitted_at, stored.seq), stored.record

        return self._scan("jobs", b"", decode, layout=JOBS)

    @property
    def fsyncs_saves(self) -> bool:
        """Whether :meth:`commit_save` fsyncs before returning (always ``True``)."""
        return self._syncs(OPS)

    @property
    def fsyncs_jobs(self) -> bool:
        """Whether :meth:`put_job` fsyncs before returning (``False``: see the class docs)."""
        return self._syncs(JOBS)

    def close(self) -> None:
        """Release this store's hold on its LMDB environments (they reopen if used again)."""
        handles, self._handles = self._handles, {}
        for pid, shared in handles.values():
            # An environment inherited through fork() belongs to the parent: leave it alone.
            if pid == os.getpid():
                environments.release(shared, self)

    # -- pickling: worker processes reopen the directory -------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "map_size": self.map_size}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["map_size"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"<LMDBOpStore at {self.path!r}>"

    # -- internals --------------------------------------------------------------------------
    def _shared(self, layout: Layout = OPS) -> SharedEnvironment:
        handle = self._handles.get(layout)
        pid = os.getpid()
        if handle is None or handle[0] != pid:
            handle = self._handles[layout] = (pid, environments.acquire(self.path, layout, self.map_size, self))
        return handle[1]

    def _syncs(self, layout: Layout) -> bool:
        return bool(self._shared(layout).env.flags()["sync"])

    def _transaction(
        self, work: Callable[[lmdb.Transaction], _Record], write: bool = False, layout: Layout = OPS
    ) -> _Record:
        return environments.transaction(self._shared(layout), work, write=write)

    def _scan(
        self,
        db_name: str,
        prefix: bytes,
        decode: Callable[[bytes, bytes], tuple[Any, _Record]],
        layout: Layout = OPS,
    ) -> list[_Record]:
        """The records under ``prefix``, decoded as (sort key, record), in sort-key order."""

        def read(txn: lmdb.Transaction) -> list[tuple[Any, _Record]]:
            cursor = txn.cursor(db=self._shared(layout).dbs[db_name])
            return [decode(key, value) for key, value in _range(cursor, prefix)]

        records = self._transaction(read, layout=layout)
        return [record for _, record in sorted(records, key=lambda item: item[0])]

    def _read_seq(self, txn: lmdb.Transaction, layout: Layout = OPS) -> int:
        value = txn.get(_SEQ_KEY, db=self._shared(layout).dbs["meta"])
        return 0 if value is None else self._decode("meta", _SEQ_KEY, value, int)

    def _check_format(self, shared: SharedEnvironment) -> None:
        def write(txn: lmdb.Transaction) -> int:
            value = txn.get(_FORMAT_KEY, db=shared.dbs["meta"])
            if value is None:
                txn.put(_FORMAT_KEY, to_json(FORMAT), db=shared.dbs["meta"])
                return FORMAT
            return self._decode("meta", _FORMAT_KEY, value, int)

        found = self._transaction(write, write=True)
        if found != FORMAT:
            msg = (
                f"the LMDB op store at {self.path!r} has layout version {found}, this chariots "
                f"reads version {FORMAT}; open it with the chariots release that wrote it"
            )
            raise StoreError(msg)

    def _encode(self, record: Any) -> bytes:
        try:
            return to_json(record)
        except (TypeError, ValueError) as exc:
            msg = f"cannot encode {record!r} for the LMDB op store at {self.path!r}: {exc}"
            raise StoreError(msg) from exc

    def _decode(self, db_name: str, key: bytes, value: bytes, record_type: type[_Record]) -> _Record:
        try:
            return from_json(value, record_type)
        except Exception as exc:  # json and cattrs raise several unrelated types
            msg = (
                f"the LMDB op store at {self.path!r} holds an unreadable record in {db_name!r} "
                f"under key {bytes(key)[:200]!r} ({type(exc).__name__}: {exc}); the store is "
                "corrupt or was written by another program: restore it from a backup"
            )
            raise StoreError(msg) from exc


def _range(cursor: lmdb.Cursor, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
    if not cursor.set_range(prefix):
        return
    for key, value in cursor:
        if not key.startswith(prefix):
            return
        yield key, value
