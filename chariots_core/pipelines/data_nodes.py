"""Data nodes: pipeline steps that read or write a dataset through a saver, and run no op.

A :class:`DataLoadingNode` reads a dataset from a saver and a :class:`DataSavingNode` writes
one, each through a serializer::

    DataLoadingNode(CSVSerializer(), "iris.csv", output_nodes="raw")
    DataSavingNode(JSONSerializer(), "clean.json", input_nodes=["clean"])

Their saver is the app's: :class:`~chariots_core.Chariots` binds it when it is given the
pipeline (or pass ``saver=`` to the node to run it elsewhere). Datasets live under
:data:`DATA_PREFIX` in the saver, apart from the app's op blobs and job results. Pipelines run
by worker processes take their saver along, so there it must be shared storage (files, object
storage): a data node refuses to run with a :class:`~chariots_core.MemorySaver` in another
process than the one that bound it, where it would read and write a stale private copy.

**Nothing unchecked is deserialized.** With its saver the app binds a :class:`DatasetLedger`
(records in its op store, see :mod:`chariots_core.op_store.datasets`): a saving node records
the sha256 and size of every dataset it writes, and a loading node reads the bytes once,
hashes them, and hands them to its serializer only if the app wrote exactly those bytes there;
otherwise it raises :class:`~chariots_core.errors.IntegrityError` naming the path. A file that
comes from outside the app (a CSV another system drops) is read only by a node declared
``external=True``, and through a serializer that runs code while reading (dill) only with
``allow_code_execution=True`` as well.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from ..errors import ChariotsError, ConfigError, NotSavedError, PipelineDefinitionError, SerializationError
from ..savers import BaseSaver, MemorySaver, check_relative_path
from ..verified import HashingWriter
from ..versioning import Version, VersionedField, VersionType
from .nodes import BaseNode, NodeReference, Writers
from .serializers import BaseSerializer

__all__ = ["DataLoadingNode", "DataSavingNode", "DatasetLedger", "DATA_PREFIX"]


@runtime_checkable
class DatasetLedger(Protocol):
    """Where an app records the datasets its data nodes write, and checks those they read
    (implemented on the op store by :class:`~chariots_core.op_store.datasets.StoreDatasetLedger`)."""

    def record(self, path: str, sha256: str, size: int, node_name: str) -> None:
        """Record that node ``node_name`` wrote these bytes at saver path ``path``."""

    def verify(self, path: str, sha256: str, size: int, node_name: str) -> None:
        """Raise :class:`~chariots_core.errors.IntegrityError` unless the app wrote these bytes at ``path``."""


DATA_PREFIX = "data/"
"""Where datasets live in a saver: apart from op blobs (``ops/``) and job results (``jobs/``)."""


class _DataNode(BaseNode):
    """What both data nodes share: a serializer, a dataset path, and a saver bound late.

    The version is that of a class with two MAJOR fields, ``path`` and ``serializer`` (the
    serializer class's dotted name): another dataset or another format is another version.
    """

    _verb = ""  # "load" or "save": names the node by default and phrases its errors

    def __init__(
        self,
        serializer: BaseSerializer | type[BaseSerializer],
        path: str,
        input_nodes: Sequence[NodeReference] | NodeReference | None,
        output_nodes: Sequence[NodeReference] | NodeReference | None,
        name: str | None,
        saver: BaseSaver | None,
    ) -> None:
        super().__init__(input_nodes, output_nodes)
        kind = type(self).__name__
        if name is not None and (not isinstance(name, str) or not name):
            msg = f"'name' of a {kind} must be a non-empty string (got {name!r})"
            raise PipelineDefinitionError(msg)
        if not isinstance(path, str):
            msg = f"'path' of {kind} must be a string such as 'iris.csv' (got {path!r})"
            raise PipelineDefinitionError(msg)
        path = _dataset_path(path, kind, name)
        if isinstance(serializer, type) and issubclass(serializer, BaseSerializer):
            serializer = serializer()
        if not isinstance(serializer, BaseSerializer):
            msg = (
                f"'serializer' of {kind} {path!r} must be a serializer such as CSVSerializer() "
                f"from chariots_core.ml (got {serializer!r} that is a {type(serializer).__name__})"
            )
            raise PipelineDefinitionError(msg)
        if saver is not None and not isinstance(saver, BaseSaver):
            msg = (
                f"'saver' of {kind} {path!r} must be a saver (save, load, exists, delete) such "
                f"as MemorySaver() or FsspecSaver(url) (got a {type(saver).__name__})"
            )
            raise PipelineDefinitionError(msg)
        self._serializer = serializer
        self._path = path
        self._name = name if name is not None else f"{self._verb}:{path}"
        self._saver = saver
        self._ledger: DatasetLedger | None = None
        self._bound_in = os.getpid()
        serializer_class = type(serializer)
        serializer_name = f"{serializer_class.__module__}.{serializer_class.__qualname__}"
        self._version = (
            Version()
            + VersionedField(path, VersionType.MAJOR).version
            + VersionedField(serializer_name, VersionType.MAJOR).version
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def node_version(self) -> Version:
        return self._version

    @property
    def path(self) -> str:
        """The dataset's path relative to :data:`DATA_PREFIX` in the saver (without a leading ``/``)."""
        return self._path

    @property
    def saver_path(self) -> str:
        """Where the dataset's bytes are in the saver."""
        return DATA_PREFIX + self._path

    @property
    def serializer(self) -> BaseSerializer:
        """Turns the dataset into bytes and back."""
        return self._serializer

    @property
    def saver(self) -> BaseSaver | None:
        """The saver the node reads or writes through (``None`` until an app binds one)."""
        return self._saver

    @property
    def require_saver(self) -> bool:
        return True

    def bind_saver(
        self, saver: BaseSaver, writers: Writers | None = None, ledger: DatasetLedger | None = None
    ) -> BaseNode:
        if self._saver is not None:  # a saver given to the node itself wins over the app's
            return self
        twin = copy.copy(self)  # keeps the wiring, and the generated output name other nodes use
        twin._saver, twin._ledger = saver, ledger
        twin._bound_in = os.getpid()
        return twin

    def _bound_saver(self) -> BaseSaver:
        if self._saver is None:
            msg = (
                f"data node {self._name!r} has no saver to {self._verb} dataset {self._path!r} "
                "with: add its pipeline to a Chariots app and run it with app.call_pipeline (the "
                f"app binds its saver), or pass saver=... to {type(self).__name__}"
            )
            raise ConfigError(msg)
        if isinstance(self._saver, MemorySaver) and os.getpid() != self._bound_in:
            msg = (
                f"data node {self._name!r} runs in process {os.getpid()} but its MemorySaver "
                f"lives in process {self._bound_in}: it would {self._verb} dataset {self._path!r} "
                "in a private copy. Give the app a saver other processes share (the default "
                "files under its path, or object storage), or run without worker processes"
            )
            raise ConfigError(msg)
        return self._saver

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name!r} path={self._path!r}>"


