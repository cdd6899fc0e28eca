"""Malformed, hostile and random requests: always a 4xx JSON answer, and a server still up."""

from __future__ import annotations

import errno
import http.client
import json
import random
import socket
from urllib.parse import quote

import pytest

from chariots_core import BaseOp, Node, Pipeline
from chariots_core.errors import ChariotsError
from chariots_core.serving.jsonsafe import MAX_DEPTH
from chariots_waitress import PipelinesClient, RequestError, make_wsgi_app


class Echo(BaseOp):
    """Returns its input."""

    def execute(self, value):
        return value


def echo_pipeline() -> Pipeline:
    return Pipeline([Node(Echo(), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")], "echo")


ROUTES = {
    "/pipelines/add/main": "POST",
    "/pipelines/add/versions": "GET",
    "/pipelines/add/load": "POST",
    "/pipelines/add/save": "POST",
    "/pipelines/add/health_check": "GET",
    "/health_check": "GET",
    "/available_pipelines": "GET",
    "/jobs/fetch/": "POST",
    "/jobs/fetch/abc": "GET",
}


def assert_error(answer, status: int, error_type: str = "RequestError") -> None:
    assert answer.status == status, answer.json
    assert answer.json["error"]["type"] == error_type
    assert answer.json["error"]["message"]


def assert_still_healthy(raw) -> None:
    assert raw("GET", "/health_check").status == 200
    assert raw("POST", "/pipelines/add/main", {"pipeline_input": 1}).json["value"] == 2


@pytest.mark.parametrize("body", [b"{", b"{'pipeline_input': 1}", b"\xff\xfe\x00", b'{"pipeline_input": NaN}',
                                  b"[" * 100_000])  # fmt: skip
def test_malformed_json_answers_400(raw, body: bytes) -> None:
    answer = raw("POST", "/pipelines/add/main", body, {"Content-Type": "application/json"})
    assert_error(answer, 400)
    assert "JSON" in answer.json["error"]["message"]


def nested_body(depth: int, opener: bytes = b"[") -> bytes:
    """A request whose pipeline input nests ``depth`` arrays (or objects, with ``{``)."""
    inner = b"[" * depth + b"]" * depth if opener == b"[" else b'{"k":' * depth + b"1" + b"}" * depth
    return b'{"pipeline_input": ' + inner + b"}"


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 600, 5_000, 1_000_000])
@pytest.mark.parametrize("opener", [b"[", b"{"])
def test_nesting_beyond_the_limit_answers_400_naming_it_without_a_traceback(raw, caplog, depth, opener) -> None:
    answer = raw("POST", "/pipelines/add/main", nested_body(depth, opener), {"Content-Type": "application/json"})
    assert_error(answer, 400)
    assert f"at most {MAX_DEPTH}" in answer.json["error"]["message"]
    assert not [record for record in caplog.records if record.levelname == "ERROR"]
    assert_still_healthy(raw)


def test_nesting_at_the_limit_is_served_and_brackets_in_strings_do_not_count(kit, start_server, send) -> None:
    with kit.make_app([echo_pipeline()]) as app:
        url = start_server(app).url
        at_limit = send(
            url, "POST", "/pipelines/echo/main", nested_body(MAX_DEPTH), {"Content-Type": "application/json"}
        )
        assert at_limit.status == 200
        assert json.dumps(at_limit.json["value"]).count("[") == MAX_DEPTH
        # Brackets inside strings (escaped quotes and backslashes included) are text, not nesting.
        texts = ["[" * 5000, '\\"[[[', "]" * 300 + '"{' * 300, "\\" * 10 + "[" * 200]
        answer = send(url, "POST", "/pipelines/echo/main", {"pipeline_input": [[texts]]})
        assert (answer.status, answer.json["value"]) == (200, [[texts]])
        # ... but a string cannot hide real nesting.
        hidden = b'{"pipeline_input": ["]]]]", ' + b"[" * 200 + b"]" * 200 + b"]}"
        assert_error(send(url, "POST", "/pipelines/echo/main", hidden, {"Content-Type": "application/json"}), 400)


@pytest.mark.parametrize(
    "number",
    [b"1e999", b"-1e999", b"1E400", b"1e+309", b"NaN", b"Infinity", b"-Infinity", b"[1.5, NaN]",
     b'{"a": 2e308}', b"1" + b"0" * 400 + b".0", b"1" + b"0" * 250 + b"e99", b"0.5e0000000400"],
)  # fmt: skip
def test_non_finite_numbers_answer_400(raw, caplog, number: bytes) -> None:
    answer = raw("POST", "/pipelines/add/main", b'{"pipeline_input": ' + number + b"}",
                 {"Content-Type": "application/json"})  # fmt: skip
    assert_error(answer, 400)
    assert "finite" in answer.json["error"]["message"] or "NaN" in answer.json["error"]["message"]
    assert not [record for record in caplog.records if record.levelname == "ERROR"]


def test_large_finite_numbers_and_lookalike_strings_are_accepted(kit, start_server, send) -> None:
    with kit.make_app([echo_pipeline()]) as app:
        url = start_server(app).url
        body = (b'{"pipeline_input": [1e308, -1.7976931348623157e308, 1e-400, 12e99, "1e999", "NaN", '
                b"1" + b"0" * 300 + b", 0." + b"0" * 300 + b"1e305]}")  # fmt: skip
        answer = send(url, "POST", "/pipelines/echo/main", body, {"Content-Type": "application/json"})
        assert answer.status == 200, answer.json
        assert answer.json["value"] == [1e308, -1.7976931348623157e308, 0.0, 12e99, "1e999", "NaN", 10**300, 1e4]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "application/python-pickle"])  # fmt: skip
