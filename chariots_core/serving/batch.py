"""One pipeline over many inputs, in parallel: :meth:`Chariots.map_pipeline`.

    values = app.map_pipeline("predict", rows, worker_pool=pool)  # in the order of ``rows``

Where the calls run:

- no pool: in this process, one after the other, with the app's runner;
- a pool with a ``map_unordered`` method (:class:`BatchWorkerPool`:
  ``chariots_multiprocess.MultiprocessWorkerPool``, ``chariots_dask.DaskWorkerPool``): the inputs are cut into a few chunks per worker and each
  chunk runs as one task, so the per-input cost is close to a direct call;
- any other :class:`~chariots_core.BaseWorkerPool`: one asynchronous job per input, through
  the pool's ordinary job records (correct everywhere, slower per input).

A batch is synchronous: it returns the values, and it leaves no job records behind (except
on the job path). The first failing input stops the batch with an error naming its index.
Progress goes to stderr: a ``tqdm`` bar when tqdm is installed (it draws in terminals and
notebooks alike), else a plain line, rewritten in place on a terminal and printed every 10%
otherwise. tqdm is optional: Chariots never requires it.
"""

from __future__ import annotations

import contextlib
import math
import reprlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from ..errors import NodeExecutionError, WorkerError
from .jobs import failure_details
from .responses import JobStatus
from .workers import BaseWorkerPool

if TYPE_CHECKING:
    from ..pipelines.pipeline import Pipeline
    from ..pipelines.runners import BaseRunner
    from .app import Chariots, PipelineRef

__all__ = ["map_pipeline", "BatchWorkerPool", "ChunkOutcome", "run_chunk"]

_CHUNKS_PER_WORKER = 8  # enough chunks to even out slow ones, few enough to cost nothing


@runtime_checkable
class BatchWorkerPool(Protocol):
    """A worker pool that can run a batch without job records."""

    def map_unordered(
        self, function: Callable[[Any, Any], Any], shared: Any, items: Sequence[Any]
    ) -> Iterator[tuple[int, Any]]:
        """Run ``function(shared, item)`` for every item in the pool's workers and yield
        ``(index of the item, result)`` as each finishes. ``shared`` is sent once per task
        at most; closing the iterator early cancels what has not run."""


@attrs.frozen
class ChunkOutcome:
    """The values of one chunk of inputs, up to its first failure."""

    start: int  # index of the chunk's first input in the whole batch
    values: list[Any]
    failure: dict[str, Any] | None = None  # failure_details(...) plus "index"


def run_chunk(shared: tuple[Pipeline, BaseRunner], chunk: tuple[int, list[Any]]) -> ChunkOutcome:
    """Run the pipeline on each input of ``chunk`` (``(start index, inputs)``); stop at the
    first failure and report it as data, so it crosses process boundaries intact."""
    pipeline, runner = shared
    start, inputs = chunk
    values: list[Any] = []
    for offset, pipeline_input in enumerate(inputs):
        try:
            values.append(runner.run(pipeline, pipeline_input))
        except Exception as exc:  # reported with its input's index by map_pipeline
            return ChunkOutcome(start, values, {**failure_details(exc), "index": start + offset})
    return ChunkOutcome(start, values)


def map_pipeline(
    app: Chariots,
    pipeline: PipelineRef,
    inputs: Iterable[Any],
    worker_pool: BaseWorkerPool | None = None,
    progress: bool = True,
) -> list[Any]:
    """Run ``pipeline`` on every input and return the values in input order.

    :param worker_pool: where to run (default: the app's pool; none: in this process).
    :param progress: print progress on stderr.
    :raises UnknownPipelineError: if the app has no such pipeline.
    :raises NodeExecutionError: for the first input that fails, naming its index and the node.
    :raises WorkerError: if the pool could not run part of the batch (e.g. its workers died).
    """
    serving = app.serving_pipeline(pipeline)
    items = list(inputs)
    pool = worker_pool if worker_pool is not None else app.worker_pool
    if not items:
        return []
    meter = _meter(f"map_pipeline {serving.name!r}", len(items), sys.stderr if progress else None)
    try:
        if pool is None:
            return _in_process(serving, app.runner, items, meter)
        if isinstance(pool, BatchWorkerPool):
            return _chunked(serving, app.runner, items, pool, meter)
        return _as_jobs(app, serving, items, pool, meter)
    finally:
        meter.close()


def _chunks(items: list[Any], n_chunks: int) -> list[tuple[int, list[Any]]]:
    size = max(1, math.ceil(len(items) / max(1, n_chunks)))
    return [(start, items[start : start + size]) for start in range(0, len(items), size)]


