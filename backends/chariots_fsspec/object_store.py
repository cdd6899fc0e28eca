"""An op store kept in object storage (``s3://``, ``gs://``, ``memory://``), shared by machines.

Object stores have no transactions and no locks; what they offer is that one request writes one
whole object, that a read sees every write that returned before it, and *create-if-absent*
(S3 ``If-None-Match: *``, GCS ``ifGenerationMatch=0``): of several writers creating one name,
exactly one succeeds. This store is built on those three alone, with no coordinating server.

**Layout** (format 2) under ``<url>/meta/``, every object sealed with its sha256
(:mod:`._object_bucket`)::

    log/<N, 20 digits>          commit N: its records and the nodes of the state after it
    head                        a hint: a recent N (rewritten by every 16th commit)
    jobs/_<job id>              a job's record and when it was created (replaced on each change)
    job-order/<stamp>_<job id>  empty: lists the jobs in the order they were created

(job ids are URL-quoted behind a ``_``: see :mod:`._object_jobs`).

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
processes see each other's saves. A killed writer leaves either no entry or a whole one. (Jobs
are listed in the order of their creation stamps, which do follow the clocks.)

**Cost.** Saving and loading touch O(1) objects per op, whatever the history: a view finds the
newest entry with one request when nothing landed since this store last looked (``GET`` of the
next number: 404), two when one commit landed; the map and chains are about log16 and log32 of
the history deep, and their nodes are read from entries already held in memory (entries are
immutable: :class:`._object_log.ObjectLog` keeps recent ones). A commit is one ``PUT``. So one
``load_pipeline`` costs the store one request (its view) and one ``save_pipeline`` one (its
commit: what it checks before is read from the state the store last saw,
``reader(latest=False)``; if another writer committed since, the commit finds its entry taken and
builds again on the newest), besides the saver's blob requests. A store that has seen nothing
yet starts from the head hint. Listings page newest first; a page costs O(page + depth) node reads.

**Where create-if-absent comes from.** s3fs's ``pipe_file(mode="create")`` sends
``If-None-Match: *`` (S3 refuses with 412 when the name is taken: ``FileExistsError``); gcsfs
sends ``ifGenerationMatch=0`` (marked experimental by gcsfs); fsspec's memory filesystem checks
and then writes, atomically under a lock here. Other filesystems are refused.

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
import threading
import uuid
from collections.abc import Iterator
from typing import Any, TypeVar

import fsspec

from chariots_core.errors import BackendError, NotSavedError, StoreError
from chariots_core.op_store.records import (
    Commit,
    JobRecord,
    JournalEntry,
    LinkRecord,
    OpVersionRecord,
    Position,
    code_key,
)
from chariots_core.op_store.store import JobStore, OpStore, OpStoreView, check_listed

from ._object_bucket import Bucket
from ._object_jobs import JobFiles
from ._object_log import HINT_EVERY, ObjectLog
from ._object_state import Building, State, chain_key, code_chain_key, journal_key
from ._object_trees import chain_contains, chain_walk, items

__all__ = ["DEFAULT_CACHE_BYTES", "ObjectOpStore"]

DEFAULT_CACHE_BYTES = 64 * 1024 * 1024
_Record = TypeVar("_Record")
_logger = logging.getLogger(__name__)
# Schemes that name an fsspec filesystem differently from the op-store registry.
_SCHEME_ALIASES = {"memory-objects": "memory"}


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
            fs, root = fsspec.core.url_to_fs(fs_url, **storage_options)
        except ImportError as exc:
            extra = {"s3": "dask", "gs": "gcs", "gcs": "gcs"}.get(scheme, "fsspec")
            msg = f"the object op store at {self.url!r} needs {exc.name or 'a filesystem package'}; pip install 'chariots[{extra}]'"
            raise BackendError(msg) from exc
        except ValueError as exc:
            msg = f"{self.url!r} is not a URL fsspec knows ({exc}); use s3://bucket/prefix, gs://bucket/prefix or memory://prefix"
            raise StoreError(msg) from exc
        meta = f"{root.rstrip('/')}/meta"
        self._bucket = bucket = Bucket(fs, self.url, reopen=lambda: fsspec.core.url_to_fs(fs_url, **storage_options)[0])
        self._log = ObjectLog(bucket, meta, cache_bytes)
        self._jobs = JobFiles(bucket, meta)
        self._lock = threading.Lock()
        self._known: int | None = None  # the newest entry this store has seen (None: not looked yet)

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
        self._jobs.put(job)

    def get_job(self, job_id: str) -> JobRecord | None:
        """The record of ``job_id``, or ``None``."""
        return self._jobs.get(job_id)

    def jobs(self, *, limit: int | None = None, before: str | None = None) -> list[JobRecord]:
        """Job records, newest created first (see :class:`~chariots_core.op_store.store.JobStore`):
        one request per 1,000 jobs to list them, then the page's records."""
        return self._jobs.page(limit, before)

    # -- garbage collection (the hooks of chariots_core.op_store.garbage) ----------------------
    def referenced_blobs(self) -> Iterator[str]:
        """The blob path of every op version the store lists, read from one committed state.

        (A version saved again names its new blob only; job results are the job store's.)
        """
        state = State(self._log, self._newest())
        versions = {}  # position -> op name, read in position order: entry after entry
        for map_key, value in items(state, state.root):
            kind, op_name, *_ = json.loads(map_key)
            if kind == "v" and value["p"] is not None:
                versions[value["p"]] = op_name
        for position, held in state.batches(sorted(versions)):
            yield state.op_record(position, versions[position], held=held).blob_path

    def collect_debris(self, older_than: float, *, dry_run: bool = False) -> list[str]:
        """Remove (unless ``dry_run``) the creation markers of jobs whose record was never
        written, made more than ``older_than`` seconds ago; return their paths below the URL.

        Commits leave no debris: a commit is one object, written whole or not at all.
        """
        return self._jobs.collect_debris(older_than, dry_run)

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


