"""HTTP throughput and latency of Chariots on waitress against a bare WSGI floor and Flask.

Three WSGI apps run on waitress (4 threads each), each in a server process of its own, so
that neither the load generator nor another contender shares its GIL or CPU account:

- ``floor``: a bare WSGI callable reading the body and answering a constant JSON body, the
  most waitress can do;
- ``chariots``: ``make_wsgi_app(app)`` running a trivial one-op pipeline (``x + 1``);
- ``flask``: a Flask app with the same route, running the same pipeline through the same
  ``Chariots`` app (what chariots 0.2's Flask server did), when Flask is installed.
- ``floor+python``: the floor plus a pure-Python loop of about the Chariots app's own cost (~10 µs):
  what any WSGI app doing that much Python work reaches on waitress, GIL hand-offs between its
  threads included. Chariots at the ``floor+python`` ratio costs no more than its own work.

Each is sent ``POST /pipelines/add/main`` with ``{"pipeline_input": 1}`` over persistent
http.client connections by 1 and by 4 client threads. Within each repeat the contenders run
back to back, in an order that rotates, so that a load spike on a shared machine hits a pair
alike; the ratio to the floor is the median of the per-repeat ratios. Reported: requests/s
(median), p50/p99 latency, and the server process's CPU time per request (all its threads,
from /proc/<pid>/task/*/schedstat in nanoseconds on Linux); the app's own cost is the
chariots server's CPU per request minus the floor's. One more row measures
``PipelinesClient`` end to end against the Chariots server, and a last line times the WSGI
callables called directly in a loop (no server: a lower bound, caches warm).
Target: chariots >= 0.9x the floor's throughput at 1 and 4 threads, and faster than Flask.

Run: ``python benchmarks/bench_http.py [--requests 1000] [--repeats 9]``
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
TARGET_VS_FLOOR = 0.9
PYTHON_WORK = 400  # loop turns of floor+python: ~10 µs on this class of machine
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


def floor_python_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The floor after ~10 µs of pure-Python work (the Chariots app's own cost, called directly)."""
    total = 0
    for number in range(PYTHON_WORK):
        total += number
    return floor_app(environ, start_response)


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
            "flask": lambda: flask_app(trivial_app()), "floor+python": lambda: floor_python_app}[name]()  # fmt: skip
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
    """CPU time used so far by all threads of process ``pid`` (Linux /proc), else None.

    schedstat counts nanoseconds; /proc/<pid>/stat's clock ticks (10 ms) are the fallback.
    """
    try:
        total = 0
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as stat:
                total += int(stat.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        pass
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


def in_process_cost(calls: int = 20_000, repeats: int = 7) -> dict[str, float]:
    """Seconds per call of the floor and the Chariots WSGI callables called directly (best of repeats)."""
    import io

    from chariots_waitress import make_wsgi_app

    apps = {"floor": floor_app, "chariots": make_wsgi_app(trivial_app()), "floor+python": floor_python_app}
    best = {name: float("inf") for name in apps}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        pass

    for _ in range(repeats):
        for name, app in apps.items():
            environs = [{"REQUEST_METHOD": "POST", "PATH_INFO": PATH, "CONTENT_LENGTH": str(len(BODY)),
                         "CONTENT_TYPE": "application/json", "wsgi.input": io.BytesIO(BODY)}
                        for _ in range(calls)]  # fmt: skip
            begin = time.perf_counter()
            for environ in environs:
                app(environ, start_response)
            best[name] = min(best[name], (time.perf_counter() - begin) / calls)
    return best


def main() -> None:
    """Start the contenders, load each in turn, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per contender per repeat")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--serve", metavar="CONTENDER", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_contender(args.serve)
        return

    names = ["floor", "chariots", "floor+python"] + (["flask"] if importlib.util.find_spec("flask") else [])
    servers = {name: start_contender(name) for name in names}
    try:
        contenders = [(name, raw_caller, name) for name in names]
        contenders.append(("PipelinesClient", client_caller, "chariots"))
        print(f"{args.requests} requests x {args.repeats} repeats per contender; servers: waitress, {THREADS} threads")
        print(f"{'threads':>7} {'contender':<16} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'server CPU us/req':>18} {'vs floor':>9} {'CPU vs floor':>13}")  # fmt: skip
        for threads in (1, THREADS):
            rates: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
            ratios: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
            cpu: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
            latencies: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
            for repeat in range(args.repeats):
                turn = contenders[repeat % len(contenders):] + contenders[:repeat % len(contenders)]
                for name, make_caller, server_name in turn:
                    process, port = servers[server_name]
                    cpu_before = cpu_seconds(process.pid)
                    rate, measured = load(make_caller, port, threads, args.requests)
                    cpu_after = cpu_seconds(process.pid)
                    rates[name].append(rate)
                    latencies[name].extend(measured)
                    if cpu_before is not None and cpu_after is not None:
                        cpu[name].append((cpu_after - cpu_before) / (len(measured) + threads))
                for name in ratios:  # paired: this repeat's floor ran next to it
                    ratios[name].append(rates[name][-1] / rates["floor"][-1])
            cpu_medians = {name: statistics.median(values) for name, values in cpu.items() if values}
            for name, values in rates.items():
                lat = latencies[name]
                per_request = f"{cpu_medians[name] * 1e6:.0f}" if name in cpu_medians else "n/a"
                # The floor's CPU per request over ours: the throughput ratio a CPU-bound server reaches.
                cpu_ratio = f"{cpu_medians['floor'] / cpu_medians[name]:.2f}x" if name in cpu_medians else "n/a"
                print(f"{threads:>7} {name:<16} {statistics.median(values):>9.0f} {percentile(lat, 0.5) * 1e3:>8.3f} "
                      f"{percentile(lat, 0.99) * 1e3:>8.3f} {per_request:>18} "
                      f"{statistics.median(ratios[name]):>8.2f}x {cpu_ratio:>13}")  # fmt: skip
            ratio = statistics.median(ratios["chariots"])
            verdict = "meets" if ratio >= TARGET_VS_FLOOR else "MISSES"
            print(f"        chariots {verdict} the >= {TARGET_VS_FLOOR}x floor target ({ratio:.2f}x; per repeat: "
                  f"{', '.join(f'{r:.2f}' for r in sorted(ratios['chariots']))})", end="")  # fmt: skip
            if "chariots" in cpu_medians:
                print(f"; app CPU {(cpu_medians['chariots'] - cpu_medians['floor']) * 1e6:.0f} us/req", end="")
            python_ratio = statistics.median(ratios["floor+python"])
            print(f"; vs floor+python {ratio / python_ratio:.2f}x", end="")
            if "flask" in ratios:
                print(f"; {statistics.median(rates['chariots']) / statistics.median(rates['flask']):.2f}x Flask", end="")
            print()
    finally:
        for process, _ in servers.values():
            process.stdin.close()
            process.wait(timeout=30)
    direct = in_process_cost()
    print(f"WSGI callable called directly (no server, best of 7): floor {direct['floor'] * 1e6:.1f} us, "
          f"chariots {direct['chariots'] * 1e6:.1f} us, floor+python {direct['floor+python'] * 1e6:.1f} us per call")


if __name__ == "__main__":
    main()
