"""Every Python block of README.md runs as pasted, each in a fresh process in a temporary directory.

An HTML comment on the line before a block, ``<!-- readme-test: key=value ... -->``, says what
the block needs:

- ``name=NAME``: later blocks may continue this one;
- ``continues=NAME``: the block is appended to block NAME (and to what NAME continues), as a
  reader adds it to the script they pasted before;
- ``serves=PORT``: the block serves until stopped; it runs in the background, on a free port
  written in place of PORT, while the blocks marked ``client-of=PORT`` run against it;
- ``scheduler=ADDRESS bucket=NAME``: the block needs a Dask scheduler at ADDRESS (a
  ``LocalCluster``'s address is written in its place) and an S3 bucket NAME (a local moto server
  provides it).

A line ``print(...)  # text`` says what the block prints: its standard output must be exactly
those texts, in order. Nothing may be printed on standard error but progress (no traceback, no
warning at exit).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import attrs
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
_MARKER = re.compile(r"<!--\s*readme-test:(.*?)-->")
_EXPECTED = re.compile(r"^\s*print\(.*\)\s*#\s*(.+?)\s*$")


@attrs.frozen
class Block:
    """One Python block of the README, where it starts, and what its marker asks for."""

    line: int
    source: str
    options: dict[str, str]

    @property
    def label(self) -> str:
        return self.options.get("name") or f"line-{self.line}"


def readme_blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    blocks = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rpartition("\n")[2]
        marker = _MARKER.search(before)
        options = dict(item.split("=", 1) for item in marker.group(1).split()) if marker else {}
        blocks.append(Block(text.count("\n", 0, match.start()) + 2, match.group(1), options))
    return blocks


BLOCKS = readme_blocks()
BY_NAME = {block.options["name"]: block for block in BLOCKS if "name" in block.options}


def script(block: Block) -> str:
    """The block as a reader runs it: after the blocks it continues."""
    parts = [block.source]
    while "continues" in block.options:
        block = BY_NAME[block.options["continues"]]
        parts.insert(0, block.source)
    return "\n\n".join(parts)


def expected_output(source: str) -> list[str]:
    return [match.group(1) for line in source.splitlines() if (match := _EXPECTED.match(line))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_script(directory: Path, source: str) -> Path:
    path = directory / "readme_block.py"
    path.write_text(source, encoding="utf-8")
    return path


def run_block(directory: Path, source: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``source`` as a script in ``directory`` and check its exit, output and stderr."""
    done = subprocess.run(
        [sys.executable, str(write_script(directory, source))],
        cwd=directory, capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert done.stdout.splitlines() == expected_output(source), done.stderr
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr, done.stderr
    return done


def _kind(block: Block) -> str:
    if "serves" in block.options:
        return "server"
    if "client-of" in block.options:
        return "client"
    if "scheduler" in block.options:
        return "cluster"
    return "plain"


def test_the_readme_has_the_blocks_this_test_knows_how_to_run():
    kinds = [_kind(block) for block in BLOCKS]
    assert kinds.count("plain") >= 3 and kinds.count("server") == kinds.count("client") == 1
    assert kinds.count("cluster") == 1
    for block in BLOCKS:
        assert set(block.options) <= {"name", "continues", "serves", "client-of", "scheduler", "bucket"}, block
        assert block.options.get("continues", next(iter(BY_NAME))) in BY_NAME, block
    assert all(expected_output(script(block)) for block in BLOCKS if _kind(block) != "server"), (
        "every block shows what it prints"
    )


@pytest.mark.parametrize("block", [block for block in BLOCKS if _kind(block) == "plain"], ids=lambda block: block.label)
def test_a_block_runs_as_pasted(block, tmp_path):
    pytest.importorskip("sklearn")
    run_block(tmp_path, script(block))


@pytest.mark.slow
def test_the_server_block_serves_the_client_block(tmp_path):
    server = next(block for block in BLOCKS if _kind(block) == "server")
    client = next(block for block in BLOCKS if block.options.get("client-of") == server.options["serves"])
    pytest.importorskip("chariots_waitress")
    port = str(free_port())
    served = script(server).replace(server.options["serves"], port)
    process = subprocess.Popen(
        [sys.executable, str(write_script(tmp_path, served))],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    elsewhere = tmp_path / "client"  # another process, in another directory
    elsewhere.mkdir()
    try:
        _wait_for_port(int(port), process)
        run_block(elsewhere, client.source.replace(client.options["client-of"], port))
    finally:
        process.terminate()
        _, errors = process.communicate(timeout=30)
    assert "Traceback" not in errors, errors


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the server block did not start listening: {process.communicate()[1]}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster_env(tmp_path_factory):
    """A Dask LocalCluster and a moto S3 server; yields what to write and set for a cluster block."""
    distributed = pytest.importorskip("distributed")
    moto_server = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    import boto3

    block = next(block for block in BLOCKS if _kind(block) == "cluster")
    port = free_port()
    s3 = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    s3.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true", "FSSPEC_S3_ENDPOINT_URL": endpoint,
        "XDG_CACHE_HOME": str(tmp_path_factory.mktemp("cache")),
    }
    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket=block.options["bucket"])
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    )
    try:
        yield block, cluster.scheduler_address, env
    finally:
        cluster.close()
        s3.stop()


@pytest.mark.slow
def test_the_scaling_out_block_runs_on_a_cluster_and_object_storage(cluster_env, tmp_path):
    pytest.importorskip("sklearn")
    block, address, env = cluster_env
    run_block(tmp_path, script(block).replace(block.options["scheduler"], address), env)
