"""Nothing unchecked reaches a deserializer: datasets are recorded when written and checked when read."""

from __future__ import annotations

import hashlib
import json
import pathlib
import pickle

import pytest
from chariots_test_data import total_pipeline

from chariots_core import (
    Chariots,
    DataLoadingNode,
    DataSavingNode,
    MemorySaver,
    Pipeline,
    SequentialRunner,
)
from chariots_core.errors import ConfigError, IntegrityError, PipelineDefinitionError, WrongTypeError
from chariots_core.ml import CSVSerializer, DillSerializer, JSONSerializer, StreamingSerializer
from chariots_core.op_store.datasets import RECENT_WRITES, DatasetRecord

IN, OUT = "__pipeline_input__", "__pipeline_output__"


def writer(path="numbers.json", serializer=JSONSerializer, name="prepare"):
    return Pipeline([DataSavingNode(serializer(), path, input_nodes=[IN], output_nodes=OUT)], name)


def reader(path="numbers.json", serializer=JSONSerializer, name="total", **options):
    return total_pipeline(path, serializer, name, **options)


class RunsCode:
    """Unpickling this creates ``marker``: the proof that a pickle ran code."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_every_write_is_recorded_with_its_sha256_size_and_writer(app_for):
    app = app_for([writer(), reader()])
    app.call_pipeline("prepare", [1, 2])
    app.call_pipeline("prepare", [3])

    entries = app.op_store.journal(DatasetRecord, "data/numbers.json")

    stored = app.saver.load("data/numbers.json")
    newest, first = entries[0].record, entries[1].record
    assert (newest.sha256, newest.size) == (hashlib.sha256(stored).hexdigest(), len(stored))
    assert (newest.pipeline_name, newest.node_name, newest.path) == ("prepare", "save:numbers.json", "data/numbers.json")
    assert first.sha256 == hashlib.sha256(b"[1, 2]").hexdigest() and first.saved_at <= newest.saved_at
    assert app.call_pipeline("total").value == 3


def test_changed_bytes_are_refused_before_the_deserializer_sees_them(app_for, tmp_path):
    app = app_for([writer("model.pkl", DillSerializer), reader("model.pkl", DillSerializer)])
    app.call_pipeline("prepare", [1, 2])
    marker = tmp_path / "code ran"
    app.saver.save("data/model.pkl", pickle.dumps(RunsCode(marker)))  # swapped behind the app's back

    with pytest.raises(IntegrityError) as caught:
        app.call_pipeline("total")

    message = str(caught.value)
    assert "dataset 'data/model.pkl' (read by node 'load:model.pkl' of pipeline 'total')" in message
    assert "the bytes changed since the app wrote them" in message
    assert "pipeline 'prepare' (node 'save:model.pkl') wrote" in message
    assert not marker.exists()


def test_bytes_the_app_never_wrote_are_refused_with_the_external_hint(app_for):
    app = app_for([reader()])
    app.saver.save("data/numbers.json", b"[1, 2]")

    with pytest.raises(IntegrityError, match="'data/numbers.json'.*the app never wrote these bytes.*external=True"):
        app.call_pipeline("total")


def test_bytes_of_a_recent_write_are_accepted_older_ones_refused(app_for):
    """Two runs writing one dataset at once may leave the bytes of the one recorded first."""
    app = app_for([writer(), reader()])
    app.call_pipeline("prepare", [1])
    first = app.saver.load("data/numbers.json")
    app.call_pipeline("prepare", [2])

    app.saver.save("data/numbers.json", first)
    assert app.call_pipeline("total").value == 1

    for number in range(RECENT_WRITES):
        app.call_pipeline("prepare", [100 + number])
    app.saver.save("data/numbers.json", first)
    with pytest.raises(IntegrityError, match="changed since the app wrote them"):
        app.call_pipeline("total")


def test_external_files_are_read_as_they_are_in_data_formats(app_for):
    app = app_for([reader(external=True)])
    app.saver.save("data/numbers.json", b"[40, 2]")

    assert app.call_pipeline("total").value == 42


def test_an_external_csv_is_read(app_for):
    pandas = pytest.importorskip("pandas")
    load = Pipeline([DataLoadingNode(CSVSerializer(), "drop/in.csv", output_nodes=OUT, external=True)], "load")
    app = app_for([load])
    app.saver.save("data/drop/in.csv", b"a,b\n1,x\n2,y\n")

    pandas.testing.assert_frame_equal(app.call_pipeline(load).value, pandas.DataFrame({"a": [1, 2], "b": ["x", "y"]}))


def test_external_pickles_need_a_second_explicit_opt_in(app_for, tmp_path):
    with pytest.raises(PipelineDefinitionError) as caught:
        DataLoadingNode(DillSerializer(), "model.pkl", external=True)
    message = str(caught.value)
    assert "DataLoadingNode 'load:model.pkl' reads an external file through DillSerializer, which runs code" in message
    assert "allow_code_execution=True" in message

    trusted = Pipeline(
        [DataLoadingNode(DillSerializer(), "model.pkl", output_nodes=OUT, external=True, allow_code_execution=True)],
        "trusted",
    )
    app = app_for([trusted])
    marker = tmp_path / "code ran"
    app.saver.save("data/model.pkl", pickle.dumps(RunsCode(marker)))
    app.call_pipeline(trusted)
    assert marker.exists()  # what the opt-in allows: the file's writer runs code in the app


def test_a_loader_with_its_own_saver_reads_only_external_files():
    own = MemorySaver()
    own.save("data/numbers.json", b"[1, 2]")
    checked = Pipeline([DataLoadingNode(JSONSerializer(), "numbers.json", output_nodes=OUT, saver=own)], "checked")
    external = Pipeline(
        [DataLoadingNode(JSONSerializer(), "numbers.json", output_nodes=OUT, saver=own, external=True)], "external"
    )

    with pytest.raises(ConfigError, match="cannot check dataset 'numbers.json': no app records what is written"):
        SequentialRunner().run(checked)
    assert SequentialRunner().run(external) == [1, 2]


class HalfWritingSerializer(StreamingSerializer):
    """Writes the start of its output, then finds a value it cannot hold."""

    def serialize_to(self, target, file):
        file.write(b"[1, 2")
        raise WrongTypeError("cannot hold this value")

    def deserialize_from(self, file):
        return json.loads(file.read())


def test_a_write_that_fails_half_way_changes_neither_the_bytes_nor_the_records(app_for):
    good, bad = writer(), writer(serializer=HalfWritingSerializer, name="bad")
    app = app_for([good, bad, reader()])
    app.call_pipeline("prepare", [5])

    with pytest.raises(WrongTypeError, match="cannot hold this value"):
        app.call_pipeline("bad", [6])

    assert app.saver.load("data/numbers.json") == b"[5]"
    assert len(app.op_store.journal(DatasetRecord, "data/numbers.json")) == 1
    assert app.call_pipeline("total").value == 5


def test_worker_processes_refuse_a_memory_op_store_they_would_only_copy(tmp_path):
    pytest.importorskip("chariots_fsspec")
    multiprocess_pool = pytest.importorskip("chariots_multiprocess")
    save = Pipeline([DataSavingNode(JSONSerializer(), "numbers.json", input_nodes=[IN], output_nodes=OUT)], "save")
    pool = multiprocess_pool.MultiprocessWorkerPool(n_workers=1)
    with Chariots([save], op_store="memory", saver=str(tmp_path / "blobs"), worker_pool=pool) as app:
        job = app.call_pipeline("save", [1], use_worker=True)
        failed = app.worker_pool.wait(job.job_id, timeout=60)
        pool.close()

    assert failed.error["type"] == "ConfigError" and failed.error["node"] == "save:numbers.json"
    assert "the MemoryOpStore that records its datasets lives in process" in failed.error["message"]
