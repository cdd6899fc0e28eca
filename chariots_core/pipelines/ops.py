"""Ops: the units of computation that nodes place in a pipeline.

Subclass :class:`BaseOp` and override ``execute``::

    >>> class AddOp(BaseOp):
    ...     number_to_add = VersionedField(3, VersionType.MAJOR)
    ...     def execute(self, op_input):
    ...         return op_input + self.number_to_add
    >>> AddOp().execute(3)
    6

An op is a versioned class: its :class:`~chariots_core.versioning.VersionedField` attributes
make up ``AddOp.__version__``. Subclass :class:`LoadableOp` for ops whose state is saved to
and loaded from an op store (trained models, fitted encoders...).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, BinaryIO

from ..versioning import Version, VersionableMeta
from .callbacks import OpCallBack, overrides

__all__ = ["BaseOp", "LoadableOp", "fresh_copy", "trained_since"]


class BaseOp(metaclass=VersionableMeta):
    """The base of every op.

    :param op_callbacks: :class:`OpCallBack` objects run before and after each execution.
        Runners read them (and whether the hooks are overridden) when the pipeline is built.
    """

    # Subclasses often define __init__ without calling super().__init__(): this class-level
    # default keeps such ops working, with no callbacks.
    op_callbacks: Sequence[OpCallBack] = ()

    def __init__(self, op_callbacks: Iterable[OpCallBack] | None = None) -> None:
        self.op_callbacks = list(op_callbacks or ())

    def execute(self, *args: Any) -> Any:
        """Compute the op's output; receives one argument per input node, in order."""
        msg = f"{type(self).__name__} must override execute(self, *args)"
        raise NotImplementedError(msg)

    def before_execution(self, args: list[Any]) -> None:
        """One-off hook run just before :meth:`execute` (after the op callbacks' hooks)."""

    def after_execution(self, args: list[Any], output: Any) -> None:
        """One-off hook run just after :meth:`execute` (before the op callbacks' hooks)."""

    @property
    def name(self) -> str:
        """The op's name: its class name in lower case. The op store files versions under it."""
        return type(self).__name__.lower()

    @property
    def op_version(self) -> Version:
        """The version this op runs as: its class version (ML ops add their training)."""
        return type(self).__version__

    @property
    def allow_version_change(self) -> bool:
        """Whether this op may be loaded from a version saved by different code (default no)."""
        return False

    def execute_with_all_callbacks(self, args: list[Any]) -> Any:
        """Execute the op with its callbacks and hooks, in the documented order."""
        for callback in self.op_callbacks:
            callback.before_execution(self, args)
        self.before_execution(args)
        output = self.execute(*args)
        self.after_execution(args, output)
        for callback in self.op_callbacks:
            callback.after_execution(self, args, output)
        return output

    def executor(self) -> Callable[..., Any]:
        """The callable a runner should invoke with the op's arguments.

        Plain ``execute`` when the op has no callbacks and overrides no hook, so that a
        pipeline of simple ops costs little more than calling them directly.
        """
        if (
            self.op_callbacks
            or overrides(self, BaseOp, "before_execution")
            or overrides(self, BaseOp, "after_execution")
        ):
            return lambda *args: self.execute_with_all_callbacks(list(args))
        return self.execute

    def __repr__(self) -> str:
        return f"<{type(self).__name__} op {self.name!r}>"


class LoadableOp(BaseOp):
    """An op whose state is saved to and loaded from an op store.

    Override :meth:`serialize` (state to bytes) and :meth:`load` (bytes to state) as well as
    ``execute``. Saving a pipeline stores ``serialize()`` under the op's name and version;
    loading a pipeline passes the bytes of the latest compatible version to ``load``.

    An op with big state (a model of hundreds of megabytes) also overrides the streaming pair,
    :meth:`serialize_to` and :meth:`load_from`: the store then writes and reads the state through
    a file object, and memory never holds a second copy of it. Saving and loading always go
    through the streaming pair, whose defaults call :meth:`serialize` and :meth:`load`.
    """

    def load(self, serialized_object: bytes) -> None:
        """Set the op's state from bytes made by :meth:`serialize`."""
        msg = f"{type(self).__name__} must override load(self, serialized_object: bytes)"
        raise NotImplementedError(msg)

    def serialize(self) -> bytes:
        """Return the op's state as bytes that :meth:`load` accepts."""
        msg = f"{type(self).__name__} must override serialize(self) -> bytes"
        raise NotImplementedError(msg)

    def serialize_to(self, file: BinaryIO) -> None:
        """Write the op's state to the binary ``file`` (default: the bytes of :meth:`serialize`).

        :raises TypeError: if :meth:`serialize` does not return bytes.
        """
        data = self.serialize()
        if not isinstance(data, (bytes, bytearray, memoryview)):
            msg = f"it returned a {type(data).__name__}; serialize() must return bytes"
            raise TypeError(msg)
        file.write(data)

    def load_from(self, file: BinaryIO) -> None:
        """Set the op's state from a binary ``file`` holding what :meth:`serialize_to` wrote
        (default: :meth:`load` of its bytes). The file's bytes were checked against the sha256
        recorded when they were saved before this is called."""
        self.load(file.read())

    @property
    def loads_in_place(self) -> bool:
        """Whether :meth:`load_from` keeps views of a file that holds its bytes in memory
        (``file.getbuffer()``) rather than copying them (default no). The store then reads a big
        state into memory once, checking it on the way, and the op's state lives in that memory;
        otherwise it checks the stored bytes, then lets the op read them again."""
        return False

    @property
    def requires_saved_state(self) -> bool:
        """Whether the op is useless until a saved version is loaded (predict-only models)."""
        return False

    @property
    def holds_trained_state(self) -> bool:
        """Whether the op's version names state it acquired, beyond what its code defines.

        A fitted (or loaded) ML op runs as its class version plus its training run, so it
        does; a plain LoadableOp runs as its class version whatever its state, so it never
        does. The op store trusts a version that names its state: once saved, it is not
        serialized again, and an op serving it need not be loaded again.
        """
        return self.op_version != type(self).__version__


def fresh_copy(op: BaseOp) -> BaseOp:
    """A new op object sharing ``op``'s attributes, for ``load`` to rebind state on.

    The op in service stays untouched, so an op that fails to load changes nothing (``load``
    must set state by assignment, as every Chariots op does). Not ``copy.copy``: that goes
    through ``__getstate__``, where ML ops serialize their model.
    """
    twin = object.__new__(type(op))
    twin.__dict__.update(vars(op))
    return twin


def trained_since(ops: Mapping[str, BaseOp], before: Mapping[str, Version]) -> dict[str, LoadableOp]:
    """The ops of ``ops`` (by node name) that a run trained after ``before`` was taken.

    ``before`` holds each op's ``op_version`` from before the run. An op was trained by the run
    when it now holds trained state (:attr:`LoadableOp.holds_trained_state`) under another
    version: a fit, or a load of another saved version. Plain ops, and loadable ops whose version
    does not name their state, are never reported.
    """
    return {
        name: op
        for name, op in ops.items()
        if isinstance(op, LoadableOp) and op.holds_trained_state and op.op_version != before.get(name)
    }
