"""The ops of the iris tutorial: load the data, split it, reduce it with a PCA, classify it.

Data ops are plain :class:`~chariots_core.BaseOp`\\ s; the two models are scikit-learn ops
whose ``model_parameters`` are part of their versions.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sklearn import datasets
from sklearn.decomposition import PCA
from sklearn.ensemble import RandomForestClassifier

from chariots_core import BaseOp, VersionedField, VersionedFieldDict, VersionType
from chariots_sklearn import SKSupervisedOp, SKUnsupervisedOp

__all__ = ["DownloadIris", "XYSplit", "FromArray", "IrisPCA", "IrisRF"]


class DownloadIris(BaseOp):
    """The iris dataset as a DataFrame (scikit-learn's bundled copy: no network needed)."""

    def execute(self) -> pd.DataFrame:
        iris = datasets.load_iris()
        df = pd.DataFrame(data=iris["data"], columns=iris["feature_names"])
        df["target"] = iris["target"]
        return df


class XYSplit(BaseOp):
    """Split the iris frame into features and target.

    Returns plain arrays: the prediction pipeline receives plain lists such as
    ``[[1, 2, 3, 4]]``, and scikit-learn warns when a model fitted on named columns
    predicts on unnamed ones.
    """

    def execute(self, df: pd.DataFrame) -> tuple[Any, Any]:
        return df.drop(columns="target").to_numpy(), df["target"].to_numpy()


class FromArray(BaseOp):
    """Turn a numpy array into a list, so the prediction is plain JSON."""

    def execute(self, array: Any) -> list:
        return array.tolist()


class IrisPCA(SKUnsupervisedOp):
    """A 2-component PCA. Its parameters and each retraining change its MAJOR version, so the
    models trained on its output must be retrained whenever it changes."""

    training_update_version = VersionType.MAJOR
    model_class = VersionedField(PCA, VersionType.MAJOR)
    model_parameters = VersionedFieldDict(VersionType.MAJOR, {"n_components": 2})


class IrisRF(SKSupervisedOp):
    """A small random forest classifying the PCA's output; retraining it is a PATCH change."""

    model_class = RandomForestClassifier
    model_parameters = VersionedFieldDict(VersionType.MINOR, {"n_estimators": 5, "max_depth": 2})
