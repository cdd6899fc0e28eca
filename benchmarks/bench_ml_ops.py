"""What wrapping models in ML ops costs at serving time, against calling the models directly.

Measured in one run, medians over several repeats:

- ``sklearn predict``: ``app.call_pipeline(pred_iris, [[1, 2, 3, 4]])`` (the quickstart's
  PCA -> random forest -> list pipeline, loaded from an LMDB store) against the floor
  ``rf.predict(pca.transform(x)).tolist()`` on the same fitted models;
- ``keras predict``: a loaded ``KerasOp`` in ``PREDICT`` mode on a nested list (converted and
  shape-checked) against ``model.predict(np.asarray(x))``;
- ``keras save+load``: ``op.serialize()`` + ``load()`` (the ``.keras`` format through a
  temporary directory, plus the training header) against ``model.save`` +
  ``keras.saving.load_model`` on one file.

Target: every ratio at most 1.2 (the op layer adds little to what the model itself costs).

Run from the repository root: ``python benchmarks/bench_ml_ops.py [--repeats 15]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "iris"))

import numpy as np  # noqa: E402
from iris_ops import DownloadIris, XYSplit  # noqa: E402
from iris_pipelines import make_pipelines  # noqa: E402
from keras_iris import Categorize, IrisNet  # noqa: E402  (imports chariots_keras: JAX backend)

import keras  # noqa: E402  isort: skip
from chariots_core import Chariots  # noqa: E402
from chariots_core.ml import MLMode  # noqa: E402

TARGET = 1.2
SAMPLE = [[1.0, 2.0, 3.0, 4.0]]


def _seconds(function: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - started) / calls


def compare(ours: Callable[[], object], floor: Callable[[], object], repeats: int, calls: int = 20) -> tuple[float, float]:
    """Median seconds per call of each; the two are timed in alternation, so that load from
    other processes hits both alike."""
    ours(), floor()  # warm up (JIT compilation, caches)
    pairs = [(_seconds(ours, calls), _seconds(floor, calls)) for _ in range(repeats)]
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


def report(name: str, timings: tuple[float, float]) -> bool:
    ours, floor = timings
    ratio = ours / floor
    verdict = "ok" if ratio <= TARGET else f"ABOVE TARGET {TARGET}"
    print(f"{name:<18} chariots {ours * 1e3:9.3f} ms   floor {floor * 1e3:9.3f} ms   ratio {ratio:5.2f}  {verdict}")
    return ratio <= TARGET


def bench_sklearn(path: str, repeats: int) -> bool:
    train, _, pred = make_pipelines()
    with Chariots([train, pred], path=path) as app:
        app.call_pipeline(train)
        app.save_pipeline(train)
        app.load_pipeline(pred)
        pca = train.node_for_name["irispca"].op.model
        forest = train.node_for_name["irisrf"].op.model
        timings = compare(
            lambda: app.call_pipeline(pred, SAMPLE).value,
            lambda: forest.predict(pca.transform(SAMPLE)).tolist(),
            repeats,
        )
    return report("sklearn predict", timings)


def bench_keras(repeats: int) -> list[bool]:
    features, target = XYSplit().execute(DownloadIris().execute())
    trainer = IrisNet(MLMode.FIT, verbose=0)
    trainer.execute(features, Categorize().execute(target))
    op = IrisNet(MLMode.PREDICT, verbose=0)
    op.load(trainer.serialize())
    model = op.model
    ok = [report("keras predict", compare(lambda: op.execute(SAMPLE), lambda: model.predict(np.asarray(SAMPLE), verbose=0), repeats))]

    def direct_round_trip() -> None:
        with tempfile.TemporaryDirectory() as scratch:
            file = os.path.join(scratch, "model.keras")
            model.save(file)
            keras.saving.load_model(file)

    def op_round_trip() -> None:
        IrisNet(MLMode.PREDICT, verbose=0).load(trainer.serialize())

    ok.append(report("keras save+load", compare(op_round_trip, direct_round_trip, max(3, repeats // 3), calls=1)))
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    print(f"keras backend: {keras.backend.backend()}; medians of {args.repeats} alternated runs")
    with tempfile.TemporaryDirectory(prefix="bench-ml-") as path:
        results = [bench_sklearn(path, args.repeats), *bench_keras(args.repeats)]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
