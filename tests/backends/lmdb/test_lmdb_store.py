"""LMDBOpStore beyond the shared conformance suite: map growth, sharing one directory,
pickling and fork, and the errors a broken, damaged or foreign store must raise."""

from __future__ import annotations

import multiprocessing
import pickle
import struct
import threading
from pathlib import Path

import pytest

lmdb = pytest.importorskip("lmdb")

from chariots_core import ChariotsError  # noqa: E402
from chariots_core.errors import IntegrityError, StoreError  # noqa: E402
from chariots_core.op_store.records import (  # noqa: E402
    Commit,
    JobRecord,
    JournalAppend,
    LinkRecord,
    OpVersionRecord,
    SnapshotRecord,
)
from chariots_core.registry import get_backend  # noqa: E402
from chariots_lmdb import LMDBOpStore  # noqa: E402


def save(op: str, version: str, blob_path: str = "blob", pipeline: str = "train") -> Commit:
    record = OpVersionRecord(op, version, "code", pipeline, 1.0, blob_path, "sha", 1)
    snapshot = SnapshotRecord(pipeline, 1.0, {op: version})
    return Commit((record,), (LinkRecord("up", "u1", op, version),), (JournalAppend(pipeline, snapshot),))


def versions(store: LMDBOpStore, op: str) -> list[str]:
    """Oldest first, as they were saved."""
    return [record.version for record in reversed(store.op_versions(op))]


@pytest.fixture
def store(tmp_path: Path):
    opened = LMDBOpStore(tmp_path / "store")
    yield opened
    opened.close()


def behind_its_back(path: Path, db_name: str, change) -> None:
    """Run ``change(txn, db)`` on a sub-database of the store's LMDB files (the store must be closed)."""
    env = lmdb.open(str(path), max_dbs=8)
    try:
        with env.begin(write=True) as txn:
            change(txn, env.open_db(db_name.encode(), txn=txn))
    finally:
        env.close()


def flip_a_byte(key: bytes, offset: int = -3):
    def change(txn, db) -> None:
        value = bytearray(txn.get(key, db=db))
        value[offset] ^= 0x01
        txn.put(key, bytes(value), db=db)

    return change


def delete(key: bytes):
    def change(txn, db) -> None:
        assert txn.delete(key, db=db)

    return change


def test_the_registry_name_lmdb_is_this_store():
    assert get_backend("op_store", "lmdb") is LMDBOpStore


def test_a_store_outgrows_a_tiny_map_without_the_user_noticing(tmp_path: Path):
    store = LMDBOpStore(tmp_path / "store", map_size=64 * 1024)
    long_path = "ops/" + "x" * 3000
    try:
        for index in range(300):
            store.commit(save("pca", f"v{index}", blob_path=f"{long_path}/{index}"))
        saved = store.op_versions("pca")
    finally:
        store.close()

    assert [record.version for record in saved] == [f"v{index}" for index in reversed(range(300))]
    assert saved[0].blob_path == f"{long_path}/299"


def test_a_store_grown_by_one_handle_is_read_by_another(tmp_path: Path):
    small = LMDBOpStore(tmp_path / "store", map_size=64 * 1024)
    try:
        for index in range(100):
            small.commit(save("pca", f"v{index}", blob_path="p" * 3000))
    finally:
        small.close()

    reopened = LMDBOpStore(tmp_path / "store", map_size=64 * 1024)
    try:
        assert len(reopened.op_versions("pca")) == 100
        reopened.commit(save("pca", "last"))
        assert reopened.op_versions("pca", limit=1)[0].version == "last"
    finally:
        reopened.close()


def _grow_the_map(path: str) -> None:
    store = LMDBOpStore(path, map_size=64 * 1024)
    for index in range(100):
        store.commit(save("grown", f"v{index}", blob_path="p" * 3000))
    store.close()


def test_a_map_grown_by_another_process_is_adopted_by_an_open_store(tmp_path: Path):
    store = LMDBOpStore(tmp_path / "store", map_size=64 * 1024)
    store.commit(save("pca", "before"))
    child = multiprocessing.get_context("fork").Process(target=_grow_the_map, args=(str(tmp_path / "store"),))

    child.start()
    child.join(timeout=60)

    assert child.exitcode == 0
    assert len(store.op_versions("grown")) == 100
    store.commit(save("pca", "after"))
    assert versions(store, "pca") == ["before", "after"]
    store.close()


def test_two_stores_on_one_directory_in_one_process_work_side_by_side(tmp_path: Path):
    first, second = LMDBOpStore(tmp_path / "store"), LMDBOpStore(tmp_path / "store")
    first.commit(save("pca", "v1"))
    first.close()

    second.commit(save("pca", "v2"))
    assert versions(second, "pca") == ["v1", "v2"]
    second.close()


