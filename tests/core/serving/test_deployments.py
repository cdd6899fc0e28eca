"""Deployments through the app's public API: every load recorded, rollbacks, atomic swaps."""

from __future__ import annotations

import os
import socket
import threading

import pytest
from chariots_test_deploy import chain_pipelines, remember_pipelines, train_and_save, train_chain

from chariots_core import Chariots, MemoryOpStore, Node, Pipeline, VersionedField, VersionType
from chariots_core.errors import ConfigError, NotSavedError, UnknownPipelineError, VersionError
from chariots_core.ml import BaseMLOp, MLMode
from chariots_core.op_store.records import Commit, JournalAppend
from chariots_core.serving.deployments import DeploymentRecord


def deploy_values(app, *values):
    """Train, save and load ``pred`` once per value; return the deployment of each load."""
    records = []
    for value in values:
        train_and_save(app, value)
        app.load_pipeline("pred")
        records.append(app.deployments("pred", limit=1)[0])
    return records


def test_every_load_is_recorded_newest_first_with_its_versions_and_process(app_for):
    app = app_for(remember_pipelines())
    first, second = deploy_values(app, "one", "two")

    history = app.deployments("pred")
    assert [record.deployment_id for record in history] == [second.deployment_id, first.deployment_id]
    assert {record.kind for record in history} == {"load"} and all(record.deployed for record in history)
    assert second.strategy == "latest" and second.reason is None and second.variants == ()
    assert (second.host, second.pid) == (socket.gethostname(), os.getpid())
    assert first.at <= second.at
    # The versions recorded are the ones served, as load_pipeline and the responses report them.
    response = app.call_pipeline("pred", 0)
    assert response.value == "two"
    assert second.versions == {"remember": str(response.versions["remember"])}
    assert len({record.deployment_id for record in history}) == 2 and len(first.deployment_id) == 12


def test_a_refused_load_is_recorded_with_its_reason_and_the_previous_models_keep_serving(app_for):
    app = app_for(chain_pipelines())
    train_chain(app, 10, 1)
    app.load_pipeline("pred_chain")
    served = app.call_pipeline("pred_chain", 0)
    train_and_save(app, 20, "train_offset")  # the model behind it is now stale

    with pytest.raises(VersionError):
        app.load_pipeline("pred_chain")

    refused, deployed = app.deployments("pred_chain")
    assert (refused.kind, refused.outcome, refused.strategy) == ("load", "refused", "latest")
    assert refused.reason.startswith("VersionError: ") and "'offset' -> 'remember'" in refused.reason
    assert refused.versions == {} and deployed.deployed
    assert app.call_pipeline("pred_chain", 0) == served


def test_a_load_of_a_pipeline_never_saved_is_recorded_as_refused(app_for):
    app = app_for(remember_pipelines())
    with pytest.raises(NotSavedError):
        app.load_pipeline("pred")
    [refused] = app.deployments("pred")
    assert refused.outcome == "refused" and refused.reason.startswith("NotSavedError: ")
    assert not app.is_pipeline_loaded("pred")


class CountingStore(MemoryOpStore):
    """A memory store that counts its commits."""

    def __init__(self):
        super().__init__()
        self.commits = 0

    def _commit(self, commit):
        self.commits += 1
        return super()._commit(commit)


def test_recording_a_deployment_costs_one_commit():
    store = CountingStore()
    with Chariots(remember_pipelines(), op_store=store, saver="memory") as app:
        train_and_save(app, "one")
        before = store.commits
        app.load_pipeline("pred")
        assert store.commits == before + 1
        with pytest.raises(NotSavedError):
            app.rollback("pred")  # nothing to roll back to: an argument error, not a deployment
        assert store.commits == before + 1
        train_and_save(app, "two")
        app.load_pipeline("pred")
        before = store.commits
        app.rollback("pred")
        assert store.commits == before + 1


def test_deployments_page_with_limit_and_before(app_for):
    app = app_for(remember_pipelines())
    records = deploy_values(app, 1, 2, 3, 4)[::-1]  # newest first
    ids = [record.deployment_id for record in records]

    assert [r.deployment_id for r in app.deployments("pred", limit=2)] == ids[:2]
    assert [r.deployment_id for r in app.deployments("pred", limit=2, before=ids[1])] == ids[2:]
    assert app.deployments("pred", before=ids[-1]) == []
    assert app.deployments("pred", limit=0, before=ids[0]) == []
    assert app.deployments("train") == []
    with pytest.raises(NotSavedError, match="has no deployment 'nope'"):
        app.deployments("pred", before="nope")
    with pytest.raises(ConfigError, match="'limit' must be"):
        app.deployments("pred", limit=-1)
    with pytest.raises(UnknownPipelineError):
        app.deployments("no_such_pipeline")


def test_rollback_goes_to_the_previous_deployment_and_a_second_one_comes_back(app_for):
    app = app_for(remember_pipelines())
    first, second, third = deploy_values(app, "one", "two", "three")

    back = app.rollback("pred")
    assert (back.kind, back.outcome, back.restores) == ("rollback", "deployed", second.deployment_id)
    assert back.versions == second.versions
    assert app.call_pipeline("pred", 0).value == "two"
    assert app.deployments("pred", limit=1) == [back]

    again = app.rollback("pred")  # like Heroku and Kubernetes: back to where the first one started
    assert again.restores == third.deployment_id and app.call_pipeline("pred", 0).value == "three"

    to_first = app.rollback("pred", to=first.deployment_id)
    assert to_first.restores == first.deployment_id and app.call_pipeline("pred", 0).value == "one"
    assert app.pipeline_versions("pred")["remember"] == app.call_pipeline("pred", 0).versions["remember"]


