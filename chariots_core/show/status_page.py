"""The status page: an HTML report of what an app serves, drawn from a plain status dict.

:func:`render_status_page` turns a status dict into one self-contained page: no script, the
style inline, every DAG an inline SVG drawn here, every user string escaped. The dict is what
``app.status()`` reports (the app or the HTTP layer fills it; this module never reads a store).
Every key but ``pipelines[*].name`` is optional, unknown keys are ignored, and missing
sections are simply not shown::

    {
      "title": "iris app",                       # the page title (default "Chariots status")
      "generated_at": 1717000000.0,              # when the dict was made, epoch seconds
      "pipelines": [{
          "name": "pred_iris",
          "loaded": True,                        # whether load_pipeline succeeded
          "graph": <Picture or its dict>,        # the DAG: pipeline.picture() (.to_dict() for JSON)
          "ops": [{                              # one per loadable op
              "op": "irispca",
              "serving": "bfe909d/36d3c1a/94e72a1",   # the version it serves, or None
              "newest": "bfe909d/36d3c1a/94e72a1",    # the newest saved version, or None
              "newest_saved_at": 1717000000.0,        # when that was saved
              "newest_pipeline": "train_pca",         # which pipeline's save wrote it
              "why": None,                            # why no saved version can load, if so
              "fix": None,                            # then, the pipeline to run and save
          }],
          "stale": [{                            # edges whose downstream model is stale
              "upstream": "irispca", "downstream": "irisrf",
              "why": "irispca.model_parameters['n_components'] (MAJOR) changed 2 -> 3 since irisrf was trained on it",
              "fix": "train_iris",               # the pipeline to run and save, or None
          }],
      }],
      "jobs": [{                                 # recent jobs, newest first
          "job_id": "3f2a...", "pipeline": "train_iris", "status": "failed",
          "submitted_at": 1717000000.0, "updated_at": 1717000003.5, "error": "ValueError in irispca: ...",
      }],
      "deployments": [{                          # recent changes of what a pipeline serves
          "pipeline": "pred_iris", "at": 1717000000.0, "kind": "load",
          "versions": {"irispca": "bfe909d/36d3c1a/94e72a1"}, "note": "",
      }],
      "lineage": <Lineage or its dict>,          # versions and links: Lineage(...) (.to_dict() for JSON)
    }

In the DAGs, ops serving an older version than the newest saved one are marked ``behind``, and
each stale edge is drawn red and dashed, with its why as the tooltip (also listed as text).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import Any

import attrs

from .html import html_document, html_text
from .lineage import Lineage
from .picture import Picture, strict_converter, structure
from .svg import to_svg

__all__ = ["render_status_page", "PageStatus"]

_OPS = ("op", "loadable")


@attrs.frozen
class OpRow:
    """What one loadable op of a pipeline serves, and the newest version saved."""

    op: str
    serving: str | None = None
    newest: str | None = None
    newest_saved_at: float | None = None
    newest_pipeline: str | None = None
    why: str | None = None
    fix: str | None = None


@attrs.frozen
class StaleEdge:
    """A model built on another version of an op upstream than the one it would run with."""

    upstream: str
    downstream: str
    why: str = ""
    fix: str | None = None


@attrs.frozen
class PipelineStatus:
    """One pipeline's section of the page."""

    name: str
    loaded: bool | None = None
    graph: Picture | None = None
    ops: tuple[OpRow, ...] = ()
    stale: tuple[StaleEdge, ...] = ()


@attrs.frozen
class JobRow:
    """One job of the recent jobs table."""

    job_id: str
    pipeline: str
    status: str
    submitted_at: float | None = None
    updated_at: float | None = None
    error: str | None = None


@attrs.frozen
class DeploymentRow:
    """One change of what a pipeline serves."""

    pipeline: str
    at: float
    kind: str = "load"
    versions: dict[str, str] = attrs.Factory(dict)
    note: str = ""


@attrs.frozen
class PageStatus:
    """The status dict, checked (see the module docstring for its shape)."""

    pipelines: tuple[PipelineStatus, ...] = ()
    title: str = "Chariots status"
    generated_at: float | None = None
    jobs: tuple[JobRow, ...] = ()
    deployments: tuple[DeploymentRow, ...] = ()
    lineage: Lineage | None = None


