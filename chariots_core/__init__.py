"""Chariots: versioned machine-learning pipelines, in process.

Build a :class:`Pipeline` of :class:`Node`\\ s around ops, run it, save its trained ops in an
op store and load them in a prediction pipeline; loading refuses, with a
:class:`VersionError`, a model that was trained on another version of the ops upstream of it.
Storage, worker pools and HTTP serving are optional backends (``chariots_lmdb``,
``chariots_fsspec``, ``chariots_multiprocess``, ``chariots_waitress``...), imported only when used.
"""

from .code_versions import SourceVersion
from .errors import BackendError, ChariotsError, VersionError
from .op_store.store import MemoryOpStore, OpStore
from .pipelines.callbacks import OpCallBack, PipelineCallback
from .pipelines.data_nodes import DataLoadingNode, DataSavingNode
from .pipelines.nodes import BaseNode, Node, ReservedNodes
from .pipelines.ops import BaseOp, LoadableOp
from .pipelines.pipeline import Pipeline
from .pipelines.runners import BaseRunner, SequentialRunner
from .savers import BaseSaver, MemorySaver
from .serving.app import Chariots
from .serving.responses import JobStatus, PipelineResponse
from .serving.workers import BaseWorkerPool, InProcessWorkerPool
from .versioning import Version, VersionableMeta, VersionedField, VersionedFieldDict, VersionType

__all__ = [
    "Pipeline",
    "Node",
    "BaseNode",
    "ReservedNodes",
    "DataLoadingNode",
    "DataSavingNode",
    "BaseOp",
    "LoadableOp",
    "SequentialRunner",
    "BaseRunner",
    "OpCallBack",
    "PipelineCallback",
    "Version",
    "VersionType",
    "VersionedField",
    "VersionedFieldDict",
    "VersionableMeta",
    "SourceVersion",
    "OpStore",
    "MemoryOpStore",
    "BaseSaver",
    "MemorySaver",
    "Chariots",
    "PipelineResponse",
    "BaseWorkerPool",
    "InProcessWorkerPool",
    "JobStatus",
    "ChariotsError",
    "VersionError",
    "BackendError",
    "ChariotsConfig",
]


def __getattr__(name: str):
    # The config module pulls in TOML/YAML parsing; import it only when asked for.
    if name == "ChariotsConfig":
        from .project.config import ChariotsConfig

        return ChariotsConfig
    raise AttributeError(f"module 'chariots_core' has no attribute {name!r}")
