"""The base of machine-learning ops: one class, three modes (fit, predict, both).

A :class:`BaseMLOp` holds a model. In ``MLMode.FIT`` it fits the model on its inputs and
outputs nothing; in ``MLMode.PREDICT`` it predicts with a model it loaded; in
``MLMode.FIT_PREDICT`` it fits, then predicts on its first input. Every fit changes the op's
``op_version`` in the subversion named by ``training_update_version``, so a model saved after
a retrain is a new version, and with the default ``"major"`` compatibility a retrained
MAJOR-op forces the models downstream of it to be retrained too.

Subclass it for a framework Chariots does not cover: implement ``fit`` and ``predict``, and
change ``serializer_cls`` if dill is not the right format. As in chariots 0.2, define how a new
model is made with ``_init_model``: each fit starts from the model it returns, in
``self._model``. It may take the fit's input datasets (``_init_model(self, *input_data_sets)``,
to size a network) or nothing (``_init_model(self)``)::

    class ScalerOp(BaseMLOp):
        def _init_model(self):
            return StandardScaler()

        def fit(self, X):
            self._model.fit(X)

        def predict(self, X):
            return self._model.transform(X)

An op without ``_init_model`` builds its model in ``fit`` instead (``self._model = ...``)::

    class MeanOp(BaseMLOp):
        serializer_cls = JSONSerializer

        def fit(self, values):
            self._model = sum(values) / len(values)

        def predict(self, values):
            return [value - self._model for value in values]

Saved bytes are a one-line JSON header (the training run's identity, so that a loaded op has
exactly the ``op_version`` it was saved with) followed by the serializer's bytes.
"""

from __future__ import annotations

import enum
import inspect
import io
import json
import time
import uuid
from collections.abc import Iterable
from typing import Any, BinaryIO

from ..errors import MLOpDefinitionError, NotFittedError, SerializationError
from ..pipelines.callbacks import OpCallBack, overrides
from ..pipelines.ops import LoadableOp
from ..pipelines.serializers import BaseSerializer, DillSerializer
from ..versioning import Version, VersionType

__all__ = ["MLMode", "BaseMLOp", "MLOpDefinitionError"]

_FORMAT = "chariots-ml-op"
_FORMAT_VERSION = 1
_LONGEST_HEADER = 64 * 1024  # bytes: a header line is far shorter; garbage must not be read whole


