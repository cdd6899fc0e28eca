"""PipelinesClient and the servers: connection failures, odd servers, threads, and serve()."""

from __future__ import annotations

import inspect
import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterable
from typing import Any

import pytest
from chariots_test_processes import free_port

from chariots_core import BaseOp, Node, Pipeline
from chariots_core.errors import ChariotsError, ConfigError, UnknownPipelineError
from chariots_waitress import (
    PipelinesClient,
    RequestError,
    ServeError,
    ServerThread,
    ServerUnavailableError,
    make_wsgi_app,
)



def test_connection_refused_says_to_start_the_server() -> None:
    client = PipelinesClient(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ServerUnavailableError, match=r"no Chariots server is listening.*serve\(") as caught:
        client.available_pipelines()
    assert isinstance(caught.value, ChariotsError) and isinstance(caught.value, ConnectionError)


class Sleep(BaseOp):
    def execute(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds


def test_a_server_slower_than_the_timeout_raises_server_unavailable(kit, start_server) -> None:
    sleepy = Pipeline([Node(Sleep(), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")], "sleepy")
    with kit.make_app([sleepy]) as app:
        client = PipelinesClient(start_server(app).url, timeout=0.05)
        with pytest.raises(ServerUnavailableError, match="no answer within 0.05 s"):
            client.call_pipeline(sleepy, 0.5)
        # The timed-out connection was dropped; the next call starts afresh.
        client.timeout = 30
        assert client.call_pipeline(sleepy, 0).value == 0


def plain_text_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not here"]


def foreign_error_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("500 Internal Server Error", [("Content-Type", "application/json")])
    return [json.dumps({"error": {"type": "FluxCapacitorError", "message": "out of plutonium"}}).encode()]


def json_without_error_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("502 Bad Gateway", [("Content-Type", "application/json")])
    return [b'{"detail": "upstream down"}']


@pytest.mark.parametrize(
    ("wsgi_app", "words"),
    [
        (plain_text_app, "not JSON.*is it a Chariots server"),
        (foreign_error_app, "FluxCapacitorError: out of plutonium"),
        (json_without_error_app, "HTTP 502 without a Chariots error body"),
    ],
)
def test_answers_from_other_servers_raise_a_plain_chariots_error(start_server, wsgi_app, words: str) -> None:
    client = PipelinesClient(start_server(wsgi_app).url)
    with pytest.raises(ChariotsError, match=words) as caught:
        client.health_check()
    assert type(caught.value) is ChariotsError


def test_arguments_the_server_refuses_raise_request_error_with_the_status(client) -> None:
    with pytest.raises(RequestError, match="use_worker") as caught:
        client.call_pipeline("add", 1, use_worker="yes")
    assert caught.value.status == 400
    with pytest.raises(RequestError, match="strategy"):
        client.load_pipeline("pred", strategy=3)


def test_pipeline_references_that_are_not_names_raise_like_the_app(app, client) -> None:
    with pytest.raises(UnknownPipelineError):
        app.call_pipeline(42)
    with pytest.raises(UnknownPipelineError):
        client.call_pipeline(42)


@pytest.mark.parametrize("url", ["127.0.0.1:5000", "ftp://host/", "http://", "not a url"])
def test_a_bad_backend_url_is_refused_at_construction(url: str) -> None:
    with pytest.raises(ChariotsError, match="backend_url"):
        PipelinesClient(url)


def test_names_with_dots_and_dashes_reach_their_pipeline(kit, start_server) -> None:
    odd = Pipeline([Node(Sleep(), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")],
                   "iris.v2-sleep_0")  # fmt: skip
    with kit.make_app([odd]) as app:
        client = PipelinesClient(start_server(app).url)
        assert client.call_pipeline(odd, 0).value == 0
        assert client.pipeline_versions("iris.v2-sleep_0") == app.pipeline_versions(odd)
        with pytest.raises(UnknownPipelineError, match="prédiction n°1"):
            client.call_pipeline("prédiction n°1 (v2)", 0)


def test_an_app_mounted_below_a_url_prefix(app, start_server) -> None:
    server = start_server(app, url_prefix="/api/v1")
    client = PipelinesClient(server.url + "/api/v1/")
    assert client.call_pipeline("add", 1).value == 2
    with pytest.raises(RequestError) as caught:
        PipelinesClient(server.url + "/api/v1/pipelines").health_check()
    assert caught.value.status == 404


def test_the_client_reconnects_when_the_server_closed_its_idle_connection(app) -> None:
    first = ServerThread(make_wsgi_app(app))
    client = PipelinesClient(first.url)
    try:
        assert client.call_pipeline("add", 1).value == 2
    finally:
        first.stop()
    # A new server on the same port: the connection the client kept alive is dead now.
    with ServerThread(make_wsgi_app(app), port=first.port):
        assert client.call_pipeline("add", 2).value == 3
    client.close()


def test_one_client_shared_by_threads_keeps_one_connection_per_thread(app, start_server) -> None:
    wsgi = make_wsgi_app(app)
    client_ports: set[str] = set()

    def recording_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        client_ports.add(environ["REMOTE_PORT"])  # one client port per TCP connection
        return wsgi(environ, start_response)

    client = PipelinesClient(start_server(recording_app).url)
    results: dict[int, list[int]] = {}

    def work(worker: int) -> None:
        results[worker] = [client.call_pipeline("add", worker * 100 + i).value for i in range(25)]

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.close()
    assert results == {worker: [worker * 100 + i + 1 for i in range(25)] for worker in range(6)}
    assert len(client_ports) == 6  # 150 calls over 6 kept-alive connections


def test_loading_while_calling_never_serves_a_half_loaded_pipeline(client) -> None:
    """pred_pair returns its two models; every training gives both the same value, so a
    pipeline with one op swapped and not the other would answer a mismatched pair."""
    client.call_pipeline("train_pair", 0)
    client.save_pipeline("train_pair")
    client.load_pipeline("pred_pair")
    done = threading.Event()
    answers: list[list[int]] = []
    failures: list[BaseException] = []

    def call_repeatedly() -> None:
        try:
            while not done.is_set():
                answers.append(client.call_pipeline("pred_pair").value)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    callers = [threading.Thread(target=call_repeatedly) for _ in range(3)]
    for caller in callers:
        caller.start()
    try:
        for generation in range(1, 31):
            client.call_pipeline("train_pair", generation)
            client.save_pipeline("train_pair")
            assert set(client.load_pipeline("pred_pair")) == {"first", "second"}
    finally:
        done.set()
        for caller in callers:
            caller.join()
    assert not failures
    assert answers and all(first == second for first, second in answers)
    assert client.call_pipeline("pred_pair").value == [30, 30]


def test_serve_runs_the_app_on_waitress_until_stopped(tmp_path) -> None:
    port = free_port()
    script = tmp_path / "serve_app.py"
    script.write_text(textwrap.dedent(f"""
        from chariots_core import BaseOp, Chariots, Node, Pipeline
        from chariots_waitress import serve

        class Double(BaseOp):
            def execute(self, value):
                return 2 * value

        pipeline = Pipeline([Node(Double(), input_nodes=["__pipeline_input__"],
                                  output_nodes="__pipeline_output__")], "double")
        serve(Chariots([pipeline], op_store="memory", saver="memory"), port={port}, threads=2, max_body_bytes=1000)
    """))
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        client = PipelinesClient(f"http://127.0.0.1:{port}", timeout=10)
        deadline = time.monotonic() + 30
        while True:
            try:
                assert client.available_pipelines() == ["double"]
                break
            except ServerUnavailableError:
                assert process.poll() is None, process.stdout.read().decode()
                assert time.monotonic() < deadline, "serve() never answered"
                time.sleep(0.05)
        assert client.call_pipeline("double", 21).value == 42
        # serve() handed its body limit to waitress, which refuses from the headers.
        with pytest.raises(RequestError, match="refused before it was read") as caught:
            client.call_pipeline("double", "x" * 1000)
        assert caught.value.status == 413
        assert client.call_pipeline("double", "x" * 900).value == "x" * 1800
        client.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()
    assert process.returncode is not None


def test_make_wsgi_app_checks_its_arguments(app) -> None:
    with pytest.raises(ChariotsError, match="'app' must be a chariots_core.Chariots"):
        make_wsgi_app(lambda environ, start_response: [])
    with pytest.raises(ChariotsError, match="max_body_bytes"):
        make_wsgi_app(app, max_body_bytes=-1)


def test_a_busy_port_or_a_bad_option_fails_to_start_with_a_chariots_error(app, server) -> None:
    with pytest.raises(ServeError, match=f"cannot listen on 127.0.0.1:{server.port}.*port=") as caught:
        ServerThread(make_wsgi_app(app), port=server.port)
    assert isinstance(caught.value, OSError)
    with pytest.raises(ConfigError, match="invalid waitress option.*'no_such_option'"):
        ServerThread(make_wsgi_app(app), no_such_option=1)


def test_a_request_on_a_connection_closed_under_it_is_sent_again_once() -> None:
    """A server that drops each connection on its second request without answering (what an
    idle-timeout close racing the request looks like): the client resends on a fresh one."""
    listener = socket.create_server(("127.0.0.1", 0))
    answer = b'{"pipelines": ["p"]}'
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(answer)
    reply = head + answer
    requests_seen: list[int] = []

    def serve_connections() -> None:
        for _ in range(2):
            connection, _ = listener.accept()
            with connection:
                for number in (1, 2):
                    data = b""
                    while b"\r\n\r\n" not in data:
                        data += connection.recv(65536)
                    requests_seen.append(number)
                    if number == 2:
                        break  # close without answering
                    connection.sendall(reply)

    thread = threading.Thread(target=serve_connections, daemon=True)
    thread.start()
    client = PipelinesClient(f"http://127.0.0.1:{listener.getsockname()[1]}")
    try:
        assert client.available_pipelines() == ["p"]
        assert client.available_pipelines() == ["p"]  # dropped, then resent on a new connection
    finally:
        client.close()
        listener.close()
    assert requests_seen[:3] == [1, 2, 1]


def test_the_client_calls_where_serve_listens_by_default() -> None:
    from chariots_waitress import DEFAULT_PORT, serve

    assert DEFAULT_PORT == 8080
    assert inspect.signature(serve).parameters["port"].default == DEFAULT_PORT
    assert PipelinesClient().backend_url == f"http://127.0.0.1:{DEFAULT_PORT}"


def test_a_waitress_option_for_the_body_limit_is_refused_in_favour_of_max_body_bytes(app) -> None:
    with pytest.raises(ConfigError, match="max_body_bytes"):
        ServerThread(make_wsgi_app(app), max_request_body_size=10)
