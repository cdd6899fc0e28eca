"""The one place where Python values become JSON-safe, in two directions.

Values leave the process as JSON (HTTP responses, the command line), and pipeline inputs
travel to a server as JSON. The two directions have different duties, so there are two
functions over one iterative walk (no recursion: any depth and any cycle end in a clear
:class:`~chariots_core.errors.SerializationError`, never a ``RecursionError``):

- :func:`to_jsonable` converts what a pipeline *returned*, generously: the op's author
  chose the value, and a list where a tuple was is what a JSON reader expects.
- :func:`to_jsonable_input` converts what a caller *sends*, and refuses what JSON cannot
  carry faithfully, because the server's ops would receive something else than the caller
  holds (a list for a set, a string for a datetime) and fail far from the mistake.

==============================  ========================  ================================
value                           to_jsonable (outputs)     to_jsonable_input (inputs)
==============================  ========================  ================================
``None``, bool, int, str        itself                    itself
finite float                    itself                    itself
``nan``, ``inf``, ``-inf``      error (a)                 error (a)
dict / mapping                  object, ``str(key)``      object; non-str keys: error
list, tuple                     array                     array (b)
set, frozenset                  array, iteration order    error: no order to keep
datetime, date, time            ISO 8601 text             error: would arrive as text
enum member                     its value, converted      its value if an ``IntEnum`` /
                                                          ``StrEnum`` (c), else error
numpy array or scalar           ``.tolist()``             ``.tolist()``; datetime, bytes,
                                                          complex, structured dtypes: error
pandas DataFrame                array of row objects      the same (column labels: str)
pandas Series, Index, arrays    array                     array
``pd.NA``                       ``null``                  ``null``
``pd.NaT``                      ``null``                  error (a datetime)
bytes, anything else            error                     error
nested more than MAX_DEPTH      error                     error
==============================  ========================  ================================

(a) JSON has no such numbers; writing ``null`` instead would silently change the value, so
    both directions refuse them and say where they are (pass ``None`` for a missing value).
(b) A tuple arrives as a list: same items, same order. Ops that index or iterate (and
    scikit-learn, numpy, pandas) treat both alike, and rows are often tuples.
(c) Their members are ints and strs and compare equal to their values, so an op behaves
    the same with either; a plain ``Enum`` member does not equal its value.

Errors are :class:`~chariots_core.errors.WrongTypeError` (a ``TypeError`` and a
``ValueError``) for a value of the wrong kind, and
:class:`~chariots_core.errors.SerializationError` (a ``ValueError``) for a non-finite number
or a value nested too deep; the message names the place, e.g. ``pipeline_input[2]['when']``.
numpy and pandas are recognised by duck typing, so neither is imported here.
"""

from __future__ import annotations

import datetime
import enum
import math
import sys
from collections.abc import Mapping
from typing import Any

from ..errors import SerializationError, WrongTypeError

__all__ = ["to_jsonable", "to_jsonable_input", "MAX_DEPTH"]

MAX_DEPTH = 100
"""How many levels of lists and dicts a value may nest (``[[1]]`` has 2). JSON parsers
recurse, so every JSON reader has such a limit; this one is well above what pipeline inputs
and outputs use and well below where Python's own parser and encoder give up."""

_SCALARS = frozenset({str, int, bool, type(None)})
# numpy dtype kinds whose .tolist() gives only bools, ints, floats and strs.
_PLAIN_NUMPY_KINDS = frozenset("biufU")
_NUMPY_KIND_NAMES = {"M": "datetime", "m": "timedelta", "S": "bytes", "V": "structured", "c": "complex"}

# A place in a value, as a linked list from the leaf up: (parent place, key) or the root's name.
Place = tuple[Any, Any] | str


def to_jsonable(value: Any, name: str = "value") -> Any:
    """Return ``value`` (a pipeline's output) converted to plain JSON types.

    See the module docstring's table; ``name`` is what error messages call the value.

    :raises WrongTypeError: for bytes and objects JSON cannot hold, naming the place.
    :raises SerializationError: for a non-finite float or a value nested deeper than
        :data:`MAX_DEPTH` (or containing itself).
    """
    cls = type(value)
    if cls in _SCALARS or (cls is float and math.isfinite(value)):  # the common answers: no walk
        return value
    return _Walk(strict=False).run(value, name)


