"""The record of every dataset the app's data nodes write, and the check of what they read.

A :class:`~chariots_core.pipelines.data_nodes.DataSavingNode` records each dataset it writes (its
sha256, size, the pipeline and node that wrote it, when) in the op store, and a
:class:`~chariots_core.pipelines.data_nodes.DataLoadingNode` checks the bytes it read against those
records before its serializer sees them: bytes that changed since the app wrote them, or that
the app never wrote, raise :class:`~chariots_core.errors.IntegrityError` naming the path.

The records are a journal per dataset path (:class:`DatasetRecord`, journal ``"datasets"``):
the newest write is one O(1) read. A read is accepted if its bytes are those of one of the
:data:`RECENT_WRITES` newest writes of the path: when two runs write one dataset at once, the
file may hold the bytes of the one whose record is not the newest.

:class:`StoreDatasetLedger` travels with the data nodes into worker processes, as their saver
does: an LMDB or object store pickles as its location and is reopened there; a
:class:`~chariots_core.op_store.store.MemoryOpStore` lives in one process, so a ledger on one
refuses to work in another (it would check against a stale private copy).
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

import attrs

from ..errors import ConfigError, IntegrityError
from .records import Commit, JournalAppend
from .store import MemoryOpStore, OpStore

__all__ = ["DatasetRecord", "StoreDatasetLedger", "RECENT_WRITES"]

RECENT_WRITES = 16
"""How many of a dataset's newest writes a read may match."""


@attrs.frozen
class DatasetRecord:
    """One write of a dataset by a data node of the app."""

    JOURNAL: ClassVar[str] = "datasets"

    path: str  # where in the saver (``data/...``)
    sha256: str
    size: int
    pipeline_name: str
    node_name: str
    saved_at: float


class StoreDatasetLedger:
    """Records and checks the datasets of one pipeline of an app in the app's op store.

    :param op_store: where the records go.
    :param pipeline_name: the pipeline whose data nodes use this ledger (named in the records).
    """

    def __init__(self, op_store: OpStore, pipeline_name: str) -> None:
        self.op_store = op_store
        self.pipeline_name = pipeline_name
        self._made_in = os.getpid()

    def record(self, path: str, sha256: str, size: int, node_name: str) -> None:
        """Record that ``node_name`` wrote these bytes at ``path``."""
        written = DatasetRecord(path, sha256, size, self.pipeline_name, node_name, time.time())
        self._store(node_name).commit(Commit(journal=(JournalAppend(path, written),)))

    def verify(self, path: str, sha256: str, size: int, node_name: str) -> None:
        """Check that the bytes ``node_name`` read at ``path`` are bytes the app wrote there.

        :raises IntegrityError: if the app never wrote a dataset there, or not these bytes.
        """
        writes = [entry.record for entry in self._store(node_name).journal(DatasetRecord, path, limit=RECENT_WRITES)]
        if any(write.sha256 == sha256 and write.size == size for write in writes):
            return
        where = f"dataset {path!r} (read by node {node_name!r} of pipeline {self.pipeline_name!r})"
        if not writes:
            msg = (
                f"{where}: the app never wrote these bytes (no DataSavingNode of it recorded a write "
                f"there in {self.op_store!r}), so they are not read. If the file comes from outside "
                "the app, declare it: DataLoadingNode(..., external=True)"
            )
        else:
            newest = writes[0]
            msg = (
                f"{where}: the bytes changed since the app wrote them (sha256 {sha256[:12]}..., "
                f"{size} bytes; pipeline {newest.pipeline_name!r} (node {newest.node_name!r}) wrote "
                f"{newest.sha256[:12]}..., {newest.size} bytes, at "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(newest.saved_at))}), so they are "
                "not read. Run that pipeline again to rewrite the dataset, or restore the file"
            )
        raise IntegrityError(msg)

    def _store(self, node_name: str) -> OpStore:
        if self.op_store is None or (isinstance(self.op_store, MemoryOpStore) and os.getpid() != self._made_in):
            msg = (
                f"data node {node_name!r} runs in process {os.getpid()} but the MemoryOpStore that "
                f"records its datasets lives in process {self._made_in}. Give the app an op store other "
                "processes share (the default LMDB store under its path, or object storage), or run "
                "without worker processes"
            )
            raise ConfigError(msg)
        return self.op_store

    # A MemoryOpStore is not sent along: in another process it would be a stale private copy.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if isinstance(self.op_store, MemoryOpStore):
            state["op_store"] = None
        return state

    def __repr__(self) -> str:
        return f"<StoreDatasetLedger of pipeline {self.pipeline_name!r} in {self.op_store!r}>"
