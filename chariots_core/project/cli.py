"""The ``chariots`` command: create a project, serve it, call, save and load its pipelines.

::

    chariots new iris                                  # a ready project in ./iris
    chariots call train_iris                           # progress on stderr, what happened on stdout
    chariots save train_iris
    chariots load pred_iris [--strategy latest_compatible]
    chariots call pred_iris --input '[[5.1, 3.5, 1.4, 0.2]]'   # the value, as JSON
    chariots versions pred_iris                        # served and saved versions, as a table
    chariots jobs                                      # asynchronous jobs, as a table
    chariots status                                    # served and newest versions, stale edges and why
    chariots dag train_iris --format svg               # a picture of a pipeline (--lineage: of its versions)
    chariots gc [--older-than 1h] [--dry-run]          # remove what interrupted saves left behind
    chariots serve                                     # the app over HTTP (waitress)
    chariots -v ...                                    # log what happens (-vv: debug)

Commands read the configuration given by ``--config``, else the first ``chariots.toml``,
``chariots.yaml`` or ``pyproject.toml`` with ``[tool.chariots]`` found from the current
directory upwards (see :mod:`chariots_core.project.config`). They work in-process on the configured
store or, with ``--url``, against a running server through the ``client`` backend
(``chariots_waitress.PipelinesClient``).

In-process, each command is a new process that behaves like the next call to one long-lived
app: what a call trained and what a load chose are held for the next command through the op
store's own saves (see :mod:`chariots_core.project.held`). ``chariots serve`` starts a server
with what the store holds, like any new app: load its pipelines with
``chariots load PIPELINE --url URL``.

``jobs``, ``versions``, ``status PIPELINE...`` and ``dag --lineage`` answer from the store alone:
they never import the project's code (its ops may import heavy libraries), so they start fast.
``status`` and ``dag`` live in :mod:`chariots_core.project.cli_show`.

Why argparse and not click: the core depends on attrs, cattrs and dill only, and an embeddable
library should not add a dependency to every install for one console script. The command is a
flat set of subcommands with a few options each, which argparse covers fully (help on every
subcommand, types, mutually exclusive options) in the standard library.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import IO, Any

from ..errors import ChariotsError, NotFittedError, WorkerError, describe_failure
from ..log import get_logger, log_to_stderr
from ..op_store.lineage import STRATEGIES
from ..op_store.records import SnapshotRecord
from ..pipelines.callbacks import PipelineCallback
from ..registry import url_scheme
from ..savers import DEBRIS_AGE
from ..serving.jsonsafe import to_jsonable
from ..serving.status import error_text
from ..serving.workers import JobStatus
from ..versioning import Version
from .config import ChariotsConfig
from .held import HeldState, holding_location

__all__ = ["main", "build_parser", "ProgressCallback"]

_FINISHED = (JobStatus.done, JobStatus.failed)
_POLL_SECONDS = 0.1
_log = get_logger("cli")


class ProgressCallback(PipelineCallback):
    """Writes one line per node to ``stream`` as a pipeline runs: which node, and how long it took."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._runs: dict[str, tuple[int, int, float]] = {}  # pipeline -> (done, total, started)
        self._node_started = 0.0
        self._line_open = False

    def before_execution(self, pipeline: Any, args: Any) -> None:
        self._runs[pipeline.name] = (0, len(pipeline.ordered_nodes), time.perf_counter())

    def before_node_execution(self, pipeline: Any, node: Any, args: list[Any]) -> None:
        done, total, _ = self._runs[pipeline.name]
        self._write(f"[{pipeline.name}] {done + 1}/{total} {node.name} ...")
        self._node_started = time.perf_counter()
        self._line_open = True

    def after_node_execution(self, pipeline: Any, node: Any, args: list[Any], output: Any) -> None:
        done, total, started = self._runs[pipeline.name]
        self._runs[pipeline.name] = (done + 1, total, started)
        self._write(f" done in {time.perf_counter() - self._node_started:.2f}s\n")
        self._line_open = False

    def end_failed_line(self) -> None:
        """End the line of a node that raised, so the error is printed on a line of its own."""
        if self._line_open:
            self._write(" failed\n")
            self._line_open = False

    def after_execution(self, pipeline: Any, args: Any, output: Any) -> None:
        _, total, started = self._runs.pop(pipeline.name)
        self._write(f"[{pipeline.name}] {total} node(s) ran in {time.perf_counter() - started:.2f}s\n")

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()


