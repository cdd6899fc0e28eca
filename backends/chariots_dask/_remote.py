"""What runs on the Dask workers: one job, or one call of a batch function.

These functions are imported by reference on the workers (``chariots_dask`` is installed
there); the pipeline travels as cloudpickle bytes made by the client, so that a pipeline that
cannot be sent fails at submission, and one that cannot be rebuilt on a worker fails its job
with an explanation instead of a Dask traceback.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import attrs
import cloudpickle
from distributed import get_worker

from chariots_core.serving.jobs import JobOutcome, run_pipeline

__all__ = ["run_job", "call_batch"]


def _identity() -> tuple[Any, str]:
    worker = get_worker()
    return worker, f"{worker.address} pid {os.getpid()}"


def run_job(job_id: str, topic: str, payload: bytes, input_bytes: bytes) -> JobOutcome:
    """Run one job; report its start on ``topic`` and return its outcome, never raising."""
    worker, identity = _identity()
    worker.log_event(topic, {"job_id": job_id, "worker": identity})
    try:
        pipeline, runner = cloudpickle.loads(payload)
        pipeline_input = cloudpickle.loads(input_bytes)
    except Exception as exc:  # e.g. an op's module is not installed on this worker
        return JobOutcome.unloadable(
            exc,
            f"the Dask worker {identity} could not rebuild the job's pipeline or input",
            "Install the package defining the ops on every worker (or client.upload_file it), "
            "or define them in __main__ so they are sent by value",
            worker=identity,
        )
    return attrs.evolve(run_pipeline(pipeline, runner, pipeline_input, ship_trained=True), worker=identity)


def call_batch(function: Callable[[Any, Any], Any], shared_bytes: bytes, item: Any) -> Any:
    """``function(shared, item)`` with ``shared`` rebuilt from cloudpickle bytes (one batch task)."""
    return function(cloudpickle.loads(shared_bytes), item)
