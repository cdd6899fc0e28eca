"""Malformed, hostile and random requests: always a 4xx JSON answer, and a server still up."""

from __future__ import annotations

import http.client
import json
import random
import errno
import socket
from urllib.parse import quote

import pytest

from chariots_core.errors import ChariotsError

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


def test_body_over_the_limit_answers_413(kit, start_server, send) -> None:
    with kit.make_app() as small_app:
        url = start_server(small_app, max_body_bytes=1000).url
        big = json.dumps({"pipeline_input": "x" * 2000}).encode()
        answer = send(url, "POST", "/pipelines/add/main", big)
        assert_error(answer, 413)
        assert "1000" in answer.json["error"]["message"]
        assert send(url, "POST", "/pipelines/add/main", {"pipeline_input": 1}).json["value"] == 2


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
    kind = rng.randrange(6)
    junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
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


def test_a_thousand_random_malformed_requests_all_answer_4xx_json(raw) -> None:
    rng = random.Random(20240607)
    statuses: dict[int, int] = {}
    for _ in range(1000):
        method, path, body, headers = random_request(rng)
        answer = raw(method, path, body, headers)
        assert 400 <= answer.status < 500, (method, path, body, answer.json)
        assert set(answer.json["error"]) >= {"type", "message"}
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
    assert set(statuses) == {400, 404, 405}
    assert_still_healthy(raw)


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
        answer = json.loads(response.read())
        connection.close()
    assert response.status == status
    if status == 200:
        assert answer["value"] == 6
    else:
        assert answer["error"]["type"] == "RequestError"


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
