"""One LMDB environment per process and directory, shared by every store that opens it.

LMDB has two rules a store must not break: an environment must not be opened twice by one
process (closing one handle would drop the locks the other relies on), and an environment
must not be used across ``fork()``. Stores therefore borrow environments from this module,
which keys them by process id and real path: a forked child finds no entry under its own pid
and opens a fresh environment, and two stores on one directory in one process share one.

:func:`transaction` runs a function in a read or write transaction and hides LMDB's map
management: a full map is grown and the write retried, and a map grown by another process
is adopted.

A store has two environments, each a :class:`Layout`: :data:`OPS` (op versions, links,
snapshots) fsyncs every commit, :data:`JOBS` (job records, in the store's ``jobs``
subdirectory) never does. LMDB fixes syncing per open environment and refuses to open one
path twice in a process, hence two paths.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import lmdb

from chariots_core.errors import StoreError
from chariots_core.savers import ensure_directory

__all__ = ["JOBS", "OPS", "Layout", "SharedEnvironment", "acquire", "release", "transaction"]

_Result = TypeVar("_Result")


@attrs.frozen
class Layout:
    """What one environment of a store holds and how its commits reach the disk.

    :param subdirectory: where it lives below the store's directory ("" for the directory).
    :param subdatabases: its named sub-databases.
    :param durable: whether a commit fsyncs before returning. Either way a commit is written
        to the kernel before it returns, so it survives the writing process being killed;
        without the fsync an OS crash or power cut may lose the latest commits, and on a
        filesystem that reorders writes may leave this environment unreadable.
    """

    subdirectory: str
    subdatabases: tuple[str, ...]
    durable: bool


OPS = Layout("", ("versions", "links", "snapshots", "meta"), durable=True)
# Job states change several times per job: an fsync each would cost more than the job. They
# are kept apart so that what an OS crash may do to them never touches saved op versions.
JOBS = Layout("jobs", ("jobs", "meta"), durable=False)


@attrs.define(eq=False)
class SharedEnvironment:
    """An open environment, its named sub-databases, and who uses it in this process."""

    path: str
    env: lmdb.Environment
    dbs: dict[str, Any]
    # One thread at a time: growing the map needs every transaction of the process finished.
    lock: threading.Lock = attrs.field(factory=threading.Lock)
    # Ids of the stores using it: acquiring twice for one store (two threads racing to open
    # it) still needs one release.
    users: set[int] = attrs.field(factory=set)


_open_environments: dict[tuple[int, str], SharedEnvironment] = {}
_cache_lock = threading.Lock()


def _fresh_locks_in_child() -> None:
    # Another thread may have held a lock when the process forked; the child starts clean.
    global _cache_lock
    _cache_lock = threading.Lock()
    for shared in _open_environments.values():
        shared.lock = threading.Lock()


os.register_at_fork(after_in_child=_fresh_locks_in_child)


def _open(path: str, map_size: int, layout: Layout) -> SharedEnvironment:
    ensure_directory(path, "the LMDB op store directory")
    try:
        env = lmdb.open(
            path,
            map_size=map_size,
            max_dbs=len(layout.subdatabases),
            subdir=True,
            create=True,
            sync=layout.durable,
            # A durable commit fsyncs once instead of twice. LMDB keeps every commit atomic
            # and the store consistent; only an OS crash or power cut may undo the last one.
            metasync=False,
        )
    except lmdb.Error as exc:
        msg = (
            f"cannot open the LMDB op store at {path!r}: {exc}. The directory must be writable "
            "and hold nothing but an LMDB store (data.mdb, lock.mdb, jobs/)"
        )
        raise StoreError(msg) from exc
    try:
        # Readers killed without closing keep their slots; free them before anyone waits on them.
        env.reader_check()
        dbs = {name: env.open_db(name.encode()) for name in layout.subdatabases}
    except lmdb.Error as exc:
        env.close()
        msg = f"cannot open the sub-databases of the LMDB op store at {path!r}: {exc}"
        raise StoreError(msg) from exc
    return SharedEnvironment(path=path, env=env, dbs=dbs)


def acquire(store_path: str, layout: Layout, map_size: int, user: object) -> SharedEnvironment:
    """The ``layout`` environment of the store at ``store_path`` for this process, opened on
    first use, held for ``user``."""
    path = os.path.join(store_path, layout.subdirectory) if layout.subdirectory else store_path
    key = (os.getpid(), os.path.realpath(path))
    with _cache_lock:
        shared = _open_environments.get(key)
        if shared is None:
            _close_inherited(key)
            shared = _open_environments[key] = _open(path, map_size, layout)
        shared.users.add(id(user))
        return shared


def _close_inherited(key: tuple[int, str]) -> None:
    """Close environments of ``key``'s path that this process inherited through ``fork()``.

    They are unusable here, and py-lmdb refuses to open files that are already open in the
    process. Closing the child's copy is safe: LMDB then clears only this process's reader
    slots and the parent's locks are not the child's to release.
    """
    for inherited in [other for other in _open_environments if other[1] == key[1] and other != key]:
        _open_environments.pop(inherited).env.close()


def release(shared: SharedEnvironment, user: object) -> None:
    """Give back ``user``'s hold on an environment; the last user in this process closes it."""
    key = (os.getpid(), os.path.realpath(shared.path))
    with _cache_lock:
        shared.users.discard(id(user))
        if not shared.users and _open_environments.get(key) is shared:
            del _open_environments[key]
            with shared.lock:
                shared.env.close()


def transaction(
    shared: SharedEnvironment, work: Callable[[lmdb.Transaction], _Result], write: bool = False
) -> _Result:
    """Run ``work`` in one transaction and return its result; retry it if the map must grow.

    A write commits when ``work`` returns and is aborted if it raises, so ``work`` is all or
    nothing and may safely run again.

    :raises StoreError: for any LMDB failure, naming the store's path.
    """
    with shared.lock:
        while True:
            try:
                with shared.env.begin(write=write) as txn:
                    return work(txn)
            except lmdb.MapFullError:
                # The write was aborted: grow the map and replay it, so users never see this.
                _resize(shared, shared.env.info()["map_size"] * 2)
            except lmdb.MapResizedError:
                # Another process grew the map; adopt its size.
                _resize(shared, 0)
            except lmdb.Error as exc:
                kind = "write to" if write else "read from"
                msg = f"cannot {kind} the LMDB op store at {shared.path!r}: {exc}"
                raise StoreError(msg) from exc


def _resize(shared: SharedEnvironment, size: int) -> None:
    try:
        shared.env.set_mapsize(size)
    except lmdb.Error as exc:
        msg = f"cannot grow the LMDB op store at {shared.path!r} to {size} bytes: {exc}"
        raise StoreError(msg) from exc
