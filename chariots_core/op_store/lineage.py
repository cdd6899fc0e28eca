"""Saving a pipeline's ops and choosing which saved versions a pipeline may load.

**Saving** writes each loadable op's bytes through the saver first (content-addressed, so a
crash before the metadata commit leaves at most an unreferenced blob), then commits in one
op-store transaction the op versions that are new, the links of this save and a snapshot of
the version every op node ran with.

**Links.** A link ``up@u -> down@d`` records that version ``d`` of ``down`` was built on the
output of ``up`` at version ``u``. They are written by the save that first stores ``d`` (the
training run that made it): saving a prediction pipeline that merely *uses* ``d`` writes no
link, and re-saving an unchanged version writes no record, so it never looks newer than the
versions trained after it.

**The edge rule.** Loading picks a version for every loadable op, then checks every edge of
the DAG (branches, multi-input nodes and edges crossing nested pipelines included) whose
downstream op is *pinned*: it will not retrain itself when the pipeline runs (its
``allow_version_change`` is false; a model in ``MLMode.FIT`` is not pinned). If the chosen ``d``
holds trained state (its version is not just its code version, as a fitted model's) and was
built on versions of ``up``, the version of ``up`` that will run must equal one of them
under the app's policy: ``"major"`` compares the major subversions, ``"minor"`` major and
minor, ``"exact"`` all three. A ``d`` never built behind ``up`` (a prediction pipeline that
feeds the model from its input instead of the training dataset) puts no constraint on that edge.

``strategy="latest"`` takes each op's newest version saved by compatible code and refuses the
load if an edge is incompatible. ``"latest_compatible"`` finds the newest compatible set:
candidates newest first, upstream ops decided before downstream ones, after dropping every
candidate that no neighbour can accept (arc consistency), so chains and trees of models are
resolved without backtracking and the backtracking search only has diamonds left to explore.
It looks back through each op's history in widening windows (the newest 16 compatible-code
versions of every op, then 32, ... up to :data:`LATEST_COMPATIBLE_BOUND`) and returns the
first set found in the smallest window that holds one; past the bound it gives up with a
``VersionError`` that says so.

**Reading the store.** Both strategies read through one view of the op store
(:meth:`~chariots_core.op_store.store.OpStore.reader`), so a load sees one committed state even
while other processes save; ``"latest"`` reads O(1) records per op whatever the history (the
newest compatible version, the links of the chosen versions), ``"latest_compatible"`` at most
the bound. Saving looks each op's version up once (is it stored already?) and then commits.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ..errors import (
    ChariotsError,
    ConfigError,
    NotSavedError,
    SerializationError,
    VersionError,
)
from ..pipelines.nodes import Node
from ..pipelines.ops import fresh_copy
from ..pipelines.pipeline import Pipeline
from ..savers import BaseSaver, read_verified
from ..versioning import Version
from .records import POLICIES, Commit, JournalAppend, LinkRecord, OpVersionRecord, SnapshotRecord, version_key
from .store import OpStore, OpStoreView

__all__ = [
    "POLICIES",
    "STRATEGIES",
    "LATEST_COMPATIBLE_BOUND",
    "check_choice",
    "save_pipeline",
    "resolve_versions",
    "load_ops",
]

STRATEGIES = ("latest", "latest_compatible")
# How many of each op's newest compatible-code versions "latest_compatible" considers at most.
LATEST_COMPATIBLE_BOUND = 1024
_FIRST_WINDOW = 16
_COMPARED_PARTS = {"major": 1, "minor": 2, "exact": 3}
_PART_NAMES = ("major", "minor", "patch")

Candidate = OpVersionRecord | None  # None: keep the op as it is (nothing usable was saved)


def check_choice(argument: str, value: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise :class:`ConfigError`."""
    if value not in choices:
        msg = f"{argument!r} must be one of {', '.join(map(repr, choices))} (got {value!r})"
        raise ConfigError(msg)
    return value


@functools.lru_cache(maxsize=65536)
def _parsed(text: str) -> tuple[str, str, str]:
    version = Version.parse(text)
    return version.major, version.minor, version.patch


def _digests(version: Version | str) -> tuple[str, str, str]:
    if isinstance(version, Version):
        return version.major, version.minor, version.patch
    return _parsed(version)


def _show(version: Version | str) -> str:
    return "/".join(digest[:7] for digest in _digests(version))


