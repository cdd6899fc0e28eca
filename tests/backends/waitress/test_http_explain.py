"""``why_stale`` and ``status`` over HTTP: the client answers what the app answers, and bad
requests are refused with the reason."""

from __future__ import annotations

import inspect

import pytest
from chariots_test_explain import iris_pipelines, train

from chariots_core import Chariots
from chariots_core.errors import ConfigError, UnknownPipelineError
from chariots_core.op_store.explain import Staleness
from chariots_waitress import PipelinesClient


@pytest.mark.parametrize("method", ["why_stale", "status"])
def test_client_methods_have_the_apps_signatures(method):
    assert inspect.signature(getattr(PipelinesClient, method)) == inspect.signature(getattr(Chariots, method))


@pytest.fixture
def stale_app():
    with Chariots(list(iris_pipelines()), op_store="memory", saver="memory") as app:
        train(app, "train_iris")
        app.load_pipeline("pred_iris")
        train(app, "train_pca")
        yield app


@pytest.fixture
def remote(stale_app, start_server):
    with PipelinesClient(start_server(stale_app).url, timeout=30) as client:
        yield client


def without_time(status):
    return {key: value for key, value in status.items() if key != "generated_at"}


def test_why_stale_over_http_is_the_apps(stale_app, remote):
    here, there = stale_app.why_stale("pred_iris"), remote.why_stale("pred_iris")
    assert isinstance(there, Staleness) and there == here and there.stale
    assert there.text == here.text
    assert not remote.why_stale("train_iris").stale
    with pytest.raises(UnknownPipelineError, match="no pipeline 'nope'"):
        remote.why_stale("nope")


def test_status_over_http_is_the_apps(stale_app, remote):
    there = remote.status()
    assert without_time(there) == without_time(stale_app.status())
    pred = {pipeline["name"]: pipeline for pipeline in there["pipelines"]}["pred_iris"]
    assert pred["stale"][0]["fix"] == "train_iris"
    assert remote.status(limit=0)["jobs"] == []
    with pytest.raises(ConfigError, match="'limit' must be None or a number >= 0"):
        remote.status(-1)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/status?limit=x", "'limit' must be a number >= 0 (got 'x')"),
        ("/status?limit=-1", "'limit' must be a number >= 0 (got '-1')"),
        ("/status?jobs=3", "unknown parameter(s) 'jobs' in the query of /status; expected limit"),
        ("/status?limit=%ff", "the query string is not UTF-8"),
    ],
)
def test_bad_status_queries_are_refused_with_the_reason(stale_app, start_server, send, path, message):
    answer = send(start_server(stale_app).url, "GET", path)
    assert answer.status == 400
    assert answer.json["error"]["message"] == message


def test_the_new_routes_are_read_only(stale_app, start_server, send):
    url = start_server(stale_app).url
    assert send(url, "POST", "/status").status == 405
    answer = send(url, "POST", "/pipelines/pred_iris/why_stale")
    assert answer.status == 405 and answer.headers["allow"] == "GET"
