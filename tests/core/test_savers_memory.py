"""The core's in-memory saver, against the protocol the saver backends implement.

(``MemoryOpStore`` runs the op-store conformance suite with every other store.)
"""

from __future__ import annotations

import pytest

from chariots_core import BaseSaver, MemorySaver
from chariots_core.errors import StoreError


# -- MemorySaver ---------------------------------------------------------------------------
def test_memory_saver_round_trip():
    saver = MemorySaver()
    assert isinstance(saver, BaseSaver)
    assert not saver.exists("ops/a/1")
    saver.save("ops/a/1", b"abc")
    assert saver.exists("ops/a/1")
    assert saver.load("ops/a/1") == b"abc"
    saver.save("ops/a/1", bytearray(b"xyz"))
    assert saver.load("ops/a/1") == b"xyz"
    saver.delete("ops/a/1")
    saver.delete("ops/a/1")  # deleting nothing is fine
    assert not saver.exists("ops/a/1")


def test_memory_saver_missing_path_is_file_not_found():
    with pytest.raises(FileNotFoundError, match="nothing is saved at 'ops/missing'"):
        MemorySaver().load("ops/missing")


@pytest.mark.parametrize("path", ["", "/abs/path", "../escape", "a/../b", "a//b", "./a", "a/"])
def test_memory_saver_refuses_unsafe_paths(path):
    saver = MemorySaver()
    for call in (lambda: saver.save(path, b"x"), lambda: saver.load(path), lambda: saver.exists(path)):
        with pytest.raises(StoreError, match="saver paths must be relative"):
            call()
