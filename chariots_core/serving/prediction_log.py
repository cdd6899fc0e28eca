"""The prediction log: an opt-in, bounded record of the calls made to chosen pipelines.

Turn it on per pipeline, ``Chariots(..., log_predictions=["pred_iris"])`` (or
``{"pred_iris": "sha256"}`` to keep only hashes of inputs and outputs); read it back with
``app.predictions("pred_iris", since=..., limit=...)``. Each call of a logged pipeline, the
runs of a shadow variant included, becomes a :class:`PredictionRecord`: when it started, how
long it took, which variant and op versions computed it, its input and output (or their
sha256), and the error if it failed.

**Where the time goes.** A call must not wait for a disk, so the calling thread does only
what cannot wait: it turns the input and output into JSON values (a copy: what the caller
does with them afterwards does not change the log) and appends a tuple to a queue, with no
lock and no I/O. A daemon writer thread wakes every ``flush_interval`` seconds, takes what is
pending and hands it to the :class:`PredictionSink` in one batch, which the sink writes in one
transaction together with the trimming its retention asks for. The op store's fsynced commit
path is no place for this: a prediction log is written at the rate calls arrive, deployments a
few times a day.

**Bounded.** Retention is by count per pipeline (``keep``, default 100,000) and by age
(``max_age`` seconds), applied by the sink in each batch's transaction, so the log never grows
past ``keep`` records per pipeline plus one batch. Pending records beyond ``max_pending`` are
dropped rather than queued, so a stalled disk cannot exhaust memory.

**Never fails a prediction.** Nothing the log does raises into a call: a sink that cannot
write (a full disk, a damaged file) drops the batch, counts its records in :attr:`PredictionLog.dropped`
and logs one warning on the ``chariots.predictions`` logger, repeated only after a write has
succeeded again. Values that cannot become JSON are logged as ``null``.

Sinks: :class:`MemoryPredictionSink` here (tests, throw-away apps) and
``chariots_lmdb.LMDBPredictionSink``, an LMDB environment of its own (crash-safe: a killed
process leaves every committed batch readable and nothing half-written). ``PredictionLog(path)``
with a directory uses the LMDB one.
"""

from __future__ import annotations

import abc
import atexit
import bisect
import collections
import hashlib
import json
import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

import attrs

from ..errors import BackendError, ConfigError
from ..log import get_logger
from ..registry import get_backend
from .jsonsafe import to_jsonable

__all__ = ["PredictionRecord", "PredictionSink", "MemoryPredictionSink", "PredictionLog", "LOG_MODES", "snapshot", "to_frame"]

LOG_MODES = ("full", "sha256")
_log = get_logger("predictions")


@attrs.frozen
class PredictionRecord:
    """One logged call of a pipeline.

    :param pipeline: the pipeline's name.
    :param at: when the call started (seconds since the epoch).
    :param latency: how long the pipeline ran, in seconds.
    :param variant: the variant of a split that computed it (``None``: the pipeline is not split).
    :param versions: the version of each op node that computed it.
    :param input: the input as JSON (``None`` when only hashes are logged).
    :param output: the output as JSON (``None`` when only hashes are logged or the call failed).
    :param input_sha256: sha256 of the input's canonical JSON, when only hashes are logged.
    :param output_sha256: likewise for the output.
    :param error: ``"<type>: <message>"`` if the call raised.
    :param shadow: whether a shadow variant computed it (its output was never returned).
    """

    pipeline: str
    at: float
    latency: float
    variant: str | None
    versions: dict[str, str]
    input: Any = None
    output: Any = None
    input_sha256: str | None = None
    output_sha256: str | None = None
    error: str | None = None
    shadow: bool = False

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object (what sinks store and HTTP sends)."""
        return attrs.asdict(self, recurse=False)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PredictionRecord:
        """Rebuild a record from :meth:`to_json`'s output (unknown keys are ignored)."""
        return cls(**{field.name: data[field.name] for field in attrs.fields(cls) if field.name in data})


class PredictionSink(abc.ABC):
    """Where a :class:`PredictionLog` keeps its records.

    A sink implements :meth:`write` (one batch, trimmed to the retention, all or nothing) and
    :meth:`read`; it is used by the log's writer thread and by readers at once, so both must be
    safe across threads (and, for a sink several processes share, across processes).
    """

    @abc.abstractmethod
    def write(self, records: Sequence[PredictionRecord], keep: int | None, oldest: float | None) -> None:
        """Append ``records``, then drop each pipeline's oldest records beyond ``keep`` and
        those that started before ``oldest`` (``None``: no such limit).

        :raises Exception: anything: the log counts the batch as dropped.
        """

    @abc.abstractmethod
    def read(self, pipeline: str, since: float | None, limit: int | None) -> list[PredictionRecord]:
        """``pipeline``'s records that started at or after ``since``, newest first, at most ``limit``."""

    def close(self) -> None:
        """Release what the sink holds (nothing by default)."""


