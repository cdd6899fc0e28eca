"""``app.status()``: what each pipeline serves, the newest saved versions, stale edges with their
why and fix, and the newest jobs, as one JSON-safe dict (on memory and LMDB stores)."""

from __future__ import annotations

import json

import pytest
from chariots_test_explain import iris_pipelines, pca_class, train

from chariots_core import JobStatus
from chariots_core.errors import ConfigError
from chariots_core.op_store.explain import short
from chariots_core.serving.status import page_status
from chariots_core.serving.workers import InProcessWorkerPool
from chariots_core.show import render_status_page


@pytest.fixture
def make_app(make_shared_app):
    return make_shared_app


def by_name(status):
    return {pipeline["name"]: pipeline for pipeline in status["pipelines"]}


def test_a_fresh_app_reports_every_pipeline_unloaded_and_nothing_saved(make_app):
    app = make_app(list(iris_pipelines()))
    status = app.status()
    assert [pipeline["name"] for pipeline in status["pipelines"]] == ["train_iris", "train_pca", "pred_iris"]
    assert status["compatibility"] == "major" and status["jobs"] == []
    pred = by_name(status)["pred_iris"]
    assert pred["loaded"] is False and pred["stale"] == []
    assert [(op["op"], op["serving"], op["newest"], op["why"]) for op in pred["ops"]] == [
        ("irispca", None, None, "it only predicts and was never saved"),
        ("irisrf", None, None, "it only predicts and was never saved"),
    ]


def test_status_follows_training_loading_and_a_stale_retrain(make_app):
    app = make_app(list(iris_pipelines()))
    train(app, "train_iris")
    app.load_pipeline("pred_iris")
    serving = app.pipeline_versions("pred_iris")
    pred = by_name(app.status())["pred_iris"]
    assert pred["loaded"] is True and pred["stale"] == []
    for row in pred["ops"]:
        record = app.op_store.op_versions(row["op"], limit=1)[0]
        assert row["serving"] == short(serving[row["op"]]) == row["newest"] == short(record.version)
        assert (row["newest_saved_at"], row["newest_pipeline"], row["why"]) == (record.saved_at, "train_iris", None)

    train(app, "train_pca")
    status = app.status()
    pred = by_name(status)["pred_iris"]
    pca = pred["ops"][0]
    assert pca["serving"] == short(serving["irispca"]) != pca["newest"]  # still serves the old pair
    assert pca["newest_pipeline"] == "train_pca"
    [edge] = pred["stale"]
    expected = app.why_stale("pred_iris").edges[0]
    assert (edge["upstream"], edge["downstream"], edge["why"], edge["fix"]) == ("irispca", "irisrf", expected.why, "train_iris")
    assert edge["change"]["retrained_by"] == "train_pca"
    assert by_name(status)["train_iris"]["stale"] == []  # it retrains both: nothing to refuse
    assert json.loads(json.dumps(status)) == status  # JSON-safe as it is


def test_a_code_change_shows_on_the_op_that_cannot_load(make_app):
    train(make_app(list(iris_pipelines())), "train_iris")
    app = make_app(list(iris_pipelines(pca_class(n_components=4))))
    pca = by_name(app.status())["pred_iris"]["ops"][0]
    assert pca["newest"] is None and pca["fix"] == "train_iris"
    assert pca["why"].startswith("irispca.model_parameters['n_components'] (MAJOR) changed 2 → 4 since its newest saved version")


def test_jobs_are_listed_newest_first_up_to_the_limit_with_their_errors(make_app):
    pool = InProcessWorkerPool(n_workers=1)
    app = make_app(list(iris_pipelines()), worker_pool=pool)
    try:
        failed = app.call_pipeline("pred_iris", [1.0], use_worker=True).job_id  # nothing loaded: it fails
        pool.wait(failed)
        done = app.call_pipeline("train_iris", use_worker=True).job_id
        pool.wait(done)
        jobs = app.status()["jobs"]
        assert [(job["job_id"], job["pipeline"], job["status"]) for job in jobs] == [
            (done, "train_iris", "done"), (failed, "pred_iris", "failed"),
        ]  # fmt: skip
        assert jobs[0]["error"] is None
        assert jobs[1]["error"].startswith("NotFittedError in irispca: op 'irispca' has no model to predict with")
        assert [job["job_id"] for job in app.status(limit=1)["jobs"]] == [done]
        assert app.status(limit=0)["jobs"] == []
        assert app.fetch_job(failed).job_status is JobStatus.failed
    finally:
        pool.close()


@pytest.mark.parametrize("limit", [-1, 1.5, "3", True])
def test_a_limit_that_is_not_a_count_is_refused(make_app, limit):
    app = make_app(list(iris_pipelines()))
    with pytest.raises(ConfigError, match="'limit' must be None or a number >= 0"):
        app.status(limit)


def test_the_page_draws_the_status_with_each_dag(make_app):
    app = make_app(list(iris_pipelines()))
    train(app, "train_iris")
    app.load_pipeline("pred_iris")
    train(app, "train_pca")
    status = page_status(app)
    assert status["title"] == "Chariots: train_iris, train_pca, pred_iris"
    assert all(pipeline["graph"].title == pipeline["name"] for pipeline in status["pipelines"])
    html = render_status_page(status)
    assert "1 stale edge" in html and "Run and save <code>train_iris</code>" in html
    assert "was retrained by pipeline &#x27;train_pca&#x27;" in html
