"""Data nodes through the app: datasets saved by one pipeline and loaded by another."""

from __future__ import annotations

import json

import pytest
from chariots_test_data import SumOp, prepare_pipeline, total_pipeline

from chariots_core import (
    Chariots,
    DataLoadingNode,
    DataSavingNode,
    InProcessWorkerPool,
    MemorySaver,
    Node,
    Pipeline,
    SequentialRunner,
    Version,
    VersionableMeta,
    VersionedField,
    VersionType,
)
from chariots_core.errors import (
    ChariotsError,
    ConfigError,
    IntegrityError,
    NotSavedError,
    PipelineDefinitionError,
    SerializationError,
    WrongTypeError,
    failed_node,
)
from chariots_core.ml import CSVSerializer, DillSerializer, JSONSerializer

IN, OUT = "__pipeline_input__", "__pipeline_output__"


# -- the happy path ----------------------------------------------------------------------
def test_one_pipeline_saves_a_dataset_another_loads_it(app_for):
    app = app_for([prepare_pipeline(), total_pipeline()])
    assert app.call_pipeline("prepare", [1, 2, 3]).value == [2, 4, 6]
    assert app.call_pipeline("total").value == 12
    # Every run reads the dataset again: a new save is seen at once.
    app.call_pipeline("prepare", [10])
    assert app.call_pipeline("total").value == 20
    assert json.loads(app.saver.load("data/numbers.json")) == [20]


def test_datasets_are_files_under_the_app_path_and_survive_a_restart(tmp_path):
    pytest.importorskip("chariots_lmdb")
    pytest.importorskip("chariots_fsspec")
    with Chariots([prepare_pipeline()], path=tmp_path) as app:
        app.call_pipeline("prepare", [1, 2])
    dataset = tmp_path / "blobs" / "data" / "numbers.json"
    assert json.loads(dataset.read_text()) == [2, 4]
    with Chariots([total_pipeline(), total_pipeline(name="external", external=True)], path=tmp_path) as again:
        assert again.call_pipeline("total").value == 6
        # A file put there by hand is not what the app wrote: only a node that says so reads it.
        dataset.write_text("[100, 1]")
        with pytest.raises(IntegrityError, match="'data/numbers.json'.*the bytes changed since the app wrote them"):
            again.call_pipeline("total")
        assert again.call_pipeline("external").value == 101


def test_datasets_live_under_data_apart_from_ops_and_jobs():
    saver = MemorySaver()
    nodes = [
        DataSavingNode(JSONSerializer(), "ops/first.json", input_nodes=[IN], output_nodes="kept"),
        DataSavingNode(JSONSerializer(), "jobs/second.json", input_nodes=["kept"], output_nodes=OUT),
    ]
    app = Chariots([Pipeline(nodes, "paths")], op_store="memory", saver=saver)
    assert app.call_pipeline("paths", {"a": 1}).value == {"a": 1}
    assert saver.exists("data/ops/first.json") and saver.exists("data/jobs/second.json")
    assert not saver.exists("ops/first.json") and not saver.exists("jobs/second.json")


def test_a_csv_dataset_round_trips_a_dataframe(app_for):
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame({"sepal": [5.1, 4.9], "species": ["setosa", "virginica"]})
    save = Pipeline([DataSavingNode(CSVSerializer(), "iris/train.csv", input_nodes=[IN])], "save_iris")
    load = Pipeline([DataLoadingNode(CSVSerializer(), "iris/train.csv", output_nodes=OUT)], "load_iris")
    app = app_for([save, load])
    assert app.call_pipeline(save, frame).value is None  # nothing is routed to the output
    pandas.testing.assert_frame_equal(app.call_pipeline(load).value, frame)
    assert app.saver.load("data/iris/train.csv").decode().splitlines()[0] == "sepal,species"


