"""Why a model is stale, in words: which field changed, from what to what, or which save retrained it.

A saved model is *stale* when the version of an op upstream of it that would run is not the
version it was trained on (compared under the app's policy). The version is a hash, so the
store also records the fields that made each version (:mod:`chariots_core.op_store.fields`);
comparing the fields of the two versions says what changed::

    irispca.model_parameters['n_components'] (MAJOR) changed 2 → 3 since 'irisrf' was trained on it;
    run and save pipeline 'train_iris'

and when the code is the same, the version record says which save retrained it::

    'irispca' was retrained by pipeline 'train_pca' at 2024-05-29 10:42 (MAJOR) since 'irisrf' was
    trained on it; run and save pipeline 'train_iris'

The explanations are values (:class:`Staleness` holds :class:`StaleEdge` and :class:`StaleOp`
items, each with a :class:`Change` made of :class:`FieldChange` items) that travel as JSON
(``to_dict``/``from_dict``), and each has a ``text``. ``app.why_stale(pipeline)`` returns a
:class:`Staleness`; a ``VersionError`` quotes the same texts. An :class:`Explainer` reads what it
needs through one view of the op store, only when something is stale: loads that succeed never
read field records.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from typing import Any, TypeVar

import attrs
import cattrs

from ..errors import ChariotsError
from ..versioning import Version
from .fields import VALUE_LIMIT, class_fields
from .records import FieldRecord, OpFieldsRecord, OpVersionRecord, fields_name, version_key
from .store import OpStoreView

__all__ = ["FieldChange", "Change", "StaleEdge", "StaleOp", "Staleness", "Explainer", "as_dict", "digests", "short", "changed_parts", "when"]

_PARTS = ("major", "minor", "patch")
_T = TypeVar("_T")


@functools.lru_cache(maxsize=65536)
def _parsed(text: str) -> tuple[str, str, str]:
    version = Version.parse(text)
    return version.major, version.minor, version.patch


def digests(version: Version | str) -> tuple[str, str, str]:
    """The three subversions of a version or of its string (parsed once per string)."""
    if isinstance(version, Version):
        return version.major, version.minor, version.patch
    return _parsed(version)


def short(version: Version | str) -> str:
    """A version as messages show it: 7 characters of each subversion."""
    return "/".join(digest[:7] for digest in digests(version))


def changed_parts(old: Version | str, new: Version | str) -> tuple[str, ...]:
    """The subversions that differ between two versions, major first."""
    return tuple(name for name, a, b in zip(_PARTS, digests(old), digests(new)) if a != b)


def when(timestamp: float) -> str:
    """A save's time as explanations show it (local time, to the minute)."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


def _upper(parts: tuple[str, ...]) -> str:
    return " and ".join(part.upper() for part in parts)


@attrs.frozen
class FieldChange:
    """One versioned field of ``op`` that differs between two versions.

    ``old`` is ``None`` for a field that was added, ``new`` for one that was removed; both are
    the short renderings the store recorded. ``old_type`` is set when the field moved to
    another subversion. ``kind`` is ``"code"`` for a ``SourceVersion`` (no value: the code changed),
    ``"computed"`` for another attribute whose version its class computes.
    """

    op: str
    field: str
    version_type: str
    old: str | None = None
    new: str | None = None
    kind: str = "value"
    old_type: str | None = None

    @property
    def text(self) -> str:
        """One line: ``irispca.model_parameters['n_components'] (MAJOR) changed 2 → 3``."""
        where, kind = f"{self.op}.{self.field}", self.version_type.upper()
        if self.kind == "code":
            return f"the code of {self.op!r} changed ({where}, {kind}: {self.new or self.old})"
        if self.kind == "computed" and self.old is not None and self.new is not None:
            return f"{where} ({kind}) changed (its class computes it: {self.new})"
        if self.old is None:
            return f"{where} ({kind}) was added: {self.new}"
        if self.new is None:
            return f"{where} ({kind}) was removed (it was {self.old})"
        if self.old_type is not None and self.old_type != self.version_type:
            return f"{where} changed {self.old} ({self.old_type.upper()}) → {self.new} ({kind})"
        if self.old == self.new:
            return f"{where} ({kind}) changed beyond the {VALUE_LIMIT} characters recorded ({self.new})"
        return f"{where} ({kind}) changed {self.old} → {self.new}"


