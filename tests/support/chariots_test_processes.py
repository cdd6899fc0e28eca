"""Helpers shared by the tests that start, stop or wait for other processes and servers."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any


def is_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:  # no /proc (macOS): os.kill said it exists
        return True


def wait_until(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    """Poll ``predicate`` every 10 ms until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached in {timeout} s")
        time.sleep(0.01)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_server(client: Any, server: subprocess.Popen, timeout: float = 60.0) -> None:
    """Poll ``client.health_check()`` until the server process answers; fail if it exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.health_check()
            return
        except Exception:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise AssertionError(f"the server did not start: {server.communicate()[1]}") from None
            time.sleep(0.1)


@contextlib.contextmanager
def cli_server(project: Any, env: dict[str, str]) -> Iterator[str]:
    """``chariots serve`` run in ``project`` on a free port; yields its URL, stops it after."""
    from chariots_waitress import PipelinesClient

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "chariots_core.project.cli", "serve", "--port", str(port)],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    client = PipelinesClient(url, timeout=5)
    try:
        wait_for_server(client, process)
        yield url
    finally:
        client.close()
        process.terminate()
        process.communicate(timeout=30)
