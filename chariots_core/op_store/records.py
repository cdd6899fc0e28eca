"""The records an op store keeps, and how they become JSON and come back.

Every record is a frozen attrs value of JSON-safe attributes, stored as JSON (never a pickle).
A backend never needs to know a record's attributes: :func:`to_plain` / :func:`from_plain`
turn any record class into plain JSON values and back, so adding an optional attribute to a
record class (say a ``fields`` dict on :class:`OpVersionRecord`) needs no backend change, and
records written before the attribute existed read back with its default.

Two derived keys organise the store:

- :func:`version_key`: a version string without its creation time (``major_minor_patch``);
  two records of one op with the same key are the same version, saved again.
- :func:`code_key`: the part of a ``code_version`` a compatibility policy compares (``"major"``
  the major subversion, ``"minor"`` major and minor, ``"exact"`` all three): a load under that
  policy may use versions whose code key equals the running code's.

**Fields.** What made each saved version is kept apart from its :class:`OpVersionRecord`, in the
``fields`` journal named by :func:`fields_name`: an :class:`OpFieldsRecord` per version, holding
a :class:`FieldRecord` for each versioned field (its subversion hash and a short rendering of
its value). Loads never read them (the version records stay small and plain, on the fast path);
only explanations do (:mod:`chariots_core.op_store.explain`).
"""

from __future__ import annotations

import functools
import json
import types
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Generic, TypeVar, Union, get_args, get_origin

import attrs
import cattrs

from ..errors import ConfigError, NotSavedError, StoreError

__all__ = [
    "POLICIES",
    "COMPARED_PARTS",
    "Position",
    "OpVersionRecord",
    "LinkRecord",
    "SnapshotRecord",
    "FieldRecord",
    "OpFieldsRecord",
    "JobRecord",
    "JournalAppend",
    "JournalEntry",
    "Commit",
    "version_key",
    "code_key",
    "fields_name",
    "journal_kind",
    "to_plain",
    "from_plain",
    "to_json",
    "from_json",
    "check_limit",
    "page",
]

POLICIES = ("major", "minor", "exact")
COMPARED_PARTS = {"major": 1, "minor": 2, "exact": 3}
"""Policy -> how many subversions (major first) it compares."""

# Where an entry sits in a listing and what a head token is: an int in the built-in stores, a
# string allowed. Opaque to callers: compare for equality, pass back as ``before``.
Position = int | str

_Record = TypeVar("_Record")
_Item = TypeVar("_Item")


def version_key(version: str) -> str:
    """``version`` without its creation time: what identifies a saved version of an op."""
    return "_".join(str(version).split("_")[:3])


def code_key(code_version: str, policy: str) -> str:
    """The part of ``code_version`` that ``policy`` compares (see the module docstring)."""
    if policy not in COMPARED_PARTS:
        msg = f"'policy' must be one of {', '.join(map(repr, POLICIES))} (got {policy!r})"
        raise ConfigError(msg)
    return "_".join(str(code_version).split("_")[: COMPARED_PARTS[policy]])


@attrs.frozen
class OpVersionRecord:
    """One saved version of one op."""

    op_name: str
    version: str  # str(op.op_version): what downstream links refer to
    code_version: str  # str(type(op).__version__): the code that produced it
    pipeline_name: str  # the pipeline whose save wrote it (the one to re-run to retrain it)
    saved_at: float
    blob_path: str
    sha256: str
    size: int

    @property
    def holds_trained_state(self) -> bool:
        """Whether this version names trained state (it is not just its code's version)."""
        return version_key(self.version) != version_key(self.code_version)


@attrs.frozen
class LinkRecord:
    """``downstream_op`` at ``downstream_version`` was built on ``upstream_op`` at ``upstream_version``."""

    upstream_op: str
    upstream_version: str
    downstream_op: str
    downstream_version: str


