"""The in-process app through the public API: its client methods, its stores and its errors."""

from __future__ import annotations

import os
import uuid

import pytest
from chariots_test_ops import ScaleOp

from chariots_core import (
    BaseOp,
    Chariots,
    InProcessWorkerPool,
    JobStatus,
    MemoryOpStore,
    MemorySaver,
    Node,
    Pipeline,
    PipelineResponse,
    Version,
)
from chariots_core.errors import (
    ChariotsError,
    ConfigError,
    IntegrityError,
    NotSavedError,
    PipelineDefinitionError,
    StoreError,
    UnknownPipelineError,
    WorkerError,
)
from chariots_core.ml import BaseMLOp, MLMode
from chariots_core.registry import register_backend

IN, OUT = "__pipeline_input__", "__pipeline_output__"


class OtherScaleOp(ScaleOp):
    """Another class: naming a node of it like a ScaleOp node clashes in the store."""


class MeanOp(BaseMLOp):
    """Learns the mean, predicts the distance to it."""

    def fit(self, xs):
        self._model = sum(xs) / len(xs)

    def predict(self, xs):
        return [x - self._model for x in xs]


class AddOneOp(BaseOp):
    def execute(self, xs):
        return [x + 1 for x in xs]


def mean_pipelines():
    train = Pipeline([Node(MeanOp(MLMode.FIT), input_nodes=[IN])], "train")
    pred = Pipeline(
        [
            Node(AddOneOp(), input_nodes=[IN], output_nodes="plus"),
            Node(MeanOp(MLMode.PREDICT), input_nodes=["plus"], output_nodes=OUT),
        ],
        "pred",
    )
    return train, pred


def trained_app(app_for):
    train, pred = mean_pipelines()
    app = app_for([train, pred])
    app.call_pipeline(train, [1.0, 2.0, 6.0])
    app.save_pipeline(train)
    return app, train, pred


# -- the client methods ------------------------------------------------------------------
def test_call_pipeline_returns_value_and_the_version_of_every_op_node(app_for):
    app, train, pred = trained_app(app_for)
    picked = app.load_pipeline("pred")
    response = app.call_pipeline("pred", [2.0, 5.0])
    assert isinstance(response, PipelineResponse)
    assert response.value == [0.0, 3.0]
    assert set(response.versions) == {"addoneop", "meanop"}
    assert response.versions["addoneop"] == AddOneOp.__version__
    assert response.versions["meanop"] == picked["meanop"] == app.pipeline_versions(train)["meanop"]
    assert response.job_id is None and response.job_status is JobStatus.done  # as chariots 0.2 answered
    assert app.call_pipeline(pred, [2.0]).value == [0.0]  # a Pipeline object works as the name


def test_pipeline_versions_and_is_pipeline_loaded(app_for):
    app, train, pred = trained_app(app_for)
    assert not app.is_pipeline_loaded(pred)
    before = app.pipeline_versions(pred)
    assert before["meanop"] == MeanOp.__version__  # untrained: the class version
    app.load_pipeline(pred)
    assert app.is_pipeline_loaded("pred")
    assert app.pipeline_versions(pred)["meanop"] == app.pipeline_versions(train)["meanop"]
    assert all(isinstance(version, Version) for version in app.pipeline_versions(pred).values())


def test_available_pipelines_and_health_check(app_for):
    app, train, pred = trained_app(app_for)
    assert app.available_pipelines() == ["train", "pred"]
    app.load_pipeline(pred)
    health = app.health_check()
    assert health["status"] == "ok"
    assert health["pipelines"] == ["train", "pred"]
    assert health["loaded"] == ["pred"]


def test_install_ops_swaps_ops_that_save_pipeline_then_saves(app_for):
    first, second = (Pipeline([Node(ScaleOp(), input_nodes=[IN], output_nodes=OUT)], name) for name in ("first", "second"))
    app = app_for([first, second])
    app.install_ops("first", {"scaleop": ScaleOp(7)})
    assert app.call_pipeline(first, [1]).value == [7]
    app.save_pipeline(first)
    assert app.call_pipeline(second, [1]).value == [1]
    app.load_pipeline(second)
    assert app.call_pipeline(second, [1]).value == [7]
    with pytest.raises(UnknownPipelineError):
        app.install_ops("third", {"scaleop": ScaleOp(2)})


