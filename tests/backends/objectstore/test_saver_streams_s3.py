"""FsspecSaver's streams on S3 (s3fs against a local moto server): multipart writes that commit
whole or not at all, listing, and big blobs checked before an op reads them."""

from __future__ import annotations

import os
import time

import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

from chariots_test_ops import StreamedOp  # noqa: E402

from chariots_core import Chariots, Node, Pipeline  # noqa: E402
from chariots_core.errors import IntegrityError  # noqa: E402
from chariots_core.verified import SMALL_BLOB  # noqa: E402
from chariots_fsspec import FsspecSaver  # noqa: E402

PART = 5 * 1024 * 1024  # S3's smallest multipart part


def saver_on(bucket: str) -> FsspecSaver:
    return FsspecSaver(f"s3://{bucket}/blobs", default_block_size=PART)


def uploads_in_progress(bucket: str) -> list:
    import s3fs

    return s3fs.S3FileSystem().call_s3("list_multipart_uploads", Bucket=bucket).get("Uploads", [])


def test_a_multipart_write_commits_when_its_block_ends(bucket):
    saver = saver_on(bucket)
    chunks = [os.urandom(1024 * 1024) for _ in range(12)]

    with saver.open_write("ops/model/big") as file:
        for chunk in chunks:
            file.write(chunk)
        assert not saver.exists("ops/model/big")

    assert saver.load("ops/model/big") == b"".join(chunks)
    assert uploads_in_progress(bucket) == []


def test_a_write_that_fails_after_parts_were_uploaded_is_aborted(bucket):
    saver = saver_on(bucket)
    saver.save("ops/model/big", b"the old model")

    with pytest.raises(RuntimeError, match="the model broke"), saver.open_write("ops/model/big") as file:
        file.write(os.urandom(2 * PART))  # a part is on its way to S3
        raise RuntimeError("the model broke half-way")

    assert saver.load("ops/model/big") == b"the old model"
    assert uploads_in_progress(bucket) == []  # no hidden parts left to pay for


def test_blobs_lists_objects_with_their_size_and_time(bucket):
    saver = saver_on(bucket)
    before = time.time() - 5
    saver.save("ops/a/1", b"x" * 3)
    saver.save("jobs/j", b"y")

    listed = {blob.path: blob for blob in saver.blobs("ops")}

    assert {path: blob.size for path, blob in listed.items()} == {"ops/a/1": 3}
    assert before <= listed["ops/a/1"].modified <= time.time() + 5
    assert saver.collect_debris(0) == []


def test_a_big_blob_is_copied_once_while_checked_then_read(bucket):
    state = os.urandom(SMALL_BLOB + 1024 * 1024)
    node = Node(StreamedOp(state), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__", name="big")
    app = Chariots([Pipeline([node], "big")], op_store="memory", saver=saver_on(bucket))
    app.save_pipeline("big")
    app.install_ops("big", {"big": StreamedOp()})
    app.load_pipeline("big")
    assert app.serving_pipeline("big").node_for_name["big"].op.state == state

    (record,) = app.op_store.op_versions("big")
    app.saver.save(record.blob_path, state[:-1] + bytes([state[-1] ^ 1]))
    StreamedOp.loads.clear()
    with pytest.raises(IntegrityError, match="the bytes are corrupt"):
        app.load_pipeline("big")
    assert StreamedOp.loads == []


@pytest.mark.parametrize(
    ("data", "requests"),
    # An empty object refuses a range from byte 0: it is read again whole (its size, then it).
    [(b"x" * SMALL_BLOB, ["GET"]), (b"", ["GET", "HEAD", "GET"])],
    ids=["small", "empty"],
)
def test_loading_a_whole_blob_is_one_request(bucket, data, requests):
    saver = saver_on(bucket)
    saver.save("ops/model/1", data)
    sent = []
    saver._fs.s3.meta.events.register("before-send.s3", lambda request, **_: sent.append(request.method))

    assert saver.load("ops/model/1") == data
    assert sent == requests
    with pytest.raises(FileNotFoundError, match="ops/model/2"):
        saver.load("ops/model/2")
