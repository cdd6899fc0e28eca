"""chariots_core.serving.jsonsafe: how op outputs become JSON, in process and over HTTP."""

from __future__ import annotations

import datetime
import enum
import json
import math

import pytest

from chariots_core import BaseOp, Node, Pipeline
from chariots_core.errors import SerializationError
from chariots_core.serving.jsonsafe import to_jsonable
from chariots_waitress import PipelinesClient


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None), (True, True), (7, 7), ("text", "text"), (1.5, 1.5),
        (math.nan, None), (-math.inf, None),
        ({1: (2, 3), "k": {4}}, {"1": [2, 3], "k": [4]}),
        (Color.RED, "red"), (Level.HIGH, 3), ([Level.HIGH], [3]),
        (datetime.date(2024, 6, 7), "2024-06-07"),
        (datetime.datetime(2024, 6, 7, 8, 9, 10), "2024-06-07T08:09:10"),
        (datetime.time(8, 9), "08:09:00"),
    ],
)  # fmt: skip
def test_plain_python_values(value, expected) -> None:
    assert to_jsonable(value) == expected
    json.dumps(to_jsonable(value), allow_nan=False)


def test_numpy_arrays_and_scalars() -> None:
    np = pytest.importorskip("numpy")
    value = {"array": np.array([[1.0, np.nan], [3.0, 4.5]]), "int": np.int64(3), "flag": np.bool_(True),
             "float32": np.float32(0.5), "labels": np.array(["a", "b"]), "empty": np.zeros((0, 2))}  # fmt: skip
    converted = to_jsonable(value)
    assert converted == {"array": [[1.0, None], [3.0, 4.5]], "int": 3, "flag": True, "float32": 0.5,
                         "labels": ["a", "b"], "empty": []}  # fmt: skip
    assert type(converted["int"]) is int and type(converted["flag"]) is bool
    json.dumps(converted, allow_nan=False)


def test_pandas_frames_series_and_missing_values() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"x": [1, 2], "when": pd.to_datetime(["2024-01-01", None]), "y": [0.5, float("nan")]})
    assert to_jsonable(frame) == [
        {"x": 1, "when": "2024-01-01T00:00:00", "y": 0.5},
        {"x": 2, "when": None, "y": None},
    ]
    assert to_jsonable(pd.Series([1, 2], index=["a", "b"])) == [1, 2]
    assert to_jsonable(pd.Index(["a", "b"])) == ["a", "b"]
    assert to_jsonable(pd.NA) is None
    assert to_jsonable(pd.array([1, None], dtype="Int64")) == [1, None]


@pytest.mark.parametrize("value", [b"raw", object(), {"nested": [bytearray(b"x")]}, 1 + 2j])
def test_what_json_cannot_hold_raises_naming_the_type(value) -> None:
    with pytest.raises(SerializationError, match="bytes|cannot be converted to JSON"):
        to_jsonable(value)


class NumpyOut(BaseOp):
    """Returns numpy and pandas values built from its input."""

    def execute(self, rows):
        import numpy as np
        import pandas as pd

        array = np.asarray(rows, dtype=float)
        return {"mean": array.mean(axis=0), "frame": pd.DataFrame(array, columns=["a", "b"]), "n": np.int32(len(array))}


class Opaque(BaseOp):
    """Returns something JSON cannot hold."""

    def execute(self):
        return object()


def test_numpy_and_pandas_outputs_reach_the_client_as_json(kit, start_server) -> None:
    np = pytest.importorskip("numpy")
    pytest.importorskip("pandas")
    numeric = Pipeline([Node(NumpyOut(), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")],
                       "numeric")  # fmt: skip
    opaque = Pipeline([Node(Opaque(), output_nodes="__pipeline_output__")], "opaque")
    with kit.make_app([numeric, opaque]) as app:
        client = PipelinesClient(start_server(app).url)
        # Inputs are converted by the client too: a numpy array travels as nested lists.
        response = client.call_pipeline(numeric, np.array([[1.0, 2.0], [3.0, 6.0]]))
        assert response.value == {"mean": [2.0, 4.0], "frame": [{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 6.0}], "n": 2}
        assert response.to_json() == app.call_pipeline(numeric, [[1.0, 2.0], [3.0, 6.0]]).to_json()
        with pytest.raises(SerializationError, match="builtins.object cannot be converted to JSON"):
            client.call_pipeline(opaque)
        with pytest.raises(SerializationError):
            client.call_pipeline(numeric, object())
