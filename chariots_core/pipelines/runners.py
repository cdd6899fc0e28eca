"""Runners execute a pipeline's compiled plan.

    >>> runner = SequentialRunner()
    >>> runner.run(is_odd_pipeline, 5)
    True

To run pipelines differently (threads, a cluster...), subclass :class:`BaseRunner` and
implement :meth:`BaseRunner.run`; ``pipeline.plan`` gives the steps in topological order.
"""

from __future__ import annotations

import abc
from typing import Any

from ..errors import NodeExecutionError, NotAPipelineError
from .callbacks import PipelineCallback, overrides
from .pipeline import Pipeline
from .plan import ExecutionPlan, StepKind

__all__ = ["BaseRunner", "SequentialRunner"]

_SIMPLE, _NESTED, _CHAIN = StepKind.SIMPLE, StepKind.NESTED, StepKind.CHAIN


class BaseRunner(abc.ABC):
    """Executes pipelines. Subclasses implement :meth:`run`."""

    @abc.abstractmethod
    def run(self, pipeline: Pipeline, pipeline_input: Any = None) -> Any:
        """Run ``pipeline`` on ``pipeline_input``; return what reaches ``__pipeline_output__``."""


class SequentialRunner(BaseRunner):
    """Runs every node of a pipeline one after the other, in the calling thread.

    Each intermediate value is dropped as soon as the last node that needs it has run.
    """

    def run(self, pipeline: Pipeline, pipeline_input: Any = None) -> Any:
        if not isinstance(pipeline, Pipeline):
            msg = (
                f"'pipeline' must be a Pipeline (got {pipeline!r} that is a "
                f"{type(pipeline).__name__}); build one with Pipeline(nodes, name)"
            )
            raise NotAPipelineError(msg)
        callbacks = pipeline.pipeline_callbacks
        for callback in callbacks:
            callback.before_execution(pipeline, pipeline_input)
        node_hooks = [
            callback
            for callback in callbacks
            if overrides(callback, PipelineCallback, "before_node_execution")
            or overrides(callback, PipelineCallback, "after_node_execution")
        ]
        if node_hooks:
            output = self._run_with_node_hooks(pipeline, pipeline_input, node_hooks)
        else:
            output = self._run_plan(pipeline.plan, pipeline, pipeline_input)
        for callback in callbacks:
            callback.after_execution(pipeline, pipeline_input, output)
        return output

    def _run_plan(self, plan: ExecutionPlan, pipeline: Pipeline, pipeline_input: Any) -> Any:
        """The hot loop: no per-node hooks; chains of single-input nodes run as plain calls."""
        values: list[Any] = [None] * plan.n_slots
        values[0] = pipeline_input
        try:
            for kind, call, inputs, outputs, releases, node in plan.fused_steps:
                if kind is _CHAIN:
                    value = values[inputs]
                    # `call` holds (call, node) pairs; `node` is left naming a failing step.
                    for link, node in call:  # noqa: B020
                        value = link(value)
                    values[outputs] = value
                    value = None  # the slot alone keeps the result: it may be released later
                    continue
                if kind is _SIMPLE:
                    values[outputs] = call(values[inputs])
                    continue
                if kind is _NESTED:
                    result = self.run(call, _nested_input([values[slot] for slot in inputs]))
                else:
                    result = call(*[values[slot] for slot in inputs])
                _store(values, outputs, result, node, pipeline)
                # Unbind at once: the local would keep a tuple of outputs, or an output nobody
                # reads, alive until the next step.
                del result
                for slot in releases:
                    values[slot] = None
        except NodeExecutionError:
            raise
        except Exception as exc:
            raise _node_failure(node, pipeline, exc) from exc
        return None if plan.output_slot is None else values[plan.output_slot]

    def _run_with_node_hooks(
        self, pipeline: Pipeline, pipeline_input: Any, hooks: list[PipelineCallback]
    ) -> Any:
        plan = pipeline.plan
        values: list[Any] = [None] * plan.n_slots
        values[0] = pipeline_input
        for kind, call, inputs, outputs, releases, node in plan.steps:
            if kind is _SIMPLE:
                inputs, outputs = (inputs,), (outputs,)
            args = [values[slot] for slot in inputs]
            for hook in hooks:
                hook.before_node_execution(pipeline, node, args)
            try:
                result = self.run(call, _nested_input(args)) if kind is _NESTED else call(*args)
            except NodeExecutionError:
                raise
            except Exception as exc:
                raise _node_failure(node, pipeline, exc) from exc
            for hook in hooks:
                hook.after_node_execution(pipeline, node, args, result)
            _store(values, outputs, result, node, pipeline)
            for slot in releases:
                values[slot] = None
            del args, result
        return None if plan.output_slot is None else values[plan.output_slot]


def _nested_input(args: list[Any]) -> Any:
    """A nested pipeline gets its single input as is, several inputs as a tuple."""
    if not args:
        return None
    return args[0] if len(args) == 1 else tuple(args)


def _store(values: list[Any], outputs: tuple[int, ...], result: Any, node, pipeline) -> None:
    if len(outputs) == 1:
        if outputs[0] >= 0:
            values[outputs[0]] = result
        return
    if not outputs:
        return
    if not isinstance(result, (tuple, list)) or len(result) != len(outputs):
        sequence = isinstance(result, (tuple, list))
        got = f"{len(result)} values" if sequence else f"a {type(result).__name__}"
        msg = (
            f"node {node.name!r} of pipeline {pipeline.name!r} declares {len(outputs)} outputs "
            f"but its op returned {got}; return a tuple of {len(outputs)} values or change "
            "output_nodes"
        )
        raise NodeExecutionError(msg, node_name=node.name)
    for slot, value in zip(outputs, result):
        if slot >= 0:
            values[slot] = value


def _node_failure(node, pipeline: Pipeline, exc: Exception) -> NodeExecutionError:
    msg = (
        f"node {node.name!r} of pipeline {pipeline.name!r} failed: "
        f"{type(exc).__name__}: {exc}"
    )
    return NodeExecutionError(msg, node_name=node.name)
