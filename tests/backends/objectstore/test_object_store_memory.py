"""ObjectOpStore on fsspec's in-memory filesystem: the log, deep histories, jobs, damage, debris."""

from __future__ import annotations

import random
import threading
from collections import Counter

import attrs
import pytest

pytest.importorskip("fsspec")

import fsspec  # noqa: E402

from chariots_core import Chariots, MemoryOpStore, MemorySaver, VersionError  # noqa: E402
from chariots_core.errors import IntegrityError, NotSavedError, StoreError  # noqa: E402
from chariots_core.op_store.records import (  # noqa: E402
    POLICIES,
    Commit,
    JobRecord,
    JournalAppend,
    LinkRecord,
    OpVersionRecord,
    SnapshotRecord,
)
from chariots_core.registry import get_backend  # noqa: E402
from chariots_fsspec._object_trees import TAIL  # noqa: E402
from chariots_fsspec.object_store import ObjectOpStore  # noqa: E402


def _record(op: str, version: str, code: str = "code", blob: str | None = None) -> OpVersionRecord:
    return OpVersionRecord(op, version, code, "train", 1.0, blob or f"ops/{op}/{version}", "0" * 64, 1)


def _save(op: str, version: str, pipeline: str = "train", upstream: str | None = None) -> Commit:
    links = (LinkRecord(upstream, "u-" + version, op, version),) if upstream else ()
    return Commit(
        (_record(op, version),), links, (JournalAppend(pipeline, SnapshotRecord(pipeline, 1.0, {op: version})),)
    )


def _versions(store, op: str, **options) -> list[str]:
    """Newest first."""
    return [record.version for record in store.op_versions(op, **options)]


def _snapshots(store: ObjectOpStore, pipeline: str) -> list[SnapshotRecord]:
    return [entry.record for entry in reversed(store.journal(SnapshotRecord, pipeline))]


def _objects(url: str, directory: str) -> list[str]:
    fs, root = fsspec.core.url_to_fs(url)
    return sorted(fs.ls(f"{root}/meta/{directory}", detail=False))


@pytest.fixture
def open_store(memory_url):
    """Open stores on one URL, each with its own cache of entries; closes them at the end."""
    stores = []

    def open_(url: str | None = None, **options) -> ObjectOpStore:
        store = ObjectOpStore(url or memory_url, **options)
        stores.append(store)
        return store

    yield open_
    for store in stores:
        store.close()


def test_each_commit_is_one_log_entry_numbered_in_order(open_store, memory_url):
    writer, reader = open_store(), open_store()
    writer.commit(_save("model", "v1", upstream="pca"))
    writer.commit(_save("model", "v2", upstream="pca"))
    assert writer.commit(Commit()) == 3

    assert [path.rsplit("/", 1)[1] for path in _objects(memory_url, "log")] == [f"{n:020d}" for n in (1, 2, 3)]
    assert _versions(reader, "model") == ["v2", "v1"]
    assert [link.upstream_version for link in reader.links("model", "v2")] == ["u-v2"]
    assert [snapshot.versions for snapshot in _snapshots(reader, "train")] == [{"model": "v1"}, {"model": "v2"}]
    assert reader.head() == 3


def test_names_with_slashes_and_odd_characters_are_kept_apart(open_store):
    store = open_store()
    store.commit(_save("a/b", "v1"))
    store.commit(_save("a", "v2"))
    store.commit(_save('x*?[%"],', "v3"))
    assert _versions(store, "a/b") == ["v1"]
    assert _versions(store, "a") == ["v2"]
    assert _versions(store, 'x*?[%"],') == ["v3"]


def test_a_store_far_behind_finds_the_newest_commit(open_store, memory_url):
    reader, writer = open_store(), open_store()
    assert reader.head() == 0
    for index in range(150):  # past several head hints, and far more than the reader probes one by one
        writer.commit(_save("model", f"v{index}"))
    assert reader.head() == 150
    assert _versions(reader, "model", limit=2) == ["v149", "v148"]
    assert open_store().head() == 150  # and a new store, starting from the hint


