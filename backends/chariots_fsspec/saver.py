"""``FsspecSaver``: a saver on any filesystem fsspec knows.

**Local directories** (a plain path or ``file://``) are written with the operating system
directly. A write streams into a temporary file in the root's ``.partial`` directory, which is
renamed into place once every byte is written, so no reader and no killed process ever leaves
half a blob under the real name. A durable write (the default) survives an OS crash or power
cut once it returns, by syncing in this order:

1. ``fsync`` of the temporary file: the data is on disk before it gets its name;
2. ``rename`` to the final name;
3. ``fsync`` of the final name's directory: the name is on disk (and of the parent of every
   directory the write created).

``FsspecSaver(url, durable=False)`` (or ``save(..., durable=False)`` for one write, as job
results do) skips the syncs: the bytes then survive this process being killed, but an OS crash
may lose the latest writes; a blob is still never seen half-written.

**Object stores** (``gs://``, ``s3://``...) replace whole objects atomically: a write streams
into the filesystem's own upload (one request for small objects, a multipart upload for big
ones) that is committed when the write ends, and abandoned (the multipart upload aborted) when
it fails. ``memory://`` writes are assembled in memory and stored at once. **Other
filesystems** get a temporary name in ``.partial`` and a move.

**Debris.** A killed local write leaves its temporary file in ``.partial``: files there older
than :data:`~chariots_core.savers.DEBRIS_AGE` are removed whenever a saver opens the root, and
younger ones by :meth:`FsspecSaver.collect_debris`. ``.partial`` is the saver's own: it is not
a blob path, and never listed. (Multipart uploads a killed process leaves on S3 are invisible
and cost storage until aborted: give the bucket a lifecycle rule that aborts incomplete uploads.)
"""

from __future__ import annotations

import datetime
import errno
import io
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from chariots_core.errors import BackendError, ConfigError, StoreError
from chariots_core.savers import DEBRIS_AGE, BaseSaver, BlobInfo, check_relative_path, ensure_directory

__all__ = ["FsspecSaver", "PARTIAL"]

PARTIAL = ".partial"
"""The directory below the root where writes in progress live until they are renamed into place."""

# Protocols whose packages live in a chariots extra; the others are fsspec's own business.
_EXTRAS = {"gs": "gcs", "gcs": "gcs", "s3": "dask", "s3a": "dask"}
# Filesystems where one write replaces a whole object atomically: no temporary name needed.
_WHOLE_OBJECT_PROTOCOLS = frozenset({"memory", "gs", "gcs", "s3", "s3a", "az", "abfs", "abfss"})
# Where fsspec filesystems put an object's modification time in their listings.
_TIME_FIELDS = ("mtime", "LastModified", "last_modified", "updated", "modified", "created")


