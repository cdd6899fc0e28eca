"""The op store protocol: what Chariots records about saved ops, and how it reads it back.

An op store holds metadata, never model bytes (a saver does) and never pickles: every record
is an attrs value stored as JSON (:mod:`chariots_core.op_store.records`). Two protocols, so a
backend may implement one without the other:

- :class:`OpStore`: op versions, links and journals (pipeline snapshots...).
- :class:`JobStore`: the records of asynchronous jobs.

:class:`MemoryOpStore` here is the reference implementation of both (tests, throw-away apps);
``chariots_lmdb.LMDBOpStore`` is the embedded default, ``chariots_fsspec.ObjectOpStore`` keeps
records in object storage.

**Writing.** :meth:`OpStore.commit` writes a :class:`~chariots_core.op_store.records.Commit`
(op versions, links, journal appends) all or nothing, and returns the store's new head.

**Reading.** ``with op_store.reader() as view:`` gives an :class:`OpStoreView`: every read
through one view sees one committed state, however many commits land meanwhile (LMDB: one read
transaction). A load resolves all its versions through one view. The store's own read methods
(``op_store.op_versions(...)``...) each read through a view of their own. What a view answers:

- :meth:`~OpStoreView.head`: a token that changes with every commit, readable in O(1): a
  serving process polls it to learn whether anything was saved since it last looked;
- :meth:`~OpStoreView.op_version`: version -> record, matched by subversions (not creation time);
- :meth:`~OpStoreView.op_versions`: an op's versions newest first (a version saved again moves
  first), all of them or only those whose code a policy accepts; paged with ``limit`` and
  ``before``, so the newest one is O(1) whatever the history;
- :meth:`~OpStoreView.links`: what one downstream version was built on;
- :meth:`~OpStoreView.journal`: a journal (append-only records per name, e.g. the snapshots
  of a pipeline) newest first, paged with ``limit`` and ``before``. A new journal is a new
  record class with a ``JOURNAL`` name: no backend change.

Paging: ``before`` is the identity of the last item of the previous page (a version string,
a journal position, a job id); the next page holds what comes after it, newest first.
Backends that keep history in hand must answer in that order too; the LMDB store answers a
page in O(page size) reads, whatever the history.

**Rules for every backend.** Records come back equal to what was committed. Safe to use from
several threads; a view is used by the thread that opened it, inside its ``with`` block.
A thread must not commit while it holds a view of the same store (:meth:`OpStore.commit`
raises): the view would not see the commit, and LMDB cannot grow its map under a reader.
Damage is reported as damage: a backend that detects a damaged record raises
:class:`~chariots_core.errors.StoreError` (or ``IntegrityError``) naming it and the store,
never answers with less or other than what was committed.

**Garbage collection** (:mod:`chariots_core.op_store.garbage`) asks each store two things:
:meth:`OpStore.referenced_blobs`, every saver path its committed records name (a backend must
implement it, or garbage collection refuses to run), and :meth:`OpStore.collect_debris`, to
remove what its own interrupted writes left (default: nothing).
"""

from __future__ import annotations

import abc
import functools
import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

from ..errors import NotSavedError, StoreError
from .records import (  # noqa: F401 - their older import path
    Commit,
    JobRecord,
    JournalEntry,
    LinkRecord,
    OpVersionRecord,
    Position,
    SnapshotRecord,
    check_limit,
    code_key,
    from_json,
    journal_kind,
    page,
    to_json,
    version_key,
)

__all__ = ["OpStore", "OpStoreView", "JobStore", "MemoryOpStore", "check_listed"]

_Record = TypeVar("_Record")
_Result = TypeVar("_Result")


