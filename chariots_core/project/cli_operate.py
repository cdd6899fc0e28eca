"""The ``chariots`` commands that operate what a pipeline serves: history, rollback, split, predictions.

::

    chariots history pred_iris [--limit 20]              # its deployments, newest first
    chariots rollback pred_iris [--to DEPLOYMENT]        # back to the previous deployment (or that one)
    chariots split pred_iris --variant stable=serving --variant candidate=latest \\
        --weight stable=0.9 --weight candidate=0.1 [--shadow NAME] --url URL
    chariots predictions pred_iris [--since SECONDS_AGO] [--limit 20] [--json]

``history`` and ``predictions`` answer from the store alone (the deployments journal, and the
prediction log the app keeps in ``<path>/predictions``), without importing the project's code,
as ``jobs`` and ``versions`` do. ``rollback`` works in-process like ``load`` (what it restores
is held for the next command) or against a server with ``--url``. A split lives in the process
that serves it, so ``split`` needs ``--url``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from ..errors import ConfigError
from ..op_store.explain import short
from ..registry import get_backend
from ..serving.deployments import DeploymentRecord, deployment_history
from ..serving.prediction_log import read_records
from ..serving.setup import is_local, local_dir
from ..versioning import Version
from .cli import _config, _open_store, _open_target, _print_versions, _table, _time

__all__ = ["add_operating_commands"]

_DETAIL_WIDTH = 80


def _cmd_history(args: argparse.Namespace) -> None:
    if args.url:
        with _open_target(args) as target:
            records = target.api.deployments(args.pipeline, limit=args.limit)
    else:
        with _open_store(args) as app:
            records = deployment_history(app.op_store, args.pipeline, args.limit)
    if not records:
        print(f"pipeline {args.pipeline!r} has no deployments yet: chariots load {args.pipeline} makes the first")
        return
    headers = ["DEPLOYMENT", "WHEN", "KIND", "OUTCOME", "VERSIONS", "BY", "DETAIL"]
    print(_table(headers, [_history_row(record) for record in records]))


def _history_row(record: DeploymentRecord) -> list[str]:
    if record.variants:
        versions = "; ".join(
            f"{variant.name} {'shadow' if variant.shadow else f'{variant.share:.0%}'}: {_versions_text(variant.versions)}"
            for variant in record.variants
        )
    else:
        versions = _versions_text(record.versions)
    detail = record.detail
    detail = detail if len(detail) <= _DETAIL_WIDTH else detail[: _DETAIL_WIDTH - 3] + "..."
    return [record.deployment_id, _time(record.at), record.kind, record.outcome, versions or "-",
            f"{record.host}/{record.pid}", detail or "-"]  # fmt: skip


def _versions_text(versions: dict[str, str]) -> str:
    return ", ".join(f"{name} {short(text)}" for name, text in versions.items())


def _cmd_rollback(args: argparse.Namespace) -> None:
    with _open_target(args) as target:
        target.restore(args.pipeline)
        record = target.api.rollback(args.pipeline, to=args.to)
        target.hold(args.pipeline)
    print(f"rolled pipeline {args.pipeline!r} back to deployment {record.restores} (now deployment {record.deployment_id})")
    _print_versions({name: Version.parse(text) for name, text in record.versions.items()})


def _cmd_split(args: argparse.Namespace) -> None:
    if not args.url:
        msg = (
            "a split lives in the process that serves it, and each command is a process of its own: "
            f"run it against the server, chariots split {args.pipeline} ... --url URL"
        )
        raise ConfigError(msg)
    variants = _pairs(args.variant, "--variant", str)
    weights = _pairs(args.weight, "--weight", float) if args.weight else None
    with _open_target(args) as target:
        record = target.api.split(args.pipeline, variants, weights=weights, shadow=args.shadow)
    print(f"split pipeline {args.pipeline!r} (deployment {record.deployment_id}):")
    print(_table(["VARIANT", "SHARE", "VERSIONS"], [
        [variant.name, "shadow" if variant.shadow else f"{variant.share:.1%}", _versions_text(variant.versions) or "-"]
        for variant in record.variants
    ]))  # fmt: skip


def _pairs(items: list[str], option: str, kind: type) -> dict[str, Any]:
    pairs: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            pairs[name] = kind(value)
        except ValueError:
            raise ConfigError(f"{option} takes NAME=VALUE, e.g. {option} candidate=latest (got {item!r})") from None
    return pairs


def _cmd_predictions(args: argparse.Namespace) -> None:
    since = None if args.since is None else time.time() - args.since
    if args.url:
        with _open_target(args) as target:
            records = target.api.predictions(args.pipeline, since=since, limit=args.limit)
    else:
        records = _read_local_log(args, since)
    if args.json:
        for record in records:
            print(json.dumps(record.to_json()))
        return
    if not records:
        print(f"no calls of pipeline {args.pipeline!r} logged{' in that time' if since else ''}")
        return
    rows = [
        [_time(r.at), f"{r.latency * 1000:.2f}", r.variant or "-", "yes" if r.shadow else "-",
         _shown(r.input, r.input_sha256), r.error or _shown(r.output, r.output_sha256)]
        for r in records
    ]  # fmt: skip
    print(_table(["WHEN", "MS", "VARIANT", "SHADOW", "INPUT", "OUTPUT"], rows))


def _read_local_log(args: argparse.Namespace, since: float | None) -> list[Any]:
    """The records of the prediction log in the configured ``<path>/predictions``."""
    config = _config(args)
    if not is_local(config.data_path):
        raise ConfigError(f"the app path {config.data_path!r} is not local: read the predictions with --url URL")
    directory = local_dir(config.data_path, "predictions")
    if not os.path.isdir(directory):
        raise ConfigError(f"no prediction log in {directory!r}: serve the app with log_predictions=[...] first")
    sink = get_backend("prediction_log", "lmdb")(directory)
    try:
        return read_records(sink, args.pipeline, since, args.limit)
    finally:
        sink.close()


def _shown(value: Any, sha256: str | None, width: int = 40) -> str:
    """A logged value as JSON, or its hash when only hashes were logged, cut to ``width``."""
    text = f"sha256:{sha256[:12]}" if sha256 is not None else json.dumps(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def add_operating_commands(commands: Any, named: argparse.ArgumentParser) -> None:
    """Add ``history``, ``rollback``, ``split`` and ``predictions`` to the ``chariots`` parser."""
    history = commands.add_parser("history", parents=[named], help="show the pipeline's deployments, newest first")
    history.add_argument("--limit", type=int, default=20, help="show at most N (default: 20)")
    history.set_defaults(handler=_cmd_history)

    rollback = commands.add_parser("rollback", parents=[named], help="serve the previous deployment again")
    rollback.add_argument("--to", metavar="DEPLOYMENT", help="the deployment to serve (default: the previous one)")
    rollback.set_defaults(handler=_cmd_rollback)

    split = commands.add_parser("split", parents=[named], help="serve variants side by side (A/B, shadow; --url)")
    split.add_argument(
        "--variant", action="append", required=True, metavar="NAME=SPEC",
        help="a variant and what it serves: serving, latest, latest_compatible or a deployment id (repeat it)",
    )  # fmt: skip
    split.add_argument("--weight", action="append", metavar="NAME=WEIGHT", help="a served variant's weight")
    split.add_argument("--shadow", metavar="NAME", help="the variant that runs on every input without answering")
    split.set_defaults(handler=_cmd_split)

    predictions = commands.add_parser("predictions", parents=[named], help="show the pipeline's logged calls")
    predictions.add_argument("--since", type=float, metavar="SECONDS", help="only calls of the last SECONDS")
    predictions.add_argument("--limit", type=int, default=20, help="show at most N (default: 20)")
    predictions.add_argument("--json", action="store_true", help="one JSON record per line")
    predictions.set_defaults(handler=_cmd_predictions)
