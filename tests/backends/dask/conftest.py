"""A real Dask LocalCluster with two worker processes, started once per test module."""

from __future__ import annotations

import os
import sys

import pytest

# Worker processes are spawned with this process's sys.path: this makes dask_pool_ops
# importable there, as a user's installed package would be.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def dask_client():
    """A client on a LocalCluster of 2 single-threaded worker processes.

    ``allowed-failures`` is 1: a task is retried once after its worker dies, and fails with
    ``KilledWorker`` when a second worker dies running it.
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
