"""Savers: bytes by path, the storage half of an op store.

A saver knows nothing of ops or versions: it puts bytes at a path below its root and gives
them back. The op store (metadata) decides the paths and checks what comes back.
:class:`MemorySaver` keeps bytes in a dict (tests, throw-away apps);
``chariots_fsspec.FsspecSaver`` covers local files, ``memory://``, ``gs://``, ``s3://``...

Bytes flow as streams: :meth:`BaseSaver.open_write` and :meth:`BaseSaver.open_read` hand out
binary file objects, so a model of several gigabytes is never held whole in memory on its
way to or from storage; ``save``/``load`` (whole byte strings) are built on them. What is
read back is checked against the sha256 recorded when it was written
(:mod:`chariots_core.verified`).
"""

from __future__ import annotations

import abc
import io
import os
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import BinaryIO, Protocol, runtime_checkable

import attrs

from .errors import StoreError

__all__ = ["BaseSaver", "BlobInfo", "MemorySaver", "DEBRIS_AGE", "check_relative_path", "ensure_directory"]

DEBRIS_AGE = 24 * 3600.0
"""Seconds after which what an interrupted write left behind is collected when a store or saver
opens (and the default age of ``Chariots.collect_garbage``): far longer than any write takes,
so a write still in progress in another process is never mistaken for debris."""

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
            found = [
                BlobInfo(path, len(data), at)
                for path, (data, at) in self._blobs.items()
                if path.startswith(prefix)
            ]
        return iter(found)

    def __repr__(self) -> str:
        return f"<MemorySaver with {len(self._blobs)} blobs>"

