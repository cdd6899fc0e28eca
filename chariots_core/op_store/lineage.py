"""Saving a pipeline's ops and choosing which saved versions a pipeline may load.

**Saving** streams each loadable op's state through the saver first (``serialize_to``, hashed
on the way, under a new name per save, so a crash before the metadata commit leaves at most a
blob no record names, for garbage collection; see :mod:`chariots_core.op_store.blobs`), then
commits in one op-store transaction the op versions that are new, the links of this save and a
snapshot of the version every op node ran with. **Loading** checks a blob against its recorded
sha256 before the op reads it (``load_from``): nothing unchecked reaches a deserializer.

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

import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ..errors import ConfigError, NotSavedError, VersionError
from ..pipelines.nodes import Node
from ..pipelines.ops import fresh_copy
from ..pipelines.pipeline import Pipeline
from ..savers import BaseSaver
from ..versioning import Version
from .blobs import StoredState, loaded_from, read_state, write_state
from .explain import Explainer, StaleEdge, Staleness, StaleOp, changed_parts, digests, short
from .fields import fields_appends
from .records import (
    COMPARED_PARTS,
    POLICIES,
    Commit,
    JournalAppend,
    LinkRecord,
    OpVersionRecord,
    SnapshotRecord,
    code_key,
    version_key,
)
from .store import OpStore, OpStoreView

__all__ = [
    "POLICIES",
    "STRATEGIES",
    "LATEST_COMPATIBLE_BOUND",
    "check_choice",
    "save_pipeline",
    "resolve_versions",
    "resolve_pinned",
    "load_ops",
    "why_stale",
    "inspect_pipeline",
]

STRATEGIES = ("latest", "latest_compatible")
# How many of each op's newest compatible-code versions "latest_compatible" considers at most.
LATEST_COMPATIBLE_BOUND = 1024
_FIRST_WINDOW = 16

Candidate = OpVersionRecord | None  # None: keep the op as it is (nothing usable was saved)


def check_choice(argument: str, value: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise :class:`ConfigError`."""
    if value not in choices:
        msg = f"{argument!r} must be one of {', '.join(map(repr, choices))} (got {value!r})"
        raise ConfigError(msg)
    return value


def _changed_parts(old: Version | str, new: Version | str) -> str:
    changed = changed_parts(old, new)
    if len(changed) > 1:
        return f"{', '.join(changed[:-1])} and {changed[-1]}"
    return changed[0] if changed else "no"


# -- saving --------------------------------------------------------------------------------
def save_pipeline(pipeline: Pipeline, op_store: OpStore, saver: BaseSaver) -> SnapshotRecord:
    """Persist every loadable op of ``pipeline`` and record its new versions, links and snapshot.

    :raises SerializationError: if an op's ``serialize_to`` (or ``serialize``) fails.
    :raises NotFittedError: if a model op was never fitted nor loaded.
    :raises StoreError: if the saver or the op store cannot be written.
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
        blob = _loaded_state(node, saver) or write_state(node.op, node.name, saver)
        if stored is not None and stored.sha256 == blob.sha256 and saver.exists(stored.blob_path):
            if blob.blob_path != stored.blob_path:
                saver.delete(blob.blob_path)  # the same bytes are stored already: keep one copy
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
                blob_path=blob.blob_path,
                sha256=blob.sha256,
                size=blob.size,
            )
        )
        saved_as[id(node)] = text
        new.add(id(node))
    edges = pipeline.op_edges()
    new_links = [(up, down) for up, down in edges if id(down) in new]
    links = tuple(
        LinkRecord(up.name, saved_as.get(id(up), str(up.node_version)), down.name, saved_as[id(down)])
        for up, down in new_links
    )
    snapshot = SnapshotRecord(
        pipeline_name=pipeline.name,
        saved_at=now,
        versions={node.name: saved_as.get(id(node), str(node.node_version)) for node in pipeline.op_nodes()},
        checked_edges=[[up.name, down.name] for up, down in edges if _pinned(down)],
    )
    # The fields of each version this save records, and of the plain ops its new links name
    # (a loadable upstream's fields were recorded with its own version).
    described = [(node, saved_as[id(node)]) for node in nodes if id(node) in new]
    described += [(up, str(up.node_version)) for up, _ in new_links if not up.is_loadable]
    journal = (JournalAppend(pipeline.name, snapshot), *fields_appends(described))
    op_store.commit(Commit(records, links, journal))
    return snapshot


def _loaded_state(node: Node, saver: BaseSaver) -> StoredState | None:
    """The blob in ``saver`` that holds the op's state, if it was loaded from one and still serves it."""
    record = loaded_from(node.op, saver)
    if record is None or not _serves(node, record) or not saver.exists(record.blob_path):
        return None
    return StoredState(record.blob_path, record.sha256, record.size)


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
        return digests(_running_version(self.up, up_candidate))[: self.compared]

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
            self._wanted[version] = frozenset(digests(up)[: self.compared] for up in ups) if ups else None
        return self._wanted[version]

    def allows(self, up_candidate: Candidate, down_candidate: Candidate) -> bool:
        """Whether the downstream candidate accepts the upstream candidate."""
        wanted = self.wants(down_candidate)
        return wanted is None or self.key(up_candidate) in wanted

    def accepts(self, chosen: Mapping[str, Candidate]) -> bool:
        """Whether the edge is compatible with the versions chosen so far."""
        return self.allows(chosen.get(self.up.name) if self.up.is_loadable else None, chosen[self.down.name])


