"""What explaining costs: recording fields at each save, ``why_stale`` and ``status()``.

1. **Fields at save**: a training pipeline whose two models have 3 and 2 versioned fields (plus
   a plain op upstream) is fitted and saved over and over, on the in-memory store and on LMDB +
   files; saves with field records alternate with saves where ``save_pipeline`` is given no
   field records (the **floor**: the save as it was before fields were recorded). Reported:
   median microseconds per save of each, the difference, the ratio, and the bytes of one field
   record as stored (JSON).
2. **why_stale**: ``app.why_stale`` of a prediction pipeline whose upstream model was retrained
   (reads records) and whose code changed (reads field records), against ``load_pipeline`` of
   the same pipeline when nothing is stale (the floor: one load's reads and checks).
3. **status()** of an app of 20 such pipeline trios, one in four stale.

Run: ``python benchmarks/bench_explain.py [--repeats 200]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from chariots_core import BaseOp, Chariots, MemoryOpStore, MemorySaver, Node, Pipeline
from chariots_core import VersionedField, VersionedFieldDict, VersionType
from chariots_core.ml import BaseMLOp, MLMode
from chariots_core.op_store import lineage
from chariots_core.op_store.records import OpFieldsRecord, fields_name, to_json


class Data(BaseOp):
    def execute(self) -> list[float]:
        return [1.0, 2.0, 3.0, 6.0]


def pca_class(components: int) -> type:
    class IrisPCA(BaseMLOp):
        training_update_version = VersionType.MAJOR
        model_class = VersionedField("sklearn.decomposition.PCA", VersionType.MAJOR)
        model_parameters = VersionedFieldDict(VersionType.MAJOR, {"n_components": components, "whiten": False})

        def fit(self, xs: list[float]) -> None:
            self._model = sum(xs) / len(xs)

        def predict(self, xs: list[float]) -> list[float]:
            return [x - self._model for x in xs]

    return IrisPCA


class IrisRF(BaseMLOp):
    model_parameters = VersionedFieldDict(VersionType.MINOR, {"n_estimators": 5, "max_depth": 2})

    def fit(self, xs: list[float]) -> None:
        self._model = sum(xs) / len(xs)

    def predict(self, xs: list[float]) -> list[bool]:
        return [x > self._model for x in xs]


def trio(suffix: str = "", components: int = 2) -> list[Pipeline]:
    pca, rf = f"irispca{suffix}", f"irisrf{suffix}"
    train = Pipeline([
        Node(Data(), output_nodes="raw"),
        Node(pca_class(components)(MLMode.FIT_PREDICT), input_nodes=["raw"], output_nodes="x", name=pca),
        Node(IrisRF(MLMode.FIT), input_nodes=["x"], name=rf),
    ], f"train_iris{suffix}")  # fmt: skip
    train_pca = Pipeline([Node(Data(), output_nodes="raw"), Node(pca_class(components)(MLMode.FIT), input_nodes=["raw"], name=pca)], f"train_pca{suffix}")
    pred = Pipeline([
        Node(pca_class(components)(MLMode.PREDICT), input_nodes=["__pipeline_input__"], output_nodes="x", name=pca),
        Node(IrisRF(MLMode.PREDICT), input_nodes=["x"], output_nodes="__pipeline_output__", name=rf),
    ], f"pred_iris{suffix}")  # fmt: skip
    return [train, train_pca, pred]


def median_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def fields_at_save(make_app: Callable[[], Chariots], repeats: int) -> tuple[float, float, int]:
    """Median µs per save with field records and without; bytes of the PCA's field record."""
    app = make_app()
    recorded, floor = [], []
    real = lineage.fields_appends
    try:
        for index in range(2 * repeats):
            app.call_pipeline("train_iris")
            with_fields = index % 2 == 0
            lineage.fields_appends = real if with_fields else (lambda nodes: [])
            start = time.perf_counter()
            app.save_pipeline("train_iris")
            (recorded if with_fields else floor).append(time.perf_counter() - start)
    finally:
        lineage.fields_appends = real
    app.call_pipeline("train_iris")
    app.save_pipeline("train_iris")
    version = str(app.pipeline_versions("train_iris")["irispca"])
    size = len(to_json(app.op_store.journal(OpFieldsRecord, fields_name("irispca", version))[0].record))
    app.close()
    return median_us(recorded), median_us(floor), size


def timed(action: Callable[[], Any], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        samples.append(time.perf_counter() - start)
    return median_us(samples)


def explaining(repeats: int) -> tuple[float, float, float]:
    """µs of a load when nothing is stale, why_stale of a retrain, why_stale of a code change."""
    store, saver = MemoryOpStore(), MemorySaver()
    app = Chariots(trio(), op_store=store, saver=saver)
    app.call_pipeline("train_iris")
    app.save_pipeline("train_iris")
    load = timed(lambda: app.load_pipeline("pred_iris"), repeats)
    app.call_pipeline("train_pca")
    app.save_pipeline("train_pca")
    retrained = timed(lambda: app.why_stale("pred_iris"), repeats)
    new = Chariots(trio(components=3), op_store=store, saver=saver)
    new.call_pipeline("train_pca")
    new.save_pipeline("train_pca")
    assert new.why_stale("pred_iris").edges[0].change.fields
    changed = timed(lambda: new.why_stale("pred_iris"), repeats)
    return load, retrained, changed


def status_of_many(repeats: int) -> tuple[float, int]:
    pipelines = [pipeline for index in range(20) for pipeline in trio(f"_{index}")]
    app = Chariots(pipelines, op_store="memory", saver="memory")
    for index in range(20):
        app.call_pipeline(f"train_iris_{index}")
        app.save_pipeline(f"train_iris_{index}")
        app.load_pipeline(f"pred_iris_{index}")
        if index % 4 == 0:
            app.call_pipeline(f"train_pca_{index}")
            app.save_pipeline(f"train_pca_{index}")
    stale = sum(len(pipeline["stale"]) for pipeline in app.status()["pipelines"])
    return timed(app.status, repeats), stale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    print(f"1. fields at save (train_iris: 2 models, 5 fields; medians of {args.repeats} saves each, alternating)")
    with tempfile.TemporaryDirectory() as directory:
        backends = {
            "memory": lambda: Chariots(trio(), op_store="memory", saver="memory"),
            "lmdb + files": lambda: Chariots(trio(), path=directory),
        }
        for name, make in backends.items():
            recorded, floor, size = fields_at_save(make, args.repeats)
            print(f"   {name:13s} save {recorded:8.1f} µs with fields, {floor:8.1f} µs without (floor): "
                  f"+{recorded - floor:6.1f} µs, ratio {recorded / floor:.2f}; the PCA's field record: {size} bytes")  # fmt: skip
    load, retrained, changed = explaining(args.repeats)
    print(f"2. load_pipeline, nothing stale (floor) {load:.1f} µs; why_stale of a retrain {retrained:.1f} µs "
          f"({retrained / load:.2f}x), of a code change {changed:.1f} µs ({changed / load:.2f}x)")  # fmt: skip
    status, stale = status_of_many(max(args.repeats // 10, 5))
    print(f"3. status() of 60 pipelines ({stale} stale edges): {status / 1000:.2f} ms")


if __name__ == "__main__":
    main()