class OpStoreView(abc.ABC):
    """One committed state of an op store (see the module docstring for paging).

    A backend implements :meth:`head`, :meth:`op_version`, :meth:`links`, :meth:`_op_versions`
    and :meth:`_journal`; the public listings check their arguments first.
    """

    @abc.abstractmethod
    def head(self) -> Position:
        """A token of the state this view reads: equal tokens mean no commit in between."""

    @abc.abstractmethod
    def op_version(self, op_name: str, version: str) -> OpVersionRecord | None:
        """The record of ``version`` of ``op_name`` (same subversions, any creation time), or ``None``."""

    @abc.abstractmethod
    def links(self, downstream_op: str, downstream_version: str) -> list[LinkRecord]:
        """The links into ``downstream_op`` at ``downstream_version``, in the order first recorded."""

    def op_versions(
        self,
        op_name: str,
        *,
        compatible_with: str | None = None,
        policy: str = "major",
        limit: int | None = None,
        before: str | None = None,
    ) -> list[OpVersionRecord]:
        """Versions of ``op_name``, newest first.

        :param compatible_with: a ``code_version``: only versions whose code ``policy`` accepts
            for it (same :func:`~chariots_core.op_store.records.code_key`).
        :param policy: ``"major"``, ``"minor"`` or ``"exact"`` (used with ``compatible_with``).
        :param limit: at most that many (``None``: all).
        :param before: a version this listing gave: start after it.
        :raises NotSavedError: if ``before`` is not in this listing.
        :raises ConfigError: if ``policy`` or ``limit`` is not valid.
        """
        code = None if compatible_with is None else code_key(compatible_with, policy)
        return self._op_versions(op_name, code, policy, check_limit(limit), before)

    def journal(
        self, record_type: type[_Record], name: str, *, limit: int | None = None, before: Position | None = None
    ) -> list[JournalEntry[_Record]]:
        """The ``record_type`` journal of ``name``, newest first (see ``JournalAppend``).

        :param before: a position this listing gave: start after it.
        :raises NotSavedError: if ``before`` is not in this listing.
        :raises StoreError: if ``record_type`` has no ``JOURNAL`` name.
        """
        return self._journal(record_type, journal_kind(record_type), name, check_limit(limit), before)

    @abc.abstractmethod
    def _op_versions(
        self, op_name: str, code: str | None, policy: str, limit: int | None, before: str | None
    ) -> list[OpVersionRecord]:
        """:meth:`op_versions`, where ``code`` is the code key under ``policy`` a version must have (``None``: any)."""

    @abc.abstractmethod
    def _journal(
        self, record_type: type[_Record], kind: str, name: str, limit: int | None, before: Position | None
    ) -> list[JournalEntry[_Record]]:
        """:meth:`journal` of the journal ``kind`` (the record type's ``JOURNAL``)."""


# Per thread, how many views of each store (by id) it holds: a commit checks it is not inside one.
_views_held = threading.local()


def _read_once(read: Callable[..., _Result]) -> Callable[..., _Result]:
    """A store method that calls the view method ``read`` through a view of its own."""

    @functools.wraps(read)
    def read_once(store: OpStore, *args: Any, **kwargs: Any) -> _Result:
        with store.reader() as view:
            return getattr(view, read.__name__)(*args, **kwargs)

    read_once.__isabstractmethod__ = False  # type: ignore[attr-defined]  # wraps() copied the view's flag
    return read_once