_converter = strict_converter()
# Graphs and lineages come as objects from the app in process, as dicts after a JSON trip.
_converter.register_structure_hook(Picture, lambda data, _: data if isinstance(data, Picture) else Picture.from_dict(data))
_converter.register_structure_hook(Lineage, lambda data, _: data if isinstance(data, Lineage) else Lineage.from_dict(data))


def render_status_page(status: Mapping[str, Any]) -> str:
    """The status page for ``status`` (a dict shaped as in the module docstring), as HTML.

    :raises PictureError: naming each key of ``status`` that has the wrong type.
    """
    page = structure(_converter, status, PageStatus, "a status dict shaped as chariots_core.show.status_page documents")
    parts = [f"<h1>{html_text(page.title)}</h1>"]
    summary = [f"{len(page.pipelines)} pipeline{'s' if len(page.pipelines) != 1 else ''}"]
    stale_count = sum(len(pipeline.stale) for pipeline in page.pipelines)
    if stale_count:
        summary.append(f'<span class="bad">{stale_count} stale edge{"s" if stale_count != 1 else ""}</span>')
    if page.generated_at is not None:
        summary.append(f"as of {_time(page.generated_at)}")
    parts.append(f'<p class="muted">{" · ".join(summary)} · read-only; reload for fresh data</p>')
    if page.pipelines:
        links = " ".join(f'<a href="#pipeline-{index}">{html_text(p.name)}</a>' for index, p in enumerate(page.pipelines))
        parts.append(f"<nav>{links}</nav>")
    parts += [_pipeline_section(index, pipeline) for index, pipeline in enumerate(page.pipelines)]
    if page.deployments:
        parts.append(_deployments(page.deployments))
    if page.jobs:
        parts.append(_jobs(page.jobs))
    if page.lineage is not None and page.lineage.versions:
        parts.append('<h2>Lineage of versions</h2><div class="picture">' + _svg(page.lineage.picture()) + "</div>")
    return html_document(page.title, "\n".join(parts))


