"""Lineage through the public API: save, load, the edge rule, policies and strategies.

The ops are tiny stand-ins for the seed's tutorial: ``CenterOp`` learns a mean and subtracts
it (the "PCA", retraining it is a MAJOR change), ``ThresholdOp`` learns a mean and says which
values are above it (the "logistic regression", retraining it is a PATCH). Every scenario runs
against the in-memory store and saver, and against LMDB + files when those backends exist.
"""

from __future__ import annotations

import hashlib
import threading

import pytest
from chariots_test_ops import ScaleOp

from chariots_core import (
    BaseOp,
    Chariots,
    MemoryOpStore,
    MemorySaver,
    Node,
    Pipeline,
    VersionedField,
    VersionError,
    VersionType,
)
from chariots_core.errors import ChariotsError, IntegrityError, NotSavedError
from chariots_core.ml import BaseMLOp, MLMode
from chariots_core.op_store.records import Commit, JournalAppend, LinkRecord, OpVersionRecord, SnapshotRecord

IN, OUT = "__pipeline_input__", "__pipeline_output__"
DATA = [1.0, 2.0, 3.0, 6.0]


class DataOp(BaseOp):  # a plain BaseOp: the training dataset
    def execute(self):
        return list(DATA)


class CenterOp(BaseMLOp):
    training_update_version = VersionType.MAJOR

    def fit(self, xs):
        self._model = sum(xs) / len(xs)

    def predict(self, xs):
        return [x - self._model for x in xs]


class ThresholdOp(BaseMLOp):
    training_update_version = VersionType.PATCH

    def fit(self, xs):
        self._model = sum(xs) / len(xs) + 0.5

    def predict(self, xs):
        return [x > self._model for x in xs]


class MinorOp(BaseMLOp):
    training_update_version = VersionType.MINOR

    def fit(self, xs):
        self._model = min(xs)

    def predict(self, xs):
        return [x - self._model for x in xs]


def center_class(shift):
    """A new CenterOp class with the same name whose MAJOR code version depends on ``shift``."""

    class CenterOp(BaseMLOp):  # noqa: F811 - same name on purpose: the store files it as "centerop"
        training_update_version = VersionType.MAJOR
        offset = VersionedField(shift, VersionType.MAJOR)

        def fit(self, xs):
            self._model = sum(xs) / len(xs)

        def predict(self, xs):
            return [x - self._model + self.offset for x in xs]

    return CenterOp


def tutorial(center=CenterOp):
    """The seed's train_pca / train_logistics / pred trio (chapter 2.1, PipelinesClient)."""
    train_pca = Pipeline([Node(DataOp(), output_nodes="x"), Node(center(MLMode.FIT), input_nodes=["x"])], "train_pca")
    train_logistic = Pipeline(
        [
            Node(DataOp(), output_nodes="x"),
            Node(center(MLMode.PREDICT), input_nodes=["x"], output_nodes="x_transformed"),
            Node(ThresholdOp(MLMode.FIT), input_nodes=["x_transformed"]),
        ],
        "train_logistics",
    )
    pred = Pipeline(
        [
            Node(center(MLMode.PREDICT), input_nodes=[IN], output_nodes="x_transformed"),
            Node(ThresholdOp(MLMode.PREDICT), input_nodes=["x_transformed"], output_nodes=OUT),
        ],
        "pred",
    )
    return train_pca, train_logistic, pred


@pytest.fixture(params=["memory", "lmdb"])
def make_app(request, tmp_path):
    """Build apps that share one store: in memory, or LMDB + files under tmp_path."""
    apps = []
    if request.param == "memory":
        store, saver = MemoryOpStore(), MemorySaver()

        def make(pipelines, **kwargs):
            apps.append(Chariots(pipelines, op_store=store, saver=saver, **kwargs))
            return apps[-1]

    else:
        pytest.importorskip("chariots_lmdb")
        pytest.importorskip("chariots_fsspec")

        def make(pipelines, **kwargs):
            apps.append(Chariots(pipelines, path=tmp_path, **kwargs))
            return apps[-1]

    yield make
    for app in apps:
        app.close()


def train_all(app, train_pca, train_logistic):
    app.call_pipeline(train_pca)
    app.save_pipeline(train_pca)
    app.load_pipeline(train_logistic)
    app.call_pipeline(train_logistic)
    app.save_pipeline(train_logistic)


def show(version):
    """A version as VersionError messages print it."""
    return "/".join(part[:7] for part in (version.major, version.minor, version.patch))