# -- where commands run: an in-process app or a remote server --------------------------------
class _Target:
    """What a command talks to: ``api`` is a Chariots app or a PipelinesClient (same methods).

    ``held`` keeps an in-process app's state between commands; ``None`` against a server.
    """

    def __init__(self, api: Any, held: HeldState | None) -> None:
        self.api = api
        self.held = held

    @property
    def local(self) -> bool:
        return self.held is not None

    def restore(self, pipeline_name: str) -> None:
        if self.held is not None:
            self.held.restore(pipeline_name)

    def hold(self, pipeline_name: str) -> None:
        if self.held is not None:
            self.held.hold(pipeline_name)


@contextlib.contextmanager
def _open_target(args: argparse.Namespace, progress: bool = False) -> Iterator[_Target]:
    if getattr(args, "url", None):
        client = ChariotsConfig().get_client(args.url)  # the URL says everything the client needs
        try:
            yield _Target(client, None)
        finally:
            client.close()
        return
    config = _config(args)
    pipelines = config.load_pipelines()
    callback = ProgressCallback(sys.stderr)
    if progress:
        for pipeline in pipelines:
            pipeline.pipeline_callbacks.append(callback)
    with config.get_app(pipelines) as app:
        held = HeldState(config, app)
        try:
            yield _Target(app, held)
        finally:
            callback.end_failed_line()
            held.close()


@contextlib.contextmanager
def _open_store(args: argparse.Namespace, holding: bool = False) -> Iterator[Any]:
    """An app serving nothing, on the configured store (or the holding store): imports no project code."""
    config = _config(args)
    with config.get_store_app(*holding_location(config)) if holding else config.get_store_app() as app:
        yield app


def _config(args: argparse.Namespace) -> ChariotsConfig:
    return ChariotsConfig(args.config) if args.config else ChariotsConfig.discover()


# -- commands ------------------------------------------------------------------------------
def _cmd_new(args: argparse.Namespace) -> None:
    from .templates import write_project  # only `new` reads the templates

    target = write_project(args.name, args.directory)
    print(f"created project {args.name!r} in {target}")
    print(f"next: cd {target} && pip install -e '.[test]' && pytest, then chariots call train_iris")


def _cmd_serve(args: argparse.Namespace) -> None:
    config = _config(args)
    with config.get_app() as app:
        host = args.host or config.pipelines.bind_host
        port = args.port or config.pipelines.port
        pipelines = ", ".join(app.available_pipelines())
        print(f"chariots: serving {pipelines} on http://{host}:{port} (Ctrl+C to stop)", file=sys.stderr)
        config.serve(app, host=host, port=port)


def _cmd_call(args: argparse.Namespace) -> None:
    pipeline_input = _read_input(args)
    with _open_target(args, progress=not args.quiet) as target:
        target.restore(args.pipeline)
        before = target.api.pipeline_versions(args.pipeline)
        response = target.api.call_pipeline(args.pipeline, pipeline_input, use_worker=args.use_worker)
        if response.job_id is not None:
            print(f"chariots: job {response.job_id} {response.job_status.value}", file=sys.stderr)
            if not (target.local or args.wait):
                print(json.dumps(response.to_json()))
                return
            response = _wait(target.api, response.job_id, response.job_status)
        after = target.api.pipeline_versions(args.pipeline)
        trained = [name for name, version in after.items() if version != before.get(name)]
        if trained:
            target.hold(args.pipeline)
        if response.value is not None:
            print(json.dumps(to_jsonable(response.value)))
            return
        print(_what_happened(args.pipeline, trained, before, after, target.local))


def _what_happened(
    pipeline: str, trained: list[str], before: dict[str, Version], after: dict[str, Version], local: bool
) -> str:
    """The line ``chariots call`` prints for a pipeline that returns nothing (a training one)."""
    if not trained:
        return f"pipeline {pipeline!r} ran and returned nothing"
    models = ", ".join(f"{name} ({_change(before.get(name), after[name])})" for name in trained)
    where = "held for the next command" if local else "held by the server"
    return f"pipeline {pipeline!r} trained {models}; not saved yet ({where}): run chariots save {pipeline}"


