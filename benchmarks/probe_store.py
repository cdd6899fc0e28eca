"""Flip random bytes in a copy of a real LMDB op store and count how the damage is reported.

A store is built through the app (two linked model ops saved 12 times, a prediction pipeline
loaded, a few jobs), and every answer it gives is recorded: each listing (whole, paged, per
policy), each version looked up, the links of each version, the snapshots, the jobs, the
head, and the versions a ``load_pipeline`` picks under both strategies. Then, ``--flips``
times: copy the store's files, flip one byte (a random bit pattern, at a random offset of a
file chosen by size: ``data.mdb`` and ``lock.mdb`` of the store and of its ``jobs``
subdirectory) and ask every question again in a forked process (a damaged LMDB map can crash
the process that reads it). Each probe ends as one of:

- ``unaffected``: every answer as before (the byte was in free space, padding, the lock file);
- ``reported``: a ``StoreError`` (``IntegrityError`` included) saying what is damaged;
- ``MISREPORT``: any other exception (a ``VersionError``, a ``NotSavedError``...) or any answer
  that differs from the recorded one (shorter, wrong);
- ``CRASH`` / ``HANG``: the process died on a signal / did not answer in time.

Target: 0 misreports. Crashes are counted and printed with the offset that caused them.

Run: ``python benchmarks/probe_store.py [--flips 200] [--seed 0]``
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import random
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from chariots_core import Chariots, LoadableOp, Node, Pipeline, Version
from chariots_core.errors import StoreError
from chariots_core.op_store.lineage import load_ops, resolve_versions
from chariots_core.op_store.records import POLICIES, JobRecord, SnapshotRecord
from chariots_lmdb import LMDBOpStore

FILES = ("store/data.mdb", "store/lock.mdb", "store/jobs/data.mdb", "store/jobs/lock.mdb")
OPS = ("weights", "head")
TIMEOUT = 60  # seconds a probe may take before it counts as a hang


class Weights(LoadableOp):
    """A small model whose version changes with its seed (a retrain)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.seed = seed

    @property
    def op_version(self) -> Version:
        return type(self).__version__ + Version().update_major(str(self.seed).encode())

    def execute(self, value: int) -> int:
        return value + self.seed

    def serialize(self) -> bytes:
        return json.dumps({"seed": self.seed}).encode()

    def load(self, serialized_object: bytes) -> None:
        self.seed = json.loads(serialized_object)["seed"]


class Head(Weights):
    """The model downstream of :class:`Weights`."""


def pipelines() -> list[Pipeline]:
    def pipeline(name: str) -> Pipeline:
        return Pipeline(
            [
                Node(Weights(), input_nodes=["__pipeline_input__"], output_nodes="x"),
                Node(Head(), input_nodes=["x"], output_nodes="__pipeline_output__"),
            ],
            name,
        )

    return [pipeline("train"), pipeline("pred")]


def build(root: Path, saves: int = 12) -> None:
    """A store with ``saves`` trained pairs, a loaded prediction pipeline and a few jobs."""
    with Chariots(pipelines(), path=root) as app:
        for seed in range(saves):
            app.install_ops("train", {"weights": Weights(seed), "head": Head(seed + 100)})
            app.save_pipeline("train")
        app.load_pipeline("pred")
        app.save_pipeline("pred")
        for index in range(5):
            app.job_store.put_job(JobRecord(f"job-{index}", "pred", "done", float(index), float(index)))


def answers(root: Path) -> dict[str, Any]:
    """Every question the probe asks of the store at ``root``, with its answer."""
    found: dict[str, Any] = {}
    store = LMDBOpStore(root / "store")
    try:
        found["head"] = store.head()
        with store.reader() as view:
            for op in OPS:
                listed = view.op_versions(op)
                found[f"{op}: versions"] = listed
                found[f"{op}: pages"] = _pages(lambda before: view.op_versions(op, limit=5, before=before))
                code = str(Head.__version__ if op == "head" else Weights.__version__)
                for policy in POLICIES:
                    found[f"{op}: {policy} versions"] = view.op_versions(op, compatible_with=code, policy=policy)
                for record in listed:
                    found[f"{op}: {record.version}"] = (view.op_version(op, record.version), view.links(op, record.version))
            for pipeline in ("train", "pred"):
                found[f"{pipeline}: snapshots"] = [(e.position, e.record) for e in view.journal(SnapshotRecord, pipeline)]
        found["jobs"] = store.jobs()
        found["job pages"] = [[job.job_id for job in page] for page in _job_pages(store)]
        found["each job"] = [store.get_job(f"job-{index}") for index in range(6)]
    finally:
        store.close()
    with Chariots(pipelines(), path=root) as app:
        # What a load reads and checks, without deploying: a deployment is recorded, a write.
        pred = app.serving_pipeline("pred")
        for strategy in ("latest", "latest_compatible"):
            chosen = resolve_versions(pred, app.op_store, app.compatibility, strategy)
            load_ops(pred, chosen, app.saver)
            found[f"load {strategy}"] = {name: record.version for name, record in chosen.items() if record}
    return found


