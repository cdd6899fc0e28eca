"""One file describes a Chariots app: where it keeps its data, which pipelines it serves, how
it runs them in workers.

The configuration lives in ``chariots.toml``, ``chariots.yaml`` (read with PyYAML when it is
installed) or the ``[tool.chariots]`` table of a project's ``pyproject.toml``::

    [op_store]
    path = "iris_local"          # data directory (relative to this file) or URL (s3://b/p)
    store = "lmdb"               # op store backend; default: lmdb for a directory
    saver = "file:///srv/blobs"  # where model bytes go; default: <path>/blobs
    compatibility = "major"      # which part of a version must match along an edge

    [pipelines]
    import_path = "iris.pipelines:PIPELINES"
    runner = "sequential"
    host = "127.0.0.1"
    port = 8080

    [workers]
    pool = "multiprocess"        # none by default
    n_workers = 2
    use_worker = false           # the app-wide default for asynchronous calls

Every key is optional, so an empty file (or no file) is a working configuration. A key that
does not exist or holds the wrong type raises :class:`~chariots_core.errors.ConfigError`
naming the key, the file and, when it can be found, the line::

    >>> config = ChariotsConfig("chariots.toml")
    >>> app = config.get_app()

Backends named here are resolved through :mod:`chariots_core.registry` only when
``get_app``/``get_worker_pool``/``get_client`` are called.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import cattrs
from cattrs.errors import AttributeValidationNote, ClassValidationError, ForbiddenExtraKeysError

from ..errors import BackendError, ConfigError
from ..op_store.lineage import POLICIES
from ..registry import get_backend, known_backends, url_scheme

if TYPE_CHECKING:
    from ..pipelines.pipeline import Pipeline
    from ..pipelines.runners import BaseRunner
    from ..serving.app import Chariots
    from ..serving.workers import BaseWorkerPool

__all__ = [
    "ChariotsConfig",
    "OpStoreConfig",
    "PipelinesConfig",
    "WorkersConfig",
    "CONFIG_FILE_NAMES",
    "http_backend",
]

# Looked for in this order, in a directory and then in each of its parents.
CONFIG_FILE_NAMES = ("chariots.toml", "chariots.yaml", "chariots.yml", "pyproject.toml")


class _InvalidValue(ConfigError):
    """A value has the wrong type or is out of range; ``key`` names the field."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"'{key}' {message}")
        self.key = key
        self.detail = message


