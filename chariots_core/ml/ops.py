"""The base of machine-learning ops: one class, three modes (fit, predict, both).

A :class:`BaseMLOp` holds a model. In ``MLMode.FIT`` it fits the model on its inputs and
outputs nothing; in ``MLMode.PREDICT`` it predicts with a model it loaded; in
``MLMode.FIT_PREDICT`` it fits, then predicts on its first input. Every fit changes the op's
``op_version`` in the subversion named by ``training_update_version``, so a model saved after
a retrain is a new version, and with the default ``"major"`` compatibility a retrained
MAJOR-op forces the models downstream of it to be retrained too.

Subclass it for a framework Chariots does not cover: implement ``fit`` and ``predict`` (and
set ``self._model``), and change ``serializer_cls`` if dill is not the right format.
"""

from __future__ import annotations

import enum
import json
import time
import uuid
from collections.abc import Iterable
from typing import Any

from ..callbacks import OpCallBack
from ..errors import NotFittedError, SerializationError
from ..ops import LoadableOp
from ..versioning import Version, VersionType
from .serializers import BaseSerializer, DillSerializer

__all__ = ["MLMode", "BaseMLOp"]

# Saved ML ops are a one-line JSON header (training identity) then the serializer's bytes.
_HEADER_MAGIC = "chariots-ml-op"


class MLMode(enum.Enum):
    """What a machine-learning op does when its node runs."""

    FIT = "fit"
    PREDICT = "predict"
    FIT_PREDICT = "fit_predict"


class BaseMLOp(LoadableOp):
    """An op wrapping a model that is fitted by training pipelines and used by prediction ones.

    :param mode: what the op does when run (an :class:`MLMode`).
    :param op_callbacks: callbacks run around each execution.
    """

    training_update_version: VersionType | str = VersionType.PATCH
    serializer_cls: type[BaseSerializer] = DillSerializer

    def __init__(self, mode: MLMode, op_callbacks: Iterable[OpCallBack] | None = None) -> None:
        super().__init__(op_callbacks)
        try:
            self._mode = MLMode(mode)
        except ValueError:
            msg = f"'mode' must be an MLMode (FIT, PREDICT or FIT_PREDICT) (got {mode!r})"
            raise ValueError(msg) from None
        self._model: Any = None
        self._training_id: str | None = None
        self._trained_at: float | None = None

    @property
    def mode(self) -> MLMode:
        """The mode the op was created with."""
        return self._mode

    @property
    def model(self) -> Any:
        """The fitted (or loaded) model, ``None`` before either."""
        return self._model

    def fit(self, *args: Any) -> None:
        """Fit ``self._model`` on the op's inputs (return nothing)."""
        raise NotImplementedError(f"{type(self).__name__} must override fit(self, *args)")

    def predict(self, *args: Any) -> Any:
        """Predict with the fitted model on the op's inputs."""
        raise NotImplementedError(f"{type(self).__name__} must override predict(self, *args)")

    def execute(self, *args: Any) -> Any:
        if self._mode is MLMode.PREDICT:
            self._require_model()
            return self.predict(*args)
        self.fit(*args)
        self._training_id, self._trained_at = uuid.uuid4().hex, time.time()
        if self._mode is MLMode.FIT_PREDICT:
            return self.predict(args[0])
        return None

    def _require_model(self) -> None:
        if self._training_id is None:
            msg = (
                f"op {self.name!r} has no model to predict with: it was neither fitted nor "
                "loaded. Run and save a pipeline that fits it, then load_pipeline this one"
            )
            raise NotFittedError(msg)

    @property
    def op_version(self) -> Version:
        """The class version plus, once trained, the identity of the training run."""
        version = type(self).__version__
        if self._training_id is None:
            return version
        training = Version(creation_time=self._trained_at).update(
            self.training_update_version, self._training_id.encode()
        )
        return version + training

    @property
    def allow_version_change(self) -> bool:
        """Ops that (re)train may start from any saved version, or from scratch."""
        return self._mode is not MLMode.PREDICT

    @property
    def requires_saved_state(self) -> bool:
        return self._mode is MLMode.PREDICT

    def serialize(self) -> bytes:
        self._require_model()
        header = {"magic": _HEADER_MAGIC, "training_id": self._training_id, "trained_at": self._trained_at}
        return json.dumps(header).encode() + b"\n" + self.serializer_cls().serialize_object(self._model)

    def load(self, serialized_object: bytes) -> None:
        head, newline, body = bytes(serialized_object).partition(b"\n")
        try:
            header = json.loads(head)
            if not newline or header.get("magic") != _HEADER_MAGIC:
                raise ValueError("missing header")
        except (ValueError, AttributeError) as exc:
            msg = f"op {self.name!r}: these bytes are not a saved {type(self).__name__} ({exc})"
            raise SerializationError(msg) from exc
        self._model = self.serializer_cls().deserialize_object(body)
        self._training_id, self._trained_at = header["training_id"], header["trained_at"]
