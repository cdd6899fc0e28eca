"""The default on-disk app (``Chariots(path=...)``: LMDB metadata + file blobs) under the
conditions it exists for: corrupt files, processes killed in the middle of a save, and
several processes saving and loading one store at once.

The concurrency test runs 8 processes x ``CHARIOTS_STRESS_SAVES`` saves (25 in CI; set it to
300 for the full run the store is specified against).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import random
import signal
import time
from pathlib import Path

import pytest

pytest.importorskip("lmdb")
pytest.importorskip("fsspec")

from chariots_core import Chariots, LoadableOp, Node, Pipeline, Version  # noqa: E402
from chariots_core.errors import IntegrityError, StoreError  # noqa: E402
from chariots_core.op_store.records import SnapshotRecord, version_key  # noqa: E402
from chariots_fsspec import FsspecSaver  # noqa: E402
from chariots_lmdb import LMDBOpStore  # noqa: E402

FORK = multiprocessing.get_context("fork")


class Weights(LoadableOp):
    """A 'model' whose state is a seed; its version changes with the seed, like a retrain.

    Its saved bytes are ``size`` bytes derived from the seed, so that a save takes long
    enough for a kill to land inside it.
    """

    def __init__(self, seed: int = 0, size: int = 64) -> None:
        super().__init__()
        self.seed, self.size = seed, size

    @property
    def op_version(self) -> Version:
        return type(self).__version__ + Version().update_major(str(self.seed).encode())

    def execute(self, value: int) -> int:
        return value + self.seed

    def serialize(self) -> bytes:
        header = json.dumps({"seed": self.seed, "size": self.size}).encode()
        return header + b"\n" + random.Random(self.seed).randbytes(self.size)

    def load(self, serialized_object: bytes) -> None:
        header = json.loads(serialized_object.partition(b"\n")[0])
        self.seed, self.size = header["seed"], header["size"]


class Head(Weights):
    """A second model, downstream of :class:`Weights`."""

    def execute(self, value: int) -> int:
        return value * self.seed


def pipeline(name: str, seed: int = 0, head: int = 1, size: int = 64) -> Pipeline:
    return Pipeline(
        [
            Node(Weights(seed, size), input_nodes=["__pipeline_input__"], output_nodes="features"),
            Node(Head(head, size), input_nodes=["features"], output_nodes="__pipeline_output__"),
        ],
        name,
    )


def app_at(root: Path) -> Chariots:
    return Chariots([pipeline("train"), pipeline("pred")], path=root)


def retrain(app: Chariots, seed: int, head: int, size: int = 64) -> None:
    app.install_ops("train", {"weights": Weights(seed, size), "head": Head(head, size)})
    app.save_pipeline("train")


def check_only_complete_saves(root: Path) -> int:
    """Assert what a crash must never leave behind; return how many saves the store holds."""
    store, saver = LMDBOpStore(root / "store"), FsspecSaver(root / "blobs")
    try:
        recorded = {name: store.op_versions(name) for name in ("weights", "head")}
        versions = {name: {record.version for record in records} for name, records in recorded.items()}
        for records in recorded.values():
            for record in records:
                data = saver.load(record.blob_path)
                assert (hashlib.sha256(data).hexdigest(), len(data)) == (record.sha256, record.size)
        for head in recorded["head"]:
            for link in store.links("head", head.version):
                assert link.upstream_version in versions["weights"] and link.downstream_version == head.version
        snapshots = [entry.record for entry in store.journal(SnapshotRecord, "train")]
        for snapshot in snapshots:
            assert all(version in versions[name] for name, version in snapshot.versions.items())
    finally:
        store.close()
    # A blob under its final name (outside the saver's .partial directory) is whole, even one
    # whose save never committed.
    for blob in blob_files(root):
        data = blob.read_bytes()
        header = json.loads(data.partition(b"\n")[0])
        assert data == Weights(header["seed"], header["size"]).serialize()
    return len(snapshots)


def blob_files(root: Path, partial: bool = False) -> list[Path]:
    """The files of the app's saver: its blobs, or (``partial``) its writes in progress."""
    files = [path for path in (root / "blobs").rglob("*") if path.is_file()]
    return [path for path in files if (path.relative_to(root / "blobs").parts[0] == ".partial") == partial]


def test_the_default_app_keeps_metadata_in_lmdb_and_blobs_in_files(tmp_path: Path):
    app = app_at(tmp_path)
    retrain(app, seed=3, head=5)

    server = app_at(tmp_path)
    server.load_pipeline("pred")

    assert isinstance(app.op_store, LMDBOpStore) and isinstance(app.saver, FsspecSaver)
    assert (tmp_path / "store" / "data.mdb").is_file()
    record = server.op_store.op_versions("head", limit=1)[0]
    assert (tmp_path / "blobs" / record.blob_path).is_file()
    assert server.call_pipeline("pred", 1).value == (1 + 3) * 5
    app.close()
    server.close()


def test_a_byte_flipped_on_disk_is_an_integrity_error_naming_the_op(tmp_path: Path):
    app = app_at(tmp_path)
    retrain(app, seed=3, head=5, size=4096)
    record = app.op_store.op_versions("weights", limit=1)[0]
    blob = tmp_path / "blobs" / record.blob_path
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))

    with pytest.raises(IntegrityError, match=f"op 'weights' version {record.version[:7]}.*corrupt") as caught:
        app.load_pipeline("pred")

    assert record.blob_path in str(caught.value)
    assert not app.is_pipeline_loaded("pred")
    app.close()


