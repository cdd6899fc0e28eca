"""Hot reload under load: a waitress server follows its store while another process trains.

Three kinds of real processes: the server (an app with ``reload="latest"`` on waitress, a free
port), a trainer that saves 20 new versions over 30 s into the same LMDB store, and this test,
whose 4 client threads call the server the whole time. Nothing may fail, every response must
carry the versions that computed its value, and each version must be served within the reload
interval + 1 s of its save. The latency distribution is printed (run with ``-s`` to see it).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from chariots_test_processes import free_port, wait_for_server

pytest.importorskip("chariots_lmdb")
pytest.importorskip("chariots_fsspec")

from chariots_waitress import PipelinesClient  # noqa: E402

SUPPORT = Path(__file__).resolve().parents[2] / "support"
ENV = {**os.environ, "PYTHONPATH": str(SUPPORT)}
INTERVAL = 1.0
SAVES = 20
DURATION = 30.0

SERVER = """
import json, sys
from chariots_test_deploy import remember_app, train_and_save
from chariots_waitress import serve
app = remember_app(sys.argv[1], reload="latest", reload_interval=float(sys.argv[3]))
train_and_save(app, "initial")
app.load_pipeline("pred")
print(json.dumps({"initial": str(app.pipeline_versions("pred")["remember"])}), flush=True)
serve(app, port=int(sys.argv[2]), threads=4)
"""

TRAINER = """
import json, sys, time
from chariots_test_deploy import remember_app, train_and_save
saves, spacing = int(sys.argv[2]), float(sys.argv[3])
with remember_app(sys.argv[1]) as app:
    for number in range(saves):
        time.sleep(spacing)
        value = f"v{number}"
        train_and_save(app, value)
        saved_at = time.time()
        version = str(app.pipeline_versions("train")["remember"])
        print(json.dumps({"value": value, "version": version, "saved_at": saved_at}), flush=True)
"""


@pytest.mark.slow
def test_a_served_app_follows_20_saves_without_failing_a_request(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(tmp_path), str(port), str(INTERVAL)],
        env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    trainer = None
    stop = threading.Event()
    callers: list[threading.Thread] = []
    try:
        initial = json.loads(server.stdout.readline() or "null")
        assert initial, server.stderr.read()
        client = PipelinesClient(f"http://127.0.0.1:{port}", timeout=30)
        wait_for_server(client, server)

        responses: list[tuple[float, str, str]] = []  # (received at, value, version)
        failures: list[str] = []

        def call() -> None:
            while not stop.is_set():
                try:
                    response = client.call_pipeline("pred", 0)
                except Exception as exc:  # every failure counts, whatever it is
                    failures.append(f"{type(exc).__name__}: {exc}")
                    time.sleep(0.01)
                    continue
                responses.append((time.time(), response.value, str(response.versions["remember"])))

        callers = [threading.Thread(target=call, daemon=True) for _ in range(4)]
        for caller in callers:
            caller.start()
        started = time.time()
        trainer = subprocess.Popen(
            [sys.executable, "-c", TRAINER, str(tmp_path), str(SAVES), str(DURATION / SAVES)],
            env=ENV, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        saves = [json.loads(line) for line in trainer.stdout]
        assert trainer.wait(60) == 0
        time.sleep(INTERVAL + 1.5)  # the last save's window
        stop.set()
        for caller in callers:
            caller.join(60)
        elapsed = time.time() - started
        history = client.deployments("pred", limit=None)
        client.close()
    finally:
        stop.set()
        for caller in callers:
            caller.join(60)
        if trainer is not None and trainer.poll() is None:
            trainer.kill()
        server.terminate()
        server.communicate(timeout=30)

    assert failures == [] and len(saves) == SAVES and elapsed >= DURATION, failures[:5]
    version_of = {"initial": initial["initial"], **{save["value"]: save["version"] for save in saves}}
    # Every response carries the versions that computed its value.
    assert all(version == version_of[value] for _, value, version in responses)
    latencies = []
    for save in saves:
        served = [received for received, value, _ in responses if value == save["value"]]
        assert served, f"{save['value']} was never served"
        latencies.append(min(served) - save["saved_at"])
    reloads = [record for record in history if record.kind == "reload" and record.deployed]
    assert {save["version"] for save in saves} <= {record.versions["remember"] for record in reloads}
    print(
        f"\nhot reload under load: {len(responses)} requests by 4 threads in {elapsed:.1f} s, 0 failed; "
        f"{SAVES} saves, reload interval {INTERVAL} s; save -> first response served with it: "
        f"min {min(latencies):.3f} s, median {statistics.median(latencies):.3f} s, "
        f"p90 {sorted(latencies)[int(0.9 * len(latencies))]:.3f} s, max {max(latencies):.3f} s"
    )
    assert max(latencies) <= INTERVAL + 1

