"""Pipelines: a validated DAG of nodes, compiled once into a flat execution plan.

Building a pipeline checks the wiring (every input produced once, no cycle, reserved names
used correctly) and reports every problem at once. It then sorts the nodes topologically and
compiles an :class:`ExecutionPlan`: a tuple of steps that read and write numbered slots, where
a slot is reused (so its value is dropped) as soon as the last node that needs it has run.
Nothing here recurses over the chain of nodes, so pipelines of any length work; only nested
pipelines are handled one nesting level at a time.
"""

from __future__ import annotations

import difflib
import heapq
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from .callbacks import PipelineCallback
from .errors import PipelineDefinitionError
from .nodes import BaseNode, Node, ReservedNodes
from .ops import BaseOp
from .versioning import Version

__all__ = ["Pipeline", "ExecutionPlan", "StepKind"]

PIPELINE_INPUT = ReservedNodes.pipeline_input.value
PIPELINE_OUTPUT = ReservedNodes.pipeline_output.value
_RESERVED_LOOKING = re.compile(r"^__.*__$")
# Pipeline names become URL path segments and file names: keep them to a safe alphabet.
_VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

_DISCARD = -1  # slot of an output that no node consumes


class StepKind:
    """How a runner should execute a step (plain ints: compared on the hot path)."""

    SIMPLE = 0  # one input, one kept output, nothing to release: out = call(in)
    GENERAL = 1  # any number of inputs/outputs, releases slots afterwards
    NESTED = 2  # a pipeline used as a node: run it with the same runner


@attrs.frozen
class ExecutionPlan:
    """A pipeline compiled for execution.

    ``steps`` holds one tuple per node, in topological order:
    ``(kind, call, input_slots, output_slots, release_slots, node)``. For ``SIMPLE`` steps
    ``input_slots`` and ``output_slots`` are single ints. Slot 0 holds the pipeline input;
    ``output_slot`` is where ``__pipeline_output__`` lands (``None`` if nothing produces it).
    """

    steps: tuple[tuple, ...]
    n_slots: int
    output_slot: int | None


class Pipeline:
    """A named DAG of nodes that can be run, saved, loaded and served.

    :param pipeline_nodes: the nodes; each input must be produced by another node or be
        ``"__pipeline_input__"``. Order does not matter: nodes run in topological order.
    :param name: the pipeline's name (letters, digits, ``_``, ``.``, ``-``); it names the
        pipeline's routes and saved snapshots.
    :param pipeline_callbacks: :class:`PipelineCallback` objects called around the run and
        around each node.
    :param use_worker: run this pipeline in a worker by default (``True``), never
        (``False``) or as the app and the request decide (``None``).
    :raises PipelineDefinitionError: listing every wiring problem found.
    """

    def __init__(
        self,
        pipeline_nodes: Sequence[BaseNode],
        name: str,
        pipeline_callbacks: Iterable[PipelineCallback] | None = None,
        use_worker: bool | None = None,
    ) -> None:
        if not isinstance(name, str) or not _VALID_NAME.match(name):
            msg = (
                f"'name' must be a non-empty string of letters, digits, '_', '.' and '-' "
                f"starting with a letter or digit (got {name!r})"
            )
            raise PipelineDefinitionError(msg)
        self._name = name
        self._nodes = list(pipeline_nodes)
        self.pipeline_callbacks: list[PipelineCallback] = list(pipeline_callbacks or ())
        if use_worker not in (None, True, False):
            msg = f"'use_worker' must be True, False or None (got {use_worker!r})"
            raise PipelineDefinitionError(msg)
        self.use_worker = use_worker
        self._ordered, self._wiring = _validate_and_sort(self._nodes, name)
        self.plan = _compile(self._ordered, self._wiring)

    # -- description ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The pipeline's name."""
        return self._name

    @property
    def pipeline_nodes(self) -> list[BaseNode]:
        """The nodes, as given."""
        return list(self._nodes)

    @property
    def ordered_nodes(self) -> list[BaseNode]:
        """The nodes in the order they run."""
        return list(self._ordered)

    @property
    def node_for_name(self) -> dict[str, BaseNode]:
        """Each node by its name."""
        return {node.name: node for node in self._nodes}

    @property
    def op_version(self) -> Version:
        """The version of the pipeline as a whole: the sum of its nodes' versions, in run order."""
        total = Version()
        for node in self._ordered:
            total = total + node.node_version
        return total

    def execute(self, *args: Any) -> Any:
        """Pipelines run through a runner: use ``SequentialRunner().run(pipeline, input)``."""
        msg = (
            f"pipeline {self._name!r} cannot be executed like an op; run it with a runner, "
            "e.g. SequentialRunner().run(pipeline, pipeline_input)"
        )
        raise PipelineDefinitionError(msg)

    def get_pipeline_versions(self) -> dict[BaseNode, Version]:
        """The current version of every node of this pipeline."""
        return {node: node.node_version for node in self._ordered}

    def __repr__(self) -> str:
        return f"<OP {self._name}>"

    # -- ops across nesting ----------------------------------------------------------------
    def op_nodes(self) -> Iterator[Node]:
        """Every node that runs an op, nested pipelines included, in run order."""
        for node in self._ordered:
            if isinstance(node, Node) and isinstance(node.op, Pipeline):
                yield from node.op.op_nodes()
            elif isinstance(node, Node):
                yield node

    def loadable_nodes(self) -> list[Node]:
        """The nodes whose op is saved and loaded, nested pipelines included."""
        return [node for node in self.op_nodes() if node.is_loadable]

    def op_edges(self) -> list[tuple[Node, Node]]:
        """Every (upstream, downstream) pair of op nodes where the first feeds the second.

        Nested pipelines are seen through: an op inside a nested pipeline is linked to the ops
        that feed the nested node, and the ops after it to the ops that produce its output.
        """
        edges: list[tuple[Node, Node]] = []
        self._collect_edges({PIPELINE_INPUT: []}, edges)
        seen: set[tuple[int, int]] = set()
        unique = []
        for up, down in edges:
            if (id(up), id(down)) not in seen:
                seen.add((id(up), id(down)))
                unique.append((up, down))
        return unique

    def _collect_edges(
        self, sources: dict[str, list[Node]], edges: list[tuple[Node, Node]]
    ) -> list[Node]:
        """Record this pipeline's edges; return the op nodes behind its output."""
        for node in self._ordered:
            inputs, outputs = self._wiring[id(node)]
            feeding = [up for name in inputs for up in sources.get(name, [])]
            if isinstance(node, Node) and isinstance(node.op, Pipeline):
                produced = node.op._collect_edges({PIPELINE_INPUT: feeding}, edges)
            elif isinstance(node, Node):
                edges.extend((up, node) for up in feeding)
                produced = [node]
            else:
                produced = feeding
            for name in outputs:
                sources[name] = produced
        return sources.get(PIPELINE_OUTPUT, [])

    def replace_ops(self, ops_by_node_name: Mapping[str, BaseOp]) -> Pipeline:
        """A new pipeline, wired the same, where the named op nodes run the given ops.

        Nested pipelines are rebuilt as needed. Used to swap freshly loaded ops in at once.
        """
        nodes: list[BaseNode] = []
        for node in self._nodes:
            if isinstance(node, Node) and isinstance(node.op, Pipeline):
                node = node.with_op(node.op.replace_ops(ops_by_node_name))
            elif isinstance(node, Node) and node.name in ops_by_node_name:
                node = node.with_op(ops_by_node_name[node.name])
            nodes.append(node)
        return Pipeline(nodes, self._name, self.pipeline_callbacks, self.use_worker)


