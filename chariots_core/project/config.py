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
    runner = "sequential"        # also "SequentialRunner", "sequential-runner" (chariots 0.2)
    host = "127.0.0.1"           # "http://localhost" and "https://host" work too
    port = 8080
    server = "waitress"          # the HTTP server backend of `chariots serve`
    reload = "latest"            # follow the store: serve new saved versions (none by default)
    reload_interval = 5          # seconds between two looks at the store
    log_predictions = ["pred_iris"]   # log these pipelines' calls in <path>/predictions

    [workers]
    pool = "multiprocess"        # none by default
    n_workers = 2
    use_worker = false           # the app-wide default for asynchronous calls

Every key is optional, so an empty file (or no file) is a working configuration. A key that
does not exist or holds the wrong type, and a backend name that no backend answers to, raise
:class:`~chariots_core.errors.ConfigError` when the configuration is built, naming the key, the
file and, when it can be found, the line::

    >>> config = ChariotsConfig("chariots.toml")
    >>> app = config.get_app()

Backend names are checked against :mod:`chariots_core.registry` (case and ``-``/``_`` do not
matter, as in chariots 0.2) but their packages are imported only when
``get_app``/``get_worker_pool``/``get_client`` are called.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import ConfigError
from ..log import get_logger
from ..pipelines.runners import BaseRunner
from ..registry import get_backend, known_backends, url_scheme
from .config_files import CONFIG_FILE_NAMES, Source, has_tool_chariots, read_file
from .sections import SECTIONS, OpStoreConfig, PipelinesConfig, WorkersConfig, structure_section

if TYPE_CHECKING:
    from ..pipelines.pipeline import Pipeline
    from ..serving.app import Chariots
    from ..serving.workers import BaseWorkerPool

__all__ = [
    "ChariotsConfig",
    "OpStoreConfig",
    "PipelinesConfig",
    "WorkersConfig",
    "CONFIG_FILE_NAMES",
]

_log = get_logger("config")


def _read_sections(path: Path) -> tuple[dict[str, Any], str]:
    """The sections a configuration file sets, and the file's path; every problem raises together."""
    raw, source = read_file(path)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: the configuration must be a table of sections (got {raw!r})")
    known = ", ".join(SECTIONS)
    problems = [
        f"{source.where(name)}: unknown section '{name}' (known: {known})" for name in sorted(set(raw) - set(SECTIONS))
    ]
    sections = {}
    for name, value in raw.items():
        if name not in SECTIONS:
            continue
        try:
            sections[name] = structure_section(name, value, source)
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
                sections[name] = structure_section(name, value, None)
            sections.setdefault(name, SECTIONS[name]())
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
                if name == "pyproject.toml" and not has_tool_chariots(candidate):
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
        """The URL clients of the app's HTTP server contact."""
        return self.pipelines.url

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
        """A runner of the configured kind (the configured instance itself, if one was given)."""
        runner = self.pipelines.runner
        return runner if isinstance(runner, BaseRunner) else get_backend("runner", runner)()

    def get_worker_pool(self) -> BaseWorkerPool | None:
        """A started worker pool of the configured kind, or ``None`` if none is configured."""
        if self.workers.pool is None:
            return None
        _log.info("starting a %s worker pool of %d worker(s)", self.workers.pool, self.workers.n_workers)
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
        _log.debug("building the app on %s (store %s, saver %s)", self.data_path, self.op_store.store or "default", saver or "default")
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
                reload=self.pipelines.reload,
                reload_interval=self.pipelines.reload_interval,
                log_predictions=self.pipelines.log_predictions,
            )
        except BaseException:
            if worker_pool is not None:
                worker_pool.close()
            raise
        if worker_pool is not None:
            app.take_ownership(worker_pool)  # started here for the app: closing the app stops it
        return app

    def get_store_app(self, path: str | None = None, store: str | None = None) -> Chariots:
        """An app that serves no pipeline, to read the configured op store (jobs, saved versions).

        It imports none of the project's code, starts no worker pool, and its saver is a
        throw-away :class:`~chariots_core.MemorySaver` (so no saver package is imported either):
        use it for what the op store alone records, never to read stored bytes.

        :param path: another data path (default: ``op_store.path``), with ``store`` its op store.
        """
        from ..serving.app import Chariots

        if path is None:
            path, store = self.data_path, self.op_store.store
        return Chariots([], path=path, op_store=store, saver="memory", compatibility=self.op_store.compatibility)

    def get_client(self, url: str | None = None) -> Any:
        """A client of the app's HTTP server at ``url`` (default: the configured host and port).

        It is the registry's ``client`` backend (``chariots_waitress.PipelinesClient``).

        :raises BackendError: if the HTTP layer is not installed.
        """
        return get_backend("client", "http")(url or self.url)

    def serve(self, app: Chariots, host: str | None = None, port: int | None = None) -> None:
        """Serve ``app`` over HTTP with the configured ``server`` backend until interrupted.

        :param host: the interface to listen on (default: the configured host, without scheme).
        :param port: the port (default: the configured one).
        :raises BackendError: if the server backend is not installed.
        """
        serve = get_backend("server", self.pipelines.server)
        host, port = host or self.pipelines.bind_host, port or self.pipelines.port
        _log.info("serving %s on %s:%s with the %s server", ", ".join(app.available_pipelines()), host, port, self.pipelines.server)
        serve(app, host=host, port=port)

    def _resolve(self, path: str) -> str:
        if url_scheme(path) is not None:
            return path
        return os.fspath(Path(self.base_dir, path).expanduser().resolve())

    def _where(self, section: str, key: str) -> str:
        if self.source is None:
            return "the configuration"
        text = Path(self.source).read_text(encoding="utf-8") if os.path.isfile(self.source) else ""
        prefix = "tool.chariots." if Path(self.source).name == "pyproject.toml" else ""
        return Source(self.source, text, prefix).where(section, key)