class OpStore(abc.ABC):
    """Where op versions, links and journals are recorded (see the module docstring).

    A backend implements :meth:`_view`, :meth:`_commit` and :meth:`close`; the public
    methods add the rules every backend shares. The read methods of :class:`OpStoreView` are
    methods of the store too, each reading through a view of its own (one-off reads: use
    :meth:`reader` to read several things from one state).
    """

    @abc.abstractmethod
    def _view(self) -> AbstractContextManager[OpStoreView]:
        """A view of the latest committed state, released when the ``with`` block ends."""

    @abc.abstractmethod
    def _commit(self, commit: Commit) -> Position:
        """Write ``commit`` all or nothing; return the new head."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store's resources (using it again reopens them)."""

    def _recent_view(self) -> AbstractContextManager[OpStoreView]:
        """A view for ``reader(latest=False)``: by default the latest committed state, as :meth:`_view`."""
        return self._view()

    @contextmanager
    def reader(self, *, latest: bool = True) -> Iterator[OpStoreView]:
        """``with store.reader() as view:`` reads one committed state, however many commits land meanwhile.

        :param latest: ``False`` lets the view be of the newest state this store object has
            committed or read rather than the latest one, where learning the latest costs a round
            trip (object storage; LMDB and memory always read the latest). For reads that a
            commit landing just after the view would make stale anyway: what a save checks
            before it commits.
        """
        held = _views_held.__dict__.setdefault("counts", {})
        held[id(self)] = held.get(id(self), 0) + 1
        try:
            with self._view() if latest else self._recent_view() as view:
                yield view
        finally:
            held[id(self)] -= 1

    def commit(self, commit: Commit) -> Position:
        """Write every record of ``commit``, all or nothing, and return the store's new head.

        :raises StoreError: if this thread holds a view of this store, or the store cannot write.
        """
        if getattr(_views_held, "counts", {}).get(id(self)):
            msg = (
                f"{self!r}: this thread commits while it holds a view of the same store (an open "
                "'with store.reader()' block); leave the block first, the view would not see the commit"
            )
            raise StoreError(msg)
        return self._commit(commit)

    # -- garbage collection hooks (see chariots_core.op_store.garbage) ------------------------
    def referenced_blobs(self) -> Iterator[str]:
        """Every saver path that a committed record of this store names (each op version's
        ``blob_path``; whatever else a backend records), read from one committed state.

        Garbage collection keeps these blobs and removes unreferenced ones, so a backend must
        list every one: a path left out is data lost. This default cannot list anything and
        refuses, which makes garbage collection refuse too.

        :raises StoreError: if the backend cannot list them.
        """
        msg = (
            f"{self!r} cannot list the blobs its records reference, so garbage collection cannot "
            "tell its blobs from debris and removes nothing; the backend must implement "
            "OpStore.referenced_blobs()"
        )
        raise StoreError(msg)

    def collect_debris(self, older_than: float, *, dry_run: bool = False) -> list[str]:
        """Remove what this store's own interrupted writes left behind (records of a commit that
        never completed...) older than ``older_than`` seconds; return what was (with
        ``dry_run``: would be) removed, as names for a report.

        This default has nothing to remove: stores whose commits are atomic (LMDB, memory)
        leave no debris.
        """
        return []

    head = _read_once(OpStoreView.head)
    op_version = _read_once(OpStoreView.op_version)
    op_versions = _read_once(OpStoreView.op_versions)
    links = _read_once(OpStoreView.links)
    journal = _read_once(OpStoreView.journal)


class JobStore(abc.ABC):
    """Where the records of asynchronous jobs are kept (the app's ``job_store``).

    Jobs are listed newest first, in the order they were created (their first :meth:`put_job`).
    Safe to use from several threads.
    """

    @abc.abstractmethod
    def put_job(self, job: JobRecord) -> None:
        """Create or replace the record of ``job.job_id`` (replacing keeps its place in the listing)."""

    @abc.abstractmethod
    def get_job(self, job_id: str) -> JobRecord | None:
        """The record of ``job_id``, or ``None``."""

    @abc.abstractmethod
    def jobs(self, *, limit: int | None = None, before: str | None = None) -> list[JobRecord]:
        """Job records, newest first.

        :param before: a job id this listing gave: start after it.
        :raises NotSavedError: if ``before`` is not a job of this store.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store's resources (using it again reopens them)."""


def check_listed(record: OpVersionRecord | None, op_name: str, before: str, code: str | None, policy: str) -> None:
    """Raise :class:`NotSavedError` unless ``record``, that of version ``before``, is in the
    listing of ``op_name``'s versions whose code key under ``policy`` is ``code`` (``None``: all)."""
    if record is None:
        raise NotSavedError(f"op {op_name!r} has no saved version {before!r} to list versions before")
    if code is not None and code_key(record.code_version, policy) != code:
        msg = (
            f"version {before!r} of op {op_name!r} is not in this listing (its code does not match); "
            "pass as 'before' a version that an earlier page of the same listing gave"
        )
        raise NotSavedError(msg)


