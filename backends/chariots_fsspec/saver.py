"""``FsspecSaver``: a saver on any filesystem fsspec knows.

Local directories (a plain path or ``file://``) are written with the operating system
directly: bytes go to a temporary file beside the target, which is renamed into place once
every byte is written (so no reader and no killed process leaves half a blob under the real
name), then fsynced before ``save`` returns unless the caller passes ``durable=False`` (job
results, which need only survive the writing process being killed). Object stores
(``gs://``, ``s3://``, ``memory://``...) replace whole objects in one request, so they are
written in place; other filesystems get a temporary name and a move.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from typing import Any

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from chariots_core.errors import BackendError, ConfigError, StoreError
from chariots_core.savers import check_relative_path, ensure_directory

__all__ = ["FsspecSaver"]

# Protocols whose packages live in a chariots extra; the others are fsspec's own business.
_EXTRAS = {"gs": "gcs", "gcs": "gcs", "s3": "dask", "s3a": "dask"}
# Filesystems where one write replaces a whole object atomically: no temporary name needed.
_WHOLE_OBJECT_PROTOCOLS = frozenset({"memory", "gs", "gcs", "s3", "s3a", "az", "abfs", "abfss"})


class FsspecSaver:
    """A saver that keeps each blob as a file (or object) under a root URL.

    :param url: the root: a local directory path, ``file:///dir``, ``memory://prefix``,
        ``gs://bucket/prefix`` (needs ``gcsfs``), ``s3://bucket/prefix`` (needs ``s3fs``) or
        any URL fsspec understands. A local root directory is created if missing.
    :param storage_options: passed to the fsspec filesystem (credentials, endpoints...).
    :raises BackendError: if the package implementing the URL's protocol is not installed.
    :raises ConfigError: if fsspec knows no such protocol.
    :raises StoreError: if a local root exists and is not a directory, or cannot be created.

    The saver pickles as its URL and options, so worker processes reopen the same root.
    """

    def __init__(self, url: str | os.PathLike = "./chariots_data/blobs", **storage_options: Any) -> None:
        self.url = os.fspath(url)
        self.storage_options = storage_options
        self._fs, root = _filesystem(self.url, storage_options)
        self._local = isinstance(self._fs, LocalFileSystem)
        self._root = root.rstrip("/")
        protocols = self._fs.protocol if isinstance(self._fs.protocol, tuple) else (self._fs.protocol,)
        self._whole_objects = not self._local and bool(_WHOLE_OBJECT_PROTOCOLS.intersection(protocols))
        if self._local:
            ensure_directory(self._root, f"the FsspecSaver({self.url!r}) directory")

    def save(self, path: str, data: bytes, *, durable: bool = True) -> None:
        """Store ``data`` at ``path``, replacing what was there; flushed when this returns.

        :param durable: on a local directory, fsync the file before returning, so the bytes
            survive an OS crash or power cut. With ``False`` they are handed to the kernel
            (they survive this process being killed) but an OS crash may lose them; the
            blob is still never seen half-written. Object stores ignore it: a request that
            returns has stored the object.
        """
        target = self._full(path)
        data = bytes(data)
        try:
            if self._local:
                _write_local(target, data, durable)
            elif self._whole_objects:
                self._fs.pipe_file(target, data)
            else:
                self._write_then_move(target, data)
        except Exception as exc:  # each fsspec backend raises its own error types
            raise self._error("write", path, exc) from exc

    def load(self, path: str) -> bytes:
        """The bytes at ``path``.

        :raises FileNotFoundError: if nothing is stored there.
        :raises StoreError: if the storage cannot be read.
        """
        target = self._full(path)
        try:
            if self._local:
                with open(target, "rb") as file:
                    return file.read()
            return self._fs.cat_file(target)
        except FileNotFoundError:
            raise FileNotFoundError(f"nothing is saved at {path!r} in {self!r}") from None
        except Exception as exc:
            raise self._error("read", path, exc) from exc

    def exists(self, path: str) -> bool:
        """Whether a blob is stored at ``path`` (a directory is not a blob)."""
        target = self._full(path)
        try:
            return os.path.isfile(target) if self._local else self._fs.isfile(target)
        except Exception as exc:
            raise self._error("check", path, exc) from exc

    def delete(self, path: str) -> None:
        """Remove the blob at ``path``; nothing happens if there is none."""
        target = self._full(path)
        try:
            if self._local:
                os.remove(target)
            else:
                self._fs.rm_file(target)
        except FileNotFoundError:
            return
        except Exception as exc:
            raise self._error("delete", path, exc) from exc

    def _write_then_move(self, target: str, data: bytes) -> None:
        self._fs.makedirs(target.rpartition("/")[0], exist_ok=True)
        temporary = f"{target}.{uuid.uuid4().hex}.tmp"
        self._fs.pipe_file(temporary, data)
        try:
            self._fs.mv(temporary, target)
        except BaseException:
            self._fs.rm_file(temporary)
            raise

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], **state["storage_options"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"FsspecSaver({self.url!r})"

    def _full(self, path: str) -> str:
        check_relative_path(path)
        if self._local:
            return os.path.join(self._root, *path.split("/"))
        return f"{self._root}/{path}"

    def _error(self, action: str, path: str, exc: BaseException) -> StoreError:
        detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return StoreError(
            f"cannot {action} {path!r} in {self!r}: {detail}. Check that the location exists, "
            "is writable and that the credentials (storage_options) are right"
        )


def _filesystem(url: str, storage_options: dict[str, Any]) -> tuple[fsspec.AbstractFileSystem, str]:
    try:
        return url_to_fs(url, **storage_options)
    except ImportError as exc:
        protocol = url.partition("://")[0]
        extra = _EXTRAS.get(protocol)
        fix = f"pip install 'chariots[{extra}]'" if extra else "install the package fsspec names"
        msg = f"FsspecSaver({url!r}) needs the {protocol!r} filesystem, which is not installed ({exc}); {fix}"
        raise BackendError(msg) from exc
    except ValueError as exc:
        msg = (
            f"FsspecSaver({url!r}): {exc}. Use a local path, file://, memory://, gs://, s3:// or "
            "another protocol listed in fsspec.available_protocols()"
        )
        raise ConfigError(msg) from exc


def _write_local(target: str, data: bytes, durable: bool) -> None:
    directory = os.path.dirname(target)
    os.makedirs(directory, exist_ok=True)
    name = os.path.basename(target)
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    with os.fdopen(descriptor, "wb") as file:
        try:
            file.write(data)
            file.flush()
            # Every byte is written before the name appears, so no reader sees half a blob.
            os.replace(temporary, target)
        except BaseException:
            # Leave no temporary file behind, whatever stopped the write.
            try:
                os.remove(temporary)
            except FileNotFoundError:
                pass
            raise
        if durable:
            # One fsync after the rename: the renamed file's inode changed with the rename, so
            # on journaling filesystems (ext4, xfs) this commits the bytes and the new name
            # together.
            os.fsync(file.fileno())
