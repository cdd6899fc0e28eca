"""The prediction log: an opt-in, bounded record of the calls made to chosen pipelines.

Turn it on per pipeline, ``Chariots(..., log_predictions=["pred_iris"])`` (or
``{"pred_iris": "sha256"}`` to keep only hashes of inputs and outputs); read it back with
``app.predictions("pred_iris", since=..., limit=...)``. Each call of a logged pipeline, the
runs of a shadow variant included, becomes a :class:`PredictionRecord`: when it started, how
long it took, which variant and op versions computed it, its input and output (or their
sha256), and the error if it failed. Asynchronous calls (``use_worker``) are not logged:
their outcome is their job's record (``fetch_job``, ``chariots jobs``).

**Where the time goes.** A call must not wait for a disk, so the calling thread does only
what cannot wait: it encodes the input (before the call: ops may change what they are given)
and the output as JSON text, once, with json's C encoder (:func:`snapshot`; what the caller
does with them afterwards cannot change the log), and appends a tuple to a queue, with no lock
and no I/O. A daemon writer thread wakes every ``flush_interval`` seconds, turns what is
pending into one JSON document per call (the texts are spliced in, never parsed and encoded
again) and hands them to the :class:`PredictionSink` in one batch, which the sink writes in
one transaction together with the trimming its retention asks for. The op store's fsynced
commit path is no place for this: a prediction log is written at the rate calls arrive,
deployments a few times a day. ``benchmarks/bench_ops.py`` measures the whole cost per call,
the writer's share included.

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

import atexit
import collections
import functools
import hashlib
import json
import os
import threading
import time
import weakref
from collections.abc import Sequence
from typing import Any

import attrs

from ..errors import BackendError, ConfigError, StoreError
from ..log import get_logger
from ..registry import get_backend
from .jsonsafe import json_encoder, to_jsonable
from .prediction_sinks import Entry, MemoryPredictionSink, PredictionSink

__all__ = [
    "PredictionRecord",
    "Entry",
    "PredictionSink",
    "MemoryPredictionSink",
    "PredictionLog",
    "LOG_MODES",
    "snapshot",
    "read_records",
    "to_frame",
]

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


# A time in float seconds holds nanoseconds only to ~0.2 µs today: ``since`` is matched to the
# microsecond, so that a record's own ``at`` given back as ``since`` finds it.
_SINCE_SLACK_NS = 1000
_new_entry = tuple.__new__  # Entry(...) runs Python code; the writer makes one per call


# What a call leaves in the queue: (pipeline, at_ns, latency_ns, variant, versions, input text,
# output text, error, shadow, hashes_only); a text is None when the value has no JSON.
_Pending = tuple[str, int, int, "str | None", dict, "str | None", "str | None", "str | None", bool, bool]


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
        sink: PredictionSink | str | os.PathLike = "memory",
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
        self._owns_sink = not isinstance(sink, PredictionSink)
        self._pending: collections.deque[_Pending] = collections.deque()
        self._write_lock = threading.Lock()  # one batch at a time: the writer thread or a flush()
        self._version_texts = _VersionTexts()
        self.written = 0
        self.dropped = 0
        self._failing = False  # a write failed and no write succeeded since: warned already
        self._drop_lock = threading.Lock()
        self._closed = False
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_write_periodically, args=(weakref.ref(self), self._stop, flush_interval),
            name="chariots-prediction-log", daemon=True,
        )  # fmt: skip
        self._thread.start()
        self._at_exit = functools.partial(_flush_at_exit, weakref.ref(self))
        atexit.register(self._at_exit)

    # -- the call path ------------------------------------------------------------------------
    def add(
        self,
        pipeline: str,
        at_ns: int,
        latency_ns: int,
        variant: str | None,
        versions: dict[str, Any],
        pipeline_input: str | None,
        output: str | None,
        error: str | None = None,
        shadow: bool = False,
        hashes_only: bool = False,
    ) -> None:
        """Queue one call's record; never raises, never waits (see the module docstring).

        ``at_ns`` is when the call started (``time.time_ns()``), ``latency_ns`` how long it ran.

        ``pipeline_input`` and ``output`` are what :func:`snapshot` made of them (``None``:
        the value had no JSON); the input is taken before the call runs, since ops may change
        what they are given.
        """
        if self._closed:
            return
        if len(self._pending) >= self.max_pending:
            self._drop(1, f"more than {self.max_pending} records are waiting to be written")
            return
        self._pending.append(
            (pipeline, at_ns, latency_ns, variant, dict(versions), pipeline_input, output, error, shadow, hashes_only)
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
                entries = [_entry(item, self._version_texts) for item in batch]
                oldest_ns = None if self.max_age is None else time.time_ns() - int(self.max_age * 1e9)
                self.sink.write(entries, self.keep, oldest_ns)
            except Exception as exc:  # the log must never fail a prediction
                self._drop(len(batch), f"the sink {self.sink!r} failed: {type(exc).__name__}: {exc}")
                return
            self.written += len(batch)
            self._failing = False

    def _drop(self, count: int, why: str) -> None:
        with self._drop_lock:  # calls (queue full) and the writer (sink failed) both drop
            self.dropped += count
            warn, self._failing = not self._failing, True
        if warn:
            _log.warning(
                "dropped %d prediction record(s): %s; predictions are still served, and further drops are "
                "only counted (PredictionLog.dropped) until a write succeeds again",
                count, why,
            )  # fmt: skip

    # -- reading --------------------------------------------------------------------------------
    def read(self, pipeline: str, since: float | None = None, limit: int | None = 100) -> list[PredictionRecord]:
        """``pipeline``'s records (this process's pending ones written first), newest first.

        :raises ConfigError: if ``since`` or ``limit`` is not valid.
        :raises StoreError: if the sink holds a damaged record.
        """
        self.flush()
        return read_records(self.sink, pipeline, since, limit)

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
        atexit.unregister(self._at_exit)
        if self._owns_sink:
            self.sink.close()

    def __repr__(self) -> str:
        return f"<PredictionLog into {self.sink!r}, {self.written} written, {self.dropped} dropped>"


def read_records(sink: PredictionSink, pipeline: str, since: float | None, limit: int | None) -> list[PredictionRecord]:
    """``pipeline``'s records in ``sink`` that started at or after ``since``, newest first.

    :raises ConfigError: if ``since`` or ``limit`` is not valid.
    :raises StoreError: if the sink holds a damaged record.
    """
    if since is not None and (not isinstance(since, (int, float)) or isinstance(since, bool)):
        raise ConfigError(f"'since' must be None or a time in seconds since the epoch (got {since!r})")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise ConfigError(f"'limit' must be None or a number >= 0 (got {limit!r})")
    records = []
    since_ns = None if since is None else int(since * 1e9) - _SINCE_SLACK_NS
    for entry in sink.read(pipeline, since_ns, limit):
        try:
            records.append(entry.record())
        except (ValueError, TypeError, KeyError) as exc:
            msg = f"{sink!r} holds a damaged prediction record of {pipeline!r} (at {entry.at_ns} ns): {exc}"
            raise StoreError(msg) from exc
    return records


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


# Canonical (sorted keys, compact) so that the text's sha256 is the value's; values JSON does
# not know natively (numpy, pandas, datetimes...) go through to_jsonable, as responses do.
_encode = json_encoder(sort_keys=True, default=to_jsonable)


def snapshot(value: Any) -> str | None:
    """What :meth:`PredictionLog.add` takes of a value: its canonical JSON text, made now (so
    later changes to ``value`` do not reach the log), or ``None`` if it has no JSON."""
    try:
        return _encode(value)
    except Exception:  # a value that cannot be logged must not fail the call
        return None


_string = json.encoder.encode_basestring_ascii  # a str as JSON text, in C


def _or_null(text: str | None) -> str:
    return "null" if text is None else text


def _string_or_null(value: str | None) -> str:
    return "null" if value is None else _string(value)


def _sha256(text: str | None) -> str:
    return "null" if text is None else f'"{hashlib.sha256(text.encode()).hexdigest()}"'


class _VersionTexts:
    """The JSON text of each set of op versions the log meets, made once per set.

    Calls of one deployment carry the same ``Version`` objects, so a set is known by their
    ids; the cache keeps the objects themselves, so an id cannot stand for another object
    while it is cached. Used by the writer thread only (under the log's write lock).
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._texts: dict[tuple, tuple[tuple, str]] = {}

    def text(self, versions: dict[str, Any]) -> str:
        key = (*versions, *map(id, versions.values()))
        found = self._texts.get(key)
        if found is None:
            if len(self._texts) >= self._size:
                self._texts.clear()
            text = _encode({name: str(version) for name, version in versions.items()})
            found = self._texts[key] = (tuple(versions.values()), text)
        return found[1]


def _entry(item: _Pending, version_texts: _VersionTexts) -> Entry:
    """One queued call as its JSON document; the value texts are spliced in as they are."""
    pipeline, at_ns, latency_ns, variant, versions, input_text, output_text, error, shadow, hashes_only = item
    if error is not None:
        output_text = None
    if hashes_only:
        values = (
            f'"input":null,"input_sha256":{_sha256(input_text)},"output":null,'
            f'"output_sha256":{_sha256(output_text)}'
        )
    else:
        values = f'"input":{_or_null(input_text)},"output":{_or_null(output_text)}'
    text = (
        f'{{"at_ns":{at_ns},"error":{_string_or_null(error)},"latency_ns":{latency_ns},"pipeline":{_string(pipeline)},'
        f'"shadow":{"true" if shadow else "false"},"variant":{_string_or_null(variant)},'
        f'"versions":{version_texts.text(versions)},{values}}}'
    )
    return _new_entry(Entry, (pipeline, at_ns, text.encode()))


def _resolve_sink(sink: PredictionSink | str | os.PathLike) -> PredictionSink:
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
