"""The behaviour every op store must share, run against each backend in ``conftest.OP_STORES``.

``MemoryOpStore`` is the reference: other backends are also driven through one long random
history side by side with it and must answer every query the same way.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import ClassVar

import attrs
import pytest

from chariots_core import MemoryOpStore, OpStore
from chariots_core.errors import ConfigError, NotSavedError, StoreError
from chariots_core.op_store import JobStore
from chariots_core.op_store.datasets import DatasetRecord
from chariots_core.op_store.records import (
    POLICIES,
    Commit,
    FieldRecord,
    JobRecord,
    JournalAppend,
    LinkRecord,
    OpFieldsRecord,
    OpVersionRecord,
    SnapshotRecord,
    fields_name,
)


def record(op: str, version: str, saved_at: float = 1.0, pipeline: str = "train", code: str | None = None) -> OpVersionRecord:
    return OpVersionRecord(
        op_name=op,
        version=version,
        code_version=code or f"code-of-{op}",
        pipeline_name=pipeline,
        saved_at=saved_at,
        blob_path=f"ops/{op}/{version}",
        sha256=f"sha-{op}-{version}",
        size=len(version),
    )


def snapshot(pipeline: str = "train", at: float = 1.0, **versions: str) -> SnapshotRecord:
    return SnapshotRecord(pipeline, at, versions)


def save(*ops: OpVersionRecord, links: tuple[LinkRecord, ...] = (), pipeline: str = "train", at: float = 1.0) -> Commit:
    taken = SnapshotRecord(pipeline, at, {op.op_name: op.version for op in ops})
    return Commit(ops, links, (JournalAppend(pipeline, taken),))


def job(job_id: str, submitted_at: float = 1.0, status: str = "queued", **changes: object) -> JobRecord:
    return JobRecord(job_id, "train", status, submitted_at, submitted_at, **changes)


def versions(store, op: str, **options) -> list[str]:
    return [r.version for r in store.op_versions(op, **options)]


def snapshots(store, pipeline: str, **options) -> list[SnapshotRecord]:
    return [entry.record for entry in store.journal(SnapshotRecord, pipeline, **options)]


@attrs.frozen
class Deployment:
    """A journal record class the backends have never heard of."""

    JOURNAL: ClassVar[str] = "deployments"

    pipeline_name: str
    versions: dict[str, str]
    note: str | None = None


# -- the protocols ---------------------------------------------------------------------------
def test_an_op_store_is_an_op_store_and_a_job_store(op_store):
    assert isinstance(op_store, OpStore) and isinstance(op_store, JobStore)


def test_an_empty_store_answers_with_nothing(op_store):
    with op_store.reader() as view:
        assert view.op_versions("pca") == [] and view.op_version("pca", "v1") is None
        assert view.op_versions("pca", compatible_with="code", policy="exact") == []
        assert view.links("model", "v1") == []
        assert view.journal(SnapshotRecord, "train") == []
        assert view.head() == op_store.head()
    assert op_store.get_job("missing") is None
    assert op_store.jobs() == []


# -- op versions -----------------------------------------------------------------------------
def test_versions_come_back_equal_newest_first(op_store):
    first, second, third = record("pca", "v1", 1.5), record("pca", "v2", 2.25), record("pca", "v3", 3.0)
    op_store.commit(save(first, record("model", "m1")))
    op_store.commit(save(second))
    op_store.commit(save(third, record("model", "m2")))

    assert op_store.op_versions("pca") == [third, second, first]
    assert op_store.op_version("pca", "v2") == second
    assert versions(op_store, "model") == ["m2", "m1"]
    assert op_store.op_versions("pca", limit=1) == [third]


def test_every_commit_moves_the_head_and_returns_it(op_store):
    heads = [op_store.head()]
    heads.append(op_store.commit(save(record("pca", "v1"))))
    assert op_store.head() == heads[-1]
    heads.append(op_store.commit(Commit(links=(LinkRecord("a", "1", "pca", "v1"),))))  # links only
    heads.append(op_store.commit(Commit()))  # nothing at all: still a commit
    assert op_store.head() == heads[-1]
    assert len(set(heads)) == 4


def test_resaving_a_version_replaces_its_record_and_makes_it_the_newest(op_store):
    op_store.commit(save(record("pca", "v1", 1.0)))
    op_store.commit(save(record("pca", "v2", 2.0)))
    resaved = record("pca", "v1", 3.0, pipeline="retrain")
    op_store.commit(save(resaved))

    assert op_store.op_versions("pca") == [resaved, record("pca", "v2", 2.0)]
    assert op_store.op_version("pca", "v1") == resaved


def test_the_same_version_twice_in_one_commit_keeps_the_last(op_store):
    op_store.commit(save(record("pca", "v1", 1.0), record("pca", "v2", 1.0), record("pca", "v1", 9.0)))

    assert op_store.op_versions("pca") == [record("pca", "v1", 9.0), record("pca", "v2", 1.0)]


def test_a_version_is_found_by_its_subversions_whatever_its_creation_time(op_store):
    saved = record("pca", "aaa_bbb_ccc_1700000000.5")
    op_store.commit(save(saved))

    assert op_store.op_version("pca", "aaa_bbb_ccc_1800000000.25") == saved
    assert op_store.op_version("pca", "aaa_bbb_ddd_1700000000.5") is None
    op_store.commit(save(record("pca", "aaa_bbb_ccc_1900000000.0", 5.0)))  # the same version again
    assert versions(op_store, "pca") == ["aaa_bbb_ccc_1900000000.0"]


def test_a_policy_lists_only_the_versions_whose_code_it_accepts(op_store):
    codes = {"v1": "M1_m1_p1_1.0", "v2": "M1_m2_p1_2.0", "v3": "M2_m1_p1_3.0", "v4": "M1_m1_p2_4.0"}
    for version, code in codes.items():
        op_store.commit(save(record("pca", version, code=code)))
    running = "M1_m1_p1_9.0"  # only the creation time differs from v1's code

    assert versions(op_store, "pca", compatible_with=running, policy="major") == ["v4", "v2", "v1"]
    assert versions(op_store, "pca", compatible_with=running, policy="minor") == ["v4", "v1"]
    assert versions(op_store, "pca", compatible_with=running, policy="exact") == ["v1"]
    assert versions(op_store, "pca", compatible_with="M3_m1_p1_1.0") == []
    assert versions(op_store, "pca", compatible_with=running, limit=1) == ["v4"]
    with pytest.raises(ConfigError, match="'policy' must be one of"):
        op_store.op_versions("pca", compatible_with=running, policy="newest")


def test_a_resaved_version_moves_in_its_code_listings_too(op_store):
    op_store.commit(save(record("pca", "v1", code="A_a_a")))
    op_store.commit(save(record("pca", "v2", code="A_a_a")))
    op_store.commit(save(record("pca", "v1", code="B_a_a")))  # saved again by other code

    assert versions(op_store, "pca", compatible_with="A_a_a") == ["v2"]
    assert versions(op_store, "pca", compatible_with="B_a_a") == ["v1"]
    for policy in POLICIES:
        assert versions(op_store, "pca", compatible_with="A_a_a", policy=policy) == ["v2"]


def test_versions_page_newest_first_with_limit_and_before(op_store):
    for index in range(7):
        op_store.commit(save(record("pca", f"v{index}", code="A_a_a" if index % 2 else "B_b_b")))

    pages, before = [], None
    while page := versions(op_store, "pca", limit=3, before=before):
        pages.append(page)
        before = page[-1]
    assert pages == [["v6", "v5", "v4"], ["v3", "v2", "v1"], ["v0"]]
    assert versions(op_store, "pca", before="v6", limit=0) == []
    assert versions(op_store, "pca", compatible_with="A_a_a", limit=2, before="v5") == ["v3", "v1"]
    assert versions(op_store, "pca", compatible_with="A_a_a", before="v1") == []


@pytest.mark.parametrize("before", ["v9", "v2"])  # unknown, and of other code than the listing's
def test_paging_from_a_version_not_in_the_listing_is_refused(op_store, before):
    op_store.commit(save(record("pca", "v1", code="A_a_a"), record("pca", "v2", code="B_b_b")))

    with pytest.raises(NotSavedError, match=f"'{before}'"):
        op_store.op_versions("pca", compatible_with="A_a_a", before=before)


@pytest.mark.parametrize("limit", [-1, 1.5, "3", True])
def test_a_bad_limit_is_refused(op_store, limit):
    with pytest.raises(ConfigError, match="'limit' must be None or a number >= 0"):
        op_store.op_versions("pca", limit=limit)
    with pytest.raises(ConfigError, match="'limit'"):
        op_store.jobs(limit=limit)


@pytest.mark.parametrize("names", [("pca", "pca2", "pc"), ('a"', "a", 'a",'), ("a,b", "a", "a]"), ("é", "e", ""), ("x" * 300, "x" * 301, "x")])
def test_names_that_share_a_prefix_stay_apart(op_store, names):
    for index, name in enumerate(names):
        op_store.commit(
            Commit(
                (record(name, f"v{index}"),),
                (LinkRecord("up", "u1", name, f"v{index}"),),
                (JournalAppend(name, snapshot(name, **{name: f"v{index}"})),),
            )
        )

    for index, name in enumerate(names):
        assert versions(op_store, name) == [f"v{index}"]
        assert op_store.links(name, f"v{index}") == [LinkRecord("up", "u1", name, f"v{index}")]
        assert [s.versions for s in snapshots(op_store, name)] == [{name: f"v{index}"}]


# -- links -----------------------------------------------------------------------------------
def test_links_are_read_by_downstream_version_once_each_in_first_seen_order(op_store):
    a = LinkRecord("pca", "p1", "model", "m1")
    b = LinkRecord("scaler", "s1", "model", "m1")
    c = LinkRecord("pca", "p2", "model", "m2")
    other = LinkRecord("model", "m1", "report", "r1")
    op_store.commit(save(record("model", "m1"), links=(a, b, other)))
    op_store.commit(save(record("model", "m2"), links=(c, a)))

    assert op_store.links("model", "m1") == [a, b]
    assert op_store.links("model", "m2") == [c]
    assert op_store.links("report", "r1") == [other]
    assert op_store.links("pca", "p1") == [] and op_store.links("model", "m3") == []


def test_links_are_found_by_the_downstream_subversions(op_store):
    link = LinkRecord("pca", "p_p_p_1.0", "model", "m_m_m_1.0")
    op_store.commit(Commit(links=(link,)))

    assert op_store.links("model", "m_m_m_2.0") == [link]


# -- journals --------------------------------------------------------------------------------
def test_snapshots_keep_every_save_newest_first_even_identical_ones(op_store):
    op_store.commit(save(record("pca", "v1"), at=1.0))
    op_store.commit(save(record("pca", "v1"), at=1.0))
    op_store.commit(save(record("pca", "v2"), at=2.0, pipeline="other"))

    assert snapshots(op_store, "train") == [SnapshotRecord("train", 1.0, {"pca": "v1"})] * 2
    assert snapshots(op_store, "other") == [SnapshotRecord("other", 2.0, {"pca": "v2"})]
    entries = op_store.journal(SnapshotRecord, "train")
    assert entries[0].position != entries[1].position


def test_a_commit_without_ops_still_appends_its_journal_records(op_store):
    op_store.commit(Commit(journal=(JournalAppend("serve", snapshot("serve", 4.0, plain="x")),)))

    assert snapshots(op_store, "serve") == [snapshot("serve", 4.0, plain="x")]


def test_journals_page_newest_first_by_position(op_store):
    for index in range(5):
        op_store.commit(Commit(journal=(JournalAppend("train", snapshot(at=float(index))),)))

    first = op_store.journal(SnapshotRecord, "train", limit=2)
    rest = op_store.journal(SnapshotRecord, "train", before=first[-1].position)
    assert [entry.record.saved_at for entry in first + rest] == [4.0, 3.0, 2.0, 1.0, 0.0]
    assert op_store.journal(SnapshotRecord, "train", before=rest[-1].position) == []
    with pytest.raises(NotSavedError, match="journal"):
        op_store.journal(SnapshotRecord, "train", before="not a position")


def test_a_new_kind_of_journal_needs_no_backend_change(op_store):
    first, second = Deployment("pred", {"pca": "v1"}), Deployment("pred", {"pca": "v2"}, note="rollback")
    op_store.commit(Commit(journal=(JournalAppend("pred", first), JournalAppend("pred", snapshot("pred")))))
    op_store.commit(Commit(journal=(JournalAppend("pred", second),)))

    assert [entry.record for entry in op_store.journal(Deployment, "pred")] == [second, first]
    assert snapshots(op_store, "pred") == [snapshot("pred")]  # kinds stay apart under one name


def test_every_journal_the_app_writes_reads_back_equal_also_from_another_handle(op_store_backend, op_store, tmp_path):
    fields = OpFieldsRecord(
        "pca",
        "1.0.0",
        "models.PCA",
        (
            FieldRecord("model_parameters['n_components']", "major", "ab" * 20, "3"),
            FieldRecord("fit", "minor", "cd" * 20, "fit, predict", "code"),
        ),
    )
    dataset = DatasetRecord("data/train é.csv", "0" * 64, 12, "train", "save_data", 3.5)
    appends = (JournalAppend(fields_name("pca", "1.0.0"), fields), JournalAppend(dataset.path, dataset))
    op_store.commit(Commit(journal=appends))
    op_store.commit(save(record("pca", "v1"), at=4.0))

    stores = [op_store, op_store_backend.open(tmp_path)] if op_store_backend.persistent else [op_store]
    for store in stores:
        assert [entry.record for entry in store.journal(OpFieldsRecord, fields_name("pca", "1.0.0"))] == [fields]
        assert [entry.record for entry in store.journal(DatasetRecord, dataset.path)] == [dataset]
        assert snapshots(store, "train") == [SnapshotRecord("train", 4.0, {"pca": "v1"})]
        assert store.journal(OpFieldsRecord, dataset.path) == store.journal(DatasetRecord, "pca@1.0.0") == []
    stores[-1].close()


def test_a_record_class_without_a_journal_is_refused():
    with pytest.raises(StoreError, match="JOURNAL"):
        JournalAppend("train", record("pca", "v1"))


# -- views -----------------------------------------------------------------------------------
def test_a_view_reads_one_committed_state_while_commits_land(op_store):
    op_store.commit(save(record("pca", "v1"), links=(LinkRecord("up", "u1", "pca", "v1"),)))
    writer = threading.Thread(target=op_store.commit, args=(save(record("pca", "v2"), links=(LinkRecord("up", "u2", "pca", "v2"),)),))
    with op_store.reader() as view:
        head = view.head()
        assert versions(view, "pca") == ["v1"]
        writer.start()
        writer.join(timeout=0.3)  # a store whose views lock writers out finishes it after the block
        assert versions(view, "pca") == ["v1"] and view.op_version("pca", "v2") is None
        assert view.links("pca", "v2") == [] and len(view.journal(SnapshotRecord, "train")) == 1
        assert view.head() == head
    writer.join(timeout=30)
    assert versions(op_store, "pca") == ["v2", "v1"] and op_store.head() != head


def test_a_view_that_need_not_be_the_latest_still_sees_the_stores_own_commits(op_store):
    with op_store.reader(latest=False) as view:
        assert view.op_versions("pca") == []
    op_store.commit(save(record("pca", "v1")))
    with op_store.reader(latest=False) as view:
        assert versions(view, "pca") == ["v1"] and view.head() == op_store.head()


def test_committing_inside_a_view_of_the_same_store_is_refused(op_store):
    with op_store.reader() as view:
        with pytest.raises(StoreError, match="holds a view"):
            op_store.commit(save(record("pca", "v1")))
        assert view.op_versions("pca") == []
    assert op_store.op_versions("pca") == []
    op_store.commit(save(record("pca", "v1")))  # fine once the view is closed


# -- jobs ------------------------------------------------------------------------------------
def test_jobs_are_created_replaced_and_listed_newest_first(op_store):
    first, second, third = job("first", 5.0), job("second", 1.0), job("third", 5.0)
    for item in (first, second, third):
        op_store.put_job(item)
    done = job("first", 5.0, status="done", result_path="jobs/first", result_sha256="abc", versions={"a": "1"})
    op_store.put_job(done)

    assert op_store.get_job("first") == done
    assert op_store.get_job("second") == second
    # In creation order, newest first: replacing a job keeps its place.
    assert op_store.jobs() == [third, second, done]
    assert op_store.jobs(limit=2) == [third, second]
    assert op_store.jobs(before="second") == [done]
    assert op_store.jobs(before="first") == []
    with pytest.raises(NotSavedError, match="'nope'"):
        op_store.jobs(before="nope")


def test_a_job_keeps_its_error_details(op_store):
    error = {"type": "ValueError", "message": "bad", "node": "pca"}
    failed = job("j1", 1.0, status="failed", error=error, worker="pid 1")
    op_store.put_job(failed)

    assert op_store.get_job("j1") == failed


# -- persistence and concurrency -------------------------------------------------------------
def test_a_second_handle_on_the_same_store_sees_every_commit(op_store_backend, op_store, tmp_path: Path):
    if not op_store_backend.persistent:
        pytest.skip(f"{op_store_backend.name} keeps nothing beyond one object")
    other = op_store_backend.open(tmp_path)
    try:
        op_store.commit(save(record("pca", "v1"), links=(LinkRecord("a", "1", "pca", "v1"),)))
        op_store.put_job(job("j", 1.0))
        assert other.op_versions("pca") == [record("pca", "v1")]
        assert other.links("pca", "v1") == [LinkRecord("a", "1", "pca", "v1")]
        assert other.head() == op_store.head()
        other.commit(save(record("pca", "v2")))
    finally:
        other.close()
    assert versions(op_store, "pca") == ["v2", "v1"]
    assert op_store.get_job("j") == job("j", 1.0)


def test_a_reopened_store_still_holds_everything(op_store_backend, tmp_path: Path):
    if not op_store_backend.persistent:
        pytest.skip(f"{op_store_backend.name} keeps nothing beyond one object")
    first = op_store_backend.open(tmp_path)
    first.commit(save(record("pca", "v1"), links=(LinkRecord("a", "1", "pca", "v1"),)))
    first.put_job(job("j", 1.0))
    head = first.head()
    first.close()

    reopened = op_store_backend.open(tmp_path)
    try:
        assert reopened.op_versions("pca") == [record("pca", "v1")]
        assert reopened.links("pca", "v1") == [LinkRecord("a", "1", "pca", "v1")]
        assert snapshots(reopened, "train") == [snapshot(pca="v1")]
        assert reopened.jobs() == [job("j", 1.0)]
        assert reopened.head() == head
    finally:
        reopened.close()


def test_threads_saving_at_once_lose_nothing(op_store):
    errors: list[BaseException] = []

    def work(thread: int) -> None:
        try:
            for index in range(10):
                op_store.commit(save(record(f"op{thread}", f"v{index}"), record("shared", f"t{thread}-{index}")))
                op_store.put_job(job(f"{thread}-{index}", float(index)))
                with op_store.reader() as view:
                    assert view.op_versions(f"op{thread}", limit=1)[0].version == f"v{index}"
        except BaseException as exc:  # surfaced below: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(thread,)) for thread in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    for thread in range(6):
        assert versions(op_store, f"op{thread}") == [f"v{index}" for index in reversed(range(10))]
        shared = [v for v in versions(op_store, "shared") if v.startswith(f"t{thread}-")]
        assert shared == [f"t{thread}-{index}" for index in reversed(range(10))]
    assert len(op_store.op_versions("shared")) == 60
    assert len(op_store.jobs()) == 60
    assert len(snapshots(op_store, "train")) == 60


def test_a_long_random_history_matches_the_memory_reference(op_store_backend, op_store):
    if op_store_backend.name == "memory":
        pytest.skip("MemoryOpStore is the reference itself")
    reference = MemoryOpStore()
    rng = random.Random(4)
    ops, pipelines = ["pca", "model", "scaler"], ["train", "retrain"]
    all_versions = [f"{v}_x_y" for v in "abcd"]
    codes = ["A_a_a", "A_b_a", "B_a_a", "A_a_b"]

    def random_commit() -> Commit:
        chosen = [
            record(rng.choice(ops), rng.choice(all_versions), rng.choice([1.0, 2.0]), rng.choice(pipelines), rng.choice(codes))
            for _ in range(rng.randint(0, 3))
        ]
        links = tuple(
            LinkRecord(rng.choice(ops), rng.choice(all_versions), rng.choice(ops), rng.choice(all_versions))
            for _ in range(rng.randint(0, 3))
        )
        return save(*chosen, links=links, pipeline=rng.choice(pipelines), at=rng.choice([1.0, 2.0]))

    for _ in range(150):
        if rng.random() < 0.7:
            item = random_commit()
            op_store.commit(item)
            reference.commit(item)
        else:
            item = job(f"j{rng.randint(0, 8)}", rng.choice([1.0, 2.0, 3.0]), rng.choice(["queued", "done"]))
            op_store.put_job(item)
            reference.put_job(item)

    def answers(store) -> dict:
        found: dict = {}
        with store.reader() as view:
            for name in ops:
                found[name] = view.op_versions(name)
                found[name, "paged"] = _pages(lambda before: view.op_versions(name, limit=2, before=before), "version")
                for code in codes:
                    for policy in POLICIES:
                        found[name, code, policy] = view.op_versions(name, compatible_with=code, policy=policy)
                for version in all_versions:
                    found[name, version] = (view.op_version(name, version), view.links(name, version))
            for name in pipelines:
                found[name] = [entry.record for entry in view.journal(SnapshotRecord, name)]
        found["jobs"] = store.jobs()
        found["jobs", "paged"] = _pages(lambda before: store.jobs(limit=2, before=before), "job_id")
        found["each job"] = [store.get_job(f"j{index}") for index in range(9)]
        return found

    assert answers(op_store) == answers(reference)


def _pages(read, identity: str) -> list[list]:
    """Every page of a listing, each read after the last item of the one before."""
    pages, before = [], None
    while page := read(before):
        pages.append(page)
        before = getattr(page[-1], identity)
    return pages


# -- garbage collection hooks ---------------------------------------------------------------------
def test_referenced_blobs_names_the_blob_of_every_version_of_every_op(op_store):
    long_name = "op-" + "n" * 300  # stored under a shortened key by some backends
    assert set(op_store.referenced_blobs()) == set()
    op_store.commit(save(record("pca", "v1"), record("model", "v1")))
    op_store.commit(save(record("pca", "v2"), record(long_name, "v1")))
    op_store.commit(save(record("pca", "v1", saved_at=2.0)))  # saved again: the record is replaced
    op_store.commit(Commit(journal=(JournalAppend("train", snapshot()),)))

    assert set(op_store.referenced_blobs()) == {"ops/pca/v1", "ops/pca/v2", "ops/model/v1", f"ops/{long_name}/v1"}


def test_a_replaced_record_no_longer_references_its_blob(op_store):
    op_store.commit(save(record("pca", "v1")))
    moved = attrs.evolve(record("pca", "v1"), blob_path="ops/pca/elsewhere")
    op_store.commit(save(moved))

    assert set(op_store.referenced_blobs()) == {"ops/pca/elsewhere"}


def test_collect_debris_of_a_store_returns_a_list_and_keeps_every_record(op_store):
    op_store.commit(save(record("pca", "v1")))

    assert isinstance(op_store.collect_debris(0, dry_run=True), list)
    op_store.collect_debris(0)

    assert versions(op_store, "pca") == ["v1"]
