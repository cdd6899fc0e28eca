"""The embedded op store: versions, links, snapshots and jobs in an LMDB directory.

    >>> from chariots_lmdb import LMDBOpStore
    >>> store = LMDBOpStore("./chariots_data/store")

``Chariots(pipelines, path=...)`` uses it by default (in ``<path>/store``); it is also
selectable by name: ``Chariots(pipelines, op_store="lmdb")``. Install with
``pip install 'chariots[lmdb]'``.

``LMDBPredictionSink`` keeps an app's prediction log in an LMDB directory of its own
(``<path>/predictions``; see :mod:`chariots_core.serving.prediction_log`).
"""

from .predictions import LMDBPredictionSink
from .store import LMDBOpStore

__all__ = ["LMDBOpStore", "LMDBPredictionSink"]
