"""The backends the conformance suites run against.

Every op store in ``OP_STORES`` and every saver in ``SAVERS`` must pass the same suites. A new
backend adds one ``Backend`` entry here and gets every conformance test; a backend whose
optional dependency is missing skips (its ``open`` calls ``pytest.importorskip``).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from chariots_core import MemoryOpStore, MemorySaver


@attrs.frozen
class Backend:
    """How to open one backend for a test."""

    name: str
    open: Callable[[Path], Any]  # the backend kept under this directory (created if missing)
    persistent: bool = True  # opening the same directory again reaches the same data
    local: bool = True  # its data lives in that local directory (so path errors apply)


def _lmdb_store(root: Path) -> Any:
    pytest.importorskip("lmdb")
    from chariots_lmdb import LMDBOpStore

    return LMDBOpStore(root / "store")


def _fsspec_saver(to_url: Callable[[Path], str], **storage_options: Callable[[Path], Any]) -> Callable[[Path], Any]:
    def open_saver(root: Path) -> Any:
        pytest.importorskip("fsspec")
        from chariots_fsspec import FsspecSaver

        return FsspecSaver(to_url(root), **{name: option(root) for name, option in storage_options.items()})

    return open_saver


# memory:// is one filesystem per process: give every test directory its own prefix.
_memory_prefixes: dict[Path, str] = {}


def _memory_url(root: Path) -> str:
    return "memory://" + _memory_prefixes.setdefault(root, f"chariots-tests/{uuid.uuid4().hex}")


def _object_store(root: Path) -> Any:
    pytest.importorskip("fsspec")
    from chariots_fsspec.object_store import ObjectOpStore

    return ObjectOpStore(_memory_url(root))


OP_STORES = [
    Backend("memory", lambda root: MemoryOpStore(), persistent=False, local=False),
    Backend("lmdb", _lmdb_store),
    Backend("objects-memory", _object_store, local=False),
]

SAVERS = [
    Backend("memory", lambda root: MemorySaver(), persistent=False, local=False),
    Backend("fsspec-path", _fsspec_saver(lambda root: str(root / "blobs"))),
    Backend("fsspec-file-url", _fsspec_saver(lambda root: (root / "blobs").as_uri())),
    Backend("fsspec-memory", _fsspec_saver(_memory_url), local=False),
    # A filesystem that is neither local nor an object store: written aside, then moved.
    Backend(
        "fsspec-dir",
        _fsspec_saver(lambda root: "dir://blobs", path=str, target_protocol=lambda root: "file"),
        local=False,
    ),
]


@pytest.fixture(params=OP_STORES, ids=lambda backend: backend.name)
def op_store_backend(request: pytest.FixtureRequest) -> Backend:
    """Each op store backend in turn."""
    return request.param


@pytest.fixture(params=SAVERS, ids=lambda backend: backend.name)
def saver_backend(request: pytest.FixtureRequest) -> Backend:
    """Each saver backend in turn."""
    return request.param


@pytest.fixture
def op_store(op_store_backend: Backend, tmp_path: Path) -> Iterator[Any]:
    """A fresh op store of each backend, closed after the test."""
    store = op_store_backend.open(tmp_path)
    yield store
    store.close()


@pytest.fixture
def saver(saver_backend: Backend, tmp_path: Path) -> Any:
    """A fresh saver of each backend."""
    return saver_backend.open(tmp_path)


@pytest.fixture
def make_read_only() -> Iterator[Callable[[Path], None]]:
    """Make a directory read-only for everyone, root included; undone after the test.

    Tests often run as root, which ignores permission bits: there the directory is made
    immutable (``chattr +i``), which root cannot write through either.
    """
    frozen: list[Path] = []

    def freeze(path: Path) -> None:
        if os.geteuid() != 0:
            path.chmod(0o555)
        else:
            try:
                result = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
            except FileNotFoundError:
                pytest.skip("running as root without chattr: no directory can be made read-only for root")
            if result.returncode != 0:
                reason = result.stderr.strip()
                pytest.skip(f"running as root and chattr +i fails here ({reason}): no read-only directory for root")
        frozen.append(path)
        probe = path / "probe"
        try:
            probe.mkdir()
        except OSError:
            return
        probe.rmdir()
        pytest.skip(f"{path} stays writable after being made read-only on this filesystem")

    yield freeze
    for path in frozen:
        if os.geteuid() != 0:
            path.chmod(0o755)
        else:
            subprocess.run(["chattr", "-i", str(path)], check=True)
