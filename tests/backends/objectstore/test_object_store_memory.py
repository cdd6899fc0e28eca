"""ObjectOpStore on fsspec's in-memory filesystem: the record layout, commits, jobs, the cache."""

from __future__ import annotations

import threading

import attrs
import pytest

pytest.importorskip("fsspec")
pytest.importorskip("lmdb")

import fsspec  # noqa: E402
import lmdb  # noqa: E402

from chariots_core import Chariots, MemorySaver, VersionError  # noqa: E402
from chariots_core.errors import StoreError  # noqa: E402
from chariots_core.op_store.records import (  # noqa: E402
    Commit,
    JobRecord,
    JournalAppend,
    LinkRecord,
    OpVersionRecord,
    SnapshotRecord,
)
from chariots_core.registry import get_backend  # noqa: E402
from chariots_fsspec.object_store import ObjectOpStore  # noqa: E402


def _save(op: str, version: str, pipeline: str = "train", upstream: str | None = None) -> Commit:
    record = OpVersionRecord(op, version, "code", pipeline, 1.0, f"ops/{op}/{version}", "0" * 64, 1)
    links = (LinkRecord(upstream, "u-" + version, op, version),) if upstream else ()
    return Commit((record,), links, (JournalAppend(pipeline, SnapshotRecord(pipeline, 1.0, {op: version})),))


def _versions(store: ObjectOpStore, op: str) -> list[str]:
    """Oldest first, as they were saved."""
    return [record.version for record in reversed(store.op_versions(op))]


def _snapshots(store: ObjectOpStore, pipeline: str) -> list[SnapshotRecord]:
    return [entry.record for entry in reversed(store.journal(SnapshotRecord, pipeline))]


@pytest.fixture
def open_store(memory_url, tmp_path):
    """Open stores on one URL, each with its own local cache; closes them at the end."""
    stores = []

    def open_(name: str = "a", url: str | None = None) -> ObjectOpStore:
        store = ObjectOpStore(url or memory_url, cache_dir=tmp_path / f"cache-{name}-{len(stores)}")
        stores.append(store)
        return store

    yield open_
    for store in stores:
        store.close()


def test_a_save_is_read_back_by_another_store_with_its_own_cache(open_store):
    writer, reader = open_store("w"), open_store("r")
    writer.commit(_save("model", "v1", upstream="pca"))
    writer.commit(_save("model", "v2", upstream="pca"))

    assert _versions(reader, "model") == ["v1", "v2"]
    assert [link.upstream_version for link in reader.links("model", "v2")] == ["u-v2"]
    assert [snapshot.versions for snapshot in _snapshots(reader, "train")] == [{"model": "v1"}, {"model": "v2"}]
    assert reader.op_versions("pca") == [] and reader.links("pca", "v1") == [] and _snapshots(reader, "other") == []


def test_a_resaved_version_moves_last_and_links_are_not_repeated(open_store):
    store = open_store()
    for version in ("v1", "v2", "v1"):
        store.commit(_save("model", version, upstream="pca"))
    assert _versions(store, "model") == ["v2", "v1"]
    assert len(store.links("model", "v1")) == 1
    assert len(_snapshots(store, "train")) == 3


def test_records_without_a_commit_marker_are_invisible_until_committed(open_store, memory_url):
    store = open_store()
    store.commit(_save("model", "v1"))
    # A writer that died after its records but before its marker: write the records by hand.
    fs, root = fsspec.core.url_to_fs(memory_url)
    save_id = "99999999999999999999-deadbeef"
    record = OpVersionRecord("model", "v2", "code", "train", 2.0, "ops/model/v2", "0" * 64, 1)
    from chariots_core.op_store.store import to_json

    fs.pipe({f"{root}/meta/ops/_model/{save_id}.json": to_json([record])})
    assert _versions(store, "model") == ["v1"]

    fs.pipe({f"{root}/meta/commits/{save_id}.json": b"{}"})
    assert _versions(store, "model") == ["v1", "v2"]


def test_names_with_slashes_and_odd_characters_are_kept_apart(open_store):
    store = open_store()
    store.commit(_save("a/b", "v1"))
    store.commit(_save("a", "v2"))
    store.commit(_save("x*?[%", "v3"))
    assert _versions(store, "a/b") == ["v1"]
    assert _versions(store, "a") == ["v2"]
    assert _versions(store, "x*?[%") == ["v3"]


def test_the_newest_job_record_wins_and_jobs_are_listed_newest_created_first(open_store):
    writer, reader = open_store("w"), open_store("r")
    first = JobRecord("job-1", "p", "queued", submitted_at=2.0, updated_at=2.0)
    second = JobRecord("job-2", "p", "queued", submitted_at=1.0, updated_at=1.0)
    writer.put_job(first)
    writer.put_job(second)
    writer.put_job(attrs.evolve(first, status="running"))
    writer.put_job(attrs.evolve(first, status="done", result_path="jobs/job-1"))

    assert reader.get_job("job-1").status == "done"
    assert reader.get_job("job-1").result_path == "jobs/job-1"
    assert reader.get_job("nope") is None
    assert [(job.job_id, job.status) for job in reader.jobs()] == [("job-2", "queued"), ("job-1", "done")]
    assert [job.job_id for job in reader.jobs(before="job-2")] == ["job-1"]