def test_node_objects_wire_data_nodes_and_nested_pipelines_are_bound():
    loader = DataLoadingNode(DillSerializer, "numbers.pkl")  # a serializer class works too
    inner = Pipeline([loader, Node(SumOp(), input_nodes=[loader], output_nodes=OUT)], "inner")
    outer = Pipeline([Node(inner, output_nodes=OUT)], "outer")
    nested = Pipeline([DataSavingNode(DillSerializer, "numbers.pkl", input_nodes=[IN])], "nested")
    writer = Pipeline([Node(nested, input_nodes=[IN])], "writer")  # records from a nested pipeline too
    app = Chariots([outer, writer], op_store="memory", saver="memory")
    app.call_pipeline("writer", (1, 2))
    assert app.call_pipeline("outer").value == 3
    with pytest.raises(ConfigError, match="has no saver") as caught:
        SequentialRunner().run(outer)
    assert failed_node(caught.value) == "load:numbers.pkl"  # the innermost node, inside 'inner'
    assert caught.value.__notes__ == [
        "in node 'load:numbers.pkl' of pipeline 'inner'", "in node 'inner' of pipeline 'outer'"
    ]


def test_async_calls_run_bound_data_nodes():
    with Chariots(
        [prepare_pipeline(), total_pipeline()], op_store="memory", saver="memory", worker_pool=InProcessWorkerPool()
    ) as app:
        job = app.call_pipeline("prepare", [3], use_worker=True)
        assert app.worker_pool.wait(job.job_id, timeout=30).value == [6]
        assert app.call_pipeline("total").value == 6


def test_worker_processes_write_datasets_through_the_apps_saver(tmp_path):
    pytest.importorskip("chariots_lmdb")
    pytest.importorskip("chariots_fsspec")
    multiprocess_pool = pytest.importorskip("chariots_multiprocess")
    # Only library classes: the worker processes cannot import this test module.
    save = Pipeline([DataSavingNode(JSONSerializer(), "numbers.json", input_nodes=[IN], output_nodes=OUT)], "save")
    load = Pipeline([DataLoadingNode(JSONSerializer(), "numbers.json", output_nodes=OUT)], "load")
    pool = multiprocess_pool.MultiprocessWorkerPool(n_workers=1)
    with Chariots([save, load], path=tmp_path, worker_pool=pool) as app:
        job = app.call_pipeline("save", [1, 4], use_worker=True)
        assert app.worker_pool.wait(job.job_id, timeout=60).value == [1, 4]
        assert json.loads((tmp_path / "blobs" / "data" / "numbers.json").read_text()) == [1, 4]
        job = app.call_pipeline("load", use_worker=True)  # the worker checks what another one wrote
        assert app.worker_pool.wait(job.job_id, timeout=60).value == [1, 4]
        (tmp_path / "blobs" / "data" / "numbers.json").write_text("[5]")
        job = app.call_pipeline("load", use_worker=True)
        failed = app.worker_pool.wait(job.job_id, timeout=60)
        assert failed.error["type"] == "IntegrityError" and "data/numbers.json" in failed.error["message"]


def test_worker_processes_refuse_a_memory_saver_they_would_only_copy():
    multiprocess_pool = pytest.importorskip("chariots_multiprocess")
    save = Pipeline([DataSavingNode(JSONSerializer(), "numbers.json", input_nodes=[IN], output_nodes=OUT)], "save")
    pool = multiprocess_pool.MultiprocessWorkerPool(n_workers=1)
    with Chariots([save], op_store="memory", saver="memory", worker_pool=pool) as app:
        job = app.call_pipeline("save", [1], use_worker=True)
        failed = app.worker_pool.wait(job.job_id, timeout=60)
        assert failed.error["type"] == "ConfigError" and failed.error["node"] == "save:numbers.json"
        assert "its MemorySaver lives in process" in failed.error["message"]
        assert "Give the app a saver other processes share" in failed.error["message"]
        assert not app.saver.exists("data/numbers.json")
        assert app.call_pipeline("save", [1]).value == [1]  # in the app's own process it works
        assert app.saver.exists("data/numbers.json")