def _expect(expected: str, accepts: Callable[[Any], bool]) -> Callable[[Any, attrs.Attribute, Any], None]:
    """An attrs validator raising "'<field>' must be <expected> (got <value> ...)"."""

    def validate(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if not accepts(value):
            raise _InvalidValue(attribute.name, _must_be(expected, value))

    return validate


def _must_be(expected: str, value: Any) -> str:
    return f"must be {expected} (got {value!r} that is a {type(value).__name__})"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _name(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _optional_name(value: Any) -> bool:
    return value is None or _name(value)


@attrs.frozen
class OpStoreConfig:
    """Where the app keeps op versions, links, jobs (the op store) and model bytes (the saver).

    :param path: the app's data directory, relative to the configuration file, or an
        object-storage URL (``s3://bucket/prefix``).
    :param store: the op store backend (``"lmdb"``, ``"memory"``...); default: the one that
        fits ``path``.
    :param saver: a saver name (``"memory"``), URL (``"gs://bucket/blobs"``) or directory;
        default: ``<path>/blobs``.
    :param compatibility: ``"major"``, ``"minor"`` or ``"exact"``.
    """

    path: str = attrs.field(default="chariots_data", validator=_expect("a non-empty string", _name))
    store: str | None = attrs.field(default=None, validator=_expect("a backend name", _optional_name))
    saver: str | None = attrs.field(default=None, validator=_expect("a saver name or URL", _optional_name))
    compatibility: str = attrs.field(
        default="major", validator=_expect(f"one of {', '.join(map(repr, POLICIES))}", POLICIES.__contains__)
    )


@attrs.frozen
class PipelinesConfig:
    """Which pipelines the app serves, how it runs them, and where its HTTP server listens.

    :param import_path: ``"package.module:ATTRIBUTE"`` naming a list of pipelines (or one
        pipeline, or a function returning them).
    :param runner: the runner backend (``"sequential"``).
    :param host: the server's host, and the one clients contact.
    :param port: the server's port.
    """

    import_path: str | None = attrs.field(
        default=None,
        validator=_expect(
            "'package.module:ATTRIBUTE'",
            lambda value: value is None or (isinstance(value, str) and bool(_IMPORT_PATH.match(value))),
        ),
    )
    runner: str = attrs.field(default="sequential", validator=_expect("a backend name", _name))
    host: str = attrs.field(default="127.0.0.1", validator=_expect("a host name", _name))
    port: int = attrs.field(
        default=8080, validator=_expect("a port number (1-65535)", lambda value: _is_int(value) and 0 < value < 65536)
    )


@attrs.frozen
class WorkersConfig:
    """How asynchronous calls run.

    :param pool: the worker pool backend (``"inprocess"``, ``"multiprocess"``, ``"dask"``);
        ``None`` (default) means no pool: every call runs synchronously.
    :param n_workers: how many workers the pool starts.
    :param use_worker: the app-wide default for running calls in a worker (``None``: let each
        pipeline and call decide).
    """

    pool: str | None = attrs.field(default=None, validator=_expect("a backend name", _optional_name))
    n_workers: int = attrs.field(
        default=1, validator=_expect("a positive int", lambda value: _is_int(value) and value > 0)
    )
    use_worker: bool | None = attrs.field(
        default=None, validator=_expect("true or false", lambda value: value in (None, True, False))
    )


_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
_SECTIONS: dict[str, type] = {"op_store": OpStoreConfig, "pipelines": PipelinesConfig, "workers": WorkersConfig}
_TYPE_NAMES = {str: "a string", int: "an int", bool: "true or false"}


def _strict(kind: type) -> Callable[[Any, type], Any]:
    # cattrs would turn "8080" into 8080 and 1 into True: a config file must say what it means.
    def structure(value: Any, _type: type) -> Any:
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise TypeError(_must_be(_TYPE_NAMES[kind], value))
        return value

    return structure


_converter = cattrs.Converter(forbid_extra_keys=True)
for _kind in _TYPE_NAMES:
    _converter.register_structure_hook(_kind, _strict(_kind))


@attrs.frozen
class _Source:
    """A configuration file's name and text, to point errors at lines."""

    path: str
    text: str
    prefix: str = ""  # "tool.chariots." inside pyproject.toml

    def where(self, section: str, key: str | None = None) -> str:
        line = _line_of(self.text, self.prefix, section, key)
        return f"{self.path}, line {line}" if line else self.path


def _line_of(text: str, prefix: str, section: str, key: str | None) -> int | None:
    """The 1-based line where ``section`` (and ``key`` in it) is written, if it can be found."""
    lines = text.splitlines()
    header = re.compile(rf"^\s*(\[\s*{re.escape(prefix + section)}\s*\]|{re.escape(section)}\s*:)")
    for start, line in enumerate(lines):
        if header.match(line):
            break
    else:
        # Inline forms: `op_store.path = ...` or `op_store = {path = ...}`.
        dotted = re.compile(rf"^\s*{re.escape(section)}\s*(\.|=)")
        found = [number for number, line in enumerate(lines, 1) if dotted.match(line)]
        return found[0] if found else None
    if key is None:
        return start + 1
    key_line = re.compile(rf"^\s+{re.escape(key)}\s*:|^\s*[\"']?{re.escape(key)}[\"']?\s*=")
    for number in range(start + 1, len(lines)):
        line = lines[number]
        if line.startswith("[") or (line[:1].isalpha() and line.rstrip().endswith(":")):
            break  # the next TOML table or YAML top-level key
        if key_line.match(line):
            return number + 1
    return start + 1


def _structure_section(name: str, data: Any, source: _Source | None) -> Any:
    """Build one section's attrs class from a mapping; every problem found raises together."""
    cls = _SECTIONS[name]
    where = source.where if source is not None else (lambda _section, _key=None: "the configuration")
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where(name)}: '{name}' must be a table of settings (got {data!r})")
    try:
        return _converter.structure(dict(data), cls)
    except ClassValidationError as group:
        problems = [_problem(name, cls, exc, where) for exc in group.exceptions]
    except _InvalidValue as exc:
        problems = [f"{where(name, exc.key)}: '{name}.{exc.key}' {exc.detail}"]
    raise ConfigError("; ".join(problems))


def _problem(section: str, cls: type, exc: Exception, where: Callable[..., str]) -> str:
    if isinstance(exc, ForbiddenExtraKeysError):
        known = ", ".join(field.name for field in attrs.fields(cls))
        return "; ".join(
            f"{where(section, key)}: unknown key '{section}.{key}' (known keys in [{section}]: {known})"
            for key in sorted(exc.extra_fields)
        )
    if isinstance(exc, _InvalidValue):  # an attrs validator, run by the constructor
        return f"{where(section, exc.key)}: '{section}.{exc.key}' {exc.detail}"
    notes = [note for note in getattr(exc, "__notes__", ()) if isinstance(note, AttributeValidationNote)]
    key = notes[0].name if notes else "?"
    return f"{where(section, key)}: '{section}.{key}' {exc}"


def _read_file(path: Path) -> tuple[dict[str, Any], _Source]:
    """The raw settings of a configuration file, and its source for error messages."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        msg = f"configuration file {str(path)!r} does not exist; create it or pass the right path"
        raise ConfigError(msg) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {str(path)!r}: {exc}") from exc
    if path.suffix in (".yaml", ".yml"):
        return _parse_yaml(text, path), _Source(str(path), text)
    if path.suffix != ".toml":
        msg = f"{str(path)!r}: configuration files must be .toml, .yaml or .yml (or pyproject.toml)"
        raise ConfigError(msg)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    if path.name != "pyproject.toml":
        return document, _Source(str(path), text)
    table = document.get("tool", {}).get("chariots")
    if table is None:
        msg = f"{path} has no [tool.chariots] table; add one, or put the settings in chariots.toml"
        raise ConfigError(msg)
    return table, _Source(str(path), text, prefix="tool.chariots.")


def _parse_yaml(text: str, path: Path) -> dict[str, Any]:
    try:
        import yaml
    except ImportError as exc:
        msg = (
            f"reading {path} needs PyYAML, which is not installed; pip install 'chariots[yaml]' "
            "(or write the same settings in chariots.toml)"
        )
        raise BackendError(msg) from exc
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from exc
    return {} if document is None else document


def _read_sections(path: Path) -> tuple[dict[str, Any], str]:
    """The sections a configuration file sets, and the file's path; every problem raises together."""
    raw, source = _read_file(path)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: the configuration must be a table of sections (got {raw!r})")
    known = ", ".join(_SECTIONS)
    problems = [
        f"{source.where(name)}: unknown section '{name}' (known: {known})" for name in sorted(set(raw) - set(_SECTIONS))
    ]
    sections = {}
    for name, value in raw.items():
        if name not in _SECTIONS:
            continue
        try:
            sections[name] = _structure_section(name, value, source)
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("; ".join(problems))
    return sections, source.path


@attrs.frozen(init=False)
class ChariotsConfig:
    """The whole configuration of an app: ``op_store``, ``pipelines`` and ``workers`` sections.

    ``ChariotsConfig("chariots.toml")`` reads a file; sections passed as arguments (section
    objects or plain dicts) replace the file's whole section, as in chariots 0.2::

        >>> ChariotsConfig(op_store={"path": "/tmp/iris"}, pipelines={"import_path": "iris:PIPELINES"})

    :param config_file: a ``.toml``, ``.yaml``/``.yml`` or ``pyproject.toml`` file.
    :param base_dir: the directory relative paths are resolved against (default: the
        configuration file's directory, else the current directory).
    :param source: the file the settings came from, for error messages (set from
        ``config_file``; given so that ``attrs.evolve`` keeps it).
    :raises ConfigError: naming the key, the file and the line of a wrong or unknown setting.
    :raises BackendError: for a YAML file when PyYAML is not installed.
    """

    op_store: OpStoreConfig
    pipelines: PipelinesConfig
    workers: WorkersConfig
    source: str | None  # the file the settings came from
    base_dir: str

    def __init__(
        self,
        config_file: str | os.PathLike | None = None,
        op_store: OpStoreConfig | Mapping[str, Any] | None = None,
        pipelines: PipelinesConfig | Mapping[str, Any] | None = None,
        workers: WorkersConfig | Mapping[str, Any] | None = None,
        base_dir: str | os.PathLike | None = None,
        source: str | None = None,
    ) -> None:
        sections: dict[str, Any] = {}
        if config_file is not None:
            sections, source = _read_sections(Path(config_file).expanduser().resolve())
        given = {"op_store": op_store, "pipelines": pipelines, "workers": workers}
        for name, value in given.items():
            if value is not None:
                sections[name] = _structure_section(name, value, None)
            sections.setdefault(name, _SECTIONS[name]())
        if base_dir is None:
            base_dir = Path(source).parent if source is not None else Path.cwd()
        self.__attrs_init__(
            sections["op_store"],
            sections["pipelines"],
            sections["workers"],
            source,
            os.fspath(Path(base_dir).resolve()),
        )

    @classmethod
    def discover(cls, start: str | os.PathLike | None = None) -> ChariotsConfig:
        """The configuration of the project containing ``start`` (default: the current directory).

        Looks in ``start`` and then each parent for the files of :data:`CONFIG_FILE_NAMES`
        (a ``pyproject.toml`` counts only with a ``[tool.chariots]`` table); with none, the
        defaults, relative to ``start``.
        """
        origin = Path(start or Path.cwd()).resolve()
        for directory in (origin, *origin.parents):
            for name in CONFIG_FILE_NAMES:
                candidate = directory / name
                if not candidate.is_file():
                    continue
                if name == "pyproject.toml" and not _has_tool_chariots(candidate):
                    continue
                return cls(candidate)
        return cls(base_dir=origin)

    # -- what the settings build -----------------------------------------------------------
    @property
    def data_path(self) -> str:
        """``op_store.path`` resolved: an absolute directory, or the URL as written."""
        return self._resolve(self.op_store.path)

    @property
    def url(self) -> str:
        """The URL the app's HTTP server listens on."""
        return f"http://{self.pipelines.host}:{self.pipelines.port}"

    def load_pipelines(self) -> list[Pipeline]:
        """Import the pipelines named by ``pipelines.import_path``.

        The configuration's directory goes first on ``sys.path`` (as ``python -m`` does with the
        current directory), so a project's package imports without being installed.

        :raises ConfigError: if no import path is set, or the import or the attribute fails.
        """
        from ..pipelines.pipeline import Pipeline

        import_path = self.pipelines.import_path
        where = self._where("pipelines", "import_path")
        if import_path is None:
            msg = (
                f"no pipelines configured in {where}: set import_path in the [pipelines] section, "
                'e.g. import_path = "my_package.pipelines:PIPELINES"'
            )
            raise ConfigError(msg)
        module_name, _, attribute = import_path.partition(":")
        if self.base_dir not in sys.path:
            sys.path.insert(0, self.base_dir)
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # the user's module may fail in any way while importing
            msg = (
                f"{where}: 'pipelines.import_path' = {import_path!r}: cannot import {module_name!r} "
                f"({type(exc).__name__}: {exc}); check the module name and that it imports"
            )
            raise ConfigError(msg) from exc
        try:
            found = getattr(module, attribute)
        except AttributeError as exc:
            msg = f"{where}: 'pipelines.import_path' = {import_path!r}: module {module_name!r} has no {attribute!r}"
            raise ConfigError(msg) from exc
        if callable(found) and not isinstance(found, Pipeline):
            found = found()
        pipelines = [found] if isinstance(found, Pipeline) else found
        if not isinstance(pipelines, (list, tuple)) or not all(isinstance(item, Pipeline) for item in pipelines):
            msg = (
                f"{where}: 'pipelines.import_path' = {import_path!r} must name a list of Pipeline "
                f"objects, a Pipeline, or a function returning them (got {type(found).__name__})"
            )
            raise ConfigError(msg)
        return list(pipelines)

    def get_runner(self) -> BaseRunner:
        """A runner of the configured kind."""
        return get_backend("runner", self.pipelines.runner)()

    def get_worker_pool(self) -> BaseWorkerPool | None:
        """A started worker pool of the configured kind, or ``None`` if none is configured."""
        if self.workers.pool is None:
            return None
        return get_backend("worker_pool", self.workers.pool)(n_workers=self.workers.n_workers)

    def get_app(self, pipelines: list[Pipeline] | None = None) -> Chariots:
        """The :class:`~chariots_core.Chariots` app these settings describe.

        :param pipelines: the pipelines to serve (default: :meth:`load_pipelines`).
        """
        from ..serving.app import Chariots

        if pipelines is None:
            pipelines = self.load_pipelines()
        saver = self.op_store.saver
        if saver is not None and url_scheme(saver) is None and saver not in known_backends("saver"):
            saver = self._resolve(saver)
        worker_pool = self.get_worker_pool()
        try:
            app = Chariots(
                pipelines,
                path=self.data_path,
                op_store=self.op_store.store,
                saver=saver,
                compatibility=self.op_store.compatibility,
                worker_pool=worker_pool,
                runner=self.get_runner(),
                use_worker=self.workers.use_worker,
            )
        except BaseException:
            if worker_pool is not None:
                worker_pool.close()
            raise
        if worker_pool is not None:
            app.take_ownership(worker_pool)  # started here for the app: closing the app stops it
        return app

    def get_client(self, url: str | None = None) -> Any:
        """A ``chariots_waitress.PipelinesClient`` for ``url`` (default: the configured host and port)."""
        return http_backend("PipelinesClient")(url or self.url)

    def _resolve(self, path: str) -> str:
        if url_scheme(path) is not None:
            return path
        return os.fspath(Path(self.base_dir, path).expanduser().resolve())

    def _where(self, section: str, key: str) -> str:
        if self.source is None:
            return "the configuration"
        text = Path(self.source).read_text(encoding="utf-8") if os.path.isfile(self.source) else ""
        prefix = "tool.chariots." if Path(self.source).name == "pyproject.toml" else ""
        return _Source(self.source, text, prefix).where(section, key)


def http_backend(name: str) -> Any:
    """``chariots_waitress.<name>`` (the HTTP server and client), imported on first use.

    :raises BackendError: if chariots_waitress or waitress is not installed.
    """
    try:
        module = importlib.import_module("chariots_waitress")
    except ImportError as exc:
        missing = exc.name or "chariots_waitress"
        msg = f"serving over HTTP needs {missing}, which is not installed; pip install 'chariots[serve]'"
        raise BackendError(msg) from exc
    return getattr(module, name)


def _has_tool_chariots(pyproject: Path) -> bool:
    try:
        return "chariots" in tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {})
    except (OSError, tomllib.TOMLDecodeError):
        return False