def _pinned(node: Node) -> bool:
    """Whether a load checks the edges into ``node``: a loadable op that will not retrain itself."""
    return node.is_loadable and not node.op.allow_version_change


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


def resolve_pinned(
    pipeline: Pipeline, op_store: OpStore, policy: str, versions: Mapping[str, str]
) -> dict[str, Candidate]:
    """The records of the given saved ``versions`` (by node name), checked like a load's choice.

    For loading exactly what an earlier load chose (a rollback, a variant of a split): each
    version must still be in the store and made by code the running code may load under
    ``policy``, and every edge is checked by the edge rule. Loadable ops that ``versions`` does
    not name are kept as they are (``None``).

    :raises NotSavedError: if a version is no longer in the store.
    :raises VersionError: naming the op whose code changed, or every incompatible edge.
    """
    check_choice("compatibility", policy, POLICIES)
    with op_store.reader() as view:
        return _Resolution(pipeline, view, policy).pinned(versions)


class _Resolution:
    """One load's choice of versions, read through one view."""

    def __init__(self, pipeline: Pipeline, view: OpStoreView, policy: str) -> None:
        self.pipeline, self.view, self.policy = pipeline, view, policy
        self.loadable = pipeline.loadable_nodes()
        self.explainer = Explainer(view, COMPARED_PARTS[policy])
        self._links: dict[tuple[str, str], list[LinkRecord]] = {}

    def _newest(self, node: Node, limit: int, after: str | None = None) -> list[OpVersionRecord]:
        """Up to ``limit`` versions the node's code may load, newest first, after ``after``."""
        code = str(type(node.op).__version__)
        return self.view.op_versions(node.name, compatible_with=code, policy=self.policy, limit=limit, before=after)

    def _latest(self) -> dict[str, Candidate]:
        """Each loadable op's newest version its code may load (``None``: none)."""
        latest: dict[str, Candidate] = {}
        for node in self.loadable:
            newest = self._newest(node, 1)
            latest[node.name] = newest[0] if newest else None
        return latest

    def staleness(self, latest: dict[str, Candidate]) -> Staleness:
        """What stops a ``"latest"`` load of the ``latest`` versions, explained (the load's errors, without raising)."""
        ops, unsaved, _ = self._unusable(latest)
        problems = [edge for edge in self._checked_edges() if not edge.accepts(latest)]
        return Staleness(self.pipeline.name, [self._stale_edge(edge, latest) for edge in problems], ops, unsaved)

    def resolve(self, strategy: str) -> dict[str, Candidate]:
        latest = self._latest()
        self._check_unusable(latest)
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

    def pinned(self, versions: Mapping[str, str]) -> dict[str, Candidate]:
        chosen: dict[str, Candidate] = {}
        for node in self.loadable:
            if node.name not in versions:
                chosen[node.name] = None
                continue
            record = self.view.op_version(node.name, versions[node.name])
            if record is None:
                msg = (
                    f"version {short(versions[node.name])} of op {node.name!r} is no longer in the op store "
                    "(was it collected?); pick another deployment, or load the pipeline's latest versions"
                )
                raise NotSavedError(msg)
            if code_key(record.code_version, self.policy) != code_key(str(type(node.op).__version__), self.policy):
                stale = self.explainer.stale_op(record, type(node.op))
                msg = (
                    f"version {short(record.version)} of op {node.name!r} was made by other code, so this code "
                    f"cannot load it ({stale.change.text}). Retrain it: run and save pipeline {stale.fix!r}"
                )
                raise VersionError(msg)
            chosen[node.name] = record
        problems = [edge for edge in self._checked_edges() if not edge.accepts(chosen)]
        if problems:
            head = (
                f"pipeline {self.pipeline.name!r} cannot serve these versions: it has "
                f"{len(problems)} incompatible edge(s):"
            )
            hint = "HINT: pick another deployment, or retrain and save the ops named above"
            raise VersionError(self._report(head, problems, chosen, hint))
        return chosen

    def _unusable(self, latest: Mapping[str, Candidate]) -> tuple[list[StaleOp], list[str], bool]:
        """The ops none of whose saved versions their code may load (pinned ones: the others
        retrain), the predict-only ops never saved, and whether any op of the pipeline was saved."""
        ops, unsaved, saved_any = [], [], False
        for node in self.loadable:
            newest = [latest[node.name]] if latest[node.name] is not None else self.view.op_versions(node.name, limit=1)
            saved_any = saved_any or bool(newest)
            if latest[node.name] is None and newest and not node.op.allow_version_change:
                ops.append(self.explainer.stale_op(newest[0], type(node.op)))
            elif not newest and node.op.requires_saved_state:
                unsaved.append(node.name)
        return ops, unsaved, saved_any

    def _check_unusable(self, latest: Mapping[str, Candidate]) -> None:
        """Raise for the ops that have no version their code may load, unless they can run without."""
        ops, unsaved, saved_any = self._unusable(latest)
        if self.loadable and not saved_any:
            names = ", ".join(repr(node.name) for node in self.loadable)
            msg = (
                f"pipeline {self.pipeline.name!r} cannot be loaded: none of its ops ({names}) was ever "
                "saved. Run a pipeline that trains them and save it with save_pipeline first"
            )
            raise NotSavedError(msg)
        if ops:
            msg = (
                f"op {ops[0].op!r} cannot be loaded: every saved version was made by other code: "
                f"{ops[0].why}. Retrain it with the current code: run and save pipeline {ops[0].fix!r}"
            )
            raise VersionError(msg)
        if unsaved:
            msg = (
                f"op {unsaved[0]!r} needs a saved version to run (it only predicts) but none was "
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
            _Edge(up, down, self._built_on(up, down), COMPARED_PARTS[self.policy])
            for up, down in self.pipeline.op_edges()
            if _pinned(down)
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

    def _stale_edge(self, edge: _Edge, chosen: Mapping[str, Candidate]) -> StaleEdge:
        """The explanation of an edge that does not accept the chosen versions."""
        down_record = chosen[edge.down.name]
        assert down_record is not None  # an edge with no downstream record accepts anything
        built_on = edge.built_on(down_record.version)[-1]
        running = str(_running_version(edge.up, chosen.get(edge.up.name) if edge.up.is_loadable else None))
        return self.explainer.stale_edge(edge.up.name, built_on, running, down_record, type(edge.up.op))

    def _report(self, head: str, problems: list[_Edge], chosen: Mapping[str, Candidate], hint: str) -> str:
        lines = [head]
        for edge in problems:
            stale = self._stale_edge(edge, chosen)
            change, up, down = stale.change, stale.upstream, stale.downstream
            lines.append(
                f"  - edge {up!r} -> {down!r}: {down!r} {short(stale.downstream_version)} was built on {up!r} "
                f"{short(change.old)}, but {up!r} is now {short(change.new)} (its {_changed_parts(change.old, change.new)} "
                f"version changed): {stale.why}. Retrain {down!r} on it: run and save pipeline {stale.fix!r}"
            )
        lines.append(hint)
        return "\n".join(lines)


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

    Each is a shallow twin of the node's op whose ``load_from`` then assigns the saved state, so
    the ops the pipeline serves now are never touched and a load that fails half-way changes
    nothing (``load`` must set its state by assignment, as every Chariots op does). An op that
    already serves the chosen trained version is kept as it is, so reloading is cheap. The
    bytes are checked against their recorded sha256 before the op reads any of them.

    :raises IntegrityError: if stored bytes are missing or do not match their sha256.
    :raises SerializationError: if an op cannot load its bytes.
    """
    loaded: dict[str, Any] = {}
    for node in pipeline.loadable_nodes():
        record = chosen.get(node.name)
        if record is None or _serves(node, record):
            continue
        where = f"op {record.op_name!r} version {short(record.version)}"
        fix = f"the saver was changed or cleaned: re-run and save pipeline {record.pipeline_name!r}"
        op = fresh_copy(node.op)
        read_state(op, record, saver, where, fix)
        loaded[node.name] = op
    return loaded


def _serves(node: Node, record: OpVersionRecord) -> bool:
    """Whether the node's op already holds the trained state ``record`` names.

    Only a version that names its state (differs from the class version) says so: a plain
    LoadableOp keeps its class version whatever its state, so it is always loaded.
    """
    return node.op.holds_trained_state and digests(node.node_version) == digests(record.version)


def why_stale(pipeline: Pipeline, op_store: OpStore, policy: str = "major") -> Staleness:
    """What stops ``pipeline`` from loading its newest saved versions (``strategy="latest"``), explained.

    The explanations a refused load gives in its ``VersionError``, without raising: every stale
    edge (which field changed, or which save retrained the upstream op, and the pipeline to run
    and save), every op none of whose saved versions its code may load, and every op that only
    predicts and was never saved. Reads through one view of the store.

    :raises ConfigError: if ``policy`` is not a known one.
    """
    check_choice("compatibility", policy, POLICIES)
    with op_store.reader() as view:
        return inspect_pipeline(pipeline, view, policy)[1]


def inspect_pipeline(pipeline: Pipeline, view: OpStoreView, policy: str) -> tuple[dict[str, Candidate], Staleness]:
    """Through ``view``: the newest version each loadable op of ``pipeline`` may load (``None``:
    none), and what stops a ``"latest"`` load of them (see :func:`why_stale`)."""
    resolution = _Resolution(pipeline, view, policy)
    latest = resolution._latest()
    return latest, resolution.staleness(latest)
