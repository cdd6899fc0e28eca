"""The ``chariots`` command, end to end in subprocesses, on a real store (and a real server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from chariots_test_processes import free_port

from chariots_core.project.cli import main

CHARIOTS_SCRIPT = Path(sys.executable).with_name("chariots")
# Tests rewrite modules within the same second: stale bytecode must never be reused.
ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}

MODULE = '''\
from chariots_core import BaseOp, Node, Pipeline, VersionedField, VersionType
from chariots_core.ml import BaseMLOp, MLMode


class Numbers(BaseOp):
    def execute(self):
        return [1.0, 2.0, 3.0, 6.0]


class Scale(BaseMLOp):
    """Learns the largest value; predicts values divided by it. Retraining is a MAJOR change."""

    training_update_version = VersionType.MAJOR

    def fit(self, values):
        self._model = max(values)

    def predict(self, values):
        return [value / self._model for value in values]


class Center(BaseMLOp):
    """Learns the mean; predicts each value minus it (plus an offset)."""

    offset = VersionedField(0, VersionType.MAJOR)

    def fit(self, values):
        self._model = sum(values) / len(values)

    def predict(self, values):
        return [value - self._model + self.offset for value in values]


class Explode(BaseOp):
    def execute(self, value):
        raise ValueError("exploded on " + repr(value))


IN, OUT = "__pipeline_input__", "__pipeline_output__"
train = Pipeline([Node(Numbers(), output_nodes="numbers"), Node(Center(MLMode.FIT), input_nodes=["numbers"])], "train")
pred = Pipeline([Node(Center(MLMode.PREDICT), input_nodes=[IN], output_nodes=OUT)], "pred")
train_both = Pipeline(
    [
        Node(Numbers(), output_nodes="numbers"),
        Node(Scale(MLMode.FIT_PREDICT), input_nodes=["numbers"], output_nodes="scaled"),
        Node(Center(MLMode.FIT), input_nodes=["scaled"]),
    ],
    "train_both",
)
train_scale = Pipeline(
    [Node(Numbers(), output_nodes="numbers"), Node(Scale(MLMode.FIT), input_nodes=["numbers"])], "train_scale"
)
pred_both = Pipeline(
    [
        Node(Scale(MLMode.PREDICT), input_nodes=[IN], output_nodes="scaled"),
        Node(Center(MLMode.PREDICT), input_nodes=["scaled"], output_nodes=OUT),
    ],
    "pred_both",
)
explode = Pipeline([Node(Explode(), input_nodes=[IN], output_nodes=OUT)], "explode")
PIPELINES = [train, pred, explode]
BOTH = [train_both, train_scale, pred_both]
'''



def run(cwd: Path, *args: str, code: int = 0, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -m chariots_core.project.cli ARGS`` in ``cwd`` and check its exit code."""
    result = subprocess.run(
        [sys.executable, "-m", "chariots_core.project.cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env=ENV,
    )
    assert result.returncode == code, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def one_line_error(result: subprocess.CompletedProcess, kind: str) -> str:
    """The error message of a failed command (from its "chariots: Kind:" line), with no traceback.

    The message is the error's own: one line, or a few for reports such as every incompatible
    edge of a VersionError.
    """
    assert "Traceback" not in result.stderr
    head, found, message = result.stderr.partition(f"chariots: {kind}: ")
    assert found and (not head or head.endswith("\n")), result.stderr
    return message


@pytest.fixture
def project(tmp_path):
    """A project directory: a module of small pipelines and a chariots.toml using LMDB + files."""
    pytest.importorskip("chariots_lmdb")
    pytest.importorskip("chariots_fsspec")
    (tmp_path / "cli_mini.py").write_text(MODULE, encoding="utf-8")
    (tmp_path / "chariots.toml").write_text(
        '[op_store]\npath = "data"\n\n[pipelines]\nimport_path = "cli_mini:PIPELINES"\n\n'
        '[workers]\npool = "inprocess"\n',
        encoding="utf-8",
    )
    return tmp_path


def use_pipelines(project: Path, attribute: str) -> None:
    config = project / "chariots.toml"
    config.write_text(config.read_text().replace("cli_mini:PIPELINES", f"cli_mini:{attribute}"))


# -- help and parsing ----------------------------------------------------------------------
def test_installed_script_shows_help():
    if not CHARIOTS_SCRIPT.exists():
        pytest.skip("the chariots console script is not installed next to this python")
    result = subprocess.run([str(CHARIOTS_SCRIPT), "--help"], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0
    for command in ("new", "serve", "call", "save", "load", "versions", "jobs", "pipelines", "status", "dag"):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("command", "option"),
    [
        ("new", "--directory"),
        ("serve", "--port"),
        ("call", "--input"),
        ("save", "--url"),
        ("load", "--strategy"),
        ("versions", "--config"),
        ("jobs", "JOB_ID"),
        ("pipelines", "--url"),
        ("status", "--json"),
        ("dag", "--lineage"),
        ("gc", "--dry-run"),
    ],
)
def test_every_command_has_help(capsys, command, option):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])

    assert exit_info.value.code == 0
    assert option in capsys.readouterr().out