def test_a_closed_store_reopens_when_used_again(store):
    store.commit(save("pca", "v1"))
    store.close()

    store.commit(save("pca", "v2"))

    assert versions(store, "pca") == ["v1", "v2"]


def test_a_pickled_store_reopens_the_same_directory(store):
    store.commit(save("pca", "v1"))

    copy = pickle.loads(pickle.dumps(store))
    copy.commit(save("pca", "v2"))

    assert copy.path == store.path and copy.map_size == store.map_size
    assert versions(store, "pca") == ["v1", "v2"]
    assert b"Environment" not in pickle.dumps(store)  # only the path and options travel
    copy.close()


def _child_saves_through_the_inherited_store(store: LMDBOpStore) -> None:
    assert versions(store, "pca") == ["parent"]
    store.commit(save("pca", "child"))
    store.put_job(JobRecord("from-child", "train", "done", 2.0, 2.0))
    store.close()


def test_a_forked_child_uses_the_inherited_store_safely(store):
    store.commit(save("pca", "parent"))
    child = multiprocessing.get_context("fork").Process(target=_child_saves_through_the_inherited_store, args=(store,))

    child.start()
    child.join(timeout=60)

    assert child.exitcode == 0
    assert versions(store, "pca") == ["parent", "child"]
    assert store.get_job("from-child").status == "done"
    store.commit(save("pca", "parent-again"))  # the parent's environment still works
    assert versions(store, "pca")[-1] == "parent-again"


def test_a_record_that_cannot_be_encoded_fails_the_whole_save(store):
    bad = Commit(
        (OpVersionRecord("pca", "v1", "code", "train", 1.0, "blob", "sha", 1),),
        (),
        (JournalAppend("train", SnapshotRecord("train", 1.0, {"pca": object()})),),  # type: ignore[dict-item]
    )

    with pytest.raises(StoreError, match="cannot encode"):
        store.commit(bad)

    assert store.op_versions("pca") == []
    assert store.journal(SnapshotRecord, "train") == []


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

    with pytest.raises(StoreError, match="cannot open the LMDB op store|is damaged") as caught:
        LMDBOpStore(path)

    assert str(path) in str(caught.value) and "restore the store from a backup" in str(caught.value)


def test_a_store_whose_header_is_damaged_says_so(tmp_path: Path):
    path = tmp_path / "store"
    LMDBOpStore(path).close()
    data = bytearray((path / "data.mdb").read_bytes())
    for offset in range(16, 24):  # the magic and version of both meta pages
        data[offset] ^= 0xFF
        data[4096 + offset] ^= 0xFF
    (path / "data.mdb").write_bytes(bytes(data))

    with pytest.raises(StoreError, match="is damaged") as caught:
        LMDBOpStore(path)

    assert "restore the store from a backup" in str(caught.value) and "must be writable" not in str(caught.value)


def test_a_store_written_in_another_layout_version_is_refused(tmp_path: Path):
    from chariots_lmdb.tables import Tables

    path = tmp_path / "store"
    LMDBOpStore(path).close()
    env = lmdb.open(str(path), max_dbs=8)
    try:
        with env.begin(write=True) as txn:
            dbs = {name: env.open_db(name.encode(), txn=txn) for name in ("index", "entries")}
            Tables(txn, dbs, str(path)).put(b'["meta","format"]', 99)  # well formed, checksum and all
    finally:
        env.close()

    with pytest.raises(StoreError, match="layout version 99"):
        LMDBOpStore(path)


def test_a_store_of_the_first_layout_is_refused(tmp_path: Path):
    path = tmp_path / "store"
    path.mkdir()
    env = lmdb.open(str(path), max_dbs=8)
    with env.begin(write=True) as txn:
        for name in (b"versions", b"links", b"snapshots", b"meta"):
            txn.put(b'"format"', b"1", db=env.open_db(name, txn=txn))
    env.close()

    with pytest.raises(StoreError, match="written by an older chariots") as caught:
        LMDBOpStore(path)

    assert "'versions'" in str(caught.value) and str(path) in str(caught.value)


ENTRY = b'["versions","pca",' + struct.pack(">Q", 1)  # the first version's record, in the op's chain