class _ObjectView(OpStoreView):
    """Reads of the state after one log entry."""

    def __init__(self, state: State) -> None:
        self._open_state = state
        self.closed = False

    @property
    def state(self) -> State:
        if self.closed:
            raise StoreError(
                f"a view of {self._open_state.log.store} was used after its 'with store.reader()' block ended"
            )
        return self._open_state

    def head(self) -> Position:
        return self.state.seq

    def op_version(self, op_name: str, version: str) -> OpVersionRecord | None:
        return self._indexed(op_name, version)[1]

    def _indexed(self, op_name: str, version: str) -> tuple[int | None, OpVersionRecord | None]:
        """The position and record of ``version`` of ``op_name`` (``None``s if it was never saved)."""
        indexed = self.state.version_entry(op_name, version)
        if indexed is None or indexed["p"] is None:
            return None, None
        return indexed["p"], self.state.op_record(indexed["p"], op_name, version)

    def _op_versions(
        self, op_name: str, code: str | None, policy: str, limit: int | None, before: str | None
    ) -> list[OpVersionRecord]:
        state = self.state
        start = None
        if before is not None:
            start, record = self._indexed(op_name, before)
            check_listed(record, op_name, before, code, policy)
        chain = state.chain(chain_key(op_name) if code is None else code_chain_key(op_name, policy, code))
        positions = list(itertools.islice(chain_walk(state, chain, start), limit))
        records = state.op_records(positions, op_name)
        for position, record in zip(positions, records, strict=True) if code is not None else ():
            if code_key(record.code_version, policy) != code:
                raise state.damaged(
                    position, f"the {policy} listing of op {op_name!r} for code {code!r} holds a version of other code"
                )
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
        return list(map(JournalEntry, positions, state.journal_records(positions, kind, name, record_type)))