def test_wrong_content_type_answers_400(raw, content_type) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    answer = raw("POST", "/pipelines/add/main", b'{"pipeline_input": 1}', headers)
    assert_error(answer, 400)
    assert "application/json" in answer.json["error"]["message"]


def test_json_with_a_charset_is_accepted(raw) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    answer = raw("POST", "/pipelines/add/main", b'{"pipeline_input": 1}', headers)
    assert answer.json["value"] == 2


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/pipelines/add/main", [1, 2], "JSON object"),
        ("/pipelines/add/main", {"input": 1}, "'input'"),
        ("/pipelines/add/main", {"use_worker": "yes"}, "use_worker"),
        ("/pipelines/add/load", {"strategy": 3}, "strategy"),
        ("/pipelines/add/save", {"force": True}, "'force'"),
        ("/jobs/fetch/", {}, "job_id"),
        ("/jobs/fetch/", {"job_id": 7}, "job_id"),
        ("/jobs/fetch/", {"job_id": "abc", "pipeline": 1}, "pipeline"),
    ],
)
def test_wrong_input_answers_400_saying_what_is_wrong(raw, path: str, body, words: str) -> None:
    answer = raw("POST", path, body)
    assert_error(answer, 400)
    assert words in answer.json["error"]["message"]


def test_an_unknown_strategy_answers_400_with_the_apps_error(raw, app) -> None:
    with pytest.raises(ChariotsError) as in_process:
        app.load_pipeline("pred", strategy="newest")
    assert_error(raw("POST", "/pipelines/pred/load", {"strategy": "newest"}), 400, type(in_process.value).__name__)


