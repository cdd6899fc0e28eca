"""Nodes: the slots of a pipeline and the wiring between them.

A node names the values it consumes (``input_nodes``) and the values it produces
(``output_nodes``). Names are plain strings, or node objects standing for that node's single
output. Two names are reserved: ``"__pipeline_input__"`` (what the caller passes to the
pipeline) and ``"__pipeline_output__"`` (what the pipeline returns)::

    Node(AddOneOp(), input_nodes=["__pipeline_input__"], output_nodes="added")
    Node(IsOddOp(), input_nodes=["added"], output_nodes="__pipeline_output__")

Data nodes, which read and write datasets instead of running an op, are in
:mod:`chariots_core.pipelines.data_nodes`.
"""

from __future__ import annotations

import abc
import enum
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Union

from ..errors import PipelineDefinitionError
from ..versioning import Version
from .ops import BaseOp, LoadableOp

if TYPE_CHECKING:
    from ..savers import BaseSaver
    from .data_nodes import DatasetLedger
    from .pipeline import Pipeline

__all__ = ["ReservedNodes", "BaseNode", "Node", "NodeReference", "Writers", "is_implicit_output"]


class ReservedNodes(enum.Enum):
    """Value names with a fixed meaning in every pipeline."""

    pipeline_input = "__pipeline_input__"
    pipeline_output = "__pipeline_output__"

    @property
    def reference(self) -> str:
        """The name to use in ``input_nodes`` / ``output_nodes``."""
        return self.value


NodeReference = Union[str, "BaseNode", ReservedNodes]
Writers = Mapping[str, Sequence[str]]  # for each dataset path, who in the app writes it

_node_numbers = itertools.count(1)
_IMPLICIT_PREFIX = "<output of node #"


def is_implicit_output(name: str) -> bool:
    """Whether ``name`` is the generated name of a node declared without ``output_nodes``."""
    return name.startswith(_IMPLICIT_PREFIX)


class BaseNode(abc.ABC):
    """A step of a pipeline: what it consumes, what it produces, how it runs.

    Subclasses define :attr:`name`, :attr:`node_version` and :meth:`execute`.

    :param input_nodes: the values passed to the node, in order (strings or nodes; a single
        one may be given without a list).
    :param output_nodes: the name(s) of the node's output(s); a node that returns a tuple or
        list gives one name per element.
    """

    def __init__(
        self,
        input_nodes: Sequence[NodeReference] | None = None,
        output_nodes: Sequence[NodeReference] | NodeReference | None = None,
    ) -> None:
        self._input_nodes = _reference_list(input_nodes, "input_nodes")
        self._declared_outputs = _reference_list(output_nodes, "output_nodes")
        # Names the output of a node declared without outputs, so that the node object itself
        # can be used as another node's input.
        self._implicit_output = f"{_IMPLICIT_PREFIX}{next(_node_numbers)}>"

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """The node's name."""

    @property
    @abc.abstractmethod
    def node_version(self) -> Version:
        """The version of what the node runs."""

    @abc.abstractmethod
    def execute(self, *params: Any) -> Any:
        """Run the node on the values of its inputs and return its output(s)."""

    @property
    def is_loadable(self) -> bool:
        """Whether the node has state saved to and loaded from an op store."""
        return False

    @property
    def requires_runner(self) -> bool:
        """Whether the node needs a runner to execute (a nested pipeline does)."""
        return False

    @property
    def require_saver(self) -> bool:
        """Whether the node reads or writes through a saver when it runs (data nodes do)."""
        return False

    def bind_saver(
        self, saver: BaseSaver, writers: Writers | None = None, ledger: DatasetLedger | None = None
    ) -> BaseNode:
        """This node, set to run with ``saver``; the app calls it on nodes that require one.

        Returns a new node and leaves this one as it is; a node that needs no saver, or
        already has its own, returns itself.

        :param writers: for each dataset path, who in the app writes it (for error messages).
        :param ledger: where the datasets written through ``saver`` are recorded and checked.
        """
        return self

    @property
    def input_references(self) -> list[str]:
        """The names of the values this node consumes, in order."""
        return [_reference_name(ref, self, "input_nodes") for ref in self._input_nodes]

    @property
    def output_references(self) -> list[str]:
        """The names of the values this node produces.

        A node declared without outputs produces one unnamed value, which other nodes can
        consume by using the node object itself as an input.
        """
        if not self._declared_outputs:
            return [self._implicit_output]
        return [_reference_name(ref, self, "output_nodes") for ref in self._declared_outputs]

    def executor(self) -> Callable[..., Any]:
        """The callable a runner invokes with the node's arguments."""
        return self.execute

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def _reference_list(
    references: Sequence[NodeReference] | NodeReference | None, argument: str
) -> list[NodeReference]:
    """``references`` as a list; a single name or node stands for a list of one."""
    if references is None:
        return []
    if isinstance(references, (str, BaseNode, ReservedNodes)):
        return [references]
    if isinstance(references, Iterable):
        return list(references)
    msg = (
        f"'{argument}' must be a list of value names or nodes (got {references!r} that is a "
        f"{type(references).__name__})"
    )
    raise PipelineDefinitionError(msg)


