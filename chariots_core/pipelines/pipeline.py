"""Pipelines: a validated DAG of nodes, compiled once into a flat execution plan.

Building a pipeline checks the wiring (every input produced once, no cycle, reserved names
used correctly) and reports every problem at once. It then sorts the nodes topologically and
hands them to :mod:`chariots_core.pipelines.plan`, which compiles the plan runners execute. Nothing here
recurses over the chain of nodes, so pipelines of any length work; only nested pipelines are
handled one nesting level at a time.
"""

from __future__ import annotations

import difflib
import heapq
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import PipelineDefinitionError
from ..savers import BaseSaver
from ..versioning import Version
from .callbacks import PipelineCallback
from .nodes import BaseNode, Node, ReservedNodes, Writers, is_implicit_output
from .ops import BaseOp
from .plan import Wiring, compile_plan

if TYPE_CHECKING:
    from ..show.picture import Picture
    from .data_nodes import DatasetLedger

__all__ = ["Pipeline"]

PIPELINE_INPUT = ReservedNodes.pipeline_input.value
PIPELINE_OUTPUT = ReservedNodes.pipeline_output.value
_RESERVED_LOOKING = re.compile(r"^__.*__$")
# Pipeline names become URL path segments and file names: keep them to a safe alphabet.
_VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

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
        problems: list[str] = []
        if not isinstance(name, str) or not _VALID_NAME.match(name):
            problems.append(
                f"'name' must be a non-empty string of letters, digits, '_', '.' and '-' "
                f"starting with a letter or digit (got {name!r})"
            )
        if use_worker is not None and not isinstance(use_worker, bool):
            problems.append(f"'use_worker' must be True, False or None (got {use_worker!r})")
        callbacks = list(pipeline_callbacks or ())
        problems.extend(
            f"'pipeline_callbacks' must hold PipelineCallback objects (got {callback!r} that is "
            f"a {type(callback).__name__}); subclass PipelineCallback"
            for callback in callbacks
            if not isinstance(callback, PipelineCallback)
        )
        if isinstance(pipeline_nodes, (BaseNode, str)) or not isinstance(pipeline_nodes, Iterable):
            problems.append(
                f"'pipeline_nodes' must be a list of nodes (got {pipeline_nodes!r}); "
                "wrap a single node in a list"
            )
            pipeline_nodes = []
        self._name = name
        self._nodes = list(pipeline_nodes)
        self.pipeline_callbacks: list[PipelineCallback] = callbacks
        self.use_worker = use_worker
        self._ordered, self._wiring = _validate_and_sort(self._nodes, name, problems)
        self.plan = compile_plan(self._ordered, self._wiring)

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

    def __str__(self) -> str:
        # What chariots 0.2 printed for a pipeline (its docs show callbacks logging it).
        return f"<OP {self._name}>"

    def __repr__(self) -> str:
        from .pictures import describe  # drawing is rare: importing chariots_core does not load it

        return describe(self)

    # -- pictures ----------------------------------------------------------------------------
    def picture(self) -> Picture:
        """The pipeline as a :class:`~chariots_core.show.Picture`, which every format is drawn from."""
        from .pictures import pipeline_picture

        return pipeline_picture(self)

    def to_dot(self) -> str:
        """The pipeline as Graphviz DOT text (``dot -Tsvg`` draws it where Graphviz is installed)."""
        from ..show.dot import to_dot

        return to_dot(self.picture())

    def to_mermaid(self) -> str:
        """The pipeline as a Mermaid flowchart (drawn natively by GitHub, GitLab, many notebooks)."""
        from ..show.mermaid import to_mermaid

        return to_mermaid(self.picture())

    def _repr_svg_(self) -> str:
        """Notebooks draw a pipeline as its picture (an SVG made here, with no dependency)."""
        from ..show.svg import to_svg

        return to_svg(self.picture())

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
        """A pipeline wired the same, where the named op nodes run the given ops.

        Nested pipelines are rebuilt as needed. Used to swap freshly loaded ops in at once.
        Returns this pipeline itself if no node has one of the names.
        """

        def swap(node: BaseNode) -> BaseNode:
            if isinstance(node, Node) and node.name in ops_by_node_name:
                return node.with_op(ops_by_node_name[node.name])
            return node

        return self.replace_nodes(swap)

    def bind_saver(
        self, saver: BaseSaver, writers: Writers | None = None, ledger: DatasetLedger | None = None
    ) -> Pipeline:
        """A pipeline wired the same, where the nodes that require a saver run with ``saver``.

        Nodes that already have a saver keep theirs (see :meth:`BaseNode.bind_saver`); returns
        this pipeline itself if no node changed.

        :param writers: for each dataset path, who in the app writes it (for error messages).
        :param ledger: where the datasets written through ``saver`` are recorded and checked.
        """
        return self.replace_nodes(
            lambda node: node.bind_saver(saver, writers, ledger) if node.require_saver else node
        )

    def replace_nodes(self, replace: Callable[[BaseNode], BaseNode]) -> Pipeline:
        """A pipeline wired the same, where each node is ``replace(node)``; nodes stay untouched.

        ``replace`` is called on every node except those that nest a pipeline, which are
        rebuilt around the nested pipeline's own replacement. A replacement must produce the
        same outputs, as other nodes may name it by the node object they were built with.
        Returns this pipeline itself when ``replace`` changed nothing.
        """
        nodes: list[BaseNode] = []
        for node in self._nodes:
            if isinstance(node, Node) and isinstance(node.op, Pipeline):
                inner = node.op.replace_nodes(replace)
                nodes.append(node if inner is node.op else node.with_op(inner))
            else:
                nodes.append(replace(node))
        if all(new is old for new, old in zip(nodes, self._nodes)):
            return self
        return Pipeline(nodes, self._name, self.pipeline_callbacks, self.use_worker)

    def saver_nodes(self) -> Iterator[BaseNode]:
        """Every node that reads or writes through a saver (data nodes), nested pipelines included."""
        for node in self._ordered:
            if isinstance(node, Node) and isinstance(node.op, Pipeline):
                yield from node.op.saver_nodes()
            elif node.require_saver:
                yield node


