"""Per-node overhead of SequentialRunner against plain calls, Kedro and Hamilton, in one run.

Each contender runs the same linear chain of trivial ops (``x + 1``): 1,000 and 100 nodes by
default. Timings are medians over several repeats, reported as microseconds per node:

- ``floor``: a plain Python loop calling the same op objects' ``execute`` one after another;
- ``chariots``: ``SequentialRunner().run(pipeline, 0)`` on a pipeline built once;
- ``kedro``: Kedro's ``SequentialRunner`` over ``node()``s that call the same ops;
- ``hamilton``: a Hamilton driver over generated functions that call the same ops.

Kedro and Hamilton are measured only when installed (``pip install 'chariots[bench]'``). The
script then builds and runs a 10,000-node chain to show that nothing recurses. Targets: Chariots
at most 3x the floor, and at least 10x less overhead per node than Hamilton.

Run: ``python benchmarks/bench_runner.py [--sizes 1000 100] [--repeats 7]``
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from chariots_core import BaseOp, Node, Pipeline, SequentialRunner

IN, OUT = "__pipeline_input__", "__pipeline_output__"
TARGET_VS_FLOOR = 3.0
TARGET_VS_HAMILTON = 10.0
# Enough runs per repeat that one repeat lasts ~50 ms for the fast contenders.
REPEAT_SECONDS = 0.05


class AddOneOp(BaseOp):
    """The trivial op every contender runs."""

    def execute(self, value: int) -> int:
        return value + 1


def chariots_pipeline(ops: list[AddOneOp]) -> Pipeline:
    """A linear chain ``__pipeline_input__ -> v0 -> ... -> __pipeline_output__``."""
    last = len(ops) - 1
    nodes = [
        Node(
            op,
            input_nodes=[IN if index == 0 else f"v{index - 1}"],
            output_nodes=OUT if index == last else f"v{index}",
        )
        for index, op in enumerate(ops)
    ]
    return Pipeline(nodes, f"chain_{len(ops)}")


def floor_runner(ops: list[AddOneOp]) -> Callable[[], int]:
    def run() -> int:
        value = 0
        for op in ops:
            value = op.execute(value)
        return value

    return run


def chariots_runner(ops: list[AddOneOp]) -> Callable[[], int]:
    pipeline = chariots_pipeline(ops)
    runner = SequentialRunner()
    return lambda: runner.run(pipeline, 0)


def kedro_runner(ops: list[AddOneOp]) -> Callable[[], int]:
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.pipeline import node, pipeline
    from kedro.runner import SequentialRunner as KedroSequentialRunner

    logging.getLogger("kedro").setLevel(logging.ERROR)
    names = ["x"] + [f"v{index}" for index in range(len(ops))]
    kedro_pipeline = pipeline(
        [
            node(op.execute, names[index], names[index + 1], name=f"n{index}")
            for index, op in enumerate(ops)
        ]
    )
    runner = KedroSequentialRunner()

    def run() -> int:
        catalog = DataCatalog({"x": MemoryDataset(0), names[-1]: MemoryDataset()})
        runner.run(kedro_pipeline, catalog)
        return catalog[names[-1]].load()

    return run


def hamilton_runner(ops: list[AddOneOp]) -> Callable[[], int]:
    from hamilton import ad_hoc_utils, driver

    # Hamilton logs a help banner with every error, including the expected RecursionError.
    logging.getLogger("hamilton").setLevel(logging.CRITICAL)
    # Hamilton reads a DAG from function signatures: generate f"v{i}(v{i-1}: int) -> int".
    namespace: dict[str, Any] = {"ops": ops}
    source = "\n".join(
        f"def v{index}({'x' if index == 0 else f'v{index - 1}'}: int) -> int:\n"
        f"    return ops[{index}].execute({'x' if index == 0 else f'v{index - 1}'})"
        for index in range(len(ops))
    )
    exec(source, namespace)  # noqa: S102 - generated from integers only
    functions = [namespace[f"v{index}"] for index in range(len(ops))]
    module = ad_hoc_utils.create_temporary_module(*functions)
    hamilton_driver = driver.Builder().with_modules(module).build()
    final = f"v{len(ops) - 1}"
    return lambda: hamilton_driver.execute([final], inputs={"x": 0})[final]


def calibrated(run: Callable[[], int], n_nodes: int) -> tuple[Callable[[], int], int]:
    """Check the chain's result and pick how many runs make one ~50 ms repeat."""
    start = time.perf_counter()
    assert run() == n_nodes, "the chain must add one per node"
    once = max(time.perf_counter() - start, 1e-9)
    return run, max(1, int(REPEAT_SECONDS / once))


