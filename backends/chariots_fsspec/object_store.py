"""An op store kept in object storage (``s3://``, ``gs://``, ``memory://``...), shared by machines.

Object stores have no transactions and no locks, so every metadata record is written once, as
its own immutable object, under a name no other writer can pick (a nanosecond timestamp and a
uuid). Concurrent writers on different machines therefore never overwrite each other, and no
coordinating server is needed. Under ``<url>/meta/``::

    ops/_<op>/<save id>.json         the OpVersionRecords of <op> written by one save
    links/_<downstream op>/<save id>.json  the LinkRecords into <op> written by one save
    journal/_<kind>/_<name>/<save id>.json the records one save appended to a journal
                                     (kind "snapshots": the SnapshotRecord of a pipeline)
    commits/<save id>.json           the commit marker: names the records of one save
    jobs/_<job id>/<stamp>-<uuid>.json     one JobRecord per state change; the newest wins

(names are URL-quoted behind a ``_``, so ``""``, ``"."`` or ``"a/b"`` stay one segment).

A save writes its records first and its commit marker last; readers ignore records whose
marker does not exist, so a save is seen whole or not at all (a crashed save leaves only
invisible records behind). A view lists the commit markers once when it opens and reads only
the records of those saves: one committed state, never a mix. Each listing a view needs is
read once per view (the simplest correct approach: a view costs one listing of every commit,
and a record listing per op, link and journal name it reads). The head token is the number of
commits and the newest one's id. "Latest" is always resolved by listing the bucket; a local
LMDB index caches the bytes of objects already read. Those objects never change, so the cache
can make a read faster but never wrong: what exists is decided by the listing, not the cache.

Ordering follows the writers' clocks (the timestamp in each name): keep machines on NTP.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, get_args
from urllib.parse import quote

import attrs
import cattrs
import fsspec

from chariots_core.errors import BackendError, ChariotsError, StoreError
from chariots_core.op_store.records import (
    Commit,
    JobRecord,
    JournalEntry,
    LinkRecord,
    OpVersionRecord,
    Position,
    code_key,
    from_json,
    page,
    to_json,
    version_key,
)
from chariots_core.op_store.store import JobStore, OpStore, OpStoreView, check_listed

__all__ = ["ObjectOpStore"]

_Record = TypeVar("_Record")
_SUFFIX = ".json"
# Schemes that name an fsspec filesystem differently from the op-store registry.
_SCHEME_ALIASES = {"memory-objects": "memory"}


@attrs.frozen
class CommitMarker:
    """The last object a save writes: its presence makes the save's records visible."""

    save_id: str
    records: tuple[str, ...]  # the keys (relative to ``meta/``) of the save's records


_last_stamp = 0
_stamp_lock = threading.Lock()


def _unique_name() -> str:
    """A name that sorts by creation time and that no other writer can produce.

    Within one process the stamps strictly increase (the clock may not have ticked between
    two writes), so this process's writes list in the order they were made.
    """
    global _last_stamp
    with _stamp_lock:
        _last_stamp = max(time.time_ns(), _last_stamp + 1)
        stamp = _last_stamp
    return f"{stamp:020d}-{uuid.uuid4().hex}"


def _segment(name: str) -> str:
    """An op, pipeline or job name as one safe, non-empty object-name segment."""
    return "_" + quote(str(name), safe="")


def _group(records: Iterable[_Record], attribute: str) -> dict[str, list[_Record]]:
    """``records`` by the value of ``attribute``, each group in the original order."""
    groups: dict[str, list[_Record]] = {}
    for record in records:
        groups.setdefault(getattr(record, attribute), []).append(record)
    return groups


def _describe(record_type: Any) -> str:
    """``OpVersionRecord`` or ``list of LinkRecord``: what a record object should hold."""
    args = get_args(record_type)
    return f"list of {args[0].__name__}" if args else record_type.__name__


def _basename_id(key: str) -> str:
    return posixpath.basename(key)[: -len(_SUFFIX)]


def _default_cache_dir(url: str) -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "chariots", "object-index", hashlib.sha256(url.encode()).hexdigest()[:16])


