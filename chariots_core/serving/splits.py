"""Splits: several deployments of one pipeline served side by side (A/B tests and shadows).

::

    app.split("pred_iris", variants={"stable": "serving", "candidate": "latest"},
              weights={"stable": 0.9, "candidate": 0.1})
    app.call_pipeline("pred_iris", rows, key="customer-42").variant   # always the same one

**Variants** are named by what they serve: ``"serving"`` (what the pipeline serves now),
``"latest"`` or ``"latest_compatible"`` (what a load with that strategy would choose now), or
a deployment id from ``app.deployments(...)`` (the versions that deployment served). Each one
is checked along every edge, like a load, before anything changes; a split is a deployment,
recorded like one (:mod:`chariots_core.serving.deployments`), and ends with the next load or
rollback of the pipeline.

**Picking a variant.** A call with a ``key`` gets the variant its key falls in: the sha256 of
the pipeline name and the key is a point of [0, 1), which the served variants share by
weight, in the order they were given. So the same key always gets the same variant, in every
process and after restarts (Python's ``hash`` would change between processes), and raising a
variant's weight, keeping the order, only moves keys into it. A call without a key gets a
weighted random variant.

**Shadow.** ``shadow="candidate"`` names a variant that receives no traffic but runs on every
call's input (a deep copy taken before the call, since ops may change their input), on a
thread of its own after the call has answered: its output is never returned, it goes to the
prediction log (``shadow=True``) when the pipeline's predictions are logged, and to the
``chariots.shadow`` logger (at DEBUG; failures at WARNING, once per split). When the shadow
falls ``max_pending`` runs behind, runs are skipped and counted rather than queued.
"""

from __future__ import annotations

import hashlib
import math
import queue
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import ConfigError, describe_failure
from ..log import get_logger
from ..op_store.lineage import STRATEGIES

if TYPE_CHECKING:
    from .routes import Route, Variant

__all__ = ["SERVING", "SplitPlan", "check_split", "key_point", "ShadowRunner"]

SERVING = "serving"  # the variant spec for what the pipeline serves now
_log = get_logger("shadow")


@attrs.frozen
class SplitPlan:
    """A checked split request: ``specs`` by variant name, in order; ``shares`` of the served ones."""

    specs: dict[str, str]
    shares: dict[str, float]
    shadow: str | None


def check_split(variants: Any, weights: Any, shadow: Any) -> SplitPlan:
    """Check the arguments of ``Chariots.split`` (see the module docstring) and normalise weights.

    :raises ConfigError: naming what is wrong and what to pass instead.
    """
    if not isinstance(variants, Mapping) or len(variants) < 2:
        msg = (
            f"'variants' must map two or more variant names to what each serves, e.g. "
            f"{{'stable': 'serving', 'candidate': 'latest'}} (got {variants!r})"
        )
        raise ConfigError(msg)
    for name, spec in variants.items():
        if not isinstance(name, str) or not name or not isinstance(spec, str) or not spec:
            msg = (
                f"each variant must be a name and what it serves ('serving', 'latest', 'latest_compatible' "
                f"or a deployment id), both non-empty strings (got {name!r}: {spec!r})"
            )
            raise ConfigError(msg)
    if shadow is not None and shadow not in variants:
        raise ConfigError(f"'shadow' must be None or one of the variants {list(variants)} (got {shadow!r})")
    served = [name for name in variants if name != shadow]
    if weights is None:
        weights = dict.fromkeys(served, 1.0)
    if not isinstance(weights, Mapping) or set(weights) != set(served):
        msg = (
            f"'weights' must give a weight to each served variant, {served} (the shadow takes none), "
            f"or be None for equal weights (got {weights!r})"
        )
        raise ConfigError(msg)
    for name, weight in weights.items():
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"the weight of variant {name!r} must be a number >= 0 (got {weight!r})")
    total = sum(weights.values())
    if total <= 0:
        raise ConfigError(f"at least one served variant needs a weight > 0 (got {dict(weights)!r})")
    return SplitPlan(dict(variants), {name: weights[name] / total for name in served}, shadow)


def key_point(pipeline_name: str, key: str) -> float:
    """Where ``key`` falls in [0, 1) for ``pipeline_name``: the same in every process."""
    digest = hashlib.sha256(f"{pipeline_name}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def strategy_or_id(spec: str) -> str | None:
    """The load strategy a variant spec names, or ``None`` for ``"serving"`` or a deployment id."""
    return spec if spec in STRATEGIES else None


class ShadowRunner:
    """Runs the shadow variants of an app's splits on one daemon thread, after the calls.

    :param max_pending: shadow runs waiting beyond this number are skipped (and counted).
    """

    def __init__(self, max_pending: int = 1000) -> None:
        self._queue: queue.Queue[tuple[Route, Variant, Any] | None] = queue.Queue(max_pending)
        self._warned: set[int] = set()  # ids of the routes whose shadow failure was warned about
        self.ran = self.failed = self.skipped = 0
        self._thread = threading.Thread(target=self._work, name="chariots-shadow", daemon=True)
        self._thread.start()

    def submit(self, route: Route, variant: Variant, pipeline_input: Any) -> None:
        """Queue a shadow run of ``variant`` on ``pipeline_input``; never raises, never waits."""
        try:
            self._queue.put_nowait((route, variant, pipeline_input))
        except queue.Full:
            self.skipped += 1

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            route, variant, pipeline_input = item
            try:
                failure = route.run_shadow(variant, pipeline_input)
            except Exception as exc:  # what logging the run raised: the shadow must go on
                failure = exc
            self.ran += 1
            if failure is not None:
                self.failed += 1
                if id(route) not in self._warned:
                    self._warned.add(id(route))
                    error = describe_failure(failure)
                    _log.warning(
                        "shadow variant %r of pipeline %r failed (%s: %s); its failures are counted, not "
                        "logged again, for this split", variant.name, route.pipeline_name, error["type"], error["message"],
                    )  # fmt: skip

    def stats(self) -> dict[str, int]:
        """``{"ran", "failed", "skipped", "pending"}`` shadow runs of this app."""
        return {"ran": self.ran, "failed": self.failed, "skipped": self.skipped, "pending": self._queue.qsize()}

    def close(self) -> None:
        """Skip the shadow runs still queued and stop the thread once the current one ends."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            self.skipped += 1
        self._queue.put(None)
        if self._thread is not threading.current_thread():
            self._thread.join()