@attrs.frozen
class SnapshotRecord:
    """Which version each op node of a pipeline ran with when the pipeline was saved.

    ``checked_edges`` lists the ``[upstream, downstream]`` op edges a load of the pipeline
    checks (those into an op that does not retrain itself), so that its status can be told
    from the store alone; empty in snapshots written before it was recorded.
    """

    JOURNAL: ClassVar[str] = "snapshots"

    pipeline_name: str
    saved_at: float
    versions: dict[str, str]
    checked_edges: list[list[str]] = attrs.field(factory=list)


def fields_name(op_name: str, version: str) -> str:
    """The name of the ``fields`` journal of ``version`` of ``op_name``."""
    return f"{op_name}@{version_key(version)}"


@attrs.frozen
class FieldRecord:
    """One versioned field of an op, as saved: enough to tell what changed, never the value itself.

    :param name: the attribute, with the key for an item of a ``VersionedFieldDict``
        (``model_parameters['n_components']``).
    :param version_type: the subversion it enters (``"major"``, ``"minor"`` or ``"patch"``).
    :param subversion: the hex sha1 it contributes to that subversion: equal hashes, equal values.
    :param value: a short rendering of the value (cut to :data:`~chariots_core.op_store.fields.VALUE_LIMIT`
        characters), or for code (``kind="code"``) which methods it covers, never the source.
    :param kind: ``"value"`` for a ``VersionedField`` or an item, ``"code"`` for a ``SourceVersion``,
        ``"computed"`` for any other attribute whose version its class computes.
    """

    name: str
    version_type: str
    subversion: str
    value: str
    kind: str = "value"


@attrs.frozen
class OpFieldsRecord:
    """The versioned fields of the code that made one saved version of an op (journal ``fields``,
    name :func:`fields_name`)."""

    JOURNAL: ClassVar[str] = "fields"

    op_name: str
    version: str
    op_class: str  # module.qualname of the op's class
    fields: tuple[FieldRecord, ...] = attrs.field(default=(), converter=tuple)


@attrs.frozen
class JobRecord:
    """The state of one asynchronous pipeline run."""

    job_id: str
    pipeline_name: str
    status: str  # a JobStatus value
    submitted_at: float
    updated_at: float
    versions: dict[str, str] = attrs.field(factory=dict)
    result_path: str | None = None  # saver path of the value (dill), once done
    result_sha256: str | None = None
    error: dict[str, str] | None = None  # {"type", "message", "node"} once failed
    worker: str | None = None  # which worker ran it (e.g. "pid 1234")
    # The process responsible for finishing the job, "<host>/<pid namespace>/<pid>/<start time>"
    # (see chariots_core.serving.workers.new_job); None for records written before owners existed
    # and for jobs that no process of this host answers for.
    owner: str | None = None


def journal_kind(record_type: type) -> str:
    """The journal a record class is kept in: its ``JOURNAL`` class attribute.

    :raises StoreError: if the class declares none.
    """
    kind = getattr(record_type, "JOURNAL", None)
    if not isinstance(kind, str) or not kind:
        msg = (
            f"{getattr(record_type, '__qualname__', record_type)!r} records cannot go in a journal: "
            "give the attrs class a JOURNAL = '<name>' class attribute (as SnapshotRecord has)"
        )
        raise StoreError(msg)
    return kind


@attrs.frozen
class JournalAppend:
    """Append ``record`` to the journal of its class (``type(record).JOURNAL``) under ``name``."""

    name: str
    record: Any = attrs.field()

    @record.validator
    def _has_a_journal(self, attribute: attrs.Attribute, value: Any) -> None:
        journal_kind(type(value))

    @property
    def kind(self) -> str:
        """The journal's kind, e.g. ``"snapshots"``."""
        return journal_kind(type(self.record))


@attrs.frozen
class JournalEntry(Generic[_Record]):
    """A record read back from a journal, with its position there (use it as ``before``)."""

    position: Position
    record: _Record


