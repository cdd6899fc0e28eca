"""Dask pool tests: this directory's ops module must be importable on the cluster's workers.

The cluster itself is the session's ``dask_client`` (``tests/conftest.py``).
"""

from __future__ import annotations

import os
import sys

# Worker processes are spawned with this process's sys.path: this makes dask_pool_ops
# importable there, as a user's installed package would be.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
