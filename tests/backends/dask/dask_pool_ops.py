"""Ops for the Dask pool tests, in a module the Dask worker processes can import.

``conftest.py`` puts this directory on ``sys.path`` before the cluster starts; worker
processes are spawned with the parent's ``sys.path``, as they would have a user's package
installed.
"""

from __future__ import annotations

import os
import pathlib
import time

from chariots_core import BaseOp, Node, Pipeline
from chariots_core.ml import BaseMLOp, MLMode


class AddOne(BaseOp):
    """Adds one."""

    def execute(self, x):
        return x + 1


class Square(BaseOp):
    """Squares."""

    def execute(self, x):
        return x * x


class Explode(BaseOp):
    """Raises for negative inputs."""

    def execute(self, x):
        if x < 0:
            raise ValueError(f"negative input {x}")
        return x


class Sleep(BaseOp):
    """Sleeps for its input (seconds), then returns it."""

    def execute(self, seconds):
        time.sleep(seconds)
        return seconds


class KillWorker(BaseOp):
    """Kills the worker process running it while ``marker`` does not exist yet, or always.

    The input is ``(marker_path, always)``: with ``always`` false, the first run creates the
    marker before dying, so a retry on another worker succeeds.
    """

    def execute(self, spec):
        marker, always = spec
        path = pathlib.Path(marker)
        if always or not path.exists():
            path.touch()
            os._exit(17)
        return "survived"


class Mean(BaseMLOp):
    """Learns the mean; predicts the distance to it."""

    def fit(self, xs):
        self._model = sum(xs) / len(xs)

    def predict(self, xs):
        return [x - self._model for x in xs]


def simple_pipelines() -> list[Pipeline]:
    """Pipelines of plain ops: ``square_plus_one``, ``explode``, ``sleep``, ``kill``."""
    return [
        Pipeline(
            [
                Node(Square(), input_nodes=["__pipeline_input__"], output_nodes="squared"),
                Node(AddOne(), input_nodes=["squared"], output_nodes="__pipeline_output__"),
            ],
            "square_plus_one",
        ),
        Pipeline([Node(Explode(), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")], "explode"),
        Pipeline([Node(Sleep(), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")], "sleep"),
        Pipeline([Node(KillWorker(), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")], "kill"),
    ]


def ml_pipelines() -> list[Pipeline]:
    """``train`` fits ``Mean``; ``predict`` uses the saved one."""
    return [
        Pipeline([Node(Mean(MLMode.FIT), input_nodes=["__pipeline_input__"])], "train"),
        Pipeline(
            [Node(Mean(MLMode.PREDICT), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")],
            "predict",
        ),
    ]
