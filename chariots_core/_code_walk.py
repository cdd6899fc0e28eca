"""How :class:`~chariots_core.code_versions.SourceVersion` reads code: parse, normalize, follow names.

A method's source is parsed, its docstrings dropped, and the syntax tree written as text with
only the fields that hold something (see :func:`canonical`). Every name the code loads that is
not bound locally is looked up where the code lives: functions and classes of the followed
modules are queued and read the same way, constants are recorded by value. The digest is the
sha1 of everything read, sorted by a key that names each piece.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import inspect
import sys
import textwrap
import types
from typing import Any

from .errors import SourceUnavailableError
from .versioning import VersionableMeta

__all__ = ["CodeWalk", "canonical"]

# Packages of Chariots itself: their code is the framework's, not the op's.
_FRAMEWORK = frozenset(
    {"chariots_core", "chariots_dask", "chariots_fsspec", "chariots_keras", "chariots_lmdb", "chariots_multiprocess", "chariots_sklearn", "chariots_waitress"}
)
_CONSTANTS = (int, float, complex, str, bytes, bool, type(None))
_IGNORED_FIELDS = frozenset({"ctx", "type_comment", "kind"})


class CodeWalk:
    """Follows the code of one class's methods through the names it refers to."""

    def __init__(self, cls: type, methods: tuple[str, ...], modules: set[str]) -> None:
        self.cls = cls
        self.modules = modules
        self.parts: dict[str, str] = {}  # what was hashed, by a stable key
        self.pending: list[tuple[str, Any]] = []
        for name in methods:
            function = _function(inspect.getattr_static(cls, name, None))
            if function is not None and _owned(function):
                self.pending.append((f"method {name}", function))

    def digest(self) -> str:
        while self.pending:
            key, code = self.pending.pop()
            if key in self.parts:
                continue
            tree = self._tree(code)
            self.parts[key] = canonical(tree)
            module = sys.modules.get(code.__module__)
            self._follow(tree, getattr(code, "__globals__", None) or (vars(module) if module else {}))
        text = "\n".join(f"{key}: {value}" for key, value in sorted(self.parts.items()))
        return hashlib.sha1(text.encode()).hexdigest()

    def _tree(self, code: Any) -> ast.AST:
        try:
            source = inspect.getsource(code)
        except (OSError, TypeError) as exc:
            msg = (
                f"{self.cls.__qualname__} versions itself by its code (SourceVersion), but the source of "
                f"{code.__qualname__} cannot be read ({exc}). Define the op in a module file or a notebook "
                "cell, or remove its SourceVersion"
            )
            raise SourceUnavailableError(msg) from exc
        tree = ast.parse(textwrap.dedent(source))
        _strip_docstrings(tree)
        return tree

    def _follow(self, tree: ast.AST, namespace: dict[str, Any]) -> None:
        module = sys.modules.get(namespace.get("__name__", ""))
        bound = _bound_names(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in bound:
                self._refer(node.id, namespace, module)
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                owner = node.value.id
                if owner in ("self", "cls"):
                    function = _function(inspect.getattr_static(self.cls, node.attr, None))
                    if function is not None and _owned(function):
                        self.pending.append((f"method {node.attr}", function))
                elif isinstance(namespace.get(owner), types.ModuleType) and namespace[owner].__name__ in self.modules:
                    self._refer(node.attr, vars(namespace[owner]), namespace[owner])

    def _refer(self, name: str, namespace: dict[str, Any], module: types.ModuleType | None) -> None:
        if name not in namespace:
            if not hasattr(builtins, name) and _initializing(module):
                msg = (
                    f"the code version of {self.cls.__qualname__} was asked for while module "
                    f"{namespace.get('__name__')!r} is still being imported, before {name!r} is defined; "
                    "read versions after the import (build apps outside the module that defines the ops)"
                )
                raise SourceUnavailableError(msg)
            return
        value = namespace[name]
        if _is_constant(value):
            self.parts[f"constant {self._where(namespace.get('__name__', ''), name)}"] = repr(value)
            return
        function = _function(value)
        if function is not None and _owned(function) and function.__module__ in self.modules:
            self.pending.append((f"function {self._where(function.__module__, function.__qualname__)}", function))
        elif (
            isinstance(value, type)
            and value.__module__ in self.modules
            and not isinstance(value, VersionableMeta)  # other ops have versions of their own
            and value.__module__.partition(".")[0] not in _FRAMEWORK
        ):
            self.pending.append((f"class {self._where(value.__module__, value.__qualname__)}", value))

    def _where(self, module: str, name: str) -> str:
        # Names in the op's own module go unqualified: moving the op's module keeps its version.
        return name if module == self.cls.__module__ else f"{module}.{name}"


def _function(value: Any) -> types.FunctionType | None:
    """The plain function behind a function, method, static/class method or property."""
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    elif isinstance(value, property):
        value = value.fget
    value = inspect.unwrap(value) if callable(value) else value
    return value if isinstance(value, types.FunctionType) else None


def _owned(function: types.FunctionType) -> bool:
    """Whether the function is the user's code rather than Chariots's own."""
    return (function.__module__ or "").partition(".")[0] not in _FRAMEWORK


def _bound_names(tree: ast.AST) -> set[str]:
    """Names the code binds itself (arguments, assignments, imports, loops...): not globals."""
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((alias.asname or alias.name).partition(".")[0] for alias in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return bound


def _initializing(module: types.ModuleType | None) -> bool:
    spec = getattr(module, "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


def _is_constant(value: Any) -> bool:
    if isinstance(value, tuple):
        return all(_is_constant(item) for item in value)
    return isinstance(value, _CONSTANTS)


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]


def canonical(node: Any) -> str:
    """A syntax tree as text, with only the fields that hold something.

    Empty fields are left out, so a Python release that adds an optional field to a node (as
    3.12 did with ``type_params``) does not change the text of code that does not use it.
    """
    if isinstance(node, ast.AST):
        fields = [
            f"{name}={canonical(value)}"
            for name, value in ast.iter_fields(node)
            if name not in _IGNORED_FIELDS and value is not None and value != []
        ]
        return f"{type(node).__name__}({','.join(fields)})"
    if isinstance(node, list):
        return "[" + ",".join(canonical(item) for item in node) + "]"
    return repr(node)
