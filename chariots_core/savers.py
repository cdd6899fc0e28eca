"""Savers: bytes by path, the storage half of an op store.

A saver knows nothing of ops or versions: it puts bytes at a path below its root and gives
them back. The op store (metadata) decides the paths and checks what comes back.
:class:`MemorySaver` keeps bytes in a dict (tests, throw-away apps);
``chariots_fsspec.FsspecSaver`` covers local files, ``memory://``, ``gs://``, ``s3://``...

Bytes flow as streams: :meth:`BaseSaver.open_write` and :meth:`BaseSaver.open_read` hand out
binary file objects, so a model of several gigabytes is never held whole in memory on its
way to or from storage; ``save``/``load`` (whole byte strings) are built on them.
:class:`HashingWriter` computes the sha256 of what passes through it, and
:func:`open_verified` checks stored bytes against the sha256 recorded when they were saved
*before* anything reads them: nothing unchecked reaches a deserializer.
"""

from __future__ import annotations

import abc
import hashlib
import io
import mmap
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import BinaryIO, Protocol, runtime_checkable

import attrs

from .errors import IntegrityError, StoreError

__all__ = [
    "BaseSaver",
    "BlobInfo",
    "MemorySaver",
    "HashingWriter",
    "BufferFile",
    "DEBRIS_AGE",
    "check_relative_path",
    "ensure_directory",
    "open_verified",
    "read_verified",
]

DEBRIS_AGE = 24 * 3600.0
"""Seconds after which what an interrupted write left behind is collected when a store or saver
opens (and the default age of ``Chariots.collect_garbage``): far longer than any write takes,
so a write still in progress in another process is never mistaken for debris."""

# Blobs up to this size are read whole and checked in memory (one request to an object store);
# bigger ones are checked and read as files, so memory holds only what the op makes of them.
SMALL_BLOB = 8 * 1024 * 1024
_CHUNK = 1024 * 1024
_PARALLEL_HASH = 4 * 1024 * 1024  # bytes written in one call from which hashing gets a thread of its own
_READ_CHUNK = 16 * 1024 * 1024  # bytes read per call into a blob's buffer, each hashed beside the next read


@attrs.frozen
class BlobInfo:
    """One blob a saver holds: what :meth:`BaseSaver.blobs` lists."""

    path: str  # relative, '/'-separated, as given to save
    size: int  # bytes
    modified: float  # when it was last written, in seconds since the epoch


