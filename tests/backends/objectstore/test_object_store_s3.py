"""ObjectOpStore on S3 for real: s3fs against a local moto server, and processes sharing a bucket."""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import pickle
import subprocess
import sys
from collections import Counter

import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

from chariots_core import Chariots, VersionError  # noqa: E402
from chariots_core.errors import StoreError  # noqa: E402
from chariots_core.op_store.records import Commit, JobRecord, OpVersionRecord  # noqa: E402
from chariots_fsspec.object_store import ObjectOpStore  # noqa: E402

HERE = pathlib.Path(__file__).parent


def _run_app(url: str, command: str) -> dict:
    """Run one command of the lineage app in a fresh process."""
    done = subprocess.run(
        [sys.executable, str(HERE / "objectstore_lineage_app.py"), url, command],
        check=False,  # the assertion below shows the child's stderr
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _count_requests(store: ObjectOpStore) -> Counter:
    """A counter of the HTTP requests the store sends from now on, by method and directory."""
    sent: Counter = Counter()

    def record(request, **_):
        key = request.url.split("?")[0].split("/meta/", 1)[-1]
        sent[request.method, key.split("/")[0]] += 1

    store._bucket.fs.connect()
    store._bucket.fs.s3.meta.events.register("before-send.s3", record)
    return sent


def test_a_save_costs_the_store_one_request_and_a_load_two(bucket, lineage_app):
    with Chariots(lineage_app.pipelines(), path=f"s3://{bucket}/app") as app:
        app.call_pipeline("train_all", lineage_app.DATA)
        app.save_pipeline("train_all")
        app.load_pipeline("predict")
        sent = _count_requests(app.op_store)

        app.call_pipeline("train_all", lineage_app.DATA)
        app.save_pipeline("train_all")
        # The commit creates the entry after the newest the store knows; the check of what is
        # stored before it reads that state (reader(latest=False)).
        assert sent == {("PUT", "log"): 1}

        sent.clear()
        app.load_pipeline("predict")
        # What landed since (GET: 404, nothing), then the deployment's record (one commit).
        assert sent == {("GET", "log"): 1, ("PUT", "log"): 1}
        assert app.call_pipeline("predict", lineage_app.DATA).value == [False, False, False, True]


def test_a_store_one_commit_behind_catches_up_with_two_requests(bucket, s3_endpoint):
    url = f"s3://{bucket}/behind"
    writer, reader = ObjectOpStore(url, endpoint_url=s3_endpoint), ObjectOpStore(url, endpoint_url=s3_endpoint)
    record = OpVersionRecord("model", "v1", "code", "train", 1.0, "ops/model/v1", "0" * 64, 1)
    writer.commit(Commit((record,)))
    assert reader.op_versions("model") == [record]
    writer.commit(Commit((OpVersionRecord("model", "v2", "code", "train", 2.0, "ops/model/v2", "0" * 64, 1),)))
    sent = _count_requests(reader)
    assert [r.version for r in reader.op_versions("model")] == ["v2", "v1"]
    assert sent == {("GET", "log"): 2}  # the new entry, then the one after it: 404


def test_a_save_from_a_store_behind_commits_after_what_it_missed(bucket, lineage_app):
    url = f"s3://{bucket}/two-trainers"
    with Chariots(lineage_app.pipelines(), path=url) as first, Chariots(lineage_app.pipelines(), path=url) as second:
        for app in (first, second, first):
            app.call_pipeline("train_all", lineage_app.DATA)
            app.save_pipeline("train_all")  # each finds the entry it meant to create taken
        sent = _count_requests(second.op_store)
        second.call_pipeline("train_all", lineage_app.DATA)
        second.save_pipeline("train_all")
        # The entry it meant to create is taken (PUT refused), it reads the one that took it (GET),
        # finds no later one (GET: 404) and creates the next (PUT).
        assert sent == {("PUT", "log"): 2, ("GET", "log"): 2}
        versions = first.op_store.op_versions("threshold")
        assert len(versions) == 4 and first.op_store.head() == 4
        assert versions[0].version == str(second.pipeline_versions("train_all")["threshold"])


def test_gc_on_a_bucket_removes_the_blob_of_a_save_that_never_committed_and_keeps_what_loads(bucket, lineage_app):
    url = f"s3://{bucket}/gc"
    with Chariots(lineage_app.pipelines(), path=url) as app:
        for _ in range(2):  # two versions of each op: the older ones stay referenced too
            app.call_pipeline("train_all", lineage_app.DATA)
            app.save_pipeline("train_all")
        kept = {blob.path for blob in app.saver.blobs("ops")}
        # What a save that stopped between its blobs and its commit leaves.
        app.saver.save("ops/threshold/never-committed", b"half a save")

        assert app.collect_garbage(older_than=3600).removed == ()  # too young to tell from a running save
        assert app.collect_garbage(older_than=0, dry_run=True).blobs == ("ops/threshold/never-committed",)
        report = app.collect_garbage(older_than=0)

        assert report.blobs == ("ops/threshold/never-committed",) and report.freed_bytes == len(b"half a save")
        assert {blob.path for blob in app.saver.blobs("ops")} == kept == set(app.op_store.referenced_blobs())
    with Chariots(lineage_app.pipelines(), path=url) as again:
        again.load_pipeline("predict")
        assert again.call_pipeline("predict", lineage_app.DATA).value == [False, False, False, True]


@pytest.mark.slow
def test_two_processes_follow_the_lineage_rules(bucket):
    url = f"s3://{bucket}/shared"

    assert _run_app(url, "train_all") == {"saved": "train_all"}
    assert _run_app(url, "predict") == {"value": [False, False, False, True]}

    # Retraining the MAJOR upstream op alone makes the saved model downstream stale.
    assert _run_app(url, "train_center") == {"saved": "train_center"}
    refused = _run_app(url, "predict")
    assert refused["error"] == VersionError.__name__
    assert "'center' -> 'threshold'" in refused["message"]

    # Retraining both makes the pipeline loadable again.
    assert _run_app(url, "train_all") == {"saved": "train_all"}
    assert _run_app(url, "predict") == {"value": [False, False, False, True]}


@pytest.mark.slow
def test_processes_saving_and_loading_at_once_read_one_snapshot_and_lose_nothing(bucket, s3_endpoint):
    """``benchmarks/probe_object_snapshots.py``, short: 4 processes x 12 saves and loads."""
    spec = importlib.util.spec_from_file_location(
        "probe_object_snapshots", HERE.parents[2] / "benchmarks" / "probe_object_snapshots.py"
    )
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)

    counts = probe.run(f"s3://{bucket}/snapshots", processes=4, rounds=12, endpoint_url=s3_endpoint)

    assert counts["first_failures"] == []
    assert {
        name: counts[name] for name in ("failed_loads", "mixed_loads", "lost", "phantom", "bad_links")
    } == dict.fromkeys(("failed_loads", "mixed_loads", "lost", "phantom", "bad_links"), 0)
    assert counts["saves"] == counts["loads"] == counts["deployments"] == 48
    assert counts["commits"] == counts["saves"] + counts["deployments"]  # a load records its deployment