def _changed_parts(old: Version | str, new: Version | str) -> str:
    changed = [name for name, a, b in zip(_PART_NAMES, _digests(old), _digests(new)) if a != b]
    if len(changed) > 1:
        return f"{', '.join(changed[:-1])} and {changed[-1]}"
    return changed[0] if changed else "no"


# -- saving --------------------------------------------------------------------------------
def save_pipeline(pipeline: Pipeline, op_store: OpStore, saver: BaseSaver) -> SnapshotRecord:
    """Persist every loadable op of ``pipeline`` and record its new versions, links and snapshot.

    :raises SerializationError: if an op's ``serialize`` fails or does not return bytes.
    :raises NotFittedError: if a model op was never fitted nor loaded.
    """
    now = time.time()
    nodes = pipeline.loadable_nodes()
    # Not necessarily the latest state: another save may commit between this view and the
    # commit below anyway, and on object storage asking for the latest costs a round trip.
    with op_store.reader(latest=False) as view:
        known = {id(node): view.op_version(node.name, str(node.node_version)) for node in nodes}
    records: list[OpVersionRecord] = []
    saved_as: dict[int, str] = {}  # id(node) -> the version string the store knows it by
    new: set[int] = set()  # id(node) of the ops whose version record this save writes
    for node in nodes:
        stored = known[id(node)]
        # A version other than the class version names the state it holds (an ML op's training
        # run): once stored, its bytes are stored too and need no serializing again.
        if stored is not None and node.op.holds_trained_state and saver.exists(stored.blob_path):
            saved_as[id(node)] = stored.version
            continue
        data = _serialize(node)
        digest = hashlib.sha256(data).hexdigest()
        blob_path = f"ops/{node.name}/{digest}"
        # Content-addressed: writing identical bytes again is harmless (and heals a lost blob),
        # and on object stores cheaper than first asking whether they are there.
        saver.save(blob_path, data)
        if stored is not None and stored.sha256 == digest and stored.blob_path == blob_path:
            saved_as[id(node)] = stored.version
            continue
        # A version saved again with other bytes (a plain LoadableOp whose state changed)
        # keeps the stored string, so that the store files it under the same key.
        text = stored.version if stored is not None else str(node.node_version)
        records.append(
            OpVersionRecord(
                op_name=node.name,
                version=text,
                code_version=str(type(node.op).__version__),
                pipeline_name=pipeline.name,
                saved_at=now,
                blob_path=blob_path,
                sha256=digest,
                size=len(data),
            )
        )
        saved_as[id(node)] = text
        new.add(id(node))
    links = tuple(
        LinkRecord(up.name, saved_as.get(id(up), str(up.node_version)), down.name, saved_as[id(down)])
        for up, down in pipeline.op_edges()
        if id(down) in new
    )
    snapshot = SnapshotRecord(
        pipeline_name=pipeline.name,
        saved_at=now,
        versions={node.name: saved_as.get(id(node), str(node.node_version)) for node in pipeline.op_nodes()},
    )
    op_store.commit(Commit(records, links, (JournalAppend(pipeline.name, snapshot),)))
    return snapshot


def _serialize(node: Node) -> bytes:
    op = node.op
    try:
        data = op.serialize()  # type: ignore[union-attr]
    except ChariotsError:
        raise
    except Exception as exc:
        msg = f"op {node.name!r}: {type(op).__name__}.serialize() failed ({type(exc).__name__}: {exc})"
        raise SerializationError(msg) from exc
    if not isinstance(data, (bytes, bytearray, memoryview)):
        msg = (
            f"op {node.name!r}: {type(op).__name__}.serialize() returned a "
            f"{type(data).__name__}; it must return bytes"
        )
        raise SerializationError(msg)
    return bytes(data)


