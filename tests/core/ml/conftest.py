"""Store settings for ML-op tests: a real LMDB store and files when installed, else memory."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from chariots_core import MemoryOpStore, MemorySaver


@pytest.fixture
def store_kwargs(tmp_path: Path) -> dict[str, Any]:
    """Keyword arguments for ``Chariots``; apps built from the same dict share one store."""
    if importlib.util.find_spec("chariots_lmdb") and importlib.util.find_spec("chariots_fsspec"):
        return {"path": tmp_path / "app"}
    return {"op_store": MemoryOpStore(), "saver": MemorySaver()}
