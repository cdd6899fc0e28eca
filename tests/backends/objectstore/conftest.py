"""Fixtures for the object op store: a local moto S3 server (no network) and unique buckets."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server (see ``chariots_test_s3.moto_s3``) for the module's tests."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    from chariots_test_s3 import moto_s3

    with moto_s3() as endpoint:
        yield endpoint


@pytest.fixture
def bucket(s3_endpoint) -> str:
    """A fresh, empty bucket on the moto server; returns its name."""
    import s3fs

    name = f"chariots-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(endpoint_url=s3_endpoint).mkdir(name)
    return name


@pytest.fixture(scope="module")
def lineage_app():
    """The module of ``objectstore_lineage_app.py`` (ops and pipelines of the lineage case)."""
    import importlib.util
    import pathlib
    import sys

    path = pathlib.Path(__file__).with_name("objectstore_lineage_app.py")
    spec = importlib.util.spec_from_file_location("objectstore_lineage_app", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture
def memory_url() -> str:
    """A fresh prefix in fsspec's in-memory filesystem."""
    return f"memory://chariots-{uuid.uuid4().hex[:12]}"
