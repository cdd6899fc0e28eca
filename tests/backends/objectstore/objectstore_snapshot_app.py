"""One of several processes that save linked pairs of models to one store and load them, at once.

``Scale`` retrains as a MAJOR change and feeds ``Offset``: a load that took ``Scale`` from one
save and ``Offset`` from another would be refused (``VersionError``), so every load must read
one snapshot. Usage::

    python objectstore_snapshot_app.py <url> <rounds>

Each round trains both, saves them (one commit), then loads the prediction pipeline. Prints one
JSON line: ``{"saved": [[scale version, offset version], ...], "loaded": [[...], ...],
"failed": ["<error class>: <message>", ...]}``. The S3 endpoint and credentials come from the
environment.
"""

from __future__ import annotations

import json
import sys

from chariots_core import Chariots, ChariotsError, Node, Pipeline, VersionType
from chariots_core.ml import BaseMLOp, MLMode

DATA = [1.0, 2.0, 4.0]


class Scale(BaseMLOp):
    """Learns the mean of its input; retraining it is a MAJOR change."""

    training_update_version = VersionType.MAJOR

    def fit(self, xs):
        self._model = sum(xs) / len(xs)

    def predict(self, xs):
        return [x / self._model for x in xs]


class Offset(BaseMLOp):
    """Learns the smallest scaled value."""

    def fit(self, xs):
        self._model = min(xs)

    def predict(self, xs):
        return [x - self._model for x in xs]


def pipelines() -> list[Pipeline]:
    train = Pipeline(
        [
            Node(Scale(MLMode.FIT_PREDICT), input_nodes=["__pipeline_input__"], output_nodes="scaled"),
            Node(Offset(MLMode.FIT), input_nodes=["scaled"]),
        ],
        "train",
    )
    predict = Pipeline(
        [
            Node(Scale(MLMode.PREDICT), input_nodes=["__pipeline_input__"], output_nodes="scaled"),
            Node(Offset(MLMode.PREDICT), input_nodes=["scaled"], output_nodes="__pipeline_output__"),
        ],
        "predict",
    )
    return [train, predict]


def main(url: str, rounds: int) -> None:
    saved, loaded, failed = [], [], []
    with Chariots(pipelines(), path=url) as app:
        for _ in range(rounds):
            app.call_pipeline("train", DATA)
            app.save_pipeline("train")
            versions = app.pipeline_versions("train")
            saved.append([str(versions["scale"]), str(versions["offset"])])
            try:
                picked = app.load_pipeline("predict")
                app.call_pipeline("predict", DATA)
            except ChariotsError as exc:
                failed.append(f"{type(exc).__name__}: {exc}")
            else:
                loaded.append([str(picked["scale"]), str(picked["offset"])])
    print(json.dumps({"saved": saved, "loaded": loaded, "failed": failed}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