# -- the seed's tutorial -------------------------------------------------------------------
def test_seed_tutorial_train_save_load_predict(make_app):
    train_pca, train_logistic, pred = tutorial()
    app = make_app([train_pca, train_logistic, pred])
    train_all(app, train_pca, train_logistic)
    picked = app.load_pipeline(pred)
    response = app.call_pipeline(pred, [0.0, 1.0, 3.0])
    # mean 3 -> centered [-3, -2, 0]; the threshold learnt on [-2, -1, 0, 3] is 0.5
    assert response.value == [False, False, False]
    assert app.call_pipeline(pred, [10.0]).value == [True]
    assert set(picked) == {"centerop", "thresholdop"}
    assert response.versions == app.pipeline_versions(pred)
    assert response.versions["centerop"] == picked["centerop"]
    assert response.versions["thresholdop"] == picked["thresholdop"]


def test_seed_wrong_order_refuses_a_model_trained_on_an_older_upstream(make_app):
    train_pca, train_logistic, pred = tutorial()
    app = make_app([train_pca, train_logistic, pred])
    train_all(app, train_pca, train_logistic)
    app.load_pipeline(pred)
    serving = app.pipeline_versions(pred)

    app.call_pipeline(train_pca)  # retraining the "PCA" is a MAJOR change
    app.save_pipeline(train_pca)
    with pytest.raises(VersionError) as caught:
        app.load_pipeline(pred)
    message = str(caught.value)
    assert "'centerop' -> 'thresholdop'" in message
    assert "(its major version changed): 'centerop' was retrained by pipeline 'train_pca' at " in message
    assert "run and save pipeline 'train_logistics'" in message
    assert isinstance(caught.value, TypeError)  # as in chariots 0.2
    # The failed load changed nothing: the old pair keeps serving.
    assert app.pipeline_versions(pred) == serving
    assert app.call_pipeline(pred, [10.0]).versions == serving
    assert app.is_pipeline_loaded(pred)

    # Retraining the downstream model on the new upstream makes pred loadable again.
    app.load_pipeline(train_logistic)
    app.call_pipeline(train_logistic)
    app.save_pipeline(train_logistic)
    picked = app.load_pipeline(pred)
    assert picked["centerop"] != serving["centerop"]
    assert picked["thresholdop"] != serving["thresholdop"]
    assert app.call_pipeline(pred, [10.0]).versions == picked


def test_a_major_code_change_upstream_names_edge_versions_change_and_pipeline(make_app):
    train_pca, train_logistic, pred = tutorial(center_class(0))
    old_app = make_app([train_pca, train_logistic, pred])
    train_all(old_app, train_pca, train_logistic)
    old_app.load_pipeline(pred)
    old_versions = old_app.pipeline_versions(pred)

    # New code for the upstream op: same name, another MAJOR field. Only it is retrained.
    train_pca2, train_logistic2, pred2 = tutorial(center_class(1))
    new_app = make_app([train_pca2, train_logistic2, pred2])
    new_app.call_pipeline(train_pca2)
    new_app.save_pipeline(train_pca2)
    new_center = new_app.pipeline_versions(train_pca2)["centerop"]
    with pytest.raises(VersionError) as caught:
        new_app.load_pipeline(pred2)
    message = str(caught.value)
    assert "edge 'centerop' -> 'thresholdop'" in message
    assert f"'thresholdop' {show(old_versions['thresholdop'])} was built on" in message
    assert f"'centerop' {show(old_versions['centerop'])}, but 'centerop' is now {show(new_center)}" in message
    assert "centerop.offset (MAJOR) changed 0 → 1 since 'thresholdop' was trained on it" in message
    assert "run and save pipeline 'train_logistics'" in message
    assert not new_app.is_pipeline_loaded(pred2)

    # The app running the old code still serves the old versions.
    assert old_app.call_pipeline(pred, [10.0]).versions == old_versions
    old_app.load_pipeline(pred)  # and reloading there still finds the old-code pair
    assert old_app.pipeline_versions(pred) == old_versions

    new_app.load_pipeline(train_logistic2)
    new_app.call_pipeline(train_logistic2)
    new_app.save_pipeline(train_logistic2)
    picked = new_app.load_pipeline(pred2)
    assert picked["centerop"] == new_center
    assert new_app.call_pipeline(pred2, [10.0]).value == [True]