def to_jsonable_input(value: Any, name: str = "pipeline_input") -> Any:
    """Return ``value`` (to be sent to a server) as plain JSON types, or refuse it.

    Refuses what would reach the server as something else (see the module docstring's
    table), so the mistake is reported here, about the input, before anything is sent.

    :raises WrongTypeError: for a set, datetime, bytes, non-str dict key, plain enum member
        or other object JSON cannot carry faithfully, naming the place.
    :raises SerializationError: for a non-finite float or a value nested deeper than
        :data:`MAX_DEPTH` (or containing itself).
    """
    cls = type(value)
    if cls in _SCALARS or (cls is float and math.isfinite(value)):
        return value
    return _Walk(strict=True).run(value, name)


class _Walk:
    """One conversion: a loop over a stack of pending values instead of recursion.

    Each pending entry is ``(container, slot, value, depth, place)``: the converted value
    goes to ``container[slot]``. Containers are created before their items are converted,
    so item order is kept.
    """

    def __init__(self, strict: bool) -> None:
        self.strict = strict

    def run(self, value: Any, name: str) -> Any:
        root: list[Any] = [None]
        pending: list[tuple[Any, Any, Any, int, Place]] = [(root, 0, value, 0, name)]
        while pending:
            container, slot, item, depth, place = pending.pop()
            item = self._normalize(item, place, depth)
            if type(item) is list:
                if depth >= MAX_DEPTH:
                    raise _too_deep(place)
                container[slot] = self._items(enumerate(item), [None] * len(item), depth + 1, place, pending)
            elif type(item) is dict:
                if depth >= MAX_DEPTH:
                    raise _too_deep(place)
                container[slot] = self._items(self._keyed(item, place), {}, depth + 1, place, pending)
            elif type(item) is _Done:
                container[slot] = item.value
            else:
                container[slot] = item
        return root[0]

    def _items(self, items: Any, out: Any, depth: int, place: Place, pending: list[Any]) -> Any:
        """Fill ``out`` with the converted items; queue those that need more than a check."""
        isfinite = math.isfinite
        for key, item in items:
            cls = type(item)
            if cls in _SCALARS or (cls is float and isfinite(item)):
                out[key] = item
            else:
                out[key] = None
                pending.append((out, key, item, depth, (place, key)))
        return out

    def _keyed(self, mapping: dict[Any, Any], place: Place) -> Any:
        """A mapping's (key, value) pairs with JSON keys: str, or refused when strict."""
        if self.strict:
            for key in mapping:
                if not isinstance(key, str):
                    msg = (
                        f"{_describe(place)} has the key {key!r} ({_type_name(key)}), which JSON "
                        f"cannot carry faithfully: object keys are strings, so the server would "
                        f"get {str(key)!r}; use str keys"
                    )
                    raise WrongTypeError(msg)
            return mapping.items()
        return ((key if type(key) is str else str(key), item) for key, item in mapping.items())

    def _normalize(self, value: Any, place: Place, depth: int) -> Any:
        """``value`` as a JSON scalar, a list or a dict (whose items are still to convert),
        or a :class:`_Done` holding a finished conversion."""
        cls = type(value)
        if cls in _SCALARS or cls is list or cls is dict:
            return value
        if isinstance(value, enum.Enum):  # before str/int: IntEnum and StrEnum members are both
            if self.strict and not isinstance(value, (int, str)):
                raise _unfaithful(value, place, f"the server would get its value {value.value!r}; pass it")
            return self._normalize(value.value, place, depth)
        if isinstance(value, (str, int)):
            return value
        if isinstance(value, float):
            if math.isfinite(value):
                return value
            raise _non_finite(value, place)
        if isinstance(value, Mapping):
            return dict(value)
        if isinstance(value, (list, tuple)):
            return list(value)
        if isinstance(value, (set, frozenset)):
            if self.strict:
                raise _unfaithful(value, place, "it has no order and the server would get a list; pass a list")
            return list(value)
        kind = cls.__module__.partition(".")[0]
        if kind == "pandas":
            if cls.__name__ == "NAType":
                return None
            if hasattr(value, "columns") and hasattr(value, "to_dict"):
                return value.to_dict(orient="records")
            if hasattr(value, "tolist") and not isinstance(value, datetime.date):
                return value.tolist()
        if isinstance(value, (datetime.date, datetime.time)):
            if self.strict:
                raise _unfaithful(
                    value, place, "the server would get a str; send its .isoformat() text if the op parses it"
                )
            # pd.NaT is a datetime that is not equal to itself.
            return None if value != value else value.isoformat()
        if kind == "numpy" and hasattr(value, "tolist"):
            return self._numpy(value, place, depth)
        if isinstance(value, (bytes, bytearray)):
            msg = f"{_describe(place)} is bytes, which cannot be sent as JSON; decode them to a str (or base64 text)"
            raise WrongTypeError(msg)
        msg = (
            f"{_describe(place)} is {_type_name(value)}, which cannot be converted to JSON; use lists, "
            "dicts, numbers, strings, numpy arrays or pandas frames"
        )
        raise WrongTypeError(msg)

    def _numpy(self, value: Any, place: Place, depth: int) -> Any:
        """A numpy array or scalar as Python values; plain numeric arrays skip the walk."""
        dtype_kind = value.dtype.kind
        if dtype_kind in _PLAIN_NUMPY_KINDS:
            if depth + value.ndim > MAX_DEPTH:
                raise _too_deep(place)
            if dtype_kind == "f":
                numpy = sys.modules["numpy"]  # loaded: ``value`` is one of its objects
                finite = numpy.isfinite(value)
                if not finite.all():
                    where = numpy.argwhere(~finite)[0] if value.ndim else ()
                    for index in where:
                        place = (place, int(index))
                    raise _non_finite(value[tuple(where)], place)
            # Only plain scalars inside: finished, whatever its size.
            return _Done(value.tolist())
        if self.strict and dtype_kind in _NUMPY_KIND_NAMES:
            kind = _NUMPY_KIND_NAMES[dtype_kind]
            raise _unfaithful(
                value, place, f"its dtype is {value.dtype} ({kind}); convert it first (e.g. .astype(str))"
            )
        return value.tolist()


