"""The iris tutorial with a small Keras network in place of the PCA and the random forest.

Run it from the repository root (CPU, a few seconds)::

    python examples/iris/keras_iris.py

``train_keras_iris`` one-hot encodes the target and fits the network; ``pred_keras_iris``
loads the saved network (Keras's ``.keras`` format, through the op store) and returns the
predicted classes.
"""

from __future__ import annotations

import sys
import tempfile
from typing import Any

import numpy as np
from iris_ops import DownloadIris, XYSplit

# chariots_keras picks the JAX backend (unless you chose one): import it before keras.
from chariots_keras import KerasOp  # isort: skip
import keras  # isort: skip

from chariots_core import BaseOp, Chariots, Node, Pipeline, VersionedFieldDict, VersionType
from chariots_core.ml import MLMode

__all__ = ["Categorize", "IrisNet", "ArgMax", "make_keras_pipelines", "main"]

N_CLASSES = 3


class Categorize(BaseOp):
    """One-hot encode the class labels, as a softmax network's targets."""

    def execute(self, y: Any) -> np.ndarray:
        return np.eye(N_CLASSES, dtype="float32")[np.asarray(y)]


class IrisNet(KerasOp):
    """A dense network: 4 features -> 8 hidden units -> 3 class probabilities."""

    fit_params = VersionedFieldDict(VersionType.MAJOR, {"epochs": 30, "batch_size": 16})

    def _init_model(self, *input_data_sets: Any) -> keras.Model:
        n_features = np.shape(input_data_sets[0])[1]
        model = keras.Sequential(
            [
                keras.Input((n_features,)),
                keras.layers.Dense(8, activation="relu"),
                keras.layers.Dense(N_CLASSES, activation="softmax"),
            ]
        )
        model.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.Adam(learning_rate=0.05))
        return model


class ArgMax(BaseOp):
    """The most probable class of each row, as a plain list."""

    def execute(self, probabilities: Any) -> list[int]:
        return np.argmax(probabilities, axis=1).tolist()


def make_keras_pipelines(verbose: int = 0) -> tuple[Pipeline, Pipeline]:
    """Return ``(train_keras_iris, pred_keras_iris)``."""
    train = Pipeline(
        [
            Node(DownloadIris(), output_nodes="iris_df"),
            Node(XYSplit(), input_nodes=["iris_df"], output_nodes=["X", "y"]),
            Node(Categorize(), input_nodes=["y"], output_nodes="y_cat"),
            Node(IrisNet(MLMode.FIT, verbose=verbose), input_nodes=["X", "y_cat"]),
        ],
        "train_keras_iris",
    )
    pred = Pipeline(
        [
            Node(IrisNet(MLMode.PREDICT, verbose=verbose), input_nodes=["__pipeline_input__"], output_nodes="proba"),
            Node(ArgMax(), input_nodes=["proba"], output_nodes="__pipeline_output__"),
        ],
        "pred_keras_iris",
    )
    return train, pred


def main() -> int:
    """Train, save, load and predict with the Keras iris pipelines in a temporary store."""
    train, pred = make_keras_pipelines()
    with tempfile.TemporaryDirectory(prefix="chariots-keras-iris-") as path:
        with Chariots([train, pred], path=path) as app:
            print(f"Keras backend: {keras.backend.backend()}; store: {path}")
            app.call_pipeline(train)
            app.save_pipeline(train)
            print("train_keras_iris: network fitted and saved (.keras format)")
            versions = app.load_pipeline(pred)
            print(f"pred_keras_iris loaded {', '.join(f'{name} {v!r}' for name, v in versions.items())}")
            sample = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
            print(f"{sample} -> classes {app.call_pipeline(pred, sample).value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