# -- validation ----------------------------------------------------------------------------
def _validate_and_sort(
    nodes: list[BaseNode], pipeline_name: str
) -> tuple[list[BaseNode], dict[int, tuple[list[str], list[str]]]]:
    where = f"pipeline {pipeline_name!r}"
    problems: list[str] = []
    wiring: dict[int, tuple[list[str], list[str]]] = {}
    for position, node in enumerate(nodes):
        if not isinstance(node, BaseNode):
            problems.append(
                f"item {position} of {where} must be a node (got {node!r} that is a "
                f"{type(node).__name__}); wrap ops as Node(op, input_nodes=..., output_nodes=...)"
            )
            continue
        try:
            wiring[id(node)] = (node.input_references, node.output_references)
        except PipelineDefinitionError as exc:
            problems.append(str(exc))
    if problems:
        raise PipelineDefinitionError(_problem_report(where, problems))

    producer: dict[str, BaseNode] = {}
    for node in nodes:
        inputs, outputs = wiring[id(node)]
        for name in inputs:
            if name == PIPELINE_OUTPUT:
                problems.append(
                    f"node {node.name!r} takes '{PIPELINE_OUTPUT}' as an input; it can only be "
                    "an output. Give the value another name"
                )
            elif name != PIPELINE_INPUT and _RESERVED_LOOKING.match(name):
                problems.append(_unknown_reserved(node, name, "input_nodes"))
        for name in outputs:
            if name == PIPELINE_INPUT:
                problems.append(
                    f"node {node.name!r} produces '{PIPELINE_INPUT}', which only the caller "
                    "provides. Give the output another name"
                )
            elif name != PIPELINE_OUTPUT and _RESERVED_LOOKING.match(name):
                problems.append(_unknown_reserved(node, name, "output_nodes"))
            elif name in producer:
                first = producer[name].name
                if name == PIPELINE_OUTPUT:
                    problems.append(
                        f"'{PIPELINE_OUTPUT}' is produced twice, by nodes {first!r} and "
                        f"{node.name!r}; a pipeline has one output, so rename one of them"
                    )
                else:
                    problems.append(
                        f"output {name!r} is produced by two nodes, {first!r} and "
                        f"{node.name!r}; rename one of the outputs"
                    )
            else:
                producer[name] = node
    for node in nodes:
        for name in wiring[id(node)][0]:
            if name == PIPELINE_INPUT or name in producer or _RESERVED_LOOKING.match(name):
                continue
            hint = difflib.get_close_matches(name, list(producer), n=1)
            fix = f"did you mean {hint[0]!r}?" if hint else "add a node that outputs it"
            problems.append(
                f"node {node.name!r} takes input {name!r}, which no node produces; {fix}"
            )
    if problems:
        raise PipelineDefinitionError(_problem_report(where, problems))
    return _topological_order(nodes, wiring, producer, where), wiring