# -- validation ----------------------------------------------------------------------------
def _validate_and_sort(
    nodes: list[Any], pipeline_name: str, problems: list[str]
) -> tuple[list[BaseNode], Wiring]:
    """Check the wiring and sort the nodes topologically.

    :param problems: problems already found (name, options); raised together with these.
    :raises PipelineDefinitionError: one error listing every problem found.
    """
    where = f"pipeline {pipeline_name!r}"
    listed, positions, wiring = _wire(nodes, where, problems)
    producer = _producers(listed, wiring, problems)
    _check_inputs(listed, wiring, producer, where, problems)
    ordered, cycle = _topological_order(listed, wiring, producer, positions)
    if cycle:
        problems.append(_describe_cycle(cycle, wiring, producer, positions, listed))
    if problems:
        raise PipelineDefinitionError(_problem_report(where, problems))
    return ordered, wiring


def _wire(
    nodes: list[Any], where: str, problems: list[str]
) -> tuple[list[BaseNode], dict[int, int], Wiring]:
    """Resolve each node's input and output names; skip (and report) what cannot be wired."""
    listed: list[BaseNode] = []
    positions: dict[int, int] = {}
    wiring: Wiring = {}
    for position, node in enumerate(nodes):
        if not isinstance(node, BaseNode):
            problems.append(
                f"item {position} of {where} must be a node (got {node!r} that is a "
                f"{type(node).__name__}); wrap ops as Node(op, input_nodes=..., output_nodes=...)"
            )
            continue
        if id(node) in positions:
            problems.append(
                f"node {node.name!r} is listed twice (items {positions[id(node)]} and "
                f"{position}); list each node once, or make a second Node to use an op twice"
            )
            continue
        positions[id(node)] = position
        try:
            wiring[id(node)] = (node.input_references, node.output_references)
        except PipelineDefinitionError as exc:
            problems.append(str(exc))
            continue
        listed.append(node)
    return listed, positions, wiring


def _producers(listed: list[BaseNode], wiring: Wiring, problems: list[str]) -> dict[str, BaseNode]:
    """Map each value name to the node producing it; report reserved-name misuse and duplicates."""
    producer: dict[str, BaseNode] = {}
    for node in listed:
        for name in wiring[id(node)][1]:
            if name == PIPELINE_INPUT:
                problems.append(
                    f"node {node.name!r} produces '{PIPELINE_INPUT}', which only the caller "
                    "provides. Give the output another name"
                )
            elif name != PIPELINE_OUTPUT and _RESERVED_LOOKING.match(name):
                problems.append(_unknown_reserved(node, name, "output_nodes"))
            elif producer.get(name) is node:
                problems.append(
                    f"node {node.name!r} lists output {name!r} twice in output_nodes; give each "
                    "output its own name"
                )
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
    return producer


def _check_inputs(
    listed: list[BaseNode],
    wiring: Wiring,
    producer: dict[str, BaseNode],
    where: str,
    problems: list[str],
) -> None:
    """Report inputs that are reserved-name misuse or that no node produces."""
    known = [PIPELINE_INPUT] + [
        name for name in producer if name != PIPELINE_OUTPUT and not is_implicit_output(name)
    ]
    for node in listed:
        for ref, name in zip(node._input_nodes, wiring[id(node)][0]):
            if name == PIPELINE_INPUT or (name in producer and name != PIPELINE_OUTPUT):
                continue
            if name == PIPELINE_OUTPUT:
                problems.append(
                    f"node {node.name!r} takes '{PIPELINE_OUTPUT}' as an input; it can only be "
                    "an output. Give the value another name"
                )
            elif _RESERVED_LOOKING.match(name):
                problems.append(_unknown_reserved(node, name, "input_nodes"))
            elif isinstance(ref, BaseNode):
                problems.append(
                    f"node {node.name!r} takes the output of node {ref.name!r}, which is not "
                    f"part of {where}; add that node to the pipeline's nodes"
                )
            else:
                hint = difflib.get_close_matches(name, known, n=1)
                fix = f"did you mean {hint[0]!r}?" if hint else "add a node that outputs it"
                problems.append(
                    f"node {node.name!r} takes input {name!r}, which no node produces; {fix}"
                )


