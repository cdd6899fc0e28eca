"""Code-aware versions (opt in): an op whose version follows the code it runs.

By default an op's version comes from its :class:`~chariots_core.VersionedField`\\ s only, so
editing ``execute`` does not make a new version, and a model trained by the old code keeps
being served. Declaring a :class:`SourceVersion` makes the code part of the version::

    class Scale(BaseOp):
        code = SourceVersion(VersionType.MAJOR)   # any attribute name; the type is yours to pick

        def execute(self, values):
            return [clip(value) * 2 for value in values]

    def clip(value):                             # followed: same module, called by execute
        return min(value, LIMIT)

    LIMIT = 10                                   # followed: a constant execute's code reads

**What is hashed.** The normalized source of the op's ``execute``, ``fit``, ``predict`` and
``_init_model`` (or the ``methods`` you name), then, transitively, of what that code refers to
by name: functions and classes of the op's module (and of ``modules`` you add), methods
reached as ``self.name``, and module-level constants (numbers, strings, bytes, booleans,
``None`` and tuples of them, by value). Sources are parsed and compared as syntax trees:
comments, docstrings, blank lines and formatting do not count; renaming, reordering
statements or changing a value does. The result is a sha1 that enters the op's version as a
field of the subversion you chose, like a ``VersionedField`` would.

**What it cannot see.** Code in other modules unless you list them in ``modules`` (library
upgrades included); C extensions and builtins; data files and anything read at run time;
values of globals other than the constants above (objects, lists, dicts); closures and
default arguments bound at definition time; dynamic dispatch (``getattr(self, name)()``,
code reached through an object's type at run time, monkey-patching); Chariots's own code
(``BaseMLOp.execute``...), which would otherwise make every model stale on an upgrade.

**When.** The hash is computed the first time the op's version is read (an app reading its
pipelines, ``MyOp.__version__``), so helpers defined below the class are seen. The source must
be readable then: a module file or a notebook cell, not a bare REPL. A class rebuilt by dill in
another process without the source file keeps the hash computed where it was pickled.

Classes without a ``SourceVersion`` are versioned exactly as before (chariots 0.2's scheme).
"""

from __future__ import annotations

import types
from collections.abc import Iterable
from typing import Any

from .errors import SourceUnavailableError
from .versioning import ClassVersionedField, Version, VersionType, _field_version, _version_type

__all__ = ["SourceVersion", "DEFAULT_METHODS"]

DEFAULT_METHODS = ("execute", "fit", "predict", "_init_model")
_DIGESTS = "__chariots_source_digests__"  # kept on the class, so that dill copies carry them


class SourceVersion(ClassVersionedField):
    """A class attribute that makes the class's version follow its code (see the module docstring).

    Reading the attribute on the class gives the hex sha1 of the code it covers.

    :param affected_version: the subversion a code change changes (``MAJOR`` makes models
        trained downstream stale under the default compatibility).
    :param methods: the methods whose code (and what it calls) is hashed.
    :param modules: other modules (objects or dotted names) whose functions, classes and
        constants are followed too.
    :raises SourceUnavailableError: when the version is computed, if a source cannot be read.
    """

    def __init__(
        self,
        affected_version: VersionType | str = VersionType.MAJOR,
        methods: Iterable[str] = DEFAULT_METHODS,
        modules: Iterable[types.ModuleType | str] = (),
    ) -> None:
        self.affected_version = _version_type(affected_version, "affected_version")
        self.methods = tuple(methods)
        self.modules = frozenset(module if isinstance(module, str) else module.__name__ for module in modules)
        self._name = "code"

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    def __get__(self, instance: Any, owner: type | None = None) -> str:
        return self.digest(owner if owner is not None else type(instance))

    def version_for(self, cls: type) -> Version:
        """The version this attribute contributes to ``cls``: its code digest as a field."""
        return _field_version(self.digest(cls), self.affected_version)

    def digest(self, cls: type) -> str:
        """The hex sha1 of ``cls``'s code, as described in the module docstring."""
        from ._code_walk import CodeWalk  # parsing code is rare: importing chariots_core does not load ast

        try:
            digest = CodeWalk(cls, self.methods, {cls.__module__, *self.modules}).digest()
        except SourceUnavailableError:
            carried = vars(cls).get(_DIGESTS, {}).get(self._name)
            if carried is None:
                raise
            return carried
        digests = dict(vars(cls).get(_DIGESTS, {}))
        digests[self._name] = digest
        type.__setattr__(cls, _DIGESTS, digests)
        return digest

    def __repr__(self) -> str:
        return f"SourceVersion({self.affected_version}, methods={self.methods!r})"