def test_stores_on_one_bucket_see_each_others_jobs(bucket, s3_endpoint):
    url = f"s3://{bucket}/jobs"
    first = ObjectOpStore(url, endpoint_url=s3_endpoint)
    second = ObjectOpStore(url, endpoint_url=s3_endpoint)
    first.put_job(JobRecord("j", "p", "queued", 1.0, 1.0))
    assert second.get_job("j").status == "queued"
    second.put_job(JobRecord("j", "p", "done", 1.0, 2.0))
    assert first.get_job("j").status == "done"
    assert [job.status for job in first.jobs()] == ["done"]


def test_a_missing_bucket_is_a_store_error_that_says_what_to_check(s3_endpoint):
    store = ObjectOpStore("s3://no-such-bucket-here/x", endpoint_url=s3_endpoint)
    with pytest.raises(StoreError, match="no-such-bucket-here.*Check that the bucket exists"):
        store.put_job(JobRecord("j", "p", "queued", 1.0, 1.0))
    with pytest.raises(StoreError, match="no-such-bucket-here.*Check that the bucket exists"):
        store.commit(Commit())


def _commit_in_child(store: ObjectOpStore, queue) -> None:
    try:
        versions = [record.version for record in store.op_versions("model")]
        store.commit(Commit((OpVersionRecord("model", "v2", "code", "train", 2.0, "ops/model/v2", "0" * 64, 1),)))
        queue.put(versions)
    except Exception as exc:  # noqa: BLE001 -- reported to the parent, which asserts on it
        queue.put(repr(exc))


def test_a_store_inherited_through_fork_opens_its_own_connection(bucket, s3_endpoint):
    import multiprocessing

    store = ObjectOpStore(f"s3://{bucket}/forked", endpoint_url=s3_endpoint)
    store.commit(Commit((OpVersionRecord("model", "v1", "code", "train", 1.0, "ops/model/v1", "0" * 64, 1),)))
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_commit_in_child, args=(store, queue))
    child.start()
    assert queue.get(timeout=60) == ["v1"]
    child.join(timeout=60)
    assert [record.version for record in store.op_versions("model")] == ["v2", "v1"]


def test_a_pickled_store_reopens_the_bucket_in_another_process(bucket, s3_endpoint, tmp_path):
    store = ObjectOpStore(f"s3://{bucket}/pickled", endpoint_url=s3_endpoint)
    record = OpVersionRecord("model", "v1", "code", "train", 1.0, "ops/model/v1", "0" * 64, 1)
    store.commit(Commit((record,)))
    copy = pickle.loads(pickle.dumps(store))
    assert copy.url == store.url and copy.op_versions("model") == [record]

    pickled = tmp_path / "store.pickle"
    pickled.write_bytes(pickle.dumps(store))
    script = "import pickle, sys; store = pickle.load(open(sys.argv[1], 'rb')); print([r.version for r in store.op_versions('model')])"
    done = subprocess.run(
        [sys.executable, "-c", script, str(pickled)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['v1']"
