"""scikit-learn ops in every mode through an app, their versions, and their errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn import datasets  # noqa: E402
from sklearn.base import BaseEstimator, TransformerMixin  # noqa: E402
from sklearn.decomposition import PCA, TruncatedSVD  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from chariots_core import (  # noqa: E402  # noqa: E402
    BaseOp,
    Chariots,
    Node,
    Pipeline,
    VersionedField,
    VersionedFieldDict,
    VersionError,
    VersionType,
)
from chariots_core.errors import NotFittedError, failed_node  # noqa: E402
from chariots_core.ml import MLMode, MLOpDefinitionError  # noqa: E402
from chariots_sklearn import SKSupervisedOp, SKUnsupervisedOp  # noqa: E402

IRIS = datasets.load_iris()
X, Y = IRIS["data"], IRIS["target"]
SAMPLE = [[1.0, 2.0, 3.0, 4.0], [5.9, 3.0, 5.1, 1.8]]


class IrisFullDataSet(BaseOp):
    def execute(self):
        return X, Y


class PCAOp(SKUnsupervisedOp):
    training_update_version = VersionType.MAJOR
    model_parameters = VersionedFieldDict(VersionType.MAJOR, {"n_components": 2})
    model_class = VersionedField(PCA, VersionType.MAJOR)


class LogisticOp(SKSupervisedOp):
    training_update_version = VersionType.PATCH
    model_class = LogisticRegression
    model_parameters = VersionedFieldDict(VersionType.MINOR, {"max_iter": 500})


def seed_pipelines() -> tuple[Pipeline, Pipeline]:
    """The README's train/pred pipelines, imports changed only."""
    train = Pipeline(
        [
            Node(IrisFullDataSet(), output_nodes=["x", "y"]),
            Node(PCAOp(MLMode.FIT_PREDICT), input_nodes=["x"], output_nodes="x_transformed"),
            Node(LogisticOp(MLMode.FIT), input_nodes=["x_transformed", "y"]),
        ],
        "train",
    )
    pred = Pipeline(
        [
            Node(PCAOp(MLMode.PREDICT), input_nodes=["__pipeline_input__"], output_nodes="x_transformed"),
            Node(LogisticOp(MLMode.PREDICT), input_nodes=["x_transformed"], output_nodes=["__pipeline_output__"]),
        ],
        "pred",
    )
    return train, pred


def reference_predictions(rows) -> np.ndarray:
    pca = PCA(n_components=2).fit(X)
    model = LogisticRegression(max_iter=500).fit(pca.transform(X), Y)
    return model.predict(pca.transform(np.asarray(rows)))


def test_seed_readme_train_save_load_predict(store_kwargs):
    train, pred = seed_pipelines()
    with Chariots([train, pred], **store_kwargs) as app:
        app.call_pipeline(train)
        trained = app.pipeline_versions(train)
        app.save_pipeline(train)
        loaded = app.load_pipeline(pred)
        response = app.call_pipeline(pred, SAMPLE)
    assert loaded == {"pcaop": trained["pcaop"], "logisticop": trained["logisticop"]}
    assert response.versions["pcaop"] == trained["pcaop"]
    np.testing.assert_array_equal(response.value, reference_predictions(SAMPLE))


def single_op_pipeline(op, name, inputs=("__pipeline_input__",)) -> Pipeline:
    return Pipeline([Node(op, input_nodes=list(inputs), output_nodes="__pipeline_output__")], name)


def test_unsupervised_op_in_all_three_modes(store_kwargs):
    fit = Pipeline([Node(PCAOp(MLMode.FIT), input_nodes=["__pipeline_input__"])], "fit")
    fit_predict = single_op_pipeline(PCAOp(MLMode.FIT_PREDICT), "fit_predict")
    predict = single_op_pipeline(PCAOp(MLMode.PREDICT), "predict")
    expected = PCA(n_components=2).fit(X)
    with Chariots([fit, fit_predict, predict], **store_kwargs) as app:
        np.testing.assert_allclose(app.call_pipeline(fit_predict, X).value, expected.transform(X))
        assert app.call_pipeline(fit, X).value is None
        app.save_pipeline(fit)
        app.load_pipeline(predict)
        np.testing.assert_allclose(app.call_pipeline(predict, SAMPLE).value, expected.transform(SAMPLE))


