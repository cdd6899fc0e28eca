"""The object op store's log of entries, and its head hint.

**The log.** Entry ``N`` (``log/<N, 20 digits>``) is the ``N``-th commit: its records and the
nodes of the state after it (see :mod:`._object_trees`). Entries are written with
create-if-absent (:meth:`ObjectLog.create`; S3 ``If-None-Match: *``, GCS ``ifGenerationMatch=0``),
so the bucket lets exactly one writer have each number, and a writer asks for ``N + 1`` only
once it has read ``N``: the numbers are dense. An entry never changes once written, so it is
cached in memory by number (:class:`ObjectLog` keeps the most recently used, up to a memory budget).

**Finding the newest entry** (:meth:`ObjectLog.newest`) costs one request when the caller
already knows the newest one (``GET`` of the next number answers 404), two when one commit
landed since. A caller further behind jumps to the *head hint* (``head``, rewritten by every
:data:`HINT_EVERY`-th commit; only ever a lower bound) and then gallops: it probes 1, 2, 4...
entries further until one is missing, and bisects, using that the numbers are dense.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterable
from typing import Any

from chariots_core.errors import IntegrityError, StoreError

from ._object_bucket import Bucket, seal, unseal
from ._object_trees import split_ref

__all__ = ["HINT_EVERY", "Entry", "ObjectLog"]

HINT_EVERY = 16  # a commit whose number is a multiple of this rewrites the head hint
_LINEAR_PROBES = 2  # entries probed one by one before a caller behind looks at the hint
_CREATE_ATTEMPTS = 3  # tries of a create whose failure left no entry
_DECODED_SIZE = 3  # about how many bytes of memory an entry takes once parsed, per byte stored
_ENTRY_LISTS = ("ops", "links", "journal", "nodes")


class Entry:
    """One decoded log entry: the records of a commit and the nodes of the state after it."""

    def __init__(self, seq: int, body: Any, where: str) -> None:
        if (
            not isinstance(body, dict)
            or body.get("seq") != seq
            or not all(isinstance(body.get(name), list) for name in _ENTRY_LISTS)
        ):
            raise IntegrityError(
                f"{where} does not hold log entry {seq} (it holds {str(body)[:80]!r}); restore it from a backup"
            )
        self.seq, self.where = seq, where
        self.commit_id: str = body.get("commit", "")
        self.root: int | None = body.get("root")
        self.ops: list[Any] = body["ops"]
        self.links: list[Any] = body["links"]
        self.journal: list[Any] = body["journal"]
        self.nodes: list[Any] = body["nodes"]


class ObjectLog:
    """The log and head hint of one store, below ``directory`` of its bucket, with a cache of
    entries taking about ``cache_bytes`` of memory at most."""

    def __init__(self, bucket: Bucket, directory: str, cache_bytes: int) -> None:
        self.bucket, self.directory, self.store = bucket, directory, f"<ObjectOpStore at {bucket.url!r}>"
        self._cache: collections.OrderedDict[int, tuple[Entry, int]] = collections.OrderedDict()
        self._cached_bytes, self._cache_bytes = 0, cache_bytes
        self._lock = threading.Lock()

    # -- names -----------------------------------------------------------------------------
    def path(self, seq: int) -> str:
        return f"{self.directory}/log/{seq:020d}"

    @property
    def hint_path(self) -> str:
        return f"{self.directory}/head"

    def where(self, seq: int) -> str:
        return f"log entry {seq} ({self.path(seq)!r}) of {self.store}"

    def damaged_item(self, item: int, detail: str) -> IntegrityError:
        """The error for item ``item`` (a ref) whose content is not what the state says."""
        seq, index = split_ref(item)
        return IntegrityError(
            f"{self.where(seq)}, item {index}: {detail}; the store is damaged, restore it from a backup"
        )

    # -- reading ---------------------------------------------------------------------------
    def entry(self, seq: int) -> Entry:
        """Entry ``seq``, which the state being read says exists.

        :raises IntegrityError: if it is missing or damaged.
        """
        return self._cached(seq) or self.entries([seq])[seq]

    def entries(self, seqs: Iterable[int]) -> dict[int, Entry]:
        """The entries ``seqs``, which the state being read says exist; those not cached are
        read at once (concurrently where the filesystem can).

        :raises IntegrityError: if one is missing or damaged.
        """
        found = {seq: entry for seq in set(seqs) if (entry := self._cached(seq)) is not None}
        missing = {self.path(seq): seq for seq in set(seqs) if seq not in found}
        for path, data in self.bucket.get_many(list(missing)).items():
            seq = missing[path]
            if data is None:
                msg = f"{self.where(seq)} is missing, though the state read refers to it: the store is damaged, restore it from a backup"
                raise IntegrityError(msg)
            found[seq] = self._remember(seq, data)
        return found

    def probe(self, seq: int) -> Entry | None:
        """Entry ``seq`` if it exists (one ``GET`` unless cached), else ``None``."""
        cached = self._cached(seq)
        if cached is not None:
            return cached
        data = self.bucket.get(self.path(seq))
        return None if data is None else self._remember(seq, data)

    def exists(self, seq: int) -> bool:
        """Whether entry ``seq`` exists."""
        return self._cached(seq) is not None or self.bucket.exists(self.path(seq))

    def newest(self, known: int | None) -> int:
        """The number of the newest entry (0: none), given ``known``, one known to exist."""
        hinted = None
        if known is None:
            known = hinted = self.hint()
            if known == 0 and self.probe(1) is None and not self._listed():
                return 0
        seq = known
        for _ in range(_LINEAR_PROBES):
            if self.probe(seq + 1) is None:
                return seq
            seq += 1
        # Far behind: jump to the hint, then gallop and bisect (the numbers are dense).
        seq = max(seq, self.hint() if hinted is None else hinted)
        step, missing = 1, None
        while missing is None:
            if self.exists(seq + step):
                seq, step = seq + step, step * 2
            else:
                missing = seq + step
        while missing - seq > 1:
            middle = (seq + missing) // 2
            seq, missing = (middle, missing) if self.exists(middle) else (seq, middle)
        return seq

    def hint(self) -> int:
        """The entry number the head hint names (0 if there is no hint)."""
        data = self.bucket.get(self.hint_path)
        if data is None:
            return 0
        where = f"the head hint {self.hint_path!r} of {self.store}"
        body = unseal("chariots-head", data, where)
        seq = body.get("seq") if isinstance(body, dict) else None
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise IntegrityError(
                f"{where} holds {str(body)[:80]!r}, not an entry number: it was not written by Chariots"
            )
        return seq

    def _listed(self) -> bool:
        """Whether the log has entries, seen from a listing (a new store's first look).

        :raises IntegrityError: if it has, but not the first one: entries were deleted.
        """
        names = self.bucket.list(f"{self.directory}/log")
        if names and self.probe(1) is None:  # (entry 1 may have been written since it was probed)
            msg = (
                f"{self.where(1)} is missing but the log holds {len(names)} other entries: log entries "
                "were deleted; restore the store from a backup"
            )
            raise IntegrityError(msg)
        return bool(names)

    # -- writing ---------------------------------------------------------------------------
    def create(self, seq: int, data: bytes, commit_id: str) -> bool:
        """Write entry ``seq`` (``data``, sealed, of commit ``commit_id``) unless it exists;
        whether the entry is this commit.

        One request when it succeeds. "It exists", and a failure whose request may have landed
        before its answer was lost, are settled by reading the entry back and comparing ids. A
        failure that left no entry is tried again a few times: S3 answers 409 to a create that
        raced another, asking for a retry.
        """
        path = self.path(seq)
        attempt = 1
        while True:
            try:
                self.bucket.create(path, data)
            except StoreError as exc:
                written = self.probe(seq)
                if written is not None:
                    return written.commit_id == commit_id
                if isinstance(exc.__cause__, FileExistsError):
                    msg = f"{self.store}: {path!r} exists, the filesystem says, but it cannot be read; check its consistency settings"
                    raise StoreError(msg) from exc
                if attempt == _CREATE_ATTEMPTS:
                    raise
                time.sleep(0.1 * 2**attempt)
                attempt += 1
            else:
                self._remember(seq, data)
                return True

    def write_hint(self, seq: int) -> None:
        """Point the head hint at entry ``seq`` (a lower bound: racing writers may leave an older one)."""
        self.bucket.put(self.hint_path, seal("chariots-head", {"seq": seq}))

    # -- helpers ---------------------------------------------------------------------------
    def _cached(self, seq: int) -> Entry | None:
        with self._lock:
            found = self._cache.get(seq)
            if found is None:
                return None
            self._cache.move_to_end(seq)
            return found[0]

    def _remember(self, seq: int, data: bytes) -> Entry:
        entry = Entry(seq, unseal("chariots-log", data, self.where(seq)), self.where(seq))
        with self._lock:
            if seq not in self._cache:
                size = len(data) * _DECODED_SIZE
                self._cache[seq] = (entry, size)
                self._cached_bytes += size
                while self._cached_bytes > self._cache_bytes and len(self._cache) > 1:
                    _, (_, size) = self._cache.popitem(last=False)
                    self._cached_bytes -= size
            return self._cache[seq][0]

    def forget(self) -> None:
        """Empty the cache (the entries are read again when needed)."""
        with self._lock:
            self._cache.clear()
            self._cached_bytes = 0
