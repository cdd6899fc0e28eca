"""``_init_model`` as chariots 0.2 users write it: each fit starts from the model it returns.

The ops below follow the seed's "create a new MLOp class" recipe: ``fit``, ``predict`` and
``_init_model``, with ``fit`` working on ``self._model``.
"""

from __future__ import annotations

import pytest

from chariots_core import Chariots, Node, Pipeline
from chariots_core.ml import BaseMLOp, JSONSerializer, MLMode, MLOpDefinitionError

IN, OUT = "__pipeline_input__", "__pipeline_output__"


class RunningMean:
    """A model that learns incrementally: a fit that reused it would remember older data."""

    def __init__(self, offset=0.0):
        self.offset, self.total, self.count = offset, 0.0, 0

    def fit(self, values):
        self.total += sum(values)
        self.count += len(values)

    def predict(self, values):
        return [value - self.total / self.count + self.offset for value in values]


class MeanOp(BaseMLOp):
    """A 0.2-era op: `_init_model(self)` takes nothing."""

    init_calls = 0

    def _init_model(self):
        type(self).init_calls += 1
        return RunningMean()

    def fit(self, values):
        self._model.fit(values)

    def predict(self, values):
        return self._model.predict(values)


class SizedOp(BaseMLOp):
    """The seed's Keras example shape: `_init_model(self, *input_data_sets)` sizes the model."""

    seen: list = []

    def _init_model(self, *input_data_sets):
        type(self).seen.append(input_data_sets)
        return RunningMean(offset=len(input_data_sets))

    def fit(self, values, weights):
        self._model.fit(values)

    def predict(self, values):
        return self._model.predict(values)


def test_a_0_2_style_op_trains_saves_loads_and_predicts_through_an_app(store_kwargs):
    train = Pipeline([Node(MeanOp(MLMode.FIT), input_nodes=[IN])], "train")
    pred = Pipeline([Node(MeanOp(MLMode.PREDICT), input_nodes=[IN], output_nodes=OUT)], "pred")
    with Chariots([train, pred], **store_kwargs) as app:
        app.call_pipeline(train, [1.0, 2.0, 6.0])
        app.save_pipeline(train)
        app.load_pipeline(pred)
        assert app.call_pipeline(pred, [3.0, 4.0]).value == [0.0, 1.0]


def test_every_fit_starts_from_a_fresh_model():
    op = MeanOp(MLMode.FIT)
    before = MeanOp.init_calls
    op.execute([10.0])
    first = op.model
    op.execute([1.0, 3.0])
    assert MeanOp.init_calls == before + 2
    assert op.model is not first
    assert op.predict([2.0]) == [0.0]  # the mean of the second fit only


def test_init_model_receives_the_fits_inputs_when_it_takes_them():
    SizedOp.seen.clear()
    op = SizedOp(MLMode.FIT_PREDICT)
    assert op.execute([1.0, 3.0], [0.5, 0.5]) == [1.0, 3.0]  # offset 2: it got both inputs
    assert SizedOp.seen == [([1.0, 3.0], [0.5, 0.5])]


def test_init_model_with_named_parameters_gets_the_inputs_in_order():
    class FirstOnly(MeanOp):
        def _init_model(self, values, weights=None):
            return RunningMean(offset=values[0] + (0 if weights is None else 100))

        def fit(self, values, weights):
            self._model.fit(values)

    assert FirstOnly(MLMode.FIT_PREDICT).execute([4.0, 6.0], [1, 1]) == [103.0, 105.0]


def test_predicting_never_builds_a_model():
    saved = fitted_bytes()
    before = MeanOp.init_calls
    op = MeanOp(MLMode.PREDICT)
    op.load(saved)
    assert op.execute([2.0]) == [0.0]
    assert MeanOp.init_calls == before


def fitted_bytes() -> bytes:
    op = MeanOp(MLMode.FIT)
    op.execute([1.0, 3.0])
    return op.serialize()


def test_a_failed_fit_keeps_the_model_and_version_the_op_had():
    class Fragile(MeanOp):
        def fit(self, values):
            if not values:
                raise ValueError("nothing to fit")
            super().fit(values)

    op = Fragile(MLMode.FIT)
    op.execute([2.0])
    model, version = op.model, op.op_version
    with pytest.raises(ValueError, match="nothing to fit"):
        op.execute([])
    assert op.model is model and op.op_version == version


def test_ops_without_init_model_build_their_model_in_fit_as_before():
    class Mean(BaseMLOp):
        serializer_cls = JSONSerializer

        def fit(self, values):
            self._model = sum(values) / len(values)

        def predict(self, values):
            return [value - self._model for value in values]

    op = Mean(MLMode.FIT)
    op.execute([1.0, 3.0])
    op.execute([5.0])
    assert op.model == 5.0


def test_the_double_underscore_spelling_of_the_rendered_0_2_docs_is_refused_with_the_fix():
    with pytest.raises(MLOpDefinitionError, match=r"defines __init_model, which Python renames to _Pasted__init_model.*name it _init_model"):

        class Pasted(MeanOp):
            def __init_model(self, *input_data_sets):
                return RunningMean()