class MemoryPredictionSink(PredictionSink):
    """Records kept in memory, lost with the process: for tests and throw-away apps."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: dict[str, list[PredictionRecord]] = {}  # oldest first
        self._starts: dict[str, list[float]] = {}  # their ``at``, for bisecting

    def write(self, records: Sequence[PredictionRecord], keep: int | None, oldest: float | None) -> None:
        with self._lock:
            for record in records:
                starts = self._starts.setdefault(record.pipeline, [])
                index = bisect.bisect_right(starts, record.at)
                starts.insert(index, record.at)
                self._records.setdefault(record.pipeline, []).insert(index, record)
            for name, kept in self._records.items():
                starts = self._starts[name]
                first = bisect.bisect_left(starts, oldest) if oldest is not None else 0
                if keep is not None:
                    first = max(first, len(kept) - keep)
                del kept[:first], starts[:first]

    def read(self, pipeline: str, since: float | None, limit: int | None) -> list[PredictionRecord]:
        with self._lock:
            kept = self._records.get(pipeline, [])
            first = 0 if since is None else bisect.bisect_left(self._starts[pipeline], since)
            newest_first = kept[first:][::-1]
        return newest_first if limit is None else newest_first[:limit]


# What a call leaves in the queue: (pipeline, at, latency, variant, versions, input, output,
# error, shadow, hashes_only), input and output already JSON values.
_Pending = tuple[str, float, float, "str | None", dict, Any, Any, "str | None", bool, bool]
_UNENCODABLE = object()


class PredictionLog:
    """Logs calls in the background into a :class:`PredictionSink` (see the module docstring).

    :param sink: a :class:`PredictionSink`, ``"memory"``, or a local directory for an LMDB sink
        (``pip install 'chariots[lmdb]'``).
    :param keep: how many records to keep per pipeline (``None``: no count limit).
    :param max_age: drop records older than this many seconds (``None``: no age limit).
    :param flush_interval: how often, in seconds, the writer thread writes what is pending.
    :param max_pending: records waiting to be written beyond this number are dropped.
    :raises ConfigError: if a limit is not a positive number.
    """

    def __init__(
        self,
        sink: PredictionSink | str = "memory",
        keep: int | None = 100_000,
        max_age: float | None = None,
        flush_interval: float = 0.1,
        max_pending: int = 100_000,
    ) -> None:
        _check_positive("keep", keep, integer=True, optional=True)
        _check_positive("max_age", max_age, optional=True)
        _check_positive("flush_interval", flush_interval)
        _check_positive("max_pending", max_pending, integer=True)
        self.keep, self.max_age, self.max_pending = keep, max_age, max_pending
        self.sink = _resolve_sink(sink)
        self._owns_sink = isinstance(sink, str)
        self._pending: collections.deque[_Pending] = collections.deque()
        self._write_lock = threading.Lock()  # one batch at a time: the writer thread or a flush()
        self.written = 0
        self.dropped = 0
        self._failing = False  # a write failed and no write succeeded since: warned already
        self._closed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_write_periodically, args=(weakref.ref(self), self._stop, flush_interval),
            name="chariots-prediction-log", daemon=True,
        )  # fmt: skip
        self._thread.start()
        atexit.register(_flush_at_exit, weakref.ref(self))

    # -- the call path ------------------------------------------------------------------------
    def add(
        self,
        pipeline: str,
        at: float,
        latency: float,
        variant: str | None,
        versions: dict[str, Any],
        pipeline_input: Any,
        output: Any,
        error: str | None = None,
        shadow: bool = False,
        hashes_only: bool = False,
    ) -> None:
        """Queue one call's record; never raises, never waits (see the module docstring).

        ``pipeline_input`` and ``output`` are what :func:`snapshot` made of them: the input is
        taken before the call runs, since ops may change what they are given.
        """
        if self._closed:
            return
        if len(self._pending) >= self.max_pending:
            self._drop(1, f"more than {self.max_pending} records are waiting to be written")
            return
        self._pending.append(
            (pipeline, at, latency, variant, dict(versions), pipeline_input, output, error, shadow, hashes_only)
        )

    # -- writing --------------------------------------------------------------------------------
    def flush(self) -> None:
        """Write everything queued so far (the writer thread does it every ``flush_interval``)."""
        with self._write_lock:
            batch = []
            while self._pending:
                batch.append(self._pending.popleft())
            if not batch:
                return
            try:
                records = [_record(item) for item in batch]
                oldest = None if self.max_age is None else time.time() - self.max_age
                self.sink.write(records, self.keep, oldest)
            except Exception as exc:  # the log must never fail a prediction
                self._drop(len(batch), f"the sink {self.sink!r} failed: {type(exc).__name__}: {exc}")
                return
            self.written += len(batch)
            self._failing = False

    def _drop(self, count: int, why: str) -> None:
        self.dropped += count
        if not self._failing:
            self._failing = True
            _log.warning(
                "dropped %d prediction record(s): %s; predictions are still served, and further drops are "
                "only counted (PredictionLog.dropped) until a write succeeds again",
                count, why,
            )  # fmt: skip

    # -- reading --------------------------------------------------------------------------------
    def read(self, pipeline: str, since: float | None = None, limit: int | None = 100) -> list[PredictionRecord]:
        """``pipeline``'s records (this process's pending ones written first), newest first.

        :raises ConfigError: if ``since`` or ``limit`` is not valid.
        """
        if since is not None and (not isinstance(since, (int, float)) or isinstance(since, bool)):
            raise ConfigError(f"'since' must be None or a time in seconds since the epoch (got {since!r})")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise ConfigError(f"'limit' must be None or a number >= 0 (got {limit!r})")
        self.flush()
        return self.sink.read(pipeline, since, limit)

    def stats(self) -> dict[str, int]:
        """``{"written", "dropped", "pending"}`` record counts of this process."""
        return {"written": self.written, "dropped": self.dropped, "pending": len(self._pending)}

    def close(self) -> None:
        """Stop the writer thread, write what is pending, and close the sink if the log made it."""
        if self._closed:
            return
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self.flush()
        self._closed = True
        if self._owns_sink:
            self.sink.close()

    def __repr__(self) -> str:
        return f"<PredictionLog into {self.sink!r}, {self.written} written, {self.dropped} dropped>"


def _write_periodically(log_ref: weakref.ref, stop: threading.Event, interval: float) -> None:
    """The writer thread: holds the log weakly, so an unreferenced log stops it."""
    while not stop.wait(interval):
        log = log_ref()
        if log is None:
            return
        log.flush()
        del log


def _flush_at_exit(log_ref: weakref.ref) -> None:
    log = log_ref()
    if log is not None and not log._closed:
        log.flush()


def snapshot(value: Any) -> Any:
    """What :meth:`PredictionLog.add` takes of a value: a JSON copy (containers are new
    objects, so later changes to ``value`` do not reach the log), or a marker if it has none."""
    try:
        return to_jsonable(value)
    except Exception:
        return _UNENCODABLE


def _sha256(value: Any) -> str | None:
    if value is _UNENCODABLE:
        return None
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _record(item: _Pending) -> PredictionRecord:
    pipeline, at, latency, variant, versions, pipeline_input, output, error, shadow, hashes_only = item
    versions = {name: str(version) for name, version in versions.items()}
    if error is not None:
        output = _UNENCODABLE
    if hashes_only:
        return PredictionRecord(
            pipeline, at, latency, variant, versions, input_sha256=_sha256(pipeline_input),
            output_sha256=_sha256(output), error=error, shadow=shadow,
        )  # fmt: skip
    return PredictionRecord(
        pipeline, at, latency, variant, versions,
        input=None if pipeline_input is _UNENCODABLE else pipeline_input,
        output=None if output is _UNENCODABLE else output, error=error, shadow=shadow,
    )  # fmt: skip


def _resolve_sink(sink: PredictionSink | str) -> PredictionSink:
    if isinstance(sink, PredictionSink):
        return sink
    if not isinstance(sink, (str, os.PathLike)):
        msg = f"'sink' must be a PredictionSink, 'memory' or a directory (got {sink!r} that is a {type(sink).__name__})"
        raise ConfigError(msg)
    if sink == "memory":
        return MemoryPredictionSink()
    return get_backend("prediction_log", "lmdb")(os.fspath(sink))


def _check_positive(name: str, value: Any, integer: bool = False, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, (int,) if integer else (int, float)) or isinstance(value, bool) or value <= 0:
        expected = "a whole number > 0" if integer else "a number of seconds > 0"
        raise ConfigError(f"'{name}' must be {'None or ' if optional else ''}{expected} (got {value!r})")


def to_frame(records: Sequence[PredictionRecord]) -> Any:
    """The records as a pandas ``DataFrame``, one row per record (pandas is imported here).

    :raises BackendError: if pandas is not installed.
    """
    try:
        import pandas
    except ImportError as exc:
        raise BackendError("predictions as a DataFrame need pandas: pip install pandas") from exc
    columns = [field.name for field in attrs.fields(PredictionRecord)]
    return pandas.DataFrame([record.to_json() for record in records], columns=columns)
