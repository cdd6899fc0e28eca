"""chariots_core.serving.jsonsafe: outputs become JSON generously, inputs only faithfully."""

from __future__ import annotations

import collections
import datetime
import enum
import json
import math

import pytest

from chariots_core import BaseOp, Node, Pipeline
from chariots_core.errors import SerializationError, WrongTypeError
from chariots_core.serving.jsonsafe import MAX_DEPTH, to_jsonable, to_jsonable_input
from chariots_waitress import PipelinesClient


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Opaque:
    pass


def nested(depth: int, inner: object = 1) -> list:
    """``depth`` lists, one inside the other, around ``inner``."""
    value = inner
    for _ in range(depth):
        value = [value]
    return value  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None), (True, True), (7, 7), ("text", "text"), (1.5, 1.5),
        ({1: (2, 3), "k": {4}}, {"1": [2, 3], "k": [4]}),
        (Color.RED, "red"), (Level.HIGH, 3), ([Level.HIGH], [3]),
        (datetime.date(2024, 6, 7), "2024-06-07"),
        (datetime.datetime(2024, 6, 7, 8, 9, 10), "2024-06-07T08:09:10"),
        (datetime.time(8, 9), "08:09:00"),
        (collections.OrderedDict([("b", 1), ("a", [2])]), {"b": 1, "a": [2]}),
    ],
)  # fmt: skip
def test_outputs_convert_plain_python_values(value, expected) -> None:
    converted = to_jsonable(value)
    assert converted == expected
    json.dumps(converted, allow_nan=False)


def test_outputs_keep_the_order_of_lists_and_dict_keys() -> None:
    value = {"z": [3, 2, 1], "a": {"y": 1, "b": 2}, "m": [{"k": i} for i in range(50)]}
    assert json.dumps(to_jsonable(value)) == json.dumps(value)


@pytest.mark.parametrize("convert", [to_jsonable, to_jsonable_input])
@pytest.mark.parametrize(
    ("value", "place"),
    [(math.nan, "x"), (math.inf, "x"), ([1.0, -math.inf], "x[1]"), ({"a": [{"b": math.nan}]}, "x['a'][0]['b']")],
)
def test_non_finite_numbers_are_refused_naming_the_place(convert, value, place: str) -> None:
    with pytest.raises(SerializationError, match=r"JSON has no NaN or infinity") as caught:
        convert(value, "x")
    assert str(caught.value).startswith(f"{place} is ")
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("convert", [to_jsonable, to_jsonable_input])
def test_any_depth_and_cycles_end_in_a_clear_error_not_recursion(convert) -> None:
    assert convert(nested(MAX_DEPTH)) == nested(MAX_DEPTH)
    for depth in (MAX_DEPTH + 1, 100_000):
        with pytest.raises(SerializationError, match=f"more than {MAX_DEPTH} levels deep"):
            convert(nested(depth))
    looped: list = [1]
    looped.append(looped)
    with pytest.raises(SerializationError, match="contains itself"):
        convert(looped)
    mapping: dict = {}
    mapping["self"] = mapping
    with pytest.raises(SerializationError, match=r"\['self'\]"):
        convert(mapping)


@pytest.mark.parametrize("value", [b"raw", Opaque(), {"nested": [bytearray(b"x")]}, 1 + 2j])
def test_what_json_cannot_hold_raises_naming_the_type(value) -> None:
    with pytest.raises(WrongTypeError, match="bytes|cannot be converted to JSON") as caught:
        to_jsonable(value)
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, SerializationError)


