"""The backend registry: names, URLs, lazy imports, missing dependencies, plugins.

Names registered here are made unique per test (the registry is process-wide).
"""

from __future__ import annotations

import sys
import uuid

import pytest

from chariots_core import BackendError, InProcessWorkerPool, MemoryOpStore, MemorySaver, SequentialRunner
from chariots_core.errors import ChariotsError, ConfigError
from chariots_core.registry import (
    backend_for_url,
    canonical_name,
    get_backend,
    known_backends,
    register_backend,
    url_scheme,
)


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


class FirstStore(MemoryOpStore):
    """A stand-in op store class."""


class SecondStore(MemoryOpStore):
    """Another one, to replace the first."""


def test_builtin_backends_by_name():
    assert get_backend("op_store", "memory") is MemoryOpStore
    assert get_backend("saver", "memory") is MemorySaver
    assert get_backend("runner", "sequential") is SequentialRunner
    assert get_backend("worker_pool", "inprocess") is InProcessWorkerPool
    assert {"memory", "lmdb"} <= set(known_backends("op_store"))


def test_backends_packages_load_lazily_by_name():
    lmdb_backend = pytest.importorskip("chariots_lmdb")
    assert get_backend("op_store", "lmdb") is lmdb_backend.LMDBOpStore


def test_unknown_name_and_kind_are_config_errors_listing_what_exists():
    with pytest.raises(ConfigError) as caught:
        get_backend("op_store", "redis")
    message = str(caught.value)
    assert "no op_store backend is called 'redis'" in message
    assert "known: " in message and "lmdb" in message and "memory" in message
    assert "register_backend" in message and "'chariots.backends'" in message
    with pytest.raises(ConfigError, match="'kind' must be one of op_store, saver, worker_pool, runner, server, client, prediction_log .got 'cache'."):
        get_backend("cache", "memory")
    with pytest.raises(ValueError):
        known_backends("cache")


def test_a_missing_dependency_says_which_extra_to_install():
    name = unique("fancy")
    register_backend("op_store", name, "chariots_no_such_module_xyz:Store", extra="fancy")
    with pytest.raises(BackendError) as caught:
        get_backend("op_store", name)
    message = str(caught.value)
    assert f"the {name!r} op_store backend needs chariots_no_such_module_xyz, which is not installed" in message
    assert "pip install 'chariots[fancy]'" in message
    assert isinstance(caught.value, ImportError) and isinstance(caught.value, ChariotsError)
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)


def test_a_missing_dependency_of_a_third_party_backend_and_a_wrong_attribute():
    name = unique("plugin")
    register_backend("saver", name, "chariots_no_such_plugin_xyz:Saver")
    with pytest.raises(BackendError, match="install the package that provides 'chariots_no_such_plugin_xyz'"):
        get_backend("saver", name)
    wrong = unique("wrong")
    register_backend("saver", wrong, "chariots_core.savers:NoSuchSaver")
    with pytest.raises(BackendError, match="module 'chariots_core.savers' has no 'NoSuchSaver'"):
        get_backend("saver", wrong)


def test_register_backend_refuses_to_clobber_unless_asked():
    name = unique("store")
    register_backend("op_store", name, FirstStore)
    assert get_backend("op_store", name) is FirstStore
    with pytest.raises(ConfigError, match=f"the op_store backend name {name!r} is already taken by .*FirstStore.*clobber=True"):
        register_backend("op_store", name, SecondStore)
    assert get_backend("op_store", name) is FirstStore
    register_backend("op_store", name, SecondStore, clobber=True)
    assert get_backend("op_store", name) is SecondStore  # the cached class is replaced too
    with pytest.raises(ConfigError):
        register_backend("op_store", "memory", SecondStore)  # built-ins are protected the same way
    assert name in known_backends("op_store")
    with pytest.raises(ConfigError):
        register_backend("nope", name, SecondStore)


@pytest.mark.parametrize("name", ["SequentialRunner", "sequential-runner", "sequential_runner", "Sequential", "sequential"])
def test_runner_names_as_chariots_0_2_spelled_them(name):
    assert canonical_name("runner", name) == "sequential"
    assert get_backend("runner", name) is SequentialRunner


