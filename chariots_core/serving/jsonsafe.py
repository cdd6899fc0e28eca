"""The one place where pipeline values become JSON-safe.

Responses leave the process as JSON (HTTP, job records, the command line), so values
produced by ops are converted by :func:`to_jsonable`:

================================  ==============================================
value                             becomes
================================  ==============================================
``None``, bool, int, str          itself
finite float                      itself; ``nan`` and infinities become ``null``
mapping                           an object; keys become strings (``str(key)``)
list, tuple, set, frozenset       an array (sets in iteration order)
numpy array or scalar             ``.tolist()``, then converted again
pandas DataFrame                  an array of records (one object per row)
pandas Series, Index              an array
``pd.NaT``, ``pd.NA``             ``null``
datetime, date, time              ISO 8601 text (pandas Timestamps included)
enum member                       its value, converted again
================================  ==============================================

Anything else (bytes included) raises :class:`~chariots_core.errors.SerializationError`
naming its type. numpy and pandas are recognised by duck typing, so neither is imported here.
"""

from __future__ import annotations

import datetime
import enum
import math
from collections.abc import Mapping
from typing import Any

from ..errors import SerializationError

__all__ = ["to_jsonable"]


def to_jsonable(value: Any) -> Any:
    """Return ``value`` converted to plain JSON types (see the module docstring's table)."""
    cls = type(value)
    if value is None or cls is str or cls is int or cls is bool:
        return value
    if isinstance(value, enum.Enum):  # before str/int: IntEnum and StrEnum members are both
        return to_jsonable(value.value)
    if isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, (datetime.date, datetime.time)):
        # pd.NaT is a datetime that is not equal to itself.
        return None if value != value else value.isoformat()
    kind = cls.__module__.split(".")[0]
    if kind == "pandas":
        if hasattr(value, "columns") and hasattr(value, "to_dict"):
            return to_jsonable(value.to_dict(orient="records"))
        if hasattr(value, "tolist"):
            return to_jsonable(value.tolist())
        if cls.__name__ == "NAType":
            return None
    if kind == "numpy" and hasattr(value, "tolist"):
        return to_jsonable(value.tolist())
    if isinstance(value, (bytes, bytearray)):
        msg = "bytes cannot be sent as JSON; decode them or return a str from the op"
        raise SerializationError(msg)
    msg = (
        f"a {type(value).__module__}.{type(value).__qualname__} cannot be converted to JSON; "
        "return lists, dicts, numbers, strings, numpy arrays or pandas frames from the "
        "pipeline's last op"
    )
    raise SerializationError(msg)
