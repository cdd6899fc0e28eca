"""Fixtures shared by the command-line tests."""

from __future__ import annotations

import os

import pytest
from chariots_test_processes import cli_server


@pytest.fixture
def server(project):
    """``chariots serve`` running in the test module's ``project``; yields its URL."""
    pytest.importorskip("chariots_waitress")
    # Tests rewrite modules within the same second: stale bytecode must never be reused.
    with cli_server(project, {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}) as url:
        yield url
