"""Garbage collection through the app: what it removes, what it never touches, and when it refuses."""

from __future__ import annotations

import os
import time

import pytest
from chariots_test_ops import ScaleOp

from chariots_core import Chariots, DataSavingNode, InProcessWorkerPool, MemoryOpStore, Node, OpStore, Pipeline
from chariots_core.errors import ConfigError, StoreError
from chariots_core.ml import JSONSerializer

IN, OUT = "__pipeline_input__", "__pipeline_output__"


def scale(factor: int = 2) -> Pipeline:
    return Pipeline([Node(ScaleOp(factor), input_nodes=[IN], output_nodes=OUT)], "scale")


def dataset() -> Pipeline:
    return Pipeline([DataSavingNode(JSONSerializer(), "numbers.json", input_nodes=[IN], output_nodes=OUT)], "dataset")


def test_unreferenced_op_blobs_go_referenced_and_young_ones_stay(tmp_path):
    pytest.importorskip("chariots_lmdb")
    pytest.importorskip("chariots_fsspec")
    app = Chariots([scale()], path=tmp_path)
    app.save_pipeline("scale")
    (saved,) = [blob.path for blob in app.saver.blobs("ops")]
    app.saver.save("ops/scaleop/orphan-old", b"left by a save that never committed")
    app.saver.save("ops/scaleop/orphan-young", b"maybe a save in progress")
    two_hours_ago = time.time() - 7200
    for path in (saved, "ops/scaleop/orphan-old"):
        os.utime(tmp_path / "blobs" / path, (two_hours_ago, two_hours_ago))

    dry = app.collect_garbage(older_than=3600, dry_run=True)
    assert dry.blobs == ("ops/scaleop/orphan-old",) and dry.dry_run
    assert app.saver.exists("ops/scaleop/orphan-old")

    report = app.collect_garbage(older_than=3600)

    assert report.blobs == ("ops/scaleop/orphan-old",) and report.freed_bytes == len(b"left by a save that never committed")
    assert sorted(blob.path for blob in app.saver.blobs()) == sorted([saved, "ops/scaleop/orphan-young"])
    app.load_pipeline("scale")  # what the record names is intact
    app.close()


def test_results_of_recorded_jobs_stay_and_orphan_results_go(app_for):
    app = app_for([scale()], worker_pool=InProcessWorkerPool())
    job = app.call_pipeline("scale", [1, 2], use_worker=True)
    assert app.worker_pool.wait(job.job_id, timeout=30).value == [2, 4]
    app.saver.save("jobs/never-recorded", b"result of a job whose record was lost")

    report = app.collect_garbage(older_than=0)

    assert report.blobs == ("jobs/never-recorded",)
    assert app.fetch_job(job.job_id).value == [2, 4]


def test_datasets_and_other_files_are_never_collected(app_for):
    app = app_for([dataset()])
    app.call_pipeline("dataset", [1])
    app.saver.save("data/dropped/by/someone.csv", b"a,b\n")  # external, never recorded
    app.saver.save("elsewhere/file", b"not the app's")

    assert app.collect_garbage(older_than=0).removed == ()
    assert {blob.path for blob in app.saver.blobs()} == {"data/numbers.json", "data/dropped/by/someone.csv", "elsewhere/file"}


def test_blobs_another_store_references_are_kept(app_for):
    app = app_for([scale()])
    other = Chariots([scale(3)], op_store="memory", saver=app.saver)  # e.g. the CLI's holding store
    other.save_pipeline("scale")
    (theirs,) = [blob.path for blob in app.saver.blobs("ops")]

    assert app.collect_garbage(older_than=0, also_referenced_by=[other.op_store]).removed == ()
    assert app.collect_garbage(older_than=0).blobs == (theirs,)  # without it, they look like debris


class CannotList(MemoryOpStore):
    """A backend that does not implement the garbage collection hook."""

    referenced_blobs = OpStore.referenced_blobs


def test_a_store_that_cannot_list_its_references_stops_gc_before_anything_goes():
    app = Chariots([scale()], op_store=CannotList(), saver="memory")
    app.saver.save("ops/scaleop/orphan", b"x")

    with pytest.raises(StoreError, match="cannot list the blobs its records reference.*must implement OpStore.referenced_blobs"):
        app.collect_garbage(older_than=0)

    assert app.saver.exists("ops/scaleop/orphan")


@pytest.mark.parametrize("older_than", [-1, float("nan"), "1h", None, True])
def test_older_than_must_be_seconds(older_than):
    app = Chariots([scale()], op_store="memory", saver="memory")
    with pytest.raises(ConfigError, match="'older_than' must be a number of seconds >= 0"):
        app.collect_garbage(older_than=older_than)