def test_loaded_ml_op_keeps_the_saved_training_identity(make_app):
    train_pca, train_logistic, pred = tutorial()
    app = make_app([train_pca, train_logistic, pred])
    train_all(app, train_pca, train_logistic)
    trained = app.pipeline_versions(train_logistic)["thresholdop"]
    picked = app.load_pipeline(pred)
    loaded = app.pipeline_versions(pred)["thresholdop"]
    assert loaded == trained == picked["thresholdop"]
    assert str(loaded).split("_")[:3] == str(trained).split("_")[:3]


def test_saving_a_pipeline_that_only_uses_a_version_does_not_make_it_newer(make_app):
    train_pca, train_logistic, pred = tutorial()
    app = make_app([train_pca, train_logistic, pred])
    train_all(app, train_pca, train_logistic)
    app.load_pipeline(pred)
    app.call_pipeline(train_pca)
    app.save_pipeline(train_pca)  # a new centerop
    app.save_pipeline(train_logistic)  # still holds the old centerop: must not win as "latest"
    app.save_pipeline(pred)
    assert len(app.op_store.op_versions("centerop")) == 2  # one record per training run
    assert len(app.op_store.op_versions("thresholdop")) == 1
    (threshold,) = app.op_store.op_versions("thresholdop")
    assert len(app.op_store.links("thresholdop", threshold.version)) == 1  # only the training save links it
    with pytest.raises(VersionError, match="'centerop' -> 'thresholdop'"):
        app.load_pipeline(pred)
    picked = app.load_pipeline(train_logistic)
    assert picked["centerop"] == app.pipeline_versions(train_pca)["centerop"]


# -- every edge ---------------------------------------------------------------------------
def branch_pipelines():
    """One upstream op feeding two models."""
    train_center = Pipeline([Node(DataOp(), output_nodes="x"), Node(CenterOp(MLMode.FIT), input_nodes=["x"])], "train_center")
    train_models = Pipeline(
        [
            Node(DataOp(), output_nodes="x"),
            Node(CenterOp(MLMode.PREDICT), input_nodes=["x"], output_nodes="c"),
            Node(ThresholdOp(MLMode.FIT), input_nodes=["c"]),
            Node(MinorOp(MLMode.FIT), input_nodes=["c"]),
        ],
        "train_models",
    )
    train_threshold = Pipeline(
        [
            Node(DataOp(), output_nodes="x"),
            Node(CenterOp(MLMode.PREDICT), input_nodes=["x"], output_nodes="c"),
            Node(ThresholdOp(MLMode.FIT), input_nodes=["c"]),
        ],
        "train_threshold",
    )
    serve = Pipeline(
        [
            Node(CenterOp(MLMode.PREDICT), input_nodes=[IN], output_nodes="c"),
            Node(ThresholdOp(MLMode.PREDICT), input_nodes=["c"], output_nodes="above"),
            Node(MinorOp(MLMode.PREDICT), input_nodes=["c"], output_nodes="shifted"),
            Node(PairOp(), input_nodes=["above", "shifted"], output_nodes=OUT),
        ],
        "serve",
    )
    return train_center, train_models, train_threshold, serve


class PairOp(BaseOp):
    def execute(self, left, right):
        return list(zip(left, right))


def test_every_branch_is_checked(make_app):
    train_center, train_models, train_threshold, serve = branch_pipelines()
    app = make_app([train_center, train_models, train_threshold, serve])
    app.call_pipeline(train_center)
    app.save_pipeline(train_center)
    app.load_pipeline(train_models)
    app.call_pipeline(train_models)
    app.save_pipeline(train_models)
    app.load_pipeline(serve)
    assert app.call_pipeline(serve, [0.0, 10.0]).value == [(False, -1.0), (True, 9.0)]

    app.call_pipeline(train_center)
    app.save_pipeline(train_center)
    app.load_pipeline(train_threshold)  # retrain only one of the two models
    app.call_pipeline(train_threshold)
    app.save_pipeline(train_threshold)
    with pytest.raises(VersionError) as caught:
        app.load_pipeline(serve)
    message = str(caught.value)
    assert "1 incompatible edge" in message
    assert "'centerop' -> 'minorop'" in message
    assert "'centerop' -> 'thresholdop'" not in message
    assert "run and save pipeline 'train_models'" in message


