"""Where the prediction log keeps its records: the :class:`PredictionSink` protocol, the
:class:`Entry` a sink stores, and :class:`MemoryPredictionSink`.

A sink stores opaque JSON documents by pipeline and start time (ns since the epoch), trims
them to a retention, and reads them back newest first; it never looks inside a document.
``chariots_lmdb.LMDBPredictionSink`` keeps them in an LMDB environment of its own.
"""

from __future__ import annotations

import abc
import bisect
import json
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .prediction_log import PredictionRecord

__all__ = ["Entry", "PredictionSink", "MemoryPredictionSink"]


class Entry(NamedTuple):
    """A record as sinks store it: its pipeline, start time (ns since the epoch) and JSON document.

    The document is :meth:`PredictionRecord.to_json`'s, but for ``at_ns`` and ``latency_ns``
    in integer nanoseconds in place of ``at`` and ``latency`` (integers are cheaper to write).
    """

    pipeline: str
    at_ns: int
    data: bytes

    def record(self) -> PredictionRecord:
        """The :class:`PredictionRecord` the document holds.

        :raises ValueError: if the document is not one (a damaged entry).
        """
        document = json.loads(self.data)
        if not isinstance(document, dict):
            raise ValueError(f"a prediction record must be a JSON object (got {document!r:.80})")
        document["at"], document["latency"] = document.pop("at_ns") / 1e9, document.pop("latency_ns") / 1e9
        from .prediction_log import PredictionRecord  # the log imports this module

        return PredictionRecord.from_json(document)




class PredictionSink(abc.ABC):
    """Where a :class:`PredictionLog` keeps its records, as :class:`Entry` documents.

    A sink implements :meth:`write` (one batch, trimmed to the retention, all or nothing) and
    :meth:`read`, ordered by start time; it is used by the log's writer thread and by readers
    at once, so both must be safe across threads (and, for a sink several processes share,
    across processes). It never needs to look inside a document.
    """

    @abc.abstractmethod
    def write(self, entries: Sequence[Entry], keep: int | None, oldest_ns: int | None) -> None:
        """Append ``entries``, then drop each pipeline's oldest entries beyond ``keep`` and
        those that started before ``oldest_ns`` (``None``: no such limit).

        :raises Exception: anything: the log counts the batch as dropped.
        """

    @abc.abstractmethod
    def read(self, pipeline: str, since_ns: int | None, limit: int | None) -> list[Entry]:
        """``pipeline``'s entries that started at or after ``since_ns``, newest first, at most ``limit``."""

    def close(self) -> None:
        """Release what the sink holds (nothing by default)."""


class MemoryPredictionSink(PredictionSink):
    """Entries kept in memory, lost with the process: for tests and throw-away apps."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, list[Entry]] = {}  # by pipeline, oldest first

    def write(self, entries: Sequence[Entry], keep: int | None, oldest_ns: int | None) -> None:
        with self._lock:
            touched = set()
            for entry in entries:
                kept = self._entries.setdefault(entry.pipeline, [])
                if kept and entry.at_ns < kept[-1].at_ns:
                    touched.add(entry.pipeline)  # calls may finish out of order: sorted below
                kept.append(entry)
            for name in touched:
                self._entries[name].sort(key=_start)  # nearly sorted: linear
            for kept in self._entries.values():
                first = 0 if oldest_ns is None else bisect.bisect_left(kept, oldest_ns, key=_start)
                if keep is not None:
                    first = max(first, len(kept) - keep)
                del kept[:first]

    def read(self, pipeline: str, since_ns: int | None, limit: int | None) -> list[Entry]:
        with self._lock:
            kept = self._entries.get(pipeline, [])
            first = 0 if since_ns is None else bisect.bisect_left(kept, since_ns, key=_start)
            last = first if limit is None else max(first, len(kept) - limit)
            return kept[last:][::-1]


def _start(entry: Entry) -> int:
    return entry.at_ns
