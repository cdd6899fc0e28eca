"""An acknowledged save survives power loss: the order of its sync calls, seen from outside with strace.

A durable save must sync the blob's data before the rename that names it, the directory after
that rename, and only then commit the metadata: LMDB syncs the commit's pages, then writes the
meta page through a descriptor opened with ``O_DSYNC``. Nothing but ``strace`` can see that
order, so the save runs in a child process under ``strace -f -y`` (``-y`` prints the path
behind each descriptor) and the test reads the calls made between two marker files.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import attrs
import pytest

pytest.importorskip("lmdb")
pytest.importorskip("fsspec")

from chariots_core.errors import StoreError  # noqa: E402
from chariots_lmdb import LMDBOpStore  # noqa: E402

STRACE = shutil.which("strace")
TRACED = "fsync,fdatasync,msync,rename,renameat,renameat2,openat,pwrite64"

SAVE_ONE_MODEL = textwrap.dedent(
    """
    import os, sys
    from chariots_core import Chariots, LoadableOp, Node, Pipeline
    from chariots_fsspec import FsspecSaver
    from chariots_lmdb import LMDBOpStore

    class Model(LoadableOp):
        def __init__(self, state=b""):
            super().__init__()
            self.state = state
        def execute(self, value):
            return value
        def serialize(self):
            return self.state
        def load(self, serialized_object):
            self.state = serialized_object

    root, marks, durable = sys.argv[1], sys.argv[2], sys.argv[3] == "durable"
    node = Node(Model(os.urandom(100_000)), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__", name="model")
    app = Chariots(
        [Pipeline([node], "train")],
        op_store=LMDBOpStore(os.path.join(root, "store"), durable=durable),
        saver=FsspecSaver(os.path.join(root, "blobs"), durable=durable),
    )
    open(marks + ".start", "w").close()
    app.save_pipeline("train")
    open(marks + ".end", "w").close()
    app.close()
    """
)


@attrs.frozen
class Call:
    name: str
    fd_path: str  # the path of the first argument's descriptor ("" if none)
    text: str


def traced_save(tmp_path: Path, durable: bool) -> tuple[list[Call], dict[str, str]]:
    """The calls of one save, and the flags each descriptor of data.mdb was opened with (by path)."""
    if STRACE is None:
        pytest.skip("strace is not installed (apt-get install strace)")
    script, log, marks = tmp_path / "save.py", tmp_path / "strace.log", tmp_path / "mark"
    script.write_text(SAVE_ONE_MODEL)
    command = [STRACE, "-f", "-y", "-qq", "-e", f"trace={TRACED}", "-o", str(log), sys.executable, str(script)]
    done = subprocess.run([*command, str(tmp_path / "app"), str(marks), "durable" if durable else "fast"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    calls, opened, inside = [], {}, False
    for line in log.read_text().splitlines():
        match = re.match(r"\d+\s+(\w+)\((\d+)?<?([^>,]*)>?", line)
        if match is None:
            continue
        name, fd, fd_path = match.groups()
        if name == "openat" and "data.mdb" in line and "= " in line:
            descriptor = line.rsplit("= ", 1)[1]
            opened[descriptor] = line  # e.g. '5</.../data.mdb>' -> the openat line with its flags
        if name == "openat" and str(marks) + ".start" in line:
            inside = True
        elif name == "openat" and str(marks) + ".end" in line:
            break
        elif inside:
            calls.append(Call(name, fd_path if fd else "", line))
    return calls, opened


def first(calls: list[Call], test) -> int:
    return next(index for index, call in enumerate(calls) if test(call))


def test_a_durable_save_syncs_data_then_name_then_commit(tmp_path: Path):
    calls, opened = traced_save(tmp_path, durable=True)
    blobs = str(tmp_path / "app" / "blobs")
    data_mdb = str(tmp_path / "app" / "store" / "data.mdb")

    data_synced = first(calls, lambda c: c.name in ("fsync", "fdatasync") and c.fd_path.startswith(f"{blobs}/.partial/"))
    renamed = first(calls, lambda c: c.name.startswith("rename") and f"{blobs}/.partial/" in c.text and f"{blobs}/ops/model/" in c.text)
    directory_synced = first(calls, lambda c: c.name == "fsync" and c.fd_path == f"{blobs}/ops/model")
    pages_synced = first(calls, lambda c: c.name in ("fdatasync", "fsync", "msync") and c.fd_path == data_mdb)
    meta_written = max(index for index, call in enumerate(calls) if call.name == "pwrite64" and call.fd_path == data_mdb)

    assert data_synced < renamed < directory_synced < pages_synced < meta_written
    # The meta page, last, goes through the descriptor LMDB opened with O_DSYNC: synced as written.
    meta_fd = re.match(r"\d+\s+pwrite64\((\d+<[^>]*>)", calls[meta_written].text).group(1)
    assert "O_DSYNC" in opened[meta_fd]
    assert all(call.fd_path != data_mdb for call in calls[meta_written + 1 :])


def test_durable_false_syncs_only_the_commits_pages(tmp_path: Path):
    calls, opened = traced_save(tmp_path, durable=False)
    blobs = str(tmp_path / "app" / "blobs")
    data_mdb = str(tmp_path / "app" / "store" / "data.mdb")

    assert [call for call in calls if call.name in ("fsync", "fdatasync") and call.fd_path.startswith(blobs)] == []
    assert any(call.name.startswith("rename") and f"{blobs}/ops/model/" in call.text for call in calls)  # still atomic
    assert any(call.name in ("fdatasync", "fsync") and call.fd_path == data_mdb for call in calls)
    meta = [call for call in calls if call.name == "pwrite64" and call.fd_path == data_mdb][-1]
    assert "O_DSYNC" not in opened[re.match(r"\d+\s+pwrite64\((\d+<[^>]*>)", meta.text).group(1)]


def test_op_stores_of_one_directory_share_one_durability_per_process(tmp_path: Path):
    durable = LMDBOpStore(tmp_path / "store")
    try:
        assert durable.durable and durable.fsyncs_saves
        with pytest.raises(StoreError, match="already open in this process with durable=True"):
            LMDBOpStore(tmp_path / "store", durable=False)
    finally:
        durable.close()
    fast = LMDBOpStore(tmp_path / "store", durable=False)  # once closed, it may reopen otherwise
    try:
        assert fast.durable is False and fast.fsyncs_saves
    finally:
        fast.close()