def test_threads_with_their_own_stores_lose_nothing(open_store):
    stores = [open_store() for _ in range(4)]

    def write(index: int, store: ObjectOpStore) -> None:
        for n in range(10):
            store.commit(_save("model", f"w{index}-{n}", upstream="pca"))
            store.put_job(JobRecord(f"job-{index}-{n}", "p", "queued", 1.0, 1.0))

    threads = [threading.Thread(target=write, args=(i, store)) for i, store in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    reader = open_store()
    assert len(reader.op_versions("model")) == 40 and reader.head() == 40
    assert sum(len(reader.links("model", f"w{i}-{n}")) for i in range(4) for n in range(10)) == 40
    assert len(_snapshots(reader, "train")) == 40
    assert len(reader.jobs()) == 40


@pytest.mark.parametrize("cache_bytes", [64 * 1024 * 1024, 1], ids=["cached", "no cache"])
def test_a_long_history_with_resaves_matches_the_reference_through_every_listing(open_store, cache_bytes):
    """Hundreds of versions: chains spill into B-trees several levels deep, the map splits
    its buckets, and old versions saved again leave the middle of the trees."""
    store, reference = open_store(cache_bytes=cache_bytes), MemoryOpStore()
    rng = random.Random(7)
    codes = ["A_a_a", "A_b_a", "B_a_a"]
    saved: list[str] = []
    for index in range(700):
        if saved and rng.random() < 0.25:
            version = rng.choice(saved)  # saved again: moves to the front of its listings
        else:
            version = f"v{index}_x_y"
            saved.append(version)
        records = [_record("model", version, rng.choice(codes))]
        if rng.random() < 0.1:  # and now and then twice in one commit
            records.append(_record("model", rng.choice(saved), rng.choice(codes)))
        links = (LinkRecord("pca", f"p{index}", "model", version),) if rng.random() < 0.5 else ()
        item = Commit(records, links, (JournalAppend("train", SnapshotRecord("train", float(index), {})),))
        store.commit(item)
        reference.commit(item)

    def answers(target) -> dict:
        found: dict = {}
        with target.reader() as view:
            found["all"] = view.op_versions("model")
            for code in codes:
                for policy in POLICIES:
                    found[code, policy] = view.op_versions("model", compatible_with=code, policy=policy)
                    found[code, policy, "page"] = view.op_versions(
                        "model", compatible_with=code, policy=policy, limit=7, before=found[code, policy][3].version
                    )
            for before in rng.sample(saved, 20):
                found["after", before] = view.op_versions("model", limit=13, before=before)
            for version in saved:
                found[version] = (view.op_version("model", version), view.links("model", version))
            journal = view.journal(SnapshotRecord, "train")
            found["journal"] = [entry.record for entry in journal]
            found["journal page"] = [
                entry.record for entry in view.journal(SnapshotRecord, "train", limit=9, before=journal[300].position)
            ]
        return found

    rng.seed(1)
    ours = answers(store)
    rng.seed(1)
    assert ours == answers(reference)
    assert len(ours["all"]) == len(saved)


def test_a_long_listing_reads_an_entry_at_most_twice_however_small_the_cache(open_store, monkeypatch):
    """Once for the records, once more for the listing's nodes it may also hold (every TAIL-th
    entry here): never once per record, which a cache too small for the listing would cost."""
    writer = open_store()
    for index in range(300):
        writer.commit(_save("model", f"v{index}"))
    reader = open_store(cache_bytes=1)
    reader.head()
    read: list[int] = []
    get_many = reader._bucket.get_many
    monkeypatch.setattr(reader._bucket, "get_many", lambda paths: read.extend(paths) or get_many(paths))

    assert _versions(reader, "model") == [f"v{index}" for index in reversed(range(300))]
    assert len(set(read)) == 300 and max(Counter(read).values()) == 2
    assert len(read) <= 300 + 300 // TAIL


def test_paging_from_a_version_never_saved_or_a_foreign_position_is_refused(open_store):
    store = open_store()
    store.commit(_save("model", "v1"))
    with pytest.raises(NotSavedError, match="'v9'"):
        store.op_versions("model", before="v9")
    with pytest.raises(NotSavedError, match="journal"):
        store.journal(SnapshotRecord, "train", before=12345)


def test_a_view_that_need_not_be_the_latest_reads_what_the_store_last_saw(open_store):
    writer, reader = open_store(), open_store()
    writer.commit(_save("model", "v1"))
    with reader.reader(latest=False) as view:  # it has seen nothing yet: it looks
        assert _versions(view, "model") == ["v1"]
    writer.commit(_save("model", "v2"))
    with reader.reader(latest=False) as view:
        assert _versions(view, "model") == ["v1"] and view.head() == 1
    assert _versions(reader, "model") == ["v2", "v1"]
    with reader.reader(latest=False) as view:
        assert view.head() == 2


def test_a_view_cannot_be_used_after_its_block(open_store):
    store = open_store()
    with store.reader() as view:
        pass
    with pytest.raises(StoreError, match="used after its 'with store.reader\\(\\)' block"):
        view.op_versions("model")


# -- failed requests -----------------------------------------------------------------------
def _failing_creates(store: ObjectOpStore, monkeypatch, failures: int, land: bool) -> list[str]:
    """Make the store's next ``failures`` creates fail after (``land``) or before writing."""
    create, attempts = store._bucket.create, []

    def flaky(path: str, data: bytes) -> None:
        attempts.append(path)
        if len(attempts) > failures:
            return create(path, data)
        if land:
            create(path, data)
        raise StoreError("the connection was reset") from ConnectionResetError()

    monkeypatch.setattr(store._bucket, "create", flaky)
    return attempts


@pytest.mark.parametrize("land", [True, False], ids=["landed", "lost"])
def test_a_commit_whose_request_failed_is_settled_by_what_the_bucket_holds(open_store, monkeypatch, land):
    store = open_store()
    store.commit(_save("model", "v1"))
    attempts = _failing_creates(store, monkeypatch, failures=2, land=land)

    assert store.commit(_save("model", "v2")) == 2
    assert len(attempts) == (1 if land else 3)  # a landed write is found; a lost one is tried again
    assert _versions(open_store(), "model") == ["v2", "v1"] and open_store().head() == 2


def test_a_commit_that_keeps_failing_raises_and_leaves_nothing(open_store, monkeypatch):
    store = open_store()
    _failing_creates(store, monkeypatch, failures=3, land=False)
    with pytest.raises(StoreError, match="connection was reset"):
        store.commit(_save("model", "v1"))
    assert open_store().head() == 0


# -- jobs ----------------------------------------------------------------------------------
def test_jobs_are_replaced_in_place_and_listed_in_creation_order(open_store, memory_url):
    writer, reader = open_store(), open_store()
    first = JobRecord("job-1", "p", "queued", submitted_at=2.0, updated_at=2.0)
    second = JobRecord("job/2", "p", "queued", submitted_at=1.0, updated_at=1.0)
    writer.put_job(first)
    writer.put_job(second)
    reader.put_job(attrs.evolve(first, status="running"))  # a store that did not create it
    writer.put_job(attrs.evolve(first, status="done", result_path="jobs/job-1"))

    assert reader.get_job("job-1") == attrs.evolve(first, status="done", result_path="jobs/job-1")
    assert reader.get_job("nope") is None
    assert [(job.job_id, job.status) for job in reader.jobs()] == [("job/2", "queued"), ("job-1", "done")]
    assert [job.job_id for job in reader.jobs(before="job/2")] == ["job-1"]
    assert len(_objects(memory_url, "jobs")) == 2 and len(_objects(memory_url, "job-order")) == 2


# -- damage --------------------------------------------------------------------------------
def _flip(url: str, path: str, offset: int) -> None:
    fs, _ = fsspec.core.url_to_fs(url)
    data = bytearray(fs.cat_file(path))
    data[offset % len(data)] ^= 0x20
    fs.pipe_file(path, bytes(data))


def test_a_flipped_byte_anywhere_in_an_entry_is_named_as_damage(open_store, memory_url):
    store = open_store()
    for index in range(3):
        store.commit(_save("model", f"v{index}", upstream="pca"))
    path = _objects(memory_url, "log")[1]
    size = len(fsspec.core.url_to_fs(memory_url)[0].cat_file(path))
    for offset in random.Random(3).sample(range(size), 25):
        _flip(memory_url, path, offset)
        with pytest.raises(IntegrityError, match="log entry 2 .*of <ObjectOpStore at "):
            open_store().op_versions("model")  # the newest version's listing reaches entry 2
        _flip(memory_url, path, offset)
    assert _versions(open_store(), "model") == ["v2", "v1", "v0"]


def _everything(store: ObjectOpStore) -> dict:
    """Every answer the store gives about the ops, journals and jobs of the damage probe."""
    found: dict = {"jobs": store.jobs()}
    with store.reader() as view:
        for op in ("model", "pca"):
            found[op] = view.op_versions(op)
            found[op, "code"] = view.op_versions(op, compatible_with="code", policy="exact", limit=3)
            for record in found[op]:
                found[op, record.version] = (view.op_version(op, record.version), view.links(op, record.version))
        found["journal"] = view.journal(SnapshotRecord, "train")
    return found


def test_random_flipped_bytes_in_any_object_are_reported_never_answered_wrongly(open_store, memory_url):
    store = open_store()
    rng = random.Random(11)
    for index in range(40):
        version = f"v{rng.randrange(25)}"  # versions saved again now and then
        store.commit(_save(rng.choice(["model", "pca"]), version, upstream="up" if index % 3 else None))
        if index % 8 == 0:
            store.put_job(JobRecord(f"job-{index}", "p", "done", 1.0, 2.0, result_path=f"jobs/{index}"))
    intact = _everything(open_store())
    fs, root = fsspec.core.url_to_fs(memory_url)
    objects = [path for path in fs.find(f"{root}/meta") if fs.size(path)]  # job-order markers are empty
    outcomes = {"reported": 0, "unaffected": 0}
    for _ in range(200):
        path = rng.choice(objects)
        data = fs.cat_file(path)
        offset = rng.randrange(len(data))
        fs.pipe_file(path, data[:offset] + bytes([data[offset] ^ rng.randrange(1, 256)]) + data[offset + 1 :])
        try:
            answered = _everything(open_store())
        except StoreError as exc:
            assert "ObjectOpStore at" in str(exc) and "meta/" in str(exc), exc  # names the store and the object
            outcomes["reported"] += 1
        else:
            assert answered == intact, f"a flipped byte at {offset} of {path} changed an answer"
            outcomes["unaffected"] += 1
        fs.pipe_file(path, data)
    assert outcomes == {"reported": 200, "unaffected": 0}  # every object is read here, so every flip is seen


def test_an_object_not_written_by_chariots_is_named_as_such(open_store, memory_url):
    store = open_store()
    store.commit(_save("model", "v1"))
    fs, _ = fsspec.core.url_to_fs(memory_url)
    fs.pipe_file(_objects(memory_url, "log")[0], b'{"seq": 1}')
    with pytest.raises(IntegrityError, match="log entry 1 .* is not a chariots-log object of Chariots"):
        open_store().op_versions("model")


def test_a_missing_entry_that_the_state_refers_to_is_damage_not_a_shorter_listing(open_store, memory_url):
    store = open_store()
    store.commit(_save("model", "v1"))
    for index in range(15):  # the 16th commit writes the head hint a new store starts from
        store.commit(_save("other", f"w{index}"))
    fs, _ = fsspec.core.url_to_fs(memory_url)
    fs.rm_file(_objects(memory_url, "log")[0])
    reader = open_store()
    assert _versions(reader, "other", limit=1) == ["w14"]
    with pytest.raises(IntegrityError, match="log entry 1 .* is missing"):
        reader.op_versions("model")


def test_a_first_entry_deleted_under_later_ones_is_damage_not_an_empty_store(open_store, memory_url):
    store = open_store()
    store.commit(_save("model", "v1"))
    store.commit(_save("model", "v2"))
    fs, _ = fsspec.core.url_to_fs(memory_url)
    fs.rm_file(_objects(memory_url, "log")[0])
    with pytest.raises(IntegrityError, match="log entry 1 .* is missing but the log holds 1 other entries"):
        open_store().head()


def test_a_damaged_head_hint_or_job_record_is_named(open_store, memory_url):
    store = open_store()
    for index in range(16):  # the 16th commit writes the hint
        store.commit(_save("model", f"v{index}"))
    store.put_job(JobRecord("j", "p", "queued", 1.0, 1.0))
    _, root = fsspec.core.url_to_fs(memory_url)
    _flip(memory_url, f"{root}/meta/head", 70)
    with pytest.raises(IntegrityError, match="head hint .* is damaged"):
        open_store().head()
    _flip(memory_url, _objects(memory_url, "jobs")[0], 80)
    with pytest.raises(IntegrityError, match="job record .* is damaged"):
        store.get_job("j")


# -- garbage collection --------------------------------------------------------------------
def test_referenced_blobs_are_those_of_the_listed_versions(open_store):
    store = open_store()
    store.commit(Commit((_record("model", "v1", blob="ops/model/a"),)))
    store.commit(Commit((_record("model", "v1", blob="ops/model/b"),)))  # saved again: "a" is no longer used
    store.commit(Commit((_record("pca", "p1", blob="ops/pca/c"),), (LinkRecord("x", "1", "other", "o1"),)))
    for index in range(40):  # enough keys to split the map's buckets
        store.commit(Commit((_record("many", f"m{index}", blob=f"ops/many/{index}"),)))

    expected = ["ops/model/b", "ops/pca/c", *(f"ops/many/{index}" for index in range(40))]
    assert sorted(store.referenced_blobs()) == sorted(expected)
    assert list(ObjectOpStore(f"{store.url}-empty").referenced_blobs()) == []


def test_collect_debris_removes_old_markers_of_jobs_never_written(open_store, memory_url):
    store = open_store()
    store.put_job(JobRecord("kept", "p", "queued", 1.0, 1.0))
    fs, root = fsspec.core.url_to_fs(memory_url)
    old, young = "00000000000000000001-" + "0" * 32, "9" * 20 + "-" + "0" * 32
    fs.pipe_file(f"{root}/meta/job-order/{old}_lost", b"")  # a creation killed before its record
    fs.pipe_file(f"{root}/meta/job-order/{young}_racing", b"")  # one being created right now

    assert store.collect_debris(older_than=3600, dry_run=True) == [f"meta/job-order/{old}_lost"]
    assert len(_objects(memory_url, "job-order")) == 3
    assert store.collect_debris(older_than=3600) == [f"meta/job-order/{old}_lost"]
    assert [job.job_id for job in store.jobs()] == ["kept"]
    assert len(_objects(memory_url, "job-order")) == 2
    assert store.collect_debris(older_than=3600) == []


# -- configuration and apps ----------------------------------------------------------------
def test_a_filesystem_without_atomic_create_is_refused(tmp_path):
    with pytest.raises(StoreError, match="creates an object only if it is absent, atomically.*LMDB store"):
        ObjectOpStore(f"file://{tmp_path}")


def test_an_unknown_url_scheme_is_a_store_error():
    with pytest.raises(StoreError, match="not a URL fsspec knows"):
        ObjectOpStore("nosuchscheme://bucket/prefix")


def test_the_registry_maps_object_store_schemes_to_it():
    for scheme in ("s3", "gs", "memory-objects"):
        assert get_backend("op_store", scheme) is ObjectOpStore


def test_lineage_rules_hold_between_two_apps_sharing_the_store(open_store, lineage_app):
    saver = MemorySaver()
    trainer = Chariots(lineage_app.pipelines(), op_store=open_store(), saver=saver)
    server = Chariots(lineage_app.pipelines(), op_store=open_store(), saver=saver)
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


def test_chariots_on_a_memory_url_keeps_records_beside_the_blobs(memory_url, lineage_app):
    with Chariots(lineage_app.pipelines(), path=memory_url) as app:
        assert isinstance(app.op_store, ObjectOpStore)
        app.call_pipeline("train_all", lineage_app.DATA)
        app.save_pipeline("train_all")
    fs, root = fsspec.core.url_to_fs(memory_url)
    assert fs.ls(f"{root}/blobs/ops/center", detail=False) and _objects(memory_url, "log")
    with Chariots(lineage_app.pipelines(), path=memory_url) as again:
        again.load_pipeline("predict")
        assert again.call_pipeline("predict", lineage_app.DATA).value == [False, False, False, True]


def test_a_closed_store_reads_again_when_used(open_store):
    store = open_store()
    store.commit(_save("model", "v1"))
    store.close()
    store.close()
    assert _versions(store, "model") == ["v1"]