# -- choosing versions -----------------------------------------------------------------------
@attrs.frozen
class _Edge:
    """One checked edge: which upstream versions a saved downstream version was built on."""

    up: Node
    down: Node
    built_on: Callable[[str], list[str]]  # a downstream version -> the versions of ``up`` it was built on
    compared: int  # how many subversions the policy compares
    _wanted: dict[str, frozenset[tuple[str, ...]] | None] = attrs.field(factory=dict, init=False)

    def key(self, up_candidate: Candidate) -> tuple[str, ...]:
        """What the policy compares of the upstream version that would run."""
        return _digests(_running_version(self.up, up_candidate))[: self.compared]

    def wants(self, down_candidate: Candidate) -> frozenset[tuple[str, ...]] | None:
        """The upstream keys the downstream candidate accepts (``None``: any)."""
        if down_candidate is None:
            return None
        if not down_candidate.holds_trained_state:
            return None  # no trained state (a plain LoadableOp): what feeds it cannot make it stale
        version = down_candidate.version
        if version not in self._wanted:
            ups = self.built_on(version)
            # A version never built behind ``up`` puts no constraint on this edge.
            self._wanted[version] = frozenset(_digests(up)[: self.compared] for up in ups) if ups else None
        return self._wanted[version]

    def allows(self, up_candidate: Candidate, down_candidate: Candidate) -> bool:
        """Whether the downstream candidate accepts the upstream candidate."""
        wanted = self.wants(down_candidate)
        return wanted is None or self.key(up_candidate) in wanted

    def accepts(self, chosen: Mapping[str, Candidate]) -> bool:
        """Whether the edge is compatible with the versions chosen so far."""
        return self.allows(chosen.get(self.up.name) if self.up.is_loadable else None, chosen[self.down.name])


def _running_version(node: Node, candidate: Candidate) -> Version | str:
    return candidate.version if candidate is not None else node.node_version


def resolve_versions(
    pipeline: Pipeline, op_store: OpStore, policy: str = "major", strategy: str = "latest"
) -> dict[str, Candidate]:
    """Choose the saved version each loadable op of ``pipeline`` should load, by node name.

    ``None`` means "keep the op as it is": nothing usable was saved and the op can run without.
    Everything is read through one view of the store: one committed state.

    :raises ConfigError: if ``policy`` or ``strategy`` is not a known one.
    :raises NotSavedError: if no op of the pipeline was ever saved, or a predict-only op has
        no saved version.
    :raises VersionError: naming every incompatible edge (``"latest"``), or when no
        compatible set of versions exists (``"latest_compatible"``).
    """
    check_choice("compatibility", policy, POLICIES)
    check_choice("strategy", strategy, STRATEGIES)
    with op_store.reader() as view:
        return _Resolution(pipeline, view, policy).resolve(strategy)


