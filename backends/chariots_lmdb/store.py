"""``LMDBOpStore``: the embedded op store and job store, in an LMDB directory.

Layout (format 2; :mod:`chariots_lmdb.tables` describes the checksummed values, the verified
index and the chains). The store's directory holds the op records, its ``jobs`` subdirectory
the job records, each an LMDB environment with an ``index`` and ``entries`` sub-database:

============================================  ================================================
index key                                     payload
============================================  ================================================
``["meta", "format"]``                        ``2``
``["meta", "head"]``                          the last position handed out: the head token
``["version", op, version key]``              ``{"seq": p}``: the op's record is item ``p``
                                              of the chain ``("versions", op)``
``["links", down op, down version key]``      ``[[up op, up version, down version], ...]``
``["chain", *chain]``                         the head of a chain (see below)
``["job", job id]`` (jobs)                    ``{"seq": p, "record": JobRecord}``
============================================  ================================================

===========================================  =====================================================
chain                                        items, newest first
===========================================  =====================================================
``("versions", op)``                         every version's ``OpVersionRecord`` (a version saved
                                             again is removed and appended anew)
``("versions", op, policy, code key)``       ``null`` at the same positions: the versions whose
                                             code has that key under that policy
``("journal", kind, name)``                  the records of a journal (``SnapshotRecord``...)
``("jobs",)`` (jobs)                         job ids, in creation order
===========================================  =====================================================

Positions come from the head counter, bumped inside each write transaction: they order
records across every process that writes to the directory. So the hot path reads O(1)
records whatever the history: "is this version stored" is one index lookup, the newest version
a given code may load is the head of its chain, the links of a version one lookup, and a
page of a listing O(page) lookups. Records are JSON made by
:func:`~chariots_core.op_store.records.to_plain`, never pickles.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from chariots_core.errors import NotSavedError, StoreError
from chariots_core.op_store.records import (
    POLICIES,
    Commit,
    JobRecord,
    JournalEntry,
    LinkRecord,
    OpVersionRecord,
    Position,
    check_limit,
    code_key,
    from_plain,
    to_plain,
    version_key,
)
from chariots_core.op_store.store import JobStore, OpStore, OpStoreView, check_listed

from . import environments
from .environments import JOBS, OPS, OPS_UNDURABLE, Layout, SharedEnvironment
from .tables import MissingEntry, Tables, key

__all__ = ["LMDBOpStore", "DEFAULT_MAP_SIZE"]

DEFAULT_MAP_SIZE = 64 * 1024 * 1024  # grows on demand; on Linux the file only takes what is used
_Result = TypeVar("_Result")
_Record = TypeVar("_Record")


class LMDBOpStore(OpStore, JobStore):
    """An :class:`~chariots_core.OpStore` and job store kept in an LMDB directory.

    Several processes may open one directory and save and load at once: LMDB serialises
    writers with its lock file and a view is one read transaction, which sees one committed
    state. All records of one :meth:`commit` go in one write transaction, so a crash leaves all
    of them or none. A commit is durable when it returns: neither a killed process nor an OS
    crash or power cut undoes it (its pages and then its meta page are synced). With
    ``durable=False`` a commit syncs once instead of twice, and a power cut may undo the last
    commits, never part of one. The memory map grows by itself when full.

    Every record carries a checksum, and every listing and lookup is checked against the
    records around it (see :mod:`chariots_lmdb.tables`): a damaged store raises
    :class:`~chariots_core.errors.StoreError` (``IntegrityError`` for a damaged record) naming
    what is damaged and the store's path, never answers less or other than was committed.

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
    :param durable: ``False`` to trade the durability of the last commits for throughput (see
        above); every store of one directory in one process must use the same setting.
    :raises StoreError: if ``path`` is a file, cannot be created or written, is not an LMDB
        op store of this layout version, or is damaged.
    """

    def __init__(self, path: str | os.PathLike, map_size: int = DEFAULT_MAP_SIZE, *, durable: bool = True) -> None:
        if not isinstance(map_size, int) or isinstance(map_size, bool) or map_size <= 0:
            msg = f"'map_size' must be a positive number of bytes (got {map_size!r})"
            raise StoreError(msg)
        self.path = os.path.abspath(os.fspath(path))
        self.map_size = map_size
        self.durable = bool(durable)
        self._ops = OPS if self.durable else OPS_UNDURABLE
        # Per layout, the environment borrowed and the pid that borrowed it.
        self._handles: dict[Layout, tuple[int, SharedEnvironment]] = {}
        # Both opened now: a bad path fails here, and no environment is first opened inside a
        # view, where opening waits for a fork that waits for the view (see environments).
        self._shared(self._ops)
        self._shared(JOBS)

    # -- OpStore ------------------------------------------------------------------------------
    @contextmanager
    def _view(self) -> Iterator[OpStoreView]:
        shared = self._shared()
        with environments.reading(shared) as txn:
            view = _LMDBView(Tables(txn, shared.dbs, shared.path))
            try:
                yield view
            finally:
                view.closed = True

    def _commit(self, commit: Commit) -> Position:
        ops = [(record, to_plain(record)) for record in commit.ops]
        appends = [(("journal", append.kind, append.name), to_plain(append.record)) for append in commit.journal]

        def write(tables: Tables) -> int:
            for record, plain in ops:
                _store_version(tables, record, plain)
            for link in commit.links:
                _store_link(tables, link)
            for chain, plain in appends:
                tables.append(chain, tables.next_position(), plain)
            return tables.next_position()  # the commit's own: the head moves even if it wrote only links

        return self._write(write, self._ops, commit)

    # -- JobStore -----------------------------------------------------------------------------
    def put_job(self, job: JobRecord) -> None:
        """Create or replace the record of ``job.job_id`` (not fsynced: see the class docs)."""
        plain = to_plain(job)

        def write(tables: Tables) -> None:
            at = key("job", job.job_id)
            found = tables.get(at)
            if found is None:
                position = tables.next_position()
                tables.append(("jobs",), position, job.job_id)
            else:
                position = found["seq"]
            tables.put(at, {"seq": position, "record": plain})

        self._write(write, JOBS, job)

    def get_job(self, job_id: str) -> JobRecord | None:
        """The record of ``job_id``, or ``None``."""
        return self._read(lambda tables: _job(tables, str(job_id), required=False), JOBS)

    def jobs(self, *, limit: int | None = None, before: str | None = None) -> list[JobRecord]:
        """Job records, newest created first (see :class:`~chariots_core.op_store.store.JobStore`)."""
        check_limit(limit)

        def read(tables: Tables) -> list[JobRecord]:
            start = None
            if before is not None:
                found = tables.get(key("job", before))
                if found is None:
                    raise NotSavedError(f"the store at {self.path!r} has no job {before!r} to list jobs before")
                start = found["seq"]
            try:
                pairs = tables.walk(("jobs",), limit, start)
            except MissingEntry as exc:
                raise tables.damaged(f"job {before!r} is missing from the list of jobs") from exc
            return [_job(tables, job_id, required=True) for job_id in tables.parse([item for _, item in pairs])]

        return self._read(read, JOBS)

    # -- garbage collection ---------------------------------------------------------------------
    def referenced_blobs(self) -> Iterator[str]:
        """The blob path of every op version record, read in one transaction (see
        :meth:`~chariots_core.op_store.store.OpStore.referenced_blobs`)."""

        def read(tables: Tables) -> list[str]:
            paths = []
            for parts, _ in tables.scan("chain", "versions"):
                if len(parts) == 3:  # ["chain", "versions", op]: every version of one op
                    chain = tuple(parts[1:])
                    plains = tables.parse([item for _, item in tables.walk(chain, None)])
                    paths += [from_plain(plain, OpVersionRecord).blob_path for plain in plains]
            return paths

        return iter(self._read(read, self._ops))

    @property
    def fsyncs_saves(self) -> bool:
        """Whether :meth:`commit` fsyncs before returning (always ``True``; with ``durable`` the
        meta page too)."""
        return self._syncs(self._ops)

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
        return {"path": self.path, "map_size": self.map_size, "durable": self.durable}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"], state["map_size"], durable=state.get("durable", True))  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"<LMDBOpStore at {self.path!r}>"

    # -- internals --------------------------------------------------------------------------
    def _shared(self, layout: Layout | None = None) -> SharedEnvironment:
        layout = self._ops if layout is None else layout
        handle = self._handles.get(layout)
        pid = os.getpid()
        if handle is None or handle[0] != pid:
            handle = self._handles[layout] = (pid, environments.acquire(self.path, layout, self.map_size, self))
        return handle[1]

    def _syncs(self, layout: Layout) -> bool:
        return bool(self._shared(layout).env.flags()["sync"])

    def _read(self, work: Callable[[Tables], _Result], layout: Layout) -> _Result:
        shared = self._shared(layout)
        return environments.transaction(shared, lambda txn: work(Tables(txn, shared.dbs, shared.path)))

    def _write(self, work: Callable[[Tables], _Result], layout: Layout, what: Any) -> _Result:
        shared = self._shared(layout)
        try:
            return environments.transaction(shared, lambda txn: work(Tables(txn, shared.dbs, shared.path)), write=True)
        except (TypeError, ValueError) as exc:  # json.dumps: a value that is not JSON
            msg = f"cannot encode {what!r} for the LMDB op store at {self.path!r}: {exc}"
            raise StoreError(msg) from exc


def _store_version(tables: Tables, record: OpVersionRecord, plain: dict[str, Any]) -> None:
    """Write a version as its op's newest, taking out the record it replaces."""
    op = record.op_name
    at = key("version", op, version_key(record.version))
    found = tables.get(at)
    if found is not None:
        (replaced,) = (from_plain(plain, OpVersionRecord) for plain in tables.items(("versions", op), [found["seq"]]))
        tables.remove(("versions", op), found["seq"])
        for policy in POLICIES:
            tables.remove(("versions", op, policy, code_key(replaced.code_version, policy)), found["seq"])
    position = tables.next_position()
    tables.append(("versions", op), position, plain)
    for policy in POLICIES:
        tables.append(("versions", op, policy, code_key(record.code_version, policy)), position, None)
    tables.put(at, {"seq": position})