class FsspecSaver(BaseSaver):
    """A saver that keeps each blob as a file (or object) under a root URL.

    :param url: the root: a local directory path, ``file:///dir``, ``memory://prefix``,
        ``gs://bucket/prefix`` (needs ``gcsfs``), ``s3://bucket/prefix`` (needs ``s3fs``) or
        any URL fsspec understands. A local root directory is created if missing, and must be
        one filesystem (writes are renamed from ``<root>/.partial`` into place).
    :param durable: ``False`` to skip the fsyncs of local writes (see the module docstring):
        faster, but an OS crash or power cut may lose the latest writes.
    :param storage_options: passed to the fsspec filesystem (credentials, endpoints...).
    :raises BackendError: if the package implementing the URL's protocol is not installed.
    :raises ConfigError: if fsspec knows no such protocol.
    :raises StoreError: if a local root exists and is not a directory, or cannot be created.

    The saver pickles as its URL and options, so worker processes reopen the same root.
    """

    def __init__(
        self, url: str | os.PathLike = "./chariots_data/blobs", *, durable: bool = True, **storage_options: Any
    ) -> None:
        self.url = os.fspath(url)
        self.durable = durable
        self.storage_options = storage_options
        self._fs, root = _filesystem(self.url, storage_options)
        self._local = isinstance(self._fs, LocalFileSystem)
        self._root = root.rstrip("/")
        protocols = self._fs.protocol if isinstance(self._fs.protocol, tuple) else (self._fs.protocol,)
        self._whole_objects = not self._local and bool(_WHOLE_OBJECT_PROTOCOLS.intersection(protocols))
        self._memory = "memory" in protocols
        if self._local:
            ensure_directory(self._root, f"the FsspecSaver({self.url!r}) directory")
            ensure_directory(self._join(PARTIAL), f"the FsspecSaver({self.url!r}) directory of writes in progress")
            self.collect_debris(DEBRIS_AGE)

    # -- streams -------------------------------------------------------------------------------
    @contextmanager
    def open_write(self, path: str, *, durable: bool = True) -> Iterator[BinaryIO]:
        """``with saver.open_write(path) as file:`` the bytes written replace those at ``path``
        when the block ends; if it raises, nothing changes at ``path`` (see the module docstring).

        :param durable: on a local directory, sync data and name before the block ends (unless
            the saver was made with ``durable=False``); object stores ignore it.
        :raises StoreError: if the storage cannot be written.
        """
        target = self._full(path)
        if self._local:
            writes = self._local_write(target, durable and self.durable)
        elif self._memory:
            writes = self._memory_write(target)
        elif self._whole_objects:
            writes = self._object_write(target)
        else:
            writes = self._write_then_move(target)
        # The caller's block raises its own errors as they are, but an OSError there comes from
        # writing to the file (a full disk, a file size limit): that one is the storage's.
        callers: list[BaseException] = []
        try:
            with writes as file:
                try:
                    yield file
                except BaseException as exc:
                    if not isinstance(exc, OSError):
                        callers.append(exc)
                    raise
        except Exception as exc:
            if any(exc is mine for mine in callers) or isinstance(exc, StoreError):
                raise
            raise self._error("write", path, exc) from exc

    @contextmanager
    def open_read(self, path: str) -> Iterator[BinaryIO]:
        """``with saver.open_read(path) as file:`` a seekable binary file of the bytes at ``path``.

        :raises FileNotFoundError: if nothing is stored there.
        :raises StoreError: if the storage cannot be read.
        """
        target = self._full(path)
        with self._translated("read", path):
            file = open(target, "rb") if self._local else self._fs.open(target, "rb")  # noqa: SIM115 - closed below
        with file:
            yield file

    # -- whole byte strings: one request where the storage allows -------------------------------
    def save(self, path: str, data: bytes, *, durable: bool = True) -> None:
        """Store ``data`` at ``path``, replacing what was there; flushed when this returns.

        :param durable: see :meth:`open_write` (job results pass ``False``).
        """
        if self._whole_objects:
            with self._translated("write", path):
                self._fs.pipe_file(self._full(path), bytes(data))
            return
        super().save(path, data, durable=durable)

    def load(self, path: str) -> bytes:
        """The bytes at ``path``.

        :raises FileNotFoundError: if nothing is stored there.
        :raises StoreError: if the storage cannot be read.
        """
        if self._local:
            return super().load(path)
        target = self._full(path)
        with self._translated("read", path):
            if not self._whole_objects:
                return self._fs.cat_file(target)
            try:
                # One GET: asked for a whole object, s3fs first asks its size (a HEAD) to choose
                # between one read and parallel ranges; a read from byte 0 skips that question.
                return self._fs.cat_file(target, start=0)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                return self._fs.cat_file(target)  # an empty object has no byte 0 to read from

    # -- the rest of the saver protocol ----------------------------------------------------------
    def exists(self, path: str) -> bool:
        """Whether a blob is stored at ``path`` (a directory is not a blob)."""
        target = self._full(path)
        with self._translated("check", path):
            return os.path.isfile(target) if self._local else self._fs.isfile(target)

    def delete(self, path: str) -> None:
        """Remove the blob at ``path``; nothing happens if there is none."""
        target = self._full(path)
        try:
            with self._translated("delete", path):
                if self._local:
                    os.remove(target)
                else:
                    self._fs.rm_file(target)
        except FileNotFoundError:
            return

    def blobs(self, under: str = "") -> Iterator[BlobInfo]:
        """Every blob below the directory ``under`` (``""``: all), with its size and modification
        time; ``.partial`` (writes in progress) is never listed."""
        top = self._full(under) if under else self._root
        with self._translated("list", under or "the root"):
            found = list(self._local_blobs(top) if self._local else self._remote_blobs(top))
        return iter(found)

    def collect_debris(self, older_than: float, *, dry_run: bool = False) -> list[str]:
        """Remove the temporary files in ``.partial`` older than ``older_than`` seconds (those of
        writes that were killed); return their paths below the root. Object stores keep none."""
        if self._whole_objects:
            return []
        cutoff = time.time() - older_than
        directory = self._join(PARTIAL)
        removed = []
        with self._translated("collect the debris of", PARTIAL):
            if self._local:
                entries = list(_local_partials(directory))
            else:
                listed = self._fs.ls(directory, detail=True) if self._fs.isdir(directory) else []
                entries = [(info["name"].rstrip("/").rpartition("/")[2], _modified(self._fs, info)) for info in listed]
            for name, modified in entries:
                if modified >= cutoff:
                    continue  # maybe a write in progress in another process
                if not dry_run:
                    self._remove_partial(name)
                removed.append(f"{PARTIAL}/{name}")
        return removed

    # -- writes ----------------------------------------------------------------------------------
    @contextmanager
    def _local_write(self, target: str, durable: bool) -> Iterator[BinaryIO]:
        """The temporary file; put in place (and synced) when the block ends, removed if it raises."""
        directory = os.path.dirname(target)
        created = _make_directories(directory, self._root)
        descriptor, temporary = tempfile.mkstemp(dir=self._join(PARTIAL), prefix=f"{os.path.basename(target)}.")
        try:
            with os.fdopen(descriptor, "wb") as file:
                yield file
                file.flush()
                if durable:
                    os.fsync(file.fileno())  # the data reaches the disk before its name does
            try:
                os.replace(temporary, target)
            except OSError as exc:
                if exc.errno == errno.EXDEV:
                    msg = (
                        f"{target!r} is on another filesystem than {self._join(PARTIAL)!r}; keep the saver's "
                        "root on one filesystem"
                    )
                    raise StoreError(msg) from exc
                raise
        except BaseException:
            _remove_quietly(temporary)  # whatever stopped the write leaves no temporary file
            raise
        if durable:
            for synced in [directory, *(os.path.dirname(made) for made in created)]:
                _fsync_directory(synced)  # the new name (and every directory made for it)

    @contextmanager
    def _memory_write(self, target: str) -> Iterator[BinaryIO]:
        # memory:// files are visible from the moment they are opened: assemble the bytes first.
        buffer = io.BytesIO()
        yield buffer
        self._fs.pipe_file(target, buffer.getvalue())

    @contextmanager
    def _object_write(self, target: str) -> Iterator[BinaryIO]:
        file = self._fs.open(target, "wb")
        try:
            yield file
        except BaseException:
            # Closing would commit what was written: abort the upload and mark the file closed
            # so that nothing (not even its finalizer) commits it.
            try:
                file.discard()
            finally:
                file.closed = True
            raise
        file.close()

    @contextmanager
    def _write_then_move(self, target: str) -> Iterator[BinaryIO]:
        self._fs.makedirs(target.rpartition("/")[0], exist_ok=True)
        temporary = self._join(PARTIAL, uuid.uuid4().hex)
        self._fs.makedirs(self._join(PARTIAL), exist_ok=True)
        try:
            with self._fs.open(temporary, "wb") as file:
                yield file
            self._fs.mv(temporary, target)
        except BaseException:
            if self._fs.exists(temporary):
                self._fs.rm_file(temporary)
            raise

    # -- listing ---------------------------------------------------------------------------------
    def _local_blobs(self, top: str) -> Iterator[BlobInfo]:
        for directory, subdirectories, files in os.walk(top):
            if directory == self._root:
                subdirectories[:] = [name for name in subdirectories if name != PARTIAL]
            for name in files:
                full = os.path.join(directory, name)
                try:
                    stat = os.stat(full)
                except FileNotFoundError:
                    continue  # deleted while listing
                yield BlobInfo(os.path.relpath(full, self._root).replace(os.sep, "/"), stat.st_size, stat.st_mtime)

    def _remote_blobs(self, top: str) -> Iterator[BlobInfo]:
        if not self._fs.isdir(top):
            return
        root = self._fs._strip_protocol(self._root).rstrip("/")
        for name, info in self._fs.find(top, detail=True).items():
            relative = self._fs._strip_protocol(name)[len(root) :].lstrip("/")
            if relative.split("/")[0] == PARTIAL or info.get("type") == "directory":
                continue
            yield BlobInfo(relative, int(info.get("size") or 0), _modified(self._fs, info))

    # -- helpers ---------------------------------------------------------------------------------
    def _remove_partial(self, name: str) -> None:
        full = self._join(PARTIAL, name)
        if self._local:
            _remove_quietly(full)
        elif self._fs.exists(full):
            self._fs.rm_file(full)

    def _join(self, *parts: str) -> str:
        return os.path.join(self._root, *parts) if self._local else "/".join((self._root, *parts))

    def _full(self, path: str) -> str:
        check_relative_path(path)
        if path.split("/")[0] == PARTIAL:
            msg = f"{PARTIAL!r} is where {self!r} keeps writes in progress; choose another path than {path!r}"
            raise StoreError(msg)
        return self._join(*path.split("/"))

    @contextmanager
    def _translated(self, action: str, path: str) -> Iterator[None]:
        """Turn the storage's errors into :class:`StoreError`; ``FileNotFoundError`` stays itself."""
        try:
            yield
        except FileNotFoundError:
            if action == "read":
                raise FileNotFoundError(f"nothing is saved at {path!r} in {self!r}") from None
            raise
        except StoreError:
            raise
        except Exception as exc:  # each fsspec backend raises its own error types
            raise self._error(action, path, exc) from exc

    def _error(self, action: str, path: str, exc: BaseException) -> StoreError:
        detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return StoreError(
            f"cannot {action} {path!r} in {self!r}: {detail}. Check that the location exists, "
            "is writable and that the credentials (storage_options) are right"
        )

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "durable": self.durable, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], durable=state.get("durable", True), **state["storage_options"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"FsspecSaver({self.url!r})"


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


def _modified(fs: fsspec.AbstractFileSystem, info: dict[str, Any]) -> float:
    """When an object was last written, from a listing entry; now if the filesystem does not say
    (an object of unknown age is never old enough to be taken for debris)."""
    for field in _TIME_FIELDS:
        value = info.get(field)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, datetime.datetime):
            return value.timestamp()
        if isinstance(value, str):
            try:
                return datetime.datetime.fromisoformat(value).timestamp()
            except ValueError:
                continue
    return time.time()


def _make_directories(directory: str, root: str) -> list[str]:
    """Create ``directory`` and its missing parents below ``root``; return those this call made."""
    missing = []
    while not os.path.isdir(directory) and directory != root:
        missing.append(directory)
        directory = os.path.dirname(directory)
    created = []
    for path in reversed(missing):
        try:
            os.mkdir(path)
        except FileExistsError:
            continue  # another writer made it (or it is a file: the write below fails naming it)
        created.append(path)
    return created


def _fsync_directory(directory: str) -> None:
    descriptor = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


def _local_partials(directory: str) -> Iterator[tuple[str, float]]:
    """Name and modification time of each temporary file in ``directory``; a file that another
    process puts in place (or removes) between the listing and its ``stat`` is simply not there."""
    for entry in os.scandir(directory):
        try:
            if entry.is_file():
                yield entry.name, entry.stat().st_mtime
        except FileNotFoundError:
            continue
