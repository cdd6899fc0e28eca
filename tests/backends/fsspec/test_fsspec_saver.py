"""FsspecSaver beyond the shared conformance suite: atomic local writes, URLs and roots,
missing filesystem packages, the gs:// code path on a local fake, and pickling."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import resource
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

fsspec = pytest.importorskip("fsspec")

from chariots_core import Chariots, ChariotsError, MemoryOpStore  # noqa: E402
from chariots_core.errors import ConfigError, StoreError  # noqa: E402
from chariots_core.registry import get_backend  # noqa: E402
from chariots_core.savers import DEBRIS_AGE  # noqa: E402
from chariots_fsspec import FsspecSaver  # noqa: E402

FORK = multiprocessing.get_context("fork")


def files_under(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


@pytest.mark.parametrize("name", ["file", "fsspec", "gs", "s3"])
def test_the_registry_names_of_savers_are_this_saver(name):
    assert get_backend("saver", name) is FsspecSaver


def test_a_local_save_leaves_only_the_final_file(tmp_path: Path):
    saver = FsspecSaver(tmp_path)
    saver.save("ops/pca/v1", b"one")
    saver.save("ops/pca/v1", b"two")
    saver.save("ops/model/v1", b"three")

    assert files_under(tmp_path) == ["ops/model/v1", "ops/pca/v1"]
    assert (tmp_path / "ops" / "pca" / "v1").read_bytes() == b"two"


def _save_without_fsync_then_hang(root: str, ready) -> None:
    FsspecSaver(root).save("jobs/j1", b"result bytes", durable=False)
    ready.send("saved")
    signal.pause()  # the parent kills us: nothing gets closed or flushed by this process


def test_a_save_without_fsync_survives_the_writer_being_killed(tmp_path: Path):
    ready, child_end = FORK.Pipe()
    child = FORK.Process(target=_save_without_fsync_then_hang, args=(str(tmp_path), child_end))
    child.start()
    try:
        assert ready.poll(60) and ready.recv() == "saved"
        child.kill()
        child.join(60)
    finally:
        if child.is_alive():
            child.kill()
            child.join()

    assert child.exitcode == -signal.SIGKILL
    assert FsspecSaver(tmp_path).load("jobs/j1") == b"result bytes"
    assert files_under(tmp_path) == ["jobs/j1"]


@pytest.mark.parametrize("url", ["memory://durable-flag", "dir"])
def test_durable_false_replaces_bytes_like_a_durable_save(tmp_path: Path, url):
    saver = FsspecSaver(tmp_path / url if url == "dir" else url)
    saver.save("jobs/j2", b"first")
    saver.save("jobs/j2", b"second", durable=False)

    assert saver.load("jobs/j2") == b"second"


def _save_beyond_the_file_size_limit(root: str, reports) -> None:
    # The kernel refuses writes past RLIMIT_FSIZE (EFBIG once SIGXFSZ is ignored): a write
    # that fails half-way, without mocking anything.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    saver = FsspecSaver(root)
    try:
        saver.save("ops/model", b"x" * 100_000)
    except StoreError as exc:
        reports.send(("StoreError", str(exc)))
    else:
        reports.send(("saved", ""))


def test_a_write_that_fails_half_way_leaves_the_old_bytes_and_no_debris(tmp_path: Path):
    FsspecSaver(tmp_path).save("ops/model", b"the previous model")
    receiver, sender = FORK.Pipe(duplex=False)
    child = FORK.Process(target=_save_beyond_the_file_size_limit, args=(str(tmp_path), sender))

    child.start()
    outcome = receiver.recv() if receiver.poll(60) else ("no answer", "")
    child.join(30)

    assert outcome[0] == "StoreError"
    assert "ops/model" in outcome[1] and str(tmp_path) in outcome[1]
    assert files_under(tmp_path) == ["ops/model"]
    assert (tmp_path / "ops" / "model").read_bytes() == b"the previous model"


def test_a_relative_root_is_resolved_against_the_working_directory(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    saver = FsspecSaver("data/blobs")
    saver.save("a", b"x")

    monkeypatch.chdir("/")
    assert saver.load("a") == b"x"
    assert (tmp_path / "data" / "blobs" / "a").read_bytes() == b"x"


def test_a_root_that_is_a_file_is_refused(tmp_path: Path):
    root = tmp_path / "blobs"
    root.write_bytes(b"not a directory")

    with pytest.raises(StoreError, match="is not a directory") as caught:
        FsspecSaver(root.as_uri())

    assert str(root) in str(caught.value)


def test_loading_a_directory_is_a_store_error_naming_it(tmp_path: Path):
    saver = FsspecSaver(tmp_path)
    saver.save("ops/pca/v1", b"x")

    with pytest.raises(StoreError, match="cannot read 'ops/pca'") as caught:
        saver.load("ops/pca")

    assert isinstance(caught.value, ChariotsError)


def test_saving_below_a_blob_is_a_store_error(tmp_path: Path):
    saver = FsspecSaver(tmp_path)
    saver.save("ops", b"a blob, not a directory")

    with pytest.raises(StoreError, match="cannot write 'ops/pca'"):
        saver.save("ops/pca", b"x")


def test_an_unknown_protocol_is_a_config_error_naming_the_url():
    with pytest.raises(ConfigError, match="nosuchfs://bucket") as caught:
        FsspecSaver("nosuchfs://bucket/prefix")

    assert "Protocol not known" in str(caught.value)


def test_memory_urls_share_one_filesystem_per_process():
    first, second = FsspecSaver("memory://chariots-fsspec-test/a"), FsspecSaver("memory://chariots-fsspec-test/a")
    first.save("x", b"shared")

    assert second.load("x") == b"shared"
    assert not FsspecSaver("memory://chariots-fsspec-test/b").exists("x")
    first.delete("x")


def test_a_pickled_saver_reopens_the_same_root_with_its_options(tmp_path: Path):
    saver = FsspecSaver("dir://blobs", path=str(tmp_path), target_protocol="file")
    saver.save("ops/a", b"x")

    copy = pickle.loads(pickle.dumps(saver))

    assert (copy.url, copy.storage_options) == (saver.url, saver.storage_options)
    assert copy.load("ops/a") == b"x"


def _save_through_a_pickled_saver(payload: bytes) -> None:
    pickle.loads(payload).save("from/child", b"written by the child")


def test_a_saver_sent_to_another_process_writes_where_the_original_reads(tmp_path: Path):
    saver = FsspecSaver(tmp_path.as_uri())
    child = FORK.Process(target=_save_through_a_pickled_saver, args=(pickle.dumps(saver),))

    child.start()
    child.join(60)

    assert child.exitcode == 0
    assert saver.load("from/child") == b"written by the child"


# -- missing filesystem packages, in a fresh interpreter that cannot import them ----------------
def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("module", "url", "extra"),
    [("gcsfs", "gs://bucket/prefix", "gcs"), ("s3fs", "s3://bucket/prefix", "dask")],
)
def test_a_missing_filesystem_package_names_the_extra_to_install(module, url, extra):
    result = run_python(
        f"""
        import sys
        sys.modules[{module!r}] = None  # as if it were not installed
        from chariots_core import BackendError, Chariots
        from chariots_fsspec import FsspecSaver
        for attempt in (lambda: FsspecSaver({url!r}), lambda: Chariots([], op_store="memory", saver={url!r})):
            try:
                attempt()
            except BackendError as exc:
                assert isinstance(exc, ImportError)
                print("BackendError:", exc)
            else:
                print("no error")
        """
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert line.startswith("BackendError:")
        assert f"pip install 'chariots[{extra}]'" in line and url in line


# -- the gs:// code path, on a local fake ------------------------------------------------------
def _use_gs_on_a_fake(reports) -> None:
    from fsspec.implementations.memory import MemoryFileSystem

    class FakeGCS(MemoryFileSystem):
        """Google Cloud Storage as fsspec sees it, kept in memory."""

        protocol = ("gs", "gcs")
        store: dict = {}  # its own buckets, apart from memory://
        pseudo_dirs = [""]

    fsspec.register_implementation("gs", FakeGCS, clobber=True)
    saver = FsspecSaver("gs://bucket/prefix")
    saver.save("ops/a", b"bytes on the fake")
    observed = {
        "type": type(saver._fs).__name__,
        "load": saver.load("ops/a"),
        "exists": (saver.exists("ops/a"), saver.exists("ops"), saver.exists("ops/b")),
        "objects": sorted(FakeGCS.store),
    }
    try:
        saver.load("ops/b")
    except FileNotFoundError as exc:
        observed["missing"] = str(exc)
    saver.delete("ops/a")
    saver.delete("ops/a")
    observed["after_delete"] = saver.exists("ops/a")

    app = Chariots([], op_store=MemoryOpStore(), saver="gs://bucket/app")
    app.saver.save("blob", b"through the app")
    observed["app_saver"] = (repr(app.saver), sorted(FakeGCS.store))
    reports.send(observed)


def test_gs_urls_work_through_the_fsspec_gcs_protocol():
    receiver, sender = FORK.Pipe(duplex=False)
    child = FORK.Process(target=_use_gs_on_a_fake, args=(sender,))

    child.start()
    observed = receiver.recv() if receiver.poll(60) else None
    child.join(30)

    assert child.exitcode == 0 and observed is not None
    assert observed["type"] == "FakeGCS"
    assert observed["load"] == b"bytes on the fake"
    assert observed["exists"] == (True, False, False)
    # One object, written in place: no temporary name on an object store.
    assert len(observed["objects"]) == 1 and observed["objects"][0].endswith("bucket/prefix/ops/a")
    assert "ops/b" in observed["missing"] and "gs://bucket/prefix" in observed["missing"]
    assert observed["after_delete"] is False
    app_saver, objects = observed["app_saver"]
    assert app_saver == "FsspecSaver('gs://bucket/app')"
    assert [name for name in objects if name.endswith("bucket/app/blob")]


# -- debris of killed writes ----------------------------------------------------------------------
def _write_forever(root: str, ready) -> None:
    with FsspecSaver(root).open_write("ops/model/big") as file:
        file.write(b"x" * 1_000_000)
        file.flush()
        ready.send("writing")
        signal.pause()  # killed here, half-way through the write


def _killed_write(root: Path) -> list[str]:
    """Kill a process in the middle of a write; return what it left in ``.partial``."""
    ready, child_end = FORK.Pipe()
    child = FORK.Process(target=_write_forever, args=(str(root), child_end))
    child.start()
    try:
        assert ready.poll(60) and ready.recv() == "writing"
    finally:
        child.kill()
        child.join(60)
    assert files_under(root / ".partial")
    return files_under(root / ".partial")


def test_a_killed_write_leaves_no_blob_and_its_debris_goes_once_old(tmp_path: Path):
    (left,) = _killed_write(tmp_path)
    saver = FsspecSaver(tmp_path)  # too young to be taken for a write in progress: kept
    assert not saver.exists("ops/model/big") and [blob.path for blob in saver.blobs()] == []
    assert files_under(tmp_path / ".partial") == [left]

    aged = time.time() - DEBRIS_AGE - 60
    os.utime(tmp_path / ".partial" / left, (aged, aged))
    FsspecSaver(tmp_path)  # opening the root collects what is older than DEBRIS_AGE

    assert files_under(tmp_path / ".partial") == []


def test_collect_debris_removes_what_is_older_than_asked_and_dry_run_only_reports(tmp_path: Path):
    (left,) = _killed_write(tmp_path)
    saver = FsspecSaver(tmp_path)
    saver.save("ops/kept", b"a blob")

    assert saver.collect_debris(3600) == []  # a minute-old write may still be running
    assert saver.collect_debris(0, dry_run=True) == [f".partial/{left}"]
    assert files_under(tmp_path / ".partial") == [left]
    assert saver.collect_debris(0) == [f".partial/{left}"]
    assert files_under(tmp_path / ".partial") == [] and saver.load("ops/kept") == b"a blob"


def test_partial_is_the_savers_own_and_no_blob_path(tmp_path: Path):
    saver = FsspecSaver(tmp_path)
    with pytest.raises(StoreError, match="'.partial' is where FsspecSaver.* keeps writes in progress"):
        saver.save(".partial/x", b"x")
    with pytest.raises(StoreError, match="'.partial'"):
        saver.load(".partial/x")


def test_durable_is_kept_when_the_saver_is_pickled(tmp_path: Path):
    copy = pickle.loads(pickle.dumps(FsspecSaver(tmp_path, durable=False)))
    assert copy.durable is False and copy.url == str(tmp_path)
