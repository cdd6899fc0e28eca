"""BaseMLOp: modes, versions bumped by training, the saved training identity, copies, errors."""

from __future__ import annotations

import copy
import json
import threading

import dill
import pytest

from chariots_core import Chariots, Node, Pipeline, VersionType
from chariots_core.errors import NotFittedError, SerializationError, failed_node
from chariots_core.ml import BaseMLOp, BaseSerializer, DillSerializer, JSONSerializer, MLMode, MLOpDefinitionError


class MeanOp(BaseMLOp):
    """Centers values on the mean seen at fit time; its model is a float, saved as JSON."""

    serializer_cls = JSONSerializer

    def fit(self, values):
        self._model = sum(values) / len(values)

    def predict(self, values):
        return [value - self._model for value in values]


class MajorMeanOp(MeanOp):
    training_update_version = VersionType.MAJOR


def fitted(op_class=MeanOp, values=(1.0, 2.0, 6.0)) -> BaseMLOp:
    op = op_class(MLMode.FIT)
    op.execute(list(values))
    return op


def test_fit_mode_fits_and_returns_nothing():
    op = MeanOp(MLMode.FIT)
    assert op.execute([1.0, 2.0, 6.0]) is None
    assert op.is_fitted and op.model == 3.0


def test_fit_predict_mode_fits_then_predicts_on_its_first_input():
    assert MeanOp(MLMode.FIT_PREDICT).execute([1.0, 2.0, 6.0]) == [-2.0, -1.0, 3.0]


def test_mode_accepts_the_enum_value_and_rejects_anything_else():
    assert MeanOp("predict").mode is MLMode.PREDICT
    with pytest.raises(MLOpDefinitionError, match="'mode' of MeanOp must be an MLMode.*'train'") as caught:
        MeanOp("train")
    assert isinstance(caught.value, ValueError)


def test_predict_before_fit_or_load_names_the_op_and_the_fix():
    with pytest.raises(NotFittedError, match="'meanop' has no model.*load_pipeline"):
        MeanOp(MLMode.PREDICT).execute([1.0])


@pytest.mark.parametrize(
    ("op_class", "bumped"), [(MeanOp, VersionType.PATCH), (MajorMeanOp, VersionType.MAJOR)]
)
def test_each_fit_changes_only_the_training_update_subversion(op_class, bumped):
    op = op_class(MLMode.FIT)
    assert op.op_version == op_class.__version__  # untrained: the class version
    seen = []
    for _ in range(3):
        op.execute([1.0, 2.0])
        seen.append(op.op_version)
    for before, after in zip(seen, seen[1:]):
        for part in VersionType:
            changed = before.subversion(part) != after.subversion(part)
            assert changed is (part is bumped), part


def test_load_restores_the_model_and_the_exact_training_version():
    trained = fitted()
    loaded = MeanOp(MLMode.PREDICT)
    loaded.load(trained.serialize())
    assert loaded.op_version == trained.op_version
    assert str(loaded.op_version).split("_")[:3] == str(trained.op_version).split("_")[:3]
    assert loaded.execute([3.0, 5.0]) == [0.0, 2.0]


def test_serialize_before_fit_is_refused():
    with pytest.raises(NotFittedError):
        MeanOp(MLMode.FIT).serialize()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a saved machine-learning op"),
        (b"\x80\x04garbage", "not a saved machine-learning op"),
        (b'{"format": "other"}\n3.0', "not a saved machine-learning op"),
        (b"[1, 2]\n3.0", "not a saved machine-learning op"),
    ],
)
def test_load_rejects_bytes_that_are_not_a_saved_op(data, message):
    with pytest.raises(SerializationError, match=f"op 'meanop' \\(MeanOp\\).*{message}"):
        MeanOp(MLMode.PREDICT).load(data)


def _header(data: bytes) -> dict:
    return json.loads(data.partition(b"\n")[0])


def _with_header(data: bytes, **changes) -> bytes:
    header = {**_header(data), **changes}
    return json.dumps(header).encode() + b"\n" + data.partition(b"\n")[2]


