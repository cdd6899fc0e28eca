"""Serving: the in-process app, asynchronous jobs and the pools that run them."""

from .app import Chariots
from .workers import BaseWorkerPool, InProcessWorkerPool, JobStatus, PipelineResponse

__all__ = ["Chariots", "PipelineResponse", "BaseWorkerPool", "InProcessWorkerPool", "JobStatus"]