def test_use_worker_precedence_without_a_pool():
    background = Pipeline([Node(AddOneOp(), input_nodes=[IN], output_nodes=OUT)], "background", use_worker=True)
    app = Chariots([background], op_store="memory", saver="memory")
    with pytest.raises(WorkerError, match="pipeline 'background' was asked to run in a worker but the app has no worker pool"):
        app.call_pipeline(background, [1])
    assert app.call_pipeline(background, [1], use_worker=False).value == [2]  # an explicit False wins

    plain = Pipeline([Node(AddOneOp(), input_nodes=[IN], output_nodes=OUT)], "plain")
    eager = Chariots([plain], op_store="memory", saver="memory", use_worker=True)
    with pytest.raises(WorkerError):
        eager.call_pipeline(plain, [1])
    assert eager.call_pipeline(plain, [1], use_worker=False).value == [2]
    with pytest.raises(WorkerError):
        Chariots([plain], op_store="memory", saver="memory").call_pipeline(plain, [1], use_worker=True)
    never = Pipeline([Node(AddOneOp(), input_nodes=[IN], output_nodes=OUT)], "never", use_worker=False)
    assert Chariots([never], op_store="memory", saver="memory", use_worker=True).call_pipeline(never, [1], use_worker=True).value == [2]


def test_a_worker_pool_makes_calls_asynchronous():
    plain = Pipeline([Node(AddOneOp(), input_nodes=[IN], output_nodes=OUT)], "plain")
    with InProcessWorkerPool() as pool, Chariots([plain], op_store="memory", saver="memory", worker_pool=pool) as app:
        response = app.call_pipeline(plain, [1], use_worker=True)
        assert response.job_status is JobStatus.queued
        done = app.worker_pool.wait(response.job_id, timeout=30)
        assert done.value == [2]
        assert app.fetch_job(response.job_id).job_status is JobStatus.done


# -- errors the app raises ---------------------------------------------------------------
def test_unknown_pipeline_lists_the_available_ones(app_for):
    app, _, _ = trained_app(app_for)
    for method in (app.call_pipeline, app.save_pipeline, app.load_pipeline, app.pipeline_versions, app.is_pipeline_loaded):
        with pytest.raises(UnknownPipelineError, match="this app has no pipeline 'nope'; available pipelines: 'train', 'pred'"):
            method("nope")
    with pytest.raises(LookupError):
        app.load_pipeline(Pipeline([Node(AddOneOp(), input_nodes=[IN], output_nodes=OUT)], "stranger"))


def test_loading_a_pipeline_never_saved(app_for):
    train, pred = mean_pipelines()
    app = app_for([train, pred])
    with pytest.raises(NotSavedError, match="none of its ops .'meanop'. was ever saved"):
        app.load_pipeline(pred)
    with pytest.raises(ChariotsError, match="has no model"):
        app.save_pipeline(train)  # nothing was fitted yet


def corrupt(app, app_for, tmp_path, op_name):
    """Flip a byte of the op's latest blob, in memory or on disk."""
    record = app.op_store.op_versions(op_name)[0]
    if app_for.kind == "memory":
        data = bytearray(app.saver.load(record.blob_path))
        data[-1] ^= 1
        app.saver.save(record.blob_path, bytes(data))
    else:
        path = tmp_path / "data" / "blobs" / record.blob_path
        data = bytearray(path.read_bytes())
        data[-1] ^= 1
        path.write_bytes(bytes(data))
    return record


def test_corrupt_bytes_raise_integrity_error_and_change_nothing(app_for, tmp_path):
    app, train, pred = trained_app(app_for)
    app.load_pipeline(pred)
    serving = app.pipeline_versions(pred)
    app.call_pipeline(train, [10.0, 20.0])
    app.save_pipeline(train)
    record = corrupt(app, app_for, tmp_path, "meanop")
    with pytest.raises(IntegrityError) as caught:
        app.load_pipeline(pred)
    message = str(caught.value)
    assert "op 'meanop' version " in message
    assert record.blob_path in message
    assert "corrupt" in message and "run and save pipeline 'train'" in message.lower()
    assert isinstance(caught.value, StoreError)
    assert app.pipeline_versions(pred) == serving
    assert app.call_pipeline(pred, [2.0]).value == [0.0]