@runtime_checkable
class BaseSaver(Protocol):
    """What the op store needs from a byte store.

    Paths are relative, ``/``-separated, and never contain ``..``. A saver implements the
    primitives :meth:`open_write`, :meth:`open_read`, :meth:`exists`, :meth:`delete` and
    :meth:`blobs`; :meth:`save`, :meth:`load` and :meth:`collect_debris` are built on them
    (a saver may override them, e.g. to write small objects in one request).

    The contract every saver keeps:

    - a write is **atomic**: readers see the old bytes or the new ones, never part of them, and
      a write that fails (or whose process is killed) leaves nothing at ``path``;
    - a write that returns is **flushed**, and with ``durable=True`` (the default) survives an
      OS crash or power cut (data and name), where the storage can promise that;
    - what interrupted writes leave aside (temporary files) never shows in :meth:`blobs` and
      is removed by :meth:`collect_debris`.

    Subclass it (``class MySaver(BaseSaver)``) to inherit the derived methods.
    """

    @abc.abstractmethod
    def open_write(self, path: str, *, durable: bool = True) -> AbstractContextManager[BinaryIO]:
        """``with saver.open_write(path) as file: file.write(...)``: the bytes written to ``file``
        replace what is at ``path`` when the block ends without an exception; if it raises,
        nothing changes at ``path``.

        :param durable: whether the bytes (and their name) must survive an OS crash or power
            cut once the block ends; ``False`` only needs them to survive this process dying.
        """

    @abc.abstractmethod
    def open_read(self, path: str) -> AbstractContextManager[BinaryIO]:
        """``with saver.open_read(path) as file:``: a readable, seekable binary file of the bytes
        at ``path``.

        :raises FileNotFoundError: if nothing is stored there.
        """

    @abc.abstractmethod
    def exists(self, path: str) -> bool:
        """Whether something is stored at ``path`` (a prefix of stored paths is not a blob)."""

    @abc.abstractmethod
    def delete(self, path: str) -> None:
        """Remove what is stored at ``path`` (nothing happens if there is nothing)."""

    @abc.abstractmethod
    def blobs(self, under: str = "") -> Iterator[BlobInfo]:
        """Every blob stored below the directory ``under`` (``""``: all of them), in no order.

        Writes in progress and their debris are never listed; a blob replaced while the
        listing runs may be listed with either size. ``under`` is a relative path like any.
        """

    def save(self, path: str, data: bytes, *, durable: bool = True) -> None:
        """Store ``data`` at ``path``, replacing what was there (see :meth:`open_write`)."""
        with self.open_write(path, durable=durable) as file:
            file.write(data)

    def load(self, path: str) -> bytes:
        """The bytes at ``path``.

        :raises FileNotFoundError: if nothing is stored there.
        """
        with self.open_read(path) as file:
            return file.read()

    def collect_debris(self, older_than: float, *, dry_run: bool = False) -> list[str]:
        """Remove what interrupted writes left aside and that is older than ``older_than``
        seconds; return what was (with ``dry_run``: would be) removed.

        A saver that writes nothing aside (this default) has no debris.
        """
        return []


def check_relative_path(path: str) -> str:
    """Return ``path`` if it is a safe relative path, else raise :class:`StoreError`."""
    parts = str(path).split("/")
    if not path or path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        msg = (
            f"saver paths must be relative, '/'-separated and free of '.', '..' and empty "
            f"parts (got {path!r})"
        )
        raise StoreError(msg)
    return path