def test_edges_through_a_nested_pipeline_are_checked(make_app):
    inner_train = Pipeline([Node(ThresholdOp(MLMode.FIT), input_nodes=[IN])], "inner_train")
    train_nested = Pipeline(
        [
            Node(DataOp(), output_nodes="x"),
            Node(CenterOp(MLMode.PREDICT), input_nodes=["x"], output_nodes="c"),
            Node(inner_train, input_nodes=["c"]),
        ],
        "train_nested",
    )
    inner_pred = Pipeline([Node(ThresholdOp(MLMode.PREDICT), input_nodes=[IN], output_nodes=OUT)], "inner_pred")
    pred_nested = Pipeline(
        [
            Node(CenterOp(MLMode.PREDICT), input_nodes=[IN], output_nodes="c"),
            Node(inner_pred, input_nodes=["c"], output_nodes=OUT),
        ],
        "pred_nested",
    )
    train_center = Pipeline([Node(DataOp(), output_nodes="x"), Node(CenterOp(MLMode.FIT), input_nodes=["x"])], "train_center")
    app = make_app([train_center, train_nested, pred_nested])
    app.call_pipeline(train_center)
    app.save_pipeline(train_center)
    app.load_pipeline(train_nested)
    app.call_pipeline(train_nested)
    app.save_pipeline(train_nested)
    app.load_pipeline(pred_nested)
    assert app.call_pipeline(pred_nested, [10.0]).value == [True]

    app.call_pipeline(train_center)
    app.save_pipeline(train_center)
    with pytest.raises(VersionError, match="'centerop' -> 'thresholdop'.*pipeline 'train_nested'"):
        app.load_pipeline(pred_nested)


def test_every_input_of_a_multi_input_node_is_checked(make_app):
    train_center = Pipeline([Node(DataOp(), output_nodes="x"), Node(CenterOp(MLMode.FIT), input_nodes=["x"])], "train_center")
    train_minor = Pipeline([Node(DataOp(), output_nodes="x"), Node(MinorOp(MLMode.FIT), input_nodes=["x"])], "train_minor")
    train_combo = Pipeline(
        [
            Node(DataOp(), output_nodes="x"),
            Node(CenterOp(MLMode.PREDICT), input_nodes=["x"], output_nodes="c"),
            Node(MinorOp(MLMode.PREDICT), input_nodes=["x"], output_nodes="m"),
            Node(ComboOp(MLMode.FIT), input_nodes=["c", "m"]),
        ],
        "train_combo",
    )
    pred_combo = Pipeline(
        [
            Node(CenterOp(MLMode.PREDICT), input_nodes=[IN], output_nodes="c"),
            Node(MinorOp(MLMode.PREDICT), input_nodes=[IN], output_nodes="m"),
            Node(ComboOp(MLMode.PREDICT), input_nodes=["c", "m"], output_nodes=OUT),
        ],
        "pred_combo",
    )
    app = make_app([train_center, train_minor, train_combo, pred_combo], compatibility="minor")
    for pipeline in (train_center, train_minor):
        app.call_pipeline(pipeline)
        app.save_pipeline(pipeline)
    app.load_pipeline(train_combo)
    app.call_pipeline(train_combo)
    app.save_pipeline(train_combo)
    app.load_pipeline(pred_combo)

    app.call_pipeline(train_minor)  # retraining MinorOp changes its MINOR version: the 2nd input
    app.save_pipeline(train_minor)
    with pytest.raises(VersionError) as caught:
        app.load_pipeline(pred_combo)
    assert "'minorop' -> 'comboop'" in str(caught.value)
    assert "'centerop' -> 'comboop'" not in str(caught.value)
    assert "minor version changed" in str(caught.value)


class ComboOp(BaseMLOp):
    def fit(self, centered, shifted):
        self._model = len(centered)

    def predict(self, centered, shifted):
        return [c + s for c, s in zip(centered, shifted)]


# -- policies ----------------------------------------------------------------------------
def minor_tutorial(training_update_version):
    """train_up trains an upstream op retrained with the given subversion; a model follows."""
    upstream = type("UpOp", (CenterOp,), {"training_update_version": training_update_version})
    train_up = Pipeline([Node(DataOp(), output_nodes="x"), Node(upstream(MLMode.FIT), input_nodes=["x"])], "train_up")
    train_down = Pipeline(
        [
            Node(DataOp(), output_nodes="x"),
            Node(upstream(MLMode.PREDICT), input_nodes=["x"], output_nodes="u"),
            Node(ThresholdOp(MLMode.FIT), input_nodes=["u"]),
        ],
        "train_down",
    )
    pred = Pipeline(
        [
            Node(upstream(MLMode.PREDICT), input_nodes=[IN], output_nodes="u"),
            Node(ThresholdOp(MLMode.PREDICT), input_nodes=["u"], output_nodes=OUT),
        ],
        "pred",
    )
    return train_up, train_down, pred


