"""The behaviour every op store must share, run against each backend in ``conftest.OP_STORES``.

``MemoryOpStore`` is the reference: other backends are also driven through one long random
history side by side with it and must answer every query the same way.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from chariots_core import MemoryOpStore, OpStore
from chariots_core.op_store.store import JobRecord, LinkRecord, OpVersionRecord, SaveRecord, SnapshotRecord


def record(op: str, version: str, saved_at: float = 1.0, pipeline: str = "train") -> OpVersionRecord:
    return OpVersionRecord(
        op_name=op,
        version=version,
        code_version=f"code-of-{op}",
        pipeline_name=pipeline,
        saved_at=saved_at,
        blob_path=f"ops/{op}/{version}",
        sha256=f"sha-{op}-{version}",
        size=len(version),
    )


def save(
    *ops: OpVersionRecord, links: tuple[LinkRecord, ...] = (), pipeline: str = "train", at: float = 1.0
) -> SaveRecord:
    snapshot = SnapshotRecord(pipeline, at, {op.op_name: op.version for op in ops})
    return SaveRecord(tuple(ops), links, snapshot)


def job(job_id: str, submitted_at: float, status: str = "queued", **changes: object) -> JobRecord:
    return JobRecord(job_id, "train", status, submitted_at, submitted_at, **changes)


def test_an_op_store_satisfies_the_protocol(op_store):
    assert isinstance(op_store, OpStore)


def test_an_empty_store_answers_with_nothing(op_store):
    assert op_store.op_versions("pca") == []
    assert op_store.links("model") == []
    assert op_store.snapshots("train") == []
    assert op_store.get_job("missing") is None
    assert op_store.jobs() == []


def test_versions_come_back_equal_and_in_commit_order(op_store):
    first, second, third = record("pca", "v1", 1.5), record("pca", "v2", 2.25), record("pca", "v3", 3.0)
    op_store.commit_save(save(first, record("model", "m1")))
    op_store.commit_save(save(second))
    op_store.commit_save(save(third, record("model", "m2")))

    assert op_store.op_versions("pca") == [first, second, third]
    assert [r.version for r in op_store.op_versions("model")] == ["m1", "m2"]


def test_resaving_a_version_replaces_its_record_and_makes_it_the_latest(op_store):
    op_store.commit_save(save(record("pca", "v1", 1.0)))
    op_store.commit_save(save(record("pca", "v2", 2.0)))
    resaved = record("pca", "v1", 3.0, pipeline="retrain")
    op_store.commit_save(save(resaved))

    assert op_store.op_versions("pca") == [record("pca", "v2", 2.0), resaved]


def test_the_same_version_twice_in_one_save_keeps_the_last(op_store):
    op_store.commit_save(save(record("pca", "v1", 1.0), record("pca", "v2", 1.0), record("pca", "v1", 9.0)))

    assert op_store.op_versions("pca") == [record("pca", "v2", 1.0), record("pca", "v1", 9.0)]


@pytest.mark.parametrize("names", [("pca", "pca2", "pc"), ('a"', "a", 'a",'), ("a,b", "a", "a]"), ("é", "e", "")])
def test_names_that_share_a_prefix_stay_apart(op_store, names):
    for index, name in enumerate(names):
        op_store.commit_save(
            SaveRecord(
                (record(name, f"v{index}"),),
                (LinkRecord("up", "u1", name, f"v{index}"),),
                SnapshotRecord(name, 1.0, {name: f"v{index}"}),
            )
        )

    for index, name in enumerate(names):
        assert [r.version for r in op_store.op_versions(name)] == [f"v{index}"]
        assert op_store.links(name) == [LinkRecord("up", "u1", name, f"v{index}")]
        assert [s.versions for s in op_store.snapshots(name)] == [{name: f"v{index}"}]


def test_links_are_listed_by_downstream_once_each_in_first_seen_order(op_store):
    a = LinkRecord("pca", "p1", "model", "m1")
    b = LinkRecord("scaler", "s1", "model", "m1")
    c = LinkRecord("pca", "p2", "model", "m2")
    other = LinkRecord("model", "m1", "report", "r1")
    op_store.commit_save(save(record("model", "m1"), links=(a, b, other)))
    op_store.commit_save(save(record("model", "m2"), links=(c, a)))

    assert op_store.links("model") == [a, b, c]
    assert op_store.links("report") == [other]
    assert op_store.links("pca") == []


def test_snapshots_keep_every_save_in_order_even_identical_ones(op_store):
    op_store.commit_save(save(record("pca", "v1"), at=1.0))
    op_store.commit_save(save(record("pca", "v1"), at=1.0))
    op_store.commit_save(save(record("pca", "v2"), at=2.0, pipeline="other"))

    assert op_store.snapshots("train") == [SnapshotRecord("train", 1.0, {"pca": "v1"})] * 2
    assert op_store.snapshots("other") == [SnapshotRecord("other", 2.0, {"pca": "v2"})]


def test_a_save_without_ops_still_records_its_snapshot(op_store):
    op_store.commit_save(SaveRecord((), (), SnapshotRecord("serve", 4.0, {"plain": "x"})))

    assert op_store.snapshots("serve") == [SnapshotRecord("serve", 4.0, {"plain": "x"})]


def test_jobs_are_created_replaced_and_listed_by_submission_time(op_store):
    late, early, tie = job("late", 5.0), job("early", 1.0), job("tie", 5.0)
    for item in (late, early, tie):
        op_store.put_job(item)
    done = job("late", 5.0, status="done", result_path="jobs/late", result_sha256="abc", versions={"a": "1"})
    op_store.put_job(done)

    assert op_store.get_job("late") == done
    assert op_store.get_job("early") == early
    # Same submission time: the job first put comes first, replacing it keeps its place.
    assert op_store.jobs() == [early, done, tie]


def test_a_job_keeps_its_error_details(op_store):
    error = {"type": "ValueError", "message": "bad", "node": "pca"}
    failed = job("j1", 1.0, status="failed", error=error, worker="pid 1")
    op_store.put_job(failed)

    assert op_store.get_job("j1") == failed


def test_a_second_handle_on_the_same_store_sees_every_commit(op_store_backend, op_store, tmp_path: Path):
    if not op_store_backend.persistent:
        pytest.skip(f"{op_store_backend.name} keeps nothing beyond one object")
    other = op_store_backend.open(tmp_path)
    try:
        op_store.commit_save(save(record("pca", "v1"), links=(LinkRecord("a", "1", "pca", "v1"),)))
        op_store.put_job(job("j", 1.0))
        assert other.op_versions("pca") == [record("pca", "v1")]
        assert other.links("pca") == [LinkRecord("a", "1", "pca", "v1")]
        other.commit_save(save(record("pca", "v2")))
    finally:
        other.close()
    assert [r.version for r in op_store.op_versions("pca")] == ["v1", "v2"]
    assert op_store.get_job("j") == job("j", 1.0)


def test_a_reopened_store_still_holds_everything(op_store_backend, tmp_path: Path):
    if not op_store_backend.persistent:
        pytest.skip(f"{op_store_backend.name} keeps nothing beyond one object")
    first = op_store_backend.open(tmp_path)
    first.commit_save(save(record("pca", "v1"), links=(LinkRecord("a", "1", "pca", "v1"),)))
    first.put_job(job("j", 1.0))
    first.close()

    reopened = op_store_backend.open(tmp_path)
    try:
        assert reopened.op_versions("pca") == [record("pca", "v1")]
        assert reopened.links("pca") == [LinkRecord("a", "1", "pca", "v1")]
        assert reopened.snapshots("train") == [SnapshotRecord("train", 1.0, {"pca": "v1"})]
        assert reopened.jobs() == [job("j", 1.0)]
    finally:
        reopened.close()


def test_threads_saving_at_once_lose_nothing(op_store):
    errors: list[BaseException] = []

    def work(thread: int) -> None:
        try:
            for index in range(10):
                op_store.commit_save(save(record(f"op{thread}", f"v{index}"), record("shared", f"t{thread}-{index}")))
                op_store.put_job(job(f"{thread}-{index}", float(index)))
        except BaseException as exc:  # surfaced below: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(thread,)) for thread in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    for thread in range(6):
        assert [r.version for r in op_store.op_versions(f"op{thread}")] == [f"v{index}" for index in range(10)]
        shared = [r.version for r in op_store.op_versions("shared") if r.version.startswith(f"t{thread}-")]
        assert shared == [f"t{thread}-{index}" for index in range(10)]
    assert len(op_store.op_versions("shared")) == 60
    assert len(op_store.jobs()) == 60
    assert len(op_store.snapshots("train")) == 60


def test_a_long_random_history_matches_the_memory_reference(op_store_backend, op_store):
    if op_store_backend.name == "memory":
        pytest.skip("MemoryOpStore is the reference itself")
    reference = MemoryOpStore()
    rng = random.Random(4)
    ops, versions, pipelines = ["pca", "model", "scaler"], ["v1", "v2", "v3", "v4"], ["train", "retrain"]

    def random_save() -> SaveRecord:
        chosen = [
            record(rng.choice(ops), rng.choice(versions), rng.choice([1.0, 2.0]), rng.choice(pipelines))
            for _ in range(rng.randint(0, 3))
        ]
        links = tuple(
            LinkRecord(rng.choice(ops), rng.choice(versions), rng.choice(ops), rng.choice(versions))
            for _ in range(rng.randint(0, 3))
        )
        return save(*chosen, links=links, pipeline=rng.choice(pipelines), at=rng.choice([1.0, 2.0]))

    for _ in range(150):
        if rng.random() < 0.7:
            item = random_save()
            op_store.commit_save(item)
            reference.commit_save(item)
        else:
            item = job(f"j{rng.randint(0, 8)}", rng.choice([1.0, 2.0, 3.0]), rng.choice(["queued", "done"]))
            op_store.put_job(item)
            reference.put_job(item)

    for name in ops:
        assert op_store.op_versions(name) == reference.op_versions(name)
        assert op_store.links(name) == reference.links(name)
    for name in pipelines:
        assert op_store.snapshots(name) == reference.snapshots(name)
    assert op_store.jobs() == reference.jobs()
    for index in range(9):
        assert op_store.get_job(f"j{index}") == reference.get_job(f"j{index}")
