"""What an in-process ``chariots`` command leaves to the next one: the ops each pipeline serves.

Each command is a new process, yet a sequence of commands must behave like calls to one
long-lived app: the models ``chariots call train_iris`` fitted must still be there for
``chariots save train_iris``, and the versions ``chariots load pred_iris`` chose must serve the
next ``chariots call pred_iris``. Nothing here is a storage format of its own: after a command
changes what a pipeline serves, the pipeline is *saved* (``Chariots.save_pipeline``) into a
second op store, the holding store (``<path>/cli``), through the app's own saver; the next
command puts back the versions of that pipeline's last snapshot there, loaded and checked by
the op store's own code (bytes verified against their recorded sha256). The real store is only
written by ``chariots save``, as for any app. A held model that is later saved for real is stored
once: the save names the blob the holding store wrote in the shared saver (``chariots gc`` keeps
what either store names).

A held op whose code has changed since is dropped, never served (as a load refuses it); a held
state whose bytes are missing or damaged is ignored with a warning, and the next call or load
replaces it. A pipeline with a model that is neither fitted nor loaded cannot be saved, so it is
not held (with a warning): the next command serves what was held before.
"""

from __future__ import annotations

import os
import sys

from ..errors import IntegrityError, NotFittedError, SerializationError
from ..log import get_logger
from ..op_store.lineage import load_ops
from ..op_store.records import SnapshotRecord, version_key
from ..registry import url_scheme
from ..serving.app import Chariots
from .config import ChariotsConfig

__all__ = ["HeldState", "holding_location"]

_log = get_logger("cli")


def holding_location(config: ChariotsConfig) -> tuple[str, str | None]:
    """``(path, op_store)`` of the holding store: beside the app's own store, never the same one."""
    data_path, store = config.data_path, config.op_store.store
    path = f"{data_path.rstrip('/')}/cli" if url_scheme(data_path) else os.path.join(data_path, "cli")
    if store is not None and url_scheme(store) is not None:
        store = f"{store.rstrip('/')}/cli"  # a store given by URL would otherwise be the app's own
    return path, store


class HeldState:
    """The ops an in-process app serves for each pipeline, kept in the holding store between commands.

    :param config: the project's configuration (where the holding store lives).
    :param app: the app the command runs; its saver stores the held models' bytes.
    """

    def __init__(self, config: ChariotsConfig, app: Chariots) -> None:
        self.app = app
        self._config = config
        self._opened: Chariots | None = None

    @property
    def _holding(self) -> Chariots:
        """The app on the holding store, opened on first use (commands that hold nothing never open it)."""
        if self._opened is None:
            path, store = holding_location(self._config)
            pipelines = [self.app.serving_pipeline(name) for name in self.app.available_pipelines()]
            self._opened = Chariots(
                pipelines, path=path, op_store=store, saver=self.app.saver, compatibility=self.app.compatibility
            )
        return self._opened

    def restore(self, pipeline_name: str) -> None:
        """Serve in ``pipeline_name`` the op versions the last command left it with."""
        serving = self.app.serving_pipeline(pipeline_name)
        records = {}
        with self._holding.op_store.reader() as view:
            entries = view.journal(SnapshotRecord, pipeline_name, limit=1)
            held = entries[0].record.versions if entries else {}
            for node in serving.loadable_nodes():
                record = view.op_version(node.name, held[node.name]) if node.name in held else None
                if record is None:
                    continue
                if version_key(record.code_version) != version_key(str(type(node.op).__version__)):
                    _warn(
                        f"the {node.name!r} op held for {pipeline_name!r} came from code that has changed "
                        f"since; dropped it (run chariots load {pipeline_name}, or call its training pipeline, again)"
                    )
                    continue
                records[node.name] = record
        try:
            ops = load_ops(serving, records, self.app.saver)
        except (IntegrityError, SerializationError) as exc:
            _warn(
                f"the ops held for {pipeline_name!r} cannot be read back ({exc}); ignored them: run "
                f"chariots load {pipeline_name}, or call its training pipeline, again"
            )
            return
        if ops:
            self.app.install_ops(pipeline_name, ops)
            _log.info("restored %s in pipeline %r from the holding store", ", ".join(ops), pipeline_name)

    def hold(self, pipeline_name: str) -> None:
        """Keep what ``pipeline_name`` serves now for the next command."""
        serving = self.app.serving_pipeline(pipeline_name)
        ops = {node.name: node.op for node in serving.loadable_nodes()}
        self._holding.install_ops(pipeline_name, ops)
        try:
            self._holding.save_pipeline(pipeline_name)
        except NotFittedError as exc:  # e.g. a load that found nothing saved for a model
            _warn(f"what pipeline {pipeline_name!r} serves now cannot be held for the next command ({exc})")
            return
        _log.info("held %s of pipeline %r for the next command", ", ".join(ops) or "no op", pipeline_name)

    def close(self) -> None:
        """Close the holding store, if it was opened."""
        if self._opened is not None:
            self._opened.close()


def _warn(message: str) -> None:
    print(f"chariots: {message}", file=sys.stderr)
