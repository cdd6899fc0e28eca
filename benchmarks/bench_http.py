"""HTTP throughput and latency of Chariots on waitress against a bare WSGI floor and Flask.

Three WSGI apps run on waitress (4 threads each), each in a server process of its own, so
that neither the load generator nor another contender shares its GIL or CPU account:

- ``floor``: a bare WSGI callable answering a constant JSON body, the most waitress can do;
- ``chariots``: ``make_wsgi_app(app)`` running a trivial one-op pipeline (``x + 1``);
- ``flask``: a Flask app with the same route, running the same pipeline through the same
  ``Chariots`` app (what chariots 0.2's Flask server did), when Flask is installed.

Each is sent ``POST /pipelines/add/main`` with ``{"pipeline_input": 1}`` over persistent
http.client connections by 1 and by 4 client threads; the contenders take turns within each
repeat. Reported: requests/s (median over repeats), p50/p99 latency over all requests, and
the server process's CPU time per request (read from /proc on Linux; on a shared machine it
is steadier than throughput).
One more row measures ``PipelinesClient`` end to end against the Chariots server.
Targets: chariots >= 0.7x the floor's throughput, and faster than Flask.

Run: ``python benchmarks/bench_http.py [--requests 1500] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from chariots_core import BaseOp, Chariots, Node, Pipeline

THREADS = 4
TARGET_VS_FLOOR = 0.7
BODY = json.dumps({"pipeline_input": 1}).encode()
PATH = "/pipelines/add/main"


class AddOneOp(BaseOp):
    """The trivial op of the served pipeline."""

    def execute(self, value: int) -> int:
        return value + 1


def trivial_app() -> Chariots:
    """An app serving ``add``: one op, memory storage."""
    node = Node(AddOneOp(), input_nodes=["__pipeline_input__"], output_nodes="__pipeline_output__")
    pipeline = Pipeline([node], "add")
    return Chariots([pipeline], op_store="memory", saver="memory")


def floor_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The floor: read the body, answer a constant JSON body."""
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    body = b'{"value":2}'
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def flask_app(app: Chariots) -> Any:
    """The peer: the same route in Flask, running the pipeline through the same app."""
    import flask

    server = flask.Flask("bench_http")

    @server.post("/pipelines/<name>/main")
    def main(name: str) -> Any:
        payload = flask.request.get_json()
        response = app.call_pipeline(name, payload.get("pipeline_input"), payload.get("use_worker"))
        return flask.jsonify(response.to_json())

    return server


def serve_contender(name: str) -> None:
    """Server-process side: serve one contender, print its port, run until stdin closes."""
    from chariots_waitress import ServerThread, make_wsgi_app

    # Four busy client threads keep waitress's queue non-empty; its warning about that is noise here.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    wsgi = {"floor": lambda: floor_app, "chariots": lambda: make_wsgi_app(trivial_app()),
            "flask": lambda: flask_app(trivial_app())}[name]()  # fmt: skip
    server = ServerThread(wsgi, threads=THREADS)
    print(server.port, flush=True)
    sys.stdin.read()
    server.stop()


def start_contender(name: str) -> tuple[subprocess.Popen, int]:
    """Start one contender in its own process (so each has its own GIL and CPU account)."""
    process = subprocess.Popen([sys.executable, __file__, "--serve", name], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)  # fmt: skip
    line = process.stdout.readline()
    if not line:
        process.wait()
        raise RuntimeError(f"the {name} server did not start (exit code {process.returncode})")
    return process, int(line)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time used so far by process ``pid`` (Linux /proc), else None."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raw_caller(port: int) -> Callable[[], Any]:
    """One persistent http.client connection sending the benchmark request."""
    connection = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Content-Type": "application/json"}

    def call() -> Any:
        connection.request("POST", PATH, BODY, headers)
        response = connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")
        return data

    return call


