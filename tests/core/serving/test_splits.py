"""A/B and shadow splits through the app's public API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from chariots_test_deploy import Pause, chain_pipelines, remember_pipelines, train_and_save, train_chain
from chariots_test_processes import wait_until

from chariots_core import Chariots, InProcessWorkerPool, JobStatus, Node, Pipeline, SequentialRunner
from chariots_core.errors import ConfigError, NotSavedError, VersionError
from chariots_core.serving.prediction_log import PredictionLog
from chariots_core.serving.routes import Route, Variant
from chariots_core.serving.splits import ShadowRunner

SUPPORT = Path(__file__).resolve().parents[2] / "support"


def two_deployments(app):
    """Deploy ``pred`` trained on "a", then on "b"; return both deployment ids, oldest first."""
    ids = []
    for value in ("a", "b"):
        train_and_save(app, value)
        app.load_pipeline("pred")
        ids.append(app.deployments("pred", limit=1)[0].deployment_id)
    return ids


def test_a_split_serves_each_variant_by_weight_and_every_response_names_its_variant_and_versions(app_for):
    app = app_for(remember_pipelines())
    old, new = two_deployments(app)
    record = app.split("pred", {"stable": old, "candidate": "serving"}, weights={"stable": 3, "candidate": 1})

    assert (record.kind, record.outcome) == ("split", "deployed")
    assert [(v.name, v.share, v.shadow) for v in record.variants] == [("stable", 0.75, False), ("candidate", 0.25, False)]
    served = {v.name: v.versions for v in record.variants}
    assert record.versions == served["stable"]  # the first served variant
    responses = [app.call_pipeline("pred", 0) for _ in range(4000)]
    counts = Counter(response.variant for response in responses)
    assert 2850 < counts["stable"] < 3150 and counts["stable"] + counts["candidate"] == 4000
    for response in responses:  # the versions are those that computed the value
        assert response.value == {"stable": "a", "candidate": "b"}[response.variant]
        assert str(response.versions["remember"]) == served[response.variant]["remember"]


def test_the_same_key_always_gets_the_same_variant(app_for):
    app = app_for(remember_pipelines())
    old, _ = two_deployments(app)
    app.split("pred", {"a": old, "b": "serving"})
    keys = [f"user-{number}" for number in range(200)]
    first = [app.call_pipeline("pred", 0, key=key).variant for key in keys]
    assert [app.call_pipeline("pred", 0, key=key).variant for key in keys] == first
    assert 60 < first.count("a") < 140  # keys spread over both
    with pytest.raises(ConfigError, match="'key' must be None or a string"):
        app.call_pipeline("pred", 0, key=42)
    # A key on a pipeline that is not split changes nothing.
    assert app.call_pipeline("train", 5, key="user-1").variant is None


def test_raising_a_weight_only_moves_keys_into_that_variant(app_for):
    app = app_for(remember_pipelines())
    old, _ = two_deployments(app)
    keys = [f"user-{number}" for number in range(300)]
    app.split("pred", {"candidate": "serving", "stable": old}, weights={"candidate": 0.1, "stable": 0.9})
    small = {key for key in keys if app.call_pipeline("pred", 0, key=key).variant == "candidate"}
    app.split("pred", {"candidate": "serving", "stable": old}, weights={"candidate": 0.5, "stable": 0.5})
    large = {key for key in keys if app.call_pipeline("pred", 0, key=key).variant == "candidate"}
    assert small < large


KEYS_SCRIPT = """
import json, sys
from chariots_test_deploy import remember_app
with remember_app(sys.argv[1]) as app:
    app.split("pred", json.loads(sys.argv[2]))
    print(json.dumps([app.call_pipeline("pred", 0, key=f"user-{n}").variant for n in range(100)]))
