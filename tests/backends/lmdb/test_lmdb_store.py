"""LMDBOpStore beyond the shared conformance suite: map growth, sharing one directory,
pickling and fork, and the errors a broken or foreign store must raise."""

from __future__ import annotations

import multiprocessing
import pickle
from pathlib import Path

import pytest

lmdb = pytest.importorskip("lmdb")

from chariots_core import ChariotsError  # noqa: E402
from chariots_core.errors import StoreError  # noqa: E402
from chariots_core.op_store.store import JobRecord, LinkRecord, OpVersionRecord, SaveRecord, SnapshotRecord  # noqa: E402
from chariots_core.registry import get_backend  # noqa: E402
from chariots_lmdb import LMDBOpStore  # noqa: E402


def save(op: str, version: str, blob_path: str = "blob", pipeline: str = "train") -> SaveRecord:
    record = OpVersionRecord(op, version, "code", pipeline, 1.0, blob_path, "sha", 1)
    return SaveRecord((record,), (LinkRecord("up", "u1", op, version),), SnapshotRecord(pipeline, 1.0, {op: version}))


@pytest.fixture
def store(tmp_path: Path):
    opened = LMDBOpStore(tmp_path / "store")
    yield opened
    opened.close()


def raw_put(path: Path, db_name: str, key: bytes, value: bytes) -> None:
    """Write into the store's LMDB files behind its back (the store must be closed)."""
    env = lmdb.open(str(path), max_dbs=8)
    try:
        with env.begin(write=True) as txn:
            txn.put(key, value, db=env.open_db(db_name.encode(), txn=txn))
    finally:
        env.close()


def test_the_registry_name_lmdb_is_this_store():
    assert get_backend("op_store", "lmdb") is LMDBOpStore


def test_a_store_outgrows_a_tiny_map_without_the_user_noticing(tmp_path: Path):
    store = LMDBOpStore(tmp_path / "store", map_size=64 * 1024)
    long_path = "ops/" + "x" * 3000
    try:
        for index in range(300):
            store.commit_save(save("pca", f"v{index}", blob_path=f"{long_path}/{index}"))
        versions = store.op_versions("pca")
    finally:
        store.close()

    assert [record.version for record in versions] == [f"v{index}" for index in range(300)]
    assert versions[-1].blob_path == f"{long_path}/299"


def test_a_store_grown_by_one_handle_is_read_by_another(tmp_path: Path):
    small = LMDBOpStore(tmp_path / "store", map_size=64 * 1024)
    try:
        for index in range(100):
            small.commit_save(save("pca", f"v{index}", blob_path="p" * 3000))
    finally:
        small.close()

    reopened = LMDBOpStore(tmp_path / "store", map_size=64 * 1024)
    try:
        assert len(reopened.op_versions("pca")) == 100
        reopened.commit_save(save("pca", "last"))
        assert reopened.op_versions("pca")[-1].version == "last"
    finally:
        reopened.close()


def _grow_the_map(path: str) -> None:
    store = LMDBOpStore(path, map_size=64 * 1024)
    for index in range(100):
        store.commit_save(save("grown", f"v{index}", blob_path="p" * 3000))
    store.close()


def test_a_map_grown_by_another_process_is_adopted_by_an_open_store(tmp_path: Path):
    store = LMDBOpStore(tmp_path / "store", map_size=64 * 1024)
    store.commit_save(save("pca", "before"))
    child = multiprocessing.get_context("fork").Process(target=_grow_the_map, args=(str(tmp_path / "store"),))

    child.start()
    child.join(timeout=60)

    assert child.exitcode == 0
    assert len(store.op_versions("grown")) == 100
    store.commit_save(save("pca", "after"))
    assert [r.version for r in store.op_versions("pca")] == ["before", "after"]
    store.close()


def test_two_stores_on_one_directory_in_one_process_work_side_by_side(tmp_path: Path):
    first, second = LMDBOpStore(tmp_path / "store"), LMDBOpStore(tmp_path / "store")
    first.commit_save(save("pca", "v1"))
    first.close()

    second.commit_save(save("pca", "v2"))
    assert [r.version for r in second.op_versions("pca")] == ["v1", "v2"]
    second.close()


def test_a_closed_store_reopens_when_used_again(store):
    store.commit_save(save("pca", "v1"))
    store.close()

    store.commit_save(save("pca", "v2"))

    assert [r.version for r in store.op_versions("pca")] == ["v1", "v2"]