@attrs.frozen
class Change:
    """Why op ``op`` is version ``new`` rather than ``old`` (version strings; :func:`short` shows them).

    :param parts: the subversions that differ: those of the code when the code changed.
    :param fields: the versioned fields that differ in those subversions.
    :param code_changed: whether the code (the op class's own version) differs.
    :param retrained_by: for a change made by training (same code), the pipeline whose save
        wrote the new version; ``retrained_at`` is when.
    :param fields_recorded: ``False`` when the fields of a side were never recorded (a version
        saved by a Chariots older than field records): the change is then named less precisely.
    """

    op: str
    old: str
    new: str
    parts: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    fields: tuple[FieldChange, ...] = attrs.field(default=(), converter=tuple)
    code_changed: bool = False
    retrained_by: str | None = None
    retrained_at: float | None = None
    fields_recorded: bool = True

    @property
    def text(self) -> str:
        """What changed, in one line (field changes joined by ``;``)."""
        if self.fields:
            return "; ".join(change.text for change in self.fields)
        if self.retrained_by is not None and self.retrained_at is not None:
            return f"{self.op!r} was retrained by pipeline {self.retrained_by!r} at {when(self.retrained_at)} ({_upper(self.parts)})"
        if self.code_changed:
            unknown = "" if self.fields_recorded else " (which field is unknown: the older version was saved without its fields)"
            return f"the code of {self.op!r} changed ({_upper(self.parts)}){unknown}"
        return f"{self.op!r} changed from {short(self.old)} to {short(self.new)} ({_upper(self.parts)})"


@attrs.frozen
class StaleEdge:
    """``downstream`` (at ``downstream_version``) was trained on another version of ``upstream``
    than the one that would run with it now; ``change`` says what changed since."""

    upstream: str
    downstream: str
    downstream_version: str
    change: Change
    fix: str | None = None  # the pipeline to run and save (the one that trained the downstream version)

    @property
    def why(self) -> str:
        """The change, and since when: ``... changed 2 → 3 since 'irisrf' was trained on it``."""
        return f"{self.change.text} since {self.downstream!r} was trained on it"

    @property
    def text(self) -> str:
        """:attr:`why` and the fix."""
        return self.why + (f"; run and save pipeline {self.fix!r}" if self.fix else "")


@attrs.frozen
class StaleOp:
    """No saved version of ``op`` was made by its current code: ``change`` compares the code of
    its newest saved version (``change.old``) with the code that runs (``change.new``)."""

    op: str
    change: Change
    fix: str | None = None  # the pipeline whose save wrote the newest version

    @property
    def why(self) -> str:
        """The change since the newest saved version."""
        return f"{self.change.text} since its newest saved version ({short(self.change.old)}) was saved"

    @property
    def text(self) -> str:
        """:attr:`why` and the fix."""
        head = f"no saved version of {self.op!r} was made by its current code: {self.why}"
        return head + (f"; retrain it with the current code: run and save pipeline {self.fix!r}" if self.fix else "")


