"""Garbage collection of the default app against real processes: a save killed between its blobs
and its commit, and a save still running in another process while gc runs."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

pytest.importorskip("lmdb")
pytest.importorskip("fsspec")

from chariots_core import Chariots, LoadableOp, Node, Pipeline  # noqa: E402

FORK = multiprocessing.get_context("fork")
TIMEOUT = 60


class Model(LoadableOp):
    """Its state is bytes; with a ``gate`` file set, writing its state waits for that file."""

    def __init__(self, state: bytes = b"", gate: str | None = None) -> None:
        super().__init__()
        self.state, self.gate = state, gate

    def execute(self, value):
        return value

    def serialize_to(self, file) -> None:
        file.write(self.state[: len(self.state) // 2])
        while self.gate is not None and not os.path.exists(self.gate):
            time.sleep(0.01)  # half-way through the write, like a slow disk or network
        file.write(self.state[len(self.state) // 2 :])

    def load_from(self, file) -> None:
        self.state = file.read()


def pipeline(first: bytes = b"", second: bytes = b"", gate: str | None = None) -> Pipeline:
    return Pipeline(
        [
            Node(Model(first), input_nodes=["__pipeline_input__"], output_nodes="middle", name="first"),
            Node(Model(second, gate), input_nodes=["middle"], output_nodes="__pipeline_output__", name="second"),
        ],
        "train",
    )


def blob_files(root: Path, partial: bool = False) -> set[str]:
    files = {str(path.relative_to(root / "blobs")) for path in (root / "blobs").rglob("*") if path.is_file()}
    return {path for path in files if path.startswith(".partial/") == partial}


def _save_through_the_gate(root: str, first: bytes, second: bytes, gate: str, done) -> None:
    with Chariots([pipeline(first, second, gate)], path=root) as app:
        app.save_pipeline("train")
    done.send("committed")


def start_blocked_save(root: Path, gate: Path, first: bytes, second: bytes):
    """A process saving ``first`` then ``second``, stopped half-way through writing ``second``."""
    receiver, sender = FORK.Pipe(duplex=False)
    child = FORK.Process(target=_save_through_the_gate, args=(str(root), first, second, str(gate), sender))
    child.start()
    sender.close()
    deadline = time.monotonic() + TIMEOUT
    before = blob_files(root)
    # The first op's blob is in place, the second's is being written.
    while not (blob_files(root) - before and blob_files(root, partial=True)):
        assert time.monotonic() < deadline and child.is_alive(), "the saving process never reached its second op"
        time.sleep(0.01)
    return child, receiver


def test_a_save_killed_before_its_commit_leaves_debris_that_gc_removes(tmp_path: Path):
    with Chariots([pipeline(b"kept 1", b"kept 2")], path=tmp_path) as app:
        app.save_pipeline("train")
    committed = blob_files(tmp_path)
    child, _ = start_blocked_save(tmp_path, tmp_path / "never", b"x" * 1000, b"y" * 100_000)
    os.kill(child.pid, signal.SIGKILL)
    child.join(TIMEOUT)
    orphan = blob_files(tmp_path) - committed
    partial = blob_files(tmp_path, partial=True)
    assert len(orphan) == 1 and len(partial) == 1  # the first op's whole blob, the second's half

    with Chariots([pipeline()], path=tmp_path) as app:
        assert app.collect_garbage(older_than=3600).removed == ()  # too young to tell from a running save
        report = app.collect_garbage(older_than=0)
        assert set(report.blobs) == orphan and report.debris == tuple(partial)
        assert blob_files(tmp_path) == committed and blob_files(tmp_path, partial=True) == set()
        app.load_pipeline("train")
        served = app.serving_pipeline("train")
        assert [served.node_for_name[name].op.state for name in ("first", "second")] == [b"kept 1", b"kept 2"]


def test_a_save_running_while_gc_runs_keeps_its_blobs_and_commits(tmp_path: Path):
    gate = tmp_path / "gate"
    child, receiver = start_blocked_save(tmp_path, gate, b"a" * 1000, b"b" * 100_000)
    try:
        written_not_committed = blob_files(tmp_path)
        with Chariots([pipeline()], path=tmp_path) as app:
            report = app.collect_garbage(older_than=60)  # the default keeps a day; a minute is plenty here
            assert report.removed == ()
            assert blob_files(tmp_path) == written_not_committed and blob_files(tmp_path, partial=True)
            gate.touch()
            assert receiver.poll(TIMEOUT) and receiver.recv() == "committed"
            app.load_pipeline("train")
            served = app.serving_pipeline("train")
            assert [served.node_for_name[name].op.state for name in ("first", "second")] == [b"a" * 1000, b"b" * 100_000]
            assert app.collect_garbage(older_than=0).removed == ()  # now every blob is named by a record
    finally:
        gate.touch()
        child.join(TIMEOUT)
    assert child.exitcode == 0
