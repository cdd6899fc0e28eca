"""Fixtures for the HTTP layer: small test ops, iris-like pipelines, and live waitress servers.

Every server is a real waitress server on a free port of 127.0.0.1, started on a thread by
``chariots_waitress.ServerThread`` (``waitress.create_server``) and stopped when the test ends.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator, Sequence
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("waitress")

from chariots_test_deploy import Remember  # noqa: E402

from chariots_core import BaseOp, Chariots, Node, Pipeline, VersionType  # noqa: E402
from chariots_core.ml import BaseMLOp, MLMode  # noqa: E402
from chariots_core.serving.workers import InProcessWorkerPool  # noqa: E402
from chariots_waitress import PipelinesClient, ServerThread, make_wsgi_app  # noqa: E402

# A small iris-like data set: three well separated classes of four features.
IRIS_X = [
    [5.1, 3.5, 1.4, 0.2], [4.9, 3.0, 1.4, 0.2], [4.7, 3.2, 1.3, 0.2],
    [7.0, 3.2, 4.7, 1.4], [6.4, 3.2, 4.5, 1.5], [6.9, 3.1, 4.9, 1.5],
    [6.3, 3.3, 6.0, 2.5], [5.8, 2.7, 5.1, 1.9], [7.1, 3.0, 5.9, 2.1],
]  # fmt: skip
IRIS_Y = [0, 0, 0, 1, 1, 1, 2, 2, 2]
IRIS_QUERY = [[5.0, 3.4, 1.5, 0.2], [6.7, 3.0, 4.6, 1.4], [6.8, 3.0, 5.8, 2.2]]
IRIS_EXPECTED = [0, 1, 2]


class IrisX(BaseOp):
    """Emits the features only."""

    def execute(self) -> list[list[float]]:
        return IRIS_X


class IrisFull(BaseOp):
    """Emits features and labels (two outputs)."""

    def execute(self) -> tuple[list[list[float]], list[int]]:
        return IRIS_X, IRIS_Y


class Centerer(BaseMLOp):
    """Learns the column means and subtracts them; retraining it is a MAJOR change."""

    training_update_version = VersionType.MAJOR

    def fit(self, x: list[list[float]]) -> None:
        self._model = [sum(column) / len(column) for column in zip(*x)]

    def predict(self, x: list[list[float]]) -> list[list[float]]:
        return [[value - mean for value, mean in zip(row, self._model)] for row in x]


class NearestMean(BaseMLOp):
    """Learns one mean per class and predicts the class of the nearest mean."""

    def fit(self, x: list[list[float]], y: list[int]) -> None:
        by_label: dict[int, list[list[float]]] = {}
        for row, label in zip(x, y):
            by_label.setdefault(label, []).append(row)
        self._model = {label: [sum(c) / len(c) for c in zip(*rows)] for label, rows in by_label.items()}

    def predict(self, x: list[list[float]]) -> list[int]:
        def distance(row: list[float], mean: list[float]) -> float:
            return sum((a - b) ** 2 for a, b in zip(row, mean))

        return [min(self._model, key=lambda label: distance(row, self._model[label])) for row in x]


class AddOne(BaseOp):
    """A trivial op: the input plus one."""

    def execute(self, value: Any) -> Any:
        return value + 1


class Pair(BaseOp):
    """Puts its two inputs in a list."""

    def execute(self, first: Any, second: Any) -> list[Any]:
        return [first, second]


INPUT, OUTPUT = "__pipeline_input__", "__pipeline_output__"


def iris_pipelines() -> list[Pipeline]:
    """Fresh train/predict pipelines (ops hold state, so each app needs its own)."""
    train_centerer = Pipeline(
        [Node(IrisX(), output_nodes="x"), Node(Centerer(MLMode.FIT), input_nodes=["x"])], "train_centerer"
    )
    train_model = Pipeline(
        [
            Node(IrisFull(), output_nodes=["x", "y"]),
            Node(Centerer(MLMode.PREDICT), input_nodes=["x"], output_nodes="x_centered"),
            Node(NearestMean(MLMode.FIT), input_nodes=["x_centered", "y"]),
        ],
        "train_model",
    )
    pred = Pipeline(
        [
            Node(Centerer(MLMode.PREDICT), input_nodes=[INPUT], output_nodes="x_centered"),
            Node(NearestMean(MLMode.PREDICT), input_nodes=["x_centered"], output_nodes=OUTPUT),
        ],
        "pred",
    )
    return [train_centerer, train_model, pred]


def add_pipeline() -> Pipeline:
    """``add``: its input plus one."""
    return Pipeline([Node(AddOne(), input_nodes=[INPUT], output_nodes=OUTPUT)], "add")


def pair_pipelines() -> list[Pipeline]:
    """``train_pair`` fits two models on the same input; ``pred_pair`` returns both models."""
    train = Pipeline(
        [
            Node(Remember(MLMode.FIT), input_nodes=[INPUT], name="first"),
            Node(Remember(MLMode.FIT), input_nodes=[INPUT], name="second"),
        ],
        "train_pair",
    )
    pred = Pipeline(
        [
            Node(Remember(MLMode.PREDICT), input_nodes=[INPUT], output_nodes="a", name="first"),
            Node(Remember(MLMode.PREDICT), input_nodes=[INPUT], output_nodes="b", name="second"),
            Node(Pair(), input_nodes=["a", "b"], output_nodes=OUTPUT),
        ],
        "pred_pair",
    )
    return [train, pred]


def make_app(extra: Sequence[Pipeline] = (), workers: int = 0) -> Chariots:
    """An app serving the iris, add and pair pipelines on memory storage."""
    pool = InProcessWorkerPool(workers) if workers else None
    pipelines = [*iris_pipelines(), add_pipeline(), *pair_pipelines(), *extra]
    return Chariots(pipelines, op_store="memory", saver="memory", worker_pool=pool)


@pytest.fixture
def kit() -> SimpleNamespace:
    """The helpers above, for test modules (which cannot import this conftest)."""
    return SimpleNamespace(
        make_app=make_app,
        iris_pipelines=iris_pipelines,
        add_pipeline=add_pipeline,
        pair_pipelines=pair_pipelines,
        query=IRIS_QUERY,
        expected=IRIS_EXPECTED,
    )


@pytest.fixture
def start_server() -> Iterator[Callable[..., ServerThread]]:
    """Start a waitress server for a Chariots app (or any WSGI callable); stopped at teardown."""
    servers: list[ServerThread] = []

    def start(app: Any, max_body_bytes: int | None = None, **options: Any) -> ServerThread:
        wsgi = app
        if isinstance(app, Chariots):
            wsgi = make_wsgi_app(app) if max_body_bytes is None else make_wsgi_app(app, max_body_bytes)
        server = ServerThread(wsgi, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def app() -> Iterator[Chariots]:
    """The served app, with a one-thread worker pool for asynchronous calls."""
    with make_app(workers=1) as chariots_app:
        yield chariots_app


@pytest.fixture
def server(app: Chariots, start_server: Callable[..., ServerThread]) -> ServerThread:
    """A live server for :func:`app`."""
    return start_server(app)


@pytest.fixture
def client(server: ServerThread) -> Iterator[PipelinesClient]:
    """A client of :func:`server`."""
    with PipelinesClient(server.url, timeout=30) as remote:
        yield remote


def send_raw(
    url: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, plain_ok: bool = False
) -> SimpleNamespace:
    """One HTTP request with http.client; ``body`` is bytes as is, or JSON-encoded otherwise.

    Returns ``status``, ``headers`` (lower-case names) and ``json`` (the parsed body; the test
    fails if the body is not JSON, unless ``plain_ok`` allows the plain-text refusals waitress
    writes itself, then ``json`` is ``None`` and ``text`` holds the body).
    """
    all_headers = dict(headers or {})
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode()
        all_headers.setdefault("Content-Type", "application/json")
    host = url.removeprefix("http://")
    connection = http.client.HTTPConnection(host, timeout=30)
    try:
        connection.request(method, path, body, all_headers)
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    response_headers = {name.lower(): value for name, value in response.getheaders()}
    text = raw.decode("utf-8", "replace")
    if plain_ok and response_headers.get("content-type", "").startswith("text/plain"):
        assert "(generated by waitress)" in text, text[:200]
        return SimpleNamespace(status=response.status, headers=response_headers, json=None, text=text)
    assert response_headers.get("content-type") == "application/json", raw[:200]
    return SimpleNamespace(status=response.status, headers=response_headers, json=json.loads(raw), text=text)


@pytest.fixture
def send() -> Callable[..., SimpleNamespace]:
    """:func:`send_raw`, for servers other than :func:`server`."""
    return send_raw


@pytest.fixture
def raw(server: ServerThread) -> Callable[..., SimpleNamespace]:
    """``raw(method, path, body=None, headers=None)`` against :func:`server` (see send_raw)."""

    def request(
        method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, plain_ok: bool = False
    ) -> SimpleNamespace:
        return send_raw(server.url, method, path, body, headers, plain_ok)

    return request
