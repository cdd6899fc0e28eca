"""One LMDB environment per process and directory, shared by every store that opens it.

LMDB has two rules a store must not break: an environment must not be opened twice by one
process (closing one handle would drop the locks the other relies on), and an environment
must not be used across ``fork()``. Stores therefore borrow environments from this module,
which keys them by process id and real path: a forked child finds no entry under its own pid
and opens a fresh environment, and two stores on one directory in one process share one.

:func:`transaction` runs a function in a write (or one-off read) transaction and
:func:`reading` holds a read transaction for a ``with`` block; both hide LMDB's map
management: a full map is grown and the write retried, and a map grown by another process
is adopted. Growing the map needs every transaction of the process finished, so transactions
pass a :class:`Gate` that lets any number in at once, or one resize alone.

LMDB's own errors become :class:`~chariots_core.errors.StoreError`: those that mean damaged
files (a corrupt page, a bad header) say so and that the store must be restored from a backup.

A store has two environments, each a :class:`Layout`: :data:`OPS` (op versions, links,
journals) and :data:`JOBS` (job records, in the store's ``jobs`` subdirectory). LMDB fixes
syncing per open environment and refuses to open one path twice in a process, hence two paths.

**Durability.** An :data:`OPS` commit is durable when it returns: LMDB writes the commit's
pages and syncs them (``fdatasync``), then writes the meta page that makes them the current state
through a descriptor opened with ``O_DSYNC`` (``metasync``), so an OS crash or power cut after
the commit returns cannot undo it, and one during it leaves the previous state.
:data:`OPS_UNDURABLE` (``LMDBOpStore(path, durable=False)``) skips the meta page's sync: one
disk flush per commit instead of two, and a power cut may undo the last commits, never part of
one (LMDB's ``metasync=False``). :data:`JOBS` syncs nothing (see ``LMDBOpStore``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import attrs
import lmdb

from chariots_core.errors import StoreError
from chariots_core.savers import ensure_directory

from .tables import SUBDATABASES, Tables, check_format

__all__ = ["JOBS", "OPS", "OPS_UNDURABLE", "Layout", "SharedEnvironment", "acquire", "reading", "release", "transaction"]

_Result = TypeVar("_Result")
# What LMDB raises for files it cannot make sense of: damage, not a wrong setting.
_DAMAGE = (
    lmdb.CorruptedError,
    lmdb.PageNotFoundError,
    lmdb.InvalidError,
    lmdb.PanicError,
    lmdb.VersionMismatchError,
    lmdb.BadChecksumError,
)


@attrs.frozen
class Layout:
    """What one environment of a store holds and how its commits reach the disk.

    :param subdirectory: where it lives below the store's directory ("" for the directory).
    :param sync: whether a commit fsyncs its pages before returning. Either way a commit is
        written to the kernel before it returns, so it survives the writing process being
        killed; without the fsync an OS crash or power cut may lose the latest commits, and
        on a filesystem that reorders writes may leave this environment unreadable.
    :param metasync: whether the meta page of a commit is synced too (only with ``sync``):
        the commit is then durable, not merely atomic.
    """

    subdirectory: str
    sync: bool
    metasync: bool

    @property
    def durable(self) -> bool:
        """Whether a commit survives an OS crash or power cut once it returns."""
        return self.sync and self.metasync


OPS = Layout("", sync=True, metasync=True)
OPS_UNDURABLE = Layout("", sync=True, metasync=False)
# Job states change several times per job: an fsync each would cost more than the job. They
# are kept apart so that what an OS crash may do to them never touches saved op versions.
JOBS = Layout("jobs", sync=False, metasync=False)


class Gate:
    """Lets any number of transactions of this process in at once, or one map resize alone."""

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._inside = 0
        self._mine = threading.local()  # how many of those are this thread's

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Held by a transaction for as long as it is open."""
        with self._condition:
            self._inside += 1
        self._mine.count = getattr(self._mine, "count", 0) + 1
        try:
            yield
        finally:
            self._mine.count -= 1
            with self._condition:
                self._inside -= 1
                if not self._inside:
                    self._condition.notify_all()

    @contextmanager
    def exclusive(self, path: str) -> Iterator[None]:
        """Held while nothing else of this process uses the environment."""
        if getattr(self._mine, "count", 0):
            msg = (
                f"the LMDB op store at {path!r} must grow its memory map (another process grew it), "
                "but this thread holds one of its views open: leave the 'with store.reader()' block first"
            )
            raise StoreError(msg)
        with self._condition:
            while self._inside:
                self._condition.wait()
            yield

    def hold_for_fork(self) -> bool:
        """Wait until no other thread has a transaction open and keep new ones out (until
        :meth:`release_after_fork`); return whether this thread has one open."""
        mine = getattr(self._mine, "count", 0)
        self._condition.acquire()
        while self._inside > mine:
            self._condition.wait()
        return mine > 0

    def release_after_fork(self) -> None:
        """Let transactions in again (in the parent, after the fork)."""
        self._condition.release()


