"""Several processes save linked pairs of models to one S3 object store and load them, at once.

Each process runs ``tests/backends/objectstore/objectstore_snapshot_app.py``: every round it
trains ``Scale`` (retraining it is a MAJOR change) and ``Offset`` on its output, saves both in
one save, then loads the prediction pipeline. A load that took ``Scale`` from one save and
``Offset`` from another would fail with a ``VersionError`` naming an edge no save ever had, so
every load must read one snapshot. Counted at the end, against the store:

- ``failed_loads``: loads that raised (must be 0);
- ``mixed_loads``: loads that served a pair no single save committed (must be 0);
- ``lost`` / ``phantom``: versions saved but not listed / listed but never saved (must be 0);
- ``bad_links``: saved ``Offset`` versions whose link does not name their own ``Scale``;
- ``commits`` must be the saves plus the ``deployments`` (each load, refused ones included,
  records one), and nothing else.

Run: ``python benchmarks/probe_object_snapshots.py [--processes 8] [--rounds 300]`` (a local
moto S3 server; the slow test of ``tests/backends/objectstore`` runs a short version).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time
import uuid
from typing import Any

from chariots_core.op_store.records import version_key
from chariots_core.serving import DeploymentRecord
from chariots_fsspec.object_store import ObjectOpStore

REPO = pathlib.Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "backends" / "objectstore" / "objectstore_snapshot_app.py"


def run(url: str, processes: int, rounds: int, **storage_options: Any) -> dict[str, Any]:
    """Run ``processes`` workers of ``rounds`` rounds each on the store at ``url``; the counts."""
    started = time.perf_counter()
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), url, str(rounds)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(processes)
    ]
    results = []
    for worker in workers:
        out, err = worker.communicate()
        if worker.returncode != 0:
            raise RuntimeError(f"a worker failed:\n{err[-4000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    seconds = time.perf_counter() - started

    def keys(pair: list[str]) -> tuple[str, str]:
        return version_key(pair[0]), version_key(pair[1])

    saved = {keys(pair) for result in results for pair in result["saved"]}
    loaded = [keys(pair) for result in results for pair in result["loaded"]]
    failed = [failure for result in results for failure in result["failed"]]
    store = ObjectOpStore(url, **storage_options)
    listed_scales = {version_key(record.version) for record in store.op_versions("scale")}
    listed_offsets = {version_key(record.version) for record in store.op_versions("offset")}
    scales, offsets = {scale for scale, _ in saved}, {offset for _, offset in saved}
    return {
        "processes": processes,
        "rounds": rounds,
        "seconds": round(seconds, 1),
        "saves": len(saved),
        "commits": store.head(),
        "deployments": len(store.journal(DeploymentRecord, "predict")),
        "loads": len(loaded),
        "failed_loads": len(failed),
        "mixed_loads": sum(1 for pair in loaded if pair not in saved),
        "lost": len(scales - listed_scales) + len(offsets - listed_offsets),
        "phantom": len(listed_scales - scales) + len(listed_offsets - offsets),
        "bad_links": sum(
            1
            for scale, offset in saved
            if [version_key(link.upstream_version) for link in store.links("offset", offset)] != [scale]
        ),
        "first_failures": failed[:3],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args(argv)
    import s3fs

    sys.path.insert(0, str(REPO / "tests" / "support"))
    from chariots_test_s3 import moto_s3

    with moto_s3() as endpoint:
        bucket = f"snapshots-{uuid.uuid4().hex[:8]}"
        s3fs.S3FileSystem(endpoint_url=endpoint).mkdir(bucket)
        counts = run(f"s3://{bucket}/store", args.processes, args.rounds, endpoint_url=endpoint)
    print(json.dumps(counts, indent=2))
    bad = ("failed_loads", "mixed_loads", "lost", "phantom", "bad_links")
    ok = (
        all(counts[name] == 0 for name in bad)
        and counts["saves"] == counts["loads"] == counts["deployments"] == args.processes * args.rounds
        and counts["commits"] == counts["saves"] + counts["deployments"]
    )
    print("one snapshot per load, nothing lost" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
