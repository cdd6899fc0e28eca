"""What an app serves and what its store holds, as one JSON-safe dict: ``app.status()``.

:func:`app_status` reads everything through one view of the op store::

    {
      "generated_at": 1717000000.0,
      "compatibility": "major",
      "pipelines": [{
          "name": "pred_iris",
          "loaded": True,                            # whether load_pipeline succeeded
          "ops": [{                                  # one per loadable op, in run order
              "op": "irispca",
              "serving": "bfe909d/36d3c1a/94e72a1",  # what it serves (None until loaded or trained)
              "newest": "bfe909d/36d3c1a/94e72a1",   # the newest saved version its code may load
              "newest_saved_at": 1717000000.0,       # when, and by which pipeline's save
              "newest_pipeline": "train_pca",
              "why": None,                           # set when no saved version can load, saying why
              "fix": None,                           # then, the pipeline to run and save
          }],
          "stale": [{                                # every edge a "latest" load would refuse
              "upstream": "irispca", "downstream": "irisrf",
              "why": "irispca.model_parameters['n_components'] (MAJOR) changed 2 → 3 since 'irisrf' was trained on it",
              "fix": "train_iris",                   # the pipeline to run and save
              "change": {...},                       # the Change, as chariots_core.op_store.explain.as_dict gives it
          }],
      }],
      "jobs": [{                                     # the newest jobs first (at most ``limit``)
          "job_id": "3f2a...", "pipeline": "train_iris", "status": "failed",
          "submitted_at": 1717000000.0, "updated_at": 1717000003.5, "error": "ValueError in irispca: ...",
      }],
      "deployments": [{                              # the newest deployments of the pipelines, newest
          "deployment_id": "9c1e...", "pipeline": "pred_iris",   # first (at most ``limit``)
          "at": 1717000000.0, "kind": "reload", "outcome": "deployed",
          "versions": {"irispca": "bfe909d/36d3c1a/94e72a1"},
          "note": "latest",                          # the strategy, what a rollback restores,
      }],                                            # the split's shares, or why it was refused
    }

The same dict comes back from ``PipelinesClient.status()`` (``GET /status``). The status page
(:func:`page_status`, drawn by :func:`chariots_core.show.render_status_page`) is this dict
with each pipeline's DAG added. :func:`store_status` answers the same questions from the op
store alone, for the ``chariots status`` command, which does not import the project's code.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..op_store.explain import Explainer, StaleEdge, as_dict, short
from ..op_store.lineage import inspect_pipeline
from ..op_store.records import COMPARED_PARTS, JobRecord, OpVersionRecord, SnapshotRecord, check_limit
from ..op_store.store import OpStoreView
from .deployment_records import DeploymentRecord
from .responses import JobStatus

if TYPE_CHECKING:
    from .app import Chariots

__all__ = ["app_status", "page_status", "store_status", "error_text"]

_FINISHED = (JobStatus.done.value, JobStatus.failed.value)


def app_status(app: Chariots, limit: int = 10) -> dict[str, Any]:
    """The status of ``app`` (see the module docstring), with at most ``limit`` jobs and
    ``limit`` deployments.

    :raises ConfigError: if ``limit`` is not a count.
    """
    check_limit(limit)
    pipelines = []
    with app.op_store.reader() as view:
        for name in app.available_pipelines():
            serving = app.serving_pipeline(name)
            loaded = app.is_pipeline_loaded(name)
            versions = app.pipeline_versions(name)
            newest, staleness = inspect_pipeline(serving, view, app.compatibility)
            stale_ops = {op.op: (op.why, op.fix) for op in staleness.ops}
            stale_ops.update({op: ("it only predicts and was never saved", None) for op in staleness.unsaved})
            ops = []
            for node in serving.loadable_nodes():
                # An op serves a version once loaded, or trained here; before, it has nothing to serve.
                served = versions[node.name] if loaded or getattr(node.op, "holds_trained_state", False) else None
                ops.append(_op_row(node.name, served, newest.get(node.name), *stale_ops.get(node.name, (None, None))))
            pipelines.append(
                {"name": name, "loaded": loaded, "ops": ops, "stale": [_edge_row(edge) for edge in staleness.edges]}
            )
        deployments = _deployment_rows(view, app.available_pipelines(), limit)
    jobs = [] if app.job_store is None else _current_jobs(app, app.job_store.jobs(limit=limit))
    return {
        "generated_at": time.time(),
        "compatibility": app.compatibility,
        "pipelines": pipelines,
        "jobs": _job_rows(jobs),
        "deployments": deployments,
    }


def page_status(app: Chariots, limit: int = 10) -> dict[str, Any]:
    """:func:`app_status` with each pipeline's DAG (a :class:`~chariots_core.show.Picture`) and a
    title: the dict :func:`chariots_core.show.render_status_page` draws."""
    status = app_status(app, limit)
    for pipeline in status["pipelines"]:
        pipeline["graph"] = app.serving_pipeline(pipeline["name"]).picture()
    status["title"] = f"Chariots: {', '.join(app.available_pipelines())}"[:120]
    return status


def _op_row(
    op: str, serving: Any, newest: OpVersionRecord | None, why: str | None = None, fix: str | None = None
) -> dict[str, Any]:
    return {
        "op": op,
        "serving": None if serving is None else short(serving),
        "newest": None if newest is None else short(newest.version),
        "newest_saved_at": None if newest is None else newest.saved_at,
        "newest_pipeline": None if newest is None else newest.pipeline_name,
        "why": why,
        "fix": fix,
    }


def _edge_row(edge: StaleEdge) -> dict[str, Any]:
    change = edge.change
    return {
        "upstream": edge.upstream,
        "downstream": edge.downstream,
        "why": edge.why,
        "fix": edge.fix,
        "change": as_dict(change),
    }


def _current_jobs(app: Chariots, jobs: Iterable[JobRecord]) -> list[JobRecord]:
    """The records, with each unfinished job whose owning process is gone recorded ``failed``."""
    return [job if job.status in _FINISHED else (app.jobs.get(job.job_id) or job) for job in jobs]


def _job_rows(jobs: Iterable[JobRecord]) -> list[dict[str, Any]]:
    """Job records as the status dict lists them."""
    return [
        {
            "job_id": job.job_id,
            "pipeline": job.pipeline_name,
            "status": job.status,
            "submitted_at": job.submitted_at,
            "updated_at": job.updated_at,
            "error": error_text(job.error) if job.error else None,
        }
        for job in jobs
    ]


def _deployment_rows(view: OpStoreView, pipelines: Iterable[str], limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` deployments of ``pipelines`` together, newest first: at most
    ``limit`` journal entries read per pipeline, whatever the history."""
    records = [entry.record for name in pipelines for entry in view.journal(DeploymentRecord, name, limit=limit)]
    records.sort(key=lambda record: record.at, reverse=True)
    return [
        {
            "deployment_id": record.deployment_id,
            "pipeline": record.pipeline_name,
            "at": record.at,
            "kind": record.kind,
            "outcome": record.outcome,
            "versions": {op: short(version) for op, version in record.versions.items()},
            "note": _deployment_note(record),
        }
        for record in records[:limit]
    ]