@pytest.mark.parametrize(
    ("kind", "name", "expected"),
    [
        ("worker_pool", "InProcess", "inprocess"),
        ("worker_pool", "INPROCESS", "inprocess"),
        ("worker_pool", "InProcessWorkerPool", "inprocess"),
        ("worker_pool", "Multiprocess", "multiprocess"),
        ("op_store", "MemoryOpStore", "memory"),
        ("op_store", "LMDBOpStore", "lmdb"),
        ("op_store", "Memory-Objects", "memory-objects"),
        ("saver", "MemorySaver", "memory"),
    ],
)
def test_names_match_ignoring_case_separators_and_the_kinds_suffix(kind, name, expected):
    assert canonical_name(kind, name) == expected


def test_a_name_matching_nothing_lists_the_known_names():
    with pytest.raises(ConfigError, match=r"no runner backend is called 'parallel-runner'; known: sequential"):
        canonical_name("runner", "parallel-runner")
    with pytest.raises(ConfigError, match=r"no worker_pool backend is called None"):
        canonical_name("worker_pool", None)


def test_a_name_that_only_matches_a_taken_one_is_taken_too():
    name = unique("store")
    register_backend("op_store", name, FirstStore)
    with pytest.raises(ConfigError, match=rf"already taken by .*FirstStore.* \(as {name!r}\); pass clobber=True"):
        register_backend("op_store", name.upper() + "OpStore", SecondStore)
    register_backend("op_store", name.upper() + "OpStore", SecondStore, clobber=True)
    assert get_backend("op_store", name) is SecondStore
    assert name not in known_backends("op_store")  # replaced by the new spelling


def test_the_http_server_and_client_are_backends_too():
    waitress_backend = pytest.importorskip("chariots_waitress")
    assert get_backend("server", "waitress") is waitress_backend.serve
    assert get_backend("client", "http") is waitress_backend.PipelinesClient


def write_plugin(tmp_path, module: str, entries: str, source: str = "") -> None:
    """An installed distribution ``module`` declaring ``entries`` in the chariots.backends group."""
    (tmp_path / f"{module}.py").write_text(
        source or "from chariots_core import MemoryOpStore\n\nclass PluginStore(MemoryOpStore):\n    pass\n"
    )
    dist_info = tmp_path / f"{module}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[chariots.backends]\n{entries}\n")


def test_an_entry_point_clashing_with_a_taken_name_is_refused_not_dropped(tmp_path, monkeypatch):
    module = unique("chariots_clashing_plugin")
    write_plugin(tmp_path, module, f"op_store.Memory = {module}:PluginStore")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        known_backends("op_store")
    message = str(caught.value)
    assert "the op_store backend name 'Memory' is already taken by 'chariots_core.op_store.store:MemoryOpStore'" in message
    assert f"the entry point 'op_store.Memory' = '{module}:PluginStore' of {module} clashes with it" in message
    assert "register_backend(..., clobber=True)" in message
    assert get_backend("op_store", "memory") is MemoryOpStore  # the built-in stays


def test_entry_points_add_backends(tmp_path, monkeypatch):
    module, name = unique("chariots_test_plugin"), unique("plugin_store")
    (tmp_path / f"{module}.py").write_text(
        "from chariots_core import MemoryOpStore\n\nclass PluginStore(MemoryOpStore):\n    pass\n"
    )
    dist_info = tmp_path / f"{module}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(
        f"[chariots.backends]\nop_store.{name} = {module}:PluginStore\nnot_a_kind.{name} = {module}:PluginStore\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        found = get_backend("op_store", name)  # installed after chariots_core was imported
        assert found.__name__ == "PluginStore" and found.__module__ == module
        assert name in known_backends("op_store")
        assert module not in " ".join(known_backends("saver"))
    finally:
        sys.modules.pop(module, None)


def test_backend_for_url_picks_by_scheme():
    fsspec_backend = pytest.importorskip("chariots_fsspec")
    for url in ("memory://x", "/tmp/blobs", "file:///tmp/blobs", "gs://bucket/p", "s3://bucket/p", "zip://x"):
        assert backend_for_url("saver", url) is fsspec_backend.FsspecSaver
    object_store = pytest.importorskip("chariots_fsspec.object_store")
    for url in ("s3://bucket/p", "gs://bucket/p", "memory://p"):
        assert backend_for_url("op_store", url) is object_store.ObjectOpStore
    with pytest.raises(ConfigError, match="only op_store and saver backends are chosen by URL"):
        backend_for_url("runner", "s3://x")


def test_url_scheme():
    assert url_scheme("gs://bucket/x") == "gs"
    assert url_scheme("S3://bucket") == "s3"
    assert url_scheme("/data/blobs") is None
    assert url_scheme("relative/dir") is None
    assert url_scheme("C:\\data") is None
