"""A local moto S3 server for the object-store tests and benchmarks (no network).

moto checks a conditional ``PUT`` (``If-None-Match: *``) and then stores the object in two
steps, without a lock, while S3 does both atomically; the object op store relies on that
atomicity (one writer per log entry), so the server here serializes moto's ``PUT`` handling.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

from chariots_test_processes import free_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@contextmanager
def moto_s3() -> Iterator[str]:
    """A moto S3 server on a free localhost port; yields its endpoint URL.

    Meanwhile fake credentials are in the environment, ``FSSPEC_S3_ENDPOINT_URL`` points
    subprocesses' s3fs at the server, and fsspec's configuration does the same in this process.
    """
    import fsspec
    import s3fs
    from moto.s3.responses import S3Response
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    put_lock = threading.Lock()
    put_object = S3Response.put_object

    def atomic_put_object(self: S3Response) -> object:
        with put_lock:
            return put_object(self)

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    endpoint = f"http://127.0.0.1:{port}"
    environment = {**CREDENTIALS, "FSSPEC_S3_ENDPOINT_URL": endpoint}
    with (
        mock.patch.object(S3Response, "put_object", atomic_put_object),
        mock.patch.dict(os.environ, environment),
        mock.patch.dict(fsspec.config.conf, {"s3": {"endpoint_url": endpoint}}),
    ):
        server.start()
        s3fs.S3FileSystem.clear_instance_cache()
        try:
            yield endpoint
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
            server.stop()