def _dataset_path(path: str, kind: str, name: str | None) -> str:
    """``path`` as a saver path: a leading ``/`` means the saver's root, as in chariots 0.2.

    ``"/train.csv"`` and ``"train.csv"`` are the same dataset (and the same node version);
    ``..``, empty parts and a second leading ``/`` are refused, so no path leaves the saver.
    """
    relative = path[1:] if path.startswith("/") else path
    try:
        return check_relative_path(relative)
    except ChariotsError as exc:
        msg = (
            f"{kind} {name or path!r}: the dataset path {path!r} is invalid: it must name a file "
            f"below the saver's root, such as 'iris.csv' or '/iris.csv' ({exc})"
        )
        raise PipelineDefinitionError(msg) from exc


class DataLoadingNode(_DataNode):
    """A node that reads a dataset from the saver; it takes no input.

    The dataset is read on every run, so a pipeline sees what was saved last::

        DataLoadingNode(CSVSerializer(), "iris.csv", output_nodes="raw")

    It reads only bytes a :class:`DataSavingNode` of the app wrote (checked against their
    recorded sha256; see the module docstring). A file from outside the app needs
    ``external=True``::

        DataLoadingNode(CSVSerializer(), "drops/today.csv", output_nodes="raw", external=True)

    .. warning:: ``DillSerializer`` (and any serializer whose ``executes_code`` is true) runs
       code while reading: whoever can write an external file read through it can run any code
       in the processes of the app. Such a node also needs ``allow_code_execution=True``; give it
       only where the file's writer is trusted as much as the app's own code, and prefer a data
       format (``CSVSerializer``, ``JSONSerializer``) for data from outside.

    :param serializer: reads the bytes back (a serializer instance or class).
    :param path: the dataset's path below the saver's root (``"iris.csv"``, or ``"/iris.csv"``
        as chariots 0.2 wrote it); it is stored at ``data/<path>`` in the saver, e.g.
        ``<app path>/blobs/data/iris.csv`` for an app on local files.
    :param output_nodes: the name of the loaded value.
    :param name: the node's name (default ``"load:<path>"``).
    :param saver: a saver to read from instead of the app's (to run the pipeline without an app;
        nothing then records what is written there, so such a node needs ``external=True``).
    :param external: read the file whoever wrote it, unchecked.
    :param allow_code_execution: with ``external``, allow a serializer that runs code (see the
        warning above).
    :raises PipelineDefinitionError: if the path is not a safe relative path, the
        serializer/saver is of the wrong kind, or an external file would go through a
        code-running serializer without ``allow_code_execution``.
    """

    _verb = "load"

    def __init__(
        self,
        serializer: BaseSerializer | type[BaseSerializer],
        path: str,
        output_nodes: Sequence[NodeReference] | NodeReference | None = None,
        name: str | None = None,
        saver: BaseSaver | None = None,
        *,
        external: bool = False,
        allow_code_execution: bool = False,
    ) -> None:
        super().__init__(serializer, path, None, output_nodes, name, saver)
        self._writers: tuple[str, ...] = ()
        self.external = bool(external)
        if self.external and self._serializer.executes_code and not allow_code_execution:
            msg = (
                f"DataLoadingNode {self._name!r} reads an external file through "
                f"{type(self._serializer).__name__}, which runs code while reading: whoever can write "
                f"{self.saver_path!r} could run code in this app. Use a data format (CSVSerializer, "
                "JSONSerializer), or pass allow_code_execution=True too if that file's writer is "
                "trusted like the app's own code"
            )
            raise PipelineDefinitionError(msg)

    def bind_saver(
        self, saver: BaseSaver, writers: Writers | None = None, ledger: DatasetLedger | None = None
    ) -> BaseNode:
        twin = super().bind_saver(saver, writers, ledger)
        if twin is not self and writers:
            twin._writers = tuple(writers.get(self._path, ()))  # type: ignore[attr-defined]
        return twin

    def execute(self) -> Any:
        """Read the dataset, check it, and deserialize it.

        :raises NotSavedError: if nothing is saved at the path, naming who should write it.
        :raises IntegrityError: if the app did not write these bytes there (unless external).
        :raises SerializationError: if the serializer cannot read the bytes.
        :raises ConfigError: if no saver is bound, or the node cannot check what it reads.
        """
        saver = self._bound_saver()
        try:
            data = saver.load(self.saver_path)  # read once: what is checked is what is read
        except FileNotFoundError as exc:
            raise NotSavedError(self._missing(saver)) from exc
        if not self.external:
            self._checking_ledger().verify(self.saver_path, hashlib.sha256(data).hexdigest(), len(data), self._name)
        try:
            return self._serializer.deserialize_object(data)
        except SerializationError as exc:
            msg = f"dataset {self._path!r} (at {self.saver_path!r} in {saver!r}) cannot be read: {exc}"
            raise SerializationError(msg) from exc

    def _checking_ledger(self) -> DatasetLedger:
        if self._ledger is None:
            msg = (
                f"data node {self._name!r} cannot check dataset {self._path!r}: no app records what "
                "is written to its saver (it was given its own saver). Add its pipeline to a Chariots "
                "app and let the app's saver hold the dataset, or declare the file external: "
                "DataLoadingNode(..., external=True)"
            )
            raise ConfigError(msg)
        return self._ledger

    def _missing(self, saver: BaseSaver) -> str:
        where = f"no dataset is saved at {self.saver_path!r} in {saver!r} (read by node {self._name!r})"
        if self._writers:
            return f"{where}; run {' or '.join(self._writers)} first, which writes it"
        return (
            f"{where}; run a pipeline with a DataSavingNode(..., {self._path!r}) first, or put "
            f"the file at {self.saver_path!r} in the saver"
        )