class _LocalIndex:
    """Bytes of immutable objects already fetched, in a local LMDB file.

    Keys are hashes of the objects' full paths (LMDB keys are short). Losing or clearing the
    index only means objects are fetched again, so writes are not synced to disk.
    """

    def __init__(self, path: str) -> None:
        try:
            import lmdb
        except ImportError as exc:
            msg = "ObjectOpStore keeps a local index in LMDB, which is not installed; pip install 'chariots[lmdb]'"
            raise BackendError(msg) from exc
        self._lmdb = lmdb
        self.path = path
        try:
            os.makedirs(path, exist_ok=True)
            self._env = lmdb.open(path, map_size=1 << 30, sync=False, metasync=False)
        except (OSError, lmdb.Error) as exc:
            msg = f"cannot open the local index of the object op store at {path!r} ({exc}); pass a writable cache_dir"
            raise StoreError(msg) from exc
        self._full = False

    @staticmethod
    def _key(path: str) -> bytes:
        return hashlib.blake2b(path.encode(), digest_size=24).digest()

    def get_many(self, paths: Iterable[str]) -> dict[str, bytes]:
        found = {}
        with self._env.begin(buffers=False) as txn:
            for path in paths:
                data = txn.get(self._key(path))
                if data is not None:
                    found[path] = data
        return found

    def put_many(self, objects: dict[str, bytes]) -> None:
        if self._full or not objects:
            return
        try:
            with self._env.begin(write=True) as txn:
                for path, data in objects.items():
                    txn.put(self._key(path), data)
        except self._lmdb.MapFullError:
            self._full = True  # a full cache only makes reads slower: stop filling it

    def forget(self, path: str) -> None:
        with self._env.begin(write=True) as txn:
            txn.delete(self._key(path))

    def close(self) -> None:
        self._env.close()


# LMDB must not open one environment twice in a process, nor use one across fork(): stores
# share one index per (process, directory), and a forked child opens its own.
_indexes: dict[tuple[int, str], list[Any]] = {}  # key -> [index, number of stores using it]
_indexes_lock = threading.Lock()


def _acquire_index(path: str) -> _LocalIndex:
    key = (os.getpid(), os.path.realpath(path))
    with _indexes_lock:
        entry = _indexes.get(key)
        if entry is None:
            entry = _indexes[key] = [_LocalIndex(path), 0]
        entry[1] += 1
        return entry[0]


def _release_index(path: str) -> None:
    key = (os.getpid(), os.path.realpath(path))
    with _indexes_lock:
        entry = _indexes.get(key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] <= 0:
                del _indexes[key]
                entry[0].close()


