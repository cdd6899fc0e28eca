"""The commands that explain and show: ``chariots status`` and ``chariots dag``.

::

    chariots status                           # every pipeline: served, newest saved, stale edges (why, fix), jobs
    chariots status pred_iris --json          # one pipeline, as JSON
    chariots status --url http://host:port    # what a running server says (GET /status)
    chariots dag train_iris                   # the pipeline as SVG on stdout
    chariots dag train_iris pred_iris --format mermaid --output iris.mmd
    chariots dag pred_iris --lineage          # the versions saved in the store, and what was built on what

``status`` answers from the store alone (like ``jobs`` and ``versions``): each pipeline as its last
save or the command line's holding store knows it (see
:func:`chariots_core.serving.status.store_status`). Only without pipeline names does it import the
project, to learn them. ``dag`` imports the project to draw a pipeline; ``dag --lineage`` reads
the store alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from typing import Any

from ..errors import ChariotsError, UnknownPipelineError
from ..op_store.lineage_picture import store_lineage
from ..op_store.records import SnapshotRecord
from ..serving.status import store_status
from ..show.lineage import Lineage
from ..show.render import FORMATS, as_picture, render
from .cli import _config, _current, _last_snapshot, _open_store, _open_target, _table, _time

__all__ = ["add_commands", "status_text"]


def add_commands(commands: Any, configured: argparse.ArgumentParser, remote: argparse.ArgumentParser) -> None:
    """Add ``status`` and ``dag`` to the ``chariots`` subcommands."""
    status = commands.add_parser(
        "status",
        parents=[remote],
        help="what each pipeline serves, its newest saved versions, stale edges and why, jobs",
    )
    status.add_argument(
        "pipelines", metavar="PIPELINE", nargs="*", help="only these (default: the project's pipelines)"
    )
    status.add_argument("--limit", type=int, default=10, metavar="N", help="list the N newest jobs (default: 10)")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(handler=_cmd_status)

    dag = commands.add_parser(
        "dag", parents=[configured], help="draw pipelines, or the lineage of their saved versions"
    )
    dag.add_argument("pipelines", metavar="PIPELINE", nargs="+", help="the pipeline's name (several: one picture)")
    dag.add_argument("--format", choices=list(FORMATS), default="svg", help="the drawing's format (default: svg)")
    dag.add_argument(
        "--lineage", action="store_true", help="draw the versions of the pipeline's ops saved in the store instead"
    )
    dag.add_argument(
        "--versions", type=int, default=10, metavar="N", help="with --lineage: the N newest versions per op"
    )
    dag.add_argument("--output", metavar="FILE", help="write to FILE instead of stdout")
    dag.set_defaults(handler=_cmd_dag)


# -- status ------------------------------------------------------------------------------------
def _cmd_status(args: argparse.Namespace) -> None:
    if args.limit < 0:
        raise ChariotsError(f"--limit must be a number >= 0 (got {args.limit})")
    if args.url:
        with _open_target(args) as target:
            status = target.api.status(args.limit)
        if args.pipelines:
            status["pipelines"] = [pipeline for pipeline in status["pipelines"] if pipeline["name"] in args.pipelines]
        print(json.dumps(status, indent=2, ensure_ascii=False) if args.json else status_text(status, held=False))
        return
    names = args.pipelines or [pipeline.name for pipeline in _config(args).load_pipelines()]
    with _open_store(args, holding=True) as holding, _open_store(args) as app:
        jobs = [] if app.job_store is None else [_current(app, job) for job in app.job_store.jobs(limit=args.limit)]
        with holding.op_store.reader() as held, app.op_store.reader() as view:
            status = store_status(view, names, app.compatibility, held, jobs, args.limit)
    print(json.dumps(status, indent=2, ensure_ascii=False) if args.json else status_text(status, held=True))


def status_text(status: dict[str, Any], held: bool) -> str:
    """A status dict (``app.status()`` or the store's) as the command prints it.

    :param held: whether "loaded" means held by the command line (a store's status) rather
        than loaded by a server.
    """
    lines = []
    for pipeline in status["pipelines"]:
        lines.append(f"pipeline {pipeline['name']!r} {_state(pipeline, held)}")
        if pipeline["ops"]:
            rows = [
                [
                    op["op"],
                    op["serving"] or "-",
                    op["newest"] or "-",
                    op["newest_pipeline"] or "-",
                    _time_or_dash(op["newest_saved_at"]),
                ]
                for op in pipeline["ops"]
            ]
            lines += _indented(_table(["OP", "SERVING", "NEWEST SAVED", "SAVED BY", "SAVED AT"], rows))
        for op in pipeline["ops"]:
            if op.get("why"):
                fix = f"; run and save pipeline {op['fix']!r}" if op.get("fix") else ""
                lines.append(f"  cannot load {op['op']!r}: {op['why']}{fix}")
        for edge in pipeline["stale"]:
            fix = f"; run and save pipeline {edge['fix']!r}" if edge.get("fix") else ""
            lines.append(f"  stale {edge['upstream']!r} -> {edge['downstream']!r}: {edge['why']}{fix}")
    if status.get("jobs"):
        lines.append("jobs, newest first:")
        rows = [
            [job["job_id"], job["pipeline"], job["status"], _time(job["submitted_at"]), job["error"] or "-"]
            for job in status["jobs"]
        ]
        lines += _indented(_table(["JOB", "PIPELINE", "STATUS", "SUBMITTED", "ERROR"], rows))
    if status.get("deployments"):
        lines.append("deployments, newest first:")
        rows = [
            [row["deployment_id"], row["pipeline"], row["kind"], row["outcome"], _time(row["at"]), row["note"] or "-"]
            for row in status["deployments"]
        ]
        lines += _indented(_table(["DEPLOYMENT", "PIPELINE", "KIND", "OUTCOME", "AT", "NOTE"], rows))
    return "\n".join(lines) if lines else "no pipelines"


def _indented(table: str) -> list[str]:
    return textwrap.indent(table, "  ").splitlines()


def _time_or_dash(timestamp: float | None) -> str:
    return _time(timestamp) if timestamp else "-"


def _state(pipeline: dict[str, Any], held: bool) -> str:
    stale = f"; {len(pipeline['stale'])} stale edge(s)" if pipeline["stale"] else ""
    if held:
        if not pipeline.get("saved", True):
            return f"- never saved nor held: run chariots call, load or save {pipeline['name']}"
        where = (
            "served as held by the last call or load"
            if pipeline["loaded"]
            else f"as saved at {_time(pipeline['saved_at'])}"
        )
        return f"- {where}{stale}"
    return f"- {'loaded' if pipeline['loaded'] else 'not loaded'}{stale}"


# -- dag ---------------------------------------------------------------------------------------
def _cmd_dag(args: argparse.Namespace) -> None:
    if args.versions <= 0:
        raise ChariotsError(f"--versions must be a number > 0 (got {args.versions})")
    title = ", ".join(args.pipelines)
    if args.lineage:
        subject = _lineage(args).picture(f"lineage of {title}", max_versions_per_op=None)
    else:
        pipelines = {pipeline.name: pipeline for pipeline in _config(args).load_pipelines()}
        unknown = [name for name in args.pipelines if name not in pipelines]
        if unknown:
            known = ", ".join(map(repr, pipelines)) or "none"
            msg = f"the project has no pipeline {', '.join(map(repr, unknown))}; its pipelines: {known}"
            raise UnknownPipelineError(msg)
        subject = as_picture([pipelines[name] for name in args.pipelines], title)
    text = render(subject, args.format)
    if args.output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    try:
        with open(args.output, "w", encoding="utf-8") as stream:
            stream.write(text)
    except OSError as exc:
        raise ChariotsError(f"cannot write --output {args.output!r}: {exc.strerror}") from exc
    print(f"wrote the {args.format} of {subject.title} to {args.output}")


def _lineage(args: argparse.Namespace) -> Lineage:
    """The lineage of the pipelines' ops, from the store alone (their held or last saved snapshots)."""
    held: dict[str, SnapshotRecord] = {}
    with _open_store(args, holding=True) as holding:
        for name in args.pipelines:
            if (snapshot := _last_snapshot(holding.op_store, name)) is not None:
                held[name] = snapshot
    with _open_store(args) as app:
        ops: dict[str, None] = {}
        for name in args.pipelines:
            snapshot = held.get(name) or _last_snapshot(app.op_store, name)
            if snapshot is None:
                msg = (
                    f"pipeline {name!r} was never saved nor held, so the store cannot tell its ops: "
                    f"run chariots save {name} (or chariots load {name}) first"
                )
                raise ChariotsError(msg)
            ops.update(dict.fromkeys(snapshot.versions))
        serving = {name: snapshot.versions for name, snapshot in held.items()}
        with app.op_store.reader() as view:
            return store_lineage(view, ops, app.compatibility, serving, args.versions)
