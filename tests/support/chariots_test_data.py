"""Small data pipelines shared by the data node tests (importable through pytest's ``pythonpath``)."""

from __future__ import annotations

from chariots_core import BaseOp, DataLoadingNode, DataSavingNode, Node, Pipeline
from chariots_core.ml import JSONSerializer

IN, OUT = "__pipeline_input__", "__pipeline_output__"


class SumOp(BaseOp):
    def execute(self, numbers):
        return sum(numbers)


class DoubleOp(BaseOp):
    def execute(self, numbers):
        return [2 * number for number in numbers]


def prepare_pipeline(path="numbers.json", serializer=JSONSerializer, name="prepare"):
    """Doubles its input, saves it as a dataset and returns it."""
    return Pipeline(
        [
            Node(DoubleOp(), input_nodes=[IN], output_nodes="doubled"),
            DataSavingNode(serializer(), path, input_nodes=["doubled"], output_nodes=OUT),
        ],
        name,
    )


def total_pipeline(path="numbers.json", serializer=JSONSerializer, name="total", **options):
    """Loads the dataset and sums it; takes no input."""
    return Pipeline(
        [
            DataLoadingNode(serializer(), path, output_nodes="numbers", **options),
            Node(SumOp(), input_nodes=["numbers"], output_nodes=OUT),
        ],
        name,
    )
