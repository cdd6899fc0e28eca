"""Ops and pipelines for the deployment, split, reload and prediction-log tests.

Importable by test processes and the processes they start (through pytest's ``pythonpath``,
or ``PYTHONPATH=tests/support``), so that every process builds the very same op classes.

- ``remember_pipelines()``: ``train`` fits a :class:`Remember` model on its input, ``pred``
  answers the value it was trained on, so a response shows which trained version computed it.
  ``pred`` first pauses for ``input["pause"]`` seconds when given a dict, to hold a call in flight.
- ``chain_pipelines()``: an :class:`Offset` model (retraining it is a MAJOR change) feeds a
  :class:`Remember` model trained behind it; retraining the offset alone makes ``pred_chain``'s
  saved model stale, which a load refuses.
"""

from __future__ import annotations

import time
from typing import Any

from chariots_core import BaseOp, Chariots, Node, Pipeline, VersionType
from chariots_core.ml import BaseMLOp, MLMode

IN, OUT = "__pipeline_input__", "__pipeline_output__"


class Remember(BaseMLOp):
    """Learns its input as is; predicts it back whatever it is given."""

    def fit(self, value: Any) -> None:
        self._model = value

    def predict(self, _: Any) -> Any:
        return self._model


class Pause(BaseOp):
    """Sleeps ``value["pause"]`` seconds when given a dict that says so; passes its input on."""

    def execute(self, value: Any) -> Any:
        if isinstance(value, dict) and "pause" in value:
            time.sleep(value["pause"])
        return value


class Fail(BaseOp):
    """Raises when its input is ``"fail"``, else passes it on."""

    def execute(self, value: Any) -> Any:
        if value == "fail":
            raise ValueError("asked to fail")
        return value


class Offset(BaseMLOp):
    """Learns an offset; predicts its input plus it. Retraining it is a MAJOR change."""

    training_update_version = VersionType.MAJOR

    def fit(self, value: float) -> None:
        self._model = value

    def predict(self, value: float) -> float:
        return value + self._model


def remember_pipelines() -> list[Pipeline]:
    """``train`` (fits ``remember`` on its input) and ``pred`` (answers what it was trained on)."""
    train = Pipeline([Node(Remember(MLMode.FIT), input_nodes=[IN])], "train")
    pred = Pipeline(
        [
            Node(Pause(), input_nodes=[IN], output_nodes="paused"),
            Node(Fail(), input_nodes=["paused"], output_nodes="checked"),
            Node(Remember(MLMode.PREDICT), input_nodes=["checked"], output_nodes=OUT),
        ],
        "pred",
    )
    return [train, pred]


def chain_pipelines() -> list[Pipeline]:
    """``train_offset``, ``train_chain`` (fits ``remember`` behind ``offset``) and ``pred_chain``."""
    train_offset = Pipeline([Node(Offset(MLMode.FIT), input_nodes=[IN])], "train_offset")
    train_chain = Pipeline(
        [
            Node(Offset(MLMode.PREDICT), input_nodes=[IN], output_nodes="shifted"),
            Node(Remember(MLMode.FIT), input_nodes=["shifted"]),
        ],
        "train_chain",
    )
    pred_chain = Pipeline(
        [
            Node(Offset(MLMode.PREDICT), input_nodes=[IN], output_nodes="shifted"),
            Node(Remember(MLMode.PREDICT), input_nodes=["shifted"], output_nodes=OUT),
        ],
        "pred_chain",
    )
    return [train_offset, train_chain, pred_chain]


def train_and_save(app: Any, value: Any, pipeline: str = "train") -> None:
    """Train ``pipeline`` on ``value`` and save it."""
    app.call_pipeline(pipeline, value)
    app.save_pipeline(pipeline)


def train_chain(app: Any, offset: float, value: float) -> None:
    """Train and save the offset, then the model behind it."""
    train_and_save(app, offset, "train_offset")
    app.load_pipeline("train_chain")
    train_and_save(app, value, "train_chain")


def remember_app(path: Any, **kwargs: Any) -> Chariots:
    """An app serving the remember pipelines on LMDB and files under ``path``."""
    return Chariots(remember_pipelines(), path=path, **kwargs)
