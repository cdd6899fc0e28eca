"""The bytes :class:`~chariots_core.ml.DillSerializer` writes: a dill pickle with its buffers beside it.

A model's bulk is usually a few big buffers (numpy arrays). Pickled in the usual way they pass
through the pickle stream, and Python's pickler (which dill extends) copies each into a
``bytes`` first; unpickled from bytes in memory they are copied again. Here they are written
*out of band* (pickle protocol 5), straight from the object to the file, and read back as views
of the memory that holds the blob: a model of 4 GB needs 4 GB to save and to load, not 8 or 12.

Layout (offsets from the first byte of :data:`MAGIC`)::

    MAGIC | pickle stream (protocol 5) | buffer 1 | ... | buffer n | trailer
    trailer: n x (offset, length) of the buffers, then n, then the stream's length (all <Q)

Each buffer starts at a multiple of :data:`ALIGNMENT` bytes from the start of the file when the
file can ``tell()`` (so arrays read back in place are aligned), and the pickle stream says, as
usual, which buffers were read-only. Bytes that do not start with ``MAGIC`` are read as a plain
dill pickle (what :class:`~chariots_core.ml.DillSerializer` wrote before).
"""

from __future__ import annotations

import io
import pickle
import struct
from typing import Any, BinaryIO

import dill

__all__ = ["MAGIC", "ALIGNMENT", "dump", "load"]

MAGIC = b"\x00chariots-dill-1"  # a pickle never starts with a zero byte
ALIGNMENT = 64
_NUMBER = struct.Struct("<Q")
_SPAN = struct.Struct("<QQ")
_PROTOCOL = 5


def dump(target: Any, file: BinaryIO) -> None:
    """Write ``target`` to ``file`` in this format.

    :raises Exception: whatever pickling ``target`` raises.
    """
    start = _tell(file)
    file.write(MAGIC)
    buffers: list[pickle.PickleBuffer] = []
    counter = _Counting(file)
    _Pickler(counter, protocol=_PROTOCOL, buffer_callback=buffers.append).dump(target)
    position = len(MAGIC) + counter.count
    spans = []
    for buffer in buffers:
        with buffer.raw() as view:
            padding = -(position + (start or 0)) % ALIGNMENT if start is not None else 0
            file.write(b"\0" * padding)
            position += padding
            spans.append((position, view.nbytes))
            file.write(view)
            position += view.nbytes
    file.write(b"".join(_SPAN.pack(*span) for span in spans) + _NUMBER.pack(len(spans)) + _NUMBER.pack(counter.count))


def load(file: BinaryIO) -> Any:
    """Read what :func:`dump` (or plain dill) wrote, from the current position to the end of ``file``.

    From a file that holds its bytes in memory (``getbuffer()``: ``io.BytesIO``, a verified
    blob), writable buffers become views of that memory; from another file they are read
    into memory of their own.

    :raises Exception: whatever unpickling raises; ``ValueError`` for a damaged layout.
    """
    region = _rest_in_memory(file)
    if bytes(region[: len(MAGIC)]) != MAGIC:
        return dill.loads(region)
    stream, spans = _layout(region)
    # Views of writable memory; read-only memory (bytes) is copied, so that arrays stay writable.
    buffers = [region[offset : offset + length] for offset, length in spans]
    if region.readonly:
        buffers = [bytearray(buffer) for buffer in buffers]
    return dill.loads(stream, buffers=buffers)


def _layout(region: memoryview) -> tuple[memoryview, list[tuple[int, int]]]:
    """The pickle stream and the (offset, length) of each buffer, checked against the region."""
    end = len(region)
    if end < len(MAGIC) + 2 * _NUMBER.size:
        raise ValueError("too short for a DillSerializer stream")
    count = _NUMBER.unpack_from(region, end - 2 * _NUMBER.size)[0]
    stream_length = _NUMBER.unpack_from(region, end - _NUMBER.size)[0]
    trailer = end - 2 * _NUMBER.size - count * _SPAN.size
    if count > end or trailer < len(MAGIC) + stream_length:
        raise ValueError("its trailer does not fit its length: truncated or damaged")
    spans = [_SPAN.unpack_from(region, trailer + index * _SPAN.size) for index in range(count)]
    previous_end = len(MAGIC) + stream_length
    for offset, length in spans:
        if offset < previous_end or offset + length > trailer:
            raise ValueError("its buffers overlap or run past its end: damaged")
        previous_end = offset + length
    return region[len(MAGIC) : len(MAGIC) + stream_length], spans


def _rest_in_memory(file: BinaryIO) -> memoryview:
    """The bytes from the file's position to its end, as a view of memory holding them."""
    getbuffer = getattr(file, "getbuffer", None)
    if getbuffer is not None:
        view = getbuffer()[file.tell() :]
        file.seek(0, io.SEEK_END)
        return view
    rest = bytearray()
    while chunk := file.read(1 << 20):
        rest += chunk
    return memoryview(rest)


def _tell(file: BinaryIO) -> int | None:
    try:
        return file.tell()
    except (OSError, AttributeError, ValueError):
        return None


class _Counting:
    """Passes writes on to ``file``, counting the bytes (the pickle stream's length)."""

    def __init__(self, file: BinaryIO) -> None:
        self._file, self.count = file, 0

    def write(self, data: Any) -> int:
        written = self._file.write(data)
        self.count += memoryview(data).nbytes
        return written


def _save_ndarray(pickler: Any, obj: Any) -> None:
    """Pickle a numpy array by ``__reduce_ex__``, which hands its data over as a buffer (dill's
    own reducer uses ``__reduce__``, which copies it into bytes)."""
    pickler.save_reduce(*obj.__reduce_ex__(pickler.proto), obj=obj)


class _Dispatch(dict):
    """dill's dispatch table, where ``numpy.ndarray`` itself is pickled by :func:`_save_ndarray`."""

    def __missing__(self, kind: type) -> Any:
        if kind.__name__ == "ndarray" and kind.__module__ == "numpy":  # without importing numpy
            self[kind] = _save_ndarray  # looked up once per type, not per object
            return _save_ndarray
        return dill.Pickler.dispatch[kind]  # dill's own (it adds entries as it meets new types)

    def get(self, kind: type, default: Any = None) -> Any:
        try:
            return self[kind]
        except KeyError:
            return default


class _Pickler(dill.Pickler):
    """dill's pickler, handing numpy arrays' data over as buffers."""

    dispatch = _Dispatch()
