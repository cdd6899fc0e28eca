"""Serializers turn the objects ops hold (models, frames) into bytes and back.

Machine-learning ops pick theirs with the ``serializer_cls`` class attribute::

    class MyOp(SKSupervisedOp):
        serializer_cls = JSONSerializer

Every ``deserialize_object`` raises :class:`~chariots_core.errors.SerializationError` on
bytes it cannot read, never a library-specific error; ``serialize_object`` raises
:class:`WrongTypeError` (a ``SerializationError`` and a ``TypeError``) for an object its
format cannot hold.

Big models stream: ``serialize_to(target, file)`` and ``deserialize_from(file)`` write to and
read from a binary file object without holding the whole byte string in memory. Their
defaults go through the byte methods; :class:`DillSerializer` streams for real.

``executes_code`` says whether reading bytes may run code (a pickle can): Chariots only hands
such a serializer bytes it wrote itself and checked, unless a data node explicitly allows
otherwise (see :class:`~chariots_core.pipelines.data_nodes.DataLoadingNode`).
"""

from __future__ import annotations

import abc
import io
import json
from typing import Any, BinaryIO

from ..errors import BackendError, SerializationError, WrongTypeError
from . import dill_format

__all__ = ["BaseSerializer", "StreamingSerializer", "DillSerializer", "JSONSerializer", "CSVSerializer"]
__all__ += ["WrongTypeError"]


class BaseSerializer(abc.ABC):
    """Turns one kind of object into bytes and back.

    Subclasses implement the two byte methods; ``deserialize_object`` must raise
    :class:`~chariots_core.errors.SerializationError` (see :meth:`_unreadable`) on bad bytes.
    Override :meth:`serialize_to` and :meth:`deserialize_from` too to stream big objects, with
    the same bytes and errors as the byte methods.
    """

    #: Whether reading bytes may run code (unpickling does): such a serializer must only read
    #: bytes this app wrote and checked.
    executes_code: bool = False
    #: Whether :meth:`deserialize_from` keeps views of a file that holds its bytes in memory
    #: (``getbuffer()``) instead of copying them: the store then reads a big blob into memory
    #: once, checking it on the way, rather than checking it and then reading it again.
    loads_in_place: bool = False

    @abc.abstractmethod
    def serialize_object(self, target: Any) -> bytes:
        """Return ``target`` as bytes."""

    @abc.abstractmethod
    def deserialize_object(self, serialized_object: bytes) -> Any:
        """Rebuild the object from bytes made by :meth:`serialize_object`."""

    def serialize_to(self, target: Any, file: BinaryIO) -> None:
        """Write ``target`` to the binary ``file`` (the bytes :meth:`serialize_object` returns)."""
        file.write(self.serialize_object(target))

    def deserialize_from(self, file: BinaryIO) -> Any:
        """Rebuild the object from the rest of the binary ``file``."""
        return self.deserialize_object(file.read())

    def _unreadable(self, exc: Exception | str) -> SerializationError:
        """The error for bytes this serializer cannot read; ``raise ... from`` the cause."""
        cause = f"{type(exc).__name__}: {exc}" if isinstance(exc, Exception) else exc
        msg = (
            f"{type(self).__name__} cannot read these bytes ({cause}); they were not written "
            "by this serializer, or are corrupt"
        )
        return SerializationError(msg)


class StreamingSerializer(BaseSerializer):
    """A serializer that streams: subclasses implement :meth:`serialize_to` and
    :meth:`deserialize_from`, and the byte methods are built on them."""

    def serialize_object(self, target: Any) -> bytes:
        buffer = io.BytesIO()
        self.serialize_to(target, buffer)
        return buffer.getvalue()

    def deserialize_object(self, serialized_object: bytes) -> Any:
        return self.deserialize_from(io.BytesIO(serialized_object))

    @abc.abstractmethod
    def serialize_to(self, target: Any, file: BinaryIO) -> None:
        """Write ``target`` to the binary ``file``."""

    @abc.abstractmethod
    def deserialize_from(self, file: BinaryIO) -> Any:
        """Rebuild the object from the rest of the binary ``file``."""


class DillSerializer(StreamingSerializer):
    """Serializes any Python object with dill (pickle that also handles lambdas and closures).

    Only load bytes you wrote yourself: like pickle, dill runs code while loading. Big buffers
    (numpy arrays) are written out of band, straight from the object to the file, and read back
    as views of the memory holding the bytes (:mod:`chariots_core.pipelines.dill_format`): a
    model is never copied whole on its way to or from the store.
    """

    executes_code = True
    loads_in_place = True

    def serialize_to(self, target: Any, file: BinaryIO) -> None:
        try:
            dill_format.dump(target, file)
        except OSError:
            raise  # the file could not be written: a storage error, not the object's
        except Exception as exc:  # dill raises whatever the object's __reduce__ raises
            msg = f"DillSerializer cannot serialize a {type(target).__name__}: {type(exc).__name__}: {exc}"
            raise WrongTypeError(msg) from exc

    def deserialize_from(self, file: BinaryIO) -> Any:
        try:
            return dill_format.load(file)
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