def test_numpy_arrays_and_scalars() -> None:
    np = pytest.importorskip("numpy")
    value = {"array": np.array([[1.0, 2.5], [3.0, 4.5]]), "int": np.int64(3), "flag": np.bool_(True),
             "float32": np.float32(0.5), "labels": np.array(["a", "b"]), "empty": np.zeros((0, 2)),
             "objects": np.array([1, "a", None], dtype=object)}  # fmt: skip
    for convert in (to_jsonable, to_jsonable_input):
        converted = convert(value)
        assert converted == {"array": [[1.0, 2.5], [3.0, 4.5]], "int": 3, "flag": True, "float32": 0.5,
                             "labels": ["a", "b"], "empty": [], "objects": [1, "a", None]}  # fmt: skip
        assert type(converted["int"]) is int and type(converted["flag"]) is bool
        json.dumps(converted, allow_nan=False)
    with pytest.raises(SerializationError, match=r"value\['a'\]\[1\]\[0\] is nan"):
        to_jsonable({"a": np.array([[1.0, 2.0], [np.nan, 3.0]])})
    with pytest.raises(SerializationError, match=r"pipeline_input is inf"):
        to_jsonable_input(np.float32("inf"))
    # An array's dimensions count as levels too.
    assert to_jsonable(nested(MAX_DEPTH - 2, np.zeros((1, 1)))) == nested(MAX_DEPTH, 0.0)
    with pytest.raises(SerializationError, match="levels deep"):
        to_jsonable(nested(MAX_DEPTH - 1, np.zeros((1, 1))))


def test_pandas_frames_series_and_missing_values() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"x": [1, 2], "when": pd.to_datetime(["2024-01-01", None]), "y": [0.5, 1.5]})
    assert to_jsonable(frame) == [
        {"x": 1, "when": "2024-01-01T00:00:00", "y": 0.5},
        {"x": 2, "when": None, "y": 1.5},
    ]
    assert to_jsonable(pd.Series([1, 2], index=["a", "b"])) == [1, 2]
    assert to_jsonable(pd.Index(["a", "b"])) == ["a", "b"]
    assert to_jsonable(pd.NA) is None
    assert to_jsonable(pd.array([1, None], dtype="Int64")) == [1, None]
    # A float NaN is refused even in a frame: null would be a different value.
    with pytest.raises(SerializationError, match=r"value\[1\]\['y'\] is nan"):
        to_jsonable(pd.DataFrame({"y": [0.5, float("nan")]}))


# -- inputs: only what arrives unchanged ---------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None), (False, False), (-3, -3), ("é", "é"), (2.5, 2.5),
        ([1, (2, 3)], [1, [2, 3]]), ({"a": {"b": [None]}}, {"a": {"b": [None]}}),
        (Level.HIGH, 3), ({"level": Level.HIGH}, {"level": 3}),
        (collections.OrderedDict(a=1), {"a": 1}),
    ],
)  # fmt: skip
def test_inputs_json_carries_faithfully_are_sent(value, expected) -> None:
    converted = to_jsonable_input(value)
    assert converted == expected
    assert json.loads(json.dumps(converted, allow_nan=False)) == expected


@pytest.mark.parametrize(
    ("value", "place", "words"),
    [
        ({1, 2}, "pipeline_input", "is a set, which JSON cannot carry faithfully: it has no order"),
        ([frozenset()], "pipeline_input[0]", "frozenset"),
        ({"when": datetime.datetime(2024, 1, 1)}, "pipeline_input['when']", "datetime.datetime.*would get a str"),
        ([[datetime.date(2024, 1, 1)]], "pipeline_input[0][0]", "datetime.date"),
        (datetime.time(1), "pipeline_input", "datetime.time"),
        ([b"x"], "pipeline_input[0]", "is bytes"),
        ({1: "a"}, "pipeline_input", "has the key 1 \\(an int\\).*would get '1'"),
        ({"a": {(1, 2): 3}}, "pipeline_input['a']", "has the key \\(1, 2\\)"),
        (Color.RED, "pipeline_input", "Color.*would get its value 'red'"),
        ([Opaque()], "pipeline_input[0]", "Opaque, which cannot be converted to JSON"),
    ],
)
def test_inputs_json_would_change_are_refused_naming_the_place(value, place: str, words: str) -> None:
    with pytest.raises(WrongTypeError, match=words) as caught:
        to_jsonable_input(value)
    assert str(caught.value).startswith(f"{place} ")
    assert isinstance(caught.value, TypeError)