def _unknown_reserved(node: BaseNode, name: str, argument: str) -> str:
    hint = difflib.get_close_matches(name, [PIPELINE_INPUT, PIPELINE_OUTPUT], n=1)
    fix = f"did you mean {hint[0]!r}?" if hint else "give the value a name without '__'"
    return (
        f"node {node.name!r} uses {name!r} in {argument}: names of the form '__x__' are "
        f"reserved and the only ones are '{PIPELINE_INPUT}' and '{PIPELINE_OUTPUT}'; {fix}"
    )


def _problem_report(where: str, problems: list[str]) -> str:
    if len(problems) == 1:
        return f"{where} is invalid: {problems[0]}"
    lines = "\n".join(f"  - {problem}" for problem in problems)
    return f"{where} is invalid ({len(problems)} problems):\n{lines}"


def _topological_order(
    nodes: list[BaseNode],
    wiring: Wiring,
    producer: dict[str, BaseNode],
    positions: dict[int, int],
) -> tuple[list[BaseNode], list[BaseNode] | None]:
    """Kahn's algorithm; ties keep the order the nodes were given in.

    :returns: the nodes in run order, and a cycle (first node repeated last) if there is one.
    """
    upstream: dict[int, list[int]] = {}
    downstream: dict[int, list[BaseNode]] = {id(node): [] for node in nodes}
    for node in nodes:
        ups = list(
            dict.fromkeys(id(producer[name]) for name in wiring[id(node)][0] if name in producer)
        )
        upstream[id(node)] = ups
        for up in ups:
            downstream[up].append(node)
    waiting = {key: len(ups) for key, ups in upstream.items()}
    ready = [(positions[id(node)], node) for node in nodes if not waiting[id(node)]]
    heapq.heapify(ready)
    ordered: list[BaseNode] = []
    while ready:
        _, node = heapq.heappop(ready)
        ordered.append(node)
        for down in downstream[id(node)]:
            waiting[id(down)] -= 1
            if not waiting[id(down)]:
                heapq.heappush(ready, (positions[id(down)], down))
    if len(ordered) == len(nodes):
        return ordered, None
    stuck = [node for node in nodes if waiting[id(node)]]
    return ordered, _find_cycle(stuck, upstream, positions)


def _find_cycle(
    stuck: list[BaseNode], upstream: dict[int, list[int]], positions: dict[int, int]
) -> list[BaseNode]:
    """Walk upstream from a stuck node until a node repeats: that loop is a cycle.

    Every stuck node waits on another stuck node, so the walk always finds one. The cycle is
    returned in data-flow order, starting from its earliest-listed node.
    """
    by_id = {id(node): node for node in stuck}
    path: list[int] = [id(stuck[0])]
    seen = {path[0]: 0}
    while True:
        step = next(up for up in upstream[path[-1]] if up in by_id)
        if step in seen:
            loop = list(reversed(path[seen[step] :]))
            start = min(range(len(loop)), key=lambda index: positions[loop[index]])
            loop = loop[start:] + loop[:start]
            return [by_id[key] for key in loop + loop[:1]]
        seen[step] = len(path)
        path.append(step)


def _describe_cycle(
    cycle: list[BaseNode],
    wiring: Wiring,
    producer: dict[str, BaseNode],
    positions: dict[int, int],
    listed: list[BaseNode],
) -> str:
    """Name each node of the cycle and the values that flow between them."""
    name_counts = Counter(node.name for node in listed)

    def label(node: BaseNode) -> str:
        if name_counts[node.name] > 1:
            return f"{node.name!r} (item {positions[id(node)]})"
        return repr(node.name)

    parts = [label(cycle[0])]
    values: list[str] = []
    for up, down in zip(cycle, cycle[1:]):
        flowing = [
            "(unnamed output)" if is_implicit_output(name) else repr(name)
            for name in dict.fromkeys(wiring[id(down)][0])
            if producer.get(name) is up
        ]
        values.extend(flowing)
        parts.append(f"--{', '.join(flowing)}--> {label(down)}")
    return (
        f"its nodes form a cycle: {' '.join(parts)}. A node cannot depend on its own output: "
        f"take one of {', '.join(values)} from outside the cycle (rename that input or output)"
    )
