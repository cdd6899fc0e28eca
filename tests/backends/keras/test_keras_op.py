"""KerasOp on Keras 3 (JAX on CPU): the iris network in every mode, the .keras format, errors.

One module-scoped app trains the example network once; the other fits use two epochs.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import dill
import numpy as np
import pytest

pytest.importorskip("jax")
pytest.importorskip("chariots_keras")  # picks the JAX backend before keras is imported

import keras  # noqa: E402
from keras import layers, models  # noqa: E402

from chariots_core import Chariots, MemoryOpStore, MemorySaver, Node, Pipeline, VersionedFieldDict, VersionType  # noqa: E402  # noqa: E402
from chariots_core.errors import NotFittedError, SerializationError  # noqa: E402
from chariots_core.ml import MLMode, MLOpDefinitionError, WrongTypeError  # noqa: E402
from chariots_keras import KerasOp, KerasSerializer  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "iris"
SAMPLE = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [1.0, 2.0, 3.0, 4.0]]


@pytest.fixture(scope="module")
def example():
    """The examples/iris/keras_iris.py module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(EXAMPLE))
        import keras_iris

        yield keras_iris


def app_kwargs(path: Path) -> dict:
    if importlib.util.find_spec("chariots_lmdb") and importlib.util.find_spec("chariots_fsspec"):
        return {"path": path}
    return {"op_store": MemoryOpStore(), "saver": MemorySaver()}


@pytest.fixture(scope="module")
def trained(example, tmp_path_factory):
    """An app that ran and saved train_keras_iris, then loaded pred_keras_iris."""
    train, pred = example.make_keras_pipelines()
    with Chariots([train, pred], **app_kwargs(tmp_path_factory.mktemp("keras") / "app")) as app:
        app.call_pipeline(train)
        app.save_pipeline(train)
        app.load_pipeline(pred)
        yield app, train, pred


def fitted_model(train: Pipeline) -> keras.Model:
    return train.node_for_name["irisnet"].op.model


def test_prediction_pipeline_serves_the_trained_network(trained):
    app, train, pred = trained
    response = app.call_pipeline(pred, SAMPLE)
    expected = np.argmax(fitted_model(train).predict(np.array(SAMPLE), verbose=0), axis=1)
    assert response.value == expected.tolist()
    assert response.versions["irisnet"] == app.pipeline_versions(train)["irisnet"]


def test_the_model_is_stored_in_keras_format_not_pickled(trained):
    app, _, _ = trained
    record = app.op_store.op_versions("irisnet")[-1]
    head, _, body = app.saver.load(record.blob_path).partition(b"\n")
    assert json.loads(head)["serializer"] == "KerasSerializer"
    names = zipfile.ZipFile(io.BytesIO(body)).namelist()
    assert "config.json" in names and "model.weights.h5" in names


def test_wrong_input_shape_is_a_value_error_naming_the_node_and_serving_goes_on(trained):
    app, _, pred = trained
    good = app.call_pipeline(pred, SAMPLE).value
    for bad in ([[1.0, 2.0, 3.0]], [1.0, 2.0, 3.0, 4.0], [[1.0, 2.0], [1.0]]):
        with pytest.raises(ValueError, match="op 'irisnet'") as caught:
            app.call_pipeline(pred, bad)
        assert caught.value.__notes__ == ["in node 'irisnet' of pipeline 'pred_keras_iris'"]
    assert app.call_pipeline(pred, SAMPLE).value == good


def test_copies_and_pickles_of_a_loaded_op_predict_the_same(trained):
    app, train, _ = trained
    op = train.node_for_name["irisnet"].op
    expected = op.predict(SAMPLE)
    for twin in (copy.deepcopy(op), dill.loads(dill.dumps(op))):
        assert twin.op_version == op.op_version
        np.testing.assert_allclose(twin.predict(SAMPLE), expected, rtol=1e-6)


class KerasLinear(KerasOp):
    """The seed's example op, verbatim but for the imports."""

    fit_params = VersionedFieldDict(VersionType.MAJOR, {
        'epochs': 3,
        'batch_size': 32,
    })

    def _init_model(self, *input_data_sets):
        model = models.Sequential([layers.Dense(3, activation='softmax', input_shape=(4,))])
        model.compile(loss='categorical_crossentropy', optimizer='adam')
        return model


