"""Garbage collection: remove what interrupted saves left behind, never what a record names.

A store used for years collects debris: a process killed half-way through a save leaves its
temporary file in the saver, and a save that stopped before its metadata commit (killed, a
full disk, an op that failed to serialize after another was written) leaves blobs that no
record names. :func:`collect_garbage` removes both, and ``Chariots.collect_garbage`` and
``chariots gc`` call it.

**What is removed.** In the saver, blobs under ``ops/`` (op states) and ``jobs/`` (job
results) that no committed record of the given stores references, and the debris of every
saver and store (:meth:`~chariots_core.savers.BaseSaver.collect_debris`,
:meth:`~chariots_core.op_store.store.OpStore.collect_debris`). Nothing else: datasets
(``data/``) are named by their path and may come from outside the app, and a saver may hold
files of other programs elsewhere.

**What is kept.** Every blob a committed record references: op version blobs
(:meth:`~chariots_core.op_store.store.OpStore.referenced_blobs` of each op store), the results
of recorded jobs (``result_path`` of every job of each job store), datasets. Every store that
shares the saver must be given, or its blobs look unreferenced: the app passes its own op store
and job store, ``chariots gc`` adds the CLI's holding store. And everything younger than
``older_than`` seconds: a save in progress in another process writes its blobs *before* it
commits the records that name them, so a blob written moments ago is not debris yet.

**Why it is safe while others save.** The saver's blobs are listed first, the references read
after: a blob listed as old was written before the listing began, and a save that commits it
after the references were read must have written it more than ``older_than`` seconds before
committing, which no save takes (keep ``older_than`` far above the longest save; the default
is a day). Saves always write new blob names, never reuse an unreferenced one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import attrs

from ..errors import ConfigError
from ..savers import DEBRIS_AGE, BaseSaver
from .store import JobStore, OpStore

__all__ = ["GarbageReport", "collect_garbage", "COLLECTED_PREFIXES", "DEBRIS_AGE"]

COLLECTED_PREFIXES = ("ops", "jobs")
"""The saver directories garbage collection looks in: op states and job results, the app's own."""


@attrs.frozen
class GarbageReport:
    """What one garbage collection removed (or, with ``dry_run``, would remove)."""

    blobs: tuple[str, ...]  # saver paths of blobs no record references
    debris: tuple[str, ...]  # what interrupted writes left in the saver and the stores
    freed_bytes: int  # the size of ``blobs``
    dry_run: bool

    @property
    def removed(self) -> tuple[str, ...]:
        """Everything removed (or that would be): the blobs, then the debris."""
        return self.blobs + self.debris


def collect_garbage(
    saver: BaseSaver,
    stores: Iterable[OpStore | JobStore],
    *,
    older_than: float = DEBRIS_AGE,
    dry_run: bool = False,
) -> GarbageReport:
    """Remove the blobs of ``saver`` that no record of ``stores`` references and the debris of
    interrupted writes, all older than ``older_than`` seconds (see the module docstring).

    :param stores: every op store and job store whose records name blobs in ``saver``.
    :param dry_run: only report what would be removed.
    :raises ConfigError: if ``older_than`` is not a number of seconds >= 0.
    :raises StoreError: if a store cannot list what it references (then nothing is removed).
    """
    if isinstance(older_than, bool) or not isinstance(older_than, (int, float)) or not older_than >= 0:
        raise ConfigError(f"'older_than' must be a number of seconds >= 0 (got {older_than!r})")
    stores = list(stores)
    cutoff = time.time() - older_than
    # Listed before the references are read: see "Why it is safe while others save".
    candidates = [blob for prefix in COLLECTED_PREFIXES for blob in saver.blobs(prefix) if blob.modified < cutoff]
    referenced = _referenced(stores)
    unreferenced = [blob for blob in candidates if blob.path not in referenced]
    if not dry_run:
        for blob in unreferenced:
            saver.delete(blob.path)
    debris = saver.collect_debris(older_than, dry_run=dry_run)
    for store in stores:
        if isinstance(store, OpStore):
            debris += store.collect_debris(older_than, dry_run=dry_run)
    return GarbageReport(
        blobs=tuple(sorted(blob.path for blob in unreferenced)),
        debris=tuple(debris),
        freed_bytes=sum(blob.size for blob in unreferenced),
        dry_run=dry_run,
    )


def _referenced(stores: list[OpStore | JobStore]) -> set[str]:
    """Every saver path a committed record of ``stores`` names."""
    referenced: set[str] = set()
    for store in stores:
        if isinstance(store, OpStore):
            referenced.update(store.referenced_blobs())
        if isinstance(store, JobStore):
            referenced.update(job.result_path for job in store.jobs() if job.result_path is not None)
    return referenced
