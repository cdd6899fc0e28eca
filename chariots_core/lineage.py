"""Saving a pipeline's ops and choosing which saved versions a pipeline may load.

Saving writes each loadable op's bytes through the saver first, then commits every version
record, every DAG edge as a link (upstream op+version -> downstream op+version) and a snapshot
in one op-store transaction, so a crash leaves the whole save or none of it.

Loading picks a version for each loadable op and checks every edge whose downstream op is
loadable: the downstream version must have been built on an upstream version equal to the
upstream now loaded, under the app's compatibility policy (``"major"``, ``"minor"`` or
``"exact"``). Only the edges the store has ever seen are checked, so a pipeline may wire a
saved model behind a new preprocessing op without retraining it.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Mapping
from typing import Any

import attrs

from .errors import IntegrityError, NotSavedError, StoreError, VersionError
from .nodes import Node
from .ops import LoadableOp
from .pipeline import Pipeline
from .savers import BaseSaver
from .store import LinkRecord, OpStore, OpVersionRecord, SaveRecord, SnapshotRecord
from .versioning import Version

__all__ = ["POLICIES", "STRATEGIES", "save_pipeline", "resolve_versions", "load_ops", "compatible"]

POLICIES = ("major", "minor", "exact")
STRATEGIES = ("latest", "latest_compatible")
_POLICY_PARTS = {"major": ("major",), "minor": ("major", "minor"), "exact": ("major", "minor", "patch")}


def compatible(a: Version | str, b: Version | str, policy: str) -> bool:
    """Whether two versions are interchangeable under ``policy``."""
    a = a if isinstance(a, Version) else Version.parse(a)
    b = b if isinstance(b, Version) else Version.parse(b)
    return all(getattr(a, part) == getattr(b, part) for part in _POLICY_PARTS[policy])


def _changed_parts(old: str, new: str) -> str:
    a, b = Version.parse(old), Version.parse(new)
    changed = [part for part in ("major", "minor", "patch") if getattr(a, part) != getattr(b, part)]
    return ", ".join(changed) or "nothing"


def _short(version: str) -> str:
    return version[:7]


# -- saving --------------------------------------------------------------------------------
def save_pipeline(pipeline: Pipeline, op_store: OpStore, saver: BaseSaver) -> SnapshotRecord:
    """Persist every loadable op of ``pipeline`` and record its versions, links and snapshot."""
    now = time.time()
    records: list[OpVersionRecord] = []
    known = {}
    for node in pipeline.loadable_nodes():
        op: LoadableOp = node.op  # type: ignore[assignment]
        version = str(op.op_version)
        data = op.serialize()
        if not isinstance(data, (bytes, bytearray)):
            msg = (
                f"{type(op).__name__}.serialize() of node {node.name!r} returned a "
                f"{type(data).__name__}; it must return bytes"
            )
            raise StoreError(msg)
        digest = hashlib.sha256(data).hexdigest()
        # Content-addressed: re-saving identical bytes rewrites nothing, and a crash before
        # the metadata commit leaves only an unreferenced blob behind.
        blob_path = f"ops/{node.name}/{digest}"
        if not saver.exists(blob_path):
            saver.save(blob_path, bytes(data))
        records.append(
            OpVersionRecord(
                op_name=node.name,
                version=version,
                code_version=str(type(op).__version__),
                pipeline_name=pipeline.name,
                saved_at=now,
                blob_path=blob_path,
                sha256=digest,
                size=len(data),
            )
        )
        known[id(node)] = version
    links = tuple(
        LinkRecord(up.name, str(up.node_version), down.name, known[id(down)])
        for up, down in pipeline.op_edges()
        if id(down) in known
    )
    snapshot = SnapshotRecord(
        pipeline_name=pipeline.name,
        saved_at=now,
        versions={node.name: str(node.node_version) for node in pipeline.op_nodes()},
    )
    op_store.commit_save(SaveRecord(tuple(records), links, snapshot))
    return snapshot


# -- choosing versions -----------------------------------------------------------------------
@attrs.frozen
class _Edge:
    up: Node
    down: Node


def resolve_versions(
    pipeline: Pipeline, op_store: OpStore, policy: str = "major", strategy: str = "latest"
) -> dict[str, OpVersionRecord | None]:
    """Choose the saved version each loadable op of ``pipeline`` should load.

    ``None`` means "keep the op as it is" (nothing usable was saved, and the op can run
    without it).

    :raises NotSavedError: if no op of the pipeline was ever saved, or a predict-only op has
        no saved version.
    :raises VersionError: naming every incompatible edge (``"latest"``), or when no
        compatible set of versions exists (``"latest_compatible"``).
    """
    loadable = pipeline.loadable_nodes()
    candidates = {node.name: _candidates(node, op_store, policy) for node in loadable}
    if loadable and not any(op_store.op_versions(node.name) for node in loadable):
        names = ", ".join(repr(node.name) for node in loadable)
        msg = (
            f"pipeline {pipeline.name!r} cannot be loaded: none of its ops ({names}) has ever "
            "been saved. Run a pipeline that trains them and save it with save_pipeline first"
        )
        raise NotSavedError(msg)
    edges = [
        _Edge(up, down)
        for up, down in pipeline.op_edges()
        if down.is_loadable and _edge_recorded(op_store, up.name, down.name)
    ]
    if strategy == "latest":
        chosen = {name: options[0] for name, options in candidates.items()}
        problems = [
            problem for edge in edges if (problem := _edge_problem(edge, chosen, op_store, policy))
        ]
        if problems:
            raise VersionError(_version_report(pipeline, problems, chosen, op_store))
        return chosen
    return _search_compatible(pipeline, loadable, candidates, edges, op_store, policy)


def _candidates(node: Node, op_store: OpStore, policy: str) -> list[OpVersionRecord | None]:
    """Saved versions this op's code may load, newest first."""
    op = node.op
    saved = op_store.op_versions(node.name)
    current_code = str(type(op).__version__)
    usable = [
        record
        for record in reversed(saved)
        if compatible(record.code_version, current_code, policy)
    ]
    if usable:
        return usable
    if saved and not op.allow_version_change:
        latest = saved[-1]
        msg = (
            f"op {node.name!r}: every saved version was made by different code (latest "
            f"{_short(latest.version)} was saved by pipeline {latest.pipeline_name!r}; its "
            f"{_changed_parts(latest.code_version, current_code)} version fields changed since). "
            f"Retrain it with the current code: run and save {latest.pipeline_name!r}"
        )
        raise VersionError(msg)
    if op.requires_saved_state:
        msg = (
            f"op {node.name!r} needs a saved version to run (it only predicts) but none was "
            "saved; run and save a pipeline that fits it first"
        )
        raise NotSavedError(msg)
    return [None]