@attrs.frozen
class Staleness:
    """What stops a pipeline from loading its newest saved versions (``app.why_stale(pipeline)``).

    :param edges: each stale edge, with what changed and the pipeline to run and save.
    :param ops: each op none of whose saved versions its current code may load.
    :param unsaved: ops that need a saved version (they only predict) and have none.
    """

    pipeline: str
    edges: tuple[StaleEdge, ...] = attrs.field(default=(), converter=tuple)
    ops: tuple[StaleOp, ...] = attrs.field(default=(), converter=tuple)
    unsaved: tuple[str, ...] = attrs.field(default=(), converter=tuple)

    @property
    def stale(self) -> bool:
        """Whether anything stops the load."""
        return bool(self.edges or self.ops or self.unsaved)

    @property
    def text(self) -> str:
        """A paragraph: one line per stale edge, stale op and unsaved op."""
        if not self.stale:
            return f"pipeline {self.pipeline!r} is not stale: its newest saved versions load together"
        lines = [f"pipeline {self.pipeline!r} is stale (loading its newest saved versions would fail):"]
        lines += [f"  - edge {edge.upstream!r} -> {edge.downstream!r}: {edge.text}" for edge in self.edges]
        lines += [f"  - op {op.op!r}: {op.text}" for op in self.ops]
        lines += [f"  - op {name!r} was never saved: run and save a pipeline that fits it" for name in self.unsaved]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dicts and lists (:meth:`from_dict` reads them back)."""
        return as_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Staleness:
        """Rebuild a :class:`Staleness` from :meth:`to_dict`'s output.

        :raises ChariotsError: if ``data`` is not such a dict.
        """
        return _structure(data, cls)


_converter = cattrs.Converter()


def as_dict(explanation: Any) -> Any:
    """Any explanation of this module (a :class:`Change`, a :class:`StaleEdge`...) as JSON-safe values."""
    return _converter.unstructure(explanation)


def _structure(data: Any, cls: type[_T]) -> _T:
    try:
        return _converter.structure(data, cls)
    except (cattrs.BaseValidationError, TypeError, ValueError, KeyError) as exc:
        msg = f"expected a {cls.__name__} as its to_dict() makes it (got {str(data)[:200]}): {exc}"
        raise ChariotsError(msg) from exc


class Explainer:
    """Explains changes of op versions, reading through one view of the op store.

    :param compared: how many subversions the app's policy compares (1 for ``"major"``...): the
        fields named are those of the compared subversions that changed.
    """

    def __init__(self, view: OpStoreView, compared: int = 3) -> None:
        self.view = view
        self.compared = _PARTS[:compared]
        self._fields: dict[str, tuple[FieldRecord, ...] | None] = {}

    def record(self, op: str, version: str) -> OpVersionRecord | None:
        """The store's record of ``version`` of ``op`` (``None`` for an op that is not saved)."""
        return self.view.op_version(op, version)

    def fields(self, op: str, version: str) -> tuple[FieldRecord, ...] | None:
        """The fields recorded for ``version`` of ``op`` (``None``: never recorded)."""
        name = fields_name(op, version)
        if name not in self._fields:
            entries = self.view.journal(OpFieldsRecord, name, limit=1)
            self._fields[name] = entries[0].record.fields if entries else None
        return self._fields[name]

    def change(self, op: str, old: str, new: str, live_class: type | None = None) -> Change:
        """Why ``op`` is ``new`` rather than ``old`` (version strings).

        :param live_class: the op's class as it runs now: its fields stand for ``new``'s when
            ``new`` is a version of that code (saves no read, and covers a plain op never recorded).
        """
        old_record, new_record = self.record(op, old), self.record(op, new)
        old_code = old_record.code_version if old_record is not None else old
        new_code = new_record.code_version if new_record is not None else new
        code_changes = changed_parts(old_code, new_code)
        code_parts = [part for part in code_changes if part in self.compared]
        fields: tuple[FieldChange, ...] = ()
        old_fields = self.fields(op, old)
        new_fields = self._new_fields(op, new, new_code, live_class)
        if code_parts and old_fields is not None and new_fields is not None:
            changes = _diff(op, old_fields, new_fields)
            relevant = tuple(change for change in changes if change.version_type in code_parts or change.old_type in code_parts)
            fields = relevant or changes
        # A change the code does not explain was made by training: the new version's save says which.
        retraining = new_record if not code_parts and new_record is not None and new_record.holds_trained_state else None
        return Change(
            op,
            old,
            new,
            code_changes if code_changes and retraining is None else changed_parts(old, new),
            fields,
            code_changed=bool(code_changes),
            retrained_by=None if retraining is None else retraining.pipeline_name,
            retrained_at=None if retraining is None else retraining.saved_at,
            fields_recorded=old_fields is not None and new_fields is not None,
        )

    def _new_fields(self, op: str, new: str, new_code: str, live_class: type | None) -> tuple[FieldRecord, ...] | None:
        if live_class is not None and version_key(str(live_class.__version__)) == version_key(new_code):  # type: ignore[attr-defined]
            return class_fields(live_class)
        return self.fields(op, new)

    def stale_edge(self, upstream: str, built_on: str, running: str, downstream: OpVersionRecord, live_class: type | None = None) -> StaleEdge:
        """The stale edge ``upstream -> downstream.op_name``: ``downstream`` was built on
        ``built_on`` of ``upstream``, ``running`` would run (version strings)."""
        change = self.change(upstream, built_on, running, live_class)
        return StaleEdge(upstream, downstream.op_name, downstream.version, change, downstream.pipeline_name)

    def stale_behind(self, upstream: str, running: str, downstream: OpVersionRecord) -> StaleEdge | None:
        """The edge ``upstream -> downstream.op_name`` explained if ``downstream`` holds trained state
        built on versions of ``upstream`` none of which is ``running`` under the policy, else ``None``."""
        if not downstream.holds_trained_state:
            return None
        links = self.view.links(downstream.op_name, downstream.version)
        built_on = [link.upstream_version for link in links if link.upstream_op == upstream]
        key = digests(running)[: len(self.compared)]
        if not built_on or any(digests(version)[: len(self.compared)] == key for version in built_on):
            return None
        return self.stale_edge(upstream, built_on[-1], running, downstream)

    def stale_op(self, newest: OpVersionRecord, live_class: type) -> StaleOp:
        """The op whose newest saved version ``newest`` was made by other code than ``live_class``."""
        change = self.change(newest.op_name, newest.version, str(live_class.__version__), live_class)  # type: ignore[attr-defined]
        return StaleOp(newest.op_name, change, newest.pipeline_name)


def _diff(op: str, old: tuple[FieldRecord, ...], new: tuple[FieldRecord, ...]) -> tuple[FieldChange, ...]:
    """The fields that differ, in the order the new version lists them (removed ones last)."""
    before = {field.name: field for field in old}
    after = {field.name: field for field in new}
    changes = []
    for name, field in after.items():
        was = before.get(name)
        if was is None:
            changes.append(FieldChange(op, name, field.version_type, None, field.value, field.kind))
        elif (was.subversion, was.version_type) != (field.subversion, field.version_type):
            moved = was.version_type if was.version_type != field.version_type else None
            changes.append(FieldChange(op, name, field.version_type, was.value, field.value, field.kind, moved))
    changes += [FieldChange(op, name, field.version_type, field.value, None, field.kind) for name, field in before.items() if name not in after]
    return tuple(changes)