def _pages(read) -> list[list[str]]:
    pages, before = [], None
    while page := read(before):
        pages.append([record.version for record in page])
        before = page[-1].version
    return pages


def _job_pages(store: LMDBOpStore) -> list[list[JobRecord]]:
    pages, before = [], None
    while page := store.jobs(limit=2, before=before):
        pages.append(page)
        before = page[-1].job_id
    return pages


def _ask(root: str, expected: dict[str, Any], results) -> None:
    """In the probe process: ask again, and send back how the damage showed."""
    try:
        got = answers(Path(root))
    except StoreError as exc:
        results.send(("reported", f"{type(exc).__name__}: {exc}"))
    except BaseException as exc:  # everything else is a misreport: what it was is the finding
        results.send(("MISREPORT", "".join(traceback.format_exception_only(exc)).strip()[:500]))
    else:
        wrong = [name for name in expected if got.get(name) != expected[name]]
        results.send(("unaffected", "") if not wrong else ("MISREPORT", f"different answers: {wrong[:5]}"))


def probe(flips: int, seed: int, progress: bool = False) -> collections.Counter:
    """Run ``flips`` probes; return how many ended each way (details printed for the bad ones)."""
    rng = random.Random(seed)
    context = multiprocessing.get_context("fork")
    outcomes: collections.Counter = collections.Counter()
    with tempfile.TemporaryDirectory(prefix="probe_store_") as workspace:
        original = Path(workspace) / "original"
        build(original)
        expected = answers(original)  # closes everything it opens: no environment is inherited
        sizes = {name: (original / name).stat().st_size for name in FILES}
        for number in range(flips):
            copy = Path(workspace) / f"probe-{number}"
            shutil.copytree(original, copy)
            name = rng.choices(FILES, weights=[sizes[name] for name in FILES])[0]
            offset, pattern = rng.randrange(sizes[name]), rng.randrange(1, 256)
            with open(copy / name, "r+b") as file:
                file.seek(offset)
                byte = file.read(1)[0]
                file.seek(offset)
                file.write(bytes([byte ^ pattern]))
            receiver, sender = context.Pipe(duplex=False)
            child = context.Process(target=_ask, args=(str(copy), expected, sender))
            child.start()
            sender.close()
            if receiver.poll(TIMEOUT):
                outcome, detail = receiver.recv()
            elif child.is_alive():
                child.kill()
                outcome, detail = "HANG", ""
            else:
                outcome, detail = "CRASH", ""
            child.join(30)
            if outcome == "CRASH" or child.exitcode not in (0, None):
                outcome, detail = "CRASH", f"exit code {child.exitcode}"
            receiver.close()
            outcomes[outcome] += 1
            outcomes[f"{outcome} in {name}"] += 1
            if outcome not in ("unaffected", "reported") or progress:
                print(f"  probe {number}: {name} byte {offset} ^ {pattern:#04x}: {outcome} {detail}", flush=True)
            shutil.rmtree(copy)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flips", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="print every probe, not only the bad ones")
    args = parser.parse_args(argv)
    outcomes = probe(args.flips, args.seed, progress=args.verbose)
    print(f"{args.flips} flipped bytes (seed {args.seed}):")
    for name, count in sorted(outcomes.items()):
        print(f"  {name:<40} {count:4d}")
    misreports = outcomes["MISREPORT"]
    print(f"misreports: {misreports} (target 0), crashes: {outcomes['CRASH']}, hangs: {outcomes['HANG']}")
    return 0 if misreports == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