def _edge_recorded(op_store: OpStore, up: str, down: str) -> bool:
    return any(link.upstream_op == up for link in op_store.links(down))


def _current_version(node: Node, chosen: Mapping[str, OpVersionRecord | None]) -> str:
    record = chosen.get(node.name)
    return record.version if record is not None else str(node.node_version)


def _edge_problem(
    edge: _Edge, chosen: Mapping[str, OpVersionRecord | None], op_store: OpStore, policy: str
) -> tuple[_Edge, str, list[str]] | None:
    """``None`` if the edge is fine, else (edge, loaded upstream, upstreams the downstream knows)."""
    down_record = chosen.get(edge.down.name)
    if down_record is None:
        return None
    up_version = _current_version(edge.up, chosen)
    built_on = [
        link.upstream_version
        for link in op_store.links(edge.down.name)
        if link.upstream_op == edge.up.name
        and compatible(link.downstream_version, down_record.version, "exact")
    ]
    if any(compatible(known, up_version, policy) for known in built_on):
        return None
    return edge, up_version, built_on


def _version_report(
    pipeline: Pipeline,
    problems: list[tuple[_Edge, str, list[str]]],
    chosen: Mapping[str, OpVersionRecord | None],
    op_store: OpStore,
) -> str:
    lines = []
    for edge, up_version, built_on in problems:
        down_record = chosen[edge.down.name]
        assert down_record is not None
        if built_on:
            was = f"was built on {edge.up.name!r} {_short(built_on[-1])}"
            what = f" ({_changed_parts(built_on[-1], up_version)} changed)"
        else:
            was, what = f"was never built on any {edge.up.name!r} version", ""
        lines.append(
            f"  - {edge.up.name!r} -> {edge.down.name!r}: {edge.down.name!r} "
            f"{_short(down_record.version)} {was}, but the latest {edge.up.name!r} is "
            f"{_short(up_version)}{what}. Retrain and save {edge.down.name!r} by running and "
            f"saving pipeline {down_record.pipeline_name!r} on the new {edge.up.name!r}"
        )
    detail = "\n".join(lines)
    return (
        f"the pipeline you requested cannot be loaded because of version incompatibility: "
        f"pipeline {pipeline.name!r} has {len(problems)} incompatible edge(s):\n{detail}\n"
        "HINT: retrain and save/reload in order to have a loadable version, or load with "
        "strategy='latest_compatible' to keep serving the newest compatible versions"
    )