def test_missing_blob_raises_integrity_error(app_for, tmp_path):
    app, train, pred = trained_app(app_for)
    record = app.op_store.op_versions("meanop")[0]
    if app_for.kind == "memory":
        app.saver.delete(record.blob_path)
    else:
        os.remove(tmp_path / "data" / "blobs" / record.blob_path)
    with pytest.raises(IntegrityError, match=f"blob '{record.blob_path}'.*the bytes are missing"):
        app.load_pipeline(pred)
    assert not app.is_pipeline_loaded(pred)
    app.save_pipeline(train)  # saving the same version again restores the lost bytes
    app.load_pipeline(pred)
    assert app.call_pipeline(pred, [2.0]).value == [0.0]


def test_an_app_path_that_is_a_file(tmp_path):
    pytest.importorskip("chariots_lmdb")
    a_file = tmp_path / "data"
    a_file.write_text("not a directory")
    train, pred = mean_pipelines()
    with pytest.raises(StoreError, match="is a file; Chariots needs a directory"):
        Chariots([train, pred], path=a_file)
    with pytest.raises(StoreError, match="is a file"):
        Chariots([train, pred], path=a_file, op_store="memory")  # the saver needs it too


def test_node_name_clashes_tell_to_pass_name():
    twice = Pipeline(
        [
            Node(ScaleOp(2), input_nodes=[IN], output_nodes="a"),
            Node(ScaleOp(3), input_nodes=["a"], output_nodes=OUT),
        ],
        "twice",
    )
    with pytest.raises(PipelineDefinitionError, match="pipeline 'twice' has two loadable nodes named 'scaleop'.*pass name="):
        Chariots([twice], op_store="memory", saver="memory")
    named = Pipeline(
        [
            Node(ScaleOp(2), input_nodes=[IN], output_nodes="a"),
            Node(ScaleOp(3), input_nodes=["a"], output_nodes=OUT, name="scale_again"),
        ],
        "named",
    )
    assert Chariots([named], op_store="memory", saver="memory").call_pipeline(named, [1]).value == [6]

    one = Pipeline([Node(ScaleOp(), input_nodes=[IN], output_nodes=OUT, name="scale")], "one")
    other = Pipeline([Node(OtherScaleOp(), input_nodes=[IN], output_nodes=OUT, name="scale")], "other")
    with pytest.raises(PipelineDefinitionError, match="node name 'scale' runs ScaleOp in pipeline 'one' but OtherScaleOp in pipeline 'other'.*pass name="):
        Chariots([one, other], op_store="memory", saver="memory")


def test_duplicate_pipeline_names_and_non_pipelines():
    first = Pipeline([Node(AddOneOp(), input_nodes=[IN], output_nodes=OUT)], "same")
    second = Pipeline([Node(AddOneOp(), input_nodes=[IN], output_nodes=OUT)], "same")
    with pytest.raises(PipelineDefinitionError, match="two pipelines are named 'same'"):
        Chariots([first, second], op_store="memory", saver="memory")
    with pytest.raises(PipelineDefinitionError, match="'pipelines' must hold Pipeline objects"):
        Chariots([first, "second"], op_store="memory", saver="memory")


# -- choosing stores ---------------------------------------------------------------------
def test_store_and_saver_objects_and_names():
    store, saver = MemoryOpStore(), MemorySaver()
    train, pred = mean_pipelines()
    app = Chariots([train, pred], op_store=store, saver=saver)
    assert app.op_store is store and app.saver is saver
    by_name = Chariots([train, pred], op_store="memory", saver="memory")
    assert isinstance(by_name.op_store, MemoryOpStore) and isinstance(by_name.saver, MemorySaver)


