"""Versions of ops, computed from the fields that change what an op computes.

A :class:`Version` has three subversions (major, minor, patch), each a sha1, and a creation
time. Classes built with :class:`VersionableMeta` get a ``__version__`` computed once, when
the class is created, from their :class:`VersionedField` and :class:`VersionedFieldDict`
attributes::

    >>> class MyVersionedClass(metaclass=VersionableMeta):
    ...     foo = VersionedField(3, VersionType.MINOR)
    >>> MyVersionedClass.__version__
    <Version, major:94e72, minor: 36d3c, patch: 94e72>

The hashing scheme reproduces chariots 0.2 exactly, so versions printed by its
documentation are the versions computed here.
"""

from __future__ import annotations

import enum
import hashlib
import time
from collections.abc import Iterator, MutableMapping
from typing import Any

from .errors import InvalidVersionError

__all__ = [
    "Version",
    "VersionType",
    "VersionedField",
    "VersionedFieldDict",
    "VersionableMeta",
    "ClassVersionedField",
]


class VersionType(enum.Enum):
    """The three subversions of a :class:`Version`."""

    MAJOR = "major"
    MINOR = "minor"
    PATCH = "patch"


_SUBVERSIONS = ("major", "minor", "patch")
_Hash = type(hashlib.sha1())


def _is_hash(part: object) -> bool:
    """Whether ``part`` is a live hashlib object rather than a hex digest."""
    return hasattr(part, "hexdigest") and hasattr(part, "copy") and hasattr(part, "update")


def _version_type(value: VersionType | str, argument: str) -> VersionType:
    """``value`` as a VersionType, or an error naming the argument and the accepted names."""
    try:
        return VersionType(value)
    except ValueError:
        msg = f"'{argument}' must be a VersionType or 'major', 'minor' or 'patch' (got {value!r})"
        raise InvalidVersionError(msg) from None