def _wait(api: Any, job_id: str, status: JobStatus | None) -> Any:
    """Poll a job until it is finished, reporting each change of its ``status`` on stderr."""
    while (response := api.fetch_job(job_id)).job_status not in _FINISHED:
        if response.job_status is not status:
            status = response.job_status
            print(f"chariots: job {job_id} {status.value}", file=sys.stderr)
        time.sleep(_POLL_SECONDS)
    if response.job_status is JobStatus.failed:
        error = response.error or {}
        raise WorkerError(f"job {job_id} failed: {error.get('type', 'error')}: {error.get('message', '')}")
    return response


def _cmd_save(args: argparse.Namespace) -> None:
    with _open_target(args) as target:
        target.restore(args.pipeline)
        try:
            target.api.save_pipeline(args.pipeline)
        except NotFittedError as exc:
            msg = (
                f"nothing trained to save in pipeline {args.pipeline!r}: its models were neither "
                f"fitted nor loaded; run chariots call {args.pipeline} first"
            )
            raise NotFittedError(msg) from exc
        _log.info("saved pipeline %r", args.pipeline)
        print(f"saved pipeline {args.pipeline!r}")
        _print_versions(target.api.pipeline_versions(args.pipeline))


def _cmd_load(args: argparse.Namespace) -> None:
    with _open_target(args) as target:
        target.restore(args.pipeline)
        chosen = target.api.load_pipeline(args.pipeline, strategy=args.strategy)
        target.hold(args.pipeline)
        _log.info("loaded pipeline %r (%s)", args.pipeline, args.strategy)
        print(f"loaded pipeline {args.pipeline!r}")
        _print_versions(chosen)


def _cmd_versions(args: argparse.Namespace) -> None:
    headers = ["NODE", "MAJOR", "MINOR", "PATCH", "SAVED", "LATEST SAVED"]
    if args.url:
        with _open_target(args) as target:
            versions = target.api.pipeline_versions(args.pipeline)
        print(_table(headers, [[name, *_parts(version), "-", "-"] for name, version in versions.items()]))
        return
    with _open_store(args, holding=True) as holding:
        held = _last_snapshot(holding.op_store, args.pipeline)
    with _open_store(args) as app:
        snapshot = held or _last_snapshot(app.op_store, args.pipeline)
        if snapshot is None:
            print(
                f"pipeline {args.pipeline!r} has no held nor saved versions yet: run chariots call, "
                f"load or save {args.pipeline} first"
            )
            return
        source = "served (held by the last call or load)" if held else "of its last save (not loaded)"
        print(f"chariots: versions of pipeline {args.pipeline!r} {source}", file=sys.stderr)
        rows = []
        with app.op_store.reader() as view:
            for name, text in snapshot.versions.items():
                # A count, not the history: past _COUNTED_VERSIONS the table says "N+".
                saved = view.op_versions(name, limit=_COUNTED_VERSIONS + 1)
                count = f"{_COUNTED_VERSIONS}+" if len(saved) > _COUNTED_VERSIONS else str(len(saved))
                latest = _time(saved[0].saved_at) if saved else "-"
                rows.append([name, *_parts(Version.parse(text)), count, latest])
    print(_table(headers, rows))


_COUNTED_VERSIONS = 1000


def _last_snapshot(op_store: Any, pipeline_name: str) -> SnapshotRecord | None:
    """What ``pipeline_name`` ran with at its newest save in ``op_store`` (``None``: never saved)."""
    entries = op_store.journal(SnapshotRecord, pipeline_name, limit=1)
    return entries[0].record if entries else None


def _cmd_jobs(args: argparse.Namespace) -> None:
    if args.url:
        if not args.job_ids:
            raise ChariotsError("with --url, give the ids of the jobs to show: chariots jobs JOB_ID ... --url URL")
        with _open_target(args) as target:
            responses = [target.api.fetch_job(job_id) for job_id in args.job_ids]
        print(_table(["JOB", "STATUS", "ERROR"], [[r.job_id, r.job_status.value, _error_text(r.error)] for r in responses]))
        return
    with _open_store(args) as app:
        if args.job_ids:
            jobs = [_current(app, _job(app, job_id)) for job_id in args.job_ids]
            print(_table(["JOB", "STATUS", "ERROR"], [[job.job_id, job.status, _error_text(job.error)] for job in jobs]))
            return
        headers = ["JOB", "PIPELINE", "STATUS", "SUBMITTED", "UPDATED", "WORKER", "ERROR"]
        rows = [
            [job.job_id, job.pipeline_name, job.status, _time(job.submitted_at), _time(job.updated_at),
             job.worker or "-", _error_text(job.error)]
            for job in (_current(app, record) for record in app.job_store.jobs())
        ]
    print(_table(headers, rows) if rows else "no jobs")