def test_default_path_uses_lmdb_and_files_under_it(tmp_path):
    lmdb_store = pytest.importorskip("chariots_lmdb")
    fsspec_saver = pytest.importorskip("chariots_fsspec")
    train, pred = mean_pipelines()
    with Chariots([train, pred], path=tmp_path / "data") as app:
        assert isinstance(app.op_store, lmdb_store.LMDBOpStore)
        assert isinstance(app.saver, fsspec_saver.FsspecSaver)
        app.call_pipeline(train, [1.0, 3.0])
        app.save_pipeline(train)
        blob = app.op_store.op_versions("meanop")[0].blob_path
    assert (tmp_path / "data" / "blobs" / blob).is_file()
    # Another app on the same path (a restart) loads what the first one saved.
    with Chariots(mean_pipelines(), path=tmp_path / "data") as again:
        again.load_pipeline("pred")
        assert again.call_pipeline("pred", [1.0]).value == [0.0]


def test_saver_by_url_and_by_directory(tmp_path):
    pytest.importorskip("chariots_fsspec")
    train, pred = mean_pipelines()
    for saver in ("memory://chariots-test-app", os.fspath(tmp_path / "blobs"), (tmp_path / "url").as_uri()):
        app = Chariots([train, pred], op_store="memory", saver=saver)
        app.call_pipeline(train, [1.0, 3.0])
        app.save_pipeline(train)
        app.load_pipeline(pred)
        assert app.call_pipeline(pred, [1.0]).value == [0.0]
    assert any((tmp_path / "blobs").rglob("*"))
    assert any((tmp_path / "url").rglob("*"))


def test_unknown_store_names_and_a_local_store_on_a_url(tmp_path):
    train, pred = mean_pipelines()
    with pytest.raises(ConfigError, match="no op_store backend is called 'redis'; known: .*lmdb.*memory"):
        Chariots([train, pred], op_store="redis", saver="memory")
    pytest.importorskip("chariots_lmdb")
    with pytest.raises(ConfigError, match="the 'lmdb' op store keeps its files in a local directory"):
        Chariots([train, pred], path="s3://bucket/prefix", op_store="lmdb", saver="memory")


class BrokenOp(ScaleOp):
    """Serializes to the wrong type, or fails to load."""

    def serialize(self):
        return {"factor": self.factor} if self.factor == "dict" else super().serialize()

    def load(self, serialized_object):
        raise ValueError("cannot read that")


def test_ops_that_cannot_serialize_or_load():
    wrong = Pipeline([Node(BrokenOp("dict"), input_nodes=[IN], output_nodes=OUT)], "wrong")
    app = Chariots([wrong], op_store="memory", saver="memory")
    with pytest.raises(ChariotsError, match=r"op 'brokenop': BrokenOp.serialize\(\) failed \(TypeError: it returned a dict; serialize\(\) must return bytes\)"):
        app.save_pipeline(wrong)
    app.install_ops(wrong, {"brokenop": BrokenOp(2)})
    app.save_pipeline(wrong)
    with pytest.raises(ChariotsError, match=r"op 'brokenop' version .*: BrokenOp.load\(\) failed \(ValueError: cannot read that\)"):
        app.load_pipeline(wrong)
    assert app.call_pipeline(wrong, [1]).value == [2]


# -- the versions calls report -------------------------------------------------------------
def test_versions_reported_after_each_fit_are_the_new_training(app_for):
    train, pred = mean_pipelines()
    app = app_for([train, pred])
    untrained = app.call_pipeline(train, [1.0, 2.0]).versions["meanop"]
    assert untrained != MeanOp.__version__  # the call reports the version after its fit
    first = app.pipeline_versions(train)["meanop"]
    assert first == untrained
    second = app.call_pipeline(train, [1.0, 2.0]).versions["meanop"]
    assert second != first  # same data, another training: another version
    assert app.pipeline_versions(train)["meanop"] == second
    app.save_pipeline(train)
    assert app.op_store.op_versions("meanop")[0].version == str(second)