"""


def test_keys_pick_the_same_variants_in_another_process(tmp_path):
    with Chariots(remember_pipelines(), path=tmp_path) as app:
        old, new = two_deployments(app)
        variants = {"a": old, "b": new}
        app.split("pred", variants)
        here = [app.call_pipeline("pred", 0, key=f"user-{n}").variant for n in range(100)]
    env = {**os.environ, "PYTHONPATH": str(SUPPORT), "PYTHONHASHSEED": "12345"}
    done = subprocess.run(
        [sys.executable, "-c", KEYS_SCRIPT, str(tmp_path), json.dumps(variants)],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )  # fmt: skip
    assert json.loads(done.stdout) == here


def test_a_shadow_runs_on_every_input_is_logged_and_never_returned(app_for):
    log = PredictionLog("memory", flush_interval=0.01)
    app = app_for(remember_pipelines(), log_predictions=["pred"], prediction_log=log)
    old, new = two_deployments(app)
    record = app.split("pred", {"live": old, "shadowed": new}, shadow="shadowed")
    assert [(v.name, v.share, v.shadow) for v in record.variants] == [("live", 1.0, False), ("shadowed", 0.0, True)]

    responses = [app.call_pipeline("pred", {"n": n}) for n in range(20)]
    assert {(r.value, r.variant) for r in responses} == {("a", "live")}
    wait_until(lambda: len([p for p in app.predictions("pred", limit=None) if p.shadow]) == 20)
    logged = app.predictions("pred", limit=None)
    shadows = [p for p in logged if p.shadow]
    assert {(p.variant, p.output) for p in shadows} == {("shadowed", "b")}
    assert sorted(p.input["n"] for p in shadows) == list(range(20))
    assert {(p.variant, p.output) for p in logged if not p.shadow} == {("live", "a")}
    log.close()


def test_a_failing_shadow_never_fails_the_call_and_its_failures_are_logged(app_for, caplog):
    log = PredictionLog("memory", flush_interval=0.01)
    app = app_for(remember_pipelines(), log_predictions=["pred"], prediction_log=log)
    old, _ = two_deployments(app)
    # The shadow fails on "fail" as the live variant does: only the live failure reaches the caller.
    app.split("pred", {"live": old, "shadow": "serving"}, shadow="shadow")
    with pytest.raises(ValueError, match="asked to fail"):
        app.call_pipeline("pred", "fail")
    with caplog.at_level("WARNING", logger="chariots.shadow"):
        wait_until(lambda: any(p.shadow for p in app.predictions("pred")))
        wait_until(lambda: "shadow variant 'shadow' of pipeline 'pred' failed" in caplog.text)
    failed = [p for p in app.predictions("pred") if p.error]
    assert {(p.variant, p.shadow) for p in failed} == {("live", False), ("shadow", True)}
    assert all(p.error.startswith("ValueError: asked to fail (in node 'fail'") and p.output is None for p in failed)
    log.close()


def test_variants_are_checked_along_every_edge_and_a_refused_split_changes_nothing(app_for):
    app = app_for(chain_pipelines())
    train_chain(app, 10, 1)
    app.load_pipeline("pred_chain")
    good = app.deployments("pred_chain", limit=1)[0].deployment_id
    train_and_save(app, 20, "train_offset")  # the saved model behind it is now stale
    with pytest.raises(VersionError):
        app.split("pred_chain", {"old": "serving", "new": "latest"})
    refused = app.deployments("pred_chain", limit=1)[0]
    assert (refused.kind, refused.outcome) == ("split", "refused") and "VersionError" in refused.reason
    assert app.call_pipeline("pred_chain", 0).variant is None
    # latest_compatible picks the newest compatible set: the good one.
    record = app.split("pred_chain", {"old": "serving", "same": "latest_compatible"})
    assert record.variants[0].versions == record.variants[1].versions
    assert app.deployments("pred_chain", limit=3)[2].deployment_id == good


def test_split_arguments_are_checked_before_anything_changes(app_for):
    app = app_for(remember_pipelines())
    old, _ = two_deployments(app)
    bad = [
        ({"only": "serving"}, None, None, "two or more"),
        ("serving", None, None, "two or more"),
        ({"a": "serving", "": "latest"}, None, None, "non-empty strings"),
        ({"a": "serving", "b": 3}, None, None, "non-empty strings"),
        ({"a": "serving", "b": "latest"}, None, "c", "'shadow' must be None or one of"),
        ({"a": "serving", "b": "latest"}, {"a": 1}, None, "a weight to each served variant"),
        ({"a": "serving", "b": "latest"}, {"a": 1, "b": -1}, None, "must be a number >= 0"),
        ({"a": "serving", "b": "latest"}, {"a": 0, "b": 0}, None, "at least one served variant"),
        ({"a": "serving", "b": "latest"}, {"a": 1, "b": 1}, "b", "the shadow takes none"),
    ]
    for variants, weights, shadow, message in bad:
        with pytest.raises(ConfigError, match=message):
            app.split("pred", variants, weights=weights, shadow=shadow)
    with pytest.raises(NotSavedError, match="has no deployment 'feed'"):
        app.split("pred", {"a": "serving", "b": "feed"})
    assert len(app.deployments("pred")) == 2  # none of these was a deployment


def test_serving_as_a_variant_needs_a_loaded_pipeline(app_for):
    app = app_for(remember_pipelines())
    train_and_save(app, "a")
    with pytest.raises(NotSavedError, match="was never loaded"):
        app.split("pred", {"now": "serving", "new": "latest"})


def test_a_split_ends_with_the_next_load_and_a_rollback_returns_to_before_it_or_restores_it(app_for):
    app = app_for(remember_pipelines())
    old, new = two_deployments(app)
    split = app.split("pred", {"a": old, "b": new})
    back = app.rollback("pred")
    assert back.restores == new and app.call_pipeline("pred", 0).variant is None
    again = app.rollback("pred", to=split.deployment_id)
    assert again.variants == split.variants
    assert {app.call_pipeline("pred", 0, key=str(n)).variant for n in range(50)} == {"a", "b"}
    app.load_pipeline("pred")
    assert app.call_pipeline("pred", 0).variant is None
    assert app.call_pipeline("pred", 0).value == "b"


def test_a_deployment_of_a_split_cannot_be_a_variant(app_for):
    app = app_for(remember_pipelines())
    old, new = two_deployments(app)
    split = app.split("pred", {"a": old, "b": new})
    with pytest.raises(ConfigError, match="is a split"):
        app.split("pred", {"a": old, "b": split.deployment_id})


def test_an_asynchronous_call_of_a_split_pipeline_says_which_variant_runs_it():
    with InProcessWorkerPool(1) as pool:
        with Chariots(remember_pipelines(), op_store="memory", saver="memory", worker_pool=pool) as app:
            old, new = two_deployments(app)
            app.split("pred", {"a": old, "b": new})
            queued = app.call_pipeline("pred", 0, use_worker=True, key="user-1")
            assert queued.job_status is JobStatus.queued and queued.variant in ("a", "b")
            done = pool.wait(queued.job_id, timeout=10)
            assert done.value == queued.variant


def test_a_shadow_that_falls_behind_skips_runs_and_counts_them():
    pipeline = Pipeline([Node(Pause(), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")], "p")
    shadow = Variant("slow", pipeline)
    route = Route("p", SequentialRunner(), (Variant(None, pipeline),), shadow=shadow)
    shadows = ShadowRunner(max_pending=2)
    shadows.submit(route, shadow, {"pause": 0.5})
    wait_until(lambda: shadows.stats()["pending"] == 0)  # it runs for 0.5 s
    for _ in range(5):  # two wait, the others find no room
        shadows.submit(route, shadow, {"pause": 0.5})
    assert shadows.stats() == {"ran": 0, "failed": 0, "skipped": 3, "pending": 2}
    shadows.close()  # skips what still waits, lets the running one finish
    assert shadows.stats() == {"ran": 1, "failed": 0, "skipped": 5, "pending": 0}


def test_the_health_check_counts_shadow_runs_and_logged_predictions(app_for):
    log = PredictionLog("memory", flush_interval=0.01)
    app = app_for(remember_pipelines(), log_predictions=["pred"], prediction_log=log)
    assert app.health_check()["predictions"] == {"written": 0, "dropped": 0, "pending": 0}
    assert "shadows" not in app.health_check()
    old, new = two_deployments(app)
    app.split("pred", {"live": old, "shadow": new}, shadow="shadow")
    app.call_pipeline("pred", 0)
    wait_until(lambda: app.health_check()["shadows"]["ran"] == 1)
    wait_until(lambda: app.health_check()["predictions"]["written"] == 2)
    log.close()
