"""Pipelines: ops, nodes, the DAG that wires them, and the runners that execute it.

Nothing here does I/O of its own: data nodes read and write through the saver they are bound
to, and serializers turn values into bytes and back.
"""

from .callbacks import OpCallBack, PipelineCallback
from .data_nodes import DataLoadingNode, DataSavingNode
from .nodes import BaseNode, Node, ReservedNodes
from .ops import BaseOp, LoadableOp
from .pipeline import Pipeline
from .runners import BaseRunner, SequentialRunner

__all__ = [
    "Pipeline",
    "Node",
    "BaseNode",
    "ReservedNodes",
    "DataLoadingNode",
    "DataSavingNode",
    "BaseOp",
    "LoadableOp",
    "BaseRunner",
    "SequentialRunner",
    "OpCallBack",
    "PipelineCallback",
]