def client_caller(port: int) -> Callable[[], Any]:
    """A PipelinesClient making the same call (its own connection per caller thread)."""
    from chariots_waitress import PipelinesClient

    client = PipelinesClient(f"http://127.0.0.1:{port}")
    return lambda: client.call_pipeline("add", 1)


def load(
    make_caller: Callable[[int], Callable[[], Any]], port: int, threads: int, requests: int
) -> tuple[float, list[float]]:
    """Send ``requests`` requests split over ``threads`` threads; return (requests/s, latencies)."""
    callers = [make_caller(port) for _ in range(threads)]
    for call in callers:
        call()  # connect and warm up outside the timed part
    latencies: list[list[float]] = [[] for _ in range(threads)]
    start_gate = threading.Barrier(threads + 1)

    def work(index: int) -> None:
        call, mine = callers[index], latencies[index]
        clock = time.perf_counter
        start_gate.wait()
        for _ in range(requests // threads):
            begin = clock()
            call()
            mine.append(clock() - begin)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    start_gate.wait()
    begin = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - begin
    flat = [latency for mine in latencies for latency in mine]
    return len(flat) / elapsed, flat


def percentile(values: list[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    """Start the contenders, load each in turn, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500, help="requests per contender per repeat")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--serve", metavar="CONTENDER", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_contender(args.serve)
        return

    names = ["floor", "chariots"] + (["flask"] if importlib.util.find_spec("flask") else [])
    servers = {name: start_contender(name) for name in names}
    try:
        contenders = [(name, raw_caller, name) for name in names]
        contenders.append(("PipelinesClient", client_caller, "chariots"))
        print(f"{args.requests} requests x {args.repeats} repeats per contender; servers: waitress, {THREADS} threads")
        print(f"{'threads':>7} {'contender':<16} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'server CPU us/req':>18} {'vs floor':>9} {'CPU vs floor':>13}")  # fmt: skip
        for threads in (1, THREADS):
            rates: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
            cpu: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
            latencies: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
            for _ in range(args.repeats):
                for name, make_caller, server_name in contenders:  # take turns: noise hits all alike
                    process, port = servers[server_name]
                    cpu_before = cpu_seconds(process.pid)
                    rate, measured = load(make_caller, port, threads, args.requests)
                    cpu_after = cpu_seconds(process.pid)
                    rates[name].append(rate)
                    latencies[name].extend(measured)
                    if cpu_before is not None and cpu_after is not None:
                        cpu[name].append((cpu_after - cpu_before) / (len(measured) + threads))
            medians = {name: statistics.median(values) for name, values in rates.items()}
            cpu_medians = {name: statistics.median(values) for name, values in cpu.items() if values}
            for name, rate in medians.items():
                lat = latencies[name]
                per_request = f"{cpu_medians[name] * 1e6:.0f}" if name in cpu_medians else "n/a"
                # The floor's CPU per request over ours: the throughput ratio a CPU-bound server reaches.
                cpu_ratio = f"{cpu_medians['floor'] / cpu_medians[name]:.2f}x" if name in cpu_medians else "n/a"
                print(f"{threads:>7} {name:<16} {rate:>9.0f} {percentile(lat, 0.5) * 1e3:>8.3f} "
                      f"{percentile(lat, 0.99) * 1e3:>8.3f} {per_request:>18} {rate / medians['floor']:>8.2f}x "
                      f"{cpu_ratio:>13}")  # fmt: skip
            verdict = "meets" if medians["chariots"] >= TARGET_VS_FLOOR * medians["floor"] else "MISSES"
            print(f"        chariots {verdict} the >= {TARGET_VS_FLOOR}x floor target", end="")
            if "flask" in medians:
                print(f"; {medians['chariots'] / medians['flask']:.2f}x Flask's throughput", end="")
            print()
    finally:
        for process, _ in servers.values():
            process.stdin.close()
            process.wait(timeout=30)


if __name__ == "__main__":
    main()
