"""Op states in the saver: streamed out and hashed on the way, read back checked, and remembered.

- :func:`write_state` streams an op's state (``serialize_to``) to a new blob, computing its
  sha256 and size as the bytes pass: no copy of a big model is made in memory. Each save writes
  under a new name (``ops/<node>/<random hex>``), so a save that never commits leaves a blob no
  record names, for garbage collection (:mod:`chariots_core.op_store.garbage`), and never
  touches a blob a record names.
- :func:`read_state` hands an op (``load_from``) the bytes of a record's blob only once they
  match the sha256 and size recorded: a big state is read into memory once while being hashed
  when the op keeps views of it (``loads_in_place``), else checked and then read again.
- :func:`loaded_from` remembers which record an op's state was loaded from, so that saving it
  again (in the same or another store sharing the saver: the CLI's holding store, then the
  real one) names the same blob instead of writing a copy.
"""

from __future__ import annotations

import uuid
import weakref
from typing import Any

import attrs

from ..errors import ChariotsError, SerializationError
from ..pipelines.callbacks import overrides
from ..pipelines.ops import LoadableOp
from ..savers import BaseSaver
from ..verified import HashingWriter, open_verified
from .records import OpVersionRecord

__all__ = ["StoredState", "write_state", "read_state", "loaded_from"]


@attrs.frozen
class StoredState:
    """Where an op's bytes are in the saver, and what they are."""

    blob_path: str
    sha256: str
    size: int


def write_state(op: LoadableOp, name: str, saver: BaseSaver) -> StoredState:
    """Stream the state of ``op`` (the node ``name``'s) to a new blob of ``saver``.

    :raises SerializationError: if the op's ``serialize_to`` (or ``serialize``) fails.
    :raises StoreError: if the saver cannot write.
    """
    blob_path = f"ops/{name}/{uuid.uuid4().hex}"
    with saver.open_write(blob_path) as file:
        writer = HashingWriter(file)
        try:
            op.serialize_to(writer)  # type: ignore[arg-type]
        except (ChariotsError, OSError):
            raise  # the op's own error, or the storage's (the saver names it)
        except Exception as exc:
            msg = f"op {name!r}: {_method(op, 'serialize')} failed ({type(exc).__name__}: {exc})"
            raise SerializationError(msg) from exc
    return StoredState(blob_path, writer.sha256, writer.size)


def read_state(op: LoadableOp, record: OpVersionRecord, saver: BaseSaver, where: str, fix: str) -> None:
    """Load the state ``record`` names into ``op``, once its bytes are checked.

    :param where: names the state in error messages; ``fix`` says how to get it back.
    :raises IntegrityError: if the bytes are missing or do not match the record.
    :raises SerializationError: if the op cannot load them.
    """
    in_memory = op.loads_in_place
    with open_verified(saver, record.blob_path, record.sha256, record.size, where, fix, in_memory=in_memory) as file:
        try:
            op.load_from(file)
        except ChariotsError:
            raise
        except Exception as exc:
            msg = f"{where}: {_method(op, 'load')} failed ({type(exc).__name__}: {exc})"
            raise SerializationError(msg) from exc
    try:
        _loaded[op] = (saver, record)
    except TypeError:  # an op class that is not hashable: it is serialized again when saved
        pass


def loaded_from(op: Any, saver: BaseSaver) -> OpVersionRecord | None:
    """The record whose blob in ``saver`` :func:`read_state` last loaded into ``op``, if any.

    The caller decides whether the op still holds that state (its version names it).
    """
    try:
        found = _loaded.get(op)
    except TypeError:
        return None
    return found[1] if found is not None and found[0] is saver else None


_loaded: weakref.WeakKeyDictionary[Any, tuple[BaseSaver, OpVersionRecord]] = weakref.WeakKeyDictionary()


def _method(op: Any, plain: str) -> str:
    """``Class.serialize()`` or ``Class.serialize_to()``: whichever of the pair the op's class wrote."""
    streaming = {"serialize": "serialize_to", "load": "load_from"}[plain]
    name = streaming if overrides(op, LoadableOp, streaming) else plain
    return f"{type(op).__name__}.{name}()"