class Version:
    """An immutable three-part version plus the time it was created.

    Two versions are equal when their three subversions are equal, whatever their creation
    times; ordering compares creation times (a later version is greater).

    ``a + b`` combines two versions subversion by subversion (the sha1 of both hex
    digests); ``update`` feeds more bytes into one subversion's hash and returns the result.
    Only pass arguments to the constructor when rebuilding a version from its parts (use
    :meth:`parse` for strings).
    """

    __slots__ = ("_hashes", "_digests", "_creation_time", "_text")

    def __init__(
        self,
        major: str | _Hash | None = None,
        minor: str | _Hash | None = None,
        patch: str | _Hash | None = None,
        creation_time: float | None = None,
    ) -> None:
        given = (major, minor, patch)
        # A subversion started here or given as a hash object keeps its live hash, so that
        # `update` can extend it as chariots 0.2 did; one rebuilt from a hex digest cannot.
        self._hashes = tuple(
            hashlib.sha1() if part is None else part.copy() if _is_hash(part) else None
            for part in given
        )
        self._digests = tuple(
            live.hexdigest() if live is not None else _check_digest(part, name)
            for live, part, name in zip(self._hashes, given, _SUBVERSIONS)
        )
        self._creation_time = time.time() if creation_time is None else float(creation_time)
        self._text: str | None = None

    # -- reading -------------------------------------------------------------------------
    @property
    def major(self) -> str:
        """The hex sha1 of the major subversion."""
        return self._digests[0]

    @property
    def minor(self) -> str:
        """The hex sha1 of the minor subversion."""
        return self._digests[1]

    @property
    def patch(self) -> str:
        """The hex sha1 of the patch subversion."""
        return self._digests[2]

    @property
    def creation_time(self) -> float:
        """When this version was created (seconds since the epoch)."""
        return self._creation_time

    def subversion(self, version_type: VersionType) -> str:
        """The hex digest of one subversion."""
        return self._digests[_SUBVERSIONS.index(_version_type(version_type, "version_type").value)]

    # -- building ------------------------------------------------------------------------
    def update(self, version_type: VersionType | str, input_bytes: bytes) -> Version:
        """Return a copy of this version whose ``version_type`` hash has also seen ``input_bytes``.

        :raises InvalidVersionError: if this version was parsed from a string (its hash state
            is gone) or ``version_type`` names no subversion.
        """
        index = _SUBVERSIONS.index(_version_type(version_type, "version_type").value)
        live = self._hashes[index]
        if live is None:
            msg = (
                f"cannot update the {_SUBVERSIONS[index]} subversion of {self!r}: it was rebuilt "
                "from a digest, so its hash state is unknown. Update a fresh Version() and add it "
                "with `+` instead."
            )
            raise InvalidVersionError(msg)
        extended = live.copy()
        extended.update(input_bytes)
        new = self._copy()
        new._hashes = _replace(self._hashes, index, extended)
        new._digests = _replace(self._digests, index, extended.hexdigest())
        return new

    def update_major(self, input_bytes: bytes) -> Version:
        """Shortcut for ``update(VersionType.MAJOR, input_bytes)``."""
        return self.update(VersionType.MAJOR, input_bytes)

    def update_minor(self, input_bytes: bytes) -> Version:
        """Shortcut for ``update(VersionType.MINOR, input_bytes)``."""
        return self.update(VersionType.MINOR, input_bytes)

    def update_patch(self, input_bytes: bytes) -> Version:
        """Shortcut for ``update(VersionType.PATCH, input_bytes)``."""
        return self.update(VersionType.PATCH, input_bytes)

    def __add__(self, other: Version) -> Version:
        if not isinstance(other, Version):
            return NotImplemented
        hashes = [
            hashlib.sha1((mine + theirs).encode())
            for mine, theirs in zip(self._digests, other._digests)
        ]
        return Version(*hashes, creation_time=max(self._creation_time, other._creation_time))

    def _copy(self) -> Version:
        new = Version.__new__(Version)
        new._hashes, new._digests = self._hashes, self._digests
        new._creation_time = self._creation_time
        new._text = None  # the copy's digests are about to change
        return new

    # -- text ----------------------------------------------------------------------------
    def __str__(self) -> str:
        # Made once: a version never changes, and its text goes out with every response
        # (the float's repr alone costs more than the rest of building a response's versions).
        text = self._text
        if text is None:
            text = self._text = "_".join((*self._digests, repr(self._creation_time)))
        return text

    def __repr__(self) -> str:
        major, minor, patch = (digest[:5] for digest in self._digests)
        return f"<Version, major:{major}, minor: {minor}, patch: {patch}>"

    @classmethod
    def parse(cls, version_string: str) -> Version:
        """Rebuild a version from ``str(version)`` (not from its ``repr``).

        :raises InvalidVersionError: if the string is not a version string.
        """
        parts = str(version_string).split("_")
        try:
            if len(parts) != 4:
                raise ValueError
            return cls(*parts[:3], creation_time=float(parts[3]))
        except ValueError:
            msg = (
                f"{version_string!r} is not a version string: expected "
                "'<major sha1>_<minor sha1>_<patch sha1>_<creation time>' as made by str(version)"
            )
            raise InvalidVersionError(msg) from None

    # -- comparing -----------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._digests == other._digests

    def __hash__(self) -> int:
        return hash(self._digests)

    def __lt__(self, other: Version) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._creation_time < other._creation_time

    def __le__(self, other: Version) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._creation_time <= other._creation_time

    def __gt__(self, other: Version) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._creation_time > other._creation_time

    def __ge__(self, other: Version) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._creation_time >= other._creation_time

    def __reduce__(self) -> tuple:
        return (Version, (*self._digests, self._creation_time))


def _check_digest(digest: str, name: str) -> str:
    if (
        not isinstance(digest, str)
        or len(digest) != 40
        or any(char not in "0123456789abcdef" for char in digest)
    ):
        msg = (
            f"'{name}' must be a 40-character hex sha1 (got {digest!r}); to rebuild a saved "
            "version use Version.parse(str(version))"
        )
        raise InvalidVersionError(msg)
    return digest


def _replace(values: tuple, index: int, value: Any) -> tuple:
    return (*values[:index], value, *values[index + 1 :])


def _field_version(value: Any, version_type: VersionType) -> Version:
    text = hashlib.sha1(str(value).encode()).hexdigest()
    return Version().update(version_type, text.encode())


class VersionedField:
    """A class attribute that takes part in its class's version.

    Reading the attribute gives the inner value; the version is computed from it once, when
    the class is created.

    :param value: the value the attribute gives.
    :param affected_version: the subversion a change of this value changes.
    """

    def __init__(self, value: Any, affected_version: VersionType | str) -> None:
        self.value = value
        self.affected_version = _version_type(affected_version, "affected_version")

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        return self.value

    @property
    def version(self) -> Version:
        """The version this field contributes to its class."""
        return _field_version(self.value, self.affected_version)

    def __repr__(self) -> str:
        return f"VersionedField({self.value!r}, {self.affected_version})"