def test_numpy_and_pandas_inputs_that_would_change_are_refused() -> None:
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    for value, words in [
        (np.array(["2024-01-01"], dtype="datetime64[ns]"), "datetime64"),
        (np.array([b"a"]), "bytes"),
        (np.array([1 + 1j]), "complex"),
        (pd.DataFrame({"when": pd.to_datetime(["2024-01-01"])}), "Timestamp"),
        (pd.DataFrame([[1, 2]]), "has the key 0"),  # unnamed columns are ints
        (pd.DataFrame({"y": [1.0, float("nan")]}), "is nan"),
    ]:
        with pytest.raises(SerializationError, match=words):
            to_jsonable_input(value)
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    assert to_jsonable_input(frame) == [{"a": 1.0, "b": "x"}, {"a": 2.0, "b": "y"}]
    assert to_jsonable_input(pd.Series([1, 2])) == [1, 2]


# -- over HTTP -----------------------------------------------------------------------------
class NumpyOut(BaseOp):
    """Returns numpy and pandas values built from its input."""

    def execute(self, rows):
        import numpy as np
        import pandas as pd

        array = np.asarray(rows, dtype=float)
        return {"mean": array.mean(axis=0), "frame": pd.DataFrame(array, columns=["a", "b"]), "n": np.int32(len(array))}


class Returns(BaseOp):
    """Returns its input's ``"out"`` entry built into something JSON cannot hold as is."""

    def execute(self, kind):
        return {"object": object(), "nan": [1.0, float("nan")], "deep": nested(MAX_DEPTH + 5)}[kind]


def test_numpy_and_pandas_outputs_reach_the_client_as_json(kit, start_server) -> None:
    np = pytest.importorskip("numpy")
    pytest.importorskip("pandas")
    numeric = Pipeline([Node(NumpyOut(), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")],
                       "numeric")  # fmt: skip
    with kit.make_app([numeric]) as app:
        client = PipelinesClient(start_server(app).url)
        # Inputs are converted by the client too: a numpy array travels as nested lists.
        response = client.call_pipeline(numeric, np.array([[1.0, 2.0], [3.0, 6.0]]))
        assert response.value == {"mean": [2.0, 4.0], "frame": [{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 6.0}], "n": 2}
        assert response.to_json() == app.call_pipeline(numeric, [[1.0, 2.0], [3.0, 6.0]]).to_json()


@pytest.mark.parametrize(
    ("kind", "words"),
    [("object", "value is an object, which cannot be converted"), ("nan", r"value\[1\] is nan"),
     ("deep", f"more than {MAX_DEPTH} levels deep")],
)  # fmt: skip
def test_outputs_json_cannot_hold_answer_500_naming_the_place(kit, start_server, caplog, kind: str, words: str) -> None:
    returns = Pipeline([Node(Returns(), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")],
                       "returns")  # fmt: skip
    with kit.make_app([returns]) as app:
        client = PipelinesClient(start_server(app).url)
        with pytest.raises(SerializationError, match=words):
            client.call_pipeline(returns, kind)
        assert client.call_pipeline("add", 1).value == 2
    # The server's own failure is logged, briefly: no RecursionError, no page of frames.
    logged = [record for record in caplog.records if record.name == "chariots_waitress"]
    assert len(logged) == 1 and "RecursionError" not in caplog.text
    assert len(caplog.text) < 20_000


@pytest.mark.parametrize(
    "value", [{1, 2}, datetime.datetime(2024, 1, 1), b"x", {1: 2}, float("nan"), [math.inf], nested(MAX_DEPTH + 1)]
)
def test_the_client_refuses_unfaithful_inputs_before_sending(kit, start_server, value) -> None:
    seen: list[str] = []
    with kit.make_app() as app:
        from chariots_waitress import make_wsgi_app

        wsgi = make_wsgi_app(app)

        def recording(environ, start_response):
            seen.append(environ["PATH_INFO"])
            return wsgi(environ, start_response)

        client = PipelinesClient(start_server(recording).url)
        with pytest.raises(SerializationError, match="pipeline_input"):
            client.call_pipeline("add", value)
        assert seen == []  # nothing was sent
        assert client.call_pipeline("add", 1).value == 2