class MemoryOpStore(OpStore, JobStore):
    """An op store and job store held in memory: for tests and apps that need no persistence.

    The reference implementation: a view holds the store's lock for its ``with`` block, so it
    reads one state; every listing is worked out from the whole history.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._positions = itertools.count(1)
        self._head: Position = 0
        # op name -> version key -> (position, record), oldest first: a re-saved version moves last.
        self._versions: dict[str, dict[str, tuple[int, OpVersionRecord]]] = {}
        self._links: dict[tuple[str, str], dict[LinkRecord, None]] = {}
        self._journals: dict[tuple[str, str], list[JournalEntry]] = {}
        self._jobs: dict[str, JobRecord] = {}  # in creation order

    # -- OpStore ------------------------------------------------------------------------------
    @contextmanager
    def _view(self) -> Iterator[OpStoreView]:
        with self._lock:
            view = _MemoryView(self)
            try:
                yield view
            finally:
                view.open = False

    def _commit(self, commit: Commit) -> Position:
        with self._lock:
            for record in commit.ops:
                versions = self._versions.setdefault(record.op_name, {})
                key = version_key(record.version)
                versions.pop(key, None)  # re-saving moves a version to the newest
                versions[key] = (next(self._positions), record)
            for link in commit.links:
                self._links.setdefault((link.downstream_op, version_key(link.downstream_version)), {})[link] = None
            for append in commit.journal:
                entries = self._journals.setdefault((append.kind, append.name), [])
                entries.append(JournalEntry(next(self._positions), append.record))
            self._head = next(self._positions)
            return self._head

    # -- JobStore -----------------------------------------------------------------------------
    def put_job(self, job: JobRecord) -> None:
        with self._lock:
            self._jobs[job.job_id] = job

    def get_job(self, job_id: str) -> JobRecord | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self, *, limit: int | None = None, before: str | None = None) -> list[JobRecord]:
        with self._lock:
            newest_first = list(reversed(self._jobs.values()))
        return page(newest_first, lambda job: job.job_id, limit, before, "the jobs of this MemoryOpStore")

    def referenced_blobs(self) -> Iterator[str]:
        with self._lock:
            paths = [record.blob_path for versions in self._versions.values() for _, record in versions.values()]
        return iter(paths)

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"<MemoryOpStore with {len(self._versions)} ops>"


class _MemoryView(OpStoreView):
    """Reads a :class:`MemoryOpStore` while its lock is held."""

    def __init__(self, store: MemoryOpStore) -> None:
        self.store = store
        self.open = True

    def _state(self) -> MemoryOpStore:
        if not self.open:
            raise StoreError("this view of a MemoryOpStore was used after its 'with store.reader()' block ended")
        return self.store

    def head(self) -> Position:
        return self._state()._head

    def op_version(self, op_name: str, version: str) -> OpVersionRecord | None:
        found = self._state()._versions.get(op_name, {}).get(version_key(version))
        return None if found is None else found[1]

    def _op_versions(
        self, op_name: str, code: str | None, policy: str, limit: int | None, before: str | None
    ) -> list[OpVersionRecord]:
        records = [record for _, record in reversed(self._state()._versions.get(op_name, {}).values())]
        if code is not None:
            records = [record for record in records if code_key(record.code_version, policy) == code]
        if before is not None:
            check_listed(self.op_version(op_name, before), op_name, before, code, policy)
        listing = f"the versions of op {op_name!r}"
        return page(records, lambda record: version_key(record.version), limit, _key(before), listing)

    def links(self, downstream_op: str, downstream_version: str) -> list[LinkRecord]:
        return list(self._state()._links.get((downstream_op, version_key(downstream_version)), {}))

    def _journal(
        self, record_type: type[_Record], kind: str, name: str, limit: int | None, before: Position | None
    ) -> list[JournalEntry[_Record]]:
        entries = self._state()._journals.get((kind, name), [])
        return page(entries[::-1], lambda entry: entry.position, limit, before, f"the {kind} journal of {name!r}")


def _key(version: str | None) -> str | None:
    return None if version is None else version_key(version)
