"""Savers on fsspec: local directories, ``memory://``, ``gs://``, ``s3://`` and more.

    >>> from chariots_fsspec import FsspecSaver
    >>> saver = FsspecSaver("file:///srv/chariots/blobs")

``Chariots(pipelines, path=...)`` uses one on ``<path>/blobs``; a saver is also selectable by
URL: ``Chariots(pipelines, saver="gs://bucket/prefix")``. Install with
``pip install 'chariots[fsspec]'`` (``chariots[gcs]`` adds Google Cloud Storage).
"""

from .saver import FsspecSaver

__all__ = ["FsspecSaver"]
