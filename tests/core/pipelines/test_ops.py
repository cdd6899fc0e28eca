"""Ops through the public API: names, versions, hooks and callbacks, the LoadableOp contract."""

from __future__ import annotations

import json

import pytest
from chariots_test_jobs import MeanModel
from chariots_test_ops import AddOneOp, ScaleOp

from chariots_core import (
    BaseOp,
    LoadableOp,
    Node,
    OpCallBack,
    Pipeline,
    SequentialRunner,
    VersionedField,
    VersionType,
)
from chariots_core.ml import MLMode
from chariots_core.pipelines.ops import trained_since


class CounterOp(LoadableOp):
    """Counts how many values it has seen; its count is its saved state."""

    step = VersionedField(1, VersionType.MINOR)

    def __init__(self, op_callbacks=None):
        super().__init__(op_callbacks)
        self.count = 0

    def execute(self, value):
        self.count += self.step
        return value

    def serialize(self) -> bytes:
        return json.dumps({"count": self.count}).encode()

    def load(self, serialized_object: bytes) -> None:
        self.count = json.loads(serialized_object)["count"]


def test_name_is_the_lower_case_class_name():
    assert AddOneOp().name == "addoneop"
    assert CounterOp().name == "counterop"
    assert repr(AddOneOp()) == "<AddOneOp op 'addoneop'>"


def test_op_version_is_the_class_version():
    assert CounterOp().op_version is CounterOp.__version__
    assert CounterOp().op_version != AddOneOp().op_version


def test_defaults_match_the_seed():
    op = AddOneOp()
    assert op.allow_version_change is False
    assert op.op_callbacks == []
    assert CounterOp().requires_saved_state is False


def test_base_op_without_execute_says_what_to_override():
    class Forgetful(BaseOp):
        pass

    with pytest.raises(NotImplementedError, match=r"Forgetful must override execute"):
        Forgetful().execute(1)


def test_op_whose_init_skips_super_still_runs_in_a_pipeline():
    class Configured(BaseOp):
        def __init__(self, amount):  # no super().__init__(): common in user code
            self.amount = amount

        def execute(self, value):
            return value + self.amount

    pipeline = Pipeline(
        [Node(Configured(5), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")],
        "configured",
    )
    assert SequentialRunner().run(pipeline, 1) == 6
    assert Configured(1).op_callbacks == ()


def test_execute_with_all_callbacks_runs_hooks_around_execute_in_order():
    calls = []

    class Recorder(OpCallBack):
        def before_execution(self, callback_op, args):
            calls.append(("callback before", callback_op.name, list(args)))

        def after_execution(self, callback_op, args, output):
            calls.append(("callback after", callback_op.name, list(args), output))

    class HookedOp(BaseOp):
        def before_execution(self, args):
            calls.append(("op before", list(args)))

        def execute(self, a, b):
            calls.append(("execute", a, b))
            return a * b

        def after_execution(self, args, output):
            calls.append(("op after", list(args), output))

    op = HookedOp(op_callbacks=[Recorder()])
    assert op.execute_with_all_callbacks([3, 4]) == 12
    assert calls == [
        ("callback before", "hookedop", [3, 4]),
        ("op before", [3, 4]),
        ("execute", 3, 4),
        ("op after", [3, 4], 12),
        ("callback after", "hookedop", [3, 4], 12),
    ]


def test_executor_skips_hooks_only_when_nothing_is_overridden():
    calls = []

    class AfterOnly(AddOneOp):
        def after_execution(self, args, output):
            calls.append(output)

    plain = AddOneOp()
    assert plain.executor() == plain.execute
    assert AfterOnly().executor()(1) == 2
    assert calls == [2]


def test_loadable_op_round_trips_its_state_through_bytes():
    trained = CounterOp()
    for value in range(3):
        trained.execute(value)
    data = trained.serialize()
    assert isinstance(data, bytes)

    fresh = CounterOp()
    fresh.load(data)
    assert fresh.count == 3
    assert fresh.op_version == trained.op_version


def test_loaded_op_runs_in_a_pipeline_with_its_state():
    op = CounterOp()
    op.load(json.dumps({"count": 41}).encode())
    pipeline = Pipeline(
        [Node(op, input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")], "count"
    )
    assert SequentialRunner().run(pipeline, "x") == "x"
    assert op.count == 42
    assert Node(op).is_loadable and not Node(AddOneOp()).is_loadable


def test_loadable_op_without_load_or_serialize_says_what_to_override():
    class Incomplete(LoadableOp):
        def execute(self, value):
            return value

    with pytest.raises(NotImplementedError, match=r"Incomplete must override serialize\(self\) -> bytes"):
        Incomplete().serialize()
    with pytest.raises(NotImplementedError, match=r"Incomplete must override load\(self, serialized_object: bytes\)"):
        Incomplete().load(b"")


def test_an_op_without_execute_fails_its_pipeline_run_naming_the_node():
    class Forgetful(BaseOp):
        pass

    pipeline = Pipeline([Node(Forgetful(), input_nodes=["__pipeline_input__"])], "forgetful_run")
    with pytest.raises(NotImplementedError) as info:
        SequentialRunner().run(pipeline, 1)
    assert info.value.__notes__ == ["in node 'forgetful' of pipeline 'forgetful_run'"]



# -- which ops a run trained -----------------------------------------------------------------------
def test_trained_since_reports_the_ops_that_now_hold_another_trained_state():
    fitted, untouched, scale, plain = MeanModel(MLMode.FIT), MeanModel(MLMode.FIT), ScaleOp(2), AddOneOp()
    ops = {"fitted": fitted, "untouched": untouched, "scale": scale, "plain": plain}
    before = {name: op.op_version for name, op in ops.items()}
    fitted.execute([1, 2, 3])
    scale.load(b"5")  # new state, but a plain loadable op's version never names it
    assert trained_since(ops, before) == {"fitted": fitted}
    assert trained_since(ops, {name: op.op_version for name, op in ops.items()}) == {}
    untouched.execute([4])
    assert trained_since(ops, before) == {"fitted": fitted, "untouched": untouched}