class VersionedFieldDict(MutableMapping):
    """A dict whose items each take part in the version of the class holding it.

    Plain values count as fields of ``default_version``; a :class:`VersionedField` value keeps
    its own subversion. Reading an item gives the plain value. Used for instance as the
    ``model_parameters`` of scikit-learn ops.
    """

    def __init__(
        self, default_version: VersionType | str = VersionType.MAJOR, *args: Any, **kwargs: Any
    ) -> None:
        self.default_version = _version_type(default_version, "default_version")
        self._fields: dict[str, VersionedField] = {}
        self.update(*args, **kwargs)

    def __getitem__(self, key: str) -> Any:
        return self._fields[key].value

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(value, VersionedField):
            value = VersionedField(value, self.default_version)
        self._fields[key] = value

    def __delitem__(self, key: str) -> None:
        del self._fields[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    @property
    def version_dict(self) -> dict[str, Version]:
        """Each key mapped to the version its value contributes."""
        return {key: field.version for key, field in self._fields.items()}

    @property
    def version(self) -> Version:
        """The sum of the items' versions, taken in key order (a class holding only this
        dict has this version)."""
        return _add_fields(Version(), self._fields_in_order())

    def fields(self) -> dict[str, VersionedField]:
        """The items as fields (plain values wrapped in the dict's default type), in the key
        order in which they enter a version."""
        return {key: self._fields[key] for key in sorted(self._fields)}

    def _fields_in_order(self) -> list[VersionedField]:
        return list(self.fields().values())

    def __repr__(self) -> str:
        return f"VersionedFieldDict({self.default_version}, {dict(self)!r})"


class ClassVersionedField:
    """A class attribute whose version depends on the class holding it (as
    :class:`~chariots_core.code_versions.SourceVersion` does: it hashes that class's code).

    Classes holding one compute their ``__version__`` the first time it is read, not when
    the class statement runs, so that what the class refers to is defined by then.
    """

    def version_for(self, cls: type) -> Version:
        """The version this attribute contributes to ``cls``."""
        raise NotImplementedError(f"{type(self).__name__} must override version_for(cls)")


_Field = VersionedField | VersionedFieldDict | ClassVersionedField


def _class_fields(cls: type) -> dict[str, _Field]:
    """The versioned attributes visible on ``cls``, subclasses overriding their bases."""
    fields: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if isinstance(value, (VersionedField, VersionedFieldDict, ClassVersionedField)):
                fields[name] = value
            else:
                fields.pop(name, None)
    return fields


def versioned_attributes(cls: type) -> dict[str, _Field]:
    """The versioned attributes of ``cls`` (its bases' included), by name, in the order they enter its version."""
    return dict(sorted(_class_fields(cls).items()))


def class_version(cls: type) -> Version:
    """Compute the version of ``cls`` from its versioned attributes, in attribute-name order."""
    total = Version()
    for field in versioned_attributes(cls).values():
        if isinstance(field, VersionedFieldDict):
            total = _add_fields(total, field._fields_in_order())
        elif isinstance(field, ClassVersionedField):
            total = total + field.version_for(cls)
        else:
            total = total + field.version
    return total


def _add_fields(total: Version, fields: list[VersionedField]) -> Version:
    for field in fields:
        total = total + field.version
    return total


class _VersionOnFirstRead:
    """Stands for ``__version__`` until it is first read, then computes it and steps aside."""

    def __get__(self, instance: Any, owner: type) -> Version:
        version = class_version(owner)
        type.__setattr__(owner, "__version__", version)
        return version


class VersionableMeta(type):
    """Metaclass that gives each class a ``__version__``, computed once.

    It is computed at class creation, or on first read for classes holding a
    :class:`ClassVersionedField`, whose version may depend on code defined after the class.
    """

    def __init__(cls, clsname: str, superclasses: tuple, attributedict: dict) -> None:
        super().__init__(clsname, superclasses, attributedict)
        if any(isinstance(field, ClassVersionedField) for field in _class_fields(cls).values()):
            cls.__version__ = _VersionOnFirstRead()
        else:
            cls.__version__ = class_version(cls)
