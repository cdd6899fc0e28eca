"""Serving: the in-process app, asynchronous jobs and the pools that run them, and operating
what the app serves (deployments, hot reload, splits, the prediction log)."""

from .app import Chariots
from .deployment_records import DeploymentRecord, VariantRecord
from .prediction_log import PredictionLog, PredictionRecord
from .responses import JobStatus, PipelineResponse
from .workers import BaseWorkerPool, InProcessWorkerPool

__all__ = [
    "Chariots",
    "PipelineResponse",
    "BaseWorkerPool",
    "InProcessWorkerPool",
    "JobStatus",
    "DeploymentRecord",
    "VariantRecord",
    "PredictionLog",
    "PredictionRecord",
]
