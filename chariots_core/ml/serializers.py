"""Serializers turn the objects ops hold (models, frames) into bytes and back.

Machine-learning ops pick theirs with the ``serializer_cls`` class attribute::

    class MyOp(SKSupervisedOp):
        serializer_cls = JSONSerializer

Every ``deserialize_object`` raises :class:`~chariots_core.errors.SerializationError` on
bytes it cannot read, never a library-specific error.
"""

from __future__ import annotations

import abc
import io
import json
from typing import Any

import dill

from ..errors import BackendError, SerializationError

__all__ = ["BaseSerializer", "DillSerializer", "JSONSerializer", "CSVSerializer"]


class BaseSerializer(abc.ABC):
    """Turns one kind of object into bytes and back."""

    @abc.abstractmethod
    def serialize_object(self, target: Any) -> bytes:
        """Return ``target`` as bytes."""

    @abc.abstractmethod
    def deserialize_object(self, serialized_object: bytes) -> Any:
        """Rebuild the object from bytes made by :meth:`serialize_object`."""

    def _unreadable(self, exc: Exception) -> SerializationError:
        msg = (
            f"{type(self).__name__} cannot read these bytes ({type(exc).__name__}: {exc}); "
            "they were not written by this serializer, or are corrupt"
        )
        return SerializationError(msg)


class DillSerializer(BaseSerializer):
    """Serializes any Python object with dill (pickle that also handles lambdas and closures).

    Only load bytes you wrote yourself: like pickle, dill runs code while loading.
    """

    def serialize_object(self, target: Any) -> bytes:
        return dill.dumps(target)

    def deserialize_object(self, serialized_object: bytes) -> Any:
        try:
            return dill.loads(serialized_object)
        except Exception as exc:
            raise self._unreadable(exc) from exc


class JSONSerializer(BaseSerializer):
    """Serializes JSON-compatible objects (dicts, lists, numbers, strings) as UTF-8 JSON."""

    def serialize_object(self, target: Any) -> bytes:
        try:
            return json.dumps(target).encode()
        except (TypeError, ValueError) as exc:
            msg = f"JSONSerializer cannot serialize a {type(target).__name__}: {exc}"
            raise SerializationError(msg) from exc

    def deserialize_object(self, serialized_object: bytes) -> Any:
        try:
            return json.loads(serialized_object)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise self._unreadable(exc) from exc


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as exc:
        msg = "CSVSerializer needs pandas, which is not installed; pip install 'chariots[sklearn]'"
        raise BackendError(msg) from exc
    return pandas


class CSVSerializer(BaseSerializer):
    """Serializes a pandas ``DataFrame`` as CSV (pandas is imported on first use)."""

    def serialize_object(self, target: Any) -> bytes:
        pandas = _pandas()
        if not isinstance(target, pandas.DataFrame):
            msg = f"CSVSerializer only serializes pandas DataFrames (got a {type(target).__name__})"
            raise SerializationError(msg)
        return target.to_csv(index=False).encode()

    def deserialize_object(self, serialized_object: bytes) -> Any:
        pandas = _pandas()
        try:
            return pandas.read_csv(io.BytesIO(serialized_object))
        except (UnicodeDecodeError, ValueError, pandas.errors.ParserError) as exc:
            raise self._unreadable(exc) from exc