class ObjectOpStore(OpStore, JobStore):
    """An op store and job store whose records are immutable objects in an fsspec filesystem.

    :param url: where the store lives, e.g. ``s3://bucket/prefix``, ``gs://bucket/prefix`` or
        ``memory://prefix`` (``memory-objects://prefix`` is the same in-memory filesystem).
        Records go under ``<url>/meta/``; keep the blobs beside them (``<url>/blobs``), as
        ``Chariots(path=url)`` does.
    :param cache_dir: the local LMDB index (default: a directory per URL under
        ``$XDG_CACHE_HOME/chariots/object-index``).
    :param storage_options: passed to the fsspec filesystem (``endpoint_url``, ``key``,
        ``secret``, ``token``, ``project``...).
    :raises BackendError: if the filesystem's package (``s3fs``, ``gcsfs``) or ``lmdb`` is missing.
    """

    def __init__(self, url: str, cache_dir: str | os.PathLike | None = None, **storage_options: Any) -> None:
        self.url = str(url).rstrip("/")
        self._options = dict(storage_options)  # as given: what a pickled copy reopens with
        scheme, sep, rest = self.url.partition("://")
        fs_url = f"{_SCHEME_ALIASES.get(scheme, scheme)}{sep}{rest}"
        # Listings must never come from fsspec's own cache: "latest" is whatever the bucket holds now.
        storage_options.setdefault("use_listings_cache", False)
        if scheme in ("s3", "s3a"):
            # Records are tiny: read each with one GET, not a HEAD (for its size) and then GETs.
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
        self._meta = f"{root.rstrip('/')}/meta"
        self.cache_dir = os.fspath(cache_dir) if cache_dir is not None else _default_cache_dir(self.url)
        self._lock = threading.Lock()
        # (pid, index) this store acquired; opened now, so that a bad cache_dir fails here.
        self._held: tuple[int, _LocalIndex] | None = (os.getpid(), _acquire_index(self.cache_dir))

    # -- writes --------------------------------------------------------------------------
    def _commit(self, commit: Commit) -> Position:
        """Write the commit's records, then its marker: readers see all of it or none."""
        save_id = _unique_name()
        objects: dict[str, bytes] = {}
        for kind, records in (("ops", _group(commit.ops, "op_name")), ("links", _group(commit.links, "downstream_op"))):
            for name, group in records.items():
                objects[self._key(kind, name, save_id)] = to_json(group)
        for kind, appends in _group(commit.journal, "kind").items():
            for name, group in _group(appends, "name").items():
                objects[self._key(_journal_dir(kind), name, save_id)] = to_json([append.record for append in group])
        self._put(objects)
        relative = tuple(sorted(key[len(self._meta) + 1 :] for key in objects))
        marker = {self._key("commits", None, save_id): to_json(CommitMarker(save_id, relative))}
        self._put(marker)
        self._index.put_many({**objects, **marker})
        return self.head()

    def put_job(self, job: JobRecord) -> None:
        """Write a new version of the job's record (the newest one is the job's state)."""
        objects = {self._key("jobs", job.job_id, _unique_name()): to_json(job)}
        self._put(objects)
        self._index.put_many(objects)

    # -- reads ---------------------------------------------------------------------------
    @contextmanager
    def _view(self) -> Iterator[OpStoreView]:
        yield _ObjectView(self)

    def get_job(self, job_id: str) -> JobRecord | None:
        """The newest record of ``job_id``, or ``None``."""
        keys = self._list(self._dir("jobs", job_id))
        if not keys:
            return None
        return self._read(keys[-1:], JobRecord)[0]

    def jobs(self, *, limit: int | None = None, before: str | None = None) -> list[JobRecord]:
        """The newest record of every job, newest created first (see ``JobStore``)."""
        # Keys come sorted, so each job's first key is its first put and its last the newest.
        first: dict[str, str] = {}
        newest: dict[str, str] = {}
        for key in self._list(self._dir("jobs", None), recursive=True):
            job_dir = posixpath.dirname(key)
            first.setdefault(job_dir, key)
            newest[job_dir] = key
        newest_first = sorted(first, key=lambda job_dir: posixpath.basename(first[job_dir]), reverse=True)
        records = self._read([newest[job_dir] for job_dir in newest_first], JobRecord)
        return page(records, lambda job: job.job_id, limit, before, f"the jobs of {self!r}")

    def close(self) -> None:
        """Release the local index (the store reopens it if used again). Idempotent."""
        with self._lock:
            held, self._held = self._held, None
        # An index inherited through fork() belongs to the parent: leave it alone.
        if held is not None and held[0] == os.getpid():
            _release_index(self.cache_dir)

    # -- pickling: another process reopens the same bucket with its own index -----------------
    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "cache_dir": self.cache_dir, "storage_options": self._options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state["cache_dir"], **state["storage_options"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"<ObjectOpStore at {self.url!r}>"

    @property
    def _index(self) -> _LocalIndex:
        """This process's handle on the local index, opened on first use."""
        pid = os.getpid()
        with self._lock:
            if self._held is None or self._held[0] != pid:
                self._held = (pid, _acquire_index(self.cache_dir))
            return self._held[1]

    # -- helpers -------------------------------------------------------------------------
    def _dir(self, kind: str, name: str | None) -> str:
        return f"{self._meta}/{kind}" if name is None else f"{self._meta}/{kind}/{_segment(name)}"

    def _key(self, kind: str, name: str | None, object_id: str) -> str:
        return f"{self._dir(kind, name)}/{object_id}{_SUFFIX}"

    @contextmanager
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

    def _put(self, objects: dict[str, bytes]) -> None:
        with self._translating(f"write {', '.join(sorted(objects))}"):
            self._fs.pipe(objects)

    def _list(self, directory: str, recursive: bool = False) -> list[str]:
        """The record objects below ``directory``, sorted by name (that is, by creation time)."""
        with self._translating(f"list {directory}"):
            try:
                found = self._fs.find(directory) if recursive else self._fs.ls(directory, detail=False)
            except FileNotFoundError:
                return []
        return sorted(key for key in found if key.endswith(_SUFFIX))

    def _fetch(self, keys: list[str]) -> dict[str, bytes]:
        """The objects' bytes: from the local index, else from the bucket (then indexed)."""
        found = self._index.get_many(keys)
        missing = [key for key in keys if key not in found]
        if missing:
            with self._translating(f"read {', '.join(missing)}"):
                fetched = {key: self._fs.cat_file(key) for key in missing} if len(missing) == 1 else self._fs.cat(missing)
            self._index.put_many(fetched)
            found.update(fetched)
        return found

    def _read(self, keys: list[str], record_type: type[_Record]) -> list[_Record]:
        """Decode the objects at ``keys``; a damaged index entry is dropped and re-fetched."""
        data = self._fetch(keys)
        records = []
        for key in keys:
            try:
                records.append(from_json(data[key], record_type))
            except (ValueError, cattrs.BaseValidationError, TypeError):
                self._index.forget(key)
                records.append(self._decode_fresh(key, record_type))
        return records

    def _decode_fresh(self, key: str, record_type: type[_Record]) -> _Record:
        with self._translating(f"read {key}"):
            data = self._fs.cat_file(key)
        try:
            record = from_json(data, record_type)
        except (ValueError, cattrs.BaseValidationError, TypeError) as exc:
            msg = (
                f"the record {key!r} of the object op store at {self.url!r} is not a valid "
                f"{_describe(record_type)} ({exc}); it was damaged or not written "
                "by Chariots. Delete that object to ignore it"
            )
            raise StoreError(msg) from exc
        self._index.put_many({key: data})
        return record

    def _committed(self, kind: str, name: str, record_type: Any, committed: set[str]) -> list[tuple[str, Any]]:
        """(save id, records) of ``kind``/``name`` written by the ``committed`` saves, oldest first."""
        keys = [key for key in self._list(self._dir(kind, name)) if _basename_id(key) in committed]
        return list(zip(map(_basename_id, keys), self._read(keys, record_type)))

    def _commit_ids(self) -> list[str]:
        """The ids of every committed save, oldest first."""
        return [_basename_id(key) for key in self._list(self._dir("commits", None))]


def _journal_dir(kind: str) -> str:
    return f"journal/{_segment(kind)}"


class _ObjectView(OpStoreView):
    """The saves committed when the view opened; each listing it needs is read once."""

    def __init__(self, store: ObjectOpStore) -> None:
        self._store = store
        self._commits = store._commit_ids()
        self._committed = set(self._commits)
        self._listings: dict[tuple[str, str], list[tuple[str, Any]]] = {}

    def _records(self, kind: str, name: str, record_type: Any) -> list[tuple[str, Any]]:
        if (kind, name) not in self._listings:
            self._listings[kind, name] = self._store._committed(kind, name, record_type, self._committed)
        return self._listings[kind, name]

    def _versions(self, op_name: str) -> list[OpVersionRecord]:
        """Every version of ``op_name``, newest first (a re-saved version counts where it was last saved)."""
        latest: dict[str, OpVersionRecord] = {}
        for _, records in self._records("ops", op_name, list[OpVersionRecord]):
            for record in records:
                latest.pop(version_key(record.version), None)
                latest[version_key(record.version)] = record
        return list(reversed(latest.values()))

    def head(self) -> Position:
        return f"{len(self._commits)}:{self._commits[-1] if self._commits else ''}"

    def op_version(self, op_name: str, version: str) -> OpVersionRecord | None:
        wanted = version_key(version)
        return next((record for record in self._versions(op_name) if version_key(record.version) == wanted), None)

    def _op_versions(
        self, op_name: str, code: str | None, policy: str, limit: int | None, before: str | None
    ) -> list[OpVersionRecord]:
        records = self._versions(op_name)
        if code is not None:
            records = [record for record in records if code_key(record.code_version, policy) == code]
        if before is not None:
            check_listed(self.op_version(op_name, before), op_name, before, code, policy)
            before = version_key(before)
        listing = f"the versions of op {op_name!r}"
        return page(records, lambda record: version_key(record.version), limit, before, listing)

    def links(self, downstream_op: str, downstream_version: str) -> list[LinkRecord]:
        wanted = version_key(downstream_version)
        seen: dict[LinkRecord, None] = {}
        for _, links in self._records("links", downstream_op, list[LinkRecord]):
            seen.update(dict.fromkeys(link for link in links if version_key(link.downstream_version) == wanted))
        return list(seen)

    def _journal(
        self, record_type: type[_Record], kind: str, name: str, limit: int | None, before: Position | None
    ) -> list[JournalEntry[_Record]]:
        entries = [
            JournalEntry(f"{save_id}:{index}", record)
            for save_id, records in self._records(_journal_dir(kind), name, list[record_type])  # type: ignore[valid-type]
            for index, record in enumerate(records)
        ]
        return page(entries[::-1], lambda entry: entry.position, limit, before, f"the {kind} journal of {name!r}")