class DataSavingNode(_DataNode):
    """A node that writes its single input to the saver, and passes it on to its output.

    ::

        DataSavingNode(JSONSerializer(), "clean.json", input_nodes=["clean"])

    :param serializer: turns the value into bytes (a serializer instance or class).
    :param path: the dataset's path below the saver's root (a leading ``/`` is allowed, as
        in chariots 0.2); it is stored at ``data/<path>`` in the saver and replaced by each run.
    :param input_nodes: the one value to save.
    :param output_nodes: where to pass the value on to (optional).
    :param name: the node's name (default ``"save:<path>"``).
    :param saver: a saver to write to instead of the app's (to run the pipeline without an
        app); what is written there is not recorded (see :class:`DataLoadingNode`).
    :raises PipelineDefinitionError: if there is not exactly one input, the path is not a safe
        relative path, or the serializer/saver is of the wrong kind.
    """

    _verb = "save"

    def __init__(
        self,
        serializer: BaseSerializer | type[BaseSerializer],
        path: str,
        input_nodes: Sequence[NodeReference] | NodeReference | None = None,
        output_nodes: Sequence[NodeReference] | NodeReference | None = None,
        name: str | None = None,
        saver: BaseSaver | None = None,
    ) -> None:
        super().__init__(serializer, path, input_nodes, output_nodes, name, saver)
        if len(self._input_nodes) != 1:
            msg = (
                f"DataSavingNode {self._name!r} saves one value, so it takes exactly one input "
                f"(got {len(self._input_nodes)}); pass input_nodes=['<the value to save>']"
            )
            raise PipelineDefinitionError(msg)

    def execute(self, value: Any) -> Any:
        """Serialize ``value``, write it to the saver, record what was written, and return it.

        :raises WrongTypeError: if the serializer cannot hold the value (nothing is written).
        :raises ConfigError: if no saver is bound.
        """
        saver = self._bound_saver()
        with saver.open_write(self.saver_path) as file:
            writer = HashingWriter(file)
            self._serializer.serialize_to(value, writer)
        if self._ledger is not None:
            self._ledger.record(self.saver_path, writer.sha256, writer.size, self._name)
        return value
