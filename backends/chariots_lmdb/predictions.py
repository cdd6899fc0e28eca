"""``LMDBPredictionSink``: the prediction log of an app, in an LMDB environment of its own.

``Chariots(..., log_predictions=[...])`` keeps it in ``<path>/predictions``, beside the op
store and apart from it: predictions are written at the rate calls arrive, in batches from the
log's writer thread, and none of that touches the op store's environment or its commits.

Layout, two sub-databases:

============  ==========================================================  =====================
database      key                                                         value
============  ==========================================================  =====================
``records``   pipeline prefix, start time (ns), pid, sequence (big end.)  the record's JSON (as
                                                                          the log made it)
``counts``    pipeline name (UTF-8)                                       its record count
============  ==========================================================  =====================

The pipeline prefix is the name's UTF-8 length (2 bytes) and the name, so one pipeline's
records are one contiguous key range, ordered by start time: reading the newest is a walk back
from the range's end, trimming the oldest a walk from its start, and the count of each pipeline
is one lookup. A batch, its counts and its trimming are one write transaction.

**Crashes.** LMDB never exposes a half-written transaction: a killed process leaves every
committed batch readable and nothing else. Each batch is fsynced once (``metasync=False``,
like the op store), so an OS crash or power cut loses at most the last batch and never
leaves the environment unreadable; the fsync is paid by the writer thread, once per batch,
never by a call. Several processes may log into one directory at once: LMDB serialises their
batches, and the pid in every key keeps their records apart.
"""

from __future__ import annotations

import itertools
import os
import struct
import threading
from collections.abc import Sequence
from typing import Any

import lmdb

from chariots_core.errors import StoreError
from chariots_core.serving.prediction_sinks import Entry, PredictionSink

from . import environments
from .environments import Layout, SharedEnvironment

__all__ = ["LMDBPredictionSink"]

_DATABASES = ("records", "counts")
_SUFFIX = struct.Struct(">QII")  # start time in ns, pid, sequence
_COUNT = struct.Struct(">Q")
_DEFAULT_MAP_SIZE = 64 * 1024 * 1024  # grows on demand


def _open_databases(env: lmdb.Environment, path: str) -> dict[str, Any]:
    with env.begin(write=True) as txn:
        found = {bytes(name).decode() for name in txn.cursor().iternext(values=False)}
        if found and found != set(_DATABASES):
            msg = (
                f"{path!r} holds an LMDB environment that is not a prediction log (its sub-databases are "
                f"{sorted(found)}); give the prediction log a directory of its own"
            )
            raise StoreError(msg)
        return {name: env.open_db(name.encode(), txn=txn) for name in _DATABASES}


_LAYOUT = Layout("", sync=True, metasync=False, databases=_DATABASES, opener=_open_databases, what="LMDB prediction log")


def _prefix(pipeline: str) -> bytes:
    name = pipeline.encode()
    return len(name).to_bytes(2, "big") + name


class LMDBPredictionSink(PredictionSink):
    """A :class:`~chariots_core.serving.prediction_sinks.PredictionSink` in the LMDB directory ``path``.

    :param path: the directory (created if missing); not an op store's.
    :param map_size: initial size in bytes of LMDB's memory map (it grows when full).
    :raises StoreError: if the directory cannot be used or holds something else.
    """

    def __init__(self, path: str | os.PathLike, map_size: int = _DEFAULT_MAP_SIZE) -> None:
        self.path = os.path.abspath(os.fspath(path))
        self.map_size = map_size
        self._sequence = itertools.count()
        self._lock = threading.Lock()
        self._handle: tuple[int, SharedEnvironment] | None = None
        self._shared()

    def _shared(self) -> SharedEnvironment:
        """The environment for this process (a forked child opens its own)."""
        with self._lock:
            if self._handle is None or self._handle[0] != os.getpid():
                shared = environments.acquire(self.path, _LAYOUT, self.map_size, self)
                if set(shared.dbs) != set(_DATABASES):
                    environments.release(shared, self)
                    msg = f"{self.path!r} is an op store; give the prediction log a directory of its own"
                    raise StoreError(msg)
                self._handle = (os.getpid(), shared)
            return self._handle[1]

    def write(self, entries: Sequence[Entry], keep: int | None, oldest_ns: int | None) -> None:
        pid = os.getpid() & 0xFFFFFFFF
        rows: dict[bytes, list[tuple[bytes, bytes]]] = {}
        for entry in entries:
            suffix = _SUFFIX.pack(entry.at_ns, pid, next(self._sequence) & 0xFFFFFFFF)
            rows.setdefault(_prefix(entry.pipeline), []).append((suffix, entry.data))
        oldest_key = None if oldest_ns is None else _SUFFIX.pack(max(oldest_ns, 0), 0, 0)
        shared = self._shared()

        def work(txn: lmdb.Transaction) -> None:
            records_db, counts_db = shared.dbs["records"], shared.dbs["counts"]
            for prefix, items in rows.items():
                for suffix, value in items:
                    txn.put(prefix + suffix, value, db=records_db)
                count = _read_count(txn.get(prefix, db=counts_db)) + len(items)
                count = _trim(txn.cursor(db=records_db), prefix, count, keep, oldest_key)
                txn.put(prefix, _COUNT.pack(count), db=counts_db)

        environments.transaction(shared, work, write=True)

    def read(self, pipeline: str, since_ns: int | None, limit: int | None) -> list[Entry]:
        prefix = _prefix(pipeline)
        lowest = prefix + _SUFFIX.pack(max(since_ns, 0), 0, 0) if since_ns is not None else prefix
        shared = self._shared()
        found: list[Entry] = []
        with environments.reading(shared) as txn:
            cursor = txn.cursor(db=shared.dbs["records"])
            # From the end of the pipeline's key range, back to ``lowest``.
            if cursor.set_range(prefix + b"\xff" * _SUFFIX.size):
                positioned = cursor.prev()
            else:
                positioned = cursor.last()
            while positioned and (limit is None or len(found) < limit):
                key = bytes(cursor.key())
                if not key.startswith(prefix) or key < lowest:
                    break
                found.append(Entry(pipeline, _SUFFIX.unpack_from(key, len(prefix))[0], bytes(cursor.value())))
                positioned = cursor.prev()
        return found

    def close(self) -> None:
        """Release the environment (using the sink again reopens it)."""
        with self._lock:
            handle, self._handle = self._handle, None
        if handle is not None and handle[0] == os.getpid():
            environments.release(handle[1], self)

    def __repr__(self) -> str:
        return f"<LMDBPredictionSink at {self.path!r}>"


def _read_count(raw: bytes | memoryview | None) -> int:
    return 0 if raw is None else _COUNT.unpack(raw)[0]


def _trim(cursor: lmdb.Cursor, prefix: bytes, count: int, keep: int | None, oldest_key: bytes | None) -> int:
    """Delete the pipeline's oldest records beyond ``keep`` or before ``oldest_key``; the new count."""
    if not cursor.set_range(prefix):
        return count
    while count and (key := bytes(cursor.key())).startswith(prefix):
        too_many = keep is not None and count > keep
        too_old = oldest_key is not None and key[len(prefix) :] < oldest_key
        if not (too_many or too_old):
            break
        cursor.delete()  # moves to the next record
        count -= 1
    return count
