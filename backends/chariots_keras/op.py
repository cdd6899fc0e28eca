"""The Keras op: a neural network built by ``_init_model``, fitted and served in a pipeline."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import numpy as np

from chariots_core.ml import BaseMLOp, MLMode, MLOpDefinitionError
from chariots_core.pipelines.callbacks import OpCallBack
from chariots_core.versioning import VersionedField, VersionedFieldDict, VersionType

from ._keras import keras
from .serializer import KerasSerializer

__all__ = ["KerasOp"]


class KerasOp(BaseMLOp):
    """An op around a Keras 3 model.

    Subclass it, override :meth:`_init_model` to build and compile the model, and set the
    training parameters (keyword arguments of ``model.fit``: epochs, batch size, callbacks...)
    in ``input_params``, as in chariots 0.2, or ``fit_params``::

        class KerasLinear(KerasOp):
            fit_params = VersionedFieldDict(VersionType.MAJOR, {"epochs": 3, "batch_size": 32})

            def _init_model(self, *input_data_sets):
                model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
                model.compile(loss="categorical_crossentropy", optimizer="adam")
                return model

    In ``FIT`` and ``FIT_PREDICT`` modes, wire the inputs then the targets
    (``input_nodes=["X", "y_cat"]``): ``_init_model`` receives them (to size the network),
    and every fit starts from the fresh model it returns. In ``PREDICT`` mode, wire the inputs
    only. The model is saved in Keras's ``.keras`` format.

    :param mode: what the op does when run (an :class:`~chariots_core.ml.MLMode`).
    :param verbose: Keras's ``verbose`` for ``fit`` and ``predict`` (0 silent, 1 progress
        bar, 2 one line per epoch, ``None`` Keras's ``"auto"``).
    :param op_callbacks: callbacks run around each execution.
    :raises MLOpDefinitionError: when the class is defined, if ``input_params`` and
        ``fit_params`` both set one keyword.
    """

    serializer_cls = KerasSerializer
    #: Keyword arguments of ``model.fit`` (chariots 0.2's name); each item is part of the version.
    input_params = VersionedFieldDict(VersionType.MAJOR, {})
    #: More keyword arguments of ``model.fit``; each item is part of the op's version.
    fit_params = VersionedFieldDict(VersionType.MAJOR, {})
    #: Keyword arguments of ``model.predict`` (e.g. ``batch_size``); part of the op's version.
    predict_params = VersionedFieldDict(VersionType.MAJOR, {})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for params in (cls.input_params, cls.fit_params):
            _stable_callbacks(params)
        both = sorted(set(cls.input_params) & set(cls.fit_params))
        if both:
            msg = (
                f"{cls.__name__} sets {', '.join(map(repr, both))} in both input_params and "
                "fit_params, which both go to model.fit; set each keyword in one of them"
            )
            raise MLOpDefinitionError(msg)

    def __init__(
        self,
        mode: MLMode | str,
        verbose: int | None = 1,
        op_callbacks: Iterable[OpCallBack] | None = None,
    ) -> None:
        super().__init__(mode, op_callbacks)
        self.verbose = "auto" if verbose is None else verbose

    def _init_model(self, *input_data_sets: Any) -> keras.Model:
        """Build and compile a new model; receives the fit's inputs and targets (to size it)."""
        msg = (
            f"{type(self).__name__} must override _init_model(self, *input_data_sets) to build "
            "and compile its keras model"
        )
        raise NotImplementedError(msg)

    def fit(self, input_data_sets: Any, output_datasets: Any) -> None:
        """Fit the model :meth:`_init_model` built on the inputs and targets.

        :raises MLOpDefinitionError: if ``_init_model`` did not return a ``keras.Model``.
        """
        if not isinstance(self._model, keras.Model):
            msg = (
                f"{type(self).__name__}._init_model returned a {type(self._model).__name__}; it "
                "must return a compiled keras.Model"
            )
            raise MLOpDefinitionError(msg)
        parameters = {**dict(self.input_params), **dict(self.fit_params)}
        if isinstance(parameters.get("callbacks"), _Callbacks):
            parameters["callbacks"] = list(parameters["callbacks"])  # Keras takes only a plain list
        self._model.fit(input_data_sets, output_datasets, verbose=self.verbose, **parameters)

    def predict(self, input_datasets: Any) -> Any:
        """The model's predictions for ``input_datasets`` (arrays, or nested lists as JSON gives).

        :raises ValueError: if the inputs do not have the shapes the model was built for.
        """
        data = _as_model_input(self._model, input_datasets, self.name)
        return self._model.predict(data, verbose=self.verbose, **dict(self.predict_params))


