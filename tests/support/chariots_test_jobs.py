"""Pipelines for the worker-pool tests, in a module every worker process can import.

``tests/support`` is on ``sys.path`` (pytest's ``pythonpath``) before any worker starts, and
worker processes (``multiprocess`` forkserver or spawn, Dask nannies) start with their parent's
``sys.path``, as they would have a user's package installed.
"""

from __future__ import annotations

import os
import threading
import time

from chariots_core import BaseOp, MemoryOpStore, Node, Pipeline, VersionedField, VersionType
from chariots_core.ml import BaseMLOp, MLMode

IN, OUT = "__pipeline_input__", "__pipeline_output__"


class AddOp(BaseOp):
    """``x + 3``; ``"boom"`` raises ValueError; a path (any other string) waits until that
    file exists, then returns the path."""

    number = VersionedField(3, VersionType.MAJOR)

    def execute(self, x):
        if x == "boom":
            raise ValueError("boom on purpose")
        if isinstance(x, str):
            while not os.path.exists(x):
                time.sleep(0.01)
            return x
        return x + self.number


class AddHundredOp(AddOp):
    """``x + 100``: another version of :class:`AddOp`."""

    number = VersionedField(100, VersionType.MAJOR)


class MeanModel(BaseMLOp):
    """Learns the mean of numbers; predicts a number's distance to it."""

    training_update_version = VersionType.MAJOR

    def fit(self, numbers):
        self._model = sum(numbers) / len(numbers)

    def predict(self, number):
        return number - self._model


def add_pipeline(name: str = "add", use_worker: bool | None = None) -> Pipeline:
    """One :class:`AddOp` node, named ``addop``."""
    return Pipeline([Node(AddOp(), input_nodes=[IN], output_nodes=OUT)], name=name, use_worker=use_worker)


def mean_pipelines() -> list[Pipeline]:
    """``train`` fits a :class:`MeanModel`; ``predict`` uses the one saved."""
    return [
        Pipeline([Node(MeanModel(MLMode.FIT), input_nodes=[IN])], name="train"),
        Pipeline([Node(MeanModel(MLMode.PREDICT), input_nodes=[IN], output_nodes=OUT)], name="predict"),
    ]


class SlowStore(MemoryOpStore):
    """An op store whose next job write, once :meth:`hold_next` is called, waits to be let
    through (as a network PUT can wait): ``held`` is set while it waits."""

    def __init__(self) -> None:
        super().__init__()
        self._hold = threading.Event()
        self.held = threading.Event()
        self.let_through = threading.Event()

    def hold_next(self) -> None:
        self._hold.set()

    def put_job(self, job) -> None:
        if self._hold.is_set():
            self._hold.clear()
            self.held.set()
            self.let_through.wait(60)
        super().put_job(job)
