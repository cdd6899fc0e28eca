"""The three sections of a configuration, as attrs value classes checked when they are built.

Each field's validator raises "'<key>' must be <expected> (got <value>...)", and
:func:`structure_section` gathers every problem of a section, each located in its file, into
one :class:`~chariots_core.errors.ConfigError`. Backend names are checked against
:mod:`chariots_core.registry` and stored as the registered name, however they were spelled.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs
import cattrs
from cattrs.errors import AttributeValidationNote, ClassValidationError, ForbiddenExtraKeysError

from ..errors import ConfigError
from ..op_store.lineage import POLICIES, STRATEGIES
from ..pipelines.runners import BaseRunner
from ..registry import canonical_name, known_backends, url_scheme
from .config_files import Source

__all__ = ["OpStoreConfig", "PipelinesConfig", "WorkersConfig", "SECTIONS", "structure_section"]


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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _pipeline_names(value: Any) -> bool:
    if isinstance(value, Mapping):
        return all(_name(key) and isinstance(mode, str) for key, mode in value.items())
    return isinstance(value, list) and all(_name(item) for item in value)


def _optional_name(value: Any) -> bool:
    return value is None or _name(value)


def _backend(kind: str, optional: bool = False, also: Callable[[Any], bool] = lambda _value: False) -> dict[str, Any]:
    """attrs field arguments for a backend name of ``kind``, spelled as chariots 0.2 accepted it.

    The converter turns a known spelling (``"SequentialRunner"``) into the registered name; the
    validator refuses a name no backend answers to, when the configuration is built. Values
    ``also`` accepts (a runner instance, a URL) pass through unchanged.
    """

    def convert(value: Any) -> Any:
        if isinstance(value, str) and not also(value):
            try:
                return canonical_name(kind, value)
            except ConfigError:
                return value  # the validator says why
        return value

    def validate(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
        if (optional and value is None) or also(value):
            return
        if not _name(value):
            raise _InvalidValue(attribute.name, _must_be(f"a {kind} backend name", value))
        try:
            canonical_name(kind, value)
        except ConfigError:
            known = ", ".join(known_backends(kind))
            msg = f"must name a {kind} backend (got {value!r}); known: {known} (others register through chariots_core.registry)"
            raise _InvalidValue(attribute.name, msg) from None

    return {"converter": convert, "validator": validate}


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and url_scheme(value) is not None


def _host_problem(value: Any) -> str | None:
    """Why ``value`` is not a host name, or ``http(s)://`` and a host name; ``None`` if it is one."""
    if not _name(value):
        return _must_be("a host name", value)
    if "://" not in value:
        return None if "/" not in value else f"must be a host name such as 'localhost' (got {value!r})"
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"must be a host name, or http:// or https:// and a host name (got {value!r})"
    if parts.port is not None or parts.path.strip("/") or parts.query or parts.username:
        return f"must be a host name without port or path (got {value!r}); set the port in 'port'"
    return None