class _Resolution:
    """One load's choice of versions, read through one view."""

    def __init__(self, pipeline: Pipeline, view: OpStoreView, policy: str) -> None:
        self.pipeline, self.view, self.policy = pipeline, view, policy
        self.loadable = pipeline.loadable_nodes()
        self._links: dict[tuple[str, str], list[LinkRecord]] = {}

    def _newest(self, node: Node, limit: int, after: str | None = None) -> list[OpVersionRecord]:
        """Up to ``limit`` versions the node's code may load, newest first, after ``after``."""
        code = str(type(node.op).__version__)
        return self.view.op_versions(node.name, compatible_with=code, policy=self.policy, limit=limit, before=after)

    def resolve(self, strategy: str) -> dict[str, Candidate]:
        latest: dict[str, Candidate] = {}
        for node in self.loadable:
            newest = self._newest(node, 1)
            latest[node.name] = newest[0] if newest else None
        self._check_unusable([node for node in self.loadable if latest[node.name] is None])
        edges = self._checked_edges()
        problems = [edge for edge in edges if not edge.accepts(latest)]
        if not problems:
            return latest
        if strategy == "latest":
            head = (
                f"the pipeline you requested cannot be loaded because of version incompatibility: "
                f"pipeline {self.pipeline.name!r} has {len(problems)} incompatible edge(s):"
            )
            hint = (
                "HINT: retrain and save/reload in order to have a loadable version, or load with "
                "strategy='latest_compatible' to keep serving the newest compatible versions"
            )
            raise VersionError(self._report(head, problems, latest, hint))
        return self._newest_compatible(latest, edges, problems)

    def _check_unusable(self, missing: list[Node]) -> None:
        """Raise for the ops that have no version their code may load, unless they can run without."""
        newest_any = {node.name: self.view.op_versions(node.name, limit=1) for node in missing}
        if self.loadable and len(missing) == len(self.loadable) and not any(newest_any.values()):
            names = ", ".join(repr(node.name) for node in self.loadable)
            msg = (
                f"pipeline {self.pipeline.name!r} cannot be loaded: none of its ops ({names}) was ever "
                "saved. Run a pipeline that trains them and save it with save_pipeline first"
            )
            raise NotSavedError(msg)
        for node in missing:
            op = node.op
            if newest_any[node.name] and not op.allow_version_change:
                latest = newest_any[node.name][0]
                current_code = type(op).__version__
                msg = (
                    f"op {node.name!r} cannot be loaded: every saved version was made by other code (the "
                    f"latest, {_show(latest.version)}, by pipeline {latest.pipeline_name!r}; the "
                    f"{_changed_parts(latest.code_version, current_code)} version of "
                    f"{type(op).__name__}'s versioned fields changed since). Retrain it with the current "
                    f"code: run and save pipeline {latest.pipeline_name!r}"
                )
                raise VersionError(msg)
            if op.requires_saved_state:
                msg = (
                    f"op {node.name!r} needs a saved version to run (it only predicts) but none was "
                    "saved; run and save a pipeline that fits it first"
                )
                raise NotSavedError(msg)

    def _built_on(self, up: Node, down: Node) -> Callable[[str], list[str]]:
        def built_on(down_version: str) -> list[str]:
            key = (down.name, version_key(down_version))
            if key not in self._links:
                self._links[key] = self.view.links(down.name, down_version)
            return [link.upstream_version for link in self._links[key] if link.upstream_op == up.name]

        return built_on

    def _checked_edges(self) -> list[_Edge]:
        """The edges to check: those into a pinned downstream op."""
        return [
            _Edge(up, down, self._built_on(up, down), _COMPARED_PARTS[self.policy])
            for up, down in self.pipeline.op_edges()
            if down.is_loadable and not down.op.allow_version_change
        ]

    def _newest_compatible(
        self, latest: dict[str, Candidate], edges: list[_Edge], problems: list[_Edge]
    ) -> dict[str, Candidate]:
        """The first compatible set in the smallest window of history that holds one."""
        options: dict[str, list[Candidate]] = {name: [record] for name, record in latest.items()}
        window = _FIRST_WINDOW
        while True:
            exhausted = True
            for node in self.loadable:
                have = options[node.name]
                if have[-1] is not None and len(have) < window:
                    have += self._newest(node, window - len(have), after=have[-1].version)
                exhausted = exhausted and (have[-1] is None or len(have) < window)
            found = _search(self.loadable, options, edges)
            if found is not None:
                return found
            if exhausted:
                head = (
                    f"pipeline {self.pipeline.name!r} cannot be loaded: no combination of its saved "
                    "versions is compatible along every edge. With each op's latest version:"
                )
                hint = "HINT: retrain the ops named above on the current upstream versions and save them"
                raise VersionError(self._report(head, problems, latest, hint))
            if window >= LATEST_COMPATIBLE_BOUND:
                head = (
                    f"pipeline {self.pipeline.name!r} cannot be loaded with strategy='latest_compatible': "
                    f"no combination of the newest {LATEST_COMPATIBLE_BOUND} versions of each op is "
                    "compatible along every edge, and the search looks no further back "
                    "(chariots_core.op_store.lineage.LATEST_COMPATIBLE_BOUND). With each op's latest version:"
                )
                hint = "HINT: retrain the ops named above on the current upstream versions and save them"
                raise VersionError(self._report(head, problems, latest, hint))
            window = min(window * 2, LATEST_COMPATIBLE_BOUND)

    def _report(self, head: str, problems: list[_Edge], chosen: Mapping[str, Candidate], hint: str) -> str:
        lines = [head]
        for edge in problems:
            up, down = edge.up.name, edge.down.name
            down_record = chosen[down]
            assert down_record is not None  # an edge with no downstream record accepts anything
            built_on = edge.built_on(down_record.version)[-1]
            running = _running_version(edge.up, chosen.get(up) if edge.up.is_loadable else None)
            cause = self._cause(edge.up, built_on, running)
            lines.append(
                f"  - edge {up!r} -> {down!r}: {down!r} {_show(down_record.version)} was built on "
                f"{up!r} {_show(built_on)}, but {up!r} is now {_show(running)} (its "
                f"{_changed_parts(built_on, running)} version changed: {cause}). "
                f"Retrain {down!r} on it: run and save pipeline {down_record.pipeline_name!r}"
            )
        lines.append(hint)
        return "\n".join(lines)

    def _cause(self, up: Node, old: str, new: Version | str) -> str:
        if not up.is_loadable:
            return "its code changed"
        before, now = self.view.op_version(up.name, old), self.view.op_version(up.name, str(new))
        if before is None or now is None:
            return "it changed"
        if _digests(before.code_version) == _digests(now.code_version):
            return "it was retrained"
        return "its code changed"