def test_versions_follow_loads_and_installs(app_for):
    app, train, pred = trained_app(app_for)
    assert app.pipeline_versions(pred)["meanop"] == MeanOp.__version__
    app.load_pipeline(pred)  # swaps in a new pipeline object
    trained = app.pipeline_versions(train)["meanop"]
    assert app.call_pipeline(pred, [2.0]).versions["meanop"] == trained
    fitted = MeanOp(MLMode.FIT)
    fitted.execute([5.0])
    refit = MeanOp(MLMode.PREDICT)
    refit.load(fitted.serialize())
    app.install_ops(pred, {"meanop": refit})
    response = app.call_pipeline(pred, [5.0])
    assert response.value == [1.0]
    assert response.versions["meanop"] == fitted.op_version != trained
    assert response.versions["addoneop"] == AddOneOp.__version__


class CountingVersionOp(BaseOp):
    """An op that computes its own version: a new one after each run."""

    def __init__(self):
        super().__init__()
        self.runs = 0

    def execute(self, xs):
        self.runs += 1
        return xs

    @property
    def op_version(self):
        return Version().update_minor(str(self.runs).encode())


def test_ops_that_compute_their_version_are_asked_on_every_call():
    inner = Pipeline([Node(CountingVersionOp(), input_nodes=[IN], output_nodes=OUT)], "inner")
    outer = Pipeline(
        [Node(inner, input_nodes=[IN], output_nodes="same"), Node(AddOneOp(), input_nodes=["same"], output_nodes=OUT)],
        "outer",
    )
    app = Chariots([outer], op_store="memory", saver="memory")
    first, second = app.call_pipeline(outer, [1]), app.call_pipeline(outer, [1])
    assert first.versions["countingversionop"] == Version().update_minor(b"1")
    assert second.versions["countingversionop"] == Version().update_minor(b"2")
    assert list(second.versions) == ["countingversionop", "addoneop"]
    second.versions.clear()  # a response's dict is the caller's own
    assert app.pipeline_versions(outer)["addoneop"] == AddOneOp.__version__


# -- what the app closes ----------------------------------------------------------------------
class ClosingStore(MemoryOpStore):
    """A memory store that knows whether it was closed, and refuses job writes then."""

    opened: list["ClosingStore"] = []

    def __init__(self, path: str | None = None) -> None:
        super().__init__()
        self.closes = 0
        ClosingStore.opened.append(self)

    def close(self) -> None:
        self.closes += 1

    def put_job(self, job) -> None:
        if self.closes:
            raise StoreError("this store is closed")
        super().put_job(job)


@pytest.fixture
def closing_store_name() -> str:
    """A backend name under which the app opens a ClosingStore itself."""
    name = f"closing-{uuid.uuid4().hex}"
    register_backend("op_store", name, ClosingStore)
    ClosingStore.opened.clear()
    return name


def test_an_app_closes_the_store_it_opened_and_never_one_it_was_given(closing_store_name, tmp_path):
    given = ClosingStore()
    with Chariots([], op_store=given, saver="memory"):
        pass
    assert given.closes == 0

    app = Chariots([], path=tmp_path, op_store=closing_store_name, saver="memory")
    app.close()
    app.close()
    assert app.op_store.closes == 1


def test_an_app_that_fails_to_start_closes_the_store_it_opened(closing_store_name, tmp_path):
    with pytest.raises(ChariotsError):
        Chariots([], path=tmp_path, op_store=closing_store_name, saver="nosuchscheme://blobs")
    (opened,) = ClosingStore.opened
    assert opened.closes == 1


def test_a_pool_handed_to_the_app_stops_before_the_store_closes(closing_store_name, tmp_path):
    plain = Pipeline([Node(AddOneOp(), input_nodes=[IN], output_nodes=OUT)], "plain")
    pool = InProcessWorkerPool(n_workers=1)
    app = Chariots([plain], path=tmp_path, op_store=closing_store_name, saver="memory", worker_pool=pool)
    assert app.take_ownership(pool) is pool
    job_ids = [app.call_pipeline(plain, [n], use_worker=True).job_id for n in range(5)]
    app.close()  # the queued jobs finish and are recorded while the store is still open
    assert [app.job_store.get_job(job_id).status for job_id in job_ids] == ["done"] * 5
    assert app.op_store.closes == 1
    with pytest.raises(WorkerError, match="closed"):
        app.call_pipeline(plain, [1], use_worker=True)
