"""The in-process app: serve, train, save and load pipelines by direct calls.

:class:`Chariots` has the same methods as ``chariots_waitress.PipelinesClient``, so code
written against one runs against the other::

    app = Chariots([train_iris, pred_iris], path="./iris_data")
    app.call_pipeline(train_iris)
    app.save_pipeline(train_iris)
    app.load_pipeline(pred_iris)
    app.call_pipeline(pred_iris, [[1, 2, 3, 4]]).value

Loading swaps the whole pipeline at once: calls in flight finish on the ops they started with,
and a load that fails leaves the previous ops serving.

Ownership, the rule every Chariots object follows: **close only what you opened.** An app
closes the op store it opened itself (from ``path``, a backend name or a URL) and whatever was
handed to it with :meth:`Chariots.take_ownership`; an op store, saver or worker pool passed in
stays open for whoever made it. Likewise a worker pool stops the workers it started and a
``DaskWorkerPool`` closes a Dask client it created, never one it was given.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from typing import Any, Protocol, TypeVar

import attrs

from ..errors import ConfigError, PipelineDefinitionError, StoreError, UnknownPipelineError, WorkerError
from ..op_store.datasets import StoreDatasetLedger
from ..op_store.explain import Staleness
from ..op_store.garbage import DEBRIS_AGE, GarbageReport, collect_garbage
from ..op_store.lineage import POLICIES, STRATEGIES, check_choice, load_ops, resolve_versions, save_pipeline, why_stale
from ..op_store.store import JobStore, OpStore
from ..pipelines.callbacks import overrides
from ..pipelines.data_nodes import DataSavingNode
from ..pipelines.nodes import Node
from ..pipelines.ops import BaseOp
from ..pipelines.pipeline import Pipeline
from ..pipelines.runners import BaseRunner, SequentialRunner
from ..registry import backend_for_url, get_backend, known_backends, url_scheme
from ..savers import BaseSaver
from ..versioning import Version
from .jobs import JobBook
from .responses import JobStatus, PipelineResponse
from .workers import BaseWorkerPool, wants_worker

__all__ = ["Chariots"]

PipelineRef = str | Pipeline


class _Closeable(Protocol):
    def close(self) -> None: ...


_C = TypeVar("_C", bound=_Closeable)


class Chariots:
    """An app serving a set of pipelines, with an op store to save and load their ops.

    :param pipelines: the pipelines the app serves (names must be unique).
    :param path: where the app keeps its data when ``op_store``/``saver`` are not given: a
        local directory (an LMDB store in ``<path>/store`` and blobs in ``<path>/blobs``) or
        an object-storage URL such as ``s3://bucket/prefix``.
    :param op_store: an :class:`~chariots_core.OpStore`, a backend name (``"memory"``,
        ``"lmdb"``) or an object-storage URL.
    :param saver: a saver, a backend name (``"memory"``), or a URL or local directory
        (``"file:///data"``, ``"gs://b/p"``, ``"/data/blobs"``). The app's data nodes
        (:class:`~chariots_core.pipelines.data_nodes.DataLoadingNode`...) that have no saver of their own
        read and write their datasets through it, under ``data/``.
    :param compatibility: which part of a version must match along an edge: ``"major"``
        (default), ``"minor"`` or ``"exact"``.
    :param job_store: where the records of asynchronous calls are kept, as
        :attr:`job_store` (default: the op store, when it is also a
        :class:`~chariots_core.op_store.store.JobStore`, as every built-in store is).
    :param worker_pool: runs asynchronous calls (see ``use_worker``); it may serve other apps
        too, and stays open when the app closes unless handed over with :meth:`take_ownership`.
    :param runner: runs pipelines (default :class:`~chariots_core.SequentialRunner`).
    :param use_worker: app-wide default for asynchronous execution.
    :raises ConfigError: if ``compatibility`` is not a known policy.
    :raises PipelineDefinitionError: if two pipelines share a name, or one op name stands for
        two different op classes.
    :raises StoreError: if ``path`` is a file.

    The app closes only what it opened (see the module docstring): use it as a context manager
    or call :meth:`close`, and close a pool or store you passed in yourself.
    """

    def __init__(
        self,
        pipelines: Iterable[Pipeline],
        path: str | os.PathLike = "./chariots_data",
        op_store: OpStore | str | None = None,
        saver: BaseSaver | str | None = None,
        compatibility: str = "major",
        worker_pool: BaseWorkerPool | None = None,
        runner: BaseRunner | None = None,
        use_worker: bool | None = None,
        job_store: JobStore | None = None,
    ) -> None:
        self.compatibility = check_choice("compatibility", compatibility, POLICIES)
        self._pipelines: dict[str, Pipeline] = {}
        for pipeline in pipelines:
            if not isinstance(pipeline, Pipeline):
                msg = f"'pipelines' must hold Pipeline objects (got {pipeline!r} that is a {type(pipeline).__name__})"
                raise PipelineDefinitionError(msg)
            if pipeline.name in self._pipelines:
                msg = f"two pipelines are named {pipeline.name!r}; give each pipeline of an app its own name"
                raise PipelineDefinitionError(msg)
            self._pipelines[pipeline.name] = pipeline
        _check_op_names(self._pipelines.values())
        self.path = os.fspath(path)
        self._owned: list[_Closeable] = []  # what close() closes, in the order it was opened
        self.op_store: OpStore = _resolve_op_store(op_store, self.path)
        if op_store is None or isinstance(op_store, str):
            self._owned.append(self.op_store)
        self.job_store: JobStore | None = job_store
        if job_store is None and isinstance(self.op_store, JobStore):
            self.job_store = self.op_store
        try:
            self.saver: BaseSaver = _resolve_saver(saver, self.path)
            self._jobs = None if self.job_store is None else JobBook(self.job_store, self.saver)
            if worker_pool is not None:
                self._job_book("a worker pool")
        except BaseException:
            self._close_owned()
            raise
        self._bind_data_nodes()
        self.runner = runner if runner is not None else SequentialRunner()
        self.worker_pool = worker_pool
        if worker_pool is not None:
            worker_pool.attach(self)
        self.use_worker = use_worker
        self._loaded: frozenset[str] = frozenset()
        self._swap_lock = threading.Lock()
        # By pipeline name: the versions computed for the pipeline object served then.
        self._versions: dict[str, _VersionCache] = {}

    # -- the client API ------------------------------------------------------------------
    def call_pipeline(
        self, pipeline: PipelineRef, pipeline_input: Any = None, use_worker: bool | None = None
    ) -> PipelineResponse:
        """Run a pipeline and return its :class:`PipelineResponse`.

        A synchronous call answers ``job_status`` ``done``, as in chariots 0.2. Asynchronous
        calls (see the class docstring's ``use_worker``) return at once with a ``job_id`` and
        ``job_status`` ``queued``; fetch the result with :meth:`fetch_job`.

        :raises UnknownPipelineError: if the app has no such pipeline.
        :raises Exception: what an op raised (synchronous calls), with a note naming the node
            and the pipeline (see :func:`chariots_core.errors.failed_node`).
        :raises WorkerError: if asynchronous execution is asked for and no pool is configured.
        """
        serving = self.serving_pipeline(pipeline)
        if wants_worker(self.use_worker, serving.use_worker, use_worker):
            if self.worker_pool is None:
                msg = (
                    f"pipeline {serving.name!r} was asked to run in a worker but the app has no "
                    "worker pool; pass worker_pool=... to Chariots or call with use_worker=False"
                )
                raise WorkerError(msg)
            job_id = self.worker_pool.execute_pipeline_async(serving, pipeline_input, self)
            return PipelineResponse(job_id=job_id, job_status=JobStatus.queued)
        value = self.runner.run(serving, pipeline_input)
        return PipelineResponse(value=value, versions=self._versions_of(serving), job_status=JobStatus.done)

    def save_pipeline(self, pipeline: PipelineRef) -> None:
        """Save the state of the pipeline's loadable ops, their versions and links.

        Usually called after a training pipeline ran, so that prediction pipelines can load
        the trained ops.
        """
        save_pipeline(self.serving_pipeline(pipeline), self.op_store, self.saver)

    def load_pipeline(self, pipeline: PipelineRef, strategy: str = "latest") -> dict[str, Version]:
        """Load the saved versions of the pipeline's ops and return the versions picked.

        ``strategy="latest"`` loads each op's latest saved version and refuses the load if
        any edge is incompatible; ``"latest_compatible"`` picks the newest versions that are
        compatible along every edge. Only models that will not retrain when the pipeline runs
        are checked against what feeds them (the rule is in :mod:`chariots_core.op_store.lineage`), and
        ops that already serve the chosen version are kept as they are.

        :raises VersionError: naming each incompatible edge; the previous ops keep serving.
        :raises NotSavedError: if none of the pipeline's ops were ever saved.
        :raises IntegrityError: if stored bytes are missing or corrupt.
        :raises ConfigError: if ``strategy`` is not a known one.
        """
        check_choice("strategy", strategy, STRATEGIES)
        # Swaps are serialized so that no load or install_ops is overwritten by another one
        # that started from the same pipeline; calls never wait for the lock.
        with self._swap_lock:
            serving = self.serving_pipeline(pipeline)
            chosen = resolve_versions(serving, self.op_store, self.compatibility, strategy)
            loaded_ops = load_ops(serving, chosen, self.saver)
            self._pipelines[serving.name] = serving.replace_ops(loaded_ops) if loaded_ops else serving
            self._loaded = self._loaded | {serving.name}  # replaced, never mutated: readers take no lock
        return {name: Version.parse(record.version) for name, record in chosen.items() if record}

    def pipeline_versions(self, pipeline: PipelineRef) -> dict[str, Version]:
        """The version of each op node of the pipeline as the app serves it now."""
        return self._versions_of(self.serving_pipeline(pipeline))

    def is_pipeline_loaded(self, pipeline: PipelineRef) -> bool:
        """Whether :meth:`load_pipeline` succeeded for this pipeline."""
        return self.serving_pipeline(pipeline).name in self._loaded

    def fetch_job(self, job_id: str, pipeline: PipelineRef | None = None) -> PipelineResponse:
        """The current state of an asynchronous call (and its value once done).

        :raises JobNotFoundError: if no job has that id.
        """
        return self._job_book("fetching a job").response(job_id)

    def install_ops(self, pipeline: PipelineRef, ops_by_node_name: dict[str, Any]) -> None:
        """Swap ops trained elsewhere (e.g. by a worker process) into a pipeline, at once.

        Worker pools call this when an asynchronous run fitted models, so that a following
        :meth:`save_pipeline` saves what the worker trained.
        """
        with self._swap_lock:
            serving = self.serving_pipeline(pipeline)
            self._pipelines[serving.name] = serving.replace_ops(ops_by_node_name)

    def map_pipeline(
        self,
        pipeline: PipelineRef,
        inputs: Iterable[Any],
        worker_pool: BaseWorkerPool | None = None,
        progress: bool = True,
    ) -> list[Any]:
        """Run one pipeline over many inputs in parallel and return the values in input order.

        Uses ``worker_pool`` (default: the app's pool); prints progress on stderr when
        ``progress`` is true.
        """
        from .batch import map_pipeline

        return map_pipeline(self, pipeline, inputs, worker_pool=worker_pool, progress=progress)

    def why_stale(self, pipeline: PipelineRef) -> Staleness:
        """Why ``load_pipeline(pipeline)`` would refuse the newest saved versions, without raising.

        A :class:`~chariots_core.op_store.explain.Staleness`: every stale edge (which field of
        the upstream op changed from what to what, or which save retrained it, since the model
        downstream was trained, and the pipeline to run and save), every op none of whose saved
        versions its code may load, and every predict-only op never saved; ``.stale`` says whether
        there is any, ``.text`` says it in words (the texts a ``VersionError`` quotes).

        :raises UnknownPipelineError: if the app has no such pipeline.
        """
        return why_stale(self.serving_pipeline(pipeline), self.op_store, self.compatibility)

    def status(self, limit: int = 10) -> dict[str, Any]:
        """What the app serves and what its store holds, as a JSON-safe dict.

        Per pipeline: whether it is loaded, what each loadable op serves and the newest version
        saved for it, every stale edge with its explanation and the pipeline to run and save to
        fix it; then the newest jobs (at most ``limit``). The shape is documented in
        :mod:`chariots_core.serving.status`.

        :raises ConfigError: if ``limit`` is not a count.
        """
        from .status import app_status

        return app_status(self, limit)

    def available_pipelines(self) -> list[str]:
        """The names of the pipelines the app serves."""
        return list(self._pipelines)

    def health_check(self) -> dict[str, Any]:
        """A small status report: the app answers and knows its pipelines."""
        return {
            "status": "ok",
            "pipelines": self.available_pipelines(),
            "loaded": sorted(self._loaded),
        }

    def collect_garbage(
        self, older_than: float = DEBRIS_AGE, dry_run: bool = False, also_referenced_by: Iterable[OpStore] = ()
    ) -> GarbageReport:
        """Remove from the saver what interrupted saves left behind: blobs that no record of the
        app's op store or job store names, and the temporary files of killed writes, if older
        than ``older_than`` seconds (rules: :mod:`chariots_core.op_store.garbage`).

        :param older_than: keep anything younger, however unreferenced: a save running in
            another process writes its blobs before it commits the records naming them. Keep it
            above the longest save (default: a day).
        :param dry_run: only report what would be removed.
        :param also_referenced_by: other op stores whose records name blobs in this saver
            (``chariots gc`` passes the CLI's holding store); their blobs are kept.
        :raises StoreError: if a store cannot list what it references (nothing is removed).
        """
        stores: list[Any] = [self.op_store]
        if self.job_store is not None and self.job_store is not self.op_store:
            stores.append(self.job_store)
        return collect_garbage(self.saver, [*stores, *also_referenced_by], older_than=older_than, dry_run=dry_run)

    # -- lifecycle -----------------------------------------------------------------------
    def take_ownership(self, resource: _C) -> _C:
        """Make the app close ``resource`` (anything with ``close()``) when it closes; returns it.

        For whatever was opened on the app's behalf, as ``ChariotsConfig.get_app`` does with the
        worker pool it starts. What the app owns is closed last opened first, so a pool handed
        over after the app was made stops (and records its last jobs) before the store closes.
        """
        self._owned.append(resource)
        return resource

    def close(self) -> None:
        """Close what the app opened or was handed with :meth:`take_ownership`. Idempotent.

        A worker pool the app was given (and not handed) keeps running, but no longer looks up
        this app's jobs.
        """
        if self.worker_pool is not None:
            self.worker_pool.detach(self)
        self._close_owned()

    def _close_owned(self) -> None:
        owned, self._owned = self._owned, []
        for resource in reversed(owned):
            resource.close()

    def __enter__(self) -> Chariots:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Chariots serving {', '.join(self._pipelines) or 'nothing'}>"

    @property
    def jobs(self) -> JobBook:
        """The app's job records (in its job store) and their results (through its saver):
        every worker pool records and reads the app's jobs through it.

        :raises WorkerError: if the app has no job store.
        """
        return self._job_book("recording a job")

    def _job_book(self, what: str) -> JobBook:
        if self._jobs is None:
            msg = (
                f"{what} needs a job store, and the op store {self.op_store!r} keeps no jobs; "
                "pass job_store=... to Chariots (e.g. chariots_core.MemoryOpStore())"
            )
            raise WorkerError(msg)
        return self._jobs

    def _bind_data_nodes(self) -> None:
        """Give the app's saver, and a ledger of the datasets in its op store, to the data nodes
        of its pipelines (as new pipeline objects).

        Each node that loads a dataset also learns which pipelines of the app write it, so
        that a missing dataset's error says what to run.
        """
        writers: dict[str, list[str]] = {}
        for pipeline in self._pipelines.values():
            for node in pipeline.saver_nodes():
                if isinstance(node, DataSavingNode):
                    writers.setdefault(node.path, []).append(f"pipeline {pipeline.name!r} (node {node.name!r})")
        for name, pipeline in self._pipelines.items():
            self._pipelines[name] = pipeline.bind_saver(self.saver, writers, StoreDatasetLedger(self.op_store, name))

    def _versions_of(self, serving: Pipeline) -> dict[str, Version]:
        """The versions of ``serving``'s op nodes, computed once per pipeline object.

        A load or an install swaps in a new pipeline object, which the identity check sees;
        a fit changes only ops whose class computes its version, which are asked every time.
        """
        cache = self._versions.get(serving.name)
        if cache is None or cache.pipeline is not serving:
            # Racing calls may both compute it: the result is the same, so no lock is needed.
            cache = self._versions[serving.name] = _VersionCache.of(serving)
        return cache.versions()

    def serving_pipeline(self, pipeline: PipelineRef) -> Pipeline:
        """The pipeline object the app runs now for ``pipeline`` (a name or a pipeline).

        Loads swap in a new object, so this may differ from the pipeline the app was built with.

        :raises UnknownPipelineError: if the app has no such pipeline.
        """
        name = pipeline.name if isinstance(pipeline, Pipeline) else pipeline
        try:
            return self._pipelines[name]
        except (KeyError, TypeError):
            known = ", ".join(map(repr, self._pipelines)) or "none"
            msg = f"this app has no pipeline {name!r}; available pipelines: {known}"
            raise UnknownPipelineError(msg) from None


@attrs.frozen
class _VersionCache:
    """The versions of one pipeline object's op nodes, split by whether they can change.

    An op's version can only change if its class computes ``op_version`` itself (an ML op
    adds each fit's identity); every other op reports its class version, fixed when the
    class was created. Only the first kind is asked again on each call.
    """

    pipeline: Pipeline
    fixed: dict[str, Version]  # every op node's name, in order; values of the fixed ones
    changing: tuple[Node, ...]  # the nodes whose version is asked on each call

    @classmethod
    def of(cls, pipeline: Pipeline) -> _VersionCache:
        """Compute the cache for ``pipeline``."""
        last: dict[str, Node] = {}
        for node in pipeline.op_nodes():
            last[node.name] = node  # a name used twice reports its last node, as it always did
        changing = tuple(node for node in last.values() if overrides(node.op, BaseOp, "op_version"))
        return cls(pipeline, {name: node.node_version for name, node in last.items()}, changing)

    def versions(self) -> dict[str, Version]:
        """A new dict of the current versions (callers may keep or change it)."""
        versions = dict(self.fixed)
        for node in self.changing:
            versions[node.name] = node.node_version
        return versions


def _check_op_names(pipelines: Iterable[Pipeline]) -> None:
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


def _class_identity(op_class: type) -> tuple[str, str, Version]:
    return op_class.__module__, op_class.__qualname__, op_class.__version__  # type: ignore[attr-defined]


def _is_local(path: str) -> bool:
    return url_scheme(path) in (None, "file")


def _local_dir(path: str, child: str) -> str:
    local = path.removeprefix("file://")
    if os.path.isfile(local):
        msg = f"the app path {local!r} is a file; Chariots needs a directory there (or a URL)"
        raise StoreError(msg)
    return os.path.join(os.path.abspath(local), child)


def _resolve_op_store(op_store: OpStore | str | None, path: str) -> OpStore:
    if op_store is not None and not isinstance(op_store, str):
        return op_store
    if op_store is None:
        if _is_local(path):
            return get_backend("op_store", "lmdb")(_local_dir(path, "store"))
        return backend_for_url("op_store", path)(path)
    if url_scheme(op_store) is not None:
        return backend_for_url("op_store", op_store)(op_store)
    backend = get_backend("op_store", op_store)
    if op_store == "memory":
        return backend()
    if not _is_local(path):
        msg = (
            f"the {op_store!r} op store keeps its files in a local directory, but the app path "
            f"is the URL {path!r}; pass a local path, or leave op_store=None to store by URL"
        )
        raise ConfigError(msg)
    return backend(_local_dir(path, "store"))


def _resolve_saver(saver: BaseSaver | str | None, path: str) -> BaseSaver:
    if saver is not None and not isinstance(saver, str):
        return saver
    if saver == "memory":
        return get_backend("saver", "memory")()
    if saver is None or (url_scheme(saver) is None and saver in known_backends("saver")):
        # A name (or nothing): blobs go under the app path.
        location = _local_dir(path, "blobs") if _is_local(path) else f"{path.rstrip('/')}/blobs"
        backend = backend_for_url("saver", location) if saver is None else get_backend("saver", saver)
        return backend(location)
    return backend_for_url("saver", saver)(saver)
