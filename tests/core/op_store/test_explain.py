"""Field-level why: a refused load and ``app.why_stale`` name the field that changed, from what to
what, or the save that retrained the upstream op, and the pipeline to run and save.

Every scenario runs on the in-memory store and on LMDB + files, with apps sharing one store as
processes running old and new code would.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager

import pytest
from chariots_test_explain import DATA, IN, OUT, Data, IrisPCA, IrisRF, iris_pipelines, pca_class, shared_apps, train

from chariots_core import (
    BaseOp,
    MemoryOpStore,
    Node,
    Pipeline,
    SourceVersion,
    VersionedField,
    VersionError,
    VersionType,
)
from chariots_core.errors import ChariotsError
from chariots_core.ml import BaseMLOp, MLMode
from chariots_core.op_store.explain import Change, FieldChange, StaleEdge, Staleness, short, when
from chariots_core.op_store.records import Commit, LinkRecord, OpFieldsRecord, OpVersionRecord, fields_name
from chariots_core.versioning import ClassVersionedField, Version


@pytest.fixture
def make_app(make_shared_app):
    return make_shared_app


def trained_pair(make_app, pca=IrisPCA):
    """An app that trained and saved train_iris and serves pred_iris."""
    pipelines = iris_pipelines(pca)
    app = make_app(list(pipelines))
    train(app, "train_iris")
    app.load_pipeline("pred_iris")
    return app


def refusal(app, pipeline="pred_iris") -> str:
    with pytest.raises(VersionError) as caught:
        app.load_pipeline(pipeline)
    return str(caught.value)


# -- what changed ------------------------------------------------------------------------------
def test_a_changed_parameter_is_named_with_its_old_and_new_value_and_the_fix(make_app):
    old = trained_pair(make_app)
    built_on = old.pipeline_versions("pred_iris")["irispca"]
    new = make_app(list(iris_pipelines(pca_class(n_components=3))))
    train(new, "train_pca")  # only the PCA is retrained, with the new parameter

    why = "irispca.model_parameters['n_components'] (MAJOR) changed 2 → 3 since 'irisrf' was trained on it"
    message = refusal(new)
    assert f"{why}. Retrain 'irisrf' on it: run and save pipeline 'train_iris'" in message
    assert f"was built on 'irispca' {short(built_on)}, but 'irispca' is now" in message

    staleness = new.why_stale("pred_iris")
    assert staleness.stale and not staleness.ops and not staleness.unsaved
    [edge] = staleness.edges
    assert (edge.upstream, edge.downstream, edge.fix) == ("irispca", "irisrf", "train_iris")
    assert edge.why == why
    assert edge.text == f"{why}; run and save pipeline 'train_iris'"
    assert edge.change.fields == (FieldChange("irispca", "model_parameters['n_components']", "major", "2", "3"),)
    assert edge.change.code_changed and edge.change.retrained_by is None
    assert edge.change.old == str(built_on)
    assert edge.text in staleness.text
    # The app running the old code is not stale: its code still loads the old pair.
    assert not old.why_stale("pred_iris").stale


def test_a_retrained_upstream_names_the_save_that_retrained_it(make_app):
    app = trained_pair(make_app)
    train(app, "train_pca")
    record = app.op_store.op_versions("irispca", limit=1)[0]

    staleness = app.why_stale("pred_iris")
    [edge] = staleness.edges
    change = edge.change
    assert (change.retrained_by, change.retrained_at, change.code_changed) == ("train_pca", record.saved_at, False)
    assert change.parts == ("major",) and change.fields == ()
    assert change.new == record.version
    expected = f"'irispca' was retrained by pipeline 'train_pca' at {when(record.saved_at)} (MAJOR) since 'irisrf' was trained on it"
    assert edge.why == expected
    assert f"(its major version changed): {expected}. Retrain 'irisrf' on it: run and save pipeline 'train_iris'" in refusal(app)


def test_a_plain_upstream_op_whose_field_changed_is_explained_from_its_recorded_fields(make_app):
    class Scaled(BaseOp):
        factor = VersionedField(1, VersionType.MAJOR)

        def execute(self, xs):
            return [x * self.factor for x in xs]

    class Scaled2(Scaled):  # the same op, edited: node name "scaled" in both pipelines
        factor = VersionedField(2, VersionType.MAJOR)

    def pipelines(scaled):
        train_ = Pipeline([
            Node(Data(), output_nodes="raw"), Node(scaled(), input_nodes=["raw"], output_nodes="x", name="scaled"),
            Node(IrisRF(MLMode.FIT), input_nodes=["x"]),
        ], "train_rf")  # fmt: skip
        pred = Pipeline([
            Node(scaled(), input_nodes=[IN], output_nodes="x", name="scaled"),
            Node(IrisRF(MLMode.PREDICT), input_nodes=["x"], output_nodes=OUT),
        ], "pred_rf")  # fmt: skip
        return [train_, pred]

    train(make_app(pipelines(Scaled)), "train_rf")
    new = make_app(pipelines(Scaled2))
    why = "scaled.factor (MAJOR) changed 1 → 2 since 'irisrf' was trained on it"
    assert f"{why}. Retrain 'irisrf' on it: run and save pipeline 'train_rf'" in refusal(new, "pred_rf")
    assert [edge.why for edge in new.why_stale("pred_rf").edges] == [why]


def test_added_removed_and_moved_fields_each_say_so(make_app):
    trained_pair(make_app, pca_class(n_components=2, whiten=False))
    new = make_app(list(iris_pipelines(pca_class(n_components=VersionedField(2, VersionType.MINOR), svd="full"))))
    train(new, "train_pca")
    [edge] = new.why_stale("pred_iris").edges
    assert edge.change.fields == (
        FieldChange("irispca", "model_parameters['n_components']", "minor", "2", "2", old_type="major"),
        FieldChange("irispca", "model_parameters['svd']", "major", None, "'full'"),
        FieldChange("irispca", "model_parameters['whiten']", "major", "False", None),
    )
    assert edge.why == (
        "irispca.model_parameters['n_components'] changed 2 (MAJOR) → 2 (MINOR); "
        "irispca.model_parameters['svd'] (MAJOR) was added: 'full'; "
        "irispca.model_parameters['whiten'] (MAJOR) was removed (it was False) since 'irisrf' was trained on it"
    )


def test_only_the_fields_of_the_compared_subversions_are_named(make_app):
    trained_pair(make_app, pca_class(n_components=2, tol=VersionedField(0.1, VersionType.PATCH)))
    new = make_app(list(iris_pipelines(pca_class(n_components=3, tol=VersionedField(0.2, VersionType.PATCH)))))
    train(new, "train_pca")
    [edge] = new.why_stale("pred_iris").edges  # "major" policy: the PATCH field is not the cause
    assert [change.field for change in edge.change.fields] == ["model_parameters['n_components']"]


def test_a_code_change_is_named_without_any_source(make_app, tmp_path):
    def center(shift):
        class IrisPCA(BaseMLOp):
            training_update_version = VersionType.MAJOR
            code = SourceVersion(VersionType.MAJOR)

            if shift:
                def fit(self, xs):
                    self._model = sum(xs) / len(xs) + 1
            else:
                def fit(self, xs):
                    self._model = sum(xs) / len(xs)

            def predict(self, xs):
                return [x - self._model for x in xs]

        return IrisPCA

    trained_pair(make_app, center(False))
    new = make_app(list(iris_pipelines(center(True))))
    train(new, "train_pca")
    [edge] = new.why_stale("pred_iris").edges
    [change] = edge.change.fields
    assert (change.field, change.kind, change.version_type) == ("code", "code", "major")
    assert edge.why == (
        "the code of 'irispca' changed (irispca.code, MAJOR: code of execute, fit, predict, _init_model) "
        "since 'irisrf' was trained on it"
    )
    assert "self._model" not in json.dumps(new.op_store.journal(OpFieldsRecord, fields_name("irispca", edge.change.new))[0].record.fields[0].value)


class Salt(ClassVersionedField):
    """A version its class computes: here, from a value the test picks."""

    def __init__(self, value):
        self.value = value

    def version_for(self, cls):
        return Version().update_major(str(self.value).encode())


def test_a_computed_versioned_attribute_is_recorded_and_named(make_app):
    trained_pair(make_app, type("IrisPCA", (IrisPCA,), {"salt": Salt(1)}))
    new = make_app(list(iris_pipelines(type("IrisPCA", (IrisPCA,), {"salt": Salt(2)}))))
    train(new, "train_pca")
    [edge] = new.why_stale("pred_iris").edges
    assert edge.why == "irispca.salt (MAJOR) changed (its class computes it: <Salt>) since 'irisrf' was trained on it"


def test_an_op_whose_code_changed_and_was_never_retrained_is_explained(make_app):
    trained_pair(make_app)
    new = make_app(list(iris_pipelines(pca_class(n_components=5))))
    newest = new.op_store.op_versions("irispca", limit=1)[0]
    message = refusal(new)
    why = f"irispca.model_parameters['n_components'] (MAJOR) changed 2 → 5 since its newest saved version ({short(newest.version)}) was saved"
    assert f"op 'irispca' cannot be loaded: every saved version was made by other code: {why}. " in message
    assert message.endswith("run and save pipeline 'train_iris'")
    staleness = new.why_stale("pred_iris")
    [op] = staleness.ops
    assert (op.op, op.why, op.fix) == ("irispca", why, "train_iris")
    assert f"op 'irispca': no saved version of 'irispca' was made by its current code: {why}" in staleness.text


def test_nothing_saved_and_nothing_stale_are_said_plainly(make_app):
    app = make_app(list(iris_pipelines()))
    staleness = app.why_stale("pred_iris")
    assert staleness.unsaved == ("irispca", "irisrf") and staleness.stale
    assert "op 'irisrf' was never saved: run and save a pipeline that fits it" in staleness.text
    assert not app.why_stale("train_iris").stale  # it trains what it needs
    train(app, "train_iris")
    fresh = app.why_stale("pred_iris")
    assert not fresh.stale
    assert fresh.text == "pipeline 'pred_iris' is not stale: its newest saved versions load together"


def test_a_version_saved_without_fields_is_explained_less_precisely(make_app):
    app = make_app(list(iris_pipelines()))
    # A store written by a Chariots older than field records: versions and links only.
    pca, rf = IrisPCA(MLMode.FIT), IrisRF(MLMode.FIT)
    pca.execute(list(DATA))
    rf.execute(list(DATA))
    records = []
    for op in (pca, rf):
        data = op.serialize()
        digest = hashlib.sha256(data).hexdigest()
        app.saver.save(f"ops/{op.name}/{digest}", data)
        records.append(OpVersionRecord(op.name, str(op.op_version), str(type(op).__version__), "old_train", 1.0, f"ops/{op.name}/{digest}", digest, len(data)))
    old_pca = str(pca_class(n_components=1).__version__)  # the forest was built on a PCA of other code
    app.op_store.commit(Commit(records, [LinkRecord("irispca", old_pca, "irisrf", str(rf.op_version))]))
    [edge] = app.why_stale("pred_iris").edges
    assert not edge.change.fields_recorded and edge.change.code_changed
    assert edge.why.startswith("the code of 'irispca' changed (MAJOR) (which field is unknown")
    assert edge.fix == "old_train"


# -- what a save records -----------------------------------------------------------------------
def test_each_new_version_records_its_fields_once(make_app):
    app = make_app(list(iris_pipelines(pca_class(n_components=2, label="<b>" + "x" * 200))))
    train(app, "train_iris")
    version = str(app.pipeline_versions("train_iris")["irispca"])
    [entry] = app.op_store.journal(OpFieldsRecord, fields_name("irispca", version))
    record = entry.record
    assert (record.op_name, record.version) == ("irispca", version)
    assert record.op_class.endswith(".IrisPCA")
    [label, components] = record.fields
    assert (components.name, components.version_type, components.value, components.kind) == ("model_parameters['n_components']", "major", "2", "value")
    assert components.subversion == hashlib.sha1(hashlib.sha1(b"2").hexdigest().encode()).hexdigest()
    assert label.value.startswith("'<b>xxx") and "..." in label.value and len(label.value) <= 80  # cut in the middle
    # Saving again writes nothing new; the plain op feeding a new model is described too.
    app.save_pipeline("train_iris")
    assert len(app.op_store.journal(OpFieldsRecord, fields_name("irispca", version))) == 1
    assert app.op_store.journal(OpFieldsRecord, fields_name("data", str(Data.__version__)))[0].record.fields == ()


def test_values_are_rendered_short_and_never_pickled(make_app):
    class Unprintable:
        def __repr__(self):
            raise RuntimeError("no")

        def __str__(self):
            return "unprintable"

    fields = {
        "model": VersionedField(IrisRF, VersionType.MAJOR),
        "how": VersionedField(sorted, VersionType.MINOR),
        "many": VersionedField(list(range(100)), VersionType.PATCH),
        "odd": VersionedField(Unprintable(), VersionType.PATCH),
    }
    pca = type("IrisPCA", (IrisPCA,), fields)
    app = make_app(list(iris_pipelines(pca)))
    train(app, "train_pca")
    version = str(app.pipeline_versions("train_pca")["irispca"])
    record = app.op_store.journal(OpFieldsRecord, fields_name("irispca", version))[0].record
    values = {field.name: field.value for field in record.fields}
    assert values["model"] == "chariots_test_explain.IrisRF"
    assert values["how"] == "builtins.sorted"
    assert values["many"] == "[0, 1, 2, 3, 4, 5, 6, 7, ...]"
    assert values["odd"] == "<Unprintable whose repr failed: RuntimeError>"


class JournalSpy(MemoryOpStore):
    """A memory store that notes the kind of every journal read through its views."""

    def __init__(self):
        super().__init__()
        self.read_kinds = []

    @contextmanager
    def _view(self):
        with super()._view() as view:
            read = view._journal

            def journal(record_type, kind, *args):
                self.read_kinds.append(kind)
                return read(record_type, kind, *args)

            view._journal = journal
            yield view


def test_loads_that_succeed_never_read_field_records(tmp_path):
    store = JournalSpy()
    with shared_apps("memory", tmp_path) as make:
        app = make(list(iris_pipelines()), op_store=store)
        train(app, "train_iris")
        app.load_pipeline("pred_iris")
        assert "fields" not in store.read_kinds
        train(app, "train_pca")
        with pytest.raises(VersionError):
            app.load_pipeline("pred_iris")
        assert "fields" in store.read_kinds  # a refusal explains itself


# -- the structure ---------------------------------------------------------------------------------
def test_a_staleness_travels_as_json_and_bad_data_is_refused(make_app):
    app = trained_pair(make_app)
    train(app, "train_pca")
    staleness = app.why_stale("pred_iris")
    again = Staleness.from_dict(json.loads(json.dumps(staleness.to_dict())))
    assert again == staleness and again.text == staleness.text
    with pytest.raises(ChariotsError, match="expected a Staleness"):
        Staleness.from_dict({"pipeline": "p", "edges": [{"upstream": "a"}]})


def test_field_change_texts():
    assert FieldChange("op", "salt", "minor", "<Salt>", "<Salt>", "computed").text == "op.salt (MINOR) changed (its class computes it: <Salt>)"
    assert FieldChange("op", "f", "patch", "'a…'", "'a…'").text == "op.f (PATCH) changed beyond the 80 characters recorded ('a…')"
    change = Change("op", "a" * 40 + "_" + "b" * 40 + "_" + "c" * 40 + "_1.0", "d" * 40 + "_" + "b" * 40 + "_" + "c" * 40 + "_2.0", ("major",))
    assert change.text == "'op' changed from aaaaaaa/bbbbbbb/ccccccc to ddddddd/bbbbbbb/ccccccc (MAJOR)"
    edge = StaleEdge("up", "down", change.old, change)
    assert edge.text == edge.why  # no fix known: none suggested