def test_concurrent_writers_with_separate_caches_lose_nothing(open_store):
    stores = [open_store(f"w{i}") for i in range(4)]

    def write(index: int, store: ObjectOpStore) -> None:
        for n in range(10):
            store.commit(_save("model", f"w{index}-{n}", upstream="pca"))
            store.put_job(JobRecord(f"job-{index}-{n}", "p", "queued", 1.0, 1.0))

    threads = [threading.Thread(target=write, args=(i, store)) for i, store in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    reader = open_store("reader")
    assert len(reader.op_versions("model")) == 40
    assert sum(len(reader.links("model", f"w{i}-{n}")) for i in range(4) for n in range(10)) == 40
    assert len(_snapshots(reader, "train")) == 40
    assert len(reader.jobs()) == 40


def test_a_stale_cache_never_hides_newer_records(open_store):
    writer, reader = open_store("w"), open_store("r")
    writer.commit(_save("model", "v1"))
    assert _versions(reader, "model") == ["v1"]  # now cached by the reader
    writer.commit(_save("model", "v2"))
    writer.put_job(JobRecord("job", "p", "queued", 1.0, 1.0))
    assert reader.get_job("job").status == "queued"
    writer.put_job(JobRecord("job", "p", "done", 1.0, 2.0))

    assert _versions(reader, "model") == ["v1", "v2"]
    assert reader.get_job("job").status == "done"


def test_a_damaged_or_deleted_cache_only_costs_a_refetch(memory_url, tmp_path):
    cache = tmp_path / "cache"
    store = ObjectOpStore(memory_url, cache_dir=cache)
    store.commit(_save("model", "v1", upstream="pca"))
    store.close()
    # Overwrite every cached object with garbage.
    env = lmdb.open(str(cache))
    with env.begin(write=True) as txn:
        for key, _ in list(txn.cursor()):
            txn.put(key, b"not json {")
    env.close()
    damaged = ObjectOpStore(memory_url, cache_dir=cache)
    assert _versions(damaged, "model") == ["v1"]
    assert [link.upstream_op for link in damaged.links("model", "v1")] == ["pca"]
    damaged.close()

    for path in cache.iterdir():
        path.unlink()
    fresh = ObjectOpStore(memory_url, cache_dir=cache)
    assert _versions(fresh, "model") == ["v1"]
    fresh.close()


def test_a_damaged_record_in_the_bucket_is_a_store_error_naming_it(open_store, memory_url):
    store = open_store()
    store.commit(_save("model", "v1"))
    fs, root = fsspec.core.url_to_fs(memory_url)
    [key] = fs.ls(f"{root}/meta/ops/_model", detail=False)
    fs.pipe({key: b"garbage"})
    reader = open_store("r")
    with pytest.raises(StoreError, match="meta/ops/_model/.*not a valid list of OpVersionRecord"):
        reader.op_versions("model")


def test_an_unknown_url_scheme_is_a_store_error():
    with pytest.raises(StoreError, match="not a URL fsspec knows"):
        ObjectOpStore("nosuchscheme://bucket/prefix")


def test_an_unusable_cache_dir_is_a_store_error(memory_url, tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    with pytest.raises(StoreError, match="pass a writable cache_dir"):
        ObjectOpStore(memory_url, cache_dir=not_a_dir)


def test_the_registry_maps_object_store_schemes_to_it():
    for scheme in ("s3", "gs", "memory-objects"):
        assert get_backend("op_store", scheme) is ObjectOpStore


def test_lineage_rules_hold_between_two_apps_sharing_the_store(open_store, lineage_app):
    saver = MemorySaver()
    trainer = Chariots(lineage_app.pipelines(), op_store=open_store("trainer"), saver=saver)
    server = Chariots(lineage_app.pipelines(), op_store=open_store("server"), saver=saver)
    trainer.call_pipeline("train_all", lineage_app.DATA)
    trainer.save_pipeline("train_all")

    server.load_pipeline("predict")
    assert server.call_pipeline("predict", lineage_app.DATA).value == [False, False, False, True]

    trainer.call_pipeline("train_center", [10.0, 20.0])
    trainer.save_pipeline("train_center")
    with pytest.raises(VersionError, match="'center' -> 'threshold'"):
        server.load_pipeline("predict")
    # The server keeps serving what it had loaded.
    assert server.call_pipeline("predict", lineage_app.DATA).value == [False, False, False, True]


def test_chariots_on_a_memory_url_keeps_records_beside_the_blobs(memory_url, lineage_app, tmp_path, monkeypatch):
    pytest.importorskip("chariots_fsspec").FsspecSaver
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with Chariots(lineage_app.pipelines(), path=memory_url) as app:
        assert isinstance(app.op_store, ObjectOpStore)
        app.call_pipeline("train_all", lineage_app.DATA)
        app.save_pipeline("train_all")
    fs, root = fsspec.core.url_to_fs(memory_url)
    assert fs.ls(f"{root}/blobs/ops/center", detail=False) and fs.ls(f"{root}/meta/commits", detail=False)
    with Chariots(lineage_app.pipelines(), path=memory_url) as again:
        again.load_pipeline("predict")
        assert again.call_pipeline("predict", lineage_app.DATA).value == [False, False, False, True]


def test_stores_sharing_a_cache_dir_share_one_index_and_reopen_after_close(memory_url, tmp_path):
    first = ObjectOpStore(memory_url, cache_dir=tmp_path / "shared")
    second = ObjectOpStore(memory_url, cache_dir=tmp_path / "shared")
    first.commit(_save("model", "v1"))
    first.close()
    first.close()
    assert _versions(second, "model") == ["v1"]
    # A closed store reopens its index when used again.
    assert _versions(first, "model") == ["v1"]
    first.close()
    second.close()