def build(name: str, factory: Callable[[list[AddOneOp]], Callable[[], int]], n_nodes: int):
    """A calibrated contender, or None (with the reason printed) when it cannot run."""
    ops = [AddOneOp() for _ in range(n_nodes)]
    try:
        return calibrated(factory(ops), n_nodes)
    except ImportError as exc:
        print(f"  {name:<9} skipped: not installed ({exc.name}); pip install 'chariots[bench]'")
    except RecursionError:
        limit = sys.getrecursionlimit()
        print(f"  {name:<9} failed: RecursionError at the recursion limit ({limit})")
    return None


def interleaved_medians(contenders: dict, n_nodes: int, repeats: int) -> dict[str, float]:
    """Median µs/node per contender; repeats alternate between contenders so that load
    changes on a shared machine hit all of them alike."""
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, (run, loops) in contenders.items():
            start = time.perf_counter()
            for _ in range(loops):
                run()
            samples[name].append((time.perf_counter() - start) / loops / n_nodes * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def ratio(value: float | None, base: float | None) -> str:
    return "n/a" if value is None or base is None else f"{value / base:.3g}x"


def bench_size(n_nodes: int, repeats: int) -> dict[str, float]:
    print(f"\n{n_nodes}-node chain, median of {repeats} repeats (µs per node)")
    contenders = {
        name: contender
        for name, factory in [
            ("floor", floor_runner), ("chariots", chariots_runner), ("hamilton", hamilton_runner)
        ]
        if (contender := build(name, factory, n_nodes)) is not None
    }
    previous_limit = sys.getrecursionlimit()
    if "hamilton" not in contenders and "hamilton" in sys.modules:
        # Hamilton walks its DAG recursively: give it room so that it can be measured at all
        # (a higher limit costs the other contenders nothing).
        sys.setrecursionlimit(max(previous_limit, 20 * n_nodes))
        print(f"  hamilton  retried with the recursion limit raised to {sys.getrecursionlimit()}")
        if (contender := build("hamilton", hamilton_runner, n_nodes)) is not None:
            contenders["hamilton"] = contender
    try:
        results = interleaved_medians(contenders, n_nodes, repeats)
    finally:
        sys.setrecursionlimit(previous_limit)
    # Kedro costs ~1 ms per node: one run per repeat, fewer repeats.
    kedro = build("kedro", kedro_runner, n_nodes)
    if kedro is not None:
        results.update(interleaved_medians({"kedro": (kedro[0], 1)}, n_nodes, max(3, repeats // 2)))
    floor, hamilton = results.get("floor"), results.get("hamilton")
    for name in ("floor", "chariots", "kedro", "hamilton"):
        if name in results:
            print(
                f"  {name:<9} {results[name]:10.3f} µs/node"
                f"   vs floor {ratio(results[name], floor):>9}"
                f"   vs hamilton {ratio(results[name], hamilton):>8}"
            )
    return results


def bench_ten_thousand() -> None:
    ops = [AddOneOp() for _ in range(10_000)]
    start = time.perf_counter()
    pipeline = chariots_pipeline(ops)
    built = time.perf_counter()
    result = SequentialRunner().run(pipeline, 0)
    ran = time.perf_counter()
    assert result == 10_000
    print(
        f"\n10,000-node chain: built and validated in {(built - start) * 1e3:.0f} ms, "
        f"ran in {(ran - built) * 1e3:.1f} ms, result {result} (recursion limit "
        f"{sys.getrecursionlimit()})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    verdicts = []
    for n_nodes in args.sizes:
        results = bench_size(n_nodes, args.repeats)
        floor, chariots, hamilton = (results.get(key) for key in ("floor", "chariots", "hamilton"))
        if floor and chariots:
            verdict = "ok" if chariots / floor <= TARGET_VS_FLOOR else "MISSED"
            verdicts.append(
                f"{n_nodes} nodes: chariots/floor {chariots / floor:.2f}x "
                f"(target <= {TARGET_VS_FLOOR:.0f}x: {verdict})"
            )
        if floor and chariots and hamilton:
            # Overhead = time above the floor: what each framework adds around the op calls.
            ours, theirs = max(chariots - floor, 1e-9), hamilton - floor
            verdict = "ok" if theirs / ours >= TARGET_VS_HAMILTON else "MISSED"
            verdicts.append(
                f"{n_nodes} nodes: per-node overhead above the floor, hamilton {theirs:.2f} µs vs "
                f"chariots {ours:.3f} µs: {theirs / ours:.0f}x less "
                f"(target >= {TARGET_VS_HAMILTON:.0f}x: {verdict})"
            )
    bench_ten_thousand()
    print("\n" + "\n".join(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