def _job(app: Any, job_id: str) -> Any:
    """The record of ``job_id`` (``fetch_job`` raises the app's own error for an unknown id)."""
    record = app.job_store.get_job(job_id)
    if record is None:
        app.fetch_job(job_id)
    return record


def _current(app: Any, job: Any) -> Any:
    """The job's record once fetched: fetching an unfinished job whose app died marks it failed."""
    if JobStatus(job.status) in _FINISHED:
        return job
    app.fetch_job(job.job_id)
    return app.job_store.get_job(job.job_id)


def _cmd_gc(args: argparse.Namespace) -> None:
    config = _config(args)
    path, store = holding_location(config)
    with config.get_app([]) as app, contextlib.ExitStack() as holding:
        # The holding store names blobs of the same saver: they stay (if it was ever made).
        held = [] if not _exists(path) else [holding.enter_context(config.get_store_app(path, store)).op_store]
        report = app.collect_garbage(older_than=args.older_than, dry_run=args.dry_run, also_referenced_by=held)
    for removed in report.removed:
        print(removed)
    verb = "would remove" if report.dry_run else "removed"
    print(
        f"chariots: {verb} {len(report.blobs)} unreferenced blob(s) ({report.freed_bytes} bytes) and "
        f"{len(report.debris)} piece(s) of debris of interrupted writes",
        file=sys.stderr,
    )