def _search(
    loadable: list[Node], options: dict[str, list[Candidate]], edges: list[_Edge]
) -> dict[str, Candidate] | None:
    """The first compatible assignment, trying ops in run order and versions newest first."""
    domains = _arc_consistent(options, edges)
    if domains is None:
        return None
    order = [node.name for node in loadable]
    # Run order puts every upstream op before its downstream ops, so an edge can be checked
    # as soon as its downstream op has a candidate.
    checks: dict[str, list[_Edge]] = {name: [] for name in order}
    for edge in edges:
        checks[edge.down.name].append(edge)
    picks = [0] * len(order)
    chosen: dict[str, Candidate] = {}
    index = 0
    while index < len(order):
        name = order[index]
        domain = domains[name]
        while picks[index] < len(domain):
            chosen[name] = domain[picks[index]]
            if all(edge.accepts(chosen) for edge in checks[name]):
                break
            picks[index] += 1
        if picks[index] < len(domain):
            index += 1
            continue
        # No candidate fits what is chosen upstream: move the previous op to its next candidate.
        del chosen[name]
        picks[index] = 0
        index -= 1
        if index < 0:
            return None
        picks[index] += 1
    return chosen


def _arc_consistent(
    options: dict[str, list[Candidate]], edges: list[_Edge]
) -> dict[str, list[Candidate]] | None:
    """Drop candidates that some edge rules out whatever the other side picks (``None`` if one runs out)."""
    domains = {name: list(candidates) for name, candidates in options.items()}
    changed = True
    while changed:
        changed = False
        for edge in edges:
            ups = domains[edge.up.name] if edge.up.is_loadable else [None]
            downs = domains[edge.down.name]
            offered = {edge.key(up) for up in ups}
            kept_downs = [down for down in downs if (wanted := edge.wants(down)) is None or wanted & offered]
            wanted_by_kept = [edge.wants(down) for down in kept_downs]
            if any(wanted is None for wanted in wanted_by_kept):
                kept_ups = ups
            else:
                accepted = frozenset().union(*wanted_by_kept)
                kept_ups = [up for up in ups if edge.key(up) in accepted]
            if not kept_downs or not kept_ups:
                return None
            if len(kept_downs) < len(downs):
                domains[edge.down.name], changed = kept_downs, True
            if edge.up.is_loadable and len(kept_ups) < len(ups):
                domains[edge.up.name], changed = kept_ups, True
    return domains


# -- loading bytes -------------------------------------------------------------------------
def load_ops(pipeline: Pipeline, chosen: Mapping[str, Candidate], saver: BaseSaver) -> dict[str, Any]:
    """New op objects for the pipeline's loadable nodes, with the chosen versions loaded.

    Each is a shallow twin of the node's op whose ``load`` then assigns the saved state, so
    the ops the pipeline serves now are never touched and a load that fails half-way changes
    nothing (``load`` must set its state by assignment, as every Chariots op does). An op that
    already serves the chosen trained version is kept as it is, so reloading is cheap.

    :raises IntegrityError: if stored bytes are missing or do not match their sha256.
    :raises SerializationError: if an op cannot load its bytes.
    """
    loaded: dict[str, Any] = {}
    for node in pipeline.loadable_nodes():
        record = chosen.get(node.name)
        if record is None or _serves(node, record):
            continue
        where = f"op {record.op_name!r} version {_show(record.version)}"
        fix = f"the saver was changed or cleaned: re-run and save pipeline {record.pipeline_name!r}"
        data = read_verified(saver, record.blob_path, record.sha256, where, fix)
        op = fresh_copy(node.op)
        try:
            op.load(data)
        except ChariotsError:
            raise
        except Exception as exc:
            msg = f"{where}: {type(op).__name__}.load() failed ({type(exc).__name__}: {exc})"
            raise SerializationError(msg) from exc
        loaded[node.name] = op
    return loaded


def _serves(node: Node, record: OpVersionRecord) -> bool:
    """Whether the node's op already holds the trained state ``record`` names.

    Only a version that names its state (differs from the class version) says so: a plain
    LoadableOp keeps its class version whatever its state, so it is always loaded.
    """
    return node.op.holds_trained_state and _digests(node.node_version) == _digests(record.version)
