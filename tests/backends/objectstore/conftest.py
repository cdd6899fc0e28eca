"""Fixtures for the object op store: a local moto S3 server (no network) and unique buckets."""

from __future__ import annotations

import uuid

import pytest
from chariots_test_processes import free_port



@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server on a free localhost port, with fake credentials in the environment.

    ``FSSPEC_S3_ENDPOINT_URL`` points subprocesses' s3fs at it; this process gets the same
    setting through fsspec's config.
    """
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    import fsspec
    import s3fs

    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "FSSPEC_S3_ENDPOINT_URL": endpoint,
        }.items():
            patch.setenv(name, value)
        patch.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint})
        s3fs.S3FileSystem.clear_instance_cache()
        yield endpoint
        s3fs.S3FileSystem.clear_instance_cache()
    server.stop()


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