def read_reply(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    reply = b""
    while chunk := sock.recv(65536):
        reply += chunk
    return reply


def test_a_body_declared_over_the_limit_is_refused_from_its_headers_before_it_is_sent(kit, start_server, send) -> None:
    with kit.make_app() as small_app:
        server = start_server(small_app, max_body_bytes=1000)
        for length in (1001, 10**12):
            with socket.create_connection((server.host, server.port), timeout=10) as sock:
                # Only the headers: an answer now proves the body was never waited for.
                sock.sendall(b"POST /pipelines/add/main HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n" % length)  # fmt: skip
                reply = read_reply(sock)
            assert reply.startswith(b"HTTP/1.1 413 "), reply[:200]
        # At the limit exactly, the body is read and run.
        body = json.dumps({"pipeline_input": "x" * (1000 - 22)}).encode()
        assert len(body) == 1000
        answer = send(server.url, "POST", "/pipelines/add/main", body, {"Content-Type": "application/json"})
        assert answer.status == 500 and answer.json["error"]["node"] == "addone"  # "x..." + 1 fails in the op
        assert send(server.url, "POST", "/pipelines/add/main", {"pipeline_input": 1}).json["value"] == 2


def test_the_client_gets_a_request_error_for_a_body_over_the_limit(kit, start_server) -> None:
    with kit.make_app() as small_app:
        client = PipelinesClient(start_server(small_app, max_body_bytes=1000).url)
        for size in (2_000, 5_000_000):  # the larger one is refused while it is being sent
            sent = len(json.dumps({"pipeline_input": "x" * size, "use_worker": None}))
            with pytest.raises(
                RequestError, match=f"refused before it was read: the request body has {sent} bytes"
            ) as caught:
                client.call_pipeline("add", "x" * size)
            assert caught.value.status == 413
        assert client.call_pipeline("add", 1).value == 2


class CountingInput:
    """A wsgi.input that records how many bytes the app read from it."""

    def __init__(self, stream) -> None:
        self.stream, self.read_bytes = stream, 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.read_bytes += len(data)
        return data


@pytest.mark.parametrize("declared", [True, False])
def test_on_servers_that_do_not_know_the_limit_the_app_stops_reading_at_it(kit, start_server, send, declared) -> None:
    """A server without waitress's limit (the app wrapped), with the length declared, or not
    (a chunked body streamed as it comes): the app reads nothing, or one byte past the limit."""
    inputs: list[CountingInput] = []
    with kit.make_app() as small_app:
        wsgi = make_wsgi_app(small_app, max_body_bytes=1000)

        def server_without_the_limit(environ, start_response):
            environ["wsgi.input"] = counting = CountingInput(environ["wsgi.input"])
            inputs.append(counting)
            if not declared:
                del environ["CONTENT_LENGTH"]
            return wsgi(environ, start_response)

        url = start_server(server_without_the_limit).url
        answer = send(url, "POST", "/pipelines/add/main", {"pipeline_input": "x" * 50_000})
        assert_error(answer, 413)
        assert "at most 1000 bytes" in answer.json["error"]["message"]
        assert inputs[-1].read_bytes == (0 if declared else 1001)
        assert send(url, "POST", "/pipelines/add/main", {"pipeline_input": 41}).json["value"] == 42


def test_unknown_pipeline_answers_404_for_every_pipeline_route(raw) -> None:
    for route, method in ROUTES.items():
        if route.startswith("/pipelines/add/"):
            answer = raw(method, route.replace("/add/", "/nope/"))
            assert_error(answer, 404, "UnknownPipelineError")
            assert "'nope'" in answer.json["error"]["message"]


@pytest.mark.parametrize("path", ["/pipelines", "/pipelines/add", "/pipelines/add/predict",
                                  "/pipelines/add/main/extra", "/jobs", "/jobs/fetch/a/b", "/admin"])  # fmt: skip
def test_unknown_routes_answer_404(raw, path: str) -> None:
    assert_error(raw("GET", path), 404)


@pytest.mark.parametrize(("route", "method"), ROUTES.items())
def test_wrong_method_answers_405_with_an_allow_header(raw, route: str, method: str) -> None:
    wrong = {"GET": "POST", "POST": "GET"}[method]
    for attempt in (wrong, "PUT", "DELETE"):
        answer = raw(attempt, route)
        assert_error(answer, 405)
        assert answer.headers["allow"] == method


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/pipelines/../main", 400),
        ("/pipelines/%2e%2e/main", 400),
        ("/pipelines/./versions", 400),
        ("/pipelines/..%2f..%2fetc%2fpasswd/load", 404),
        ("/pipelines/%2e%2e%2f%2e%2e%2fetc/save", 404),
        ("/pipelines/..%5c..%5cwindows/main", 404),
        ("/pipelines/%00/main", 400),
        ("/pipelines/add%0d%0aX-Injected:%201/main", 400),
        ("/pipelines/%ff%fe/main", 400),
        ("/jobs/fetch/..", 400),
        ("/jobs/fetch/%2e%2e%2f%2e%2e%2fetc%2fpasswd", 404),
    ],
)
def test_path_traversal_and_odd_names_are_refused_without_touching_files(raw, app, path: str, status: int) -> None:
    method = "GET" if path.endswith(("versions",)) or path.startswith("/jobs/fetch/") else "POST"
    answer = raw(method, path)
    assert answer.status == status
    assert answer.json["error"]["type"] in ("RequestError", "UnknownPipelineError")
    assert "x-injected" not in answer.headers
    assert app.health_check()["loaded"] == []