def test_supervised_op_in_all_three_modes(store_kwargs):
    inputs = ("x", "y")
    split = Node(IrisFullDataSet(), output_nodes=["x", "y"])
    fit = Pipeline([split, Node(LogisticOp(MLMode.FIT), input_nodes=list(inputs))], "fit")
    fit_predict = Pipeline(
        [
            Node(IrisFullDataSet(), output_nodes=["x", "y"]),
            Node(LogisticOp(MLMode.FIT_PREDICT), input_nodes=list(inputs), output_nodes="__pipeline_output__"),
        ],
        "fit_predict",
    )
    predict = single_op_pipeline(LogisticOp(MLMode.PREDICT), "predict")
    expected = LogisticRegression(max_iter=500).fit(X, Y)
    with Chariots([fit, fit_predict, predict], **store_kwargs) as app:
        np.testing.assert_array_equal(app.call_pipeline(fit_predict).value, expected.predict(X))
        app.call_pipeline(fit)
        app.save_pipeline(fit)
        app.load_pipeline(predict)
        np.testing.assert_array_equal(app.call_pipeline(predict, SAMPLE).value, expected.predict(SAMPLE))


def _differing_parts(a: type, b: type) -> set[str]:
    return {part.value for part in VersionType if a.__version__.subversion(part) != b.__version__.subversion(part)}


def test_model_parameters_change_the_subversion_they_are_declared_with():
    class ThreeComponents(PCAOp):
        model_parameters = VersionedFieldDict(VersionType.MAJOR, {"n_components": 3})

    class SameParameters(PCAOp):
        model_parameters = VersionedFieldDict(VersionType.MAJOR, {"n_components": 2})

    class MoreIterations(LogisticOp):
        model_parameters = VersionedFieldDict(VersionType.MINOR, {"max_iter": 900})

    assert _differing_parts(PCAOp, ThreeComponents) == {"major"}
    assert _differing_parts(PCAOp, SameParameters) == set()
    assert _differing_parts(LogisticOp, MoreIterations) == {"minor"}


def test_model_class_counts_only_when_declared_as_a_versioned_field():
    class VersionedSVD(PCAOp):
        model_class = VersionedField(TruncatedSVD, VersionType.MAJOR)

    class PlainPCA(SKUnsupervisedOp):
        model_class = PCA

    class PlainSVD(SKUnsupervisedOp):
        model_class = TruncatedSVD

    assert _differing_parts(PCAOp, VersionedSVD) == {"major"}
    assert _differing_parts(PlainPCA, PlainSVD) == set()


