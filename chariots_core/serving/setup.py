"""How an app is put together from its arguments: its op store, saver and prediction log
(opened from a path, a backend name or a URL), and the checks on the pipelines it serves."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import ConfigError, PipelineDefinitionError, StoreError
from ..op_store.datasets import StoreDatasetLedger
from ..op_store.store import OpStore
from ..pipelines.data_nodes import DataSavingNode
from ..pipelines.pipeline import Pipeline
from ..registry import backend_for_url, get_backend, known_backends, url_scheme
from ..savers import BaseSaver
from ..versioning import Version
from .prediction_log import LOG_MODES, PredictionLog

__all__ = [
    "bind_data_nodes",
    "check_op_names",
    "logged_pipelines",
    "is_local",
    "local_dir",
    "resolve_op_store",
    "resolve_saver",
    "resolve_prediction_log",
]


def bind_data_nodes(pipelines: dict[str, Pipeline], saver: BaseSaver, op_store: OpStore) -> dict[str, Pipeline]:
    """The pipelines with ``saver``, and a ledger of the datasets recorded in ``op_store``, given
    to their data nodes (as new pipeline objects), by name.

    Each node that loads a dataset also learns which pipelines of the app write it, so that a
    missing dataset's error says what to run.
    """
    writers: dict[str, list[str]] = {}
    for pipeline in pipelines.values():
        for node in pipeline.saver_nodes():
            if isinstance(node, DataSavingNode):
                writers.setdefault(node.path, []).append(f"pipeline {pipeline.name!r} (node {node.name!r})")
    return {
        name: pipeline.bind_saver(saver, writers, StoreDatasetLedger(op_store, name))
        for name, pipeline in pipelines.items()
    }


def check_op_names(pipelines: Iterable[Pipeline]) -> None:
    """The store files ops by node name: one name must mean one op class across the app."""
    owner: dict[str, tuple[type, str]] = {}
    for pipeline in pipelines:
        seen_here: set[str] = set()
        for node in pipeline.loadable_nodes():
            op_class = type(node.op)
            if node.name in seen_here:
                msg = (
                    f"pipeline {pipeline.name!r} has two loadable nodes named {node.name!r}; the "
                    "store files ops by name, so pass name='...' to one of the Node(...)s"
                )
                raise PipelineDefinitionError(msg)
            seen_here.add(node.name)
            first_class, first_pipeline = owner.setdefault(node.name, (op_class, pipeline.name))
            # Same code under the same name is one op, even if unpickling made a second class
            # object of it (dill rebuilds classes defined in __main__).
            if _class_identity(first_class) != _class_identity(op_class):
                msg = (
                    f"node name {node.name!r} runs {first_class.__qualname__} in pipeline "
                    f"{first_pipeline!r} but {op_class.__qualname__} in pipeline {pipeline.name!r}; "
                    "the store files ops by name, so pass name='...' to tell them apart"
                )
                raise PipelineDefinitionError(msg)


def logged_pipelines(log_predictions: Any, pipelines: Mapping[str, Pipeline]) -> dict[str, str]:
    """``log_predictions`` checked, as ``{pipeline name: "full" | "sha256"}``.

    :raises ConfigError: naming a pipeline the app does not serve, or an unknown mode.
    """
    if isinstance(log_predictions, str):
        log_predictions = [log_predictions]
    if isinstance(log_predictions, Mapping):
        wanted = dict(log_predictions)
    elif isinstance(log_predictions, Iterable):
        wanted = dict.fromkeys(log_predictions, "full")
    else:
        msg = f"'log_predictions' must be pipeline names or {{name: 'full' | 'sha256'}} (got {log_predictions!r})"
        raise ConfigError(msg)
    for name, mode in wanted.items():
        if name not in pipelines:
            known = ", ".join(map(repr, pipelines)) or "none"
            raise ConfigError(f"'log_predictions' names {name!r}, which is not a pipeline of this app ({known})")
        if mode not in LOG_MODES:
            raise ConfigError(f"the prediction log mode of {name!r} must be one of {LOG_MODES} (got {mode!r})")
    return wanted


def _class_identity(op_class: type) -> tuple[str, str, Version]:
    return op_class.__module__, op_class.__qualname__, op_class.__version__  # type: ignore[attr-defined]


def is_local(path: str) -> bool:
    return url_scheme(path) in (None, "file")


def local_dir(path: str, child: str) -> str:
    local = path.removeprefix("file://")
    if os.path.isfile(local):
        msg = f"the app path {local!r} is a file; Chariots needs a directory there (or a URL)"
        raise StoreError(msg)
    return os.path.join(os.path.abspath(local), child)


def resolve_op_store(op_store: OpStore | str | None, path: str) -> OpStore:
    if op_store is not None and not isinstance(op_store, str):
        return op_store
    if op_store is None:
        if is_local(path):
            return get_backend("op_store", "lmdb")(local_dir(path, "store"))
        return backend_for_url("op_store", path)(path)
    if url_scheme(op_store) is not None:
        return backend_for_url("op_store", op_store)(op_store)
    backend = get_backend("op_store", op_store)
    if op_store == "memory":
        return backend()
    if not is_local(path):
        msg = (
            f"the {op_store!r} op store keeps its files in a local directory, but the app path "
            f"is the URL {path!r}; pass a local path, or leave op_store=None to store by URL"
        )
        raise ConfigError(msg)
    return backend(local_dir(path, "store"))


def resolve_saver(saver: BaseSaver | str | None, path: str) -> BaseSaver:
    if saver is not None and not isinstance(saver, str):
        return saver
    if saver == "memory":
        return get_backend("saver", "memory")()
    if saver is None or (url_scheme(saver) is None and saver in known_backends("saver")):
        # A name (or nothing): blobs go under the app path.
        location = local_dir(path, "blobs") if is_local(path) else f"{path.rstrip('/')}/blobs"
        backend = backend_for_url("saver", location) if saver is None else get_backend("saver", saver)
        return backend(location)
    return backend_for_url("saver", saver)(saver)


def resolve_prediction_log(
    prediction_log: PredictionLog | str | os.PathLike | None, path: str, logging: bool
) -> tuple[PredictionLog | None, bool]:
    """The app's prediction log, and whether the app opened it (and must close it).

    ``None`` gives no log when no pipeline is logged (``logging`` false), else one in
    ``<path>/predictions``, which must be local.
    """
    if isinstance(prediction_log, PredictionLog):
        return prediction_log, False
    if prediction_log is None:
        if not logging:
            return None, False
        if not is_local(path):
            msg = (
                f"the prediction log is written at the rate calls arrive, so it needs a local directory "
                f"or memory, not the app path {path!r}: pass prediction_log='/local/dir' or 'memory'"
            )
            raise ConfigError(msg)
        prediction_log = local_dir(path, "predictions")
    return PredictionLog(prediction_log), True