def test_fit_predict_mode_with_the_seeds_keras_linear(example):
    pipeline = Pipeline(
        [
            Node(example.DownloadIris(), output_nodes="iris_df"),
            Node(example.XYSplit(), input_nodes=["iris_df"], output_nodes=["X", "y"]),
            Node(example.Categorize(), input_nodes=["y"], output_nodes="y_cat"),
            Node(KerasLinear(MLMode.FIT_PREDICT, verbose=0), input_nodes=["X", "y_cat"], output_nodes="__pipeline_output__"),
        ],
        "fit_predict",
    )
    with Chariots([pipeline], op_store=MemoryOpStore(), saver=MemorySaver()) as app:
        response = app.call_pipeline(pipeline)
        op = pipeline.node_for_name["keraslinear"].op
    assert response.value.shape == (150, 3)
    np.testing.assert_allclose(response.value.sum(axis=1), 1.0, rtol=1e-5)
    features, _ = example.XYSplit().execute(example.DownloadIris().execute())
    np.testing.assert_allclose(response.value, op.model.predict(features, verbose=0), rtol=1e-5)
    assert response.versions["keraslinear"] == op.op_version != KerasLinear.__version__


def _differing_parts(a: type, b: type) -> set[str]:
    return {part.value for part in VersionType if a.__version__.subversion(part) != b.__version__.subversion(part)}


def test_input_fit_and_predict_params_are_part_of_the_version(example):
    class LongerNet(example.IrisNet):
        fit_params = VersionedFieldDict(VersionType.MAJOR, {"epochs": 60, "batch_size": 16})

    class PatientNet(example.IrisNet):
        fit_params = VersionedFieldDict(VersionType.MAJOR, {})
        input_params = VersionedFieldDict(VersionType.MINOR, {"epochs": 30, "batch_size": 16})

    class BatchedNet(example.IrisNet):
        predict_params = VersionedFieldDict(VersionType.MINOR, {"batch_size": 8})

    class OtherBatchedNet(BatchedNet):
        predict_params = VersionedFieldDict(VersionType.MINOR, {"batch_size": 64})

    assert _differing_parts(example.IrisNet, LongerNet) == {"major"}
    assert _differing_parts(example.IrisNet, PatientNet) == {"major", "minor"}
    assert _differing_parts(BatchedNet, OtherBatchedNet) == {"minor"}


class Recorded(KerasOp):
    """A one-layer network whose fit and predict keyword arguments are recorded."""

    def _init_model(self, *input_data_sets):
        model = models.Sequential([keras.Input((np.shape(input_data_sets[0])[1],)), layers.Dense(1)])
        model.compile(loss="mse", optimizer="sgd")
        return model


def test_input_params_go_to_fit_as_in_chariots_0_2_and_predict_params_to_predict():
    epochs_seen = []

    class ZeroTwoStyle(Recorded):
        input_params = VersionedFieldDict(VersionType.MAJOR, {
            "epochs": 3,
            "batch_size": 2,
            "callbacks": [keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: epochs_seen.append(epoch))],
        })
        predict_params = VersionedFieldDict(VersionType.MAJOR, {"batch_size": 1})

    x, y = np.ones((4, 2), dtype="float32"), np.zeros((4, 1), dtype="float32")
    op = ZeroTwoStyle(MLMode.FIT_PREDICT, verbose=0)
    assert op.execute(x, y).shape == (4, 1)
    assert epochs_seen == [0, 1, 2]
    assert op.predict(x).shape == (4, 1)  # predict_params is not given the fit's epochs


CALLBACKS_VERSION = """
import chariots_keras, keras
from chariots_core import VersionedField, VersionedFieldDict, VersionType
from chariots_keras import KerasOp

class Net(KerasOp):
    input_params = VersionedFieldDict(VersionType.MAJOR, {
        "epochs": 3,
        "callbacks": VersionedField([keras.callbacks.EarlyStopping(patience=PATIENCE)], VersionType.MINOR),
    })

print(str(Net.__version__).rsplit("_", 1)[0])
"""


def test_callbacks_in_input_params_give_the_same_version_in_every_process():
    """Otherwise a model saved by one process could never be loaded by another (its code would look changed)."""
    versions = [
        run_python(CALLBACKS_VERSION.replace("PATIENCE", patience), {}).stdout.strip()
        for patience in ("2", "2", "5")
    ]
    assert versions[0] == versions[1] != versions[2]
    first, other = (version.split("_") for version in (versions[0], versions[2]))
    assert first[0] == other[0] and first[1] != other[1]  # the callbacks' own (MINOR) subversion


