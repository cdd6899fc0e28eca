"""Suite-wide test ordering, and the Dask cluster of the pool tests.

Keras (through JAX) and Dask start background threads in the test process as soon as they
are imported. Several storage and worker tests fork the test process, and forking a process
that runs other threads can deadlock the child, so the thread-starting tests run last: those
under ``_THREAD_STARTING_PATHS``, and those parametrized with a backend whose
``starts_threads`` is true (the Dask pool of the worker-pool conformance suite).
"""

from __future__ import annotations

import pytest

_THREAD_STARTING_PATHS = ("tests/backends/keras/", "tests/backends/dask/", "tests/test_public_api.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def starts_threads(item: pytest.Item) -> bool:
        path = item.path.as_posix()
        params = getattr(getattr(item, "callspec", None), "params", {})
        return any(prefix in path for prefix in _THREAD_STARTING_PATHS) or any(
            getattr(value, "starts_threads", False) is True for value in params.values()
        )

    items.sort(key=starts_threads)  # stable: keeps each group's own order


@pytest.fixture(scope="module")
def dask_client():
    """A client on a LocalCluster of 2 single-threaded worker processes, one per test module,
    so that the workers a module kills never slow another module down.

    ``allowed-failures`` is 1: a task is retried once after its worker dies, and fails with
    ``KilledWorker`` when a second worker dies running it. Tests that kill workers leave the
    cluster to replace them: wait for 2 workers before counting on them again.
    """
    pytest.importorskip("distributed")
    import dask
    import distributed

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
        )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()
