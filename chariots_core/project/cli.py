"""The ``chariots`` command: create a project, serve it, call, save and load its pipelines.

::

    chariots new iris                                  # a ready project in ./iris
    chariots call train_iris                           # progress on stderr, value as JSON on stdout
    chariots save train_iris
    chariots load pred_iris [--strategy latest_compatible]
    chariots call pred_iris --input '[[5.1, 3.5, 1.4, 0.2]]'
    chariots versions pred_iris                        # served and saved versions, as a table
    chariots jobs                                      # asynchronous jobs, as a table
    chariots serve                                     # the app over HTTP, on waitress

Commands read the configuration given by ``--config``, else the first ``chariots.toml``,
``chariots.yaml`` or ``pyproject.toml`` with ``[tool.chariots]`` found from the current
directory upwards (see :mod:`chariots_core.project.config`). They work in-process on the configured
store or, with ``--url``, against a running server through ``chariots_waitress.PipelinesClient``.

In-process, each command is a new process, yet a sequence of commands must behave like calls
to one long-lived app: the models ``chariots call train_iris`` fitted must still be there for
``chariots save train_iris``, and the versions ``chariots load pred_iris`` chose must serve the
next ``chariots call pred_iris``. So the command keeps the state of that app in the app's saver,
under ``cli/``: for each pipeline, which bytes each of its loadable ops holds (a JSON index, the
bytes sha256-checked), restored at the start of the next command. Ops held from code that has
since changed are dropped, never served. ``chariots serve`` starts a server with what the store
holds, like any new app: load its pipelines with ``chariots load PIPELINE --url URL``.

Why argparse and not click: the core depends on attrs, cattrs and dill only, and an embeddable
library should not add a dependency to every install for one console script. The command is a
flat set of subcommands with a few options each, which argparse covers fully (help on every
subcommand, types, mutually exclusive options) in the standard library.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
import time
from collections.abc import Iterator, Sequence
from typing import IO, Any

from ..errors import ChariotsError, IntegrityError, NotFittedError, WorkerError
from ..op_store.lineage import STRATEGIES
from ..pipelines.callbacks import PipelineCallback
from ..pipelines.ops import fresh_copy, trained_since
from ..serving.jsonsafe import to_jsonable
from ..serving.workers import JobStatus
from ..versioning import Version
from .config import ChariotsConfig, http_backend
from .templates import write_project

__all__ = ["main", "build_parser", "ProgressCallback"]

_FINISHED = (JobStatus.done, JobStatus.failed)
_POLL_SECONDS = 0.1


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


# -- the state in-process commands share -----------------------------------------------------
class _Session:
    """The ops an in-process "app" holds for each pipeline, kept in the app's saver across commands."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.saver = app.saver

    @staticmethod
    def _index_path(pipeline_name: str) -> str:
        return f"cli/pipelines/{pipeline_name}.json"

    def held(self, pipeline_name: str) -> dict[str, dict[str, str]]:
        path = self._index_path(pipeline_name)
        if not self.saver.exists(path):
            return {}
        return json.loads(self.saver.load(path))

    def _write(self, pipeline_name: str, held: dict[str, dict[str, str]]) -> None:
        self.saver.save(self._index_path(pipeline_name), json.dumps(held, sort_keys=True).encode())

    def restore(self, pipeline_name: str) -> None:
        """Put back the ops earlier commands left in ``pipeline_name``."""
        held = self.held(pipeline_name)
        if not held:
            return
        ops, kept = {}, {}
        for node in self.app.serving_pipeline(pipeline_name).loadable_nodes():
            entry = held.get(node.name)
            if entry is None:
                continue
            if entry["code"] != _code_version(node.op):
                print(
                    f"chariots: the {node.name!r} op held for {pipeline_name!r} came from code that has "
                    f"changed since; dropped it (run chariots load {pipeline_name} again)",
                    file=sys.stderr,
                )
                continue
            op = fresh_copy(node.op)
            op.load(self._read_bytes(entry, node.name, pipeline_name))
            ops[node.name], kept[node.name] = op, entry
        if kept != held:
            self._write(pipeline_name, kept)
        if ops:
            self.app.install_ops(pipeline_name, ops)

    def _read_bytes(self, entry: dict[str, str], node_name: str, pipeline_name: str) -> bytes:
        try:
            data = self.saver.load(entry["path"])
        except FileNotFoundError:
            data = None
        if data is None or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            self.saver.delete(self._index_path(pipeline_name))
            msg = (
                f"the bytes of op {node_name!r} held for pipeline {pipeline_name!r} at "
                f"{entry['path']!r} are missing or corrupt; the held state was reset: run "
                f"chariots load {pipeline_name} (or call its training pipeline) again"
            )
            raise IntegrityError(msg)
        return data

    def keep_trained(self, pipeline_name: str, before: dict[str, Version]) -> None:
        """Hold the ops whose version changed since ``before`` (they were trained by a call)."""
        held = self.held(pipeline_name)
        changed = False
        ops = {node.name: node.op for node in self.app.serving_pipeline(pipeline_name).loadable_nodes()}
        for name, op in trained_since(ops, before).items():
            data = op.serialize()
            digest = hashlib.sha256(data).hexdigest()
            path = f"cli/ops/{name}/{digest}"
            if not self.saver.exists(path):
                self.saver.save(path, data)
            held[name] = {"path": path, "sha256": digest, "code": _code_version(op)}
            changed = True
        if changed:
            self._write(pipeline_name, held)

    def keep_loaded(self, pipeline_name: str, chosen: dict[str, Version]) -> None:
        """Hold the versions a load chose: the store's own bytes."""
        held = self.held(pipeline_name)
        nodes = {node.name: node for node in self.app.serving_pipeline(pipeline_name).loadable_nodes()}
        for name, version in chosen.items():
            records = {record.version: record for record in self.app.op_store.op_versions(name)}
            record = records[str(version)]
            held[name] = {"path": record.blob_path, "sha256": record.sha256, "code": _code_version(nodes[name].op)}
        self._write(pipeline_name, held)


