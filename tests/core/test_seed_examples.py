"""The seed documentation's non-ML examples, with only their imports changed.

Each test copies an example of ``chariots-0.2.4-docs.txt`` (chapters 2.1 and 2.5) and checks
the output the seed prints.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, List

import pytest

from chariots_core import (
    BaseNode,
    BaseOp,
    Chariots,
    Node,
    OpCallBack,
    Pipeline,
    PipelineCallback,
    SequentialRunner,
    VersionableMeta,
    VersionedField,
    VersionType,
)


class AddOneOp(BaseOp):
    def execute(self, op_input):
        return op_input + 1


class IsOddOp(BaseOp):
    def execute(self, op_input):
        return op_input % 2 == 1


@pytest.fixture
def runner():
    return SequentialRunner()


@pytest.fixture
def is_odd_pipeline():
    # The seed's runner and client examples answer run(5) -> True, run(3) -> True,
    # call(4) -> False: its is_odd_pipeline checks its input directly.
    return Pipeline(
        [Node(IsOddOp(), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")],
        "is_odd",
    )


def test_runner_examples(runner, is_odd_pipeline):
    # 2.1.3: runner.run(is_odd_pipeline, 5) -> True; runner.run(is_odd_pipeline, 3) -> True
    assert runner.run(is_odd_pipeline, 5) is True
    assert runner.run(is_odd_pipeline, 3) is True


def test_pipeline_module_example(runner):
    # "a very simple pipeline with two nodes, one that adds one to the provided number and
    # one that returns whether or not the resulting number is odd"
    pipeline = Pipeline([
        Node(AddOneOp(), input_nodes=["__pipeline_input__"], output_nodes="added_number"),
        Node(IsOddOp(), input_nodes=["added_number"], output_nodes="__pipeline_output__"),
    ], "simple_pipeline")
    assert runner.run(pipeline=pipeline, pipeline_input=4) is True


def test_pipeline_logger_example(runner, capsys):
    class MyPipelineLogger(PipelineCallback):

        def before_execution(self, pipeline: "Pipeline", args: List[Any]):
            print('running {}'.format(pipeline))

        def before_node_execution(self, pipeline: "Pipeline", node: "BaseNode", args: List[Any]):
            print('running {} for {}'.format(node.name, pipeline.name))

    is_even_pipeline = Pipeline([
        Node(AddOneOp(), input_nodes=['__pipeline_input__'], output_nodes='modified'),
        Node(IsOddOp(), input_nodes=['modified'],
             output_nodes=['__pipeline_output__'])
    ], 'simple_pipeline', pipeline_callbacks=[MyPipelineLogger()])
    result = runner.run(is_even_pipeline, 3)
    print(result)
    assert capsys.readouterr().out == (
        "running <OP simple_pipeline>\n"
        "running addoneop for simple_pipeline\n"
        "running isoddop for simple_pipeline\n"
        "False\n"
    )


def test_print_op_name_callback_example(runner, capsys):
    class PrintOpName(OpCallBack):

        def before_execution(self, op: "BaseOp", args: List[Any]):
            print('{} called with {}'.format(op.name, args))

    pipeline = Pipeline([
        Node(AddOneOp(op_callbacks=[PrintOpName()]), input_nodes=["__pipeline_input__"],
             output_nodes="__pipeline_output__"),
    ], "printed")
    assert runner.run(pipeline, 1) == 2
    assert capsys.readouterr().out == "addoneop called with [1]\n"


def test_base_op_examples():
    class AddOp(BaseOp):
        number_to_add = 1

        def execute(self, op_input):
            return op_input + self.number_to_add

    assert AddOp().execute(3) == 4

    class AddOp(BaseOp):  # noqa: F811 - the seed redefines the class to show the version change
        number_to_add = VersionedField(3, VersionType.MAJOR)

        def execute(self, op_input):
            return op_input + self.number_to_add

    assert repr(AddOp.__version__) == "<Version, major:36d3c, minor: 94e72, patch: 94e72>"
    assert AddOp.number_to_add == 3


def test_versioning_module_examples():
    class MyVersionedClass(metaclass=VersionableMeta):
        foo = VersionedField(5, VersionType.MINOR)

    assert repr(MyVersionedClass.__version__) == "<Version, major:94e72, minor: 72101, patch: 94e72>"
    assert MyVersionedClass.foo == 5
    MyVersionedClass.foo = 7
    assert repr(MyVersionedClass.__version__) == "<Version, major:94e72, minor: 72101, patch: 94e72>"
    assert MyVersionedClass.foo == 7


def test_client_examples_work_on_the_in_process_app(is_odd_pipeline, tmp_path):
    # 2.1 "client.call_pipeline(is_odd_pipeline, 4).value -> False", "..., 5).value -> True",
    # with the in-process app standing in for the client.
    client = Chariots([is_odd_pipeline], path=tmp_path, op_store="memory", saver="memory")
    assert client.call_pipeline(is_odd_pipeline, 4).value is False
    assert client.call_pipeline(is_odd_pipeline, 5).value is True


def test_the_simple_pipeline_example_runs_and_prints_versions():
    script = Path(__file__).resolve().parents[2] / "examples" / "simple_pipeline.py"
    completed = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert "is_odd(4 + 1) = True" in lines and "is_odd(5 + 1) = False" in lines
    assert "  running addop for is_odd with [4]" in lines
    assert any(line.startswith("  isoddop  <Version, major:da39a") for line in lines)