def test_one_fit_keyword_in_both_input_params_and_fit_params_is_refused_when_the_class_is_written():
    with pytest.raises(MLOpDefinitionError, match=r"Twice sets 'epochs' in both input_params and fit_params"):

        class Twice(Recorded):
            input_params = VersionedFieldDict(VersionType.MAJOR, {"epochs": 3})
            fit_params = VersionedFieldDict(VersionType.MAJOR, {"epochs": 5})


def test_predicting_before_any_fit_raises_not_fitted_naming_the_node(example):
    _, pred = example.make_keras_pipelines()
    with Chariots([pred], op_store=MemoryOpStore(), saver=MemorySaver()) as app:
        with pytest.raises(NotFittedError) as caught:
            app.call_pipeline(pred, SAMPLE)
    assert caught.value.__notes__ == ["in node 'irisnet' of pipeline 'pred_keras_iris'"]


def test_init_model_must_be_overridden_and_return_a_keras_model():
    class NoModel(KerasOp):
        pass

    class NotAModel(KerasOp):
        def _init_model(self, *input_data_sets):
            return "a model"

    x, y = np.zeros((4, 2)), np.zeros((4, 1))
    with pytest.raises(NotImplementedError, match="NoModel must override _init_model"):
        NoModel(MLMode.FIT).execute(x, y)
    with pytest.raises(MLOpDefinitionError, match="NotAModel._init_model returned a str"):
        NotAModel(MLMode.FIT).execute(x, y)


@pytest.mark.parametrize("data", [b"", b"garbage", b"PK\x03\x04 not really a zip"])
def test_keras_serializer_refuses_garbage(data):
    with pytest.raises(SerializationError, match="KerasSerializer cannot read these bytes"):
        KerasSerializer().deserialize_object(data)


def test_keras_serializer_refuses_what_is_not_a_model():
    with pytest.raises(WrongTypeError, match="only serializes keras.Model objects \\(got a dict\\)"):
        KerasSerializer().serialize_object({"weights": [1, 2]})


def run_python(script: str, env_changes: dict[str, str | None]) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in env_changes}
    env.update({key: value for key, value in env_changes.items() if value is not None})
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180, env=env)


def test_jax_is_the_default_backend_on_a_fresh_machine_and_after(tmp_path):
    """First run: no keras.json. Second run: the keras.json Keras wrote, naming TensorFlow
    (not installed here) -- still not a choice the user made."""
    script = "import chariots_keras, keras; print('backend:', keras.backend.backend())"
    for _ in range(2):
        result = run_python(script, {"KERAS_BACKEND": None, "KERAS_HOME": str(tmp_path)})
        assert result.returncode == 0, result.stderr
        assert "backend: jax" in result.stdout
    if importlib.util.find_spec("tensorflow") is None:
        assert json.loads((tmp_path / "keras.json").read_text())["backend"] == "tensorflow"


def test_a_backend_the_user_picks_is_kept_and_loads_a_jax_trained_model(trained, tmp_path):
    app, train, _ = trained
    op = train.node_for_name["irisnet"].op
    saved = tmp_path / "irisnet.bin"
    saved.write_bytes(op.serialize())
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(EXAMPLE)!r})
        import chariots_keras, keras
        from keras_iris import IrisNet
        op = IrisNet("predict", verbose=0)
        op.load(open({str(saved)!r}, "rb").read())
        print("backend:", keras.backend.backend())
        print("version:", str(op.op_version))
        print("prediction:", json.dumps(op.execute({SAMPLE!r}).tolist()))
        """
    )
    result = run_python(script, {"KERAS_BACKEND": "numpy"})
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    assert lines["backend"] == "numpy"
    assert lines["version"].split("_")[:3] == str(op.op_version).split("_")[:3]  # the three digests
    np.testing.assert_allclose(json.loads(lines["prediction"]), op.predict(SAMPLE), rtol=1e-4, atol=1e-6)


def test_missing_keras_is_a_backend_error_naming_the_extra():
    script = textwrap.dedent(
        """
        import sys
        sys.modules["keras"] = None  # what an environment without keras looks like
        from chariots_core.errors import BackendError
        try:
            import chariots_keras
        except BackendError as exc:
            print("BackendError:", exc)
        """
    )
    result = run_python(script, {"KERAS_BACKEND": None})
    assert result.returncode == 0, result.stderr
    assert "BackendError: chariots_keras needs keras with the jax backend" in result.stdout
    assert "pip install 'chariots[keras]'" in result.stdout


def test_the_keras_example_runs_as_a_script(example, capsys):
    assert example.main() == 0
    out = capsys.readouterr().out
    assert "Keras backend: jax" in out
    assert "-> classes [" in out