@pytest.mark.parametrize(
    ("db_name", "key", "read"),
    [
        ("entries", ENTRY, lambda store: store.op_versions("pca")),
        ("entries", ENTRY, lambda store: store.op_version("pca", "v1")),
        ("index", b'["version","pca","v1"]', lambda store: store.op_version("pca", "v1")),
        ("index", b'["links","pca","v1"]', lambda store: store.links("pca", "v1")),
        ("index", b'["chain","versions","pca"]', lambda store: store.op_versions("pca")),
        # Garbage collection must never take a lost record for one never written.
        ("entries", ENTRY, lambda store: list(store.referenced_blobs())),
        ("index", b'["chain","versions","pca"]', lambda store: list(store.referenced_blobs())),
        ("index", b'["chain","journal","snapshots","train"]', lambda store: store.journal(SnapshotRecord, "train")),
        ("index", b'["meta","head"]', lambda store: store.head()),
        # Job records live in the store's own unsynced environment, in its jobs subdirectory.
        ("jobs/index", b'["job","j1"]', lambda store: store.get_job("j1")),
        ("jobs/index", b'["job","j1"]', lambda store: store.jobs()),
    ],
)
@pytest.mark.parametrize("damage", ["flipped", "lost"])
def test_a_damaged_or_lost_record_is_reported_naming_the_store(tmp_path: Path, db_name, key, read, damage):
    path = tmp_path / "store"
    store = LMDBOpStore(path)
    store.commit(save("pca", "v1"))
    store.commit(save("pca", "v2"))
    store.put_job(JobRecord("j1", "train", "done", 1.0, 1.0))
    store.put_job(JobRecord("j2", "train", "done", 1.0, 1.0))
    store.close()
    subdirectory, _, db_name = db_name.rpartition("/")
    behind_its_back(path / subdirectory, db_name, flip_a_byte(key) if damage == "flipped" else delete(key))

    store = LMDBOpStore(path)
    try:
        with pytest.raises(IntegrityError, match="is damaged") as caught:
            read(store)
    finally:
        store.close()

    message = str(caught.value)
    assert str(path / subdirectory).rstrip("/") in message and "restore the store from a backup" in message.lower()


def test_a_record_moved_under_another_key_fails_its_checksum(tmp_path: Path):
    path = tmp_path / "store"
    store = LMDBOpStore(path)
    store.commit(save("pca", "v1"))
    store.commit(save("pca", "v2"))
    store.close()

    def swap(txn, db) -> None:
        first, second = b'["version","pca","v1"]', b'["version","pca","v2"]'
        one, two = txn.get(first, db=db), txn.get(second, db=db)
        txn.put(first, two, db=db)
        txn.put(second, one, db=db)

    behind_its_back(path, "index", swap)
    store = LMDBOpStore(path)
    try:
        with pytest.raises(IntegrityError, match=r"""under b'\["version","pca","v1"\]' in 'index' fails its checksum"""):
            store.op_version("pca", "v1")
    finally:
        store.close()


def test_a_view_used_after_its_block_is_refused(store):
    store.commit(save("pca", "v1"))
    with store.reader() as view:
        pass

    with pytest.raises(StoreError, match=r"after its 'with store.reader\(\)' block"):
        view.op_versions("pca")


def _grow_when_told(path: str, go) -> None:
    go.wait(60)
    grower = LMDBOpStore(path, map_size=64 * 1024)
    for index in range(60):
        grower.commit(save("grown", f"v{index}", blob_path="p" * 3000))
    grower.close()


def test_a_view_keeps_its_state_while_another_process_grows_the_map(tmp_path: Path):
    store = LMDBOpStore(tmp_path / "store", map_size=64 * 1024)
    store.commit(save("pca", "v1"))
    context = multiprocessing.get_context("fork")
    go = context.Event()
    child = context.Process(target=_grow_when_told, args=(store.path, go))
    child.start()  # forked before any view is open
    try:
        with store.reader() as view:
            go.set()
            child.join(timeout=60)
            assert child.exitcode == 0
            assert [r.version for r in view.op_versions("pca")] == ["v1"]  # its own state, still
            assert view.op_versions("grown") == []
            # Another thread waits for this view to close before it adopts the grown map...
            seen: list[int] = []
            reader = threading.Thread(target=lambda: seen.append(len(store.op_versions("grown"))))
            reader.start()
            # ...and this thread cannot wait for itself.
            with pytest.raises(StoreError, match="holds one of its views open"):
                store.op_versions("grown")
            assert seen == []
        reader.join(timeout=60)
        assert seen == [60]
    finally:
        store.close()


def _use_the_store_forked_inside_a_view(store: LMDBOpStore, results) -> None:
    try:
        store.op_versions("pca")
    except StoreError as exc:
        results.send(str(exc))
    else:
        results.send("no error")


def test_a_process_forked_inside_a_view_cannot_open_the_store_and_leaves_the_view_intact(tmp_path: Path):
    store = LMDBOpStore(tmp_path / "store")
    store.commit(save("pca", "v1"))
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    try:
        with store.reader() as view:
            child = context.Process(target=_use_the_store_forked_inside_a_view, args=(store, sender))
            child.start()
            child.join(timeout=60)
            assert "forked by a thread that held a view" in receiver.recv()
            for index in range(30):  # writers must still see this view's reader: its pages stay
                other = LMDBOpStore(tmp_path / "store")
                other.commit(save("pca", f"w{index}"))
            assert [r.version for r in view.op_versions("pca")] == ["v1"]
        assert len(store.op_versions("pca")) == 31
    finally:
        store.close()
