"""Suite-wide test ordering.

Keras (through JAX) and Dask start background threads in the test process as soon as they
are imported. Several storage and worker tests fork the test process, and forking a process
that runs other threads can deadlock the child, so the thread-starting tests run last.
"""

from __future__ import annotations

import pytest

_THREAD_STARTING_PATHS = ("tests/backends/keras/", "tests/backends/dask/", "tests/test_public_api.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def starts_threads(item: pytest.Item) -> bool:
        path = item.path.as_posix()
        return any(prefix in path for prefix in _THREAD_STARTING_PATHS)

    items.sort(key=starts_threads)  # stable: keeps each group's own order
