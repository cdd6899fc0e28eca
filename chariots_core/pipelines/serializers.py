"""Serializers turn the objects ops hold (models, frames) into bytes and back.

Machine-learning ops pick theirs with the ``serializer_cls`` class attribute::

    class MyOp(SKSupervisedOp):
        serializer_cls = JSONSerializer

Every ``deserialize_object`` raises :class:`~chariots_core.errors.SerializationError` on
bytes it cannot read, never a library-specific error; ``serialize_object`` raises
:class:`WrongTypeError` (a ``SerializationError`` and a ``TypeError``) for an object its
format cannot hold.
"""

from __future__ import annotations

import abc
import io
import json
from typing import Any

import dill

from ..errors import BackendError, SerializationError, WrongTypeError

__all__ = ["BaseSerializer", "DillSerializer", "JSONSerializer", "CSVSerializer", "WrongTypeError"]


class BaseSerializer(abc.ABC):
    """Turns one kind of object into bytes and back.

    Subclasses implement the two methods; ``deserialize_object`` must raise
    :class:`~chariots_core.errors.SerializationError` (see :meth:`_unreadable`) on bad bytes.
    """

    @abc.abstractmethod
    def serialize_object(self, target: Any) -> bytes:
        """Return ``target`` as bytes."""

    @abc.abstractmethod
    def deserialize_object(self, serialized_object: bytes) -> Any:
        """Rebuild the object from bytes made by :meth:`serialize_object`."""

    def _unreadable(self, exc: Exception | str) -> SerializationError:
        """The error for bytes this serializer cannot read; ``raise ... from`` the cause."""
        cause = f"{type(exc).__name__}: {exc}" if isinstance(exc, Exception) else exc
        msg = (
            f"{type(self).__name__} cannot read these bytes ({cause}); they were not written "
            "by this serializer, or are corrupt"
        )
        return SerializationError(msg)


class DillSerializer(BaseSerializer):
    """Serializes any Python object with dill (pickle that also handles lambdas and closures).

    Only load bytes you wrote yourself: like pickle, dill runs code while loading.
    """

    def serialize_object(self, target: Any) -> bytes:
        try:
            return dill.dumps(target)
        except Exception as exc:  # dill raises whatever the object's __reduce__ raises
            msg = f"DillSerializer cannot serialize a {type(target).__name__}: {type(exc).__name__}: {exc}"
            raise WrongTypeError(msg) from exc

    def deserialize_object(self, serialized_object: bytes) -> Any:
        try:
            return dill.loads(serialized_object)
        except Exception as exc:  # corrupt pickles fail with almost any exception type
            raise self._unreadable(exc) from exc


class JSONSerializer(BaseSerializer):
    """Serializes JSON-compatible objects (dicts, lists, numbers, strings) as UTF-8 JSON.

    Tuples come back as lists, as JSON has no tuples; NaN and infinities are refused.
    """

    def serialize_object(self, target: Any) -> bytes:
        try:
            return json.dumps(target, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            msg = (
                f"JSONSerializer cannot serialize a {type(target).__name__}: {exc}; give it "
                "dicts, lists, strings, finite numbers, booleans and None, or use DillSerializer"
            )
            raise WrongTypeError(msg) from exc

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
    """Serializes a pandas ``DataFrame`` as CSV (pandas is imported on first use).

    The index is not written, and column types come back as pandas infers them from text.
    """

    def serialize_object(self, target: Any) -> bytes:
        pandas = _pandas()
        if not isinstance(target, pandas.DataFrame):
            msg = (
                f"CSVSerializer only serializes pandas DataFrames (got a {type(target).__name__}); "
                "wrap the data in pandas.DataFrame(...) or use DillSerializer"
            )
            raise WrongTypeError(msg)
        return target.to_csv(index=False).encode()

    def deserialize_object(self, serialized_object: bytes) -> Any:
        pandas = _pandas()
        data = bytes(serialized_object)
        if b"\x00" in data:
            # pandas happily parses binary garbage into a one-column frame: refuse it here.
            raise self._unreadable("binary data, not CSV text")
        try:
            return pandas.read_csv(io.BytesIO(data))
        except (UnicodeDecodeError, ValueError, pandas.errors.ParserError) as exc:
            raise self._unreadable(exc) from exc
