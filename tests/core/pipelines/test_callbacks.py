"""Op and pipeline callbacks fire in exactly the order the seed documents."""

from __future__ import annotations

from chariots_core import BaseOp, Node, OpCallBack, Pipeline, PipelineCallback, SequentialRunner

IN, OUT = "__pipeline_input__", "__pipeline_output__"


class OpRecorder(OpCallBack):
    def __init__(self, log):
        self.log = log

    def before_execution(self, callback_op, args):
        self.log.append(("op callback before", callback_op.name, list(args)))

    def after_execution(self, callback_op, args, output):
        self.log.append(("op callback after", callback_op.name, list(args), output))


class PipelineRecorder(PipelineCallback):
    def __init__(self, log, label="pipeline callback"):
        self.log = log
        self.label = label

    def before_execution(self, pipeline, args):
        self.log.append((f"{self.label} before", pipeline.name, args))

    def after_execution(self, pipeline, args, output):
        self.log.append((f"{self.label} after", pipeline.name, args, output))

    def before_node_execution(self, pipeline, node, args):
        self.log.append((f"{self.label} before node", node.name, list(args)))

    def after_node_execution(self, pipeline, node, args, output):
        self.log.append((f"{self.label} after node", node.name, list(args), output))


class HookedOp(BaseOp):
    """Adds ``amount``; logs its own hooks and its execution."""

    def __init__(self, log, amount, op_callbacks=None):
        super().__init__(op_callbacks)
        self.log = log
        self.amount = amount

    def before_execution(self, args):
        self.log.append(("op before", self.name, list(args)))

    def execute(self, value):
        self.log.append(("execute", self.name, value))
        return value + self.amount

    def after_execution(self, args, output):
        self.log.append(("op after", self.name, list(args), output))


class FirstOp(HookedOp):
    pass


class SecondOp(HookedOp):
    pass


def test_callbacks_fire_in_the_documented_order_for_a_two_node_pipeline():
    log: list = []
    pipeline = Pipeline(
        [
            Node(SecondOp(log, 10, op_callbacks=[OpRecorder(log)]), input_nodes=["x"], output_nodes=OUT),
            Node(FirstOp(log, 1, op_callbacks=[OpRecorder(log)]), input_nodes=[IN], output_nodes="x"),
        ],
        "two_nodes",
        pipeline_callbacks=[PipelineRecorder(log)],
    )
    assert SequentialRunner().run(pipeline, 5) == 16
    assert log == [
        ("pipeline callback before", "two_nodes", 5),
        # node 1
        ("pipeline callback before node", "firstop", [5]),
        ("op callback before", "firstop", [5]),
        ("op before", "firstop", [5]),
        ("execute", "firstop", 5),
        ("op after", "firstop", [5], 6),
        ("op callback after", "firstop", [5], 6),
        ("pipeline callback after node", "firstop", [5], 6),
        # node 2
        ("pipeline callback before node", "secondop", [6]),
        ("op callback before", "secondop", [6]),
        ("op before", "secondop", [6]),
        ("execute", "secondop", 6),
        ("op after", "secondop", [6], 16),
        ("op callback after", "secondop", [6], 16),
        ("pipeline callback after node", "secondop", [6], 16),
        ("pipeline callback after", "two_nodes", 5, 16),
    ]


def test_several_callbacks_of_a_kind_fire_in_the_order_given():
    log: list = []

    class Tagged(OpCallBack):
        def __init__(self, tag):
            self.tag = tag

        def before_execution(self, callback_op, args):
            log.append(f"{self.tag} before")

        def after_execution(self, callback_op, args, output):
            log.append(f"{self.tag} after")

    op = FirstOp([], 1, op_callbacks=[Tagged("a"), Tagged("b")])
    pipeline = Pipeline(
        [Node(op, input_nodes=[IN], output_nodes=OUT)],
        "ordered_callbacks",
        pipeline_callbacks=[PipelineRecorder(log, "p1"), PipelineRecorder(log, "p2")],
    )
    SequentialRunner().run(pipeline, 0)
    assert [entry if isinstance(entry, str) else entry[0] for entry in log] == [
        "p1 before", "p2 before",
        "p1 before node", "p2 before node",
        "a before", "b before", "a after", "b after",
        "p1 after node", "p2 after node",
        "p1 after", "p2 after",
    ]


def test_a_callback_overriding_only_run_hooks_still_fires():
    log: list = []

    class RunOnly(PipelineCallback):
        def after_execution(self, pipeline, args, output):
            log.append((pipeline.name, args, output))

    pipeline = Pipeline(
        [Node(FirstOp([], 2), input_nodes=[IN], output_nodes=OUT)], "run_only", pipeline_callbacks=[RunOnly()]
    )
    assert SequentialRunner().run(pipeline, 1) == 3
    assert log == [("run_only", 1, 3)]


def test_nested_pipeline_callbacks_fire_inside_the_outer_node():
    log: list = []
    inner = Pipeline(
        [Node(SecondOp(log, 10), input_nodes=[IN], output_nodes=OUT)],
        "inner",
        pipeline_callbacks=[PipelineRecorder(log, "inner")],
    )
    outer = Pipeline(
        [Node(inner, input_nodes=[IN], output_nodes=OUT)],
        "outer",
        pipeline_callbacks=[PipelineRecorder(log, "outer")],
    )
    assert SequentialRunner().run(outer, 1) == 11
    assert [entry[0] for entry in log] == [
        "outer before",
        "outer before node",
        "inner before",
        "inner before node",
        "op before",
        "execute",
        "op after",
        "inner after node",
        "inner after",
        "outer after node",
        "outer after",
    ]
    assert log[1] == ("outer before node", "inner", [1])


def test_base_callbacks_do_nothing():
    pipeline = Pipeline(
        [Node(FirstOp([], 1, op_callbacks=[OpCallBack()]), input_nodes=[IN], output_nodes=OUT)],
        "noop_callbacks",
        pipeline_callbacks=[PipelineCallback()],
    )
    assert SequentialRunner().run(pipeline, 1) == 2