def test_usage_errors_exit_2_with_a_message(project):
    bad_json = run(project, "call", "pred", "--input", "[1,", code=2)
    assert "argument --input: not valid JSON" in bad_json.stderr
    bad_strategy = run(project, "load", "pred", "--strategy", "oldest", code=2)
    assert "invalid choice: 'oldest'" in bad_strategy.stderr


# -- in-process: the seed's train -> save -> load -> predict, one command per process -------
def test_call_save_load_call_across_processes(project, tmp_path_factory):
    trained = run(project, "call", "train")
    assert trained.stdout.startswith("pipeline 'train' trained center (major ")  # the parts training changed
    assert trained.stdout.rstrip().endswith("not saved yet (held for the next command): run chariots save train")
    assert "[train] 1/2 numbers ... done" in trained.stderr
    assert "[train] 2/2 center ... done" in trained.stderr

    saved = run(project, "save", "train")
    assert "saved pipeline 'train'" in saved.stdout
    assert saved.stdout.splitlines()[1].split() == ["NODE", "MAJOR", "MINOR", "PATCH"]

    loaded = run(project, "load", "pred")
    assert "loaded pipeline 'pred'" in loaded.stdout
    center_line = next(line for line in loaded.stdout.splitlines() if line.startswith("center"))
    assert center_line.split()[1:] == next(
        line for line in saved.stdout.splitlines() if line.startswith("center")
    ).split()[1:]

    predicted = run(project, "call", "pred", "--input", "[4, 3]")
    assert json.loads(predicted.stdout) == [1.0, 0.0]  # the mean of 1, 2, 3, 6 is 3
    input_file = tmp_path_factory.mktemp("inputs") / "input.json"
    input_file.write_text("[6]")
    quiet = run(project, "call", "pred", "--input-file", str(input_file), "--quiet")
    assert json.loads(quiet.stdout) == [3.0]
    assert quiet.stderr == ""

    versions = run(project, "versions", "pred")
    header, row = versions.stdout.splitlines()
    assert header.split() == ["NODE", "MAJOR", "MINOR", "PATCH", "SAVED", "LATEST", "SAVED"]
    assert row.split()[:4] == center_line.split()  # the version the load chose, still served
    assert row.split()[4] == "1"
    assert "versions of pipeline 'pred' served (held by the last call or load)" in versions.stderr


def test_a_prediction_pipeline_is_not_served_before_load(project):
    run(project, "call", "train")
    run(project, "save", "train")

    result = run(project, "call", "pred", "--input", "[1]", code=1)

    line = one_line_error(result, "NotFittedError")
    assert "neither fitted nor loaded" in line
    assert "(in node 'center' of pipeline 'pred')" in line
    assert "[pred] 1/1 center ... failed" in result.stderr


def test_retraining_through_the_cli_is_refused_by_downstream_models(project):
    use_pipelines(project, "BOTH")
    run(project, "call", "train_both", "--quiet")
    run(project, "save", "train_both")
    run(project, "call", "train_scale", "--quiet")  # a new Scale: MAJOR change under Center
    run(project, "save", "train_scale")

    refused = run(project, "load", "pred_both", code=1)
    line = one_line_error(refused, "VersionError")
    assert "scale" in line and "center" in line

    run(project, "load", "pred_both", "--strategy", "latest_compatible")
    predicted = run(project, "call", "pred_both", "--input", "[6]", "--quiet")
    assert json.loads(predicted.stdout) == pytest.approx([1.0 - 0.5])  # 6/6 minus the mean of the scaled numbers


