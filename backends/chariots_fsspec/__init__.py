"""Storage on fsspec: savers for local directories, ``memory://``, ``gs://``, ``s3://`` and
more, and :class:`ObjectOpStore`, an op store that several machines share through a bucket.

    >>> from chariots_fsspec import FsspecSaver
    >>> saver = FsspecSaver("file:///srv/chariots/blobs")

``Chariots(pipelines, path=...)`` uses one on ``<path>/blobs``; a saver is also selectable by
URL: ``Chariots(pipelines, saver="gs://bucket/prefix")``. Install with
``pip install 'chariots[fsspec]'`` (``chariots[gcs]`` adds Google Cloud Storage).
"""

from .object_store import ObjectOpStore
from .saver import FsspecSaver

__all__ = ["FsspecSaver", "ObjectOpStore"]