# -- binding -----------------------------------------------------------------------------
def test_an_unbound_data_node_says_how_to_bind_it():
    total = total_pipeline()
    with pytest.raises(ConfigError) as caught:
        SequentialRunner().run(total)
    cause = caught.value
    assert isinstance(cause, ChariotsError)
    assert cause.__notes__ == ["in node 'load:numbers.json' of pipeline 'total'"]
    assert "has no saver to load dataset 'numbers.json'" in str(cause)
    assert "add its pipeline to a Chariots app" in str(cause) and "pass saver=... to DataLoadingNode" in str(cause)
    with pytest.raises(ConfigError, match="has no saver to save dataset 'numbers.json'"):
        SequentialRunner().run(prepare_pipeline(), [1])


def test_the_app_binds_copies_and_leaves_the_users_nodes_alone():
    total = total_pipeline()
    loader = total.pipeline_nodes[0]
    app = Chariots([total, prepare_pipeline()], op_store="memory", saver="memory")
    app.call_pipeline("prepare", [1, 0.5])
    assert app.call_pipeline(total).value == 3
    assert loader.saver is None  # the user's node was not changed...
    with pytest.raises(ConfigError, match="has no saver"):
        SequentialRunner().run(total)  # ...so the pipeline object given to the app is still unbound
    served = app.serving_pipeline(total)
    assert served is not total and served.pipeline_nodes[0].saver is app.saver


def test_a_saver_given_to_the_node_wins_over_the_apps():
    own = MemorySaver()
    prepare = Pipeline([DataSavingNode(JSONSerializer(), "numbers.json", input_nodes=[IN], saver=own)], "prepare")
    SequentialRunner().run(prepare, [4])  # runs without an app
    assert json.loads(own.load("data/numbers.json")) == [4]
    app = Chariots([prepare, total_pipeline()], op_store="memory", saver="memory")
    app.call_pipeline(prepare, [5])
    assert json.loads(own.load("data/numbers.json")) == [5]
    assert not app.saver.exists("data/numbers.json")
    assert app.serving_pipeline(prepare) is prepare  # nothing needed binding


def test_require_saver_and_versions_report_op_nodes_only():
    loader = DataLoadingNode(JSONSerializer(), "numbers.json", output_nodes="numbers")
    assert loader.require_saver and DataSavingNode(JSONSerializer(), "x", input_nodes=[IN]).require_saver
    assert not Node(SumOp()).require_saver
    app = Chariots([total_pipeline(external=True)], op_store="memory", saver="memory")
    app.saver.save("data/numbers.json", b"[1]")
    assert set(app.call_pipeline("total").versions) == {"sumop"}


# -- versions ----------------------------------------------------------------------------
def test_a_data_nodes_version_comes_from_its_path_and_serializer_class():
    class Dataset(metaclass=VersionableMeta):
        path = VersionedField("numbers.json", VersionType.MAJOR)
        serializer = VersionedField("chariots_core.pipelines.serializers.JSONSerializer", VersionType.MAJOR)

    version = DataLoadingNode(JSONSerializer(), "numbers.json").node_version
    assert isinstance(version, Version)
    assert version == Dataset.__version__
    assert version == DataSavingNode(JSONSerializer, "numbers.json", input_nodes=[IN]).node_version
    other_path = DataLoadingNode(JSONSerializer(), "other.json").node_version
    other_format = DataLoadingNode(DillSerializer(), "numbers.json").node_version
    for other in (other_path, other_format):
        assert other.major != version.major
        assert other.minor == version.minor and other.patch == version.patch


# -- failures ----------------------------------------------------------------------------
def test_a_missing_dataset_names_the_path_and_who_writes_it(app_for):
    app = app_for([prepare_pipeline(), total_pipeline()])
    with pytest.raises(NotSavedError) as caught:
        app.call_pipeline("total")
    cause = caught.value
    assert isinstance(cause, LookupError) and failed_node(cause) == "load:numbers.json"
    message = str(cause)
    assert "no dataset is saved at 'data/numbers.json'" in message
    assert "(read by node 'load:numbers.json')" in message
    assert "run pipeline 'prepare' (node 'save:numbers.json') first" in message