def ensure_directory(path: str, what: str) -> None:
    """Create the local directory ``path`` (and its parents) unless it exists.

    :param what: names the directory in error messages (e.g. "the LMDB op store directory").
    :raises StoreError: if ``path`` is a file, or cannot be created.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise StoreError(f"{what} {path!r} exists and is not a directory; pass a directory path")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        msg = f"cannot create {what} {path!r}: {exc.strerror or exc}. Choose a directory this process can write to"
        raise StoreError(msg) from exc


# -- checked bytes ---------------------------------------------------------------------------------
class HashingWriter:
    """A writable binary file that passes every byte on to ``file`` and hashes it on the way.

    After the last write, :attr:`sha256` and :attr:`size` describe exactly the bytes written:
    the digest of a stream is computed while it streams, never from a second read.
    """

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        if len(view) < _PARALLEL_HASH:
            self._hash.update(view)
            self._file.write(view)
        else:
            # Both release the GIL: a big buffer (a model's array) is hashed on another core
            # while it is written, and the caller gets it back once both are done with it.
            hashing = threading.Thread(target=self._hash.update, args=(view,), name="chariots-sha256")
            hashing.start()
            try:
                self._file.write(view)
            finally:
                hashing.join()
        self.size += len(view)
        return len(view)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._file.flush()

    @property
    def sha256(self) -> str:
        """The hex sha256 of everything written so far."""
        return self._hash.hexdigest()


def _mismatch(digest: str, sha256: str, path: str, saver: BaseSaver, what: str, fix: str) -> IntegrityError:
    found = f"sha256 {digest[:12]}..." if len(digest) == 64 else digest
    msg = f"{what} (blob {path!r} in {saver!r}): the bytes are corrupt ({found}, recorded sha256 {sha256[:12]}...); {fix}"
    return IntegrityError(msg)


def _missing(path: str, saver: BaseSaver, what: str, fix: str) -> IntegrityError:
    return IntegrityError(f"{what} (blob {path!r} in {saver!r}): the bytes are missing; {fix}")


def read_verified(saver: BaseSaver, path: str, sha256: str, what: str, fix: str) -> bytes:
    """Read the bytes at ``path`` and check them against the sha256 recorded when they were saved.

    :param what: names what the bytes are, to start the error messages with.
    :param fix: tells the user how to get sound bytes back, to end them with.
    :raises IntegrityError: if the bytes are missing or do not match ``sha256``.
    """
    try:
        data = saver.load(path)
    except FileNotFoundError as exc:
        raise _missing(path, saver, what, fix) from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise _mismatch(digest, sha256, path, saver, what, fix)
    return data


@contextmanager
def open_verified(
    saver: BaseSaver, path: str, sha256: str, size: int, what: str, fix: str, *, in_memory: bool = False
) -> Iterator[BinaryIO]:
    """``with open_verified(...) as file:`` a file of the bytes at ``path``, checked against
    ``sha256`` (and ``size``) before the block starts, so a deserializer reading it only ever
    sees them.

    Blobs up to :data:`SMALL_BLOB` (by their recorded ``size``) are read whole and checked in
    memory (one request to an object store). Bigger ones are read once:

    - ``in_memory``: into one buffer, hashed chunk by chunk on another core as they arrive; the
      file yielded reads that buffer and offers it (``getbuffer()``) to a reader that keeps
      views of it, such as ``DillSerializer`` (its arrays then live in that buffer: no copy);
    - otherwise, hashed first and then read again from the same open file when the saver's
      file can be read twice cheaply (a local file, which Chariots never changes in place: a
      new blob replaces the old one under a new inode, which the open file does not see), or
      copied once into a private temporary file while hashed (object storage).

    :raises IntegrityError: if the bytes are missing or do not match ``sha256`` and ``size``.
    """
    if size <= SMALL_BLOB:
        yield io.BytesIO(read_verified(saver, path, sha256, what, fix))
        return
    with ExitStack() as stack:
        try:
            file = stack.enter_context(saver.open_read(path))
        except FileNotFoundError as exc:
            raise _missing(path, saver, what, fix) from exc
        if in_memory:
            buffer, digest = _read_hashed(file, size)
            file = BufferFile(buffer)
        elif _rereadable(file):
            digest = _file_sha256(file)
        else:
            spool = stack.enter_context(tempfile.TemporaryFile(prefix="chariots-verified-"))
            digest = _copy_hashed(file, spool)
            file = spool
        if digest != sha256:
            raise _mismatch(digest, sha256, path, saver, what, fix)
        file.seek(0)
        yield file


class BufferFile(io.BufferedIOBase):
    """A read-only binary file over a writable buffer (a ``bytearray``, an anonymous ``mmap``),
    which it hands out without copying (``getbuffer()``, as ``io.BytesIO`` does) so that a reader
    may keep views of it."""

    def __init__(self, buffer: bytearray | mmap.mmap) -> None:
        super().__init__()
        self._buffer, self._view, self._position = buffer, memoryview(buffer), 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def getbuffer(self) -> memoryview:
        return self._view

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._buffer)}[whence]
        self._position = max(0, base + offset)
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._buffer) if size is None or size < 0 else min(len(self._buffer), self._position + size)
        data = bytes(self._view[self._position : end])
        self._position = max(self._position, end)
        return data

    read1 = read

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        count = max(0, min(len(target), len(self._buffer) - self._position))
        memoryview(target).cast("B")[:count] = self._view[self._position : self._position + count]
        self._position += count
        return count

    def readline(self, size: int | None = -1) -> bytes:
        limit = len(self._buffer) if size is None or size < 0 else min(len(self._buffer), self._position + size)
        found = self._buffer.find(b"\n", self._position, limit)
        return self.read((limit if found < 0 else found + 1) - self._position)


def _read_hashed(file: BinaryIO, size: int) -> tuple[mmap.mmap, str]:
    """The ``size`` bytes of ``file`` in one buffer, and their sha256 (hashed on another core while
    the next chunk is read; a file of another length gets a digest that matches nothing).

    The buffer is anonymous memory (``mmap``), whose pages the kernel provides as they are first
    written: unlike a ``bytearray``, it is not filled with zeros before being filled with data.
    """
    buffer = mmap.mmap(-1, size)
    view = memoryview(buffer)
    digest = hashlib.sha256()
    position, hashing = 0, None
    try:
        while position < size and (count := file.readinto(view[position : position + _READ_CHUNK])):  # type: ignore[attr-defined]
            if hashing is not None:
                hashing.join()
            hashing = threading.Thread(target=digest.update, args=(view[position : position + count],), name="chariots-sha256")
            hashing.start()
            position += count
    finally:
        if hashing is not None:
            hashing.join()
    if position != size or file.read(1):
        return buffer, f"a blob of another size than the {size} bytes recorded"
    return buffer, digest.hexdigest()


def _rereadable(file: BinaryIO) -> bool:
    """Whether reading ``file`` a second time costs no second transfer (a local file, memory)."""
    if isinstance(file, io.BytesIO):
        return True
    try:
        file.fileno()
    except (OSError, AttributeError, ValueError):
        return False
    return True


def _file_sha256(file: BinaryIO) -> str:
    """The sha256 of a file with a descriptor or of a BytesIO, from its start."""
    if isinstance(file, io.BytesIO):
        return hashlib.sha256(file.getbuffer()).hexdigest()
    try:
        # One pass over the mapped pages: no copy into a buffer, and the GIL is released.
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return hashlib.sha256(mapped).hexdigest()
    except (ValueError, OSError):  # an empty file cannot be mapped; some filesystems refuse
        file.seek(0)
        return hashlib.file_digest(file, "sha256").hexdigest()


def _copy_hashed(source: BinaryIO, target: BinaryIO) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    while count := source.readinto(view):  # type: ignore[attr-defined]
        digest.update(view[:count])
        target.write(view[:count])
    return digest.hexdigest()


# -- in memory ---------------------------------------------------------------------------------------
class MemorySaver(BaseSaver):
    """A saver that keeps bytes in memory, for tests and short-lived apps.

    It lives in one process: copies sent to another process (pickled) hold a private copy.
    """

    def __init__(self) -> None:
        self._blobs: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def open_write(self, path: str, *, durable: bool = True) -> Iterator[BinaryIO]:
        check_relative_path(path)
        buffer = io.BytesIO()
        yield buffer
        with self._lock:
            self._blobs[path] = (buffer.getvalue(), time.time())

    @contextmanager
    def open_read(self, path: str) -> Iterator[BinaryIO]:
        yield io.BytesIO(self.load(path))

    def save(self, path: str, data: bytes, *, durable: bool = True) -> None:
        with self._lock:
            self._blobs[check_relative_path(path)] = (bytes(data), time.time())

    def load(self, path: str) -> bytes:
        with self._lock:
            try:
                return self._blobs[check_relative_path(path)][0]
            except KeyError:
                raise FileNotFoundError(f"nothing is saved at {path!r} in this MemorySaver") from None

    def exists(self, path: str) -> bool:
        with self._lock:
            return check_relative_path(path) in self._blobs

    def delete(self, path: str) -> None:
        with self._lock:
            self._blobs.pop(check_relative_path(path), None)

    def blobs(self, under: str = "") -> Iterator[BlobInfo]:
        prefix = f"{check_relative_path(under).rstrip('/')}/" if under else ""
        with self._lock:
            found = [BlobInfo(path, len(data), at) for path, (data, at) in self._blobs.items() if path.startswith(prefix)]
        return iter(found)

    def __repr__(self) -> str:
        return f"<MemorySaver with {len(self._blobs)} blobs>"