def random_request(rng: random.Random) -> tuple[str, str, bytes | None, dict[str, str]]:
    """A well-formed HTTP request that the app must refuse (each branch is invalid by design)."""
    kind = rng.randrange(9)
    junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
    json_type = {"Content-Type": "application/json"}
    if kind == 6:  # nested deeper than the limit, arrays and objects mixed
        depth = rng.choice([MAX_DEPTH + 1, MAX_DEPTH + 2, rng.randrange(MAX_DEPTH + 1, 100_000)])
        openers = [rng.choice([b"[", b'{"k":']) for _ in range(depth)]
        closers = [b"]" if opener == b"[" else b"}" for opener in reversed(openers)]
        inner = b"".join(openers) + b"0" + b"".join(closers)
        return "POST", "/pipelines/add/main", b'{"pipeline_input": ' + inner + b"}", json_type
    if kind == 7:  # a number JSON cannot hold, somewhere in a valid structure
        number = rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-2.5E400", b"9" * 400 + b".5",
                             b"1" + b"0" * rng.randrange(210, 400) + b"e99"])  # fmt: skip
        items = [b"1", b'"a"', b"[2.5]", number]
        rng.shuffle(items)
        return "POST", "/pipelines/add/main", b'{"pipeline_input": [' + b", ".join(items) + b"]}", json_type
    if kind == 8:  # a body over the limit
        body = json.dumps({"pipeline_input": "x" * rng.randrange(FUZZ_LIMIT, 4 * FUZZ_LIMIT)}).encode()
        return "POST", rng.choice([route for route, method in ROUTES.items() if method == "POST"]), body, json_type
    if kind == 0:  # a path no route matches
        segments = [quote(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8))), safe="")
                    for _ in range(rng.randrange(1, 6))]  # fmt: skip
        return rng.choice(["GET", "POST"]), "/x" + "/".join(segments), None, {}
    if kind == 1:  # a real route with a method it does not take
        route, method = rng.choice(list(ROUTES.items()))
        other = rng.choice([m for m in ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE") if m != method])
        return other, route, None, {}
    post_routes = [route for route, method in ROUTES.items() if method == "POST"]
    route = rng.choice(post_routes)
    if kind == 2:  # a body that is not JSON: an object that is never closed
        return "POST", route, b"{" + junk.replace(b"}", b""), {"Content-Type": "application/json"}
    if kind == 3:  # JSON that is not an object, or an object with keys no route takes
        body = rng.choice([json.dumps(rng.random()), json.dumps([junk.hex()]), json.dumps({"k" + junk.hex(): 1})])
        return "POST", route, body.encode(), {"Content-Type": "application/json"}
    if kind == 4:  # a body of the wrong content type
        content_type = rng.choice(["text/plain", "application/octet-stream", "multipart/form-data", "image/png"])
        return "POST", route, junk, {"Content-Type": content_type}
    # a pipeline that does not exist, named with random printable characters
    name = "".join(rng.choice("abcdefghij-_.~!$&'()*+,;=:@") for _ in range(rng.randrange(3, 12)))
    return "POST", f"/pipelines/zz{quote(name, safe='')}/main", None, {}


FUZZ_LIMIT = 4096


def test_a_thousand_random_malformed_requests_all_answer_4xx_without_a_traceback(
    app, start_server, send, caplog
) -> None:
    url = start_server(app, max_body_bytes=FUZZ_LIMIT).url
    rng = random.Random(20240607)
    statuses: dict[int, int] = {}
    for _ in range(1000):
        method, path, body, headers = random_request(rng)
        answer = send(url, method, path, body, headers, plain_ok=True)
        assert 400 <= answer.status < 500, (method, path, body[:200] if body else body, answer.text[:300])
        if answer.json is None:  # waitress refused the body from its headers, before the app
            assert answer.status == 413, answer.text
        else:
            assert set(answer.json["error"]) >= {"type", "message"}
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
    assert set(statuses) == {400, 404, 405, 413}
    assert not [record for record in caplog.records if record.levelname in ("ERROR", "CRITICAL")]
    assert send(url, "GET", "/health_check").status == 200
    assert send(url, "POST", "/pipelines/add/main", {"pipeline_input": 1}).json["value"] == 2


@pytest.mark.parametrize(
    "garbage",
    [b"\x00\x01\x02\r\n\r\n", b"GET\r\n\r\n", b"POST /pipelines/add/main HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
     b"GET /health_check HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
     b"POST /pipelines/add/main HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
     b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 50_000 + b"\r\n"],
)  # fmt: skip
def test_broken_http_framing_is_refused_and_the_server_survives(server, raw, garbage: bytes) -> None:
    reply = b""
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        try:
            sock.sendall(garbage)
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                reply += chunk
        except (ConnectionResetError, BrokenPipeError, OSError) as exc:
            # waitress may drop a connection it refuses before reading all of it; then our
            # send, shutdown or read fails: reset, broken pipe, or "not connected" (ENOTCONN).
            assert isinstance(exc, (ConnectionResetError, BrokenPipeError)) or exc.errno == errno.ENOTCONN
    # waitress itself answers broken HTTP (before the app sees it), in plain text.
    if reply:
        status = reply.partition(b"\r\n")[0].split(b" ")[1]
        assert status[:1] == b"4" or status == b"501", reply[:200]
    assert_still_healthy(raw)


@pytest.mark.parametrize(("pieces", "status"), [([b'{"pipeline_', b'input": 5}'], 200),
                                                ([b'{"pipeline_input": "', b"x" * 2000, b'"}'], 413)])  # fmt: skip
def test_chunked_bodies_are_read_and_held_to_the_same_limit(kit, start_server, pieces, status: int) -> None:
    with kit.make_app() as small_app:
        server = start_server(small_app, max_body_bytes=1000)
        connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
        headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
        connection.request("POST", "/pipelines/add/main", iter(pieces), headers, encode_chunked=True)
        response = connection.getresponse()
        raw = response.read()
        connection.close()
    assert response.status == status
    if status == 200:
        assert json.loads(raw)["value"] == 6
    else:
        assert b"exceeds max_body" in raw  # waitress stopped reading at the limit


def test_traversal_names_never_reach_the_files_of_a_disk_backed_app(kit, start_server, send, tmp_path) -> None:
    pytest.importorskip("chariots_lmdb")
    pytest.importorskip("chariots_fsspec")
    from chariots_core import Chariots

    data = tmp_path / "data"
    with Chariots(kit.iris_pipelines(), path=data) as disk_app:
        url = start_server(disk_app).url
        send(url, "POST", "/pipelines/train_centerer/main")
        assert send(url, "POST", "/pipelines/train_centerer/save").status == 200
        before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
        for name in ["..", "%2e%2e", "..%2f..%2f..%2ftmp", "%2fetc%2fpasswd", "data", "store", "blobs"]:
            for action in ("save", "load", "main"):
                answer = send(url, "POST", f"/pipelines/{name}/{action}")
                assert answer.status in (400, 404), (name, action, answer.json)
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