def _exists(path: str) -> bool:
    """Whether a local path exists (a URL is assumed to: its store answers for itself)."""
    return url_scheme(path) is not None or os.path.exists(path)


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``24h`` or ``7d``."""
    number, unit = (text[:-1], text[-1]) if text[-1:] in _DURATION_UNITS else (text, "s")
    try:
        seconds = float(number) * _DURATION_UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration ({text!r}); give seconds or e.g. 30m, 24h, 7d") from None
    if not seconds >= 0:
        raise argparse.ArgumentTypeError(f"a duration must be >= 0 (got {text!r})")
    return seconds


def _cmd_pipelines(args: argparse.Namespace) -> None:
    with _open_target(args) as target:
        for name in target.api.available_pipelines():
            print(name)


# -- input and output ----------------------------------------------------------------------
def _read_input(args: argparse.Namespace) -> Any:
    if args.input_file is None:
        return args.input
    try:
        with open(args.input_file, encoding="utf-8") as stream:
            return json.load(stream)
    except OSError as exc:
        raise ChariotsError(f"cannot read --input-file {args.input_file!r}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ChariotsError(f"--input-file {args.input_file!r} is not valid JSON: {exc}") from exc


def _json_argument(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}); quote it, e.g. --input '[[1, 2, 3, 4]]'") from exc


def _print_versions(versions: dict[str, Version]) -> None:
    rows = [[name, *_parts(version)] for name, version in versions.items()]
    print(_table(["NODE", "MAJOR", "MINOR", "PATCH"], rows) if rows else "no versioned ops")


def _parts(version: Version) -> list[str]:
    return [version.major[:7], version.minor[:7], version.patch[:7]]


def _change(before: Version | None, after: Version) -> str:
    """The subversions that differ, e.g. ``patch 3f2a1b0``: what a training changed."""
    old = _parts(before) if before is not None else ["", "", ""]
    changed = [f"{part} {new}" for part, was, new in zip(("major", "minor", "patch"), old, _parts(after)) if was != new]
    return ", ".join(changed)


def _time(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _error_text(error: dict[str, str] | None) -> str:
    return error_text(error)[:100] if error else "-"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [headers, *rows]]
    return "\n".join(lines)


# -- the parser ----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The ``chariots`` argument parser, with one subcommand per action."""
    parser = argparse.ArgumentParser(
        prog="chariots",
        description="Create, serve, train, save and load versioned Chariots pipelines.",
        epilog="Run 'chariots COMMAND --help' for a command's options.",
    )
    parser.add_argument("--traceback", action="store_true", help="show the full traceback of an error")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log what Chariots does on stderr (-vv: debug details)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    configured = argparse.ArgumentParser(add_help=False)
    configured.add_argument(
        "--config", metavar="FILE", help="configuration file (default: chariots.toml, chariots.yaml or "
        "pyproject.toml [tool.chariots], looked for from the current directory up)"
    )
    remote = argparse.ArgumentParser(add_help=False, parents=[configured])
    remote.add_argument(
        "--url", help="work against the server at URL (e.g. http://127.0.0.1:8080) instead of in-process"
    )
    named = argparse.ArgumentParser(add_help=False, parents=[remote])
    named.add_argument("pipeline", metavar="PIPELINE", help="the pipeline's name")

    new = commands.add_parser("new", help="create a ready project (iris pipelines, tests, config)")
    new.add_argument("name", metavar="NAME", nargs="?", default="iris", help="the project's name (default: iris)")
    new.add_argument("--directory", metavar="DIR", help="where to write it (default: ./NAME); must be new or empty")
    new.set_defaults(handler=_cmd_new)

    serve = commands.add_parser("serve", parents=[configured], help="serve the configured app over HTTP (waitress)")
    serve.add_argument("--host", help="interface to listen on (default: the configuration's)")
    serve.add_argument("--port", type=int, help="port to listen on (default: the configuration's)")
    serve.set_defaults(handler=_cmd_serve)

    call = commands.add_parser("call", parents=[named], help="run a pipeline and print its output as JSON")
    source = call.add_mutually_exclusive_group()
    source.add_argument("--input", type=_json_argument, metavar="JSON", help="the pipeline input, as JSON")
    source.add_argument("--input-file", metavar="FILE", help="read the pipeline input from a JSON file")
    worker = call.add_mutually_exclusive_group()
    worker.add_argument("--use-worker", dest="use_worker", action="store_const", const=True, help="run in a worker")
    worker.add_argument(
        "--no-worker", dest="use_worker", action="store_const", const=False, help="never run in a worker"
    )
    call.add_argument("--wait", action="store_true", help="with --url, wait for an asynchronous call to finish")
    call.add_argument("--quiet", action="store_true", help="do not print per-node progress on stderr")
    call.set_defaults(handler=_cmd_call)

    save = commands.add_parser("save", parents=[named], help="save the pipeline's trained ops and their versions")
    save.set_defaults(handler=_cmd_save)

    load = commands.add_parser("load", parents=[named], help="load the saved versions of the pipeline's ops")
    load.add_argument(
        "--strategy", choices=STRATEGIES, default="latest", help="which saved versions to pick (default: latest)"
    )
    load.set_defaults(handler=_cmd_load)

    versions = commands.add_parser("versions", parents=[named], help="show the versions served and saved, as a table")
    versions.set_defaults(handler=_cmd_versions)

    jobs = commands.add_parser("jobs", parents=[remote], help="show asynchronous jobs, as a table")
    jobs.add_argument("job_ids", metavar="JOB_ID", nargs="*", help="only these jobs (required with --url)")
    jobs.set_defaults(handler=_cmd_jobs)

    gc = commands.add_parser(
        "gc", parents=[configured], help="remove blobs no saved record names and debris of interrupted writes"
    )
    gc.add_argument(
        "--older-than", type=_duration, default=DEBRIS_AGE, metavar="DURATION",
        help="keep anything younger: a save in progress elsewhere writes blobs before recording them "
        "(seconds, or 30m, 24h, 7d; default: 24h)",
    )
    gc.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    gc.set_defaults(handler=_cmd_gc)

    listing = commands.add_parser("pipelines", parents=[remote], help="list the app's pipelines")
    listing.set_defaults(handler=_cmd_pipelines)

    from .cli_show import add_commands  # it imports this module's helpers: imported once this one is

    add_commands(commands, configured, remote)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``chariots`` command; errors print one line on stderr and return a non-zero code."""
    args = build_parser().parse_args(argv)
    handler = log_to_stderr(logging.DEBUG if args.verbose > 1 else logging.INFO) if args.verbose else None
    started = time.perf_counter()
    try:
        args.handler(args)
    except KeyboardInterrupt:
        print("chariots: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every failure becomes one line, unless --traceback asks for more
        if args.traceback:
            raise
        failure = describe_failure(exc)  # an op's error names its node and pipeline in its notes
        print(f"chariots: {failure['type']}: {failure['message']}", file=sys.stderr)
        return 1
    finally:
        _log.debug("chariots %s took %.3f s", args.command, time.perf_counter() - started)
        if handler is not None:
            logging.getLogger("chariots").removeHandler(handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