def test_a_pickled_store_reopens_the_same_directory(store):
    store.commit_save(save("pca", "v1"))

    copy = pickle.loads(pickle.dumps(store))
    copy.commit_save(save("pca", "v2"))

    assert copy.path == store.path and copy.map_size == store.map_size
    assert [r.version for r in store.op_versions("pca")] == ["v1", "v2"]
    assert b"Environment" not in pickle.dumps(store)  # only the path and options travel
    copy.close()


def _child_saves_through_the_inherited_store(store: LMDBOpStore) -> None:
    assert [r.version for r in store.op_versions("pca")] == ["parent"]
    store.commit_save(save("pca", "child"))
    store.put_job(JobRecord("from-child", "train", "done", 2.0, 2.0))
    store.close()


def test_a_forked_child_uses_the_inherited_store_safely(store):
    store.commit_save(save("pca", "parent"))
    child = multiprocessing.get_context("fork").Process(target=_child_saves_through_the_inherited_store, args=(store,))

    child.start()
    child.join(timeout=60)

    assert child.exitcode == 0
    assert [r.version for r in store.op_versions("pca")] == ["parent", "child"]
    assert store.get_job("from-child").status == "done"
    store.commit_save(save("pca", "parent-again"))  # the parent's environment still works
    assert store.op_versions("pca")[-1].version == "parent-again"


def test_a_record_that_cannot_be_encoded_fails_the_whole_save(store):
    bad = SaveRecord(
        (OpVersionRecord("pca", "v1", "code", "train", 1.0, "blob", "sha", 1),),
        (),
        SnapshotRecord("train", 1.0, {"pca": object()}),  # type: ignore[dict-item]
    )

    with pytest.raises(StoreError, match="cannot encode"):
        store.commit_save(bad)

    assert store.op_versions("pca") == []
    assert store.snapshots("train") == []


def test_a_path_that_is_a_file_is_refused(tmp_path: Path):
    path = tmp_path / "store"
    path.write_text("I am a file")

    with pytest.raises(StoreError, match="is not a directory") as caught:
        LMDBOpStore(path)

    assert str(path) in str(caught.value)
    assert isinstance(caught.value, ChariotsError) and isinstance(caught.value, OSError)


@pytest.mark.parametrize("map_size", [0, -1, "big", 1.5])
def test_a_bad_map_size_is_refused(tmp_path: Path, map_size):
    with pytest.raises(StoreError, match="'map_size' must be a positive number of bytes"):
        LMDBOpStore(tmp_path / "store", map_size=map_size)


def test_a_directory_holding_something_else_is_refused(tmp_path: Path):
    path = tmp_path / "store"
    path.mkdir()
    (path / "data.mdb").write_bytes(b"this is not an LMDB file" * 400)

    with pytest.raises(StoreError, match="cannot open the LMDB op store") as caught:
        LMDBOpStore(path)

    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("db_name", "key", "read"),
    [
        ("versions", b'["pca","v9"]', lambda store: store.op_versions("pca")),
        ("links", b'["pca","up","u1","v9"]', lambda store: store.links("pca")),
        ("links", b'["pca",5]', lambda store: store.links("pca")),
        ("snapshots", b'["train",99]', lambda store: store.snapshots("train")),
        # Job records live in the store's own unsynced environment, in its jobs subdirectory.
        ("jobs/jobs", b'"j1"', lambda store: store.get_job("j1")),
        ("jobs/jobs", b'"j2"', lambda store: store.jobs()),
    ],
)
def test_an_unreadable_record_names_the_store_and_key(tmp_path: Path, db_name, key, read):
    path = tmp_path / "store"
    LMDBOpStore(path).close()
    subdirectory, _, db_name = db_name.rpartition("/")
    raw_put(path / subdirectory, db_name, key, b"\x80 not json {")

    store = LMDBOpStore(path)
    try:
        with pytest.raises(StoreError, match="unreadable record") as caught:
            read(store)
    finally:
        store.close()

    message = str(caught.value)
    assert str(path) in message and repr(db_name) in message and repr(key)[2:-1] in message


def test_a_record_of_the_wrong_shape_is_unreadable_too(tmp_path: Path):
    path = tmp_path / "store"
    LMDBOpStore(path).close()
    raw_put(path, "versions", b'["pca","v1"]', b'{"seq": 1, "record": {"op_name": "pca"}}')

    store = LMDBOpStore(path)
    try:
        with pytest.raises(StoreError, match="unreadable record"):
            store.op_versions("pca")
    finally:
        store.close()


def test_a_store_written_in_another_layout_is_refused(tmp_path: Path):
    path = tmp_path / "store"
    LMDBOpStore(path).close()
    raw_put(path, "meta", b'"format"', b"99")

    with pytest.raises(StoreError, match="layout version 99"):
        LMDBOpStore(path)
