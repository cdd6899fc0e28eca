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

import cloudpickle
import dill
from distributed import get_worker

from chariots_core.errors import NodeExecutionError
from chariots_core.serving.workers import failure_details, op_versions

__all__ = ["DONE", "FAILED", "run_job", "call_batch"]

DONE, FAILED = "done", "failed"


def _identity() -> tuple[Any, str]:
    worker = get_worker()
    return worker, f"{worker.address} pid {os.getpid()}"


def run_job(job_id: str, topic: str, payload: bytes, input_bytes: bytes) -> tuple:
    """Run one job; report its start on ``topic`` and return its outcome, never raising.

    Returns ``(DONE, worker, value_bytes, versions, trained)`` where ``trained`` maps the name
    of each op the run fitted to its ``serialize()`` bytes, or ``(FAILED, worker, error, versions)``.
    """
    worker, identity = _identity()
    worker.log_event(topic, {"job_id": job_id, "worker": identity})
    try:
        pipeline, runner = cloudpickle.loads(payload)
        pipeline_input = cloudpickle.loads(input_bytes)
    except Exception as exc:  # e.g. an op's module is not installed on this worker
        error = failure_details(exc)
        error["message"] = (
            f"the Dask worker {identity} could not rebuild the job's pipeline or input: "
            f"{type(exc).__name__}: {exc}. Install the package defining the ops on every worker "
            "(or client.upload_file it), or define them in __main__ so they are sent by value"
        )
        return (FAILED, identity, error, {})
    before = {node.name: str(node.node_version) for node in pipeline.loadable_nodes()}
    try:
        value_bytes = dill.dumps(runner.run(pipeline, pipeline_input))
        trained = {
            node.name: _serialized(node, pipeline.name)
            for node in pipeline.loadable_nodes()
            if str(node.node_version) != before[node.name]
        }
    except Exception as exc:  # a job reports its failure instead of failing the Dask task
        return (FAILED, identity, failure_details(exc), op_versions(pipeline))
    return (DONE, identity, value_bytes, op_versions(pipeline), trained)


def _serialized(node: Any, pipeline_name: str) -> bytes:
    try:
        return node.op.serialize()
    except Exception as exc:
        msg = (
            f"node {node.name!r} of pipeline {pipeline_name!r} was trained on a Dask worker but "
            f"its op could not be serialized to send it back: {type(exc).__name__}: {exc}"
        )
        raise NodeExecutionError(msg, node_name=node.name) from exc


def call_batch(function: Callable[[Any, Any], Any], shared_bytes: bytes, item: Any) -> Any:
    """``function(shared, item)`` with ``shared`` rebuilt from cloudpickle bytes (one batch task)."""
    return function(cloudpickle.loads(shared_bytes), item)
