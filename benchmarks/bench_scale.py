"""Scaling out: map_pipeline on worker pools, and save/load through an S3 object store.

1. ``map_pipeline`` of a CPU-bound pipeline (~10 ms of pure-Python work per call, calibrated
   on CPU time at start-up) over ``--calls`` inputs (default 1,000), in the same run:
   serially in process, on ``MultiprocessWorkerPool(2)`` (if installed) and on a Dask
   ``LocalCluster`` of 2 single-threaded worker processes; both pools run the batch in chunks
   (``map_unordered``), without job records. Reported: median wall time, speed-up over serial, and
   the per-input overhead of each pool, measured by mapping a no-op pipeline over as many
   inputs (wall time / inputs). The floor is the same op mapped by a bare
   ``multiprocessing.Pool(2)`` (no Chariots): "vs floor" is a pool's share of what two
   processes achieve right now. The contenders take turns within each repeat. With two free
   cores a pool approaches 2x; on a shared machine the load average printed says how free.
2. Save + load of one op through ``Chariots(path="s3://bucket/app")`` (ObjectOpStore and
   FsspecSaver on s3fs, against a local moto server) versus raw s3fs ``pipe`` + ``cat`` of
   the same bytes, and the HTTP requests of each (counted by a botocore event hook), split
   between the op store and the saver. Target: at most 1.5x the raw time, 16 KB included.
   The requests left are each needed: a save writes the blob (saver ``PUT``), then the commit
   that names it (store ``PUT``, create-if-absent); a load asks for the entry after the newest
   the store knows (store ``GET``: 404 when nothing landed), then reads the blob (saver ``GET``
   from byte 0). Raw s3fs: ``pipe`` is one ``PUT``, ``cat`` a ``HEAD`` (the size) and a ``GET``.
   moto runs in this process: its work shares the GIL with both contenders.

Every figure is the median of ``--repeats`` runs. Run:
``python benchmarks/bench_scale.py [--calls 1000] [--repeats 3] [--skip-s3] [--skip-map]``
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import os
import pathlib
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from chariots_core import BaseOp, Chariots, LoadableOp, Node, Pipeline

IN, OUT = "__pipeline_input__", "__pipeline_output__"
WORK_SECONDS = 0.010
S3_TARGET = 1.5
S3_SIZES = (16 * 1024, 1024 * 1024, 4 * 1024 * 1024, 16 * 1024 * 1024)

class Burn(BaseOp):
    """About ``WORK_SECONDS`` of CPU-bound pure-Python work."""

    def __init__(self, iterations: int) -> None:
        super().__init__()
        self.iterations = iterations

    def execute(self, x: int) -> int:
        total = 0
        for i in range(self.iterations):
            total += i * i
        return x + total % 7


class Noop(BaseOp):
    """Nothing: what remains is the cost of getting an input to a worker and back."""

    def execute(self, x: int) -> int:
        return x


class Blob(LoadableOp):
    """A loadable op whose whole state is a byte string (a stand-in for a model)."""

    def __init__(self, data: bytes = b"") -> None:
        super().__init__()
        self.data = data

    def execute(self, x: Any) -> int:
        return len(self.data)

    def serialize(self) -> bytes:
        return self.data

    def load(self, serialized_object: bytes) -> None:
        self.data = bytes(serialized_object)


def calibrate() -> int:
    """Iterations of Burn's loop that take WORK_SECONDS of CPU time here (median of 5)."""
    probe = 200_000
    costs = []
    for _ in range(5):
        start = time.process_time()
        Burn(probe).execute(0)
        costs.append((time.process_time() - start) / probe)
    return max(1, int(WORK_SECONDS / statistics.median(costs)))


def pipelines(iterations: int) -> list[Pipeline]:
    return [
        Pipeline([Node(Burn(iterations), input_nodes=[IN], output_nodes=OUT)], "burn"),
        Pipeline([Node(Noop(), input_nodes=[IN], output_nodes=OUT)], "noop"),
    ]


