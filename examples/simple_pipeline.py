"""A small Chariots pipeline, built, run and printed with the versions of its ops.

The seed's ``is_odd`` example: add one to a number, then tell whether the result is odd. A
``VersionedField`` makes the increment part of ``AddOp``'s version, so changing it in the code
changes the version a saved pipeline would be checked against.

Run: ``python examples/simple_pipeline.py``
"""

from __future__ import annotations

from typing import Any

from chariots_core import (
    BaseNode,
    BaseOp,
    Node,
    Pipeline,
    PipelineCallback,
    SequentialRunner,
    VersionedField,
    VersionType,
)


class AddOp(BaseOp):
    """Adds ``number_to_add``; the amount is part of the op's MAJOR version."""

    number_to_add = VersionedField(1, VersionType.MAJOR)

    def execute(self, op_input: int) -> int:
        return op_input + self.number_to_add


class IsOddOp(BaseOp):
    """Whether its input is odd."""

    def execute(self, op_input: int) -> bool:
        return op_input % 2 == 1


class PrintNodes(PipelineCallback):
    """Prints each node as it runs, as the seed's ``MyPipelineLogger`` does."""

    def before_execution(self, pipeline: Pipeline, args: Any) -> None:
        print(f"running {pipeline}")

    def before_node_execution(self, pipeline: Pipeline, node: BaseNode, args: list[Any]) -> None:
        print(f"  running {node.name} for {pipeline.name} with {args}")


def build_pipeline() -> Pipeline:
    """The is_odd pipeline: ``__pipeline_input__ -> addop -> isoddop -> __pipeline_output__``."""
    return Pipeline(
        [
            Node(AddOp(), input_nodes=["__pipeline_input__"], output_nodes="added_number"),
            Node(IsOddOp(), input_nodes=["added_number"], output_nodes="__pipeline_output__"),
        ],
        "is_odd",
        pipeline_callbacks=[PrintNodes()],
    )


def main() -> None:
    pipeline = build_pipeline()
    runner = SequentialRunner()
    for number in (4, 5):
        print(f"is_odd({number} + 1) = {runner.run(pipeline, number)}")
    print("op versions:")
    for node, version in pipeline.get_pipeline_versions().items():
        print(f"  {node.name:<8} {version!r}")
    print(f"pipeline version: {pipeline.op_version!r}")


if __name__ == "__main__":
    main()