def test_a_missing_dataset_nobody_writes_says_how_to_provide_it(app_for):
    app = app_for([total_pipeline()])
    with pytest.raises(NotSavedError) as caught:
        app.call_pipeline("total")
    assert "run a pipeline with a DataSavingNode(..., 'numbers.json') first, or put the file at 'data/numbers.json'" in str(
        caught.value
    )


def test_unreadable_and_unwritable_datasets(app_for):
    app = app_for([prepare_pipeline(), total_pipeline(external=True)])
    app.saver.save("data/numbers.json", b"\x00 not json")
    with pytest.raises(SerializationError) as caught:
        app.call_pipeline("total")
    assert "dataset 'numbers.json' (at 'data/numbers.json' in" in str(caught.value)
    assert "JSONSerializer cannot read these bytes" in str(caught.value)
    with pytest.raises(WrongTypeError) as caught:
        app.call_pipeline("prepare", [float("nan")])
    assert caught.value.__notes__ == ["in node 'save:numbers.json' of pipeline 'prepare'"]
    assert app.saver.load("data/numbers.json") == b"\x00 not json"  # a failed save writes nothing


@pytest.mark.parametrize(
    "path", ["../secret.csv", "/../secret.csv", "//etc/passwd", "", "/", "a//b.csv", "a/./b.csv", "a/.."]
)
def test_unsafe_dataset_paths_are_refused(path):
    with pytest.raises(PipelineDefinitionError, match="the dataset path .* is invalid: it must name a file below the saver's root"):
        DataLoadingNode(JSONSerializer(), path)
    with pytest.raises(PipelineDefinitionError, match=f"DataSavingNode {path!r}: the dataset path"):
        DataSavingNode(JSONSerializer(), path, input_nodes=[IN])


def test_a_leading_slash_means_the_savers_root_as_in_chariots_0_2(app_for):
    """The 0.2 docs wrote dataset paths from the saver's root: '/train.csv'."""
    save = Pipeline([DataSavingNode(JSONSerializer(), "/sets/train.json", input_nodes=[IN])], "save")
    load = Pipeline([DataLoadingNode(JSONSerializer(), "sets/train.json", output_nodes=OUT)], "load")
    app = app_for([save, load])

    app.call_pipeline(save, [1, 2])

    assert app.call_pipeline(load).value == [1, 2]
    assert app.saver.exists("data/sets/train.json")
    rooted = DataLoadingNode(JSONSerializer(), "/sets/train.json")
    assert rooted.path == "sets/train.json" and rooted.name == "load:sets/train.json"
    assert rooted.node_version == load.pipeline_nodes[0].node_version  # one dataset, one version


def test_wrong_arguments_are_definition_errors():
    with pytest.raises(PipelineDefinitionError, match="'path' of DataLoadingNode must be a string"):
        DataLoadingNode(JSONSerializer(), 3)
    with pytest.raises(PipelineDefinitionError, match="'serializer' of DataLoadingNode 'x.json' must be a serializer"):
        DataLoadingNode(json, "x.json")
    with pytest.raises(PipelineDefinitionError, match="'saver' of DataSavingNode 'x.json' must be a saver"):
        DataSavingNode(JSONSerializer(), "x.json", input_nodes=[IN], saver="memory")
    with pytest.raises(PipelineDefinitionError, match="'name' of a DataLoadingNode must be a non-empty string"):
        DataLoadingNode(JSONSerializer(), "x.json", name="")
    for inputs in (None, ["a", "b"]):
        with pytest.raises(PipelineDefinitionError, match="takes exactly one input"):
            DataSavingNode(JSONSerializer(), "x.json", input_nodes=inputs)


def test_names_and_repr():
    loader = DataLoadingNode(JSONSerializer(), "sets/x.json", name="raw_x")
    assert loader.name == "raw_x" and loader.path == "sets/x.json"
    assert repr(loader) == "<DataLoadingNode 'raw_x' path='sets/x.json'>"
    assert DataSavingNode(JSONSerializer(), "sets/x.json", input_nodes=[IN]).name == "save:sets/x.json"