# -- 1. map_pipeline ------------------------------------------------------------------------
def _timed(action: Callable[[], Any]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def bench_map(calls: int, repeats: int) -> None:
    import distributed

    from chariots_dask import DaskWorkerPool

    iterations = calibrate()
    app = Chariots(pipelines(iterations), op_store="memory", saver="memory")
    inputs = list(range(calls))
    expected = app.map_pipeline("burn", inputs[:3], progress=False)

    def run(pipeline: str, pool: Any) -> Callable[[], Any]:
        def action() -> None:
            values = app.map_pipeline(pipeline, inputs, worker_pool=pool, progress=False)
            assert values[:3] == (expected if pipeline == "burn" else inputs[:3])

        return action

    one_call = statistics.median(_timed(lambda: app.call_pipeline("burn", 0)) for _ in range(21))
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"map_pipeline of {calls} calls, ~{one_call * 1e3:.1f} ms each (median of {repeats}; load average {load})")
    contenders: list[tuple[str, Any]] = [("serial, in process", None)]
    with contextlib.ExitStack() as stack:
        raw = stack.enter_context(multiprocessing.get_context("spawn").Pool(2))
        burner, chunk = Burn(iterations), max(1, calls // 16)
        try:
            from chariots_multiprocess import MultiprocessWorkerPool
        except ImportError:
            print("  (chariots_multiprocess is not installed: no multiprocess row)")
        else:
            contenders.append(("multiprocess, 2 workers", stack.enter_context(MultiprocessWorkerPool(2))))
        logging.getLogger("distributed").setLevel(logging.ERROR)
        cluster = stack.enter_context(
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1")
        )
        dask_pool = DaskWorkerPool(stack.enter_context(distributed.Client(cluster)))
        stack.callback(dask_pool.close)
        contenders.append(("dask LocalCluster, 2 workers", dask_pool))
        actions = {name: (run("burn", pool), run("noop", pool)) for name, pool in contenders}
        # The floor: the same op's execute mapped by a bare multiprocessing pool (no Chariots).
        floor = "raw multiprocessing.Pool(2)"
        actions[floor] = (lambda: raw.map(burner.execute, inputs, chunk), lambda: raw.map(abs, inputs, chunk))
        for burn_action, noop_action in actions.values():
            noop_action()  # warm-up: workers started, pipeline sent
        # The contenders take turns within each repeat, so a busy moment hits them all.
        burn: dict[str, list[float]] = {name: [] for name in actions}
        noop: dict[str, list[float]] = {name: [] for name in actions}
        for _ in range(repeats):
            for name, (burn_action, noop_action) in actions.items():
                burn[name].append(_timed(burn_action))
                noop[name].append(_timed(noop_action))
    serial = statistics.median(burn[contenders[0][0]])
    best = statistics.median(burn[floor])
    print(f"  {'where':<30} {'wall':>8} {'speed-up':>9} {'vs floor':>9} {'overhead/input':>15}")
    for name in actions:
        wall, overhead = statistics.median(burn[name]), statistics.median(noop[name]) / calls
        print(f"  {name:<30} {wall:>7.2f}s {serial / wall:>8.2f}x {best / wall:>8.2f}x {overhead * 1e3:>12.3f} ms")


# -- 2. S3 object store ---------------------------------------------------------------------
def bench_s3(repeats: int) -> None:
    import s3fs

    sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "tests" / "support"))
    from chariots_test_s3 import moto_s3

    with moto_s3() as endpoint:
        fs = s3fs.S3FileSystem(endpoint_url=endpoint)
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        fs.mkdir(bucket)
        print(
            f"\nsave + load of one op through the S3 object store (moto) vs raw s3fs pipe + cat (median of {repeats})"
        )
        print(f"  {'size':>8} {'raw':>9} {'chariots':>9} {'ratio':>6}")
        counted = {}
        for size in S3_SIZES:
            raw, chariots, counted[size] = _s3_round(fs, bucket, size, repeats)
            verdict = "  ok" if chariots / raw <= S3_TARGET else f"  above the {S3_TARGET}x target"
            print(f"  {_size(size):>8} {raw * 1e3:>7.1f}ms {chariots * 1e3:>7.1f}ms {chariots / raw:>5.2f}x{verdict}")
        print(f"  requests of one save and one load of {_size(S3_SIZES[0])}:")
        for step, sent in counted[S3_SIZES[0]].items():
            print(f"    {step}: " + ", ".join(f"{count} {what}" for what, count in sorted(sent.items())))