def test_a_load_that_leaves_a_model_unfitted_is_not_held_and_says_so(project):
    use_pipelines(project, "BOTH")
    run(project, "call", "train_scale", "--quiet")
    run(project, "save", "train_scale")  # scale is saved, center never was

    loaded = run(project, "load", "train_both")

    assert "loaded pipeline 'train_both'" in loaded.stdout
    assert "what pipeline 'train_both' serves now cannot be held for the next command" in loaded.stderr


def test_ops_held_from_changed_code_are_dropped_not_served(project):
    run(project, "call", "train")
    run(project, "save", "train")
    run(project, "load", "pred")
    module = project / "cli_mini.py"
    module.write_text(module.read_text().replace("VersionedField(0,", "VersionedField(1,"))

    result = run(project, "call", "pred", "--input", "[4]", code=1)

    assert "came from code that has changed since; dropped it" in result.stderr
    assert "neither fitted nor loaded" in one_line_error(result, "NotFittedError")


def test_corrupt_held_bytes_are_detected_and_never_served(project):
    run(project, "call", "train", "--quiet")
    held = list((project / "data" / "blobs").rglob("ops/center/*"))
    assert len(held) == 1  # the held model, in the app's saver: nothing of it is in the store yet
    held[0].write_bytes(b"garbage")

    corrupt = run(project, "save", "train", code=1)
    assert "the ops held for 'train' cannot be read back" in corrupt.stderr
    assert "the bytes are corrupt" in corrupt.stderr
    assert "nothing trained to save in pipeline 'train'" in one_line_error(corrupt, "NotFittedError")
    run(project, "call", "train", "--quiet")  # training again replaces the damaged state
    assert "saved pipeline 'train'" in run(project, "save", "train").stdout


@pytest.mark.parametrize(
    ("args", "kind", "expected"),
    [
        (("save", "train"), "NotFittedError", "run chariots call train first"),
        (("load", "pred"), "NotSavedError", "was ever saved"),
        (("call", "nope"), "UnknownPipelineError", "available pipelines: 'train', 'pred', 'explode'"),
        (("call", "explode", "--input", "7"), "ValueError", "exploded on 7 (in node 'explode' of pipeline 'explode')"),
    ],
)
def test_failures_print_one_line_and_exit_1(project, args, kind, expected):
    result = run(project, *args, code=1)

    assert expected in one_line_error(result, kind)


def test_config_errors_name_the_file_and_line(project):
    (project / "chariots.toml").write_text('[pipelines]\nimport_path = "cli_mini:PIPELINES"\nprot = 1\n')

    result = run(project, "pipelines", code=1)

    line = one_line_error(result, "ConfigError")
    assert "chariots.toml, line 3: unknown key 'pipelines.prot'" in line


def test_explicit_config_file_and_traceback_flag(project, tmp_path_factory):
    other = tmp_path_factory.mktemp("elsewhere")  # not below the project: no config found up from it
    listed = run(other, "pipelines", "--config", str(project / "chariots.toml"))
    assert listed.stdout.split() == ["train", "pred", "explode"]

    missing = run(other, "pipelines", code=1)  # no configuration up from here: no import path
    assert "set import_path in the [pipelines] section" in one_line_error(missing, "ConfigError")
    traced = run(other, "--traceback", "pipelines", code=1)
    assert "Traceback" in traced.stderr


def test_a_pipeline_that_returns_and_trains_nothing_says_so(project):
    module = project / "cli_mini.py"
    module.write_text(module.read_text() + 'quiet = Pipeline([Node(Numbers(), output_nodes="numbers")], "quiet")\n'
                      "PIPELINES.append(quiet)\n")

    assert run(project, "call", "quiet", "--quiet").stdout == "pipeline 'quiet' ran and returned nothing\n"


def test_versions_of_a_pipeline_never_run_says_what_to_do(project):
    result = run(project, "versions", "pred")

    assert "pipeline 'pred' has no held nor saved versions yet" in result.stdout


