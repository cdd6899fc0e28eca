"""Backends by name or URL scheme, imported only when first used.

The core never imports a backend package at import time: it keeps, per kind of backend, a
table from a name (``"lmdb"``, ``"multiprocess"``) or URL scheme (``"gs"``) to a dotted path
``"package.module:Class"`` and the extra that installs it. :func:`get_backend` imports on
first use and turns a missing dependency into a :class:`~chariots_core.errors.BackendError`
that says which ``pip install 'chariots[extra]'`` fixes it.

Kinds: ``op_store``, ``saver``, ``worker_pool``, ``runner``, ``server`` (a function serving an
app over HTTP: ``serve(app, host=..., port=...)``), ``client`` (a class with the app's methods,
built from a URL) and ``prediction_log`` (a ``PredictionSink`` for the prediction log, built
from a directory).

Names are matched ignoring case, ``-``, ``_`` and the kind's own suffix, so the spellings
chariots 0.2 accepted work: ``"SequentialRunner"``, ``"sequential-runner"`` and
``"sequential_runner"`` all name the ``"sequential"`` runner, ``"Multiprocess"`` and
``"MultiprocessWorkerPool"`` the ``"multiprocess"`` pool (:func:`canonical_name`).

Third-party packages add backends through the ``chariots.backends`` entry-point group, with
entry names ``"<kind>.<name>"`` (e.g. ``op_store.redis = "my_pkg:RedisOpStore"``), or at run time
with :func:`register_backend`. Entry points are read when a name is not found, so a package
installed while the program runs is found too. Every registration goes through
:func:`register_backend`: a name that is taken raises :class:`~chariots_core.errors.ConfigError`
unless ``clobber=True`` (an entry point cannot pass it: rename it, or register at run time).

URLs pick a backend by scheme (:func:`backend_for_url`): ``gs://`` and ``s3://`` name their own
entries, any other scheme fsspec knows goes to the generic fsspec backend of that kind.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

import attrs

from .errors import BackendError, ConfigError

__all__ = [
    "KINDS",
    "get_backend",
    "backend_for_url",
    "register_backend",
    "known_backends",
    "canonical_name",
    "url_scheme",
]

KINDS = ("op_store", "saver", "worker_pool", "runner", "server", "client", "prediction_log")
ENTRY_POINT_GROUP = "chariots.backends"
# Dropped from the end of a name before matching: "MultiprocessWorkerPool" -> "multiprocess".
_SUFFIXES = {
    "op_store": ("opstore", "store"),
    "saver": ("saver",),
    "worker_pool": ("workerpool", "pool"),
    "runner": ("runner",),
    "server": ("server",),
    "client": ("client",),
    "prediction_log": ("predictionsink", "sink"),
}


@attrs.frozen
class _Entry:
    target: str | type
    extra: str | None  # the `chariots[extra]` that installs what the target needs


_BUILTIN: dict[str, dict[str, _Entry]] = {
    "op_store": {
        "memory": _Entry("chariots_core.op_store.store:MemoryOpStore", None),
        "lmdb": _Entry("chariots_lmdb:LMDBOpStore", "lmdb"),
        "s3": _Entry("chariots_fsspec.object_store:ObjectOpStore", "dask"),
        "gs": _Entry("chariots_fsspec.object_store:ObjectOpStore", "gcs"),
        "memory-objects": _Entry("chariots_fsspec.object_store:ObjectOpStore", "fsspec"),
        "objects": _Entry("chariots_fsspec.object_store:ObjectOpStore", "fsspec"),
    },
    "saver": {
        "memory": _Entry("chariots_core.savers:MemorySaver", None),
        "file": _Entry("chariots_fsspec:FsspecSaver", "fsspec"),
        "fsspec": _Entry("chariots_fsspec:FsspecSaver", "fsspec"),
        "gs": _Entry("chariots_fsspec:FsspecSaver", "gcs"),
        "s3": _Entry("chariots_fsspec:FsspecSaver", "dask"),
    },
    "worker_pool": {
        "inprocess": _Entry("chariots_core.serving.workers:InProcessWorkerPool", None),
        "multiprocess": _Entry("chariots_multiprocess:MultiprocessWorkerPool", "workers"),
        "dask": _Entry("chariots_dask:DaskWorkerPool", "dask"),
    },
    "runner": {
        "sequential": _Entry("chariots_core.pipelines.runners:SequentialRunner", None),
    },
    "server": {
        "waitress": _Entry("chariots_waitress:serve", "serve"),
    },
    "client": {
        "http": _Entry("chariots_waitress:PipelinesClient", "serve"),
    },
    "prediction_log": {
        "memory": _Entry("chariots_core.serving.prediction_sinks:MemoryPredictionSink", None),
        "lmdb": _Entry("chariots_lmdb:LMDBPredictionSink", "lmdb"),
    },
}

# Per kind that takes URLs: scheme -> backend name, and the name for every other scheme.
_URL_SCHEMES: dict[str, tuple[dict[str, str], str]] = {
    "op_store": ({"gs": "gs", "gcs": "gs", "s3": "s3", "memory": "memory-objects"}, "objects"),
    "saver": ({"file": "file", "gs": "gs", "gcs": "gs", "s3": "s3"}, "fsspec"),
}

_registry: dict[str, dict[str, _Entry]] = {kind: dict(entries) for kind, entries in _BUILTIN.items()}
_loaded: dict[tuple[str, str], Any] = {}  # by (kind, name as asked for)
_from_entry_points: set[tuple[str, str, str]] = set()  # (kind, name, target) already registered
_lock = threading.Lock()


def url_scheme(url: str) -> str | None:
    """The scheme of ``url`` (``"gs"`` for ``gs://bucket``), ``None`` for a plain path."""
    head, sep, _ = str(url).partition("://")
    return head.lower() if sep and head.isidentifier() else None


def _check_kind(kind: str) -> None:
    if kind not in _registry:
        raise ConfigError(f"'kind' must be one of {', '.join(KINDS)} (got {kind!r})")


def _key(kind: str, name: str) -> str:
    """What names of ``kind`` are compared by: lower case, no ``-``/``_``, no kind suffix."""
    key = name.lower().replace("-", "").replace("_", "")
    for suffix in _SUFFIXES[kind]:
        if key.endswith(suffix) and key != suffix:
            return key[: -len(suffix)]
    return key


def register_backend(
    kind: str, name: str, target: str | type, extra: str | None = None, clobber: bool = False
) -> None:
    """Make ``target`` (a class, function or ``"module:attribute"``) available as ``name`` for ``kind``.

    :param extra: the ``chariots[extra]`` that installs what ``target`` needs, for the error
        raised when it is missing.
    :param clobber: replace a backend already registered under ``name`` (or a name that
        matches it, see :func:`canonical_name`).
    :raises ConfigError: if ``name`` is taken and ``clobber`` is false.
    """
    _check_kind(kind)
    with _lock:
        _register(kind, name, _Entry(target, extra), clobber, "pass clobber=True to replace it")


def _register(kind: str, name: str, entry: _Entry, clobber: bool, fix: str) -> None:
    """Add ``entry`` under ``name`` (the caller holds the lock); ``fix`` ends the clash message."""
    registered = _registry[kind]
    taken = [known for known in registered if _key(kind, known) == _key(kind, name)]
    if taken and not clobber:
        msg = (
            f"the {kind} backend name {name!r} is already taken by "
            f"{registered[taken[0]].target!r}{'' if taken == [name] else f' (as {taken[0]!r})'}; {fix}"
        )
        raise ConfigError(msg)
    for known in taken:
        del registered[known]
        _loaded.pop((kind, known), None)
    registered[name] = entry


def _read_entry_points() -> None:
    # Imported here: importlib.metadata costs more than the rest of the registry, and only a
    # name that is not built in or registered ever needs it.
    from importlib.metadata import entry_points

    found = entry_points(group=ENTRY_POINT_GROUP)
    with _lock:
        for entry in found:
            kind, _, name = entry.name.partition(".")
            if kind not in _registry or not name:
                continue
            if (kind, name, entry.value) in _from_entry_points:
                continue  # read before: entry points are read again each time a name is missed
            source = entry.dist.name if entry.dist is not None else "an installed package"
            fix = (
                f"the entry point {entry.name!r} = {entry.value!r} of {source} clashes with it: "
                "rename the entry point, or register it at run time with "
                "chariots_core.registry.register_backend(..., clobber=True)"
            )
            _register(kind, name, _Entry(entry.value, None), False, fix)
            _from_entry_points.add((kind, name, entry.value))


def known_backends(kind: str) -> list[str]:
    """The names registered for ``kind``."""
    _check_kind(kind)
    _read_entry_points()
    return sorted(_registry[kind])


def canonical_name(kind: str, name: str) -> str:
    """The registered name that ``name`` stands for, matched ignoring case, ``-``, ``_`` and the kind's suffix.

    :raises ConfigError: if no backend of ``kind`` has that name.
    """
    _check_kind(kind)
    if isinstance(name, str):
        if name in _registry[kind]:
            return name
        for attempt in range(2):  # entry points are read only when a name is not found
            if attempt:
                _read_entry_points()
            wanted = _key(kind, name)
            for known in list(_registry[kind]):  # a copy: another thread may register meanwhile
                if _key(kind, known) == wanted:
                    return known
    msg = (
        f"no {kind} backend is called {name!r}; known: {', '.join(known_backends(kind))}. "
        "Register others with chariots_core.registry.register_backend or an entry point "
        f"in the {ENTRY_POINT_GROUP!r} group"
    )
    raise ConfigError(msg)


def get_backend(kind: str, name: str) -> Any:
    """Import and return the class (or function) registered as ``name`` for ``kind``.

    :raises ConfigError: if no such backend is registered.
    :raises BackendError: if its package or one of its dependencies is not installed.
    """
    _check_kind(kind)
    key = (kind, name)
    if key in _loaded:
        return _loaded[key]
    name = canonical_name(kind, name)
    entry = _registry[kind][name]
    target = _import(entry, kind, name) if isinstance(entry.target, str) else entry.target
    _loaded[key] = target
    return target


def backend_for_url(kind: str, url: str) -> Any:
    """The ``kind`` backend (``"op_store"`` or ``"saver"``) that handles ``url``'s scheme.

    A plain path counts as ``file://``.

    :raises ConfigError: if ``kind`` does not take URLs.
    :raises BackendError: if the backend's dependencies are not installed.
    """
    if kind not in _URL_SCHEMES:
        msg = f"only {' and '.join(_URL_SCHEMES)} backends are chosen by URL (got kind {kind!r} for {url!r})"
        raise ConfigError(msg)
    by_scheme, default = _URL_SCHEMES[kind]
    return get_backend(kind, by_scheme.get(url_scheme(url) or "file", default))


def _import(entry: _Entry, kind: str, name: str) -> Any:
    module_name, _, attribute = str(entry.target).partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if entry.extra:
            fix = f"pip install 'chariots[{entry.extra}]'"
        else:
            fix = f"install the package that provides {module_name!r}"
        msg = f"the {name!r} {kind} backend needs {exc.name or module_name}, which is not installed; {fix}"
        raise BackendError(msg) from exc
    try:
        return getattr(module, attribute)
    except AttributeError as exc:
        msg = (
            f"the {name!r} {kind} backend is registered as {entry.target!r} but module "
            f"{module_name!r} has no {attribute!r}; fix the registration or upgrade that package"
        )
        raise BackendError(msg) from exc
