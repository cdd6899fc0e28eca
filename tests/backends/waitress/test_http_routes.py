"""Every route of the WSGI app, spoken to directly over HTTP (no PipelinesClient)."""

from __future__ import annotations

import time

import pytest

from chariots_core import Version


def test_health_check_and_available_pipelines(raw, app) -> None:
    health = raw("GET", "/health_check")
    assert health.status == 200
    assert health.json == {"status": "ok", "pipelines": app.available_pipelines(), "loaded": []}
    available = raw("GET", "/available_pipelines")
    assert available.status == 200
    assert available.json == {"pipelines": ["train_centerer", "train_model", "pred", "add", "train_pair", "pred_pair"]}


def test_main_runs_the_pipeline_and_answers_a_pipeline_response(raw, app) -> None:
    answer = raw("POST", "/pipelines/add/main", {"pipeline_input": 1})
    assert answer.status == 200
    assert answer.json == {
        "value": 2,
        "versions": {"addone": str(app.pipeline_versions("add")["addone"])},
        "job_id": None,
        "job_status": "done",  # as chariots 0.2 answered a synchronous call
        "error": None,
    }


@pytest.mark.parametrize("path", ["/pipelines/train_centerer/main", "/pipelines/train_centerer/main/"])
def test_main_accepts_an_empty_body_and_a_trailing_slash(raw, path: str) -> None:
    assert raw("POST", path).status == 200


def test_versions_save_load_and_pipeline_health_check(raw, app) -> None:
    assert raw("GET", "/pipelines/pred/health_check").json == {"pipeline": "pred", "is_loaded": False}
    before = raw("GET", "/pipelines/train_centerer/versions")
    assert before.status == 200
    assert {node: Version.parse(text) for node, text in before.json["versions"].items()} == app.pipeline_versions(
        "train_centerer"
    )

    assert raw("POST", "/pipelines/train_centerer/main").status == 200
    saved = raw("POST", "/pipelines/train_centerer/save")
    assert (saved.status, saved.json) == (200, {"pipeline": "train_centerer", "saved": True})

    loaded = raw("POST", "/pipelines/train_model/load", {"strategy": "latest_compatible"})
    assert loaded.status == 200
    assert loaded.json["versions"] == {"centerer": str(app.pipeline_versions("train_centerer")["centerer"])}
    assert raw("GET", "/pipelines/train_model/health_check").json == {"pipeline": "train_model", "is_loaded": True}
    assert app.is_pipeline_loaded("train_model")


def test_a_refused_load_answers_409_with_the_version_error(raw) -> None:
    # Train and load everything, then retrain the centerer: the saved model is now stale.
    for action in ("train_centerer/main", "train_centerer/save", "train_model/load", "train_model/main",
                   "train_model/save", "pred/load", "train_centerer/main", "train_centerer/save"):  # fmt: skip
        assert raw("POST", f"/pipelines/{action}").status == 200, action

    refused = raw("POST", "/pipelines/pred/load", {})
    assert refused.status == 409
    assert refused.json["error"]["type"] == "VersionError"
    assert "centerer" in refused.json["error"]["message"]


def test_load_of_a_never_saved_pipeline_answers_409(raw) -> None:
    answer = raw("POST", "/pipelines/pred/load")
    assert answer.status == 409
    assert answer.json["error"]["type"] == "NotSavedError"


def test_a_failing_op_answers_500_naming_the_node(raw) -> None:
    answer = raw("POST", "/pipelines/add/main", {"pipeline_input": "one"})
    assert answer.status == 500
    assert answer.json["error"]["type"] == "TypeError"  # the op's own exception
    assert answer.json["error"]["node"] == "addone"
    assert "(in node 'addone' of pipeline 'add')" in answer.json["error"]["message"]


def test_async_call_answers_202_and_both_fetch_routes_return_the_job(raw) -> None:
    queued = raw("POST", "/pipelines/add/main", {"pipeline_input": 9, "use_worker": True})
    assert queued.status == 202
    assert queued.json["job_status"] == "queued"
    job_id = queued.json["job_id"]

    deadline = time.monotonic() + 30
    while (fetched := raw("GET", f"/jobs/fetch/{job_id}")).json["job_status"] != "done":
        assert fetched.json["job_status"] in ("queued", "running")
        assert time.monotonic() < deadline, "the job never finished"
        time.sleep(0.01)
    assert fetched.status == 200
    assert fetched.json["value"] == 10
    from_body = raw("POST", "/jobs/fetch/", {"job_id": job_id, "pipeline": "add"})
    assert (from_body.status, from_body.json) == (200, fetched.json)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("GET", "/jobs/fetch/feedbeef", None), ("POST", "/jobs/fetch", {"job_id": "feedbeef"})],
)
def test_unknown_job_answers_404(raw, method: str, path: str, body) -> None:
    answer = raw(method, path, body)
    assert answer.status == 404
    assert answer.json["error"]["type"] == "JobNotFoundError"


def test_async_call_on_an_app_without_a_worker_pool_answers_503(kit, start_server, send) -> None:
    with kit.make_app() as no_pool_app:
        url = start_server(no_pool_app).url
        answer = send(url, "POST", "/pipelines/add/main", {"pipeline_input": 1, "use_worker": True})
    assert answer.status == 503
    assert answer.json["error"]["type"] == "WorkerError"
    assert "worker_pool" in answer.json["error"]["message"]


def test_every_route_of_the_table_is_documented_and_answers(raw) -> None:
    from chariots_waitress import wsgi

    for template, methods in wsgi.ROUTES.items():
        for method in methods:
            shown = template.replace("<pipeline_name>", "<name>")
            assert f"{method:<4} {shown}" in wsgi.__doc__, (method, template)
            path = template.replace("<pipeline_name>", "add").replace("<job_id>", "nope")
            answer = raw(method, path)
            assert answer.status != 405 and (answer.status != 404 or answer.json["error"]["type"] != "RequestError")


@pytest.mark.parametrize("with_c_encoder", [True, False])
def test_the_response_encoder_is_compact_strict_json_with_or_without_the_c_encoder(with_c_encoder: bool) -> None:
    import json
    import math

    from chariots_waitress.wsgi import json_encoder

    encode = json_encoder() if with_c_encoder else json_encoder(None)
    payload = {"value": [1, 2.5, 'é\n"', None, True, {"k": []}], "versions": {"a": "v_1"}, "job_id": None}
    assert encode(payload) == json.dumps(payload, separators=(",", ":"))
    for value in (math.nan, math.inf):
        with pytest.raises(ValueError):
            encode({"value": value})
