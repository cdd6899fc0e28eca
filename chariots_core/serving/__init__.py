"""Serving: the in-process app, asynchronous jobs and the pools that run them."""

from .app import Chariots
from .responses import JobStatus, PipelineResponse
from .workers import BaseWorkerPool, InProcessWorkerPool

__all__ = ["Chariots", "PipelineResponse", "BaseWorkerPool", "InProcessWorkerPool", "JobStatus"]
