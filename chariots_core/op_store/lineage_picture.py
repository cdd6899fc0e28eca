"""The versions an op store holds, as a :class:`~chariots_core.show.Lineage` to draw.

:func:`store_lineage` reads, through one view, the newest versions of the ops asked for and the
links recorded into them, and marks what serves, what is newest, and which links are stale: a
link into an op's newest version whose upstream op has a newer version (under the policy) than
the one it names, with the explanation of :mod:`chariots_core.op_store.explain` as its reason.
``chariots dag PIPELINE --lineage`` draws it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..show.lineage import Lineage, OpVersion, VersionLink
from .explain import Explainer, short
from .records import COMPARED_PARTS, OpVersionRecord, version_key
from .store import OpStoreView

__all__ = ["store_lineage"]


def store_lineage(
    view: OpStoreView,
    op_names: Iterable[str],
    policy: str = "major",
    serving: Mapping[str, Mapping[str, str]] | None = None,
    per_op: int = 10,
) -> Lineage:
    """The lineage of ``op_names``: each op's ``per_op`` newest versions and the links into them.

    Links from plain ops (which have no saved versions) are left out; a saved op upstream of
    those asked for shows as a version "not shown".

    :param serving: pipeline name -> {op name: version string} of what each pipeline serves.
    """
    served_by: dict[tuple[str, str], list[str]] = {}
    for pipeline, served in (serving or {}).items():
        for op, version in served.items():
            served_by.setdefault((op, version_key(version)), []).append(pipeline)
    records: dict[str, list[OpVersionRecord]] = {op: view.op_versions(op, limit=per_op) for op in dict.fromkeys(op_names)}
    explainer = Explainer(view, COMPARED_PARTS[policy])
    newest = {op: history[:1] for op, history in records.items()}  # grows with the upstream ops met
    versions: list[OpVersion] = []
    links: list[VersionLink] = []
    for op, history in records.items():
        for rank, record in enumerate(history):
            pipelines = served_by.get((op, version_key(record.version)), [])
            versions.append(OpVersion(op, short(record.version), record.saved_at, record.pipeline_name, pipelines, rank == 0))
            stale: dict[str, str] = {}  # upstream op -> why this version, its op's newest, is stale behind it
            for link in view.links(op, record.version):
                if not _newest(view, newest, link.upstream_op):
                    continue  # a plain op: it has no saved versions to draw
                if rank == 0 and link.upstream_op not in stale:
                    edge = explainer.stale_behind(link.upstream_op, newest[link.upstream_op][0].version, record)
                    stale[link.upstream_op] = "" if edge is None else edge.text
                reason = stale.get(link.upstream_op, "")
                links.append(VersionLink(link.upstream_op, short(link.upstream_version), op, short(record.version), reason))
    return Lineage(versions, links)


def _newest(view: OpStoreView, newest: dict[str, list[OpVersionRecord]], op: str) -> list[OpVersionRecord]:
    if op not in newest:
        newest[op] = view.op_versions(op, limit=1)
    return newest[op]

