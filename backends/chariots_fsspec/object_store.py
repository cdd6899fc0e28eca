"""An op store kept in object storage (``s3://``, ``gs://``, ``memory://``), shared by machines.

Object stores have no transactions and no locks; what they offer is that one request writes one
whole object, that a read sees every write that returned before it, and *create-if-absent*
(S3 ``If-None-Match: *``, GCS ``ifGenerationMatch=0``): of several writers creating one name,
exactly one succeeds. This store is built on those three alone, with no coordinating server.

**Layout** (format 2) under ``<url>/meta/``, every object sealed with its sha256
(:mod:`._object_log`)::

    log/<N, 20 digits>          commit N: its records and the nodes of the state after it
    head                        a hint: a recent N (rewritten by every 16th commit)
    jobs/_<job id>              a job's record and when it was created (replaced on each change)
    job-order/<stamp>_<job id>  empty: lists the jobs in the order they were created

(names are URL-quoted behind a ``_``, so ``""``, ``"."`` or ``"a/b"`` stay one segment).

**Committing.** A commit reads the newest entry ``N`` it knows, builds entry ``N + 1`` — its
records, and the state after it as a persistent map and chains (:mod:`._object_state`), sharing
every unchanged node with entry ``N`` — and creates ``log/N+1`` if absent. If another writer
took ``N + 1`` first, it reads the entries it missed and builds again on the newest. The entry
is the commit: written whole or not at all, in one request.

**Consistency.** Each ``N`` is taken by one commit, and a writer asks for ``N + 1`` only after
reading ``N``, so the log is a dense total order of the commits, agreed by the bucket (not by
the writers' clocks: ``saved_at`` is informational). A view is the state of the newest entry
found when it opens: everything it answers is reached from that entry's root through nodes and
records of entries up to it, which never change, so a view reads "commits up to ``N``, never a
mix", and commits landing meanwhile cannot touch it. A view opened after a commit returned
finds that commit or a later one (the bucket's reads see finished writes), so apps in several
processes see each other's saves. A killed writer leaves either no entry or a whole one.

**Cost.** Saving and loading touch O(1) objects per op, whatever the history: a view finds the
newest entry with one request when nothing landed since this store last looked (``GET`` of the
next number: 404), two when one commit landed; the map and chains are about log16 and log32 of
the history deep, and their nodes are read from entries already held in memory (entries are
immutable: :class:`._object_log.ObjectLog` keeps recent ones). A commit is one ``PUT``. So one
``save_pipeline`` costs two requests to the store (the view that checks which versions are
stored, the commit) and one ``load_pipeline`` one (its view), besides the saver's blob requests.
Listings page newest first; a page costs O(page + depth) node reads.

**Damage.** Every object carries its sha256 and every record is checked against where the state
files it: a damaged or foreign object, or one referred to and missing, raises
:class:`~chariots_core.errors.IntegrityError` naming it and the store, never a shorter answer.
Deleting the newest entries rolls the store back to an older state (nothing refers to them).

**Debris.** A save that never committed wrote no record (its entry is one object); only its
blobs may remain, for the saver's garbage collection (:meth:`ObjectOpStore.referenced_blobs`
says what is in use). A job whose creation was interrupted may leave a ``job-order`` marker
without a record: :meth:`ObjectOpStore.collect_debris` removes those.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import posixpath
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import quote, unquote

import fsspec

from chariots_core.errors import BackendError, ChariotsError, IntegrityError, NotSavedError, StoreError
from chariots_core.op_store.records import (
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
)
from chariots_core.op_store.store import JobStore, OpStore, OpStoreView, check_listed

from ._object_log import HINT_EVERY, ObjectLog, seal, unseal
from ._object_state import Building, State, chain_key, code_chain_key, journal_key
from ._object_trees import chain_contains, chain_walk, items

__all__ = ["ObjectOpStore", "DEFAULT_CACHE_BYTES"]

DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
_Record = TypeVar("_Record")
_logger = logging.getLogger(__name__)
# Schemes that name an fsspec filesystem differently from the op-store registry.
_SCHEME_ALIASES = {"memory-objects": "memory"}
# Filesystems whose create-if-absent is atomic. fsspec's memory filesystem checks, then writes:
# it lives in one process, so a lock held around the two makes it atomic.
_ATOMIC_CREATE = frozenset({"s3", "s3a", "gs", "gcs"})
_memory_create_lock = threading.Lock()
_STAMP_WIDTH = 53  # _unique_name(): 20 digits, "-", 32 hex digits


_last_stamp = 0
_stamp_lock = threading.Lock()


def _unique_name() -> str:
    """A name that sorts by creation time (in this process: strictly) and no other writer makes."""
    global _last_stamp
    with _stamp_lock:
        _last_stamp = max(time.time_ns(), _last_stamp + 1)
        stamp = _last_stamp
    return f"{stamp:020d}-{uuid.uuid4().hex}"


def _segment(name: str) -> str:
    """A job id as one safe, non-empty object-name segment."""
    return "_" + quote(str(name), safe="")


class ObjectOpStore(OpStore, JobStore):
    """An op store and job store kept in an fsspec filesystem with atomic create-if-absent.

    :param url: where the store lives, e.g. ``s3://bucket/prefix``, ``gs://bucket/prefix`` or
        ``memory://prefix`` (``memory-objects://prefix`` is the same in-memory filesystem).
        Records go under ``<url>/meta/``; keep the blobs beside them (``<url>/blobs``), as
        ``Chariots(path=url)`` does.
    :param cache_bytes: about how much memory the log entries read (immutable) may keep.
    :param storage_options: passed to the fsspec filesystem (``endpoint_url``, ``key``,
        ``secret``, ``token``, ``project``...).
    :raises BackendError: if the filesystem's package (``s3fs``, ``gcsfs``) is missing.
    :raises StoreError: if the URL is not one fsspec knows, or its filesystem cannot create
        objects atomically.
    """

    def __init__(self, url: str, cache_bytes: int = DEFAULT_CACHE_BYTES, **storage_options: Any) -> None:
        self.url = str(url).rstrip("/")
        self.cache_bytes = cache_bytes
        self._options = dict(storage_options)  # as given: what a pickled copy reopens with
        scheme, sep, rest = self.url.partition("://")
        fs_url = f"{_SCHEME_ALIASES.get(scheme, scheme)}{sep}{rest}"
        # Nothing may come from fsspec's listing cache: the newest entry is what the bucket holds now.
        storage_options.setdefault("use_listings_cache", False)
        if scheme in ("s3", "s3a"):
            # Entries are small: read each with one GET, not a HEAD (for its size) and then GETs.
            storage_options.setdefault("max_concurrency", 1)
        try:
            self._fs, root = fsspec.core.url_to_fs(fs_url, **storage_options)
        except ImportError as exc:
            extra = {"s3": "dask", "gs": "gcs", "gcs": "gcs"}.get(scheme, "fsspec")
            msg = f"the object op store at {self.url!r} needs {exc.name or 'a filesystem package'}; pip install 'chariots[{extra}]'"
            raise BackendError(msg) from exc
        except ValueError as exc:
            msg = f"{self.url!r} is not a URL fsspec knows ({exc}); use s3://bucket/prefix, gs://bucket/prefix or memory://prefix"
            raise StoreError(msg) from exc
        protocols = set(self._fs.protocol if isinstance(self._fs.protocol, tuple) else (self._fs.protocol,))
        in_memory = "memory" in protocols
        if not in_memory and not protocols & _ATOMIC_CREATE:
            msg = (
                f"the object op store at {self.url!r} needs a filesystem that creates an object only if "
                f"it is absent, atomically ({', '.join(sorted(_ATOMIC_CREATE))}: S3 and Google Cloud "
                "Storage), so that concurrent commits cannot overwrite each other; for a local "
                "directory use the LMDB store (Chariots(path='/a/directory'))"
            )
            raise StoreError(msg)
        self._meta = f"{root.rstrip('/')}/meta"
        exclusive: Callable[[], Any] = (lambda: _memory_create_lock) if in_memory else contextlib.nullcontext
        self._log = ObjectLog(self._fs, self._meta, repr(self), self._translating, exclusive, cache_bytes)
        self._lock = threading.Lock()
        self._known: int | None = None  # the newest entry this store has seen (None: not looked yet)
        self._job_created: dict[str, str] = {}  # job id -> creation stamp, for the jobs seen here

    # -- OpStore ------------------------------------------------------------------------------
    def _view(self) -> contextlib.AbstractContextManager[OpStoreView]:
        return self._view_of(self._newest())

    def _recent_view(self) -> contextlib.AbstractContextManager[OpStoreView]:
        """The newest state this store has seen: no request (unless it has seen none yet)."""
        with self._lock:
            known = self._known
        return self._view_of(self._newest() if known is None else known)

    @contextlib.contextmanager
    def _view_of(self, seq: int) -> Iterator[OpStoreView]:
        view = _ObjectView(State(self._log, seq))
        try:
            yield view
        finally:
            view.closed = True

    def _commit(self, commit: Commit) -> Position:
        """Create the entry after the newest one; on a lost race, rebuild on the new newest."""
        commit_id = uuid.uuid4().hex
        with self._lock:
            base = self._known
        if base is None:
            base = self._newest()
        while True:
            building = Building(State(self._log, base))
            building.apply(commit)
            if self._log.create(building.seq, building.sealed(commit_id), commit_id):
                break
            base = self._newest()  # another writer took building.seq: read on from there
        self._learn(building.seq)
        if building.seq % HINT_EVERY == 0:
            try:
                self._log.write_hint(building.seq)
            except StoreError as exc:  # only a hint: the commit stands, readers find it without
                _logger.warning("%s: could not update the head hint: %s", self, exc)
        return building.seq

    def _newest(self) -> int:
        with self._lock:
            known = self._known
        return self._learn(self._log.newest(known))

    def _learn(self, seq: int) -> int:
        with self._lock:
            self._known = seq if self._known is None else max(self._known, seq)
        return seq

    # -- JobStore -----------------------------------------------------------------------------
    def put_job(self, job: JobRecord) -> None:
        """Create or replace the record of ``job.job_id`` (one request for a job this store
        wrote or read before, else up to three)."""
        with self._lock:
            created = self._job_created.get(job.job_id)
        if created is None:
            found = self._read_job(job.job_id)
            if found is not None:
                created = found[0]
            else:
                created = _unique_name()
                # The marker first: a job whose record exists is always listed.
                self._put(f"{self._meta}/job-order/{created}{_segment(job.job_id)}", b"")
        self._put(self._job_path(job.job_id), seal("chariots-job", {"created": created, "job": to_plain(job)}))
        with self._lock:
            self._job_created[job.job_id] = created

    def get_job(self, job_id: str) -> JobRecord | None:
        """The record of ``job_id``, or ``None``."""
        found = self._read_job(job_id)
        return None if found is None else found[1]

    def jobs(self, *, limit: int | None = None, before: str | None = None) -> list[JobRecord]:
        """Job records, newest created first (see :class:`~chariots_core.op_store.store.JobStore`).

        Lists the creation markers (one request per 1,000 jobs), then reads the page's records.
        """
        check_limit(limit)
        order = self._job_order()
        if before is not None:
            if before not in order:
                raise NotSavedError(f"{self!r} has no job {before!r} to list jobs before")
            order = order[order.index(before) + 1 :]
        found: list[JobRecord] = []
        chunk = max(limit or 0, 64)
        for start in range(0, len(order), chunk):
            wanted = order[start : start + chunk]
            records = self._read_jobs(wanted)
            # A marker without a record: a job being created right now, or debris of one.
            found += [records[job_id] for job_id in wanted if job_id in records]
            if limit is not None and len(found) >= limit:
                return found[:limit]
        return found

    # -- garbage collection ---------------------------------------------------------------------
    def referenced_blobs(self) -> Iterator[str]:
        """The saver paths the store refers to: the blob of every op version it lists, and the
        result of every job."""
        with self.reader() as view:
            state = view.state
            for map_key, value in items(state, state.root):
                kind, op_name, *_ = json.loads(map_key)
                if kind == "v" and value["p"] is not None:
                    yield state.op_record(value["p"], op_name).blob_path
        for job in self._read_jobs(self._job_order()).values():
            if job.result_path is not None:
                yield job.result_path

    def collect_debris(self, older_than: float) -> list[str]:
        """Remove the creation markers of jobs whose record was never written, made more than
        ``older_than`` seconds ago; return their paths below the store's URL.

        Commits leave no debris: a commit is one object, written whole or not at all.
        """
        cutoff = time.time_ns() - int(older_than * 1e9)
        records = self._read_jobs(self._job_order())
        removed = []
        for marker in self._list(f"{self._meta}/job-order"):
            name = posixpath.basename(marker)
            if unquote(name[_STAMP_WIDTH + 1 :]) not in records and int(name[:20]) < cutoff:
                with self._translating(f"delete {marker}"):
                    self._fs.rm_file(marker)
                removed.append(f"meta/job-order/{name}")
        return removed

    def close(self) -> None:
        """Forget the cached entries (the store reads them again if used). Idempotent."""
        self._log.forget()

    # -- pickling: another process reopens the same bucket ----------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "cache_bytes": self.cache_bytes, "storage_options": self._options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state["cache_bytes"], **state["storage_options"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"<ObjectOpStore at {self.url!r}>"

    # -- helpers -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _translating(self, action: str) -> Iterator[None]:
        """Turn the filesystem's errors (s3fs, gcsfs, botocore...) into a StoreError."""
        try:
            yield
        except ChariotsError:
            raise
        except Exception as exc:
            msg = (
                f"the object op store at {self.url!r} cannot {action}: {type(exc).__name__}: {exc}. "
                "Check that the bucket exists, that the credentials may read and write it, "
                "and the endpoint/storage options"
            )
            raise StoreError(msg) from exc

    def _put(self, path: str, data: bytes) -> None:
        with self._translating(f"write {path}"):
            self._fs.pipe_file(path, data)

    def _list(self, directory: str) -> list[str]:
        with self._translating(f"list {directory}"):
            try:
                return sorted(self._fs.ls(directory, detail=False))
            except FileNotFoundError:
                return []

    def _job_path(self, job_id: str) -> str:
        return f"{self._meta}/jobs/{_segment(job_id)}"

    def _job_order(self) -> list[str]:
        """Job ids, newest created first (a job listed twice counts where it was first)."""
        first: dict[str, None] = {}
        for marker in self._list(f"{self._meta}/job-order"):
            first.setdefault(unquote(posixpath.basename(marker)[_STAMP_WIDTH + 1 :]), None)
        return list(reversed(first))

    def _read_job(self, job_id: str) -> tuple[str, JobRecord] | None:
        """``(creation stamp, record)`` of ``job_id``, or ``None``."""
        path = self._job_path(job_id)
        with self._translating(f"read {path}"):
            try:
                data = self._fs.cat_file(path)
            except FileNotFoundError:
                return None
        return self._decode_job(path, data, job_id)

    def _read_jobs(self, job_ids: list[str]) -> dict[str, JobRecord]:
        """The records of those of ``job_ids`` that have one."""
        paths = {self._fs._strip_protocol(self._job_path(job_id)): job_id for job_id in job_ids}
        if not paths:
            return {}
        with self._translating(f"read the records of {len(paths)} jobs"):
            datas = self._fs.cat(list(paths), on_error="return")
        found = {}
        for path, data in datas.items():
            if isinstance(data, FileNotFoundError):
                continue
            if isinstance(data, BaseException):
                with self._translating(f"read {path}"):
                    raise data
            found[paths[path]] = self._decode_job(path, data, paths[path])[1]
        return found

    def _decode_job(self, path: str, data: bytes, job_id: str) -> tuple[str, JobRecord]:
        where = f"the job record {path!r} of {self!r}"
        body = unseal("chariots-job", data, where)
        try:
            created, job = body["created"], from_plain(body["job"], JobRecord)
        except (TypeError, ValueError, KeyError) as exc:
            raise IntegrityError(f"{where} is not a job record ({exc}): it was not written by Chariots") from exc
        if job.job_id != job_id:
            raise IntegrityError(f"{where} holds job {job.job_id!r}: the store is damaged, restore it from a backup")
        with self._lock:
            self._job_created.setdefault(job_id, created)
        return created, job


