"""Runners execute a pipeline's compiled plan.

    >>> runner = SequentialRunner()
    >>> runner.run(is_odd_pipeline, 5)
    True

:meth:`BaseRunner.run` is the same for every runner: it checks that it was given a pipeline,
calls the pipeline callbacks in the seed's order and decides which per-node hooks must run;
the private :meth:`BaseRunner._run` executes. To run pipelines differently (threads, a
cluster...), subclass :class:`BaseRunner` and implement ``_run`` only; ``pipeline.plan`` gives
the steps in topological order.

An op that raises reaches the caller as its own exception, with a PEP 678 note naming the
node and the pipeline (see :func:`note_node_failure`); a runner must not wrap it.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import NodeExecutionError, NotAPipelineError, mark_failed_node
from ..log import get_logger
from .callbacks import PipelineCallback, overrides
from .nodes import BaseNode
from .pipeline import Pipeline
from .plan import ExecutionPlan, StepKind

__all__ = ["BaseRunner", "SequentialRunner", "note_node_failure"]

_SIMPLE, _NESTED, _CHAIN = StepKind.SIMPLE, StepKind.NESTED, StepKind.CHAIN
_log = get_logger("runner")


class BaseRunner:
    """Executes pipelines: :meth:`run` validates and calls hooks, subclasses implement :meth:`_run`."""

    def run(self, pipeline: Pipeline, pipeline_input: Any = None) -> Any:
        """Run ``pipeline`` on ``pipeline_input``; return what reaches ``__pipeline_output__``.

        Calls each pipeline callback's ``before_execution``, then :meth:`_run` (with the
        callbacks whose per-node hooks are overridden), then each ``after_execution``.

        :raises NotAPipelineError: if ``pipeline`` is not a :class:`Pipeline`.
        :raises Exception: whatever an op raised, with a note naming the node and pipeline.
        """
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
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("running pipeline %r (%d nodes) with %s", pipeline.name, len(pipeline.plan.steps), self)
        output = self._run(pipeline, pipeline_input, node_hooks)
        for callback in callbacks:
            callback.after_execution(pipeline, pipeline_input, output)
        return output

    def _run(self, pipeline: Pipeline, pipeline_input: Any, node_hooks: list[PipelineCallback]) -> Any:
        """Execute the validated ``pipeline`` and return its output.

        Call ``before_node_execution`` and ``after_node_execution`` of each of ``node_hooks``
        around every node (it is empty when no callback needs them), run nested pipelines with
        :meth:`run`, and let an op's exception through after :func:`note_node_failure`.

        Not abstract, so that a chariots 0.2 runner that overrides :meth:`run` itself still works.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement _run(pipeline, pipeline_input, node_hooks)")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SequentialRunner(BaseRunner):
    """Runs every node of a pipeline one after the other, in the calling thread.

    Each intermediate value is dropped as soon as the last node that needs it has run.
    """

    def _run(self, pipeline: Pipeline, pipeline_input: Any, node_hooks: list[PipelineCallback]) -> Any:
        if node_hooks:
            return self._run_with_node_hooks(pipeline, pipeline_input, node_hooks)
        return self._run_plan(pipeline.plan, pipeline, pipeline_input)

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
                _store(values, outputs, result, node)
                # Unbind at once: the local would keep a tuple of outputs, or an output nobody
                # reads, alive until the next step.
                del result
                for slot in releases:
                    values[slot] = None
        except Exception as exc:
            note_node_failure(exc, node, pipeline)
            raise
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
                _store(values, outputs, result, node)
            except Exception as exc:
                note_node_failure(exc, node, pipeline)
                raise
            for hook in hooks:
                hook.after_node_execution(pipeline, node, args, result)
            for slot in releases:
                values[slot] = None
            del args, result
        return None if plan.output_slot is None else values[plan.output_slot]


def note_node_failure(exc: BaseException, node: BaseNode, pipeline: Pipeline) -> None:
    """Add to ``exc`` a PEP 678 note naming ``node`` and ``pipeline``, and remember the node.

    Each enclosing pipeline of a nested one adds its own note; :func:`~chariots_core.errors.failed_node`
    gives the innermost node, the one whose op raised.
    """
    exc.add_note(f"in node {node.name!r} of pipeline {pipeline.name!r}")
    mark_failed_node(exc, node.name)


def _nested_input(args: list[Any]) -> Any:
    """A nested pipeline gets its single input as is, several inputs as a tuple."""
    if not args:
        return None
    return args[0] if len(args) == 1 else tuple(args)


def _store(values: list[Any], outputs: tuple[int, ...], result: Any, node: BaseNode) -> None:
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
            f"node {node.name!r} declares {len(outputs)} outputs but its op returned {got}; "
            f"return a tuple of {len(outputs)} values or change output_nodes"
        )
        raise NodeExecutionError(msg, node_name=node.name)
    for slot, value in zip(outputs, result):
        if slot >= 0:
            values[slot] = value