@pytest.mark.parametrize(
    ("retrained", "policy", "breaks"),
    [
        (VersionType.PATCH, "major", False),
        (VersionType.PATCH, "minor", False),
        (VersionType.PATCH, "exact", True),
        (VersionType.MINOR, "major", False),
        (VersionType.MINOR, "minor", True),
        (VersionType.MINOR, "exact", True),
        (VersionType.MAJOR, "major", True),
    ],
)
def test_compatibility_policies(make_app, retrained, policy, breaks):
    train_up, train_down, pred = minor_tutorial(retrained)
    app = make_app([train_up, train_down, pred], compatibility=policy)
    train_all(app, train_up, train_down)
    app.load_pipeline(pred)
    app.call_pipeline(train_up)
    app.save_pipeline(train_up)
    if breaks:
        with pytest.raises(VersionError, match=f"its {retrained.value} version changed"):
            app.load_pipeline(pred)
    else:
        picked = app.load_pipeline(pred)
        assert picked["upop"] == app.pipeline_versions(train_up)["upop"]


def test_bad_policy_and_strategy_are_chariots_errors():
    train_pca, train_logistic, pred = tutorial()
    with pytest.raises(ChariotsError, match="'compatibility' must be one of 'major', 'minor', 'exact'"):
        Chariots([pred], op_store="memory", saver="memory", compatibility="semver")
    app = Chariots([pred], op_store="memory", saver="memory")
    with pytest.raises(ChariotsError, match="'strategy' must be one of 'latest', 'latest_compatible' .got 'newest'"):
        app.load_pipeline(pred, strategy="newest")


# -- latest_compatible -------------------------------------------------------------------
def test_latest_compatible_keeps_the_previous_pair_until_the_model_is_retrained(make_app):
    train_pca, train_logistic, pred = tutorial()
    app = make_app([train_pca, train_logistic, pred])
    train_all(app, train_pca, train_logistic)
    first = app.load_pipeline(pred)
    app.call_pipeline(train_pca)
    app.save_pipeline(train_pca)
    new_center = app.pipeline_versions(train_pca)["centerop"]

    picked = app.load_pipeline(pred, strategy="latest_compatible")
    assert picked == first  # the previous centerop + thresholdop pair, not the new centerop
    assert app.pipeline_versions(pred) == first

    app.load_pipeline(train_logistic)
    app.call_pipeline(train_logistic)
    app.save_pipeline(train_logistic)
    picked = app.load_pipeline(pred, strategy="latest_compatible")
    assert picked["centerop"] == new_center
    assert picked["thresholdop"] != first["thresholdop"]


def chain_pipelines():
    """a -> b -> c, all retrained with MAJOR changes, so every edge is strict."""
    a_op = type("AOp", (CenterOp,), {})
    b_op = type("BOp", (CenterOp,), {})
    c_op = type("COp", (CenterOp,), {})
    train_a = Pipeline([Node(DataOp(), output_nodes="x"), Node(a_op(MLMode.FIT), input_nodes=["x"])], "train_a")
    train_b = Pipeline(
        [
            Node(DataOp(), output_nodes="x"),
            Node(a_op(MLMode.PREDICT), input_nodes=["x"], output_nodes="a"),
            Node(b_op(MLMode.FIT), input_nodes=["a"]),
        ],
        "train_b",
    )
    train_c = Pipeline(
        [
            Node(DataOp(), output_nodes="x"),
            Node(a_op(MLMode.PREDICT), input_nodes=["x"], output_nodes="a"),
            Node(b_op(MLMode.PREDICT), input_nodes=["a"], output_nodes="b"),
            Node(c_op(MLMode.FIT), input_nodes=["b"]),
        ],
        "train_c",
    )
    pred = Pipeline(
        [
            Node(a_op(MLMode.PREDICT), input_nodes=[IN], output_nodes="a"),
            Node(b_op(MLMode.PREDICT), input_nodes=["a"], output_nodes="b"),
            Node(c_op(MLMode.PREDICT), input_nodes=["b"], output_nodes=OUT),
        ],
        "pred",
    )
    return train_a, train_b, train_c, pred


def run_and_save(app, *pipelines):
    for pipeline in pipelines:
        app.load_pipeline(pipeline, strategy="latest_compatible")
        app.call_pipeline(pipeline)
        app.save_pipeline(pipeline)


