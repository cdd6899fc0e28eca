"""The object op store's requests to its filesystem, and the sealed format of its objects.

:class:`Bucket` is every request the store makes: one object read, written, created if absent,
probed, listed or deleted, or many read at once. It turns the filesystem's errors (s3fs, gcsfs,
botocore...) into :class:`~chariots_core.errors.StoreError` saying what to check.

**Sealed objects.** Every object the store writes is ``<magic> <format> <sha256 of the body>``,
a newline, then the body as compact JSON (:func:`seal`). Reading checks the header and the
checksum before parsing (:func:`unseal`): a damaged object, or one Chariots did not write,
raises :class:`~chariots_core.errors.IntegrityError` naming it and the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

from chariots_core.errors import ChariotsError, IntegrityError, StoreError

__all__ = ["ATOMIC_CREATE", "FORMAT", "Bucket", "seal", "unseal"]

FORMAT = 2
# Filesystems whose create-if-absent is atomic (S3: If-None-Match, GCS: ifGenerationMatch=0).
ATOMIC_CREATE = frozenset({"s3", "s3a", "gs", "gcs"})
_HEADER = re.compile(rb"(chariots-[a-z]+) (\d+) ([0-9a-f]{64})\Z")
# fsspec's memory filesystem checks, then writes; it lives in one process, so a lock held
# around the two makes its create-if-absent atomic.
_memory_create_lock = threading.Lock()


def seal(magic: str, body: Any) -> bytes:
    """``body`` as the bytes of a sealed object of kind ``magic`` (``chariots-log``...)."""
    data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return f"{magic} {FORMAT} {hashlib.sha256(data).hexdigest()}\n".encode() + data


def unseal(magic: str, data: bytes, where: str) -> Any:
    """The body of a sealed object of kind ``magic``.

    :param where: names the object and the store in the error.
    :raises IntegrityError: if the bytes are not such an object, or are damaged.
    """
    header, newline, body = bytes(data).partition(b"\n")
    match = _HEADER.match(header)
    if not newline or match is None or match.group(1).decode() != magic:
        msg = (
            f"{where} is not a {magic} object of Chariots (its first line is {header[:60]!r}): it is "
            "damaged or was not written by Chariots; restore it from a backup"
        )
        raise IntegrityError(msg)
    if int(match.group(2)) != FORMAT:
        msg = f"{where} is of format {int(match.group(2))}, this Chariots reads format {FORMAT}: use the Chariots that wrote it"
        raise StoreError(msg)
    if hashlib.sha256(body).hexdigest() != match.group(3).decode():
        raise IntegrityError(f"{where} is damaged (its sha256 does not match its header); restore it from a backup")
    try:
        return json.loads(body)
    except ValueError as exc:  # a body that matches its checksum but is no JSON: not ours
        raise IntegrityError(f"{where} holds no valid JSON ({exc}): it was not written by Chariots") from exc


class Bucket:
    """The requests of the store at ``url`` to its fsspec filesystem ``fs``.

    An asynchronous filesystem (s3fs, gcsfs) cannot be used across ``fork()``: a process that
    inherits the bucket opens another with ``reopen()``.

    :raises StoreError: if the filesystem cannot create objects atomically.
    """

    def __init__(self, fs: Any, url: str, reopen: Callable[[], Any]) -> None:
        self.url, self._reopen = url, reopen
        self._opened = (os.getpid(), fs)
        protocols = set(fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
        if "memory" not in protocols and not protocols & ATOMIC_CREATE:
            msg = (
                f"the object op store at {url!r} needs a filesystem that creates an object only if "
                f"it is absent, atomically ({', '.join(sorted(ATOMIC_CREATE))}: S3 and Google Cloud "
                "Storage), so that concurrent commits cannot overwrite each other; for a local "
                "directory use the LMDB store (Chariots(path='/a/directory'))"
            )
            raise StoreError(msg)
        self._exclusive = _memory_create_lock if "memory" in protocols else contextlib.nullcontext()

    @property
    def fs(self) -> Any:
        """The filesystem, opened in this process."""
        pid, fs = self._opened
        if pid != os.getpid():
            self._opened = (os.getpid(), fs := self._reopen())
        return fs

    @contextlib.contextmanager
    def translating(self, action: str) -> Iterator[None]:
        """Turn the filesystem's errors into a StoreError saying what failed and what to check."""
        try:
            yield
        except ChariotsError:
            raise
        except Exception as exc:
            msg = (
                f"the object op store at {self.url!r} cannot {action}: {type(exc).__name__}: {exc}. "
                "Check that the bucket exists, that the credentials may read and write it, "
                "and the endpoint/storage options"
            )
            raise StoreError(msg) from exc

    def get(self, path: str) -> bytes | None:
        """The object at ``path``, or ``None`` if there is none (one ``GET``)."""
        with self.translating(f"read {path}"):
            try:
                return self.fs.cat_file(path)
            except FileNotFoundError:
                return None

    def get_many(self, paths: list[str]) -> dict[str, bytes | None]:
        """The objects at ``paths`` (``None`` for those missing), read concurrently where the
        filesystem can."""
        if not paths:
            return {}
        by_name = {self.fs._strip_protocol(path): path for path in paths}
        with self.translating(f"read {', '.join(paths[:3])}{' and more' if len(paths) > 3 else ''}"):
            found = self.fs.cat(list(by_name), on_error="return")
        datas: dict[str, bytes | None] = {}
        for name, data in found.items():
            if isinstance(data, BaseException) and not isinstance(data, FileNotFoundError):
                with self.translating(f"read {by_name[name]}"):
                    raise data
            datas[by_name[name]] = None if isinstance(data, BaseException) else data
        return datas

    def exists(self, path: str) -> bool:
        """Whether there is an object at ``path`` (a one-byte ranged ``GET``: no listing)."""
        with self.translating(f"read {path}"):
            try:
                self.fs.cat_file(path, start=0, end=1)
            except FileNotFoundError:
                return False
        return True

    def put(self, path: str, data: bytes) -> None:
        """Write ``data`` at ``path``, replacing what was there (one ``PUT``)."""
        with self.translating(f"write {path}"):
            self.fs.pipe_file(path, data)

    def create(self, path: str, data: bytes) -> None:
        """Write ``data`` at ``path`` only if nothing is there (one ``PUT``).

        :raises StoreError: caused by ``FileExistsError`` if something is there; any other
            StoreError may come after the object was written (an answer lost on the way).
        """
        with self.translating(f"write {path}"), self._exclusive:
            self.fs.pipe_file(path, data, mode="create")

    def list(self, directory: str) -> list[str]:
        """The paths below ``directory``, sorted (one request per 1,000 on S3)."""
        with self.translating(f"list {directory}"):
            try:
                return sorted(self.fs.ls(directory, detail=False))
            except FileNotFoundError:
                return []

    def delete(self, path: str) -> None:
        with self.translating(f"delete {path}"):
            self.fs.rm_file(path)