def _s3_round(fs: Any, bucket: str, size: int, repeats: int) -> tuple[float, float, dict[str, Counter]]:
    """Median raw and Chariots round-trip times, and the requests of one more round by step."""
    saved, loaded = Blob(), Blob()
    save = Pipeline([Node(saved, input_nodes=[IN], output_nodes=OUT, name="model")], "save")
    load = Pipeline([Node(loaded, input_nodes=[IN], output_nodes=OUT, name="model")], "load")
    app = Chariots([save, load], path=f"s3://{bucket}/app-{size}")
    raw_times, chariots_times = [], []

    def raw_round() -> None:
        path = f"{bucket}/raw-{size}/{uuid.uuid4().hex}"
        fs.pipe(path, saved.data)
        assert len(fs.cat(path)) == size

    for _ in range(repeats + 1):  # the first round warms connections up and is dropped
        saved.data = os.urandom(size)  # new bytes each round: a new blob, as after a retrain
        raw_times.append(_timed(raw_round))
        chariots_times.append(_timed(lambda: app.save_pipeline("save")) + _timed(lambda: app.load_pipeline("load")))
        assert app.call_pipeline("load").value == size
    saved.data = os.urandom(size)  # counted as timed: a retrained model (unchanged bytes are not written again)
    requests = {}
    for step, action in {
        "raw pipe + cat": raw_round,
        "save_pipeline": lambda: app.save_pipeline("save"),
        "load_pipeline": lambda: app.load_pipeline("load"),
    }.items():
        with _counting() as requests[step]:
            action()
    app.close()
    return statistics.median(raw_times[1:]), statistics.median(chariots_times[1:]), requests


@contextlib.contextmanager
def _counting() -> Iterator[Counter]:
    """Count the HTTP requests every s3fs filesystem sends meanwhile, by method and by whom:
    the raw contender, the op store (objects under ``meta/``) or the saver (``blobs/``)."""
    import s3fs

    sent: Counter = Counter()

    def record(request: Any, **_: Any) -> None:
        path = request.url.split("?")[0]
        who = "store" if "/meta/" in path else "saver" if "/blobs/" in path else "raw"
        sent[f"{who} {request.method}"] += 1

    clients = []
    for fs in list(s3fs.S3FileSystem._cache.values()):
        fs.connect()
        clients.append(fs.s3)
        fs.s3.meta.events.register("before-send.s3", record)
    try:
        yield sent
    finally:
        for client in clients:
            client.meta.events.unregister("before-send.s3", record)


def _size(size: int) -> str:
    return f"{size // (1024 * 1024)} MB" if size >= 1024 * 1024 else f"{size // 1024} KB"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="inputs per map_pipeline run (default 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats per figure; medians are reported")
    parser.add_argument("--skip-map", action="store_true", help="skip the map_pipeline part")
    parser.add_argument("--skip-s3", action="store_true", help="skip the S3 part")
    args = parser.parse_args(argv)
    if not args.skip_map:
        bench_map(args.calls, args.repeats)
    if not args.skip_s3:
        bench_s3(max(args.repeats, 5))


if __name__ == "__main__":
    sys.exit(main())