@attrs.define(eq=False)
class SharedEnvironment:
    """An open environment, its named sub-databases, and who uses it in this process."""

    path: str
    env: lmdb.Environment
    dbs: dict[str, Any]
    layout: Layout
    gate: Gate = attrs.field(factory=Gate)
    # Ids of the stores using it: acquiring twice for one store (two threads racing to open
    # it) still needs one release.
    users: set[int] = attrs.field(factory=set)
    # In a child process: the thread that forked held a transaction of it open (see _before_fork).
    forked_mid_transaction: bool = False


_open_environments: dict[tuple[int, str], SharedEnvironment] = {}
_cache_lock = threading.Lock()


_held_for_fork: list[tuple[SharedEnvironment, bool]] = []


def _before_fork() -> None:
    """Make the child inherit no open transaction of another thread.

    A child must close the environments it inherits before it opens its own, and closing one
    aborts its open transactions, which releases their reader slots in the lock file that the
    parent shares: a writer could then reuse pages the parent's reader still reads. So a fork
    waits for the other threads' transactions to end and keeps new ones out until it is done.
    (Locks are taken in the order :func:`release` takes them: the cache's, then the gates.)
    """
    _cache_lock.acquire()
    _held_for_fork[:] = [(shared, shared.gate.hold_for_fork()) for shared in _open_environments.values()]


def _after_fork_in_parent() -> None:
    for shared, _ in _held_for_fork:
        shared.gate.release_after_fork()
    _held_for_fork.clear()
    _cache_lock.release()


def _after_fork_in_child() -> None:
    # The child's only thread is the one that held the locks: it lets go of them as the parent does.
    for shared, forked_mid_transaction in _held_for_fork:
        shared.forked_mid_transaction = forked_mid_transaction
    _after_fork_in_parent()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)


def translated(exc: lmdb.Error, path: str, action: str) -> StoreError:
    """The StoreError for an LMDB error met while doing ``action`` with the store at ``path``."""
    if isinstance(exc, _DAMAGE):
        msg = (
            f"the LMDB op store at {path!r} is damaged ({type(exc).__name__}: {exc}) or is not an "
            "LMDB store; restore the store from a backup"
        )
        return StoreError(msg)
    return StoreError(f"cannot {action} the LMDB op store at {path!r}: {exc}")


def _open(path: str, map_size: int, layout: Layout) -> SharedEnvironment:
    ensure_directory(path, "the LMDB op store directory")
    try:
        env = lmdb.open(
            path,
            map_size=map_size,
            max_dbs=len(SUBDATABASES),
            subdir=True,
            create=True,
            sync=layout.sync,
            metasync=layout.metasync,
        )
    except lmdb.Error as exc:
        error = translated(exc, path, "open")
        if not isinstance(exc, _DAMAGE):
            error = StoreError(f"{error}. The directory must be writable and hold nothing but an LMDB store")
        raise error from exc
    try:
        # Readers killed without closing keep their slots; free them before anyone waits on them.
        env.reader_check()
        dbs = _open_databases(env, path)
    except lmdb.Error as exc:
        env.close()
        raise translated(exc, path, "open the sub-databases of") from exc
    except BaseException:
        env.close()
        raise
    return SharedEnvironment(path=path, env=env, dbs=dbs, layout=layout)


def _databases_in(txn: lmdb.Transaction) -> set[bytes]:
    return {bytes(name) for name in txn.cursor().iternext(values=False)}