class _Done:
    """A converted value that needs no walk (a plain numeric numpy array's ``tolist()``)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _describe(place: Place) -> str:
    """``pipeline_input[2]['when']`` for the place ``(("pipeline_input", 2), "when")``.

    Deep places keep their first and last keys: a message must stay readable.
    """
    keys = []
    while isinstance(place, tuple):
        place, key = place
        keys.append(f"[{key!r}]")
    keys.reverse()
    if len(keys) > 8:
        keys[4:-3] = [f"...({len(keys) - 7} more)..."]
    return place + "".join(keys)


def _type_name(value: Any) -> str:
    """``set``, ``datetime.datetime``: the type's name with an article (``a set``, ``an int``)."""
    cls = type(value)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    return ("an " if name[0] in "aeiou" else "a ") + name


def _unfaithful(value: Any, place: Place, why: str) -> WrongTypeError:
    return WrongTypeError(f"{_describe(place)} is {_type_name(value)}, which JSON cannot carry faithfully: {why}")


def _non_finite(value: float, place: Place) -> SerializationError:
    msg = (
        f"{_describe(place)} is {float(value)!r}: JSON has no NaN or infinity, and null would change the "
        "value; replace it (e.g. None for a missing value) or drop it"
    )
    return SerializationError(msg)


def _too_deep(place: Place) -> SerializationError:
    msg = (
        f"{_describe(place)} nests lists and dicts more than {MAX_DEPTH} levels deep (or contains "
        "itself); JSON readers limit nesting (chariots_core.serving.jsonsafe.MAX_DEPTH): flatten it"
    )
    return SerializationError(msg)
