"""Iris-shaped pipelines of tiny pure-Python models, for the tests that explain staleness.

``IrisPCA`` stands for the tutorial's PCA (retraining it, or changing its MAJOR
``model_parameters``, makes the model behind it stale), ``IrisRF`` for the forest. A test that
changes the PCA's code builds another class of the same name with :func:`pca_class`, as a user
editing the module would; apps made with :func:`shared_apps` share one store, as two processes
running old and new code would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from chariots_core import BaseOp, Chariots, MemoryOpStore, MemorySaver, Node, Pipeline, VersionedFieldDict, VersionType
from chariots_core.ml import BaseMLOp, MLMode

IN, OUT = "__pipeline_input__", "__pipeline_output__"
DATA = [1.0, 2.0, 3.0, 6.0]


class Data(BaseOp):
    """The training data set (a plain op)."""

    def execute(self) -> list[float]:
        return list(DATA)


def pca_class(**parameters: Any) -> type:
    """A new ``IrisPCA`` class (node name ``irispca``) whose MAJOR ``model_parameters`` are ``parameters``."""

    class IrisPCA(BaseMLOp):
        training_update_version = VersionType.MAJOR
        model_parameters = VersionedFieldDict(VersionType.MAJOR, parameters)

        def fit(self, xs: list[float]) -> None:
            self._model = sum(xs) / len(xs)

        def predict(self, xs: list[float]) -> list[float]:
            return [x - self._model for x in xs]

    return IrisPCA


IrisPCA = pca_class(n_components=2)


class IrisRF(BaseMLOp):
    """Learns a threshold on what the PCA outputs; retraining it is a PATCH change."""

    def fit(self, xs: list[float]) -> None:
        self._model = sum(xs) / len(xs) + 0.5

    def predict(self, xs: list[float]) -> list[bool]:
        return [x > self._model for x in xs]


NAMES = ("train_iris", "train_pca", "pred_iris")


def iris_pipelines(pca: type = IrisPCA, data: type = Data, names: tuple[str, str, str] = NAMES) -> tuple[Pipeline, Pipeline, Pipeline]:
    """``(train_iris, train_pca, pred_iris)`` around the ``pca`` class (and the ``data`` class),
    named ``names``."""
    train_iris = Pipeline([
        Node(data(), output_nodes="raw"),
        Node(pca(MLMode.FIT_PREDICT), input_nodes=["raw"], output_nodes="pca_x"),
        Node(IrisRF(MLMode.FIT), input_nodes=["pca_x"]),
    ], names[0])  # fmt: skip
    train_pca = Pipeline([Node(data(), output_nodes="raw"), Node(pca(MLMode.FIT), input_nodes=["raw"])], names[1])
    pred_iris = Pipeline([
        Node(pca(MLMode.PREDICT), input_nodes=[IN], output_nodes="pca_x"),
        Node(IrisRF(MLMode.PREDICT), input_nodes=["pca_x"], output_nodes=OUT),
    ], names[2])  # fmt: skip
    return train_iris, train_pca, pred_iris


def train(app: Chariots, pipeline: str) -> None:
    """Run and save a training pipeline."""
    app.call_pipeline(pipeline)
    app.save_pipeline(pipeline)


@contextmanager
def shared_apps(kind: str, tmp_path: Any) -> Iterator[Callable[..., Chariots]]:
    """``make(pipelines, **kwargs)``: apps on one store, in memory or LMDB + files under ``tmp_path``."""
    apps: list[Chariots] = []
    store, saver = (MemoryOpStore(), MemorySaver()) if kind == "memory" else (None, None)

    def make(pipelines: list[Pipeline], **kwargs: Any) -> Chariots:
        if store is not None:
            kwargs.setdefault("op_store", store)
            kwargs.setdefault("saver", saver)
        else:
            kwargs.setdefault("path", tmp_path / "data")
        apps.append(Chariots(pipelines, **kwargs))
        return apps[-1]

    try:
        yield make
    finally:
        for app in apps:
            app.close()
