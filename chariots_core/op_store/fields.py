"""The versioned fields of an op's class, as the store records them at each save.

A version is a hash: it tells *that* something changed, not *what*. So each save also records,
for every version it writes, the fields of the code that made it
(:class:`~chariots_core.op_store.records.OpFieldsRecord`): for each ``VersionedField`` and each
item of a ``VersionedFieldDict``, the subversion it enters, the hash it contributes and a short
rendering of its value; for a ``SourceVersion``, the hash of the code and which methods it
covers (never the source). Comparing the fields of two versions then names what changed
(:mod:`chariots_core.op_store.explain`).

Values are rendered, never pickled: the rendering is text for people (cut to
:data:`VALUE_LIMIT` characters), the hash is what decides whether two values are equal.
"""

from __future__ import annotations

import reprlib
import weakref
from collections.abc import Iterable
from typing import Any

from ..code_versions import SourceVersion
from ..pipelines.nodes import Node
from ..versioning import ClassVersionedField, Version, VersionedField, VersionedFieldDict, versioned_attributes
from .records import FieldRecord, JournalAppend, OpFieldsRecord, fields_name

__all__ = ["VALUE_LIMIT", "class_fields", "render_value", "fields_appends"]

VALUE_LIMIT = 80
"""At most this many characters of a value's rendering are recorded."""

_SUBVERSIONS = ("major", "minor", "patch")
_EMPTY = Version()  # a subversion no field entered is the sha1 of nothing


class _ShortRepr(reprlib.Repr):
    """``repr`` with containers cut short; a value whose ``__repr__`` fails says so (not its address)."""

    def repr_instance(self, obj: Any, level: int) -> str:
        try:
            return reprlib.Repr.repr_instance(self, obj, level) if type(obj).__repr__ is object.__repr__ else _cut(repr(obj))
        except Exception as exc:  # a value's own __repr__ may fail: say so rather than fail the save
            return f"<{type(obj).__name__} whose repr failed: {type(exc).__name__}>"


def _cut(text: str) -> str:
    return text if len(text) <= VALUE_LIMIT else text[: VALUE_LIMIT - 1] + "…"


_repr = _ShortRepr()
_repr.maxstring = _repr.maxother = VALUE_LIMIT
_repr.maxlist = _repr.maxtuple = _repr.maxset = _repr.maxdict = 8

# A class's fields are fixed when its version is computed: render them once per class.
_by_class: weakref.WeakKeyDictionary[type, tuple[FieldRecord, ...]] = weakref.WeakKeyDictionary()


def render_value(value: Any) -> str:
    """A short, one-line, JSON-safe text for ``value``: a class or function by its dotted name,
    anything else by a size-limited ``repr``; never longer than :data:`VALUE_LIMIT` characters."""
    if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
        text = f"{getattr(value, '__module__', '?')}.{value.__qualname__}"
    else:
        text = _repr.repr(value)
    return _cut(" ".join(text.split()))


def class_fields(op_class: type) -> tuple[FieldRecord, ...]:
    """The :class:`FieldRecord` of every versioned field of ``op_class``, in version order."""
    try:
        return _by_class[op_class]
    except (KeyError, TypeError):
        pass
    records: list[FieldRecord] = []
    for name, attribute in versioned_attributes(op_class).items():
        if isinstance(attribute, VersionedFieldDict):
            records += [_value_field(f"{name}[{key!r}]", field) for key, field in attribute.fields().items()]
        elif isinstance(attribute, VersionedField):
            records.append(_value_field(name, attribute))
        else:
            records.append(_computed_field(name, attribute, op_class))
    fields = tuple(records)
    try:
        _by_class[op_class] = fields
    except TypeError:  # a class that cannot be weakly referenced is simply not cached
        pass
    return fields


def _value_field(name: str, field: VersionedField) -> FieldRecord:
    version_type = field.affected_version.value
    subversion = field.version.subversion(field.affected_version)
    return FieldRecord(name, version_type, subversion, render_value(field.value))


def _computed_field(name: str, attribute: ClassVersionedField, op_class: type) -> FieldRecord:
    version = attribute.version_for(op_class)
    # The subversion the attribute entered is the one that is not the hash of nothing.
    index = next((i for i, part in enumerate(_SUBVERSIONS) if getattr(version, part) != getattr(_EMPTY, part)), 0)
    version_type = _SUBVERSIONS[index]
    subversion = getattr(version, version_type)
    if isinstance(attribute, SourceVersion):
        return FieldRecord(name, version_type, subversion, f"code of {', '.join(attribute.methods)}", "code")
    return FieldRecord(name, version_type, subversion, f"<{type(attribute).__name__}>", "computed")


def fields_appends(nodes: Iterable[tuple[Node, str]]) -> list[JournalAppend]:
    """The ``fields`` journal appends recording, for each ``(node, version)``, the fields of the
    node's op class under that version (once per version)."""
    appends: dict[str, JournalAppend] = {}
    for node, version in nodes:
        op_class = type(node.op)
        name = fields_name(node.name, version)
        if name not in appends:
            record = OpFieldsRecord(node.name, version, f"{op_class.__module__}.{op_class.__qualname__}", class_fields(op_class))
            appends[name] = JournalAppend(name, record)
    return list(appends.values())