def _store_link(tables: Tables, link: LinkRecord) -> None:
    at = key("links", link.downstream_op, version_key(link.downstream_version))
    known = tables.get(at) or []
    item = [link.upstream_op, link.upstream_version, link.downstream_version]
    if item not in known:
        tables.put(at, [*known, item])


def _job(tables: Tables, job_id: str, required: bool) -> JobRecord | None:
    found = tables.get(key("job", job_id))
    if found is None:
        if required:
            raise tables.damaged(f"the record of job {job_id!r}, which the list of jobs names, is missing")
        return None
    job = from_plain(found["record"], JobRecord)
    if job.job_id != job_id:
        raise tables.damaged(f"the record filed under job {job_id!r} is that of job {job.job_id!r}")
    return job


class _LMDBView(OpStoreView):
    """Reads of one read transaction."""

    def __init__(self, tables: Tables) -> None:
        self._open_tables = tables
        self.closed = False

    @property
    def _tables(self) -> Tables:
        if self.closed:
            msg = f"a view of the LMDB op store at {self._open_tables.where!r} was used after its 'with store.reader()' block ended"
            raise StoreError(msg)
        return self._open_tables

    def head(self) -> Position:
        return self._tables.head()

    def op_version(self, op_name: str, version: str) -> OpVersionRecord | None:
        found = self._tables.get(key("version", op_name, version_key(version)))
        return None if found is None else self._stored(op_name, found["seq"])

    def _op_versions(
        self, op_name: str, code: str | None, policy: str, limit: int | None, before: str | None
    ) -> list[OpVersionRecord]:
        chain: tuple[str, ...] = ("versions", op_name) if code is None else ("versions", op_name, policy, code)
        start = None
        if before is not None:
            found = self._tables.get(key("version", op_name, version_key(before)))
            check_listed(None if found is None else self._stored(op_name, found["seq"]), op_name, before, code, policy)
            start = found["seq"]
        try:
            pairs = self._tables.walk(chain, limit, start)
        except MissingEntry as exc:
            raise self._tables.damaged(f"version {before!r} of op {op_name!r} is missing from its listing") from exc
        if code is None:
            plains = self._tables.parse([item for _, item in pairs])
        else:  # the code's chain says which versions: their records are in the op's chain
            plains = self._tables.items(("versions", op_name), [position for position, _ in pairs])
        records = [self._record(op_name, plain) for plain in plains]
        for record in records if code is not None else ():
            if code_key(record.code_version, policy) != code:
                raise self._tables.damaged(f"the {policy} listing of op {op_name!r} holds {record.version!r} of other code")
        return records

    def links(self, downstream_op: str, downstream_version: str) -> list[LinkRecord]:
        known = self._tables.get(key("links", downstream_op, version_key(downstream_version))) or []
        return [LinkRecord(up, up_version, downstream_op, down_version) for up, up_version, down_version in known]

    def _journal(
        self, record_type: type[_Record], kind: str, name: str, limit: int | None, before: Position | None
    ) -> list[JournalEntry[_Record]]:
        if before is not None and (not isinstance(before, int) or isinstance(before, bool) or before <= 0):
            raise NotSavedError(f"{before!r} is not a position of the {kind} journal of {name!r}")
        try:
            pairs = self._tables.walk(("journal", kind, name), limit, before)
        except MissingEntry:
            msg = (
                f"{before!r} is not a position of the {kind} journal of {name!r}: pass as 'before' "
                "what an earlier page of it listed"
            )
            raise NotSavedError(msg) from None
        plains = self._tables.parse([item for _, item in pairs])
        return [JournalEntry(position, from_plain(plain, record_type)) for (position, _), plain in zip(pairs, plains)]

    def _stored(self, op_name: str, position: int) -> OpVersionRecord:
        """The record saved at ``position`` of ``op_name``'s chain."""
        return self._record(op_name, self._tables.items(("versions", op_name), [position])[0])

    def _record(self, op_name: str, plain: Any) -> OpVersionRecord:
        record = from_plain(plain, OpVersionRecord)
        if record.op_name != op_name:
            raise self._tables.damaged(f"the record filed under op {op_name!r} is one of op {record.op_name!r}")
        return record