def _check_host(_instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    problem = _host_problem(value)
    if problem is not None:
        raise _InvalidValue(attribute.name, problem)


@attrs.frozen
class OpStoreConfig:
    """Where the app keeps op versions, links, jobs (the op store) and model bytes (the saver).

    :param path: the app's data directory, relative to the configuration file, or an
        object-storage URL (``s3://bucket/prefix``).
    :param store: the op store backend (``"lmdb"``, ``"memory"``...) or an object-storage URL;
        default: the one that fits ``path``.
    :param saver: a saver name (``"memory"``), URL (``"gs://bucket/blobs"``) or directory;
        default: ``<path>/blobs``.
    :param compatibility: ``"major"``, ``"minor"`` or ``"exact"``.
    """

    path: str = attrs.field(default="chariots_data", validator=_expect("a non-empty string", _name))
    store: str | None = attrs.field(default=None, **_backend("op_store", optional=True, also=_is_url))
    saver: str | None = attrs.field(default=None, validator=_expect("a saver name or URL", _optional_name))
    compatibility: str = attrs.field(
        default="major", validator=_expect(f"one of {', '.join(map(repr, POLICIES))}", POLICIES.__contains__)
    )


@attrs.frozen
class PipelinesConfig:
    """Which pipelines the app serves, how it runs them, and where its HTTP server listens.

    :param import_path: ``"package.module:ATTRIBUTE"`` naming a list of pipelines (or one
        pipeline, or a function returning them).
    :param runner: the runner backend (``"sequential"``, or chariots 0.2's
        ``"sequential-runner"``...), or a :class:`~chariots_core.BaseRunner` instance.
    :param host: the server's host, and the one clients contact; ``http://`` or ``https://``
        before it is allowed (clients then use that scheme).
    :param port: the server's port.
    :param server: the HTTP server backend that ``chariots serve`` runs (``"waitress"``).
    :param reload: follow the op store, loading what ``"latest"`` or ``"latest_compatible"``
        chooses for each loaded pipeline when it changes (see ``Chariots(reload=...)``).
    :param reload_interval: seconds between two looks at the store when ``reload`` is set.
    :param log_predictions: the pipelines whose calls are logged in ``<path>/predictions``: a
        list of names, or a table ``{name = "full" | "sha256"}``.
    """

    import_path: str | None = attrs.field(
        default=None,
        validator=_expect(
            "'package.module:ATTRIBUTE'",
            lambda value: value is None or (isinstance(value, str) and re.fullmatch(_IMPORT_PATH, value) is not None),
        ),
    )
    runner: Any = attrs.field(default="sequential", **_backend("runner", also=lambda value: isinstance(value, BaseRunner)))
    host: str = attrs.field(default="127.0.0.1", validator=_check_host)
    port: int = attrs.field(
        default=8080, validator=_expect("a port number (1-65535)", lambda value: _is_int(value) and 0 < value < 65536)
    )
    server: str = attrs.field(default="waitress", **_backend("server"))
    reload: str | None = attrs.field(
        default=None, validator=_expect("'latest' or 'latest_compatible'", lambda value: value in (None, *STRATEGIES))
    )
    reload_interval: Any = attrs.field(
        default=5.0, validator=_expect("a number of seconds > 0", lambda value: _is_number(value) and value > 0)
    )
    log_predictions: Any = attrs.field(
        factory=list, validator=_expect("a list of pipeline names or a table of them", _pipeline_names)
    )

    @property
    def bind_host(self) -> str:
        """The host to listen on: :attr:`host` without its scheme."""
        if "://" not in self.host:
            return self.host
        return urlsplit(self.host).hostname or self.host

    @property
    def url(self) -> str:
        """The URL clients contact: :attr:`host`'s scheme (default ``http``), host and :attr:`port`."""
        scheme = urlsplit(self.host).scheme if "://" in self.host else "http"
        host = self.bind_host
        host = f"[{host}]" if ":" in host else host  # an IPv6 literal
        return f"{scheme}://{host}:{self.port}"


@attrs.frozen
class WorkersConfig:
    """How asynchronous calls run.

    :param pool: the worker pool backend (``"inprocess"``, ``"multiprocess"``, ``"dask"``, in
        any case); ``None`` (default) means no pool: every call runs synchronously.
    :param n_workers: how many workers the pool starts.
    :param use_worker: the app-wide default for running calls in a worker (``None``: let each
        pipeline and call decide).
    """

    pool: str | None = attrs.field(default=None, **_backend("worker_pool", optional=True))
    n_workers: int = attrs.field(
        default=1, validator=_expect("a positive int", lambda value: _is_int(value) and value > 0)
    )
    use_worker: bool | None = attrs.field(
        default=None, validator=_expect("true or false", lambda value: value in (None, True, False))
    )


_IMPORT_PATH = r"[A-Za-z_][\w.]*:[A-Za-z_]\w*"  # compiled (and cached) by re on first use
SECTIONS: dict[str, type] = {"op_store": OpStoreConfig, "pipelines": PipelinesConfig, "workers": WorkersConfig}
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


def structure_section(name: str, data: Any, source: Source | None) -> Any:
    """Build one section's attrs class from a mapping; every problem found raises together."""
    cls = SECTIONS[name]
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
