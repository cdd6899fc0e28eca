"""The operating routes on the wire: deployments, rollback, split, predictions and the call key."""

from __future__ import annotations

import pytest
from chariots_test_deploy import remember_pipelines, train_and_save

from chariots_core import Chariots
from chariots_core.serving.prediction_log import PredictionLog


@pytest.fixture
def served(start_server, send):
    """An app serving the remember pipelines, ``pred`` logged and deployed twice ("a" then "b")."""
    log = PredictionLog("memory")
    app = Chariots(remember_pipelines(), op_store="memory", saver="memory", log_predictions=["pred"],
                   prediction_log=log)  # fmt: skip
    for value in ("a", "b"):
        train_and_save(app, value)
        app.load_pipeline("pred")
    server = start_server(app)

    def request(method, path, body=None):
        return send(server.url, method, path, body)

    yield app, request
    app.close()
    log.close()


def test_deployments_are_listed_as_json_records_and_paged_by_query(served):
    app, request = served
    answer = request("GET", "/pipelines/pred/deployments")
    assert answer.status == 200
    newest, oldest = answer.json["deployments"]
    assert newest["kind"] == "load" and newest["outcome"] == "deployed" and newest["variants"] == []
    assert set(newest) == {"deployment_id", "pipeline_name", "kind", "outcome", "at", "versions", "strategy",
                           "variants", "restores", "reason", "host", "pid"}  # fmt: skip
    assert request("GET", "/pipelines/pred/deployments?limit=1").json["deployments"] == [newest]
    assert request("GET", "/pipelines/pred/deployments?limit=none").json["deployments"] == [newest, oldest]
    before = request("GET", f"/pipelines/pred/deployments?before={newest['deployment_id']}")
    assert before.json["deployments"] == [oldest]


@pytest.mark.parametrize(
    "query, status, message",
    [
        ("limit=many", 400, "'limit' must be a whole number or 'none'"),
        ("limit=-1", 400, "'limit' must be None or a number >= 0"),
        ("since=1", 400, "unknown key(s) 'since'"),
        ("before=nope", 409, "has no deployment 'nope'"),
    ],
)
def test_bad_deployment_queries_are_refused(served, query, status, message):
    _, request = served
    answer = request("GET", f"/pipelines/pred/deployments?{query}")
    assert answer.status == status and message in answer.json["error"]["message"]


def test_rollback_and_split_answer_the_new_deployment(served):
    app, request = served
    back = request("POST", "/pipelines/pred/rollback", {"to": None})
    assert back.status == 200 and back.json["kind"] == "rollback"
    assert app.call_pipeline("pred", 0).value == "a"
    first = back.json["restores"]
    split = request("POST", "/pipelines/pred/split", {"variants": {"x": first, "y": "latest"}, "weights": None})
    assert split.status == 200 and [v["name"] for v in split.json["variants"]] == ["x", "y"]
    keyed = request("POST", "/pipelines/pred/main", {"pipeline_input": 0, "key": "user-7"})
    assert keyed.status == 200 and keyed.json["variant"] in ("x", "y")
    assert keyed.json["value"] == {"x": "a", "y": "b"}[keyed.json["variant"]]
    assert request("GET", "/pipelines/pred/rollback").status == 405
    bad = request("POST", "/pipelines/pred/split", {"variants": {"only": "serving"}})
    assert bad.status == 400 and bad.json["error"]["type"] == "ConfigError"
    unknown = request("POST", "/pipelines/pred/rollback", {"to": "cafe", "why": "because"})
    assert unknown.status == 400 and "unknown key(s) 'why'" in unknown.json["error"]["message"]
    bad_key = request("POST", "/pipelines/pred/main", {"pipeline_input": 0, "key": 7})
    assert bad_key.status == 400 and "'key' must be None or a string" in bad_key.json["error"]["message"]


def test_predictions_are_read_with_since_and_limit(served):
    app, request = served
    for number in range(3):
        request("POST", "/pipelines/pred/main", {"pipeline_input": number})
    logged = request("GET", "/pipelines/pred/predictions?limit=2").json["predictions"]
    assert [record["input"] for record in logged] == [2, 1] and logged[0]["output"] == "b"
    since = logged[1]["at"]
    assert [r["input"] for r in request("GET", f"/pipelines/pred/predictions?since={since}").json["predictions"]] == [2, 1]
    assert request("GET", "/pipelines/pred/predictions?since=soon").status == 400
    assert request("GET", "/pipelines/train/predictions").status == 400  # not logged
