"""Hooks around ops and pipelines, for logging, timing or monitoring.

The order in which hooks fire for each node of a run is:

1. pipeline callbacks' ``before_execution`` (once per run)
2. pipeline callbacks' ``before_node_execution``
3. op callbacks' ``before_execution``
4. the op's ``before_execution`` method
5. the op's ``execute`` method
6. the op's ``after_execution`` method
7. op callbacks' ``after_execution``
8. pipeline callbacks' ``after_node_execution``

then pipeline callbacks' ``after_execution`` once the run is over. The arguments and outputs
passed to hooks are the live objects of the run: read them, do not modify them.

Hooks that a subclass does not override cost nothing: runners skip them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .nodes import BaseNode
    from .ops import BaseOp
    from .pipeline import Pipeline

__all__ = ["OpCallBack", "PipelineCallback", "overrides"]


def overrides(obj: object, base: type, method_name: str) -> bool:
    """Whether ``obj``'s class overrides ``base.method_name`` (so the hook must be called)."""
    return getattr(type(obj), method_name) is not getattr(base, method_name)


class OpCallBack:
    """Instructions to run before and/or after one op executes.

    Override :meth:`before_execution`, :meth:`after_execution` or both::

        class PrintOpName(OpCallBack):
            def before_execution(self, callback_op, args):
                print(f"{callback_op.name} called with {args}")
    """

    def before_execution(self, callback_op: BaseOp, args: list[Any]) -> None:
        """Called before the op executes (and before the op's own ``before_execution``)."""

    def after_execution(self, callback_op: BaseOp, args: list[Any], output: Any) -> None:
        """Called after the op executed (and after the op's own ``after_execution``)."""


class PipelineCallback:
    """Instructions to run around a pipeline run and around each of its nodes."""

    def before_execution(self, pipeline: Pipeline, args: Any) -> None:
        """Called once before any node runs, with the pipeline input."""

    def after_execution(self, pipeline: Pipeline, args: Any, output: Any) -> None:
        """Called once after every node ran, with the pipeline input and output."""

    def before_node_execution(self, pipeline: Pipeline, node: BaseNode, args: list[Any]) -> None:
        """Called before each node runs, with the arguments it is about to receive."""

    def after_node_execution(
        self, pipeline: Pipeline, node: BaseNode, args: list[Any], output: Any
    ) -> None:
        """Called after each node ran, with its arguments and its output."""