def test_versions_after_a_save_alone_show_the_saved_snapshot(project):
    run(project, "call", "train", "--quiet")
    run(project, "save", "train")
    (project / "data" / "cli").rename(project / "elsewhere")  # as if nothing were held

    result = run(project, "versions", "train")

    assert "versions of pipeline 'train' of its last save (not loaded)" in result.stderr
    assert sorted(row.split()[0] for row in result.stdout.splitlines()[1:]) == ["center", "numbers"]


STORE_ONLY = """
import json, sys
from chariots_core.project.cli import main
code = main(sys.argv[1:])
heavy = sorted(name for name in ("cli_mini", "chariots_fsspec", "fsspec", "chariots_waitress") if name in sys.modules)
print(json.dumps({"code": code, "imported": heavy}))
"""


@pytest.mark.parametrize("command", [["jobs"], ["versions", "pred"]])
def test_jobs_and_versions_answer_from_the_store_without_importing_the_project(project, command):
    run(project, "call", "train", "--quiet")
    run(project, "save", "train")
    run(project, "load", "pred")
    (project / "cli_mini.py").write_text("raise RuntimeError('the project must not be imported')\n")

    result = subprocess.run([sys.executable, "-c", STORE_ONLY, *command], cwd=project, capture_output=True,
                            text=True, timeout=60, env=ENV)

    outcome = json.loads(result.stdout.splitlines()[-1])
    assert outcome == {"code": 0, "imported": []}, result.stderr


def test_verbose_logs_what_the_commands_do(project):
    trained = run(project, "-v", "call", "train", "--quiet")
    assert "chariots.cli INFO: held center of pipeline 'train' for the next command" in trained.stderr

    saved = run(project, "-vv", "save", "train")
    assert "chariots.cli INFO: restored center in pipeline 'train' from the holding store" in saved.stderr
    assert "chariots.cli INFO: saved pipeline 'train'" in saved.stderr
    assert "chariots.runner DEBUG" not in saved.stderr  # saving runs no pipeline
    assert "chariots.cli DEBUG: chariots save took" in saved.stderr

    assert "chariots.runner DEBUG: running pipeline 'pred'" in run(project, "-vv", "call", "pred", code=1).stderr
    assert " INFO" not in run(project, "call", "train", "--quiet").stderr  # quiet unless asked


# -- asynchronous jobs ---------------------------------------------------------------------
@pytest.mark.slow
def test_jobs_run_in_workers_and_are_listed(project):
    trained = run(project, "call", "train", "--use-worker")
    assert trained.stdout.startswith("pipeline 'train' trained center")
    job_id = trained.stderr.split("job ")[1].split()[0]
    failed = run(project, "call", "explode", "--input", "5", "--use-worker", code=1)
    assert "exploded on 5" in one_line_error(failed, "WorkerError")

    listing = run(project, "jobs").stdout.splitlines()
    assert listing[0].split()[:3] == ["JOB", "PIPELINE", "STATUS"]
    rows = {line.split()[1]: line for line in listing[1:]}
    assert rows["train"].split()[0] == job_id and rows["train"].split()[2] == "done"
    assert rows["explode"].split()[2] == "failed" and "exploded on 5" in rows["explode"]

    one = run(project, "jobs", job_id).stdout.splitlines()
    assert one[1].split() == [job_id, "done", "-"]

    run(project, "save", "train")  # what the worker trained is held like a synchronous call's
    run(project, "load", "pred")
    assert json.loads(run(project, "call", "pred", "--input", "[3]", "--quiet").stdout) == [0.0]


def test_models_trained_in_a_worker_process_are_saved_and_served(project):
    pytest.importorskip("chariots_multiprocess")
    config = project / "chariots.toml"
    config.write_text(config.read_text().replace('pool = "inprocess"', 'pool = "multiprocess"'))

    trained = run(project, "call", "train", "--use-worker")
    assert trained.stderr.count(" queued") == 1 and "[train] 2/2 center ... done" in trained.stderr
    run(project, "save", "train")
    run(project, "load", "pred")

    assert json.loads(run(project, "call", "pred", "--input", "[5]", "--quiet").stdout) == [2.0]