class _Callbacks(list):
    """Keras callbacks whose text, hence whose part of the op's version, is the same in every process.

    A callback's default text shows its memory address: a version made from it would change
    with each process, and no other process could ever load the saved model (its code would
    look changed). The text here is each callback's class and plain settings (``monitor``,
    ``patience``...), read when the op class is defined.
    """

    def __repr__(self) -> str:
        return f"[{', '.join(_describe(callback) for callback in self)}]"

    __str__ = __repr__


def _describe(callback: Any) -> str:
    plain = (bool, int, float, str, type(None))
    settings = {
        name: value
        for name, value in sorted(vars(callback).items())
        if not name.startswith("_") and isinstance(value, plain)
    }
    return f"{type(callback).__module__}.{type(callback).__qualname__}({settings})"


def _stable_callbacks(params: VersionedFieldDict) -> None:
    """Give ``params["callbacks"]`` a stable text (see :class:`_Callbacks`), keeping its subversion."""
    callbacks = params.get("callbacks")
    if not isinstance(callbacks, (list, tuple)) or isinstance(callbacks, _Callbacks):
        return
    version = params.version_dict["callbacks"]
    untouched = hashlib.sha1(b"").hexdigest()  # a field's version updates only its own subversion
    affected = next((kind for kind in VersionType if version.subversion(kind) != untouched), params.default_version)
    params["callbacks"] = VersionedField(_Callbacks(callbacks), affected)


def _declared_input_shapes(model: keras.Model) -> list[tuple] | None:
    try:
        return [tuple(tensor.shape) for tensor in model.inputs]
    except (AttributeError, TypeError, ValueError):
        return None  # subclassed models declare no inputs


def _as_model_input(model: keras.Model, data: Any, op_name: str) -> Any:
    """Turn nested lists into arrays and refuse inputs of the wrong shape before Keras sees them.

    Keras's ``predict`` rejects plain lists, which is what a pipeline called with JSON gets.
    And Keras 3 (seen with 3.15 on JAX) leaves a model unusable -- every later call fails --
    after it was called on an input of the wrong shape, so one bad request would break serving.
    """
    expected = _declared_input_shapes(model)
    if isinstance(data, dict) or not expected:
        return data
    several = len(expected) > 1
    arrays = list(data) if several and isinstance(data, (list, tuple)) else [data]
    if len(arrays) != len(expected):
        msg = f"op {op_name!r}: the model takes {len(expected)} inputs but got {len(arrays)}"
        raise ValueError(msg)
    converted = []
    for array, shape in zip(arrays, expected):
        if isinstance(array, (list, tuple)):
            try:
                array = np.asarray(array)
            except ValueError as exc:
                msg = f"op {op_name!r}: the input is not a rectangular array of numbers ({exc})"
                raise ValueError(msg) from exc
        got = np.shape(array)
        if len(got) != len(shape) or any(want is not None and want != have for want, have in zip(shape, got)):
            shown = tuple("batch" if want is None else want for want in shape)
            msg = f"op {op_name!r}: the model expects inputs of shape {shown} but got one of shape {got}"
            raise ValueError(msg)
        converted.append(array)
    return converted if several else converted[0]