def _code_version(op: Any) -> str:
    version = type(op).__version__  # the creation time differs per process: compare hashes only
    return f"{version.major}_{version.minor}_{version.patch}"


# -- where commands run: an in-process app or a remote server --------------------------------
class _Target:
    """What a command talks to: ``api`` is a Chariots app or a PipelinesClient (same methods)."""

    def __init__(self, api: Any, session: _Session | None) -> None:
        self.api = api
        self.session = session

    @property
    def local(self) -> bool:
        return self.session is not None

    def restore(self, pipeline_name: str) -> None:
        if self.session is not None:
            self.session.restore(pipeline_name)


@contextlib.contextmanager
def _open_target(args: argparse.Namespace, progress: bool = False) -> Iterator[_Target]:
    if getattr(args, "url", None):
        client = http_backend("PipelinesClient")(args.url)
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
        try:
            yield _Target(app, _Session(app))
        finally:
            callback.end_failed_line()


def _config(args: argparse.Namespace) -> ChariotsConfig:
    return ChariotsConfig(args.config) if args.config else ChariotsConfig.discover()


# -- commands ------------------------------------------------------------------------------
def _cmd_new(args: argparse.Namespace) -> None:
    target = write_project(args.name, args.directory)
    print(f"created project {args.name!r} in {target}")
    print(f"next: cd {target} && pytest, then chariots call train_iris")


def _cmd_serve(args: argparse.Namespace) -> None:
    serve = http_backend("serve")
    config = _config(args)
    host = args.host or config.pipelines.host
    port = args.port or config.pipelines.port
    with config.get_app() as app:
        pipelines = ", ".join(app.available_pipelines())
        print(f"chariots: serving {pipelines} on http://{host}:{port} (Ctrl+C to stop)", file=sys.stderr)
        serve(app, host=host, port=port)