def _open_databases(env: lmdb.Environment, path: str) -> dict[str, Any]:
    """The sub-databases of the store at ``path``, created and initialized in a new store."""
    names = tuple(name.encode() for name in SUBDATABASES)
    with env.begin() as txn:
        found = _databases_in(txn)
    if not found:
        with env.begin(write=True) as txn:
            # Checked again under the write lock: another process may have just created it.
            if not _databases_in(txn):
                dbs = {name.decode(): env.open_db(name, txn=txn) for name in names}
                Tables(txn, dbs, path).initialize()
                return dbs
        found = set(names)
    if found != set(names):
        msg = (
            f"the LMDB store at {path!r} holds the sub-databases {sorted(map(bytes.decode, found))}, "
            f"not those of a chariots op store of layout version 2 ({list(SUBDATABASES)}): it was "
            "written by an older chariots (open it with that release), by another program, or it is "
            "damaged (restore it from a backup)"
        )
        raise StoreError(msg)
    dbs = {name.decode(): env.open_db(name, create=False) for name in names}
    with env.begin() as txn:
        check_format(Tables(txn, dbs, path))
    return dbs


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
        elif shared.layout != layout:
            msg = (
                f"the LMDB op store at {path!r} is already open in this process with "
                f"durable={shared.layout.durable}; LMDB syncs one way per process and directory, so "
                "open every LMDBOpStore of one directory with the same 'durable' in a process"
            )
            raise StoreError(msg)
        shared.users.add(id(user))
        return shared


def _close_inherited(key: tuple[int, str]) -> None:
    """Close environments of ``key``'s path that this process inherited through ``fork()``.

    They are unusable here, and py-lmdb refuses to open files that are already open in the
    process. Closing the child's copy is safe once no transaction of it is open (see
    :func:`_before_fork`): LMDB then clears only this process's reader slots and the parent's
    locks are not the child's to release.
    """
    for inherited in [other for other in _open_environments if other[1] == key[1] and other != key]:
        shared = _open_environments[inherited]
        if shared.forked_mid_transaction:
            # Closing it would abort the parent's transaction: leave it, and refuse to open another.
            msg = (
                f"this process was forked by a thread that held a view (a read transaction) of the LMDB "
                f"op store at {shared.path!r} open, so it cannot open that store safely; fork outside "
                "'with store.reader()' blocks, or start processes with the 'spawn' method"
            )
            raise StoreError(msg)
        del _open_environments[inherited]
        shared.env.close()


def release(shared: SharedEnvironment, user: object) -> None:
    """Give back ``user``'s hold on an environment; the last user in this process closes it."""
    key = (os.getpid(), os.path.realpath(shared.path))
    with _cache_lock:
        shared.users.discard(id(user))
        if not shared.users and _open_environments.get(key) is shared:
            del _open_environments[key]
            with shared.gate.exclusive(shared.path):
                shared.env.close()


def transaction(
    shared: SharedEnvironment, work: Callable[[lmdb.Transaction], _Result], write: bool = False
) -> _Result:
    """Run ``work`` in one transaction and return its result; retry it if the map must grow.

    A write commits when ``work`` returns and is aborted if it raises, so ``work`` is all or
    nothing and may safely run again.

    :raises StoreError: for any LMDB failure, naming the store's path.
    """
    while True:
        with shared.gate.shared():
            try:
                with shared.env.begin(write=write) as txn:
                    return work(txn)
            except lmdb.MapFullError:
                # The write was aborted: grow the map and replay it, so users never see this.
                size = shared.env.info()["map_size"] * 2
            except lmdb.MapResizedError:
                size = 0  # another process grew the map; adopt its size
            except lmdb.Error as exc:
                raise translated(exc, shared.path, "write to" if write else "read from") from exc
        _resize(shared, size)


@contextmanager
def reading(shared: SharedEnvironment) -> Iterator[lmdb.Transaction]:
    """A read transaction held for a ``with`` block: one committed state of the store."""
    while True:
        with shared.gate.shared():
            try:
                txn = shared.env.begin()
            except lmdb.MapResizedError:
                pass  # another process grew the map: adopt its size, below, and begin again
            except lmdb.Error as exc:
                raise translated(exc, shared.path, "read from") from exc
            else:
                began_in = os.getpid()
                try:
                    yield txn
                except lmdb.Error as exc:
                    raise translated(exc, shared.path, "read from") from exc
                finally:
                    # A child forked inside the block must not abort it: that would free the
                    # parent's reader slot, which the lock file shares.
                    if os.getpid() == began_in:
                        txn.abort()
                return
        _resize(shared, 0)


def _resize(shared: SharedEnvironment, size: int) -> None:
    with shared.gate.exclusive(shared.path):
        try:
            shared.env.set_mapsize(size)
        except lmdb.Error as exc:
            msg = f"cannot grow the LMDB op store at {shared.path!r} to {size} bytes: {exc}"
            raise StoreError(msg) from exc