def _pipeline_section(index: int, pipeline: PipelineStatus) -> str:
    state = ""
    if pipeline.loaded is not None:
        state = ' <span class="ok">loaded</span>' if pipeline.loaded else ' <span class="muted">not loaded</span>'
    parts = [f'<section class="pipeline" id="pipeline-{index}"><h2>{html_text(pipeline.name)}{state}</h2>']
    if pipeline.graph is not None:
        parts.append(f'<div class="picture">{_svg(_marked(pipeline))}</div>')
    if pipeline.ops:
        rows = []
        for op in pipeline.ops:
            behind = op.serving is not None and op.newest is not None and op.serving != op.newest
            state = '<span class="warn">behind the newest</span>' if behind else ('<span class="ok">newest</span>' if op.serving and op.serving == op.newest else "")
            if op.why:
                state = f'<span class="bad">cannot load</span>: {html_text(op.why)}.{_fix(op.fix)}'
            newest_by = f"{html_text(op.newest_pipeline)}" if op.newest_pipeline else ""
            rows.append(
                f"<tr><td class=mono>{html_text(op.op)}</td><td class=mono>{_or_dash(op.serving)}</td>"
                f"<td class=mono>{_or_dash(op.newest)}</td><td>{newest_by}</td>"
                f"<td>{_time(op.newest_saved_at) if op.newest_saved_at is not None else ''}</td><td>{state}</td></tr>"
            )
        parts.append(
            "<table><thead><tr><th>op</th><th>serving</th><th>newest saved</th><th>saved by</th>"
            f"<th>saved at</th><th></th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        )
    if pipeline.stale:
        items = []
        for edge in pipeline.stale:
            items.append(
                f'<li><span class="bad mono">{html_text(edge.upstream)} → {html_text(edge.downstream)}</span>: '
                f"{html_text(edge.why)}.{_fix(edge.fix)}</li>"
            )
        parts.append(f'<h3 class="bad">Stale</h3><ul class="stale">{"".join(items)}</ul>')
    parts.append("</section>")
    return "\n".join(parts)


def _marked(pipeline: PipelineStatus) -> Picture:
    """The pipeline's DAG with its ops marked ``behind`` and its stale edges marked ``stale``."""
    picture = pipeline.graph
    assert picture is not None
    behind = {op.op for op in pipeline.ops if op.serving and op.newest and op.serving != op.newest}
    stale_edges: dict[int, list[str]] = {}
    for edge in pipeline.stale:
        for index in _edges_between(picture, edge.upstream, edge.downstream):
            stale_edges.setdefault(index, []).append(edge.why)
    stale_targets = {edge.downstream for edge in pipeline.stale}
    nodes = [
        attrs.evolve(node, marks=(*node.marks, *(["behind"] if node.name in behind else []), *(["stale"] if node.name in stale_targets else [])))
        if node.kind in _OPS and (node.name in behind or node.name in stale_targets)
        else node
        for node in picture.nodes
    ]
    edges = [
        attrs.evolve(edge, marks=(*edge.marks, "stale"), tooltip="\n".join(stale_edges[index])) if index in stale_edges else edge
        for index, edge in enumerate(picture.edges)
    ]
    return attrs.evolve(picture, nodes=nodes, edges=edges)


def _edges_between(picture: Picture, upstream: str, downstream: str) -> list[int]:
    """The edges on the paths from op ``upstream`` to op ``downstream`` that pass no other op."""
    kinds = {node.id: node for node in picture.nodes}
    starts = {node.id for node in picture.nodes if node.name == upstream and node.kind in _OPS}
    ends = {node.id for node in picture.nodes if node.name == downstream and node.kind in _OPS}
    outgoing: dict[str, list[int]] = {}
    incoming: dict[str, list[int]] = {}
    for index, edge in enumerate(picture.edges):
        outgoing.setdefault(edge.source, []).append(index)
        incoming.setdefault(edge.target, []).append(index)

    def reach(seeds: set[str], links: dict[str, list[int]], far_end: Any) -> set[str]:
        seen, stack = set(seeds), list(seeds)
        while stack:
            for index in links.get(stack.pop(), []):
                other = far_end(picture.edges[index])
                # walk through data nodes and pipeline input/output boxes, never through another op
                if other not in seen and (kinds[other].kind not in _OPS or other in starts | ends):
                    seen.add(other)
                    if kinds[other].kind not in _OPS:
                        stack.append(other)
        return seen

    from_up = reach(starts, outgoing, lambda edge: edge.target)
    to_down = reach(ends, incoming, lambda edge: edge.source)
    return [
        index
        for index, edge in enumerate(picture.edges)
        if edge.source in from_up and edge.target in to_down and (edge.source in starts or kinds[edge.source].kind not in _OPS)
    ]


def _deployments(deployments: tuple[DeploymentRow, ...]) -> str:
    rows = "".join(
        f"<tr><td>{_time(row.at)}</td><td>{html_text(row.pipeline)}</td><td>{html_text(row.kind)}</td>"
        f"<td class=mono>{'<br>'.join(f'{html_text(op)} {html_text(version)}' for op, version in row.versions.items())}</td>"
        f"<td>{html_text(row.note)}</td></tr>"
        for row in deployments
    )
    return (
        "<h2>Recent deployments</h2><table><thead><tr><th>at</th><th>pipeline</th><th>change</th><th>versions</th>"
        f"<th>note</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _jobs(jobs: tuple[JobRow, ...]) -> str:
    colours = {"done": "ok", "failed": "bad", "running": "warn", "queued": "muted"}
    rows = "".join(
        f"<tr><td class=mono>{html_text(job.job_id[:12])}</td><td>{html_text(job.pipeline)}</td>"
        f'<td class="{colours.get(job.status, "")}">{html_text(job.status)}</td>'
        f"<td>{_time(job.submitted_at) if job.submitted_at is not None else ''}</td>"
        f"<td>{_time(job.updated_at) if job.updated_at is not None else ''}</td><td>{html_text(job.error or '')}</td></tr>"
        for job in jobs
    )
    return (
        "<h2>Recent jobs</h2><table><thead><tr><th>job</th><th>pipeline</th><th>status</th><th>submitted</th>"
        f"<th>updated</th><th>error</th></tr></thead><tbody>{rows}</tbody></table>"
    )


@functools.lru_cache(maxsize=512)
def _svg(picture: Picture) -> str:
    """Pictures are immutable values: a page reloaded with the same DAGs lays none out again."""
    return to_svg(picture, style=False)


def _fix(pipeline: str | None) -> str:
    return f" Run and save <code>{html_text(pipeline)}</code>." if pipeline else ""


def _or_dash(text: str | None) -> str:
    return html_text(text) if text else '<span class="muted">–</span>'


def _time(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))