def _deployment_note(record: DeploymentRecord) -> str:
    if not record.deployed:
        return f"refused: {record.reason}"[:200]
    if record.variants:
        return ", ".join(
            f"{variant.name} shadow" if variant.shadow else f"{variant.name} {variant.share:.0%}"
            for variant in record.variants
        )
    return record.detail  # what a rollback restores, or the strategy


def error_text(error: Mapping[str, str]) -> str:
    """A job's error in one line: ``ValueError in irispca: the message`` (at most 200 characters)."""
    node = f" in {error['node']}" if error.get("node") else ""
    return f"{error.get('type', 'error')}{node}: {error.get('message', '')}"[:200]


# -- from the store alone ------------------------------------------------------------------------
def store_status(
    view: OpStoreView,
    pipelines: Iterable[str],
    policy: str,
    held: OpStoreView | None = None,
    jobs: Iterable[JobRecord] = (),
    limit: int = 10,
) -> dict[str, Any]:
    """The status of ``pipelines`` told from the op store alone, shaped as :func:`app_status`'s.

    Without the project's code, each pipeline is known by its newest snapshot: the one ``held``
    (the command line's holding store: what it serves) or else the last save. Each loadable op
    (one the store has versions of) reports its newest saved version, whatever code made it; an
    edge the snapshot says a load checks is stale when the newest version of its downstream op
    was built on a version of its upstream op other than the one that would run (the upstream's
    newest, or for a plain op the snapshot's), compared under ``policy``.
    A pipeline the store never saw is listed with ``"saved": False``. ``jobs`` are listed as given,
    with the newest ``limit`` deployments of ``pipelines``.
    """
    explainer = Explainer(view, COMPARED_PARTS[policy])
    rows = []
    for name in pipelines:
        snapshot, is_held = _snapshot(held, name), True
        if snapshot is None:
            snapshot, is_held = _snapshot(view, name), False
        if snapshot is None:
            rows.append({"name": name, "saved": False, "loaded": False, "ops": [], "stale": []})
            continue
        newest = {op: found[0] for op in snapshot.versions if (found := view.op_versions(op, limit=1))}
        running = {op: newest[op].version if op in newest else version for op, version in snapshot.versions.items()}
        ops = [_op_row(op, snapshot.versions[op] if is_held else None, record) for op, record in newest.items()]
        stale = [
            _edge_row(edge)
            for up, down in snapshot.checked_edges
            if down in newest and up in running and (edge := explainer.stale_behind(up, running[up], newest[down]))
        ]
        rows.append(
            {"name": name, "saved": True, "loaded": is_held, "saved_at": snapshot.saved_at, "ops": ops, "stale": stale}
        )
    return {
        "generated_at": time.time(),
        "compatibility": policy,
        "pipelines": rows,
        "jobs": _job_rows(jobs),
        "deployments": _deployment_rows(view, [row["name"] for row in rows], limit),
    }


def _snapshot(view: OpStoreView | None, pipeline: str) -> SnapshotRecord | None:
    if view is None:
        return None
    entries = view.journal(SnapshotRecord, pipeline, limit=1)
    return entries[0].record if entries else None
