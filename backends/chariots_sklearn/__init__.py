"""scikit-learn ops: subclass, set ``model_class`` and ``model_parameters``, pick a mode.

    >>> class PCAOp(SKUnsupervisedOp):
    ...     training_update_version = VersionType.MAJOR
    ...     model_parameters = VersionedFieldDict(VersionType.MAJOR, {"n_components": 2})
    ...     model_class = VersionedField(PCA, VersionType.MAJOR)
    >>> class LogisticOp(SKSupervisedOp):
    ...     model_class = LogisticRegression
    >>> train = Pipeline([
    ...     Node(IrisFullDataSet(), output_nodes=["x", "y"]),
    ...     Node(PCAOp(MLMode.FIT_PREDICT), input_nodes=["x"], output_nodes="x_transformed"),
    ...     Node(LogisticOp(MLMode.FIT), input_nodes=["x_transformed", "y"]),
    ... ], "train")

``model_parameters`` and ``fit_extra_parameters`` are :class:`VersionedFieldDict`\\ s, so
changing one of their values changes the op's version; so does ``model_class`` or
``predict_function`` when declared as a :class:`VersionedField`. Each fit starts from a fresh
estimator, ``_init_model()``: ``model_class(**model_parameters)`` (override ``_init_model`` to
build it otherwise, as in chariots 0.2); models are saved with the op's ``serializer_cls``
(dill by default).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from typing import Any

from chariots_core.errors import BackendError, MLOpDefinitionError
from chariots_core.ml import BaseMLOp, MLMode
from chariots_core.pipelines.callbacks import OpCallBack
from chariots_core.versioning import VersionedFieldDict, VersionType

__all__ = ["BaseSKOp", "SKSupervisedOp", "SKUnsupervisedOp"]

# Checked, not imported: the user's own `from sklearn... import` pays for the import.
if importlib.util.find_spec("sklearn") is None:
    raise BackendError("chariots_sklearn needs scikit-learn, which is not installed; pip install 'chariots[sklearn]'")


class BaseSKOp(BaseMLOp):
    """Shared behaviour of scikit-learn ops: build the estimator from the class attributes.

    :param mode: what the op does when run (an :class:`~chariots_core.ml.MLMode`).
    :param op_callbacks: callbacks run around each execution.
    :raises MLOpDefinitionError: if ``model_class`` is not set or lacks the method the op
        predicts with.
    """

    #: The estimator class (or a ``VersionedField`` of it), e.g. ``RandomForestClassifier``.
    model_class: Any = None
    #: Keyword arguments of ``model_class``; each item is part of the op's version.
    model_parameters = VersionedFieldDict(VersionType.MAJOR, {})
    #: Keyword arguments passed to the estimator's ``fit``; each item is part of the version.
    fit_extra_parameters = VersionedFieldDict(VersionType.MAJOR, {})
    #: The estimator method the op predicts with.
    predict_function: str = "predict"

    def __init__(self, mode: MLMode | str, op_callbacks: Iterable[OpCallBack] | None = None) -> None:
        super().__init__(mode, op_callbacks)
        name = type(self).__name__
        if not isinstance(self.model_class, type):
            msg = (
                f"{name}.model_class must be a scikit-learn estimator class, e.g. "
                f"model_class = RandomForestClassifier (got {self.model_class!r})"
            )
            raise MLOpDefinitionError(msg)
        if not callable(getattr(self.model_class, self.predict_function, None)):
            msg = (
                f"{name}.predict_function is {self.predict_function!r}, but "
                f"{self.model_class.__name__} has no such method; set predict_function to one "
                "of its methods, e.g. 'predict', 'predict_proba' or 'transform'"
            )
            raise MLOpDefinitionError(msg)

    def _init_model(self) -> Any:
        """A new, unfitted estimator built from ``model_class`` and ``model_parameters``; each fit starts from it."""
        return self.model_class(**dict(self.model_parameters))

    def predict(self, X: Any) -> Any:  # noqa: N803 - scikit-learn's names
        """Apply ``predict_function`` of the fitted estimator to ``X``.

        Do not override it: change ``predict_function`` instead.
        """
        return getattr(self._model, self.predict_function)(X)


class SKSupervisedOp(BaseSKOp):
    """A supervised scikit-learn model: fit on ``(X, y)``, predict on ``X``.

    Wire ``X`` and ``y`` to the node in ``FIT`` and ``FIT_PREDICT`` modes, and only ``X`` in
    ``PREDICT`` mode. Set ``predict_function`` (e.g. ``"predict_proba"``, ideally as a
    ``VersionedField``) to predict with another method.
    """

    def fit(self, X: Any, y: Any) -> None:  # noqa: N803
        """Fit the fresh estimator on ``X`` and ``y``. Do not override it."""
        self._model.fit(X, y, **dict(self.fit_extra_parameters))


class SKUnsupervisedOp(BaseSKOp):
    """An unsupervised scikit-learn model (PCA, scalers, clustering): fit on ``X``.

    Wire a single ``X`` input in every mode. Predicting ``transform``\\ s ``X``; set
    ``predict_function = "predict"`` for clustering models whose output is a label.
    """

    predict_function: str = "transform"

    def fit(self, X: Any) -> None:  # noqa: N803
        """Fit the fresh estimator on ``X``. Do not override it."""
        self._model.fit(X, **dict(self.fit_extra_parameters))