def test_jobs_lists_a_job_whose_app_process_died_as_failed(project):
    from chariots_core.op_store.store import JobRecord
    from chariots_core.serving.owners import owner_of_this_process
    from chariots_lmdb import LMDBOpStore

    store = LMDBOpStore(str(project / "data" / "store"))
    try:
        # Who owns a job: "<host>/<pid namespace>/<pid>/<start time>"; this one names a pid
        # that has exited.
        host, namespace, _, start = owner_of_this_process().split("/")
        gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout.strip()
        store.put_job(JobRecord("orphan", "train", "running", 1.0, 1.0, owner=f"{host}/{namespace}/{gone}/{start}"))
    finally:
        store.close()

    rows = {line.split()[0]: line for line in run(project, "jobs").stdout.splitlines()[1:]}
    assert rows["orphan"].split()[2] == "failed"
    assert "exited before it finished" in rows["orphan"]


def test_no_jobs_yet(project):
    assert run(project, "jobs").stdout.strip() == "no jobs"


# -- against a running server ----------------------------------------------------------------
@pytest.fixture
def server(project):
    pytest.importorskip("chariots_waitress")
    from chariots_waitress import PipelinesClient

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "chariots_core.project.cli", "serve", "--port", str(port)],
        cwd=project, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    client = PipelinesClient(url, timeout=5)
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                client.health_check()
                break
            except Exception:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the server did not start: {process.communicate()[1]}")
                time.sleep(0.2)
        yield url
    finally:
        client.close()
        process.terminate()
        process.communicate(timeout=30)


@pytest.mark.slow
def test_url_mode_talks_to_a_running_server(project, server):
    trained = run(project, "call", "train", "--url", server)
    assert "pipeline 'train' trained center" in trained.stdout and "(held by the server)" in trained.stdout
    assert "saved pipeline 'train'" in run(project, "save", "train", "--url", server).stdout
    assert "loaded pipeline 'pred'" in run(project, "load", "pred", "--url", server).stdout
    assert json.loads(run(project, "call", "pred", "--input", "[4, 3]", "--url", server).stdout) == [1.0, 0.0]

    versions = run(project, "versions", "pred", "--url", server).stdout.splitlines()
    assert versions[1].split()[0] == "center" and versions[1].split()[4:] == ["-", "-"]
    assert run(project, "pipelines", "--url", server).stdout.split() == ["train", "pred", "explode"]

    queued = json.loads(run(project, "call", "train", "--use-worker", "--url", server).stdout)
    assert queued["job_status"] in ("queued", "running", "done")
    waited = run(project, "call", "explode", "--input", "1", "--use-worker", "--wait", "--url", server, code=1)
    assert "exploded on 1" in one_line_error(waited, "WorkerError")
    job = run(project, "jobs", queued["job_id"], "--url", server).stdout
    assert queued["job_id"] in job
    no_ids = run(project, "jobs", "--url", server, code=1)
    assert "give the ids of the jobs" in one_line_error(no_ids, "ChariotsError")

    refused = run(project, "load", "explode_nope", "--url", server, code=1)
    assert "explode_nope" in one_line_error(refused, "UnknownPipelineError")


def test_url_mode_without_a_server(project):
    pytest.importorskip("chariots_waitress")

    result = run(project, "call", "train", "--url", f"http://127.0.0.1:{free_port()}", code=1)

    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("chariots: ServerUnavailableError: ")


def test_serve_without_waitress_says_what_to_install(project):
    code = (
        "import sys; sys.modules['chariots_waitress'] = None\n"  # as if chariots[serve] were not installed
        "from chariots_core.project.cli import main; sys.exit(main(['serve']))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=project, capture_output=True, text=True, timeout=60, env=ENV
    )

    assert result.returncode == 1
    assert "pip install 'chariots[serve]'" in one_line_error(result, "BackendError")


