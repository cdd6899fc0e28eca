"""PipelinesClient against a live server behaves like the in-process Chariots app."""

from __future__ import annotations

import inspect
import time
from typing import Any

import pytest

from chariots_core import Chariots, JobStatus, PipelineResponse, Version, VersionError
from chariots_core.errors import ChariotsError, NodeExecutionError, describe_failure
from chariots_waitress import PipelinesClient

API = [
    "call_pipeline",
    "save_pipeline",
    "load_pipeline",
    "pipeline_versions",
    "fetch_job",
    "is_pipeline_loaded",
    "available_pipelines",
    "health_check",
    "why_stale",
    "status",
    "deployments",
    "rollback",
    "split",
    "predictions",
]


@pytest.mark.parametrize("method", API)
def test_client_methods_have_the_apps_signatures(method: str) -> None:
    assert inspect.signature(getattr(PipelinesClient, method)) == inspect.signature(getattr(Chariots, method))


def test_the_client_has_exactly_the_apps_client_methods() -> None:
    public = {name for name, member in vars(PipelinesClient).items() if callable(member) and not name.startswith("_")}
    assert public == {*API, "close"}
    assert all(callable(getattr(Chariots, name, None)) for name in public)


class Recorder:
    """Runs steps against an API and records results with run-specific details abstracted.

    Versions become ``v0, v1, ...`` in order of first appearance (training ids are random,
    so two apps never share trained versions, but they must share the pattern); job ids
    become a marker. VersionError messages quote versions, so only their class is kept.
    Errors are recorded as :func:`describe_failure` sees them: an op's own exception raised
    in process and the NodeExecutionError standing for it over HTTP read the same.
    """

    def __init__(self) -> None:
        self.log: list[Any] = []
        self._versions: dict[Version, str] = {}

    def step(self, label: str, call: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            result = call(*args, **kwargs)
        except Exception as exc:
            failure = describe_failure(exc)
            message = None if isinstance(exc, VersionError) else failure["message"]
            self.log.append((label, failure["type"], failure["node"], message))
            return None
        self.log.append((label, self._canonical(result)))
        return result

    def _canonical(self, value: Any) -> Any:
        if isinstance(value, Version):
            return self._versions.setdefault(value, f"v{len(self._versions)}")
        if isinstance(value, PipelineResponse):
            return ("response", self._canonical(value.value), self._canonical(value.versions),
                    value.job_id is not None, value.job_status, value.error)  # fmt: skip
        if isinstance(value, dict):
            return {key: self._canonical(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._canonical(item) for item in value]
        return value


def wait_for_job(api: Any, job_id: str) -> PipelineResponse:
    deadline = time.monotonic() + 30
    while True:
        response = api.fetch_job(job_id)
        if response.job_status in (JobStatus.done, JobStatus.failed) or time.monotonic() > deadline:
            return response
        time.sleep(0.01)


def scenario(api: Any, kit: Any) -> list[Any]:
    """Everything a user does with an app, errors included, in the seed's iris order."""
    train_centerer, train_model, pred = kit.iris_pipelines()
    rec = Recorder()
    rec.step("available", api.available_pipelines)
    rec.step("health", api.health_check)
    rec.step("loaded before", api.is_pipeline_loaded, pred)
    rec.step("versions before", api.pipeline_versions, "pred")
    rec.step("predict unfitted", api.call_pipeline, pred, kit.query)
    rec.step("load unsaved", api.load_pipeline, "pred")
    rec.step("unknown pipeline", api.call_pipeline, "no_such_pipeline", 1)
    rec.step("bad strategy", api.load_pipeline, pred, strategy="newest")
    rec.step("train centerer", api.call_pipeline, train_centerer)
    rec.step("save centerer", api.save_pipeline, train_centerer)
    rec.step("load train_model", api.load_pipeline, train_model)
    rec.step("train model", api.call_pipeline, "train_model")
    rec.step("save model", api.save_pipeline, "train_model")
    rec.step("load pred", api.load_pipeline, pred)
    rec.step("predict", api.call_pipeline, pred, kit.query)
    rec.step("versions after load", api.pipeline_versions, pred)
    rec.step("loaded after", api.is_pipeline_loaded, "pred")
    rec.step("retrain centerer", api.call_pipeline, train_centerer)
    rec.step("save new centerer", api.save_pipeline, train_centerer)
    rec.step("load stale pred", api.load_pipeline, pred)
    rec.step("predict after refused load", api.call_pipeline, pred, kit.query)
    rec.step("versions after refused load", api.pipeline_versions, pred)
    rec.step("load latest compatible", api.load_pipeline, pred, "latest_compatible")
    rec.step("add", api.call_pipeline, "add", 41, use_worker=False)
    rec.step("add fails", api.call_pipeline, "add", "forty-one")
    queued = rec.step("add async", api.call_pipeline, "add", 1, use_worker=True)
    rec.step("fetch async", wait_for_job, api, queued.job_id)
    failing = rec.step("add async fails", api.call_pipeline, "add", [], use_worker=True)
    rec.step("fetch failed job", wait_for_job, api, failing.job_id)
    rec.step("fetch unknown job", api.fetch_job, "0123abcd", "add")
    rec.step("health after", api.health_check)
    return rec.log


def test_the_same_scenario_gives_identical_results_in_process_and_over_http(kit, client) -> None:
    with kit.make_app(workers=1) as local_app:
        in_process = scenario(local_app, kit)
    over_http = scenario(client, kit)
    assert over_http == in_process
    # The scenario is not vacuous: it predicted, and it met each kind of failure.
    steps = dict((entry[0], entry[1:]) for entry in in_process)
    assert steps["predict"][0][1] == kit.expected
    assert steps["load stale pred"][0] == "VersionError"
    assert steps["load unsaved"][0] == "NotSavedError"
    assert steps["predict unfitted"][:2] == ("NotFittedError", "centerer")
    assert steps["add fails"][:2] == ("TypeError", "addone")
    assert steps["fetch async"][0][1] == 2


def test_remote_errors_keep_the_servers_class_and_message(app, client, kit) -> None:
    train_centerer, train_model, pred = kit.iris_pipelines()
    client.call_pipeline(train_centerer)
    client.save_pipeline(train_centerer)
    client.load_pipeline(train_model)
    client.call_pipeline(train_model)
    client.save_pipeline(train_model)
    client.load_pipeline(pred)
    client.call_pipeline(train_centerer)
    client.save_pipeline(train_centerer)

    with pytest.raises(VersionError) as remote:
        client.load_pipeline(pred)
    with pytest.raises(VersionError) as local:
        app.load_pipeline(pred)
    assert str(remote.value) == str(local.value)
    assert "centerer" in str(remote.value)
    # TypeError still catches it, as in chariots 0.2.
    with pytest.raises(TypeError):
        client.load_pipeline(pred)


def test_an_ops_own_exception_crosses_http_as_node_execution_error_keeping_its_type(app, client) -> None:
    with pytest.raises(TypeError) as local:
        app.call_pipeline("add", "forty-one")
    with pytest.raises(NodeExecutionError) as remote:
        client.call_pipeline("add", "forty-one")
    error = remote.value
    assert (error.error_type, error.node_name) == ("TypeError", "addone")
    assert str(error) == f"TypeError: {local.value} (in node 'addone' of pipeline 'add')"
    assert describe_failure(error) == describe_failure(local.value)
    assert isinstance(error, ChariotsError)


def test_iris_train_save_load_predict_over_http(client, kit) -> None:
    train_centerer, train_model, pred = kit.iris_pipelines()
    assert client.call_pipeline(train_centerer).value is None
    client.save_pipeline(train_centerer)
    client.load_pipeline(train_model)
    client.call_pipeline(train_model)
    client.save_pipeline(train_model)
    loaded = client.load_pipeline(pred)
    response = client.call_pipeline(pred, kit.query)

    assert response.value == kit.expected
    assert response.versions == loaded == client.pipeline_versions(pred)
    assert set(loaded) == {"centerer", "nearestmean"}
    assert client.is_pipeline_loaded(pred)
    assert client.health_check()["loaded"] == ["pred", "train_model"]


def ops_scenario(api: Any, kit: Any) -> list[Any]:
    """Deploying, rolling back, splitting and reading the logs, errors included."""
    train, pred = kit.pair_pipelines()
    rec = Recorder()
    ids: dict[str, str] = {}

    def deployment(label: str, record: Any) -> Any:
        """A deployment as the record shows it, its id and time abstracted."""
        if record is None:
            return None
        ids.setdefault(record.deployment_id, f"d{len(ids)}")
        return (ids[record.deployment_id], record.kind, record.outcome, record.strategy, len(record.versions),
                [(v.name, v.share, v.shadow) for v in record.variants], ids.get(record.restores, record.restores),
                (record.reason or "").split(":")[0])  # fmt: skip

    def history() -> list[Any]:
        return [deployment("history", record) for record in api.deployments(pred)]

    rec.step("history empty", history)
    rec.step("load unsaved", api.load_pipeline, pred)
    for value in ("a", "b"):
        rec.step(f"train {value}", api.call_pipeline, train, value)
        rec.step(f"save {value}", api.save_pipeline, train)
        rec.step(f"load {value}", api.load_pipeline, pred)
    rec.step("history", history)
    rec.step("rollback", lambda: deployment("rollback", api.rollback(pred)))
    rec.step("predict after rollback", api.call_pipeline, pred, 1)
    rec.step("rollback unknown", api.rollback, pred, "cafe")
    first = api.deployments(pred)[-2].deployment_id
    rec.step("split", lambda: deployment("split", api.split(pred, {"old": first, "new": "latest"}, {"old": 1, "new": 3})))
    rec.step("keyed calls", lambda: [api.call_pipeline(pred, 1, key=f"k{n}").variant for n in range(30)])
    rec.step("bad key", api.call_pipeline, pred, 1, False, 7)
    rec.step("bad split", api.split, pred, {"only": "serving"})
    rec.step("bad weights", api.split, pred, {"a": "serving", "b": "latest"}, {"a": -1, "b": 1})
    rec.step("split history", lambda: history()[:2])
    rec.step("paged", lambda: [deployment("page", r) for r in api.deployments(pred, 2, api.deployments(pred)[1].deployment_id)])
    rec.step("bad before", api.deployments, pred, None, "nope")
    rec.step("logged", lambda: [(p.variant, p.input, p.output, p.shadow) for p in api.predictions(pred, limit=5)])
    rec.step("logged since", lambda: len(api.predictions(pred, since=time.time() + 3600)))
    rec.step("bad limit", api.predictions, pred, None, -1)
    rec.step("no log", api.predictions, "add")
    rec.step("unknown pipeline", api.deployments, "no_such_pipeline")
    return rec.log


def test_deployments_rollback_splits_and_predictions_read_the_same_in_process_and_over_http(kit, start_server) -> None:
    def make() -> Chariots:
        from chariots_core.serving.prediction_log import PredictionLog

        pipelines = [kit.add_pipeline(), *kit.pair_pipelines()]
        return Chariots(pipelines, op_store="memory", saver="memory", log_predictions=["pred_pair"],
                        prediction_log=PredictionLog("memory"))  # fmt: skip

    with make() as local_app:
        in_process = ops_scenario(local_app, kit)
    with make() as served_app, PipelinesClient(start_server(served_app).url, timeout=30) as client:
        over_http = ops_scenario(client, kit)
    assert over_http == in_process
    steps = dict((entry[0], entry[1:]) for entry in in_process)
    assert steps["rollback"][0][1:3] == ("rollback", "deployed")
    assert set(steps["keyed calls"][0]) == {"old", "new"}
    assert steps["load unsaved"][0] == "NotSavedError" and steps["bad key"][0] == "ConfigError"
    assert steps["bad before"][0] == "NotSavedError" and steps["unknown pipeline"][0] == "UnknownPipelineError"
    assert steps["no log"][0] == "ConfigError" and steps["bad limit"][0] == "ConfigError"
    assert len(steps["logged"][0]) == 5
