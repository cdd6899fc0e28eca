"""Deployments: every change of what a pipeline serves, checked, swapped at once and recorded.

A *deployment* is one change of what an app serves for one pipeline: a load
(``load_pipeline``), a ``rollback``, a hot reload (``Chariots(reload=...)``) or a ``split``.
Each one is checked along every edge by the lineage rule (:mod:`chariots_core.op_store.lineage`)
before anything changes, then swapped in as a whole: calls in flight finish on the ops they
started with. Each one, refused ones included, appends one
:class:`~chariots_core.serving.deployment_records.DeploymentRecord` (its shape is described
there) to the op store's ``deployments`` journal of the pipeline: one commit, the only store
write a deployment makes. A refusal is any Chariots error met while choosing or reading the
versions (a bad argument, such as an unknown deployment id, is not a deployment and records
nothing).

**Previous.** ``rollback(pipeline)`` (no ``to``) goes back to the *previous* deployment:
the newest deployment of the journal older than the *current* one that was deployed (not
refused) and serves other versions. The current one is the last deployment this app made of the
pipeline; an app that made none yet (a new process, such as each ``chariots`` command) takes
the store's newest deployed one. So, as in Heroku or Kubernetes, a second rollback returns to
where the first one started; ``rollback(pipeline, to=<deployment id>)`` goes to any deployed one.

**Hot reload** re-resolves a loaded pipeline and deploys only what changed (a different saved
version or bytes): polls that find nothing new record nothing, and a refused reload is recorded
once per new refusal, not once per poll, while the pipeline keeps serving what it had.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import ChariotsError, ConfigError, NotSavedError, UnknownPipelineError, describe_failure
from ..log import get_logger
from ..op_store.lineage import Candidate, load_ops, resolve_pinned, resolve_versions
from ..op_store.records import Commit, JournalAppend, version_key
from ..op_store.store import OpStore
from ..pipelines.pipeline import Pipeline
from .deployment_records import (
    DEPLOYED,
    LOAD,
    REFUSED,
    RELOAD,
    ROLLBACK,
    SPLIT,
    DeploymentRecord,
    VariantRecord,
    deployment_history,
    find_deployment,
    walk_deployments,
)
from .routes import Variant
from .splits import SERVING, SplitPlan, strategy_or_id

if TYPE_CHECKING:
    from .app import Chariots

__all__ = ["Deployer", "DeploymentRecord", "VariantRecord", "deployment_history", "find_deployment"]

_log = get_logger("deployments")


# -- making deployments ----------------------------------------------------------------------
@attrs.frozen
class _Change:
    """What a deployment swaps in: the variants (one unless split), each with its chosen records."""

    served: tuple[Variant, ...]
    chosen: tuple[dict[str, Candidate], ...]  # per variant of ``served`` then the shadow
    shares: tuple[float, ...] = (1.0,)
    shadow: Variant | None = None

    def variant_records(self) -> tuple[VariantRecord, ...]:
        if len(self.served) == 1 and self.shadow is None:
            return ()
        variants = [*self.served, *([self.shadow] if self.shadow is not None else [])]
        shares = [*self.shares, 0.0]
        return tuple(
            VariantRecord(str(variant.name), _versions(chosen), share, variant is self.shadow)
            for variant, chosen, share in zip(variants, self.chosen, shares)
        )


def _versions(chosen: Mapping[str, Candidate]) -> dict[str, str]:
    return {name: record.version for name, record in chosen.items() if record is not None}


def _same_choice(old: Mapping[str, Candidate], new: Mapping[str, Candidate]) -> bool:
    """Whether two choices load the same saved versions with the same bytes."""

    def identity(choice: Mapping[str, Candidate]) -> dict[str, tuple[str, str] | None]:
        return {
            name: None if record is None else (version_key(record.version), record.sha256)
            for name, record in choice.items()
        }

    return identity(old) == identity(new)


def _reason(exc: BaseException) -> str:
    failure = describe_failure(exc)
    return f"{failure['type']}: {failure['message']}"


class Deployer:
    """Makes and records the deployments of one app (its ``load_pipeline``, ``rollback``,
    ``split`` and hot reloads all go through it), holding the app's swap lock for each."""

    def __init__(self, app: Chariots) -> None:
        # A weak back-reference: the app owns its deployer, and must stay free to be collected
        # as soon as nothing else refers to it (worker pools rely on that).
        self._app = weakref.proxy(app)
        # By pipeline: what this app deployed last, and the records it chose (for reloads).
        self._live: dict[str, tuple[DeploymentRecord, dict[str, Candidate]]] = {}
        self._refusals: dict[str, str] = {}  # by pipeline: the last refused reload's reason

    def current(self, pipeline_name: str) -> DeploymentRecord | None:
        """The current deployment of the pipeline (see the module docstring), or ``None``."""
        live = self._live.get(pipeline_name)
        if live is not None:
            return live[0]
        return next((record for record in walk_deployments(self._app.op_store, pipeline_name) if record.deployed), None)

    # -- the four kinds ---------------------------------------------------------------------
    def load(self, pipeline_name: str, strategy: str) -> DeploymentRecord:
        """Load the versions ``strategy`` chooses now (``Chariots.load_pipeline``)."""
        with self._app._swap_lock:
            serving = self._app.serving_pipeline(pipeline_name)

            def change() -> _Change:
                return self._single(serving, resolve_versions(serving, self._store, self._policy, strategy))

            return self._explicit(pipeline_name, LOAD, change, strategy=strategy)

    def reload(self, pipeline_name: str, strategy: str) -> DeploymentRecord | None:
        """Deploy what ``strategy`` chooses now if it differs from what serves; ``None`` if
        nothing was recorded (nothing new, a split, or a refusal recorded already)."""
        with self._app._swap_lock:
            if self._app._is_split(pipeline_name):
                return None  # a split pins its variants until the next load or rollback
            serving = self._app.serving_pipeline(pipeline_name)
            live = self._live.get(pipeline_name)

            def change() -> _Change | None:
                chosen = resolve_versions(serving, self._store, self._policy, strategy)
                if live is not None and _same_choice(live[1], chosen):
                    return None
                return self._single(serving, chosen)

            return self._deploy(pipeline_name, RELOAD, change, strategy=strategy, quiet=True)

    def rollback(self, pipeline_name: str, to: str | None) -> DeploymentRecord:
        """Serve again what an earlier deployment served (``Chariots.rollback``)."""
        if to is not None and (not isinstance(to, str) or not to):
            raise ConfigError(f"'to' must be None or a deployment id (got {to!r})")
        with self._app._swap_lock:
            serving = self._app.serving_pipeline(pipeline_name)
            target = self._rollback_target(pipeline_name, to)

            def change() -> _Change:
                if not target.variants:
                    return self._single(serving, self._pinned(serving, target.versions))
                served = [variant for variant in target.variants if not variant.shadow]
                shadow = next((variant for variant in target.variants if variant.shadow), None)
                built = [(variant.name, self._pinned(serving, variant.versions)) for variant in served]
                shadow_built = (shadow.name, self._pinned(serving, shadow.versions)) if shadow else None
                return self._split_change(serving, built, tuple(variant.share for variant in served), shadow_built)

            return self._explicit(
                pipeline_name, ROLLBACK, change, restores=target.deployment_id, attempted=target.versions
            )

    def split(self, pipeline_name: str, plan: SplitPlan) -> DeploymentRecord:
        """Serve several variants side by side (``Chariots.split``)."""
        with self._app._swap_lock:
            serving = self._app.serving_pipeline(pipeline_name)
            if SERVING in plan.specs.values() and not self._app.is_pipeline_loaded(pipeline_name):
                msg = (
                    f"pipeline {pipeline_name!r} was never loaded, so a variant cannot be what it serves "
                    f"({SERVING!r}); load it first, or name 'latest' or a deployment id"
                )
                raise NotSavedError(msg)
            targets = {
                name: find_deployment(self._store, pipeline_name, spec)
                for name, spec in plan.specs.items()
                if spec != SERVING and strategy_or_id(spec) is None
            }
            for name, target in targets.items():
                if not target.deployed or target.variants:
                    msg = (
                        f"variant {name!r} names deployment {target.deployment_id!r}, which "
                        f"{'was refused' if not target.deployed else 'is a split'}; name a deployment "
                        "that served one set of versions"
                    )
                    raise ConfigError(msg)

            def choose(name: str, spec: str) -> dict[str, Candidate]:
                if spec == SERVING:
                    return self._pinned(serving, self._stored_versions(serving))
                if name in targets:
                    return self._pinned(serving, targets[name].versions)
                return resolve_versions(serving, self._store, self._policy, spec)

            def change() -> _Change:
                built = [(name, choose(name, spec)) for name, spec in plan.specs.items() if name != plan.shadow]
                shadow = None if plan.shadow is None else (plan.shadow, choose(plan.shadow, plan.specs[plan.shadow]))
                return self._split_change(serving, built, tuple(plan.shares.values()), shadow)

            return self._explicit(pipeline_name, SPLIT, change)

    # -- helpers ------------------------------------------------------------------------------
    @property
    def _store(self) -> OpStore:
        return self._app.op_store

    @property
    def _policy(self) -> str:
        return self._app.compatibility

    def _pinned(self, serving: Pipeline, versions: Mapping[str, str]) -> dict[str, Candidate]:
        return resolve_pinned(serving, self._store, self._policy, versions)

    def _stored_versions(self, pipeline: Pipeline) -> dict[str, str]:
        """The versions the pipeline's loadable ops serve now that the store has."""
        with self._store.reader() as view:
            return {
                node.name: str(node.node_version)
                for node in pipeline.loadable_nodes()
                if view.op_version(node.name, str(node.node_version)) is not None
            }

    def _loaded(self, serving: Pipeline, chosen: Mapping[str, Candidate]) -> Pipeline:
        loaded = load_ops(serving, chosen, self._app.saver)
        return serving.replace_ops(loaded) if loaded else serving

    def _single(self, serving: Pipeline, chosen: dict[str, Candidate]) -> _Change:
        return _Change((Variant(None, self._loaded(serving, chosen)),), (chosen,))

    def _split_change(
        self,
        serving: Pipeline,
        built: list[tuple[str, dict[str, Candidate]]],
        shares: tuple[float, ...],
        shadow: tuple[str, dict[str, Candidate]] | None,
    ) -> _Change:
        served = tuple(Variant(name, self._loaded(serving, chosen)) for name, chosen in built)
        chosen_all = [chosen for _, chosen in built]
        shadow_variant = None
        if shadow is not None:
            shadow_variant = Variant(shadow[0], self._loaded(serving, shadow[1]))
            chosen_all.append(shadow[1])
        return _Change(served, tuple(chosen_all), shares, shadow_variant)

    def _rollback_target(self, pipeline_name: str, to: str | None) -> DeploymentRecord:
        if to is not None:
            target = find_deployment(self._store, pipeline_name, to)
            if not target.deployed:
                msg = (
                    f"deployment {to!r} of pipeline {pipeline_name!r} was refused ({target.reason}), so it "
                    "never served; roll back to a deployed one (chariots history lists them)"
                )
                raise ConfigError(msg)
            return target
        current = self.current(pipeline_name)
        if current is None:
            msg = f"pipeline {pipeline_name!r} was never deployed, so there is nothing to roll back to; load it first"
            raise NotSavedError(msg)
        seen_current = False
        for record in walk_deployments(self._store, pipeline_name):
            if seen_current and record.deployed and not record.serves_as(current):
                return record
            seen_current = seen_current or record.deployment_id == current.deployment_id
        msg = (
            f"pipeline {pipeline_name!r} has no deployment before {current.deployment_id!r} that served other "
            "versions, so there is nothing to roll back to; pass to=<deployment id> to pick one"
        )
        raise NotSavedError(msg)

    def _explicit(self, pipeline_name: str, kind: str, change: Callable[[], _Change], **options: Any) -> DeploymentRecord:
        """:meth:`_deploy` of a deployment asked for: it returns its record or raises the refusal."""
        record = self._deploy(pipeline_name, kind, change, **options)
        assert record is not None  # only quiet deployments and empty changes give None
        return record

    def _deploy(
        self,
        pipeline_name: str,
        kind: str,
        change: Callable[[], _Change | None],
        strategy: str | None = None,
        restores: str | None = None,
        attempted: Mapping[str, str] | None = None,
        quiet: bool = False,
    ) -> DeploymentRecord | None:
        """Work out ``change``, record it, then swap it in; the caller holds the swap lock.

        A refusal (any Chariots error but a bad argument) is recorded and raised, or, when
        ``quiet`` (hot reloads), recorded once per new reason and returned.
        """
        common: dict[str, Any] = {
            "pipeline_name": pipeline_name, "kind": kind, "strategy": strategy, "restores": restores,
            "host": socket.gethostname(), "pid": os.getpid(),
        }  # fmt: skip
        try:
            made = change()
        except (ConfigError, UnknownPipelineError):
            raise
        except ChariotsError as exc:
            reason = _reason(exc)
            if quiet and self._refusals.get(pipeline_name) == reason:
                return None
            record = DeploymentRecord(
                _new_id(), outcome=REFUSED, at=time.time(), versions=dict(attempted or {}), reason=reason, **common
            )
            self._record_refusal(record, exc)
            if not quiet:
                raise
            self._refusals[pipeline_name] = reason
            _log.warning("refused to %s pipeline %r: %s", kind, pipeline_name, reason)
            return record
        if made is None:
            return None
        record = DeploymentRecord(
            _new_id(), outcome=DEPLOYED, at=time.time(), versions=_versions(made.chosen[0]),
            variants=made.variant_records(), **common,
        )  # fmt: skip
        self._store.commit(Commit(journal=(JournalAppend(pipeline_name, record),)))
        self._app._serve(pipeline_name, made.served, made.shares, made.shadow)
        self._live[pipeline_name] = (record, made.chosen[0])
        self._refusals.pop(pipeline_name, None)
        _log.info("%s of pipeline %r deployed as %s", kind, pipeline_name, record.deployment_id)
        return record

    def _record_refusal(self, record: DeploymentRecord, cause: BaseException) -> None:
        """Record a refused deployment; a store that cannot take it leaves ``cause`` the error to raise."""
        try:
            self._store.commit(Commit(journal=(JournalAppend(record.pipeline_name, record),)))
        except ChariotsError as exc:
            _log.warning(
                "could not record the refused %s of pipeline %r (%s) in the op store: %s",
                record.kind, record.pipeline_name, _reason(cause), exc,
            )  # fmt: skip


def _new_id() -> str:
    return uuid.uuid4().hex[:12]