class _SerializedModel:
    """A model in its serializer's bytes, inside the pickled state of an op."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self) -> tuple:
        return (_SerializedModel, (self.data,))


class MLMode(enum.Enum):
    """What a machine-learning op does when its node runs."""

    FIT = "fit"
    PREDICT = "predict"
    FIT_PREDICT = "fit_predict"


class BaseMLOp(LoadableOp):
    """An op wrapping a model that is fitted by training pipelines and used by prediction ones.

    :param mode: what the op does when run (an :class:`MLMode` or its value, ``"fit"``...).
    :param op_callbacks: callbacks run around each execution.
    :raises MLOpDefinitionError: (a ``ValueError``) if ``mode`` is not an :class:`MLMode`.
    """

    #: The subversion of ``op_version`` that each fit changes.
    training_update_version: VersionType | str = VersionType.PATCH
    #: Turns ``self._model`` into bytes and back when the op is saved and loaded.
    serializer_cls: type[BaseSerializer] = DillSerializer
    # Set per class: whether its _init_model receives the fit's inputs.
    _init_model_takes_inputs: bool = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Fail when the class is written, not at the first fit in production.
        try:
            VersionType(cls.training_update_version)
        except ValueError:
            msg = (
                f"{cls.__name__}.training_update_version must be a VersionType or one of "
                f"'major', 'minor', 'patch' (got {cls.training_update_version!r})"
            )
            raise MLOpDefinitionError(msg) from None
        if not (isinstance(cls.serializer_cls, type) and issubclass(cls.serializer_cls, BaseSerializer)):
            msg = (
                f"{cls.__name__}.serializer_cls must be a BaseSerializer subclass such as "
                f"DillSerializer (got {cls.serializer_cls!r})"
            )
            raise MLOpDefinitionError(msg)
        if f"_{cls.__name__.lstrip('_')}__init_model" in vars(cls):
            # chariots 0.2's rendered docs show `def __init_model(...)`, which Python renames.
            msg = (
                f"{cls.__name__} defines __init_model, which Python renames to "
                f"_{cls.__name__.lstrip('_')}__init_model so Chariots never calls it; name it "
                "_init_model (one leading underscore)"
            )
            raise MLOpDefinitionError(msg)
        cls._init_model_takes_inputs = _takes_positional_arguments(cls._init_model)

    def __init__(self, mode: MLMode | str, op_callbacks: Iterable[OpCallBack] | None = None) -> None:
        super().__init__(op_callbacks)
        try:
            self._mode = MLMode(mode)
        except ValueError:
            msg = (
                f"'mode' of {type(self).__name__} must be an MLMode (MLMode.FIT, MLMode.PREDICT "
                f"or MLMode.FIT_PREDICT) (got {mode!r})"
            )
            raise MLOpDefinitionError(msg) from None
        self._model: Any = None
        self._set_training(None, None)

    @property
    def mode(self) -> MLMode:
        """The mode the op was created with."""
        return self._mode

    @property
    def model(self) -> Any:
        """The fitted (or loaded) model, ``None`` before either."""
        return self._model

    @property
    def is_fitted(self) -> bool:
        """Whether the op holds a model, fitted here or loaded from a store."""
        return self._training_id is not None

    def _init_model(self, *input_data_sets: Any) -> Any:
        """A new, unfitted model; each fit starts from it, in ``self._model``.

        Override it with ``_init_model(self)`` or ``_init_model(self, *input_data_sets)`` (it
        then receives the fit's inputs). Ops that do not override it build their model in
        :meth:`fit`.
        """
        return None

    def fit(self, *args: Any) -> None:
        """Fit ``self._model`` on the op's inputs (return nothing)."""
        raise NotImplementedError(f"{type(self).__name__} must override fit(self, *args)")

    def predict(self, *args: Any) -> Any:
        """Predict with the fitted model on the op's inputs."""
        raise NotImplementedError(f"{type(self).__name__} must override predict(self, *args)")

    def execute(self, *args: Any) -> Any:
        """Fit, predict or both, as the op's mode says.

        :raises NotFittedError: when predicting with a model that was neither fitted nor loaded.
        """
        if self._mode is MLMode.PREDICT:
            self._require_model()
            return self.predict(*args)
        previous = self._model
        if overrides(self, BaseMLOp, "_init_model"):
            self._model = self._init_model(*args) if self._init_model_takes_inputs else self._init_model()
        try:
            self.fit(*args)
        except BaseException:
            self._model = previous  # a failed fit leaves the op with the model it had
            raise
        # A new identity per fit: two trainings on the same data are still two versions,
        # because nothing guarantees they produced the same model.
        self._set_training(uuid.uuid4().hex, time.time())
        if self._mode is MLMode.FIT_PREDICT:
            return self.predict(args[0])
        return None

    def _set_training(self, training_id: str | None, trained_at: float | None) -> None:
        self._training_id, self._trained_at = training_id, trained_at
        # Every served response reports op_version: compute it once per training, not per call.
        self._trained_version: Version | None = None

    def _require_model(self) -> None:
        if self._training_id is None:
            msg = (
                f"op {self.name!r} has no model to predict with: it was neither fitted nor "
                "loaded. Run and save a pipeline that fits it, then load_pipeline the pipeline "
                "that predicts with it"
            )
            raise NotFittedError(msg)

    @property
    def op_version(self) -> Version:
        """The class version plus, once trained, the identity of the training run."""
        if self._training_id is None:
            return type(self).__version__
        if self._trained_version is None:
            training = Version(creation_time=self._trained_at).update(
                self.training_update_version, self._training_id.encode()
            )
            self._trained_version = type(self).__version__ + training
        return self._trained_version

    @property
    def allow_version_change(self) -> bool:
        """Ops that (re)train may start from any saved version, or from scratch."""
        return self._mode is not MLMode.PREDICT

    @property
    def requires_saved_state(self) -> bool:
        """A predict-only op is useless until a fitted model is loaded."""
        return self._mode is MLMode.PREDICT

    # Copies and pickles (worker pools, load_pipeline) carry the model in the op's own format:
    # some frameworks' models (Keras) do not survive deepcopy or pickle reliably.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if state.get("_model") is not None:
            state["_model"] = _SerializedModel(self.serializer_cls().serialize_object(state["_model"]))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        model = state.get("_model")
        if isinstance(model, _SerializedModel):
            state = {**state, "_model": self.serializer_cls().deserialize_object(model.data)}
        self.__dict__.update(state)

    def serialize(self) -> bytes:
        """The training identity (a JSON line) followed by the model as ``serializer_cls`` writes it.

        :raises NotFittedError: if there is no model to save.
        """
        buffer = io.BytesIO()
        self._write_model(buffer)
        return buffer.getvalue()

    def load(self, serialized_object: bytes) -> None:
        """Restore the model and the training identity from :meth:`serialize`'s bytes.

        :raises SerializationError: naming the op, if the bytes are not a saved op of this
            kind or the model cannot be read back.
        """
        self._read_model(io.BytesIO(serialized_object))

    def serialize_to(self, file: BinaryIO) -> None:
        """Stream what :meth:`serialize` returns to ``file``, the model through its serializer's
        ``serialize_to`` (so a big model is never copied whole into memory)."""
        if overrides(self, BaseMLOp, "serialize"):  # a subclass that only knows bytes
            super().serialize_to(file)
        else:
            self._write_model(file)

    def load_from(self, file: BinaryIO) -> None:
        """Restore what :meth:`serialize_to` wrote to ``file``, the model through its serializer's
        ``deserialize_from``."""
        if overrides(self, BaseMLOp, "load"):
            super().load_from(file)
        else:
            self._read_model(file)

    @property
    def loads_in_place(self) -> bool:
        """Whether the model's serializer keeps views of the bytes it reads (``DillSerializer`` does)."""
        return self.serializer_cls.loads_in_place and not overrides(self, BaseMLOp, "load")

    def _write_model(self, file: BinaryIO) -> None:
        self._require_model()
        header = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "serializer": self.serializer_cls.__name__,
            "training_id": self._training_id,
            "trained_at": self._trained_at,
        }
        file.write(json.dumps(header, sort_keys=True).encode() + b"\n")
        self.serializer_cls().serialize_to(self._model, file)

    def _read_model(self, file: BinaryIO) -> None:
        training_id, trained_at = self._read_header(file.readline(_LONGEST_HEADER))
        try:
            model = self.serializer_cls().deserialize_from(file)
        except SerializationError as exc:
            msg = f"op {self.name!r} cannot load its saved model: {exc}"
            raise SerializationError(msg) from exc
        self._model = model
        self._set_training(training_id, trained_at)

    def _read_header(self, head: bytes) -> tuple[str, float]:
        where = f"op {self.name!r} ({type(self).__name__})"
        try:
            header = json.loads(head)
        except (UnicodeDecodeError, json.JSONDecodeError):
            header = None
        if not isinstance(header, dict) or header.get("format") != _FORMAT:
            msg = (
                f"{where} cannot load these bytes: they are not a saved machine-learning op "
                "(no chariots-ml-op header). Load only bytes saved by a pipeline that trains it"
            )
            raise SerializationError(msg)
        if header.get("format_version") != _FORMAT_VERSION:
            msg = (
                f"{where} was saved in format version {header.get('format_version')!r}, "
                f"this Chariots reads version {_FORMAT_VERSION}; retrain and save it again"
            )
            raise SerializationError(msg)
        if header.get("serializer") != self.serializer_cls.__name__:
            msg = (
                f"{where} was saved with {header.get('serializer')}, but its serializer_cls is "
                f"now {self.serializer_cls.__name__}; retrain and save it, or restore serializer_cls"
            )
            raise SerializationError(msg)
        training_id, trained_at = header.get("training_id"), header.get("trained_at")
        if not isinstance(training_id, str) or not isinstance(trained_at, (int, float)):
            msg = f"{where}: the saved header lacks a valid training_id/trained_at ({header!r})"
            raise SerializationError(msg)
        return training_id, float(trained_at)


def _takes_positional_arguments(method: Any) -> bool:
    """Whether ``method`` (a function taking ``self``) accepts positional arguments after ``self``."""
    try:
        parameters = list(inspect.signature(method).parameters.values())[1:]
    except (TypeError, ValueError):  # a callable whose signature Python cannot read
        return True
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    return any(parameter.kind in positional for parameter in parameters)