def test_predict_function_as_a_versioned_field_predicts_probabilities(store_kwargs):
    class PredictOp(LogisticOp):
        predict_function = VersionedField("predict", VersionType.MAJOR)

    class ProbaOp(LogisticOp):
        predict_function = VersionedField("predict_proba", VersionType.MAJOR)

    assert _differing_parts(PredictOp, ProbaOp) == {"major"}
    pipeline = Pipeline(
        [
            Node(IrisFullDataSet(), output_nodes=["x", "y"]),
            Node(ProbaOp(MLMode.FIT_PREDICT), input_nodes=["x", "y"], output_nodes="__pipeline_output__"),
        ],
        "proba",
    )
    with Chariots([pipeline], **store_kwargs) as app:
        probabilities = app.call_pipeline(pipeline).value
    assert probabilities.shape == (len(X), 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


class Shift(TransformerMixin, BaseEstimator):
    """An estimator whose fit takes an extra keyword argument."""

    def fit(self, X, y=None, shift=0.0):  # noqa: N803
        self.shift_ = shift
        return self

    def transform(self, X):  # noqa: N803
        return np.asarray(X) + self.shift_


def test_fit_extra_parameters_reach_the_estimator_and_the_version():
    class ShiftOp(SKUnsupervisedOp):
        model_class = Shift
        fit_extra_parameters = VersionedFieldDict(VersionType.MINOR, {"shift": 10.0})

    class OtherShiftOp(ShiftOp):
        fit_extra_parameters = VersionedFieldDict(VersionType.MINOR, {"shift": 1.0})

    np.testing.assert_allclose(ShiftOp(MLMode.FIT_PREDICT).execute([[1.0, 2.0]]), [[11.0, 12.0]])
    assert _differing_parts(ShiftOp, OtherShiftOp) == {"minor"}


def test_overriding_init_model_builds_the_estimator_each_fit_starts_from():
    """chariots 0.2's scikit-learn ops built their estimator in _init_model: override it."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    class ScaledPCAOp(SKUnsupervisedOp):
        model_class = PCA
        model_parameters = VersionedFieldDict(VersionType.MAJOR, {"n_components": 2})

        def _init_model(self):
            return make_pipeline(StandardScaler(), self.model_class(**self.model_parameters))

    op = ScaledPCAOp(MLMode.FIT)
    op.execute(X)
    first = op.model
    op.execute(X[:50])
    assert op.model is not first and op.model.steps[0][0] == "standardscaler"
    expected = make_pipeline(StandardScaler(), PCA(n_components=2)).fit(X[:50]).transform(SAMPLE)
    np.testing.assert_allclose(op.predict(SAMPLE), expected)


def test_retraining_a_major_op_makes_loading_its_downstream_a_version_error(store_kwargs):
    train, pred = seed_pipelines()
    retrain_pca = Pipeline(
        [Node(IrisFullDataSet(), output_nodes=["x", "y"]), Node(PCAOp(MLMode.FIT), input_nodes=["x"])],
        "retrain_pca",
    )
    with Chariots([train, pred, retrain_pca], **store_kwargs) as app:
        app.call_pipeline(train)
        app.save_pipeline(train)
        app.load_pipeline(pred)
        before = app.call_pipeline(pred, SAMPLE)
        app.call_pipeline(retrain_pca)
        app.save_pipeline(retrain_pca)
        with pytest.raises(VersionError, match="'pcaop' -> 'logisticop'.*train"):
            app.load_pipeline(pred)
        after = app.call_pipeline(pred, SAMPLE)  # still serving what it had loaded
        assert after.versions == before.versions
        np.testing.assert_array_equal(after.value, before.value)


def test_retraining_a_patch_op_keeps_its_downstream_loadable(store_kwargs):
    train, pred = seed_pipelines()
    retrain_logistic = Pipeline(
        [
            Node(IrisFullDataSet(), output_nodes=["x", "y"]),
            Node(PCAOp(MLMode.PREDICT), input_nodes=["x"], output_nodes="x_transformed"),
            Node(LogisticOp(MLMode.FIT), input_nodes=["x_transformed", "y"]),
        ],
        "retrain_logistic",
    )
    with Chariots([train, pred, retrain_logistic], **store_kwargs) as app:
        app.call_pipeline(train)
        app.save_pipeline(train)
        first = app.load_pipeline(pred)
        app.load_pipeline(retrain_logistic)
        app.call_pipeline(retrain_logistic)
        app.save_pipeline(retrain_logistic)
        second = app.load_pipeline(pred)
    assert second["pcaop"] == first["pcaop"]
    assert second["logisticop"] != first["logisticop"]
    assert second["logisticop"].major == first["logisticop"].major


def test_predict_before_any_fit_is_a_node_error_caused_by_not_fitted(store_kwargs):
    _, pred = seed_pipelines()
    with Chariots([pred], **store_kwargs) as app:
        with pytest.raises(NotFittedError) as caught:
            app.call_pipeline(pred, SAMPLE)
    assert failed_node(caught.value) == "pcaop"
    assert caught.value.__notes__ == ["in node 'pcaop' of pipeline 'pred'"]


def test_wrong_input_shape_is_the_models_error_wrapped_with_the_node_name(store_kwargs):
    train, pred = seed_pipelines()
    with Chariots([train, pred], **store_kwargs) as app:
        app.call_pipeline(train)
        app.save_pipeline(train)
        app.load_pipeline(pred)
        with pytest.raises(ValueError, match="3 features") as caught:  # scikit-learn's own error
            app.call_pipeline(pred, [[1.0, 2.0, 3.0]])
        assert failed_node(caught.value) == "pcaop"
        np.testing.assert_array_equal(app.call_pipeline(pred, SAMPLE).value, reference_predictions(SAMPLE))


def test_an_op_without_model_class_or_with_a_missing_predict_function_fails_at_creation():
    class NoModel(SKSupervisedOp):
        pass

    class NoSuchMethod(LogisticOp):
        predict_function = "predict_mood"

    with pytest.raises(MLOpDefinitionError, match="NoModel.model_class must be a scikit-learn estimator class"):
        NoModel(MLMode.FIT)
    with pytest.raises(MLOpDefinitionError, match="'predict_mood'.*LogisticRegression has no such method"):
        NoSuchMethod(MLMode.PREDICT)


def test_missing_scikit_learn_is_a_backend_error_naming_the_extra():
    script = textwrap.dedent(
        """
        import sys
        sys.modules["sklearn"] = None  # what an environment without scikit-learn looks like
        from chariots_core.errors import BackendError
        try:
            import chariots_sklearn
        except BackendError as exc:
            print("BackendError:", exc)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "BackendError: chariots_sklearn needs scikit-learn" in result.stdout
    assert "pip install 'chariots[sklearn]'" in result.stdout