def test_rollback_skips_deployments_that_served_the_same_versions_and_refused_ones(app_for):
    app = app_for(chain_pipelines())
    train_chain(app, 10, 1)
    app.load_pipeline("pred_chain")
    first = app.deployments("pred_chain", limit=1)[0]
    train_chain(app, 20, 2)
    app.load_pipeline("pred_chain")
    app.load_pipeline("pred_chain")  # the same versions again
    train_and_save(app, 30, "train_offset")
    with pytest.raises(VersionError):
        app.load_pipeline("pred_chain")  # refused

    back = app.rollback("pred_chain")
    assert back.restores == first.deployment_id
    assert app.call_pipeline("pred_chain", 0).value == 11  # trained on 1 + the offset 10


def test_rollback_errors_name_what_to_do(app_for):
    app = app_for(remember_pipelines())
    with pytest.raises(NotSavedError, match="never deployed"):
        app.rollback("pred")
    (only,) = deploy_values(app, "one")
    with pytest.raises(NotSavedError, match="nothing to roll back to"):
        app.rollback("pred")
    with pytest.raises(NotSavedError, match="has no deployment 'cafe'"):
        app.rollback("pred", to="cafe")
    with pytest.raises(ConfigError, match="'to' must be None or a deployment id"):
        app.rollback("pred", to=3)
    assert app.rollback("pred", to=only.deployment_id).restores == only.deployment_id  # to the current one


def test_rollback_to_a_refused_deployment_is_an_error(app_for):
    app = app_for(remember_pipelines())
    with pytest.raises(NotSavedError):
        app.load_pipeline("pred")
    (refused,) = app.deployments("pred")
    deploy_values(app, "one")
    with pytest.raises(ConfigError, match="was refused"):
        app.rollback("pred", to=refused.deployment_id)


def test_a_new_app_rolls_back_from_the_stores_newest_deployment(tmp_path):
    with Chariots(remember_pipelines(), path=tmp_path) as app:
        first, _ = deploy_values(app, "one", "two")
    with Chariots(remember_pipelines(), path=tmp_path) as restarted:  # another process, as each CLI command
        back = restarted.rollback("pred")
        assert back.restores == first.deployment_id
        assert restarted.call_pipeline("pred", 0).value == "one"
        assert restarted.is_pipeline_loaded("pred")


class Code1(BaseMLOp):
    factor = VersionedField(1, VersionType.MAJOR)

    def fit(self, value):
        self._model = value

    def predict(self, _):
        return self._model


class Code2(Code1):
    factor = VersionedField(2, VersionType.MAJOR)


def code_pipelines(op_class):
    IN, OUT = "__pipeline_input__", "__pipeline_output__"
    train = Pipeline([Node(op_class(MLMode.FIT), input_nodes=[IN], name="model")], "train")
    pred = Pipeline([Node(op_class(MLMode.PREDICT), input_nodes=[IN], output_nodes=OUT, name="model")], "pred")
    return [train, pred]


def test_a_rollback_to_versions_the_running_code_cannot_load_is_refused_and_recorded(tmp_path):
    with Chariots(code_pipelines(Code1), path=tmp_path) as old_code:
        old, _ = deploy_values(old_code, "old", "older")
    with Chariots(code_pipelines(Code2), path=tmp_path) as new_code:
        deploy_values(new_code, "new")
        with pytest.raises(VersionError, match="made by other code"):
            new_code.rollback("pred", to=old.deployment_id)
        refused = new_code.deployments("pred", limit=1)[0]
        assert (refused.kind, refused.outcome, refused.restores) == ("rollback", "refused", old.deployment_id)
        assert refused.versions == old.versions  # what it tried
        assert new_code.call_pipeline("pred", 0).value == "new"


def test_a_rollback_whose_versions_are_gone_says_so():
    store = MemoryOpStore()
    with Chariots(remember_pipelines(), op_store=store, saver="memory") as app:
        first, _ = deploy_values(app, "one", "two")
    # Another app on a fresh store given the first one's history: the versions are not there.
    fresh = MemoryOpStore()
    fresh.commit(Commit(journal=[JournalAppend("pred", first)]))
    with Chariots(remember_pipelines(), op_store=fresh, saver="memory") as app:
        with pytest.raises(NotSavedError, match="no longer in the op store"):
            app.rollback("pred", to=first.deployment_id)


def test_calls_in_flight_finish_on_the_ops_they_started_with(app_for):
    app = app_for(remember_pipelines())
    deploy_values(app, "one", "two")
    answers = {}
    in_flight = threading.Thread(target=lambda: answers.setdefault("slow", app.call_pipeline("pred", {"pause": 0.5})))
    in_flight.start()
    threading.Event().wait(0.1)  # the slow call has read what it runs
    app.rollback("pred")
    assert app.call_pipeline("pred", 0).value == "one"
    in_flight.join()
    slow = answers["slow"]
    assert slow.value == "two"
    assert slow.versions["remember"] != app.call_pipeline("pred", 0).versions["remember"]


def test_deployment_records_read_back_equal_from_the_store(app_for):
    app = app_for(remember_pipelines())
    (record,) = deploy_values(app, {"nested": [1, 2]})
    again = app.op_store.journal(DeploymentRecord, "pred", limit=1)[0].record
    assert again == record