def test_load_rejects_another_format_version_a_bad_identity_and_a_corrupt_model():
    data = fitted().serialize()
    op = MeanOp(MLMode.PREDICT)
    with pytest.raises(SerializationError, match="format version 99.*retrain"):
        op.load(_with_header(data, format_version=99))
    with pytest.raises(SerializationError, match="training_id"):
        op.load(_with_header(data, training_id=None))
    with pytest.raises(SerializationError, match="'meanop' cannot load its saved model.*JSONSerializer"):
        op.load(data.partition(b"\n")[0] + b"\n{not json")
    assert not op.is_fitted  # a failed load leaves the op as it was


def test_load_rejects_bytes_written_with_another_serializer():
    class DillMeanOp(MeanOp):
        serializer_cls = DillSerializer

    with pytest.raises(SerializationError, match="saved with JSONSerializer.*now DillSerializer"):
        DillMeanOp(MLMode.PREDICT).load(fitted().serialize())


def test_bad_class_attributes_fail_when_the_class_is_defined():
    with pytest.raises(MLOpDefinitionError, match="training_update_version.*'huge'"):

        class Huge(MeanOp):
            training_update_version = "huge"

    with pytest.raises(TypeError, match="serializer_cls must be a BaseSerializer"):

        class NotASerializer(MeanOp):
            serializer_cls = json


def test_fit_and_predict_must_be_overridden():
    class Bare(BaseMLOp):
        pass

    with pytest.raises(NotImplementedError, match="Bare must override fit"):
        Bare(MLMode.FIT).execute(1)
    with pytest.raises(NotImplementedError, match="Bare must override predict"):
        Bare(MLMode.FIT).predict(1)


def test_only_predict_ops_need_saved_state_and_refuse_other_versions():
    assert [MeanOp(mode).requires_saved_state for mode in MLMode] == [
        mode is MLMode.PREDICT for mode in MLMode
    ]
    assert [MeanOp(mode).allow_version_change for mode in MLMode] == [
        mode is not MLMode.PREDICT for mode in MLMode
    ]


class Locked:
    """A model that neither pickles nor deep-copies (it holds a lock), like some frameworks' models."""

    def __init__(self, value: float) -> None:
        self.value, self.lock = value, threading.Lock()


class LockedSerializer(BaseSerializer):
    def serialize_object(self, target: Locked) -> bytes:
        return json.dumps(target.value).encode()

    def deserialize_object(self, serialized_object: bytes) -> Locked:
        return Locked(json.loads(serialized_object))


class LockedMeanOp(MeanOp):
    serializer_cls = LockedSerializer

    def fit(self, values):
        self._model = Locked(sum(values) / len(values))

    def predict(self, values):
        return [value - self._model.value for value in values]


def test_copies_and_pickles_carry_the_model_through_the_serializer():
    op = fitted(LockedMeanOp)
    for twin in (copy.deepcopy(op), dill.loads(dill.dumps(op))):
        assert twin.op_version == op.op_version
        assert twin.model is not op.model
        assert twin.predict([3.0]) == op.predict([3.0]) == [0.0]
    unfitted = dill.loads(dill.dumps(LockedMeanOp(MLMode.PREDICT)))
    assert not unfitted.is_fitted


def pipelines() -> tuple[Pipeline, Pipeline]:
    train = Pipeline([Node(MeanOp(MLMode.FIT), input_nodes=["__pipeline_input__"])], "train")
    pred = Pipeline(
        [Node(MeanOp(MLMode.PREDICT), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")],
        "pred",
    )
    return train, pred


def test_train_save_load_predict_through_an_app_keeps_the_trained_version(store_kwargs):
    train, pred = pipelines()
    with Chariots([train, pred], **store_kwargs) as app:
        app.call_pipeline(train, [1.0, 2.0, 6.0])
        trained = app.pipeline_versions(train)["meanop"]
        app.save_pipeline(train)
    train, pred = pipelines()
    with Chariots([train, pred], **store_kwargs) as app:  # a restarted app, same store
        assert app.load_pipeline(pred)["meanop"] == trained
        response = app.call_pipeline(pred, [3.0, 4.0])
    assert response.value == [0.0, 1.0]
    assert response.versions["meanop"] == trained


def test_predicting_through_an_app_before_loading_names_the_node(store_kwargs):
    train, pred = pipelines()
    with Chariots([train, pred], **store_kwargs) as app:
        with pytest.raises(NotFittedError, match="'meanop' has no model") as caught:
            app.call_pipeline(pred, [1.0])
    assert failed_node(caught.value) == "meanop"
    assert caught.value.__notes__ == ["in node 'meanop' of pipeline 'pred'"]
