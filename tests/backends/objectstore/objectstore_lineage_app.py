"""The tutorial's lineage case as a script, run in separate processes against one bucket.

A MAJOR preprocessing op (``Center``) feeds a model (``Threshold``). Usage::

    python objectstore_lineage_app.py <url> train_all|train_center|predict

``predict`` prints one JSON line: ``{"value": ...}`` or ``{"error": <class>, "message": ...}``.
The S3 endpoint and credentials come from the environment.
"""

from __future__ import annotations

import json
import sys

from chariots_core import Chariots, Node, Pipeline, VersionError, VersionType
from chariots_core.ml import BaseMLOp, MLMode

DATA = [1.0, 2.0, 3.0, 6.0]


class Center(BaseMLOp):
    """Learns the mean of its input; retraining it is a MAJOR change."""

    training_update_version = VersionType.MAJOR

    def fit(self, xs):
        self._model = sum(xs) / len(xs)

    def predict(self, xs):
        return [x - self._model for x in xs]


class Threshold(BaseMLOp):
    """Learns half the largest centred value; predicts which inputs exceed it."""

    def fit(self, xs):
        self._model = max(xs) / 2

    def predict(self, xs):
        return [x > self._model for x in xs]


def pipelines() -> list[Pipeline]:
    """The training pipelines and the prediction pipeline."""
    train_all = Pipeline(
        [
            Node(Center(MLMode.FIT_PREDICT), input_nodes=["__pipeline_input__"], output_nodes="centred"),
            Node(Threshold(MLMode.FIT), input_nodes=["centred"]),
        ],
        "train_all",
    )
    train_center = Pipeline([Node(Center(MLMode.FIT), input_nodes=["__pipeline_input__"])], "train_center")
    predict = Pipeline(
        [
            Node(Center(MLMode.PREDICT), input_nodes=["__pipeline_input__"], output_nodes="centred"),
            Node(Threshold(MLMode.PREDICT), input_nodes=["centred"], output_nodes="__pipeline_output__"),
        ],
        "predict",
    )
    return [train_all, train_center, predict]


def main(url: str, command: str) -> None:
    with Chariots(pipelines(), path=url) as app:
        if command in ("train_all", "train_center"):
            app.call_pipeline(command, DATA)
            app.save_pipeline(command)
            print(json.dumps({"saved": command}))
            return
        try:
            app.load_pipeline("predict")
        except VersionError as exc:
            print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
            return
        print(json.dumps({"value": app.call_pipeline("predict", DATA).value}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
