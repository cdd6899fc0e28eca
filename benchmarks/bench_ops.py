"""What operating features cost per call: the prediction log and a split, against the same call without.

Every contender is ``app.call_pipeline("pred", row)`` on a one-op pipeline (``Echo``, which
returns its input), in one process, on memory stores; the input is an iris row,
``[[5.1, 3.5, 1.4, 0.2]]``:

- ``floor``: the pipeline neither logged nor split;
- ``log lmdb full``: its calls logged into an LMDB prediction log (``<tmp>/predictions``), input
  and output kept;
- ``log lmdb sha256``: the same, keeping only their sha256;
- ``log memory full``: logged into the in-memory sink;
- ``split by key``: split between two variants, each call picking one by its key (no log).

Logging is measured whole: a repeat is ``CALLS`` calls *and* the flush of what they queued, so
the writer thread's encoding and LMDB writes, which share the interpreter with the calls, are
counted, not only the queueing. Two clocks: the process's CPU time (every thread of it, the
writer's included; on a machine shared with other work it is far steadier than the wall
clock, which counts the time other processes held the CPU) and the wall clock (which would
also show a call waiting on the writer's I/O). Contenders take turns within each repeat;
reported are medians over the repeats, in µs per call, and the overhead above the floor.
Target: logging adds at most 20 µs per call.

Run: ``python benchmarks/bench_ops.py [--calls 20000] [--repeats 7]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from typing import Any

from chariots_core import BaseOp, Chariots, Node, Pipeline
from chariots_core.serving.prediction_log import PredictionLog

TARGET_OVERHEAD_US = 20.0
ROW = [[5.1, 3.5, 1.4, 0.2]]


class Echo(BaseOp):
    """Returns its input: the cheapest op, so that the overheads show."""

    def execute(self, value: Any) -> Any:
        return value


def pipeline() -> Pipeline:
    return Pipeline([Node(Echo(), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")], "pred")


def contenders(directory: str) -> dict[str, tuple[Chariots, PredictionLog | None]]:
    """Each contender's app, and its log (flushed at the end of each repeat)."""
    apps: dict[str, tuple[Chariots, PredictionLog | None]] = {}
    apps["floor"] = (Chariots([pipeline()], op_store="memory", saver="memory"), None)
    for name, sink, mode in [
        ("log lmdb full", f"{directory}/full", "full"),
        ("log lmdb sha256", f"{directory}/sha256", "sha256"),
        ("log memory full", "memory", "full"),
    ]:
        log = PredictionLog(sink, keep=100_000)
        app = Chariots([pipeline()], op_store="memory", saver="memory", log_predictions={"pred": mode},
                       prediction_log=log)  # fmt: skip
        apps[name] = (app, log)
    split = Chariots([pipeline()], op_store="memory", saver="memory")
    split.load_pipeline("pred")  # Echo has no saved state: the load (a deployment) loads nothing
    split.split("pred", {"a": "serving", "b": "latest"})
    apps["split by key"] = (split, None)
    return apps


def run_calls(app: Chariots, log: PredictionLog | None, calls: int, keyed: bool) -> tuple[float, float]:
    """(CPU seconds, wall seconds) for ``calls`` calls and the flush of what they logged."""
    call = app.call_pipeline
    keys = [f"user-{number}" for number in range(calls)] if keyed else None
    cpu, started = time.process_time(), time.perf_counter()
    if keys is None:
        for _ in range(calls):
            call("pred", ROW)
    else:
        for key in keys:
            call("pred", ROW, None, key)
    if log is not None:
        log.flush()
    return time.process_time() - cpu, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000, help="calls per contender per repeat")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_ops_") as directory:
        apps = contenders(directory)
        timings: dict[str, list[tuple[float, float]]] = {name: [] for name in apps}
        for name, (app, log) in apps.items():  # warm up: first LMDB pages, caches
            run_calls(app, log, 1000, name == "split by key")
        for _ in range(args.repeats):
            for name, (app, log) in apps.items():
                cpu, wall = run_calls(app, log, args.calls, name == "split by key")
                timings[name].append((cpu / args.calls * 1e6, wall / args.calls * 1e6))
        dropped = {name: log.stats()["dropped"] for name, (_, log) in apps.items() if log is not None}
        for app, log in apps.values():
            app.close()
            if log is not None:
                log.close()
    report(timings, args, dropped)
    return 0


def report(timings: dict[str, list[tuple[float, float]]], args: argparse.Namespace, dropped: dict[str, int]) -> None:
    medians = {
        name: (statistics.median(cpu for cpu, _ in values), statistics.median(wall for _, wall in values))
        for name, values in timings.items()
    }
    floor_cpu, floor_wall = medians["floor"]
    print(f"{args.calls} calls x {args.repeats} repeats per contender, medians; input {ROW}")
    print(f"{'contender':<18} {'CPU µs/call':>12} {'overhead':>9} {'vs floor':>9}   {'wall µs/call':>12} {'overhead':>9}")
    for name, (cpu, wall) in medians.items():
        print(f"{name:<18} {cpu:12.2f} {cpu - floor_cpu:9.2f} {cpu / floor_cpu:8.2f}x   {wall:12.2f} {wall - floor_wall:9.2f}")
    worst = max(medians[name][0] - floor_cpu for name in medians if name.startswith("log"))
    worst_wall = max(medians[name][1] - floor_wall for name in medians if name.startswith("log"))
    verdict = "ok" if worst <= TARGET_OVERHEAD_US else "MISSED"
    print(f"\nlogging adds at most {worst:.2f} µs of CPU per call (target <= {TARGET_OVERHEAD_US:.0f} µs: {verdict}), "
          f"{worst_wall:.2f} µs of wall clock; records dropped: {dropped}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