def test_latest_compatible_backtracks_where_newest_first_fails(make_app):
    train_a, train_b, train_c, pred = chain_pipelines()
    app = make_app([train_a, train_b, train_c, pred])
    app.call_pipeline(train_a)
    app.save_pipeline(train_a)
    run_and_save(app, train_b, train_c)  # a1 -> b1 -> c1
    first = app.load_pipeline(pred)
    app.call_pipeline(train_a)
    app.save_pipeline(train_a)
    run_and_save(app, train_b)  # a2 -> b2, but no c on b2 yet
    # Newest first picks a2 then b2, and finds no c: it must go back to a1/b1/c1.
    with pytest.raises(VersionError, match="'bop' -> 'cop'"):
        app.load_pipeline(pred)
    assert app.load_pipeline(pred, strategy="latest_compatible") == first

    run_and_save(app, train_c)  # c2 on b2
    picked = app.load_pipeline(pred, strategy="latest_compatible")
    assert picked == app.load_pipeline(pred)
    assert picked["aop"] != first["aop"] and picked["cop"] != first["cop"]


def test_latest_compatible_raises_only_when_no_compatible_set_exists(make_app):
    train_a, train_b, train_c, pred = chain_pipelines()
    app = make_app([train_a, train_b, train_c, pred])
    app.call_pipeline(train_a)
    app.save_pipeline(train_a)
    run_and_save(app, train_b)  # b1 on a1
    app.call_pipeline(train_a)
    app.save_pipeline(train_a)
    run_and_save(app, train_c)  # c1 on b1, trained while a2 is the newest a
    app.call_pipeline(train_a)  # a3: nothing was built on it
    app.save_pipeline(train_a)
    # c1 needs b1, b1 needs a1: the set (a1, b1, c1) is the only one, found by pruning a2 and a3.
    picked = app.load_pipeline(pred, strategy="latest_compatible")
    assert picked["bop"] == app.pipeline_versions(train_c)["bop"]

    app.load_pipeline(train_b, strategy="latest")  # a3 loads into train_b's "a"
    app.call_pipeline(train_b)
    app.save_pipeline(train_b)  # b2 on a3 is now the newest b ...
    # ... and a "c" pinned to b1 is still compatible through a1: the old set stays.
    assert app.load_pipeline(pred, strategy="latest_compatible") == picked


def test_latest_compatible_error_when_nothing_fits(make_app):
    # A model saved on one upstream version, whose upstream versions are all gone from the
    # candidates (the code changed): no compatible set exists at all.
    train_pca, train_logistic, pred = tutorial(center_class(0))
    app = make_app([train_pca, train_logistic, pred])
    train_all(app, train_pca, train_logistic)
    train_pca2, _, pred2 = tutorial(center_class(2))
    new_app = make_app([train_pca2, pred2])
    new_app.call_pipeline(train_pca2)
    new_app.save_pipeline(train_pca2)
    with pytest.raises(VersionError) as caught:
        new_app.load_pipeline(pred2, strategy="latest_compatible")
    message = str(caught.value)
    assert "no combination of its saved versions is compatible along every edge" in message
    assert "'centerop' -> 'thresholdop'" in message
    assert "run and save pipeline 'train_logistics'" in message


# -- plain loadable ops ------------------------------------------------------------------
def test_plain_loadable_op_state_round_trips_and_resaves(make_app):
    scale_train = Pipeline([Node(ScaleOp(3), input_nodes=[IN], output_nodes=OUT)], "scale_train")
    scale_serve = Pipeline([Node(ScaleOp(), input_nodes=[IN], output_nodes=OUT)], "scale_serve")
    app = make_app([scale_train, scale_serve])
    assert app.call_pipeline(scale_serve, [1, 2]).value == [1, 2]
    app.save_pipeline(scale_train)
    assert app.load_pipeline(scale_serve) == {"scaleop": ScaleOp.__version__}
    assert app.call_pipeline(scale_serve, [1, 2]).value == [3, 6]
    # Same version, new state: the new bytes win.
    app.install_ops(scale_train, {"scaleop": ScaleOp(5)})
    app.save_pipeline(scale_train)
    app.load_pipeline(scale_serve)
    assert app.call_pipeline(scale_serve, [1]).value == [5]