def _cmd_call(args: argparse.Namespace) -> None:
    pipeline_input = _read_input(args)
    with _open_target(args, progress=not args.quiet) as target:
        target.restore(args.pipeline)
        before = target.api.pipeline_versions(args.pipeline) if target.local else {}
        response = target.api.call_pipeline(args.pipeline, pipeline_input, use_worker=args.use_worker)
        if response.job_id is not None:
            print(f"chariots: job {response.job_id} {response.job_status.value}", file=sys.stderr)
            if not (target.local or args.wait):
                print(json.dumps(response.to_json()))
                return
            response = _wait(target.api, response.job_id, response.job_status)
        if target.session is not None:
            target.session.keep_trained(args.pipeline, before)
        print(json.dumps(to_jsonable(response.value)))


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
        print(f"saved pipeline {args.pipeline!r}")
        _print_versions(target.api.pipeline_versions(args.pipeline))


def _cmd_load(args: argparse.Namespace) -> None:
    with _open_target(args) as target:
        target.restore(args.pipeline)
        chosen = target.api.load_pipeline(args.pipeline, strategy=args.strategy)
        if target.session is not None:
            target.session.keep_loaded(args.pipeline, chosen)
        print(f"loaded pipeline {args.pipeline!r}")
        _print_versions(chosen)


def _cmd_versions(args: argparse.Namespace) -> None:
    with _open_target(args) as target:
        target.restore(args.pipeline)
        versions = target.api.pipeline_versions(args.pipeline)
        headers = ["NODE", "MAJOR", "MINOR", "PATCH", "SAVED", "LATEST SAVED"]
        rows = []
        for name, version in versions.items():
            saved = target.api.op_store.op_versions(name) if target.local else None
            count = "-" if saved is None else str(len(saved))
            latest = _time(saved[-1].saved_at) if saved else "-"
            rows.append([name, *_parts(version), count, latest])
        print(_table(headers, rows))


def _cmd_jobs(args: argparse.Namespace) -> None:
    with _open_target(args) as target:
        if args.job_ids:
            responses = [target.api.fetch_job(job_id) for job_id in args.job_ids]
            rows = [[r.job_id, r.job_status.value, _error_text(r.error)] for r in responses]
            print(_table(["JOB", "STATUS", "ERROR"], rows))
            return
        if not target.local:
            raise ChariotsError("with --url, give the ids of the jobs to show: chariots jobs JOB_ID ... --url URL")
        headers = ["JOB", "PIPELINE", "STATUS", "SUBMITTED", "UPDATED", "WORKER", "ERROR"]
        rows = [
            [job.job_id, job.pipeline_name, job.status, _time(job.submitted_at), _time(job.updated_at),
             job.worker or "-", _error_text(job.error)]
            for job in (_current(target.api, record) for record in target.api.op_store.jobs())
        ]
        print(_table(headers, rows) if rows else "no jobs")


def _current(app: Any, job: Any) -> Any:
    """The job's record once fetched: fetching an unfinished job whose app died marks it failed."""
    if JobStatus(job.status) in _FINISHED:
        return job
    app.fetch_job(job.job_id)
    return app.op_store.get_job(job.job_id)


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


def _time(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _error_text(error: dict[str, str] | None) -> str:
    if not error:
        return "-"
    node = f" in {error['node']}" if error.get("node") else ""
    return f"{error.get('type', 'error')}{node}: {error.get('message', '')}"[:100]


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

    listing = commands.add_parser("pipelines", parents=[remote], help="list the app's pipelines")
    listing.set_defaults(handler=_cmd_pipelines)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``chariots`` command; errors print one line on stderr and return a non-zero code."""
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except KeyboardInterrupt:
        print("chariots: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every failure becomes one line, unless --traceback asks for more
        if args.traceback:
            raise
        print(f"chariots: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