def _search_compatible(
    pipeline: Pipeline,
    loadable: list[Node],
    candidates: dict[str, list[OpVersionRecord | None]],
    edges: list[_Edge],
    op_store: OpStore,
    policy: str,
) -> dict[str, OpVersionRecord | None]:
    """Backtracking search, newest versions first, ops in run order (upstream before downstream)."""
    order = [node.name for node in loadable]
    # Ops come in run order, so an edge can be checked as soon as its downstream has a version.
    checks: dict[str, list[_Edge]] = {name: [] for name in order}
    for edge in edges:
        checks[edge.down.name].append(edge)
    picks = [0] * len(order)
    chosen: dict[str, OpVersionRecord | None] = {}
    index = 0
    while 0 <= index < len(order):
        name = order[index]
        options = candidates[name]
        while picks[index] < len(options):
            chosen[name] = options[picks[index]]
            fine = all(_edge_problem(edge, chosen, op_store, policy) is None for edge in checks[name])
            if fine:
                break
            picks[index] += 1
        if picks[index] < len(options):
            index += 1
            continue
        chosen.pop(name, None)
        picks[index] = 0
        index -= 1
        if index >= 0:
            picks[index] += 1
    if index < 0:
        msg = (
            f"pipeline {pipeline.name!r} cannot be loaded: no combination of saved versions is "
            "compatible along every edge. Retrain and save the pipeline that trains its ops"
        )
        raise VersionError(msg)
    return chosen


# -- loading bytes -------------------------------------------------------------------------
def load_ops(
    pipeline: Pipeline, chosen: Mapping[str, OpVersionRecord | None], saver: BaseSaver
) -> dict[str, Any]:
    """Fresh copies of the pipeline's loadable ops with the chosen versions loaded.

    The pipeline's own ops are not touched, so a load that fails half-way changes nothing.

    :raises IntegrityError: if stored bytes do not match their recorded sha256.
    """
    loaded: dict[str, Any] = {}
    for node in pipeline.loadable_nodes():
        record = chosen.get(node.name)
        if record is None:
            continue
        try:
            data = saver.load(record.blob_path)
        except FileNotFoundError as exc:
            msg = (
                f"op {record.op_name!r} version {_short(record.version)}: its bytes are missing "
                f"at {record.blob_path!r} in {saver!r}; the saver was changed or cleaned. "
                f"Re-run and save pipeline {record.pipeline_name!r}"
            )
            raise IntegrityError(msg) from exc
        digest = hashlib.sha256(data).hexdigest()
        if digest != record.sha256:
            msg = (
                f"op {record.op_name!r} version {_short(record.version)}: the bytes at "
                f"{record.blob_path!r} are corrupt (sha256 {digest[:12]}..., expected "
                f"{record.sha256[:12]}...). Re-run and save pipeline {record.pipeline_name!r}"
            )
            raise IntegrityError(msg)
        op = copy.deepcopy(node.op)
        op.load(data)
        loaded[node.name] = op
    return loaded
