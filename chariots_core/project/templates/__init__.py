"""Project templates shipped with Chariots, and :func:`write_project` that renders them.

``project/`` holds a ready iris project: a package with ops and the ``train_iris`` /
``pred_iris`` pipelines, tests, a ``chariots.toml`` and a README. Template files end in
``.tmpl`` (so neither pytest nor setuptools mistakes them for the library's own code) and
contain two placeholders, ``{{project}}`` and ``{{package}}``; a path part ``__package__``
becomes the package's directory. No template engine, no network: plain text substitution.
"""

from __future__ import annotations

import keyword
import os
import re
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from ...errors import ConfigError

__all__ = ["write_project", "package_name"]

_SUFFIX = ".tmpl"


def package_name(project: str) -> str:
    """The import name for a project name: lower case, runs of other characters as ``_``.

    :raises ConfigError: if no valid Python identifier can be made from ``project``.
    """
    name = re.sub(r"\W+", "_", project.strip().lower()).strip("_")
    if not name.isidentifier() or keyword.iskeyword(name) or not name.isascii():
        msg = (
            f"cannot make a Python package name from the project name {project!r}; use letters, "
            "digits, '-' or '_', starting with a letter (e.g. 'iris-app')"
        )
        raise ConfigError(msg)
    return name


def write_project(project: str, directory: str | os.PathLike | None = None) -> Path:
    """Write a new project called ``project`` into ``directory`` (default: ``./<project>``).

    Returns the project's directory.

    :raises ConfigError: if the name cannot be a package name, or ``directory`` exists and
        is not empty (nothing is ever overwritten).
    """
    package = package_name(project)
    target = Path(directory if directory is not None else project).expanduser().resolve()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        msg = (
            f"{str(target)!r} already exists and is not empty; chariots new never overwrites "
            "files: choose another name or pass --directory with a new or empty directory"
        )
        raise ConfigError(msg)
    values = {"{{project}}": project, "{{package}}": package}
    try:
        for relative, template in _template_files(files(__name__) / "project", ()):
            destination = target.joinpath(*(_render_part(part, package, values) for part in relative))
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_text(_render(template.read_text(encoding="utf-8"), values), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the project into {str(target)!r}: {exc}") from exc
    return target


def _template_files(root: Traversable, prefix: tuple[str, ...]) -> list[tuple[tuple[str, ...], Traversable]]:
    """Every ``.tmpl`` file below ``root``, with its path parts, in a stable order."""
    found = []
    for entry in sorted(root.iterdir(), key=lambda item: item.name):
        if entry.is_dir():
            if entry.name != "__pycache__":
                found.extend(_template_files(entry, (*prefix, entry.name)))
        elif entry.name.endswith(_SUFFIX):
            found.append(((*prefix, entry.name.removesuffix(_SUFFIX)), entry))
    return found


def _render_part(part: str, package: str, values: dict[str, str]) -> str:
    return package if part == "__package__" else _render(part, values)


def _render(text: str, values: dict[str, str]) -> str:
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text
