"""The core's in-memory saver and op store, against the protocols the backends implement."""

from __future__ import annotations

import json
import threading

import pytest

from chariots_core import BaseSaver, MemoryOpStore, MemorySaver, OpStore
from chariots_core.errors import StoreError
from chariots_core.op_store.store import (
    JobRecord,
    LinkRecord,
    OpVersionRecord,
    SaveRecord,
    SnapshotRecord,
    from_json,
    to_json,
)

V1 = "a" * 40 + "_" + "b" * 40 + "_" + "c" * 40 + "_1.0"
V2 = "d" * 40 + "_" + "b" * 40 + "_" + "c" * 40 + "_2.0"


def version_record(op_name, version, sha="0" * 64, pipeline="train"):
    return OpVersionRecord(op_name, version, V1, pipeline, 1.0, f"ops/{op_name}/{sha}", sha, 3)


def save(ops=(), links=(), pipeline="train"):
    return SaveRecord(tuple(ops), tuple(links), SnapshotRecord(pipeline, 1.0, {op.op_name: op.version for op in ops}))


# -- MemorySaver ---------------------------------------------------------------------------
def test_memory_saver_round_trip():
    saver = MemorySaver()
    assert isinstance(saver, BaseSaver)
    assert not saver.exists("ops/a/1")
    saver.save("ops/a/1", b"abc")
    assert saver.exists("ops/a/1")
    assert saver.load("ops/a/1") == b"abc"
    saver.save("ops/a/1", bytearray(b"xyz"))
    assert saver.load("ops/a/1") == b"xyz"
    saver.delete("ops/a/1")
    saver.delete("ops/a/1")  # deleting nothing is fine
    assert not saver.exists("ops/a/1")


def test_memory_saver_missing_path_is_file_not_found():
    with pytest.raises(FileNotFoundError, match="nothing is saved at 'ops/missing'"):
        MemorySaver().load("ops/missing")


@pytest.mark.parametrize("path", ["", "/abs/path", "../escape", "a/../b", "a//b", "./a", "a/"])
def test_memory_saver_refuses_unsafe_paths(path):
    saver = MemorySaver()
    for call in (lambda: saver.save(path, b"x"), lambda: saver.load(path), lambda: saver.exists(path)):
        with pytest.raises(StoreError, match="saver paths must be relative"):
            call()


# -- MemoryOpStore -------------------------------------------------------------------------
def test_memory_op_store_versions_links_and_snapshots():
    store = MemoryOpStore()
    assert isinstance(store, OpStore)
    first, second = version_record("model", V1), version_record("model", V2, sha="1" * 64)
    link = LinkRecord("data", V1, "model", V1)
    store.commit_save(save([first], [link]))
    store.commit_save(save([second], [link, LinkRecord("data", V2, "model", V2)]))
    assert store.op_versions("model") == [first, second]
    assert store.links("model") == [link, LinkRecord("data", V2, "model", V2)]  # known links once
    assert store.links("data") == []
    assert [snapshot.versions for snapshot in store.snapshots("train")] == [{"model": V1}, {"model": V2}]
    assert store.op_versions("unknown") == [] and store.snapshots("unknown") == []
    store.commit_save(save([first], pipeline="other"))  # a re-saved version moves last
    assert store.op_versions("model") == [second, first]


def test_memory_op_store_jobs():
    store = MemoryOpStore()
    late = JobRecord("late", "p", "queued", submitted_at=2.0, updated_at=2.0)
    early = JobRecord("early", "p", "queued", submitted_at=1.0, updated_at=1.0)
    store.put_job(late)
    store.put_job(early)
    assert store.get_job("late") == late and store.get_job("missing") is None
    assert [job.job_id for job in store.jobs()] == ["early", "late"]
    done = JobRecord("late", "p", "done", 2.0, 3.0, versions={"op": V1}, result_path="jobs/late")
    store.put_job(done)
    assert store.get_job("late") == done
    store.close()


def test_memory_op_store_commits_are_atomic_across_threads():
    store = MemoryOpStore()

    def saver(worker):
        for number in range(50):
            version = f"{worker:040d}_{number:040d}_{0:040d}_1.0"
            op = version_record(f"op{worker}", version)
            store.commit_save(save([op], [LinkRecord("up", V1, f"op{worker}", version)], pipeline=f"p{worker}"))

    threads = [threading.Thread(target=saver, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for worker in range(4):
        assert len(store.op_versions(f"op{worker}")) == 50
        assert len(store.links(f"op{worker}")) == 50
        assert len(store.snapshots(f"p{worker}")) == 50


# -- JSON records --------------------------------------------------------------------------
def test_records_round_trip_through_json_not_pickle():
    records = [
        version_record("model", V1),
        LinkRecord("data", V1, "model", V2),
        SnapshotRecord("train", 1.5, {"model": V1}),
        save([version_record("model", V1)], [LinkRecord("data", V1, "model", V1)]),
        JobRecord("j", "p", "failed", 1.0, 2.0, error={"type": "ValueError", "message": "no", "node": "op"}),
    ]
    for record in records:
        encoded = to_json(record)
        assert isinstance(json.loads(encoded), dict)
        assert b" " not in encoded.replace(b"ValueError", b"")  # compact
        assert from_json(encoded, type(record)) == record
        assert from_json(encoded.decode(), type(record)) == record
    assert to_json(LinkRecord("b", "1", "a", "2")).startswith(b'{"downstream_op":"a"')  # sorted keys
