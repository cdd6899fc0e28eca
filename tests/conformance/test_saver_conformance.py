"""The behaviour every saver must share, run against each backend in ``conftest.SAVERS``."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from chariots_core import BaseSaver, ChariotsError
from chariots_core.errors import StoreError


def test_a_saver_satisfies_the_protocol(saver):
    assert isinstance(saver, BaseSaver)


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("blob", b"hello"),
        ("ops/pca/0123abcd", b"\x00\xff" * 10),
        ("deep/er/and/deeper/still", b""),
        ("big", os.urandom(1 << 20)),
        ("naïve name with spaces", b"unicode path"),
    ],
)
def test_saved_bytes_come_back_unchanged(saver, path, data):
    saver.save(path, data)

    assert saver.load(path) == data
    assert saver.exists(path)


def test_bytes_like_values_are_saved_as_bytes(saver):
    saver.save("a", bytearray(b"array"))
    saver.save("b", memoryview(b"view"))

    assert (saver.load("a"), saver.load("b")) == (b"array", b"view")
    assert type(saver.load("a")) is bytes


def test_saving_again_replaces_the_bytes(saver):
    saver.save("ops/model", b"a much longer first version")
    saver.save("ops/model", b"short")

    assert saver.load("ops/model") == b"short"


def test_loading_what_was_never_saved_is_a_file_not_found_naming_the_path(saver):
    saver.save("ops/other", b"x")

    with pytest.raises(FileNotFoundError, match="ops/missing"):
        saver.load("ops/missing")


def test_exists_is_true_only_for_saved_blobs(saver):
    saver.save("ops/pca/v1", b"x")

    assert saver.exists("ops/pca/v1")
    assert not saver.exists("ops/pca/v2")
    assert not saver.exists("ops/pca")  # a prefix of blobs is not a blob
    assert not saver.exists("never")


def test_delete_removes_and_deleting_nothing_is_fine(saver):
    saver.save("ops/pca/v1", b"x")
    saver.save("ops/pca/v2", b"y")

    saver.delete("ops/pca/v1")
    saver.delete("ops/pca/v1")
    saver.delete("never/saved")

    assert not saver.exists("ops/pca/v1")
    assert saver.load("ops/pca/v2") == b"y"
    with pytest.raises(FileNotFoundError):
        saver.load("ops/pca/v1")


@pytest.mark.parametrize("bad_path", ["", "/etc/passwd", "../outside", "ops/../../x", "a//b", "./a", "a/", "a/./b"])
@pytest.mark.parametrize("action", ["save", "load", "exists", "delete"])
def test_paths_that_could_escape_the_root_are_refused(saver, bad_path, action, tmp_path: Path):
    arguments = (bad_path, b"x") if action == "save" else (bad_path,)

    with pytest.raises(StoreError, match="relative") as caught:
        getattr(saver, action)(*arguments)

    assert isinstance(caught.value, ChariotsError)
    assert not (tmp_path.parent / "outside").exists()


def test_a_second_saver_on_the_same_root_sees_the_bytes(saver_backend, saver, tmp_path: Path):
    if not saver_backend.persistent:
        pytest.skip(f"{saver_backend.name} keeps nothing beyond one object")
    saver.save("ops/pca/v1", b"persisted")

    other = saver_backend.open(tmp_path)

    assert other.load("ops/pca/v1") == b"persisted"
    other.delete("ops/pca/v1")
    assert not saver.exists("ops/pca/v1")


def test_threads_writing_at_once_leave_whole_blobs(saver):
    contents = {thread: bytes([thread]) * 200_000 for thread in range(6)}
    errors: list[BaseException] = []

    def work(thread: int) -> None:
        try:
            for index in range(5):
                saver.save(f"own/{thread}/{index}", contents[thread])
                saver.save("contended", contents[thread])
        except BaseException as exc:  # surfaced below: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(thread,)) for thread in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    for thread in range(6):
        for index in range(5):
            assert saver.load(f"own/{thread}/{index}") == contents[thread]
    assert saver.load("contended") in contents.values()


# -- streams --------------------------------------------------------------------------------------
def test_open_write_streams_chunks_and_replaces_the_bytes_when_the_block_ends(saver):
    saver.save("ops/model", b"old")
    chunks = [bytes([index]) * 100_000 for index in range(10)]

    with saver.open_write("ops/model") as file:
        for chunk in chunks:
            file.write(chunk)
        file.write(memoryview(b"tail"))
        assert saver.load("ops/model") == b"old"  # nobody sees a write before it ends

    assert saver.load("ops/model") == b"".join(chunks) + b"tail"


def test_a_write_block_that_raises_leaves_the_old_bytes_and_nothing_new(saver):
    saver.save("ops/model", b"old")

    for path in ("ops/model", "ops/never"):
        with pytest.raises(ZeroDivisionError), saver.open_write(path) as file:
            file.write(b"half of the new bytes")
            raise ZeroDivisionError("the caller failed half-way")

    assert saver.load("ops/model") == b"old"
    assert not saver.exists("ops/never")
    assert sorted(blob.path for blob in saver.blobs()) == ["ops/model"]


def test_open_read_gives_a_seekable_file_of_the_bytes(saver):
    data = os.urandom(300_000)
    saver.save("ops/model", data)

    with saver.open_read("ops/model") as file:
        assert file.read(10) == data[:10]
        file.seek(0)
        assert file.read() == data

    with pytest.raises(FileNotFoundError, match="ops/missing"), saver.open_read("ops/missing"):
        pass


# -- listing and debris ---------------------------------------------------------------------------
def test_blobs_lists_every_blob_below_a_directory_with_its_size_and_time(saver):
    before = time.time() - 5  # object stores keep whole seconds
    saver.save("ops/pca/1", b"x" * 10)
    saver.save("ops/pca/2", b"y" * 20)
    saver.save("jobs/j", b"z")
    saver.save("opsidian", b"not below ops/")

    listed = {blob.path: blob for blob in saver.blobs("ops")}

    assert {path: blob.size for path, blob in listed.items()} == {"ops/pca/1": 10, "ops/pca/2": 20}
    assert all(before <= blob.modified <= time.time() + 5 for blob in listed.values())
    assert {blob.path for blob in saver.blobs()} == {"ops/pca/1", "ops/pca/2", "jobs/j", "opsidian"}
    assert list(saver.blobs("nothing/here")) == []


def test_blobs_never_lists_a_write_in_progress(saver):
    with saver.open_write("ops/model") as file:
        file.write(b"not yet")
        assert [blob.path for blob in saver.blobs()] == []
    assert [blob.path for blob in saver.blobs()] == ["ops/model"]


def test_collect_debris_never_touches_blobs(saver):
    saver.save("ops/model", b"kept")

    assert saver.collect_debris(0, dry_run=True) == saver.collect_debris(0) == []
    assert saver.load("ops/model") == b"kept"
