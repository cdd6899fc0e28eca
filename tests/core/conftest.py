"""Fixtures shared by the core tests."""

from __future__ import annotations

import pytest
from chariots_test_explain import shared_apps

from chariots_core import Chariots


@pytest.fixture(params=["memory", "lmdb"])
def app_for(request, tmp_path):
    """Make an app in memory, or on LMDB + files under tmp_path."""
    apps = []

    def make(pipelines, **kwargs):
        if request.param == "memory":
            kwargs.setdefault("op_store", "memory")
            kwargs.setdefault("saver", "memory")
        else:
            pytest.importorskip("chariots_lmdb")
            pytest.importorskip("chariots_fsspec")
            kwargs.setdefault("path", tmp_path / "data")
        apps.append(Chariots(pipelines, **kwargs))
        return apps[-1]

    make.kind = request.param
    yield make
    for app in apps:
        app.close()


@pytest.fixture(params=["memory", "lmdb"])
def make_shared_app(request, tmp_path):
    """Make apps that share one store (as processes running old and new code would), in memory
    or on LMDB + files under tmp_path."""
    if request.param == "lmdb":
        pytest.importorskip("chariots_lmdb")
        pytest.importorskip("chariots_fsspec")
    with shared_apps(request.param, tmp_path) as make:
        yield make
