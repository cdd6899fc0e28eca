"""scikit-learn ops: subclass, set ``model_class`` and ``model_parameters``, pick a mode.

    >>> class IrisPCA(SKUnsupervisedOp):
    ...     training_update_version = VersionType.MAJOR
    ...     model_class = PCA
    ...     model_parameters = VersionedFieldDict(VersionType.MAJOR, {"n_components": 2})

``model_parameters`` (and ``model_class`` if declared as a ``VersionedField``) are part of
the op's version: changing them makes a new version whose downstream models must be retrained.
"""

from __future__ import annotations

from typing import Any

from chariots_core.errors import ChariotsError
from chariots_core.ml import BaseMLOp
from chariots_core.versioning import VersionedField, VersionedFieldDict, VersionType

__all__ = ["BaseSKOp", "SKSupervisedOp", "SKUnsupervisedOp"]


class BaseSKOp(BaseMLOp):
    """Shared behaviour of scikit-learn ops: build the model from the class attributes."""

    model_class: Any = None
    model_parameters = VersionedFieldDict(VersionType.MAJOR, {})
    fit_extra_parameters = VersionedFieldDict(VersionType.MAJOR, {})

    def _init_model(self) -> Any:
        if self.model_class is None:
            msg = (
                f"{type(self).__name__} has no model_class; set it to a scikit-learn estimator "
                "class, e.g. model_class = RandomForestClassifier"
            )
            raise ChariotsError(msg)
        return self.model_class(**dict(self.model_parameters))


class SKSupervisedOp(BaseSKOp):
    """A supervised scikit-learn model: fit on ``(X, y)``, predict on ``X``.

    ``predict_function`` names the estimator method used to predict (``"predict_proba"``...).
    """

    predict_function = VersionedField("predict", VersionType.MAJOR)

    def fit(self, X: Any, y: Any) -> None:  # noqa: N803 - scikit-learn's names
        model = self._init_model()
        model.fit(X, y, **dict(self.fit_extra_parameters))
        self._model = model

    def predict(self, X: Any) -> Any:  # noqa: N803
        return getattr(self._model, self.predict_function)(X)


class SKUnsupervisedOp(BaseSKOp):
    """An unsupervised scikit-learn model (PCA, scalers...): fit on ``X``, ``transform`` ``X``."""

    def fit(self, X: Any) -> None:  # noqa: N803
        model = self._init_model()
        model.fit(X, **dict(self.fit_extra_parameters))
        self._model = model

    def predict(self, X: Any) -> Any:  # noqa: N803
        return self._model.transform(X)
