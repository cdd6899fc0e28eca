"""Deployment records: what the op store keeps of each change of what a pipeline serves.

Every deployment (a load, a rollback, a hot reload, a split; see
:mod:`chariots_core.serving.deployments`), refused ones included, appends one
:class:`DeploymentRecord` to the op store's ``deployments`` journal of its pipeline, so the
history is shared by every process using the store. Its shape is stable:
``app.deployments()``, ``GET /pipelines/<name>/deployments``, ``chariots history`` and the
status page all show it.

==================  ========================================================================
``deployment_id``   12 hex characters, unique
``pipeline_name``   the pipeline
``kind``            ``"load"``, ``"rollback"``, ``"reload"`` or ``"split"``
``outcome``         ``"deployed"``, or ``"refused"`` (nothing changed)
``at``              when, in seconds since the epoch
``versions``        ``{op node: version}`` of the loadable ops it serves from the store (of a
                    split, its first served variant's; of a refused rollback, what it tried)
``strategy``        of a load or reload, ``"latest"`` or ``"latest_compatible"``; else ``None``
``variants``        of a split, one :class:`VariantRecord` per variant, in order; else ``()``
``restores``        of a rollback, the id of the deployment whose versions it restores
``reason``          of a refused one, ``"<error type>: <message>"``
``host``, ``pid``   the host name and process id of the process that made it
==================  ========================================================================

The history is read newest first, a page at a time (:func:`deployment_history`,
:func:`find_deployment`): a lookup by id reads the history back to it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import ClassVar

import attrs

from ..errors import NotSavedError
from ..op_store.records import check_limit, version_key
from ..op_store.store import OpStore

__all__ = [
    "DeploymentRecord",
    "VariantRecord",
    "deployment_history",
    "find_deployment",
    "walk_deployments",
    "LOAD",
    "ROLLBACK",
    "RELOAD",
    "SPLIT",
    "DEPLOYED",
    "REFUSED",
]

LOAD, ROLLBACK, RELOAD, SPLIT = "load", "rollback", "reload", "split"
DEPLOYED, REFUSED = "deployed", "refused"
_PAGE = 64


@attrs.frozen
class VariantRecord:
    """One variant of a split: its name, versions, share of the calls, and whether it is the shadow."""

    name: str
    versions: dict[str, str]
    share: float
    shadow: bool = False


@attrs.frozen
class DeploymentRecord:
    """One change of what a pipeline serves (see the module docstring for each attribute)."""

    JOURNAL: ClassVar[str] = "deployments"

    deployment_id: str
    pipeline_name: str
    kind: str
    outcome: str
    at: float
    versions: dict[str, str] = attrs.field(factory=dict)
    strategy: str | None = None
    variants: tuple[VariantRecord, ...] = ()
    restores: str | None = None
    reason: str | None = None
    host: str = ""
    pid: int = 0

    @property
    def deployed(self) -> bool:
        """Whether it changed what the pipeline serves (it was not refused)."""
        return self.outcome == DEPLOYED

    @property
    def detail(self) -> str:
        """One line on it: why it was refused, what a rollback restores, or the strategy."""
        if self.reason:
            return self.reason.splitlines()[0]
        if self.restores:
            return f"restores {self.restores}"
        return self.strategy or ""

    def serves_as(self, other: DeploymentRecord) -> bool:
        """Whether it serves the same versions (and variants) as ``other``."""
        return _keys(self.versions) == _keys(other.versions) and [
            (variant.name, _keys(variant.versions), variant.share, variant.shadow) for variant in self.variants
        ] == [(variant.name, _keys(variant.versions), variant.share, variant.shadow) for variant in other.variants]


def _keys(versions: Mapping[str, str]) -> dict[str, str]:
    return {name: version_key(version) for name, version in versions.items()}


# -- reading the history ---------------------------------------------------------------------
def walk_deployments(op_store: OpStore, pipeline_name: str) -> Iterator[DeploymentRecord]:
    """The pipeline's deployments, newest first, read a page at a time."""
    before = None
    while True:
        entries = op_store.journal(DeploymentRecord, pipeline_name, limit=_PAGE, before=before)
        for entry in entries:
            yield entry.record
        if len(entries) < _PAGE:
            return
        before = entries[-1].position


def deployment_history(
    op_store: OpStore, pipeline_name: str, limit: int | None = None, before: str | None = None
) -> list[DeploymentRecord]:
    """The deployments of ``pipeline_name`` recorded in ``op_store``, newest first.

    :param limit: at most that many (``None``: all).
    :param before: a deployment id: only those older than it (reads the history up to it).
    :raises NotSavedError: if ``before`` is not a deployment of the pipeline.
    :raises ConfigError: if ``limit`` is not valid.
    """
    check_limit(limit)
    found: list[DeploymentRecord] = []
    started = before is None
    for record in walk_deployments(op_store, pipeline_name):
        if started:
            if limit is not None and len(found) >= limit:
                break
            found.append(record)
        started = started or record.deployment_id == before
    if not started:
        raise NotSavedError(_no_such_deployment(pipeline_name, before))
    return found


def find_deployment(op_store: OpStore, pipeline_name: str, deployment_id: str) -> DeploymentRecord:
    """The deployment ``deployment_id`` of ``pipeline_name``.

    :raises NotSavedError: if the pipeline has no such deployment.
    """
    for record in walk_deployments(op_store, pipeline_name):
        if record.deployment_id == deployment_id:
            return record
    raise NotSavedError(_no_such_deployment(pipeline_name, deployment_id))


def _no_such_deployment(pipeline_name: str, deployment_id: str | None) -> str:
    return (
        f"pipeline {pipeline_name!r} has no deployment {deployment_id!r}; list its deployments with "
        f"app.deployments({pipeline_name!r}) or chariots history {pipeline_name}"
    )