def _in_process(pipeline: Pipeline, runner: BaseRunner, items: list[Any], meter: _Meter) -> list[Any]:
    values: list[Any] = []
    for chunk in _chunks(items, 100):  # chunks only pace the progress line here
        outcome = run_chunk((pipeline, runner), chunk)
        _raise_failure(pipeline, items, outcome.failure)
        values.extend(outcome.values)
        meter.update(len(outcome.values))
    return values


def _chunked(
    pipeline: Pipeline, runner: BaseRunner, items: list[Any], pool: BatchWorkerPool, meter: _Meter
) -> list[Any]:
    chunks = _chunks(items, pool.n_workers * _CHUNKS_PER_WORKER)
    results: list[ChunkOutcome | None] = [None] * len(chunks)
    completions = pool.map_unordered(run_chunk, (pipeline, runner), chunks)
    with contextlib.closing(completions):
        try:
            for index, outcome in completions:
                _raise_failure(pipeline, items, outcome.failure)
                results[index] = outcome
                meter.update(len(outcome.values))
        except NodeExecutionError:
            raise
        except Exception as exc:  # the pool's own WorkerError too: only here are the inputs known
            missing = ", ".join(
                f"#{start}-#{start + len(chunk) - 1}" for (start, chunk), done in zip(chunks, results) if done is None
            )
            msg = (
                f"map_pipeline of {pipeline.name!r} could not finish on {pool!r}: {type(exc).__name__}: "
                f"{exc}. Inputs {missing} did not complete; check the workers and run the batch again"
            )
            raise WorkerError(msg) from exc
    return [value for outcome in results if outcome is not None for value in outcome.values]


def _as_jobs(app: Chariots, pipeline: Pipeline, items: list[Any], pool: BaseWorkerPool, meter: _Meter) -> list[Any]:
    job_ids = [pool.execute_pipeline_async(pipeline, item, app) for item in items]
    values = []
    for index, job_id in enumerate(job_ids):
        response = pool.wait(job_id)
        if response.job_status is JobStatus.failed:
            _raise_failure(pipeline, items, {**(response.error or {}), "index": index})
        values.append(response.value)
        meter.update(1)
    return values


def _raise_failure(pipeline: Pipeline, items: list[Any], failure: dict[str, Any] | None) -> None:
    if failure is None:
        return
    index = failure["index"]
    node = failure.get("node") or None
    msg = (
        f"map_pipeline of {pipeline.name!r} failed on input #{index} ({reprlib.repr(items[index])}): "
        f"{failure.get('type', 'Error')}: {failure.get('message', '')}"
    )
    raise NodeExecutionError(msg, node_name=node)


class _Meter(Protocol):
    """What a batch reports its progress to: a tqdm bar or a :class:`_Progress` line."""

    def update(self, count: int) -> Any: ...

    def close(self) -> None: ...


def _meter(label: str, total: int, stream: IO[str] | None) -> _Meter:
    """A tqdm bar on ``stream`` if tqdm is installed, else a plain line; silent without a stream."""
    if stream is not None:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            pass
        else:
            return tqdm(total=total, desc=label, unit="input", file=stream)
    return _Progress(label, total, stream)


class _Progress:
    """A progress line on a stream: rewritten in place on a terminal, every 10% otherwise."""

    def __init__(self, label: str, total: int, stream: IO[str] | None) -> None:
        self._label, self._total, self._stream = label, total, stream
        self._done = 0
        self._started = time.perf_counter()
        self._tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self._last_step = 0
        self._last_write = 0.0

    def update(self, count: int) -> None:
        if self._stream is None or count <= 0:
            return
        self._done += count
        step = self._done * 10 // self._total
        now = time.perf_counter()
        if self._tty and (now - self._last_write >= 0.1 or self._done == self._total):
            self._stream.write(f"\r{self._line(now)}")
            self._last_write = now
        elif not self._tty and step > self._last_step:
            self._stream.write(f"{self._line(now)}\n")
        self._last_step = step
        self._stream.flush()

    def _line(self, now: float) -> str:
        elapsed = now - self._started
        rate = self._done / elapsed if elapsed > 0 else float("inf")
        percent = 100 * self._done // self._total
        return f"{self._label}: {self._done}/{self._total} inputs ({percent}%), {elapsed:.1f} s, {rate:.0f} inputs/s"

    def close(self) -> None:
        if self._stream is not None and self._tty and self._done:
            self._stream.write("\n")
            self._stream.flush()