def _reference_name(ref: NodeReference, owner: BaseNode, argument: str) -> str:
    if isinstance(ref, ReservedNodes):
        return ref.value
    if isinstance(ref, str):
        return ref
    if isinstance(ref, BaseNode):
        outputs = ref._declared_outputs
        if not outputs:
            return ref._implicit_output
        if len(outputs) == 1:
            return _reference_name(outputs[0], ref, "output_nodes")
        names = ", ".join(repr(_reference_name(output, ref, "output_nodes")) for output in outputs)
        msg = (
            f"node {owner.name!r} uses node {ref.name!r} in {argument}, but {ref.name!r} has "
            f"{len(outputs)} outputs ({names}); name the output you mean as a string instead"
        )
        raise PipelineDefinitionError(msg)
    msg = (
        f"'{argument}' of node {owner.name!r} must hold strings or nodes "
        f"(got {ref!r} that is a {type(ref).__name__})"
    )
    raise PipelineDefinitionError(msg)


class Node(BaseNode):
    """A node that runs an op (or a whole pipeline, nested).

    :param op: the op to run, or a :class:`~chariots_core.Pipeline` to run as one step.
    :param input_nodes: the values passed to the op, one argument each, in order.
    :param output_nodes: the name(s) of the op's output(s).
    :param name: the node's name; defaults to the op's name. The op store files a loadable
        op's versions under this name, so give two loadable nodes of one class distinct names.
    """

    def __init__(
        self,
        op: BaseOp | Pipeline,
        input_nodes: Sequence[NodeReference] | None = None,
        output_nodes: Sequence[NodeReference] | NodeReference | None = None,
        name: str | None = None,
    ) -> None:
        from .pipeline import Pipeline

        if not isinstance(op, (BaseOp, Pipeline)):
            msg = (
                f"'op' must be a BaseOp or a Pipeline (got {op!r} that is a {type(op).__name__}); "
                "wrap your function in a BaseOp subclass that overrides execute()"
            )
            raise PipelineDefinitionError(msg)
        super().__init__(input_nodes, output_nodes)
        self._op = op
        self._name = name
        self._nested = isinstance(op, Pipeline)

    @property
    def op(self) -> BaseOp | Pipeline:
        """The op (or nested pipeline) this node runs."""
        return self._op

    @property
    def name(self) -> str:
        return self._name if self._name is not None else self._op.name

    @property
    def node_version(self) -> Version:
        return self._op.op_version

    @property
    def is_loadable(self) -> bool:
        return isinstance(self._op, LoadableOp)

    @property
    def requires_runner(self) -> bool:
        return self._nested

    def execute(self, *params: Any) -> Any:
        return self._op.execute(*params)

    def executor(self) -> Callable[..., Any]:
        return self._op.executor()

    def with_op(self, op: BaseOp | Pipeline) -> Node:
        """A copy of this node, wired the same way, that runs ``op`` instead."""
        twin = Node(op, self._input_nodes, self._declared_outputs, name=self.name)
        twin._implicit_output = self._implicit_output
        return twin
