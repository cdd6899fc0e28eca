"""Op states flow to and from the saver as streams, checked before any op reads them."""

from __future__ import annotations

import io
import os
import threading
from contextlib import contextmanager

import pytest
from chariots_test_ops import StreamedOp

from chariots_core import Chariots, Node, Pipeline
from chariots_core.errors import IntegrityError, StoreError
from chariots_core.ml import BaseMLOp, MLMode
from chariots_core.savers import MemorySaver
from chariots_core.verified import SMALL_BLOB

IN, OUT = "__pipeline_input__", "__pipeline_output__"


def one_op(op, name: str = "streamed") -> Pipeline:
    return Pipeline([Node(op, input_nodes=[IN], output_nodes=OUT, name=name)], name)


@pytest.mark.parametrize("size", [1000, SMALL_BLOB + 1000], ids=["small", "big"])
def test_a_streaming_op_round_trips_and_damage_stops_before_it_reads(app_for, size):
    state = os.urandom(size)
    app = app_for([one_op(StreamedOp(state))])
    app.save_pipeline("streamed")
    (record,) = app.op_store.op_versions("streamed")
    assert record.size == size
    StreamedOp.loads.clear()
    app.load_pipeline("streamed")
    assert app.call_pipeline("streamed", 0).value == size and StreamedOp.loads == [state[:8]]

    damaged = bytearray(app.saver.load(record.blob_path))
    damaged[-1] ^= 0x01
    app.saver.save(record.blob_path, bytes(damaged))
    StreamedOp.loads.clear()
    with pytest.raises(IntegrityError, match=f"op 'streamed' version .*blob {record.blob_path!r}.*the bytes are corrupt"):
        app.load_pipeline("streamed")
    assert StreamedOp.loads == []  # the op never saw a byte of it

    app.saver.delete(record.blob_path)
    with pytest.raises(IntegrityError, match="the bytes are missing"):
        app.load_pipeline("streamed")


class Memorizer(BaseMLOp):
    """A model that is its training data: as big as the data it is fitted on."""

    def fit(self, data):
        self._model = bytes(data)

    def predict(self, _):
        return len(self._model)


def test_a_big_model_streams_through_its_serializer_and_loads_back(app_for):
    data = os.urandom(SMALL_BLOB + 4096)
    train = Pipeline([Node(Memorizer(MLMode.FIT), input_nodes=[IN])], "train")
    pred = Pipeline([Node(Memorizer(MLMode.PREDICT), input_nodes=[IN], output_nodes=OUT)], "pred")
    app = app_for([train, pred])
    app.call_pipeline(train, data)
    app.save_pipeline(train)

    app.load_pipeline(pred)

    assert app.call_pipeline(pred, None).value == len(data)
    assert app.serving_pipeline(pred).node_for_name["memorizer"].op.model == data


def test_a_loaded_state_saved_again_by_another_store_names_the_same_blob(app_for):
    """As the CLI does: what a holding store saved is saved for real without a second copy."""

    def train() -> Pipeline:
        return Pipeline([Node(Memorizer(MLMode.FIT), input_nodes=[IN])], "train")

    first = app_for([train()])
    first.call_pipeline("train", b"model bytes")
    first.save_pipeline("train")
    reader = Chariots([train()], op_store=first.op_store, saver=first.saver)  # a new process, say
    reader.load_pipeline("train")
    second = Chariots([train()], op_store="memory", saver=first.saver)  # e.g. the real store after the holding one
    second.install_ops("train", {"memorizer": reader.serving_pipeline("train").node_for_name["memorizer"].op})

    second.save_pipeline("train")

    (blob,) = first.saver.blobs("ops")
    assert [record.blob_path for record in second.op_store.op_versions("memorizer")] == [blob.path]
    second.call_pipeline("train", b"retrained")  # a new training is new state: a new blob
    second.save_pipeline("train")
    assert len(list(first.saver.blobs("ops"))) == 2


@pytest.mark.parametrize("change", ["truncated", "extended", "flipped", "flipped-mid"])
def test_a_big_model_read_into_memory_is_checked_before_it_is_deserialized(app_for, change):
    # Flipped bytes at the end and in the middle (in another chunk of the read than the last):
    # every chunk read counts in the digest.
    train = Pipeline([Node(Memorizer(MLMode.FIT), input_nodes=[IN])], "train")
    app = app_for([train])
    app.call_pipeline(train, os.urandom(SMALL_BLOB + 4096))
    app.save_pipeline(train)
    (record,) = app.op_store.op_versions("memorizer")
    data = app.saver.load(record.blob_path)
    middle = len(data) // 2 + 7
    changed = {
        "truncated": data[:-1],
        "extended": data + b"\0",
        "flipped": data[:-1] + bytes([data[-1] ^ 1]),
        "flipped-mid": data[:middle] + bytes([data[middle] ^ 1]) + data[middle + 1 :],
    }[change]
    app.saver.save(record.blob_path, changed)
    reader = Chariots([Pipeline([Node(Memorizer(MLMode.PREDICT), input_nodes=[IN], output_nodes=OUT)], "pred")],
                      op_store=app.op_store, saver=app.saver)

    with pytest.raises(IntegrityError, match="the bytes are corrupt") as caught:
        reader.load_pipeline("pred")

    assert ("another size than the" in str(caught.value)) == (not change.startswith("flipped"))
    assert not reader.is_pipeline_loaded("pred")


class _FailingFile(io.BytesIO):
    """A file whose reads fail once ``limit`` bytes were read: a disk or network error mid-blob."""

    def __init__(self, data: bytes, limit: int) -> None:
        super().__init__(data)
        self._limit = limit

    def readinto(self, target):
        if self.tell() >= self._limit:
            raise OSError(5, "Input/output error")
        return super().readinto(target)


class FailingReads(MemorySaver):
    """A memory saver whose files fail part-way through being read."""

    @contextmanager
    def open_read(self, path):
        yield _FailingFile(self.load(path), SMALL_BLOB)


def test_a_read_that_fails_half_way_is_a_store_error_naming_the_blob_and_leaves_no_thread():
    saver = FailingReads()
    train = Pipeline([Node(Memorizer(MLMode.FIT), input_nodes=[IN])], "train")
    app = Chariots([train], op_store="memory", saver=saver)
    app.call_pipeline(train, os.urandom(3 * SMALL_BLOB))
    app.save_pipeline(train)
    (record,) = app.op_store.op_versions("memorizer")
    reader = Chariots([Pipeline([Node(Memorizer(MLMode.PREDICT), input_nodes=[IN], output_nodes=OUT)], "pred")],
                      op_store=app.op_store, saver=saver)

    with pytest.raises(StoreError, match=f"blob {record.blob_path!r}.*reading the bytes failed.*Input/output error"):
        reader.load_pipeline("pred")

    assert not reader.is_pipeline_loaded("pred")
    assert not [thread for thread in threading.enumerate() if thread.name == "chariots-sha256"]
