"""The one place where pipeline values become JSON-safe.

Responses leave the process as JSON (HTTP, job records), so values produced by ops must be
converted: numpy arrays and scalars to lists and numbers, pandas frames to lists of records,
series to lists, tuples and sets to lists, mapping keys to strings. Anything else that JSON
cannot hold raises :class:`~chariots_core.errors.SerializationError` naming its type.
numpy and pandas are recognised by duck typing, so neither is imported here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .errors import SerializationError

__all__ = ["to_jsonable"]


def to_jsonable(value: Any) -> Any:
    """Return ``value`` converted to plain JSON types (see the module docstring)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(item) for item in value]
    kind = type(value).__module__.split(".")[0]
    if kind == "pandas" and hasattr(value, "to_dict"):
        if hasattr(value, "columns"):
            return to_jsonable(value.to_dict(orient="records"))
        return to_jsonable(value.tolist())
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
