"""Keras models as bytes, in Keras's own ``.keras`` format (a zip archive, not a pickle).

The ``.keras`` format holds the architecture, the weights and the compile state, and loads
on any Keras backend. Custom layers must be registered with
``@keras.saving.register_keras_serializable()`` to load back.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from chariots_core.ml import BaseSerializer, WrongTypeError

from ._keras import keras

__all__ = ["KerasSerializer"]

_ZIP_MAGIC = b"PK\x03\x04"


class KerasSerializer(BaseSerializer):
    """Serializes a ``keras.Model`` with ``model.save`` and reads it with ``keras.saving.load_model``.

    Keras only saves to and loads from files, so each call goes through a private temporary
    directory that is removed afterwards.
    """

    def serialize_object(self, target: Any) -> bytes:
        if not isinstance(target, keras.Model):
            msg = f"KerasSerializer only serializes keras.Model objects (got a {type(target).__name__})"
            raise WrongTypeError(msg)
        with tempfile.TemporaryDirectory(prefix="chariots-keras-") as scratch:
            path = os.path.join(scratch, "model.keras")
            target.save(path)
            with open(path, "rb") as saved:
                return saved.read()

    def deserialize_object(self, serialized_object: bytes) -> Any:
        data = bytes(serialized_object)
        if not data.startswith(_ZIP_MAGIC):
            raise self._unreadable("not a .keras zip archive")
        with tempfile.TemporaryDirectory(prefix="chariots-keras-") as scratch:
            path = os.path.join(scratch, "model.keras")
            with open(path, "wb") as file:
                file.write(data)
            try:
                return keras.saving.load_model(path)
            except Exception as exc:  # keras raises ValueError, zipfile, h5py and layer errors
                raise self._unreadable(exc) from exc
