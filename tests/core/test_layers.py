"""The core's packages form layers: each module imports only from its own layer or below.

project -> serving -> op_store, ml -> pipelines -> ground (versioning, errors, registry, savers, show)
"""

from __future__ import annotations

import ast
from pathlib import Path

import chariots_core

CORE = Path(chariots_core.__file__).parent
RANKS = {"ground": 0, "show": 0, "pipelines": 1, "op_store": 2, "ml": 2, "serving": 3, "project": 4}


def _layer(module: str) -> str:
    """The layer of a dotted module name below chariots_core ("" for the package itself)."""
    first = module.split(".")[0]
    return first if first in RANKS else "ground"


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, module below chariots_core) of every import of a chariots_core module in ``path``."""
    package = ".".join(path.relative_to(CORE).with_suffix("").parts)
    if path.name == "__init__.py":
        package = package.removesuffix("__init__").rstrip(".")
    else:
        package = package.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
                found.append((node.lineno, target))
            elif node.module and node.module.startswith("chariots_core."):
                found.append((node.lineno, node.module.removeprefix("chariots_core.")))
        elif isinstance(node, ast.Import):
            found += [
                (node.lineno, alias.name.removeprefix("chariots_core."))
                for alias in node.names
                if alias.name.startswith("chariots_core.")
            ]
    return found


def test_every_core_module_imports_only_its_layer_or_below():
    upward = []
    for path in sorted(CORE.rglob("*.py")):
        module = ".".join(path.relative_to(CORE).with_suffix("").parts)
        if path.name == "__init__.py" and path.parent == CORE:
            continue  # the facade re-exports every layer
        for line, target in _imports(path):
            if target and RANKS[_layer(target)] > RANKS[_layer(module)]:
                upward.append(f"{path.relative_to(CORE)}:{line} imports {target}")
    assert upward == []


def test_the_layer_map_names_every_package():
    packages = {path.parent.name for path in CORE.glob("*/__init__.py")}
    assert packages <= set(RANKS)