@attrs.frozen
class Commit:
    """Everything one commit writes: all of it becomes visible at once, or none of it.

    :param ops: op versions; one already stored (same :func:`version_key`) is replaced and
        becomes its op's newest, and within one commit the last record of a version wins.
    :param links: links to record (one already known is kept once).
    :param journal: records to append to journals (a pipeline save appends its snapshot).
    """

    ops: tuple[OpVersionRecord, ...] = attrs.field(default=(), converter=tuple)
    links: tuple[LinkRecord, ...] = attrs.field(default=(), converter=tuple)
    journal: tuple[JournalAppend, ...] = attrs.field(default=(), converter=tuple)


# -- JSON ------------------------------------------------------------------------------------
_converter = cattrs.Converter()
_PLAIN_VALUES = (str, int, float, bool, type(None))


def _is_plain_type(annotation: Any) -> bool:
    """Whether JSON gives values of this type back as they were (no conversion needed)."""
    if annotation in _PLAIN_VALUES:
        return True
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is dict:
        return args[0] is str and all(_is_plain_type(arg) for arg in args[1:])
    if origin is list:
        return _is_plain_type(args[0])
    if origin in (Union, types.UnionType):
        return all(_is_plain_type(arg) for arg in args)
    return False


@functools.cache
def _plain_fields(record_type: type) -> tuple[str, ...] | None:
    """The attribute names of a record class all of whose attributes are plain, else ``None``."""
    attrs.resolve_types(record_type)
    fields = attrs.fields(record_type)
    if all(_is_plain_type(field.type) for field in fields):
        return tuple(field.name for field in fields)
    return None


def to_plain(record: Any) -> Any:
    """A record as plain JSON values (dicts, lists, strings, numbers)."""
    names = _plain_fields(type(record))
    if names is None:
        return _converter.unstructure(record)
    return {name: getattr(record, name) for name in names}


def from_plain(data: Any, record_type: type[_Record]) -> _Record:
    """The ``record_type`` that :func:`to_plain` turned into ``data``.

    Records of plain attributes are built directly (cattrs' checks cost more than the JSON
    parsing on the store's hot path); anything else, and data this code does not know (an
    attribute added by a newer writer), goes through cattrs.
    """
    if _plain_fields(record_type) is not None:
        try:
            return record_type(**data)
        except TypeError:
            pass
    return _converter.structure(data, record_type)


def to_json(record: Any) -> bytes:
    """Encode a record (or plain values) as compact, key-sorted UTF-8 JSON."""
    plain = to_plain(record) if attrs.has(type(record)) else _converter.unstructure(record)
    return json.dumps(plain, sort_keys=True, separators=(",", ":")).encode()


def from_json(data: bytes | str, record_type: type[_Record]) -> _Record:
    """Decode JSON made by :func:`to_json` back into a ``record_type``."""
    plain = json.loads(data)
    if attrs.has(record_type):
        return from_plain(plain, record_type)
    return _converter.structure(plain, record_type)


# -- paging ----------------------------------------------------------------------------------
def check_limit(limit: int | None) -> int | None:
    """Return ``limit`` if it is ``None`` or a count >= 0, else raise :class:`ConfigError`."""
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        raise ConfigError(f"'limit' must be None or a number >= 0 (got {limit!r})")
    return limit


def page(
    newest_first: Sequence[_Item],
    identify: Callable[[_Item], Any],
    limit: int | None,
    before: Any,
    listing: str,
) -> list[_Item]:
    """The items after ``before`` (an identity of one of them), at most ``limit`` of them.

    For stores that hold a whole listing in hand (in memory, or read once per view).

    :param listing: names the listing in the error raised when ``before`` is not in it.
    :raises NotSavedError: if ``before`` is not the identity of an item of the listing.
    """
    check_limit(limit)
    start = 0
    if before is not None:
        for index, item in enumerate(newest_first):
            if identify(item) == before:
                start = index + 1
                break
        else:
            msg = f"{before!r} is not in {listing}: pass as 'before' what an earlier page of it listed"
            raise NotSavedError(msg)
    end = None if limit is None else start + limit
    return list(newest_first[start:end])
