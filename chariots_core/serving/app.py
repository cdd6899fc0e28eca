"""The in-process app: serve, train, save and load pipelines by direct calls.

:class:`Chariots` has the same methods as ``chariots_waitress.PipelinesClient``, so code
written against one runs against the other::

    app = Chariots([train_iris, pred_iris], path="./iris_data")
    app.call_pipeline(train_iris)
    app.save_pipeline(train_iris)
    app.load_pipeline(pred_iris)
    app.call_pipeline(pred_iris, [[1, 2, 3, 4]]).value

Loading swaps the whole pipeline at once: calls in flight finish on the ops they started with,
and a load that fails leaves the previous ops serving. Operating in production (every load,
rollback, hot reload and split recorded as a deployment; A/B and shadow splits; the prediction
log) is delegated to :mod:`~chariots_core.serving.deployments`, :mod:`~chariots_core.serving.reload`,
:mod:`~chariots_core.serving.splits` and :mod:`~chariots_core.serving.prediction_log`.

Ownership, the rule every Chariots object follows: **close only what you opened.** An app
closes the op store it opened itself (from ``path``, a backend name or a URL) and whatever was
handed to it with :meth:`Chariots.take_ownership`; an op store, saver or worker pool passed in
stays open for whoever made it. Likewise a worker pool stops the workers it started and a
``DaskWorkerPool`` closes a Dask client it created, never one it was given.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, TypeVar

from ..errors import ConfigError, PipelineDefinitionError, UnknownPipelineError, WorkerError
from ..op_store.explain import Staleness
from ..op_store.garbage import DEBRIS_AGE, GarbageReport, collect_garbage
from ..op_store.lineage import POLICIES, STRATEGIES, check_choice, save_pipeline, why_stale
from ..op_store.store import JobStore, OpStore
from ..pipelines.pipeline import Pipeline
from ..pipelines.runners import BaseRunner, SequentialRunner
from ..savers import BaseSaver
from ..versioning import Version
from .deployments import Deployer, DeploymentRecord, deployment_history
from .jobs import JobBook
from .prediction_log import PredictionLog, PredictionRecord, to_frame
from .reload import Reloader, check_reload
from .responses import JobStatus, PipelineResponse
from .routes import Route, Variant, VersionCache, check_key
from .setup import (
    bind_data_nodes,
    check_op_names,
    logged_pipelines,
    resolve_op_store,
    resolve_prediction_log,
    resolve_saver,
)
from .splits import ShadowRunner, check_split
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
    :param reload: follow the op store: every ``reload_interval`` seconds, load what this
        strategy (``"latest"`` or ``"latest_compatible"``) chooses for each loaded pipeline, if it
        changed (see :mod:`~chariots_core.serving.reload`); ``None`` (default): loads only on request.
    :param reload_interval: seconds between two looks at the store when ``reload`` is set.
    :param log_predictions: the pipelines whose calls are logged (see
        :mod:`~chariots_core.serving.prediction_log`): names, or ``{name: "full" | "sha256"}``
        to keep only the sha256 of inputs and outputs.
    :param prediction_log: where calls are logged: a :class:`~chariots_core.serving.prediction_log.PredictionLog`
        (for its retention settings), ``"memory"``, or a local directory; default, when
        ``log_predictions`` names any pipeline: ``<path>/predictions`` (LMDB).
    :raises ConfigError: if ``compatibility``, ``reload`` or a prediction-log setting is not valid.
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
        reload: str | None = None,
        reload_interval: float = 5.0,
        log_predictions: Iterable[str] | Mapping[str, str] = (),
        prediction_log: PredictionLog | str | os.PathLike | None = None,
    ) -> None:
        self.compatibility = check_choice("compatibility", compatibility, POLICIES)
        check_reload(reload, reload_interval)
        self._pipelines: dict[str, Pipeline] = {}
        for pipeline in pipelines:
            if not isinstance(pipeline, Pipeline):
                msg = f"'pipelines' must hold Pipeline objects (got {pipeline!r} that is a {type(pipeline).__name__})"
                raise PipelineDefinitionError(msg)
            if pipeline.name in self._pipelines:
                msg = f"two pipelines are named {pipeline.name!r}; give each pipeline of an app its own name"
                raise PipelineDefinitionError(msg)
            self._pipelines[pipeline.name] = pipeline
        check_op_names(self._pipelines.values())
        self.path = os.fspath(path)
        self._owned: list[_Closeable] = []  # what close() closes, in the order it was opened
        self.op_store: OpStore = resolve_op_store(op_store, self.path)
        if op_store is None or isinstance(op_store, str):
            self._owned.append(self.op_store)
        self.job_store: JobStore | None = job_store
        if job_store is None and isinstance(self.op_store, JobStore):
            self.job_store = self.op_store
        try:
            self.saver: BaseSaver = resolve_saver(saver, self.path)
            self._jobs = None if self.job_store is None else JobBook(self.job_store, self.saver)
            if worker_pool is not None:
                self._job_book("a worker pool")
            self._logged = logged_pipelines(log_predictions, self._pipelines)
            self.prediction_log, owned = resolve_prediction_log(prediction_log, self.path, bool(self._logged))
            if owned and self.prediction_log is not None:
                self.take_ownership(self.prediction_log)
        except BaseException:
            self._close_owned()
            raise
        self._pipelines = bind_data_nodes(self._pipelines, self.saver, self.op_store)
        self.runner = runner if runner is not None else SequentialRunner()
        self.worker_pool = worker_pool
        if worker_pool is not None:
            worker_pool.attach(self)
        self.use_worker = use_worker
        self._loaded: frozenset[str] = frozenset()
        self._swap_lock = threading.Lock()
        # By pipeline name: the versions computed for the pipeline object served then.
        self._versions: dict[str, VersionCache] = {}
        # By pipeline name, for the split or logged ones only: how their calls are answered.
        self._routes: dict[str, Route] = {}
        self._shadows: ShadowRunner | None = None  # started by the first split with a shadow
        self._deployer = Deployer(self)
        for name in self._logged:
            self._serve(name, (Variant(None, self._pipelines[name]),), loaded=False)
        self._reloader = None if reload is None else Reloader(self, reload, reload_interval)

    # -- the client API ------------------------------------------------------------------
    def call_pipeline(
        self,
        pipeline: PipelineRef,
        pipeline_input: Any = None,
        use_worker: bool | None = None,
        key: str | None = None,
    ) -> PipelineResponse:
        """Run a pipeline and return its :class:`PipelineResponse`.

        A synchronous call answers ``job_status`` ``done``, as in chariots 0.2. Asynchronous
        calls (see the class docstring's ``use_worker``) return at once with a ``job_id`` and
        ``job_status`` ``queued``; fetch the result with :meth:`fetch_job`.

        :param key: identifies the caller for a split pipeline (see :meth:`split`): the same
            key always gets the same variant; ignored by a pipeline that is not split.
        :raises UnknownPipelineError: if the app has no such pipeline.
        :raises Exception: what an op raised (synchronous calls), with a note naming the node
            and the pipeline (see :func:`chariots_core.errors.failed_node`).
        :raises WorkerError: if asynchronous execution is asked for and no pool is configured.
        :raises ConfigError: if ``key`` is not a string.
        """
        serving = self.serving_pipeline(pipeline)
        if key is not None:
            check_key(key)
        route = self._routes.get(serving.name)
        if route is not None:
            return route.call(self, pipeline_input, use_worker, key)
        if wants_worker(self.use_worker, serving.use_worker, use_worker):
            return self._submit(serving, pipeline_input)
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

        Every load is a deployment, recorded in the op store, refused ones included (see
        :meth:`deployments`); a load ends a split of the pipeline.

        :raises VersionError: naming each incompatible edge; the previous ops keep serving.
        :raises NotSavedError: if none of the pipeline's ops were ever saved.
        :raises IntegrityError: if stored bytes are missing or corrupt.
        :raises ConfigError: if ``strategy`` is not a known one.
        """
        check_choice("strategy", strategy, STRATEGIES)
        record = self._deployer.load(self.serving_pipeline(pipeline).name, strategy)
        return {name: Version.parse(version) for name, version in record.versions.items()}

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

        Not a deployment: it changes what a pipeline trains, and leaves the variants of a split
        pipeline as they are.
        """
        with self._swap_lock:
            serving = self.serving_pipeline(pipeline)
            replaced = serving.replace_ops(ops_by_node_name)
            if self._is_split(serving.name):
                self._pipelines[serving.name] = replaced
            else:
                self._serve(serving.name, (Variant(None, replaced),), loaded=False)

    # -- operating in production ------------------------------------------------------------
    def deployments(
        self, pipeline: PipelineRef, limit: int | None = None, before: str | None = None
    ) -> list[DeploymentRecord]:
        """The pipeline's deployments (loads, rollbacks, reloads, splits), newest first.

        Read from the op store, so they include those of every process using it. The records'
        attributes are described in :mod:`chariots_core.serving.deployments`.

        :param limit: at most that many (``None``: all).
        :param before: a deployment id: only those older than it.
        :raises NotSavedError: if ``before`` is not a deployment of the pipeline.
        """
        return deployment_history(self.op_store, self.serving_pipeline(pipeline).name, limit, before)

    def rollback(self, pipeline: PipelineRef, to: str | None = None) -> DeploymentRecord:
        """Serve again what the previous deployment served, or deployment ``to``; return the
        new deployment.

        "Previous" is defined in :mod:`chariots_core.serving.deployments` (a second rollback
        returns to where the first one started). The versions are checked along every edge like
        a load's, and swapped in at once; a refused rollback is recorded and changes nothing.

        :raises NotSavedError: if there is nothing to roll back to, ``to`` is not a deployment
            of the pipeline, or its versions are no longer in the store.
        :raises VersionError: if those versions are not compatible along every edge (any more).
        """
        return self._deployer.rollback(self.serving_pipeline(pipeline).name, to)

    def split(
        self,
        pipeline: PipelineRef,
        variants: Mapping[str, str],
        weights: Mapping[str, float] | None = None,
        shadow: str | None = None,
    ) -> DeploymentRecord:
        """Serve several deployments of a pipeline side by side; return the new deployment.

        ``variants`` maps each variant's name to what it serves: ``"serving"``, ``"latest"``,
        ``"latest_compatible"`` or a deployment id. Calls go to the served variants by
        ``weights`` (default: equal), or by their ``key`` (:meth:`call_pipeline`), and each
        response names its ``variant``; the ``shadow`` variant runs on every call's input
        without answering (see :mod:`chariots_core.serving.splits`). Every variant is checked
        along every edge like a load. The split lasts until the next load or rollback.

        :raises ConfigError: if the variants, weights or shadow are not valid.
        :raises VersionError: if a variant is not compatible along every edge.
        :raises NotSavedError: if a variant names what cannot be found.
        """
        plan = check_split(variants, weights, shadow)
        return self._deployer.split(self.serving_pipeline(pipeline).name, plan)

    def predictions(
        self, pipeline: PipelineRef, since: float | None = None, limit: int | None = 100, as_frame: bool = False
    ) -> list[PredictionRecord] | Any:
        """The logged calls of the pipeline, newest first (see ``log_predictions``).

        :param since: only calls that started at or after this time (seconds since the epoch).
        :param limit: at most that many (``None``: all the log keeps).
        :param as_frame: return a pandas ``DataFrame`` (one row per call) instead of records.
        :raises ConfigError: if the app does not log this pipeline, or an argument is not valid.
        """
        name = self.serving_pipeline(pipeline).name
        if self.prediction_log is None or name not in self._logged:
            msg = f"this app does not log the calls of {name!r}; pass log_predictions=[{name!r}] to Chariots"
            raise ConfigError(msg)
        records = self.prediction_log.read(name, since, limit)
        return to_frame(records) if as_frame else records

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
        """A small status report: the app answers and knows its pipelines.

        With a prediction log, ``"predictions"`` counts the records written, dropped and
        pending; once a split has a shadow, ``"shadows"`` counts its runs.
        """
        report: dict[str, Any] = {
            "status": "ok",
            "pipelines": self.available_pipelines(),
            "loaded": sorted(self._loaded),
        }
        if self.prediction_log is not None:
            report["predictions"] = self.prediction_log.stats()
        if self._shadows is not None:
            report["shadows"] = self._shadows.stats()
        return report

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
        if self._reloader is not None:
            self._reloader.close()
        if self._shadows is not None:
            self._shadows.close()
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

    def _serve(
        self, name: str, served: tuple[Variant, ...], shares: tuple[float, ...] = (1.0,),
        shadow: Variant | None = None, loaded: bool = True,
    ) -> None:  # fmt: skip
        """Make calls to ``name`` run ``served`` (several: a split); the caller holds the swap lock.

        The pipeline object comes first, the route after, so a call that reads them in the
        other order (route, then pipeline) sees either the old or the new state of each.
        """
        self._pipelines[name] = served[0].pipeline
        if len(served) == 1 and shadow is None and name not in self._logged:
            self._routes.pop(name, None)
        else:
            if shadow is not None and self._shadows is None:
                self._shadows = ShadowRunner()
            self._routes[name] = Route(
                name, self.runner, served, shares, shadow, self.prediction_log if name in self._logged else None,
                self._logged.get(name) == "sha256", self._shadows,
            )  # fmt: skip
        if loaded:
            self._loaded = self._loaded | {name}  # replaced, never mutated: readers take no lock

    def _is_split(self, name: str) -> bool:
        route = self._routes.get(name)
        return route is not None and route.split

    def _loaded_names(self) -> list[str]:
        return sorted(self._loaded)

    def _submit(self, serving: Pipeline, pipeline_input: Any) -> PipelineResponse:
        """Queue an asynchronous call of ``serving`` on the worker pool."""
        if self.worker_pool is None:
            msg = (
                f"pipeline {serving.name!r} was asked to run in a worker but the app has no "
                "worker pool; pass worker_pool=... to Chariots or call with use_worker=False"
            )
            raise WorkerError(msg)
        job_id = self.worker_pool.execute_pipeline_async(serving, pipeline_input, self)
        return PipelineResponse(job_id=job_id, job_status=JobStatus.queued)

    def _versions_of(self, serving: Pipeline) -> dict[str, Version]:
        """The versions of ``serving``'s op nodes, computed once per pipeline object.

        A load or an install swaps in a new pipeline object, which the identity check sees;
        a fit changes only ops whose class computes its version, which are asked every time.
        """
        cache = self._versions.get(serving.name)
        if cache is None or cache.pipeline is not serving:
            # Racing calls may both compute it: the result is the same, so no lock is needed.
            cache = self._versions[serving.name] = VersionCache.of(serving)
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