def test_a_plain_loadable_op_holds_no_trained_state_so_its_upstream_may_change(make_app):
    train_pca = tutorial()[0]
    train_scale = Pipeline(
        [
            Node(DataOp(), output_nodes="x"),
            Node(CenterOp(MLMode.PREDICT), input_nodes=["x"], output_nodes="c"),
            Node(ScaleOp(2), input_nodes=["c"], output_nodes=OUT),
        ],
        "train_scale",
    )
    pred_scale = Pipeline(
        [
            Node(CenterOp(MLMode.PREDICT), input_nodes=[IN], output_nodes="c"),
            Node(ScaleOp(), input_nodes=["c"], output_nodes=OUT),
        ],
        "pred_scale",
    )
    app = make_app([train_pca, train_scale, pred_scale])
    app.call_pipeline(train_pca)
    app.save_pipeline(train_pca)
    app.load_pipeline(train_scale)
    app.call_pipeline(train_scale)
    app.save_pipeline(train_scale)
    (scale,) = app.op_store.op_versions("scaleop")
    assert [link.upstream_op for link in app.op_store.links("scaleop", scale.version)] == ["centerop"]
    app.call_pipeline(train_pca)  # a MAJOR change upstream of the scale op
    app.save_pipeline(train_pca)
    picked = app.load_pipeline(pred_scale)
    assert picked["centerop"] == app.pipeline_versions(train_pca)["centerop"]
    assert app.call_pipeline(pred_scale, [13.0]).value == [20.0]
    app.load_pipeline(train_scale)


def test_nothing_saved_and_predict_only_op_without_versions(make_app):
    train_pca, train_logistic, pred = tutorial()
    app = make_app([train_pca, train_logistic, pred])
    with pytest.raises(NotSavedError, match="pipeline 'pred' cannot be loaded: none of its ops .'centerop', 'thresholdop'. was ever saved"):
        app.load_pipeline(pred)
    app.call_pipeline(train_pca)
    app.save_pipeline(train_pca)
    with pytest.raises(NotSavedError, match="op 'thresholdop' needs a saved version"):
        app.load_pipeline(pred)
    assert not app.is_pipeline_loaded(pred)
    assert isinstance(NotSavedError("x"), LookupError)


# -- serving while loading ---------------------------------------------------------------
def test_loads_swap_the_whole_pipeline_while_other_threads_call_it(make_app):
    train_pca, train_logistic, pred = tutorial()
    app = make_app([train_pca, train_logistic, pred])

    def trained_pair():
        train_all(app, train_pca, train_logistic)
        versions = app.pipeline_versions(train_logistic)
        return versions["centerop"], versions["thresholdop"]

    pairs = {trained_pair()}
    app.load_pipeline(pred)
    stop, seen, failures = threading.Event(), [], []

    def call_until_stopped():
        while not stop.is_set():
            try:
                versions = app.call_pipeline(pred, [10.0]).versions
            except Exception as exc:  # any failure is reported below, with its type
                failures.append(exc)
                return
            seen.append((versions["centerop"], versions["thresholdop"]))

    callers = [threading.Thread(target=call_until_stopped) for _ in range(2)]
    for caller in callers:
        caller.start()
    try:
        for _ in range(6):
            last = trained_pair()  # a new centerop and a thresholdop trained on it
            pairs.add(last)
            app.load_pipeline(pred)
    finally:
        stop.set()
        for caller in callers:
            caller.join()
    assert not failures
    assert seen
    assert set(seen) <= pairs  # never a new centerop with an old thresholdop, or the reverse
    final = app.call_pipeline(pred, [10.0]).versions
    assert (final["centerop"], final["thresholdop"]) == last


def test_a_predict_only_op_whose_code_changed_must_be_retrained(make_app):
    train_pca, train_logistic, pred = tutorial(center_class(0))
    train_all(make_app([train_pca, train_logistic, pred]), train_pca, train_logistic)
    _, _, new_pred = tutorial(center_class(5))
    app = make_app([new_pred])
    with pytest.raises(VersionError) as caught:
        app.load_pipeline(new_pred)
    message = str(caught.value)
    assert "op 'centerop' cannot be loaded: every saved version was made by other code" in message
    assert "run and save pipeline 'train_pca'" in message  # the pipeline that trained it


# -- a search that must backtrack ------------------------------------------------------------
def craft(store, saver, op, links=()):
    """Fit ``op`` and commit it as a saved version built on ``links`` ((upstream op, version) pairs).

    The op takes one input per link (one if it has none), as the pipelines below wire it.
    """
    op.execute(*[list(DATA)] * max(1, len(links)))
    data, version = op.serialize(), str(op.op_version)
    digest = hashlib.sha256(data).hexdigest()
    saver.save(f"ops/{op.name}/{digest}", data)
    record = OpVersionRecord(op.name, version, str(type(op).__version__), "crafted", 0.0, f"ops/{op.name}/{digest}", digest, len(data))
    link_records = tuple(LinkRecord(up, up_version, op.name, version) for up, up_version in links)
    store.commit(Commit((record,), link_records, (JournalAppend("crafted", SnapshotRecord("crafted", 0.0, {})),)))
    return version


