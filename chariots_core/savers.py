"""Savers: bytes by path, the storage half of an op store.

A saver knows nothing of ops or versions: it puts bytes at a path below its root and gives
them back. The op store (metadata) decides the paths and checks what comes back.
:class:`MemorySaver` keeps bytes in a dict (tests, throw-away apps);
``chariots_fsspec.FsspecSaver`` covers local files, ``memory://``, ``gs://``, ``s3://``...
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Protocol, runtime_checkable

from .errors import IntegrityError, StoreError

__all__ = ["BaseSaver", "MemorySaver", "check_relative_path", "ensure_directory", "read_verified"]


@runtime_checkable
class BaseSaver(Protocol):
    """What the op store needs from a byte store.

    Paths are relative, ``/``-separated, and never contain ``..``. ``save`` must not leave a
    partial file at ``path`` if it fails part-way (write aside, then move into place, where
    the storage allows it) and must have flushed the bytes when it returns.
    """

    def save(self, path: str, data: bytes) -> None:
        """Store ``data`` at ``path``, replacing what was there."""

    def load(self, path: str) -> bytes:
        """Return the bytes at ``path``; raise ``FileNotFoundError`` if there are none."""

    def exists(self, path: str) -> bool:
        """Whether something is stored at ``path``."""

    def delete(self, path: str) -> None:
        """Remove what is stored at ``path`` (nothing happens if there is nothing)."""


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


def read_verified(saver: BaseSaver, path: str, sha256: str, what: str, fix: str) -> bytes:
    """Read the bytes at ``path`` and check them against the sha256 recorded when they were saved.

    :param what: names what the bytes are, to start the error messages with.
    :param fix: tells the user how to get sound bytes back, to end them with.
    :raises IntegrityError: if the bytes are missing or do not match ``sha256``.
    """
    try:
        data = saver.load(path)
    except FileNotFoundError as exc:
        msg = f"{what} (blob {path!r} in {saver!r}): the bytes are missing; {fix}"
        raise IntegrityError(msg) from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        msg = (
            f"{what} (blob {path!r} in {saver!r}): the bytes are corrupt (sha256 "
            f"{digest[:12]}..., recorded {sha256[:12]}...); {fix}"
        )
        raise IntegrityError(msg)
    return data


class MemorySaver:
    """A saver that keeps bytes in memory, for tests and short-lived apps."""

    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def save(self, path: str, data: bytes) -> None:
        with self._lock:
            self._blobs[check_relative_path(path)] = bytes(data)

    def load(self, path: str) -> bytes:
        with self._lock:
            try:
                return self._blobs[check_relative_path(path)]
            except KeyError:
                raise FileNotFoundError(f"nothing is saved at {path!r} in this MemorySaver") from None

    def exists(self, path: str) -> bool:
        with self._lock:
            return check_relative_path(path) in self._blobs

    def delete(self, path: str) -> None:
        with self._lock:
            self._blobs.pop(check_relative_path(path), None)

    def __repr__(self) -> str:
        return f"<MemorySaver with {len(self._blobs)} blobs>"
