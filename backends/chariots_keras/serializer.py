"""Keras models as bytes, in Keras's own ``.keras`` format (a zip archive, not a pickle).

The ``.keras`` format holds the architecture, the weights and the compile state, and loads
on any Keras backend. Custom layers must be registered with
``@keras.saving.register_keras_serializable()`` to load back.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, BinaryIO

from chariots_core.ml import StreamingSerializer, WrongTypeError

from ._keras import keras

__all__ = ["KerasSerializer"]

_ZIP_MAGIC = b"PK\x03\x04"
_CHUNK = 1024 * 1024


class KerasSerializer(StreamingSerializer):
    """Serializes a ``keras.Model`` with ``model.save`` and reads it with ``keras.saving.load_model``.

    Keras only saves to and loads from files, so each call goes through a private temporary
    directory that is removed afterwards; the streaming methods copy that file to or from the
    store's file in chunks, so a big model is never held in memory as bytes.
    """

    def serialize_to(self, target: Any, file: BinaryIO) -> None:
        if not isinstance(target, keras.Model):
            msg = f"KerasSerializer only serializes keras.Model objects (got a {type(target).__name__})"
            raise WrongTypeError(msg)
        with tempfile.TemporaryDirectory(prefix="chariots-keras-") as scratch:
            path = os.path.join(scratch, "model.keras")
            target.save(path)
            with open(path, "rb") as saved:
                shutil.copyfileobj(saved, file, _CHUNK)

    def deserialize_from(self, file: BinaryIO) -> Any:
        with tempfile.TemporaryDirectory(prefix="chariots-keras-") as scratch:
            path = os.path.join(scratch, "model.keras")
            with open(path, "wb") as copy:
                shutil.copyfileobj(file, copy, _CHUNK)
            with open(path, "rb") as copy:
                if copy.read(len(_ZIP_MAGIC)) != _ZIP_MAGIC:
                    raise self._unreadable("not a .keras zip archive")
            try:
                return keras.saving.load_model(path)
            except Exception as exc:  # keras raises ValueError, zipfile, h5py and layer errors
                raise self._unreadable(exc) from exc