def test_an_app_path_that_is_a_file_is_a_store_error(tmp_path: Path):
    path = tmp_path / "data"
    path.write_text("not a directory")

    with pytest.raises(StoreError, match="is a file"):
        app_at(path)


def _save_until_killed(root: str, first_seed: int, reports) -> None:
    app = app_at(Path(root))
    seed = first_seed
    while True:
        retrain(app, seed=seed, head=seed + 1, size=200_000)
        reports.send(seed)
        seed += 2


def _drain(receiver) -> int:
    """How many reports a (now dead) saving process sent."""
    count = 0
    try:
        while receiver.poll():
            receiver.recv()
            count += 1
    except EOFError:
        pass
    return count


@pytest.mark.slow
def test_saves_killed_at_random_moments_leave_only_complete_saves(tmp_path: Path):
    rng = random.Random(20)
    committed = 0
    for round_number in range(20):
        receiver, sender = FORK.Pipe(duplex=False)
        child = FORK.Process(target=_save_until_killed, args=(str(tmp_path), 1000 * (round_number + 1), sender))
        child.start()
        sender.close()
        assert receiver.poll(60), "the saving process never completed a save"
        time.sleep(rng.uniform(0, 0.05))  # land the kill anywhere in the following saves
        os.kill(child.pid, signal.SIGKILL)
        child.join(30)
        reported = _drain(receiver)
        receiver.close()

        assert child.exitcode == -signal.SIGKILL
        held = check_only_complete_saves(tmp_path)
        # Every save reported done is there; at most the one being reported may be extra.
        assert committed + reported <= held <= committed + reported + 1
        committed = held

    server = app_at(tmp_path)
    picked = server.load_pipeline("pred")
    assert picked["weights"] == Version.parse(server.op_store.op_versions("weights", limit=1)[0].version)
    # The kills left debris: blobs of saves that never committed, temporary files of writes.
    referenced = {record.blob_path for name in ("weights", "head") for record in server.op_store.op_versions(name)}
    orphans = {str(path.relative_to(tmp_path / "blobs")) for path in blob_files(tmp_path)} - referenced
    assert orphans or blob_files(tmp_path, partial=True)

    report = server.collect_garbage(older_than=0)

    assert set(report.blobs) == orphans
    assert {str(path.relative_to(tmp_path / "blobs")) for path in blob_files(tmp_path)} == referenced
    assert blob_files(tmp_path, partial=True) == []
    assert check_only_complete_saves(tmp_path) == committed  # every committed save still loads
    server.close()


STRESS_PROCESSES = 8
STRESS_SAVES = int(os.environ.get("CHARIOTS_STRESS_SAVES", "25"))


def _save_and_load(root: str, worker: int, saves: int, reports) -> None:
    """Save ``saves`` trained pairs, loading the prediction pipeline after each save."""
    app = app_at(Path(root))
    seeds, failures, mixed = [], [], []
    for index in range(saves):
        seed = worker * 1_000_000 + index
        retrain(app, seed=seed, head=seed + 1)  # one commit: both ops, the link, the snapshot
        seeds.append(seed)
        try:
            # The default strategy, while the other processes commit: it must read one state.
            app.load_pipeline("pred")
        except Exception as exc:  # counted and reported: a failed load is what this test hunts
            failures.append(f"{type(exc).__name__}: {exc}")
            continue
        served = app.serving_pipeline("pred")
        weights, head = served.node_for_name["weights"].op.seed, served.node_for_name["head"].op.seed
        if head != weights + 1:
            mixed.append((weights, head))
    app.close()
    reports.send((seeds, failures, mixed))


@pytest.mark.slow
def test_processes_saving_and_loading_one_store_see_whole_saves_only(tmp_path: Path):
    app_at(tmp_path).close()  # create the store before the processes race to
    pipes, children = [], []
    for worker in range(STRESS_PROCESSES):
        receiver, sender = FORK.Pipe(duplex=False)
        child = FORK.Process(target=_save_and_load, args=(str(tmp_path), worker, STRESS_SAVES, sender))
        child.start()
        sender.close()
        pipes.append(receiver)
        children.append(child)
    # No deadlock: every process reports within the time limit.
    reports = [receiver.recv() if receiver.poll(60 + STRESS_SAVES * 4) else None for receiver in pipes]
    for child in children:
        child.join(60)

    assert None not in reports and [child.exitcode for child in children] == [0] * STRESS_PROCESSES
    assert [failure for _, failures, _ in reports for failure in failures] == []  # 0 failed loads
    assert [pair for _, _, mixed in reports for pair in mixed] == []  # never half of a save
    seeds = [seed for saved, _, _ in reports for seed in saved]
    assert len(seeds) == STRESS_PROCESSES * STRESS_SAVES
    weights_of = {version_key(str(Weights(seed).op_version)): seed for seed in seeds}
    store = LMDBOpStore(tmp_path / "store")
    try:
        # 0 lost and 0 phantom versions: the store holds exactly the versions saved.
        stored = {version_key(record.version) for record in store.op_versions("weights")}
        assert stored == set(weights_of)
        heads = store.op_versions("head")
        assert len(heads) == len(seeds)
        for head in heads:
            (link,) = store.links("head", head.version)
            assert version_key(str(Head(weights_of[version_key(link.upstream_version)] + 1).op_version)) == version_key(head.version)
        assert len(store.journal(SnapshotRecord, "train")) == len(seeds)
    finally:
        store.close()
