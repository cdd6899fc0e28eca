"""ObjectOpStore on S3 for real: s3fs against a local moto server, and two processes sharing a bucket."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")
pytest.importorskip("lmdb")

from chariots_core import Chariots, VersionError  # noqa: E402
from chariots_core.errors import StoreError  # noqa: E402
from chariots_core.op_store.store import JobRecord  # noqa: E402
from chariots_fsspec.object_store import ObjectOpStore  # noqa: E402

APP_SCRIPT = pathlib.Path(__file__).with_name("objectstore_lineage_app.py")


def _run_app(url: str, command: str, cache_home: pathlib.Path) -> dict:
    """Run one command of the lineage app in a fresh process with its own local cache."""
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home)}
    done = subprocess.run(
        [sys.executable, str(APP_SCRIPT), url, command], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_chariots_on_an_s3_url_uses_the_object_store(bucket, lineage_app, tmp_path, monkeypatch):
    pytest.importorskip("chariots_fsspec").FsspecSaver
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with Chariots(lineage_app.pipelines(), path=f"s3://{bucket}/app") as app:
        assert isinstance(app.op_store, ObjectOpStore)
        app.call_pipeline("train_all", lineage_app.DATA)
        app.save_pipeline("train_all")
        app.load_pipeline("predict")
        assert app.call_pipeline("predict", lineage_app.DATA).value == [False, False, False, True]
    # The default local index lives under XDG_CACHE_HOME.
    assert any((tmp_path / "cache" / "chariots" / "object-index").iterdir())


@pytest.mark.slow
def test_two_processes_with_separate_caches_follow_the_lineage_rules(bucket, tmp_path):
    pytest.importorskip("chariots_fsspec").FsspecSaver
    url = f"s3://{bucket}/shared"
    trainer_cache, server_cache = tmp_path / "trainer", tmp_path / "server"

    assert _run_app(url, "train_all", trainer_cache) == {"saved": "train_all"}
    assert _run_app(url, "predict", server_cache) == {"value": [False, False, False, True]}

    # Retraining the MAJOR upstream op alone makes the saved model downstream stale.
    assert _run_app(url, "train_center", trainer_cache) == {"saved": "train_center"}
    refused = _run_app(url, "predict", server_cache)
    assert refused["error"] == VersionError.__name__
    assert "'center' -> 'threshold'" in refused["message"]

    # Retraining both makes the pipeline loadable again, from the server's warm cache too.
    assert _run_app(url, "train_all", trainer_cache) == {"saved": "train_all"}
    assert _run_app(url, "predict", server_cache) == {"value": [False, False, False, True]}


def test_stores_on_one_bucket_see_each_others_records(bucket, s3_endpoint, tmp_path):
    url = f"s3://{bucket}/jobs"
    first = ObjectOpStore(url, cache_dir=tmp_path / "a", endpoint_url=s3_endpoint)
    second = ObjectOpStore(url, cache_dir=tmp_path / "b", endpoint_url=s3_endpoint)
    try:
        first.put_job(JobRecord("j", "p", "queued", 1.0, 1.0))
        assert second.get_job("j").status == "queued"
        second.put_job(JobRecord("j", "p", "done", 1.0, 2.0))
        assert first.get_job("j").status == "done"
        assert [job.status for job in first.jobs()] == ["done"]
    finally:
        first.close()
        second.close()


def test_a_missing_bucket_is_a_store_error_that_says_what_to_check(s3_endpoint, tmp_path):
    store = ObjectOpStore("s3://no-such-bucket-here/x", cache_dir=tmp_path / "c", endpoint_url=s3_endpoint)
    try:
        with pytest.raises(StoreError, match="no-such-bucket-here.*Check that the bucket exists"):
            store.put_job(JobRecord("j", "p", "queued", 1.0, 1.0))
    finally:
        store.close()



def test_a_pickled_store_reopens_the_bucket_in_another_process(bucket, s3_endpoint, tmp_path):
    import pickle

    from chariots_core.op_store.records import Commit, OpVersionRecord

    store = ObjectOpStore(f"s3://{bucket}/pickled", cache_dir=tmp_path / "parent", endpoint_url=s3_endpoint)
    record = OpVersionRecord("model", "v1", "code", "train", 1.0, "ops/model/v1", "0" * 64, 1)
    store.commit(Commit((record,)))
    copy = pickle.loads(pickle.dumps(store))
    assert (copy.url, copy.cache_dir) == (store.url, store.cache_dir)
    assert [r.version for r in copy.op_versions("model")] == ["v1"]
    copy.close()
    store.close()

    pickled = tmp_path / "store.pickle"
    pickled.write_bytes(pickle.dumps(store))
    script = "import pickle, sys; store = pickle.load(open(sys.argv[1], 'rb')); print([r.version for r in store.op_versions('model')])"
    done = subprocess.run([sys.executable, "-c", script, str(pickled)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['v1']"
