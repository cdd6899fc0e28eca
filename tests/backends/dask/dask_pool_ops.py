"""Ops for the Dask pool tests, in a module the Dask worker processes can import.

``conftest.py`` puts this directory on ``sys.path`` before the cluster starts; worker
processes are spawned with the parent's ``sys.path``, as they would have a user's package
installed.
"""

from __future__ import annotations

import os
import pathlib

from chariots_core import BaseOp, Node, Pipeline


class AddOne(BaseOp):
    """Adds one."""

    def execute(self, x):
        return x + 1


class Square(BaseOp):
    """Squares."""

    def execute(self, x):
        return x * x


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


def simple_pipelines() -> list[Pipeline]:
    """``square_plus_one``, and ``kill``, which kills the worker running it."""
    return [
        Pipeline(
            [
                Node(Square(), input_nodes=["__pipeline_input__"], output_nodes="squared"),
                Node(AddOne(), input_nodes=["squared"], output_nodes="__pipeline_output__"),
            ],
            "square_plus_one",
        ),
        Pipeline([Node(KillWorker(), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")], "kill"),
    ]
