"""ChariotsConfig: TOML, YAML and pyproject files, defaults, every error path, what it builds."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from chariots_core import Chariots, ChariotsConfig, InProcessWorkerPool, Node, Pipeline, SequentialRunner
from chariots_core.errors import ConfigError
from chariots_core.project.config import OpStoreConfig, PipelinesConfig, WorkersConfig
from chariots_core.registry import register_backend

FULL_TOML = """\
[op_store]
path = "data"
store = "memory"
saver = "memory"
compatibility = "minor"

[pipelines]
import_path = "mini_pipelines:PIPELINES"
runner = "sequential"
host = "localhost"
port = 9001

[workers]
pool = "inprocess"
n_workers = 2
use_worker = false
"""

FULL_YAML = """\
op_store:
  path: data
  store: memory
  saver: memory
  compatibility: minor
pipelines:
  import_path: "mini_pipelines:PIPELINES"
  runner: sequential
  host: localhost
  port: 9001
workers:
  pool: inprocess
  n_workers: 2
  use_worker: false
"""

PIPELINES_MODULE = """\
from chariots_core import BaseOp, Node, Pipeline


class AddOne(BaseOp):
    def execute(self, value):
        return value + 1


PIPELINES = [Pipeline([Node(AddOne(), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")],
                      "add_one")]
NOT_PIPELINES = 42
"""


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path):
    """A directory holding an importable module of pipelines (a unique name per test)."""
    module = f"mini_pipelines_{abs(hash(tmp_path)) % 10**8}"
    write(tmp_path / f"{module}.py", PIPELINES_MODULE)
    yield tmp_path, module
    sys.modules.pop(module, None)


def expected_sections() -> tuple:
    return (
        OpStoreConfig(path="data", store="memory", saver="memory", compatibility="minor"),
        PipelinesConfig(import_path="mini_pipelines:PIPELINES", runner="sequential", host="localhost", port=9001),
        WorkersConfig(pool="inprocess", n_workers=2, use_worker=False),
    )


# -- reading files ---------------------------------------------------------------------------
def test_no_file_gives_working_defaults(tmp_path):
    config = ChariotsConfig(base_dir=tmp_path)

    assert config.op_store == OpStoreConfig()
    assert config.pipelines == PipelinesConfig()
    assert config.workers == WorkersConfig()
    assert config.source is None
    assert config.data_path == str(tmp_path.resolve() / "chariots_data")
    assert config.url == "http://127.0.0.1:8080"
    assert config.get_worker_pool() is None


def test_toml_file_sets_every_section(tmp_path):
    config = ChariotsConfig(write(tmp_path / "chariots.toml", FULL_TOML))

    assert (config.op_store, config.pipelines, config.workers) == expected_sections()
    assert config.source == str((tmp_path / "chariots.toml").resolve())
    assert config.url == "http://localhost:9001"


@pytest.mark.parametrize("name", ["chariots.yaml", "chariots.yml"])
def test_yaml_file_reads_like_toml(tmp_path, name):
    pytest.importorskip("yaml")
    config = ChariotsConfig(write(tmp_path / name, FULL_YAML))

    assert (config.op_store, config.pipelines, config.workers) == expected_sections()


def test_pyproject_tool_chariots_table(tmp_path):
    text = '[project]\nname = "x"\n\n' + FULL_TOML.replace("[", "[tool.chariots.")
    config = ChariotsConfig(write(tmp_path / "pyproject.toml", text))

    assert (config.op_store, config.pipelines, config.workers) == expected_sections()


def test_empty_files_are_valid(tmp_path):
    pytest.importorskip("yaml")
    for name in ("chariots.toml", "chariots.yaml"):
        config = ChariotsConfig(write(tmp_path / name, ""))
        assert config.op_store == OpStoreConfig()


def test_relative_paths_resolve_against_the_file_not_the_cwd(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    config_file = write(tmp_path / "conf" / "chariots.toml", '[op_store]\npath = "data"\nsaver = "blobs"\n')
    monkeypatch.chdir(tmp_path)

    config = ChariotsConfig(config_file)

    assert config.data_path == str((tmp_path / "conf" / "data").resolve())
    assert ChariotsConfig(op_store={"path": "s3://bucket/prefix"}).data_path == "s3://bucket/prefix"


def test_arguments_replace_whole_sections_of_the_file(tmp_path):
    config = ChariotsConfig(
        write(tmp_path / "chariots.toml", FULL_TOML),
        op_store={"path": "other"},
        workers=WorkersConfig(n_workers=3),
    )

    assert config.op_store == OpStoreConfig(path="other")  # the file's store/saver are gone too
    assert config.workers == WorkersConfig(n_workers=3)
    assert config.pipelines.port == 9001


def test_evolve_keeps_the_source_and_directory(tmp_path):
    import attrs

    config = ChariotsConfig(write(tmp_path / "chariots.toml", FULL_TOML))
    changed = attrs.evolve(config, op_store=attrs.evolve(config.op_store, path="elsewhere"))

    assert changed.source == config.source
    assert changed.data_path == str(tmp_path.resolve() / "elsewhere")
    assert changed.pipelines == config.pipelines


def test_discover_walks_up_and_skips_pyproject_without_table(tmp_path):
    write(tmp_path / "chariots.toml", '[pipelines]\nport = 9100\n')
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    write(tmp_path / "a" / "pyproject.toml", '[project]\nname = "x"\n')

    assert ChariotsConfig.discover(nested).pipelines.port == 9100

    write(nested / "pyproject.toml", "[tool.chariots.pipelines]\nport = 9200\n")
    assert ChariotsConfig.discover(nested).pipelines.port == 9200


def test_discover_without_any_file_gives_defaults_rooted_at_start(tmp_path):
    config = ChariotsConfig.discover(tmp_path)

    assert config.source is None
    assert config.data_path == str(tmp_path.resolve() / "chariots_data")


# -- errors ----------------------------------------------------------------------------------
def test_unknown_key_names_key_file_line_and_known_keys(tmp_path):
    path = write(tmp_path / "chariots.toml", '[op_store]\npath = "x"\n\n[pipelines]\nhots = "h"\n')

    with pytest.raises(ConfigError) as caught:
        ChariotsConfig(path)

    message = str(caught.value)
    assert f"{path.resolve()}, line 5" in message
    assert "unknown key 'pipelines.hots'" in message
    assert "import_path, runner, host, port" in message
    assert isinstance(caught.value, ValueError)


def test_unknown_section_is_refused(tmp_path):
    path = write(tmp_path / "chariots.toml", '[op_store]\n\n[pipelines_workers]\nuse_for_all = true\n')

    with pytest.raises(ConfigError, match=r"line 3: unknown section 'pipelines_workers' \(known: op_store"):
        ChariotsConfig(path)


def test_every_wrong_type_is_reported_at_once_with_its_line(tmp_path):
    path = write(
        tmp_path / "chariots.toml",
        """\
        [op_store]
        compatibility = "loose"

        [pipelines]
        port = "8080"
        host = 3

        [workers]
        n_workers = 0
        use_worker = "yes"
        """,
    )

    with pytest.raises(ConfigError) as caught:
        ChariotsConfig(path)

    message = str(caught.value)
    assert "line 2: 'op_store.compatibility' must be one of 'major', 'minor', 'exact' (got 'loose'" in message
    assert "line 5: 'pipelines.port' must be an int (got '8080' that is a str)" in message
    assert "line 6: 'pipelines.host' must be a string (got 3 that is a int)" in message
    assert "line 10: 'workers.use_worker' must be true or false (got 'yes' that is a str)" in message


def test_range_checks_name_the_key(tmp_path):
    path = write(tmp_path / "chariots.toml", "[workers]\npool = 'inprocess'\n\nn_workers = 0\n")

    with pytest.raises(ConfigError, match=r"line 4: 'workers.n_workers' must be a positive int \(got 0"):
        ChariotsConfig(path)
    with pytest.raises(ConfigError, match=r"'port' must be a port number"):
        PipelinesConfig(port=70000)


def test_yaml_errors_name_key_and_line(tmp_path):
    pytest.importorskip("yaml")
    path = write(tmp_path / "chariots.yaml", "op_store:\n  path: data\nworkers:\n  n_workers: many\n")

    with pytest.raises(ConfigError, match=r"chariots.yaml, line 4: 'workers.n_workers' must be an int"):
        ChariotsConfig(path)


def test_pyproject_errors_point_at_the_tool_table(tmp_path):
    text = '[project]\nname = "x"\n\n[tool.chariots.workers]\nn_workers = 2\npol = "inprocess"\n'
    path = write(tmp_path / "pyproject.toml", text)

    with pytest.raises(ConfigError, match=r"pyproject.toml, line 6: unknown key 'workers.pol'"):
        ChariotsConfig(path)


def test_section_that_is_not_a_table(tmp_path):
    path = write(tmp_path / "chariots.toml", 'workers = "multiprocess"\n')

    with pytest.raises(ConfigError, match=r"line 1: 'workers' must be a table of settings"):
        ChariotsConfig(path)


def test_wrong_values_given_as_arguments(tmp_path):
    with pytest.raises(ConfigError, match=r"the configuration: unknown key 'op_store.dir'"):
        ChariotsConfig(op_store={"dir": str(tmp_path)})


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"'.*nope.toml' does not exist"):
        ChariotsConfig(tmp_path / "nope.toml")


def test_unsupported_extension(tmp_path):
    with pytest.raises(ConfigError, match=r"must be .toml, .yaml or .yml"):
        ChariotsConfig(write(tmp_path / "chariots.ini", "[op_store]\n"))


def test_invalid_toml_names_file_and_line(tmp_path):
    path = write(tmp_path / "chariots.toml", '[op_store]\npath = "unterminated\n')

    with pytest.raises(ConfigError, match=r"chariots.toml: invalid TOML: .*line 2"):
        ChariotsConfig(path)


def test_invalid_yaml_names_file_and_line(tmp_path):
    pytest.importorskip("yaml")
    path = write(tmp_path / "chariots.yaml", "op_store:\n  path: [unclosed\nworkers: {}\n")

    with pytest.raises(ConfigError, match=r"chariots.yaml, line \d: invalid YAML"):
        ChariotsConfig(path)


def test_a_document_that_is_not_a_table(tmp_path):
    pytest.importorskip("yaml")
    with pytest.raises(ConfigError, match=r"the configuration must be a table of sections \(got \['a', 'b'\]\)"):
        ChariotsConfig(write(tmp_path / "chariots.yaml", "- a\n- b\n"))


def test_pyproject_without_tool_chariots(tmp_path):
    path = write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n')

    with pytest.raises(ConfigError, match=r"has no \[tool.chariots\] table"):
        ChariotsConfig(path)


def test_yaml_without_pyyaml_says_what_to_install(tmp_path):
    path = write(tmp_path / "chariots.yaml", "op_store:\n  path: data\n")
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["yaml"] = None  # makes `import yaml` fail as if PyYAML were not installed
        from chariots_core import BackendError, ChariotsConfig
        try:
            ChariotsConfig({str(path)!r})
        except BackendError as exc:
            assert isinstance(exc, ImportError)
            print(exc)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert "pip install 'chariots[yaml]'" in result.stdout
    assert "chariots.yaml" in result.stdout


# -- importing pipelines ---------------------------------------------------------------------
def test_import_path_loads_the_pipelines_from_the_config_directory(project):
    directory, module = project
    config = ChariotsConfig(write(directory / "chariots.toml", f'[pipelines]\nimport_path = "{module}:PIPELINES"\n'))

    pipelines = config.load_pipelines()

    assert [pipeline.name for pipeline in pipelines] == ["add_one"]


@pytest.mark.parametrize(
    ("import_path", "expected"),
    [
        (
            "no_such_module_xyz:PIPELINES",
            r"line 3: 'pipelines.import_path' = 'no_such_module_xyz:PIPELINES': "
            r"cannot import 'no_such_module_xyz' \(ModuleNotFoundError",
        ),
        ("{module}:MISSING", r"line 3: .*has no 'MISSING'"),
        ("{module}:NOT_PIPELINES", r"line 3: .*must name a list of Pipeline objects.*\(got int\)"),
    ],
)
def test_bad_import_paths_name_the_key_file_and_line(project, import_path, expected):
    directory, module = project
    text = f'[op_store]\n[pipelines]\nimport_path = "{import_path.format(module=module)}"\n'
    config = ChariotsConfig(write(directory / "chariots.toml", text))

    with pytest.raises(ConfigError, match=expected):
        config.load_pipelines()


def test_malformed_import_path_is_refused_when_read(tmp_path):
    path = write(tmp_path / "chariots.toml", '[pipelines]\nimport_path = "mypkg.pipelines"\n')

    with pytest.raises(ConfigError, match=r"line 2: 'pipelines.import_path' must be 'package.module:ATTRIBUTE'"):
        ChariotsConfig(path)


def test_module_failing_on_import_is_reported(tmp_path):
    write(tmp_path / "broken_pipelines_mod.py", "raise RuntimeError('boom at import')\n")
    config = ChariotsConfig(write(tmp_path / "chariots.toml", '[pipelines]\nimport_path = "broken_pipelines_mod:P"\n'))

    with pytest.raises(ConfigError, match=r"RuntimeError: boom at import"):
        config.load_pipelines()


def test_no_import_path_says_how_to_set_it(tmp_path):
    with pytest.raises(ConfigError, match=r"set import_path in the \[pipelines\] section"):
        ChariotsConfig(base_dir=tmp_path).get_app()


# -- what the configuration builds -----------------------------------------------------------
def test_get_app_builds_a_working_app(project):
    directory, module = project
    text = FULL_TOML.replace("mini_pipelines", module)
    config = ChariotsConfig(write(directory / "chariots.toml", text))

    with config.get_app() as app:
        assert isinstance(app, Chariots)
        assert app.compatibility == "minor"
        assert app.available_pipelines() == ["add_one"]
        assert app.call_pipeline("add_one", 41).value == 42
        assert isinstance(app.worker_pool, InProcessWorkerPool)
        assert app.worker_pool.n_workers == 2


def test_get_app_defaults_to_an_lmdb_store_under_the_path(project):
    pytest.importorskip("chariots_lmdb")
    pytest.importorskip("chariots_fsspec")
    directory, module = project
    config = ChariotsConfig(write(directory / "chariots.toml", f'[pipelines]\nimport_path = "{module}:PIPELINES"\n'))

    with config.get_app() as app:
        assert app.call_pipeline("add_one", 1).value == 2

    assert (directory / "chariots_data" / "store").is_dir()


def test_get_app_with_explicit_pipelines_needs_no_import_path(tmp_path):
    from chariots_core import BaseOp

    class Double(BaseOp):
        def execute(self, value):
            return 2 * value

    pipeline = Pipeline(
        [Node(Double(), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")], "double"
    )
    config = ChariotsConfig(op_store={"store": "memory", "saver": "memory"}, base_dir=tmp_path)

    with config.get_app([pipeline]) as app:
        assert app.call_pipeline("double", 4).value == 8


def test_unknown_backend_names_are_refused_when_the_config_is_built_not_later(tmp_path):
    with pytest.raises(ConfigError, match=r"'workers.pool' must name a worker_pool backend \(got 'celery'\); known: .*inprocess"):
        ChariotsConfig(workers={"pool": "celery"}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"'pipelines.runner' must name a runner backend \(got 'fast'\); known: sequential"):
        ChariotsConfig(pipelines={"runner": "fast"})
    with pytest.raises(ConfigError, match=r"'op_store.store' must name a op_store backend \(got 'redis'\)"):
        ChariotsConfig(op_store={"store": "redis"})
    with pytest.raises(ConfigError, match=r"'pipelines.server' must name a server backend \(got 'gunicorn'\)"):
        ChariotsConfig(pipelines={"server": "gunicorn"})
    file = write(tmp_path / "chariots.toml", '[pipelines]\nrunner = "parallel-runner"\n\n[workers]\npool = "rq"\n')
    with pytest.raises(ConfigError) as caught:
        ChariotsConfig(file)
    assert "chariots.toml, line 2: 'pipelines.runner' must name a runner backend" in str(caught.value)
    assert "chariots.toml, line 5: 'workers.pool' must name a worker_pool backend (got 'rq')" in str(caught.value)


@pytest.mark.parametrize("runner", ["SequentialRunner", "sequential-runner", "sequential_runner", "Sequential"])
def test_runner_names_as_chariots_0_2_accepted_them(tmp_path, runner):
    config = ChariotsConfig(write(tmp_path / "chariots.toml", f'[pipelines]\nrunner = "{runner}"\n'))

    assert config.pipelines.runner == "sequential"
    assert isinstance(config.get_runner(), SequentialRunner)


def test_a_runner_instance_is_used_as_given():
    runner = SequentialRunner()
    config = ChariotsConfig(pipelines={"runner": runner})

    assert config.get_runner() is runner
    with pytest.raises(ConfigError, match="'pipelines.runner' must be a runner backend name .got 3 that is a int."):
        ChariotsConfig(pipelines={"runner": 3})


@pytest.mark.parametrize("pool", ["InProcess", "INPROCESS", "inprocess", "InProcessWorkerPool"])
def test_pool_names_are_case_insensitive(tmp_path, pool):
    config = ChariotsConfig(workers={"pool": pool}, base_dir=tmp_path)

    with config.get_worker_pool() as started:
        assert isinstance(started, InProcessWorkerPool)
    assert config.workers.pool == "inprocess"


@pytest.mark.parametrize(
    ("host", "url", "bind"),
    [
        ("localhost", "http://localhost:5000", "localhost"),
        ("http://localhost", "http://localhost:5000", "localhost"),
        ("http://localhost/", "http://localhost:5000", "localhost"),
        ("https://models.example.com", "https://models.example.com:5000", "models.example.com"),
        ("::1", "http://[::1]:5000", "::1"),
    ],
)
def test_a_host_given_with_a_scheme_does_not_double_it(host, url, bind):
    config = ChariotsConfig(pipelines={"host": host, "port": 5000})

    assert config.url == url
    assert config.pipelines.bind_host == bind


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("http://localhost:5000", "without port or path .* set the port in 'port'"),
        ("http://localhost/api", "without port or path"),
        ("ftp://localhost", "http:// or https://"),
        ("localhost/api", "must be a host name such as 'localhost'"),
        ("", "must be a host name"),
    ],
)
def test_hosts_that_are_not_a_host_are_refused(host, expected):
    with pytest.raises(ConfigError, match=f"'pipelines.host' .*{expected}"):
        ChariotsConfig(pipelines={"host": host})


def test_get_client_points_at_the_configured_server(tmp_path):
    pytest.importorskip("chariots_waitress")
    from chariots_waitress import PipelinesClient

    client = ChariotsConfig(pipelines={"host": "127.0.0.1", "port": 9123}, base_dir=tmp_path).get_client()
    schemed = ChariotsConfig(pipelines={"host": "http://localhost", "port": 9123}).get_client()

    assert isinstance(client, PipelinesClient)
    assert client.backend_url == "http://127.0.0.1:9123"
    assert schemed.backend_url == "http://localhost:9123"


def test_serve_runs_the_configured_server_backend_on_the_bare_host(tmp_path):
    served = []
    name = f"recording_{abs(hash(tmp_path)) % 10**8}"
    register_backend("server", name, lambda app, host, port: served.append((app, host, port)))
    config = ChariotsConfig(pipelines={"host": "http://localhost", "port": 9123, "server": name})
    with Chariots([], op_store="memory", saver="memory") as app:
        config.serve(app)
        config.serve(app, host="0.0.0.0", port=80)

    assert served == [(app, "localhost", 9123), (app, "0.0.0.0", 80)]


def test_importing_chariots_core_loads_no_config_parser_nor_backend():
    code = (
        "import sys, chariots_core\n"
        "assert 'chariots_core.project.config' not in sys.modules\n"
        "config = chariots_core.ChariotsConfig()\n"
        "heavy = ('yaml', 'chariots_lmdb', 'chariots_waitress', 'lmdb', 'waitress', 'fsspec')\n"
        "loaded = [name for name in heavy if name in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=os.getcwd())

    assert result.returncode == 0, result.stderr


def test_reload_and_prediction_logging_settings_reach_the_app(project):
    pytest.importorskip("chariots_lmdb")
    directory, module = project
    text = (
        f'[pipelines]\nimport_path = "{module}:PIPELINES"\nreload = "latest_compatible"\nreload_interval = 0.5\n'
        'log_predictions = {add_one = "sha256"}\n'
    )
    config = ChariotsConfig(write(directory / "chariots.toml", text))
    assert (config.pipelines.reload, config.pipelines.reload_interval) == ("latest_compatible", 0.5)
    with config.get_app() as app:
        app.call_pipeline("add_one", 1)
        (record,) = app.predictions("add_one")
        assert record.input is None and record.input_sha256 is not None
        assert app.prediction_log.sink.path == os.path.join(config.data_path, "predictions")
        assert any(thread.name == "chariots-reload" for thread in threading.enumerate())


@pytest.mark.parametrize(
    "setting, message",
    [
        ('reload = "newest"', "'pipelines.reload' must be 'latest' or 'latest_compatible'"),
        ("reload_interval = 0", "'pipelines.reload_interval' must be a number of seconds > 0"),
        ('reload_interval = "5"', "'pipelines.reload_interval' must be a number of seconds > 0"),
        ('log_predictions = "pred"', "'pipelines.log_predictions' must be a list of pipeline names"),
        ("log_predictions = [1]", "'pipelines.log_predictions' must be a list of pipeline names"),
    ],
)
def test_bad_reload_and_logging_settings_name_the_key(tmp_path, setting, message):
    path = write(tmp_path / "chariots.toml", f"[pipelines]\n{setting}\n")
    with pytest.raises(ConfigError, match=message):
        ChariotsConfig(path)
