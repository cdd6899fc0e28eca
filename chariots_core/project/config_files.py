"""Reading configuration files: TOML, YAML, or the ``[tool.chariots]`` table of ``pyproject.toml``,
and finding the line of a section or key, so that errors point at it.

Files are parsed only (no validation: :mod:`chariots_core.project.sections` checks values).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import attrs

from ..errors import BackendError, ConfigError

__all__ = ["CONFIG_FILE_NAMES", "Source", "read_file", "has_tool_chariots"]

# Looked for in this order, in a directory and then in each of its parents.
CONFIG_FILE_NAMES = ("chariots.toml", "chariots.yaml", "chariots.yml", "pyproject.toml")


@attrs.frozen
class Source:
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


def read_file(path: Path) -> tuple[dict[str, Any], Source]:
    """The raw settings of a configuration file, and its source for error messages."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        msg = f"configuration file {str(path)!r} does not exist; create it or pass the right path"
        raise ConfigError(msg) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {str(path)!r}: {exc}") from exc
    if path.suffix in (".yaml", ".yml"):
        return parse_yaml(text, path), Source(str(path), text)
    if path.suffix != ".toml":
        msg = f"{str(path)!r}: configuration files must be .toml, .yaml or .yml (or pyproject.toml)"
        raise ConfigError(msg)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    if path.name != "pyproject.toml":
        return document, Source(str(path), text)
    table = document.get("tool", {}).get("chariots")
    if table is None:
        msg = f"{path} has no [tool.chariots] table; add one, or put the settings in chariots.toml"
        raise ConfigError(msg)
    return table, Source(str(path), text, prefix="tool.chariots.")


def parse_yaml(text: str, path: Path) -> dict[str, Any]:
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




def has_tool_chariots(pyproject: Path) -> bool:
    try:
        return "chariots" in tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {})
    except (OSError, tomllib.TOMLDecodeError):
        return False
