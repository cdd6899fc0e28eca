"""The pipelines of the iris tutorial, built around a given PCA op class.

``make_pipelines(IrisPCA)`` gives the tutorial's ``train_iris`` and ``pred_iris``, plus
``train_pca``, which retrains only the PCA. Passing another PCA class (same op name) is how
the quickstart shows a code change.
"""

from __future__ import annotations

from iris_ops import DownloadIris, FromArray, IrisPCA, IrisRF, XYSplit

from chariots_core import Node, Pipeline
from chariots_core.ml import MLMode

__all__ = ["make_pipelines"]


def make_pipelines(pca_class: type = IrisPCA) -> tuple[Pipeline, Pipeline, Pipeline]:
    """Return ``(train_iris, train_pca, pred_iris)`` using ``pca_class`` for the PCA."""
    train_iris = Pipeline(
        [
            Node(DownloadIris(), output_nodes="iris_df"),
            Node(XYSplit(), input_nodes=["iris_df"], output_nodes=["raw_X", "y"]),
            Node(pca_class(MLMode.FIT_PREDICT), input_nodes=["raw_X"], output_nodes="pca_X"),
            Node(IrisRF(MLMode.FIT), input_nodes=["pca_X", "y"]),
        ],
        "train_iris",
    )
    train_pca = Pipeline(
        [
            Node(DownloadIris(), output_nodes="iris_df"),
            Node(XYSplit(), input_nodes=["iris_df"], output_nodes=["raw_X", "y"]),
            Node(pca_class(MLMode.FIT), input_nodes=["raw_X"]),
        ],
        "train_pca",
    )
    pred_iris = Pipeline(
        [
            Node(pca_class(MLMode.PREDICT), input_nodes=["__pipeline_input__"], output_nodes="x_pca"),
            Node(IrisRF(MLMode.PREDICT), input_nodes=["x_pca"], output_nodes="pred"),
            Node(FromArray(), input_nodes=["pred"], output_nodes="__pipeline_output__"),
        ],
        "pred_iris",
    )
    return train_iris, train_pca, pred_iris