def test_latest_compatible_backtracks_where_pruning_cannot_tell(make_app):
    """A triangle a -> b -> d, a -> d where every pair of ops fits but few triples do."""
    a_op, b_op = type("AOp", (CenterOp,), {}), type("BOp", (CenterOp,), {})
    pred = Pipeline(
        [
            Node(a_op(MLMode.PREDICT), input_nodes=[IN], output_nodes="a"),
            Node(b_op(MLMode.PREDICT), input_nodes=["a"], output_nodes="b"),
            Node(ComboOp(MLMode.PREDICT), input_nodes=["a", "b"], output_nodes=OUT),
        ],
        "pred",
    )
    app = make_app([pred])
    store, saver = app.op_store, app.saver
    a1, a2 = craft(store, saver, a_op(MLMode.FIT)), craft(store, saver, a_op(MLMode.FIT))
    b1 = craft(store, saver, b_op(MLMode.FIT), [("aop", a2)])
    b2 = craft(store, saver, b_op(MLMode.FIT), [("aop", a1)])
    d1 = craft(store, saver, ComboOp(MLMode.FIT), [("aop", a1), ("bop", b1)])
    craft(store, saver, ComboOp(MLMode.FIT), [("aop", a2), ("bop", b2)])
    # Newest first, a2 then b1 (the only b built on a2) leave no d: a1/b2 neither.
    with pytest.raises(VersionError, match="no combination of its saved versions"):
        app.load_pipeline(pred, strategy="latest_compatible")
    d0 = craft(store, saver, ComboOp(MLMode.FIT), [("aop", a1), ("bop", b2)])
    picked = app.load_pipeline(pred, strategy="latest_compatible")
    assert {name: str(version).split("_")[:3] for name, version in picked.items()} == {
        "aop": a1.split("_")[:3],
        "bop": b2.split("_")[:3],
        "comboop": d0.split("_")[:3],
    }
    assert d1 != d0


def test_reloading_keeps_ops_that_already_serve_the_chosen_version(make_app):
    train_pca, train_logistic, pred = tutorial()
    app = make_app([train_pca, train_logistic, pred])
    train_all(app, train_pca, train_logistic)
    first = app.load_pipeline(pred)
    for record in (app.op_store.op_versions(name, limit=1)[0] for name in ("centerop", "thresholdop")):
        app.saver.delete(record.blob_path)  # a reload must not need the bytes again
    assert app.load_pipeline(pred) == first
    assert app.call_pipeline(pred, [10.0]).versions == first
    restarted = make_app([tutorial()[2]])  # another app does not serve them: it needs the bytes
    with pytest.raises(IntegrityError, match="'centerop'.*the bytes are missing"):
        restarted.load_pipeline("pred")


def _latest_compatible_deep_history(app):
    """The only compatible pair is 21 versions back: newer models were built on code since changed."""
    store, saver = app.op_store, app.saver
    centered = craft(store, saver, CenterOp(MLMode.FIT))
    oldest = craft(store, saver, ThresholdOp(MLMode.FIT), [("centerop", centered)])
    changed = craft(store, saver, center_class(5)(MLMode.FIT))  # other code: never a candidate
    for _ in range(20):
        craft(store, saver, ThresholdOp(MLMode.FIT), [("centerop", changed)])
    craft(store, saver, CenterOp(MLMode.FIT))  # the newest centerop: nothing was built on it
    return centered, oldest


def test_latest_compatible_looks_further_back_in_widening_windows(make_app):
    app = make_app([tutorial()[2]])
    centered, oldest = _latest_compatible_deep_history(app)

    picked = app.load_pipeline("pred", strategy="latest_compatible")

    assert {name: str(version).split("_")[:3] for name, version in picked.items()} == {
        "centerop": centered.split("_")[:3],
        "thresholdop": oldest.split("_")[:3],
    }


def test_latest_compatible_gives_up_at_its_bound_and_says_so(make_app, monkeypatch):
    from chariots_core.op_store import lineage

    monkeypatch.setattr(lineage, "LATEST_COMPATIBLE_BOUND", 16)
    app = make_app([tutorial()[2]])
    _latest_compatible_deep_history(app)

    with pytest.raises(VersionError, match="no combination of the newest 16 versions of each op") as caught:
        app.load_pipeline("pred", strategy="latest_compatible")

    assert "LATEST_COMPATIBLE_BOUND" in str(caught.value) and "'centerop' -> 'thresholdop'" in str(caught.value)
    assert not app.is_pipeline_loaded("pred")