def _unknown_reserved(node: BaseNode, name: str, argument: str) -> str:
    return (
        f"node {node.name!r} uses {name!r} in {argument}: names of the form '__x__' are "
        f"reserved and the only ones are '{PIPELINE_INPUT}' and '{PIPELINE_OUTPUT}'"
    )


def _problem_report(where: str, problems: list[str]) -> str:
    if len(problems) == 1:
        return f"{where} is invalid: {problems[0]}"
    lines = "\n".join(f"  - {problem}" for problem in problems)
    return f"{where} is invalid ({len(problems)} problems):\n{lines}"


def _topological_order(
    nodes: list[BaseNode],
    wiring: dict[int, tuple[list[str], list[str]]],
    producer: dict[str, BaseNode],
    where: str,
) -> list[BaseNode]:
    """Kahn's algorithm; ties keep the order the nodes were given in."""
    position = {id(node): index for index, node in enumerate(nodes)}
    upstream: dict[int, set[int]] = {}
    downstream: dict[int, list[BaseNode]] = {id(node): [] for node in nodes}
    for node in nodes:
        ups = {id(producer[name]) for name in wiring[id(node)][0] if name in producer}
        upstream[id(node)] = ups
        for up in ups:
            downstream[up].append(node)
    waiting = {key: len(ups) for key, ups in upstream.items()}
    ready = [(position[id(node)], node) for node in nodes if not waiting[id(node)]]
    heapq.heapify(ready)
    ordered: list[BaseNode] = []
    while ready:
        _, node = heapq.heappop(ready)
        ordered.append(node)
        for down in downstream[id(node)]:
            waiting[id(down)] -= 1
            if not waiting[id(down)]:
                heapq.heappush(ready, (position[id(down)], down))
    if len(ordered) < len(nodes):
        cycle = _find_cycle([node for node in nodes if waiting[id(node)]], upstream, nodes)
        names = " -> ".join(node.name for node in cycle)
        msg = f"{where} is invalid: its nodes form a cycle ({names}); break it by renaming an input"
        raise PipelineDefinitionError(msg)
    return ordered


def _find_cycle(
    stuck: list[BaseNode], upstream: dict[int, set[int]], nodes: list[BaseNode]
) -> list[BaseNode]:
    """Walk upstream from a stuck node until a node repeats: that loop is a cycle."""
    by_id = {id(node): node for node in nodes}
    stuck_ids = {id(node) for node in stuck}
    path: list[int] = [id(stuck[0])]
    seen = {path[0]: 0}
    while True:
        step = next(up for up in upstream[path[-1]] if up in stuck_ids)
        if step in seen:
            loop = path[seen[step] :] + [step]
            return [by_id[key] for key in reversed(loop)]
        seen[step] = len(path)
        path.append(step)


# -- compilation ---------------------------------------------------------------------------
def _compile(
    ordered: list[BaseNode], wiring: dict[int, tuple[list[str], list[str]]]
) -> ExecutionPlan:
    last_use: dict[str, int] = {}
    for index, node in enumerate(ordered):
        for name in wiring[id(node)][0]:
            last_use[name] = index
    slot_of = {PIPELINE_INPUT: 0}
    free: list[int] = []
    n_slots = 1
    if PIPELINE_INPUT not in last_use:
        free.append(0)  # nobody reads the input: its slot is free from the start
    steps = []
    for index, node in enumerate(ordered):
        inputs, outputs = wiring[id(node)]
        input_slots = tuple(slot_of[name] for name in inputs)
        freed = [slot_of[name] for name in dict.fromkeys(inputs) if last_use[name] == index]
        free.extend(freed)
        output_slots = []
        for name in outputs:
            if name in last_use or name == PIPELINE_OUTPUT:
                if free:
                    slot = free.pop()
                else:
                    slot, n_slots = n_slots, n_slots + 1
                slot_of[name] = slot
                output_slots.append(slot)
            else:
                output_slots.append(_DISCARD)
        releases = tuple(slot for slot in freed if slot not in output_slots)
        call: Any = node.op if isinstance(node, Node) and node.requires_runner else node.executor()
        if isinstance(node, Node) and node.requires_runner:
            kind = StepKind.NESTED
        elif len(input_slots) == 1 and len(output_slots) == 1 and output_slots[0] != _DISCARD and not releases:
            kind = StepKind.SIMPLE
        else:
            kind = StepKind.GENERAL
        if kind == StepKind.SIMPLE:
            steps.append((kind, call, input_slots[0], output_slots[0], releases, node))
        else:
            steps.append((kind, call, input_slots, tuple(output_slots), releases, node))
    return ExecutionPlan(tuple(steps), n_slots, slot_of.get(PIPELINE_OUTPUT))
