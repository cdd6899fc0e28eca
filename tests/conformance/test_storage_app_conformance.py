"""Saving and loading pipelines through ``Chariots`` on every op store x saver pair, and the
path errors every local backend must report clearly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from chariots_test_explain import iris_pipelines, pca_class, train

from chariots_core import Chariots, ChariotsError, LoadableOp, MemorySaver, Node, Pipeline, Version, VersionError
from chariots_core.errors import IntegrityError, StoreError
from chariots_core.op_store.records import Commit


class Shift(LoadableOp):
    """Adds the offset it was 'trained' with; a new offset is a new major version."""

    def __init__(self, offset: int = 0) -> None:
        super().__init__()
        self.offset = offset

    @property
    def op_version(self) -> Version:
        return type(self).__version__ + Version().update_major(str(self.offset).encode())

    def execute(self, value: int) -> int:
        return value + self.offset

    def serialize(self) -> bytes:
        return json.dumps(self.offset).encode()

    def load(self, serialized_object: bytes) -> None:
        self.offset = json.loads(serialized_object)


class Scale(Shift):
    """Multiplies by its factor (the ``offset`` it was trained with)."""

    def execute(self, value: int) -> int:
        return value * self.offset


def shift_then_scale(name: str, shift: int = 0, scale: int = 1) -> Pipeline:
    return Pipeline(
        [
            Node(Shift(shift), input_nodes=["__pipeline_input__"], output_nodes="shifted"),
            Node(Scale(scale), input_nodes=["shifted"], output_nodes="__pipeline_output__"),
        ],
        name,
    )


def shift_only(name: str, shift: int) -> Pipeline:
    return Pipeline([Node(Shift(shift), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")], name)


@pytest.fixture
def stores(op_store_backend, saver_backend, tmp_path: Path):
    """A way to open the (op store, saver) pair again, as another app would."""
    first = (op_store_backend.open(tmp_path), saver_backend.open(tmp_path))
    opened = [first[0]]

    def reopen() -> tuple:
        if not (op_store_backend.persistent and saver_backend.persistent):
            return first  # nothing outlives the objects: a second app shares them
        store = op_store_backend.open(tmp_path)
        opened.append(store)
        return store, saver_backend.open(tmp_path)

    yield first, reopen
    for store in opened:
        store.close()


def app_on(pair: tuple, *pipelines: Pipeline) -> Chariots:
    op_store, saver = pair
    return Chariots(list(pipelines), op_store=op_store, saver=saver)


def test_a_saved_pipeline_loads_in_another_app_and_predicts_the_same(stores):
    first, reopen = stores
    trainer = app_on(first, shift_then_scale("train", shift=2, scale=10), shift_then_scale("pred"))
    trainer.save_pipeline("train")
    trained_versions = trainer.pipeline_versions("train")

    server = app_on(reopen(), shift_then_scale("train"), shift_then_scale("pred"))
    picked = server.load_pipeline("pred")

    assert server.call_pipeline("pred", 1).value == (1 + 2) * 10
    assert picked == {"shift": trained_versions["shift"], "scale": trained_versions["scale"]}
    assert server.pipeline_versions("pred") == trained_versions
    assert server.is_pipeline_loaded("pred")


def test_the_latest_save_is_what_loads(stores):
    first, reopen = stores
    app = app_on(first, shift_then_scale("train", 1, 1), shift_then_scale("pred"))
    app.save_pipeline("train")
    app.install_ops("train", {"shift": Shift(5), "scale": Scale(3)})
    app.save_pipeline("train")

    server = app_on(reopen(), shift_then_scale("pred"))
    server.load_pipeline("pred")

    assert server.call_pipeline("pred", 0).value == 15
    assert [json.loads(server.saver.load(r.blob_path)) for r in server.op_store.op_versions("shift")] == [5, 1]


def test_a_retrained_upstream_is_refused_until_the_downstream_is_retrained(stores):
    first, reopen = stores
    app = app_on(first, shift_then_scale("train", 1, 2), shift_only("train_shift", 7), shift_then_scale("pred"))
    app.save_pipeline("train")
    app.save_pipeline("train_shift")  # a new major "shift" that "scale" was never built on

    server = app_on(reopen(), shift_then_scale("pred"), shift_then_scale("train", 7, 3))
    with pytest.raises(VersionError, match="'shift' -> 'scale'"):
        server.load_pipeline("pred")
    assert not server.is_pipeline_loaded("pred")

    server.load_pipeline("pred", strategy="latest_compatible")
    assert server.call_pipeline("pred", 0).value == (0 + 1) * 2

    server.save_pipeline("train")
    server.load_pipeline("pred")
    assert server.call_pipeline("pred", 0).value == (0 + 7) * 3


def test_corrupt_bytes_are_refused_and_the_loaded_ops_keep_serving(stores):
    first, reopen = stores
    app = app_on(first, shift_then_scale("train", 4, 2), shift_then_scale("pred"))
    app.save_pipeline("train")
    app.load_pipeline("pred")
    app.install_ops("train", {"shift": Shift(40), "scale": Scale(3)})
    app.save_pipeline("train")

    op_store, saver = reopen()
    latest = op_store.op_versions("shift", limit=1)[0]
    stored = bytearray(saver.load(latest.blob_path))
    stored[0] ^= 0xFF
    saver.save(latest.blob_path, bytes(stored))

    with pytest.raises(IntegrityError, match=f"'shift'.*{latest.blob_path}"):
        app.load_pipeline("pred")
    assert app.call_pipeline("pred", 1).value == (1 + 4) * 2


def test_missing_bytes_are_an_integrity_error(stores):
    first, _ = stores
    app = app_on(first, shift_then_scale("train", 4, 2), shift_then_scale("pred"))
    app.save_pipeline("train")
    record = app.op_store.op_versions("scale", limit=1)[0]
    app.saver.delete(record.blob_path)

    with pytest.raises(IntegrityError, match="missing"):
        app.load_pipeline("pred")


# -- path errors of local backends -------------------------------------------------------------
def _local(backend):
    if not backend.local:
        pytest.skip(f"{backend.name} keeps nothing in a local directory")
    return backend


def _freeze_tree(root: Path, make_read_only) -> None:
    for path in sorted(root.rglob("*"), reverse=True):  # children before their directory
        make_read_only(path)
    make_read_only(root)


def test_an_op_store_under_a_file_says_so(op_store_backend, tmp_path: Path):
    backend = _local(op_store_backend)
    not_a_directory = tmp_path / "file"
    not_a_directory.write_bytes(b"x")

    with pytest.raises(StoreError, match="(?i)not a directory") as caught:
        backend.open(not_a_directory)
    assert isinstance(caught.value, ChariotsError)
    assert str(not_a_directory) in str(caught.value)


def test_a_saver_under_a_file_says_so(saver_backend, tmp_path: Path):
    backend = _local(saver_backend)
    not_a_directory = tmp_path / "file"
    not_a_directory.write_bytes(b"x")

    with pytest.raises(StoreError, match="(?i)not a directory") as caught:
        backend.open(not_a_directory)
    assert str(not_a_directory) in str(caught.value)


def test_an_op_store_in_a_read_only_directory_says_so(op_store_backend, tmp_path: Path, make_read_only):
    backend = _local(op_store_backend)
    make_read_only(tmp_path)

    with pytest.raises(StoreError, match=str(tmp_path)):
        backend.open(tmp_path)


def test_an_existing_op_store_made_read_only_says_so(op_store_backend, tmp_path: Path, make_read_only):
    backend = _local(op_store_backend)
    backend.open(tmp_path).close()
    _freeze_tree(tmp_path, make_read_only)

    with pytest.raises(StoreError, match=str(tmp_path)):
        store = backend.open(tmp_path)
        store.commit(Commit())


def test_a_saver_in_a_read_only_directory_says_so(saver_backend, tmp_path: Path, make_read_only):
    backend = _local(saver_backend)
    saver = backend.open(tmp_path)
    saver.save("ops/kept", b"kept")
    _freeze_tree(tmp_path, make_read_only)

    with pytest.raises(StoreError, match="ops/new"):
        saver.save("ops/new", b"x")
    assert saver.load("ops/kept") == b"kept"
    assert not saver.exists("ops/new")


def test_a_refused_load_names_the_field_that_changed_from_every_op_store(op_store):
    """Field records are journal records of nested values: every store must give them back."""
    saver = MemorySaver()
    with Chariots(list(iris_pipelines(pca_class(n_components=2))), op_store=op_store, saver=saver) as old:
        train(old, "train_iris")
    with Chariots(list(iris_pipelines(pca_class(n_components=3))), op_store=op_store, saver=saver) as new:
        train(new, "train_pca")
        why = "irispca.model_parameters['n_components'] (MAJOR) changed 2 → 3 since 'irisrf' was trained on it"
        with pytest.raises(VersionError, match=re.escape(why)):
            new.load_pipeline("pred_iris")
        assert [edge.why for edge in new.why_stale("pred_iris").edges] == [why]
        [stale] = {pipeline["name"]: pipeline for pipeline in new.status()["pipelines"]}["pred_iris"]["stale"]
        assert (stale["why"], stale["fix"]) == (why, "train_iris")