# -- chariots new ----------------------------------------------------------------------------
def test_new_writes_a_project_and_never_overwrites(tmp_path):
    created = run(tmp_path, "new", "My-Shop", "--directory", "shop")
    target = tmp_path / "shop"
    assert f"created project 'My-Shop' in {target}" in created.stdout
    files = {path.relative_to(target).as_posix() for path in target.rglob("*") if path.is_file()}
    assert {
        "README.md", "chariots.toml", "pyproject.toml", ".gitignore", "my_shop/__init__.py",
        "my_shop/pipelines.py", "my_shop/app.py", "my_shop/ops/data_ops.py", "my_shop/ops/model_ops.py",
        "tests/test_my_shop_pipelines.py",
    } <= files
    assert not any(name.endswith(".tmpl") for name in files)
    assert 'import_path = "my_shop.pipelines:PIPELINES"' in (target / "chariots.toml").read_text()
    assert "{{" not in "".join((target / name).read_text() for name in files)

    before = (target / "README.md").read_text()
    refused = run(tmp_path, "new", "My-Shop", "--directory", "shop", code=1)
    assert "already exists and is not empty" in one_line_error(refused, "ConfigError")
    assert (target / "README.md").read_text() == before

    pyproject = tomllib.loads((target / "pyproject.toml").read_text())
    assert any(requirement.startswith("pytest") for requirement in pyproject["project"]["optional-dependencies"]["test"])
    assert "pip install -e '.[test]'" in (target / "README.md").read_text()
    assert "pip install -e '.[test]' && pytest" in created.stdout  # the next steps install pytest too

    bad_name = run(tmp_path, "new", "123 ???", code=1)
    assert "cannot make a Python package name" in one_line_error(bad_name, "ConfigError")


@pytest.mark.slow
def test_generated_project_passes_its_tests_and_trains_from_the_command_line(tmp_path):
    for module in ("sklearn", "pandas", "chariots_sklearn", "chariots_lmdb", "chariots_fsspec"):
        pytest.importorskip(module)
    run(tmp_path, "new", "iris")
    project = tmp_path / "iris"

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project, capture_output=True, text=True, timeout=300, env={**ENV, "PYTHONPATH": str(project)},
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "3 passed" in tests.stdout

    trained = run(project, "call", "train_iris")
    assert "[train_iris] 4/4 irisrf ... done" in trained.stderr
    run(project, "save", "train_iris")
    run(project, "load", "pred_iris")
    predicted = run(project, "call", "pred_iris", "--input", "[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]")
    assert json.loads(predicted.stdout) == [0, 2]  # setosa, virginica
    assert (project / "iris_local" / "store").is_dir()


# -- gc --------------------------------------------------------------------------------------------
def test_gc_removes_unreferenced_blobs_and_keeps_saved_and_held_ones(project):
    run(project, "call", "train")  # the trained model is held: its blob is named by the holding store
    run(project, "save", "train")
    run(project, "call", "train")  # another training, held and not saved
    blobs = project / "data" / "blobs"
    orphan = blobs / "ops" / "center" / "left-by-a-killed-save"
    orphan.write_bytes(b"debris")
    kept = sorted(path for path in (blobs / "ops").rglob("*") if path.is_file() and path != orphan)
    assert len(kept) == 2  # the saved model and the held one

    dry = run(project, "gc", "--older-than", "0", "--dry-run")
    assert dry.stdout.splitlines() == ["ops/center/left-by-a-killed-save"]
    assert "would remove 1 unreferenced blob(s) (6 bytes)" in dry.stderr
    assert orphan.exists()

    young = run(project, "gc", "--older-than", "1h")
    assert young.stdout == "" and orphan.exists()  # maybe a save in progress: kept

    removed = run(project, "gc", "--older-than", "0s")
    assert removed.stdout.splitlines() == ["ops/center/left-by-a-killed-save"]
    assert "removed 1 unreferenced blob(s) (6 bytes) and 0 piece(s) of debris" in removed.stderr
    assert sorted(path for path in (blobs / "ops").rglob("*") if path.is_file()) == kept
    run(project, "save", "train")  # the held model is still there to save
    run(project, "load", "pred")
    assert json.loads(run(project, "call", "pred", "--input", "[4]").stdout) == [1.0]


def test_gc_refuses_a_bad_duration(project):
    result = run(project, "gc", "--older-than", "soon", code=2)
    assert "not a duration ('soon'); give seconds or e.g. 30m, 24h, 7d" in result.stderr