class _ObjectView(OpStoreView):
    """Reads of the state after one log entry."""

    def __init__(self, state: State) -> None:
        self._open_state = state
        self.closed = False

    @property
    def state(self) -> State:
        if self.closed:
            raise StoreError(f"a view of {self._open_state.log.store} was used after its 'with store.reader()' block ended")
        return self._open_state

    def head(self) -> Position:
        return self.state.seq

    def op_version(self, op_name: str, version: str) -> OpVersionRecord | None:
        indexed = self.state.version_entry(op_name, version)
        if indexed is None or indexed["p"] is None:
            return None
        return self.state.op_record(indexed["p"], op_name, version)

    def _op_versions(
        self, op_name: str, code: str | None, policy: str, limit: int | None, before: str | None
    ) -> list[OpVersionRecord]:
        state = self.state
        start = None
        if before is not None:
            record = self.op_version(op_name, before)
            check_listed(record, op_name, before, code, policy)
            start = state.version_entry(op_name, before)["p"]  # type: ignore[index]
        chain = state.chain(chain_key(op_name) if code is None else code_chain_key(op_name, policy, code))
        records = state.op_records(list(itertools.islice(chain_walk(state, chain, start), limit)), op_name)
        for record in records if code is not None else ():
            if code_key(record.code_version, policy) != code:
                msg = f"the {policy} listing of op {op_name!r} for code {code!r} holds version {record.version!r} of other code"
                raise IntegrityError(f"{state.log.where(state.seq)}: {msg}; the store is damaged, restore it from a backup")
        return records

    def links(self, downstream_op: str, downstream_version: str) -> list[LinkRecord]:
        return self.state.links(downstream_op, downstream_version)

    def _journal(
        self, record_type: type[_Record], kind: str, name: str, limit: int | None, before: Position | None
    ) -> list[JournalEntry[_Record]]:
        state = self.state
        chain = state.chain(journal_key(kind, name))
        if before is not None and (
            not isinstance(before, int) or isinstance(before, bool) or not chain_contains(state, chain, before)
        ):
            msg = f"{before!r} is not a position of the {kind} journal of {name!r}: pass as 'before' what an earlier page of it listed"
            raise NotSavedError(msg)
        positions = list(itertools.islice(chain_walk(state, chain, before), limit))
        state.prefetch(positions)
        return [JournalEntry(position, state.journal_record(position, kind, name, record_type)) for position in positions]

