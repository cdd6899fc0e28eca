"""How a call reaches the ops that answer it, when a pipeline is split or its calls are logged.

Most pipelines need none of this: a call runs the pipeline object the app serves and the
response carries its versions (:class:`VersionCache`). A pipeline that is split between
variants (:mod:`chariots_core.serving.splits`) or whose predictions are logged
(:mod:`chariots_core.serving.prediction_log`) has a :class:`Route`: one immutable object that
holds everything a call needs (the variants and their pipeline objects, the shadow, the log),
replaced as a whole by each deployment. A call reads the route once, so it finishes on the
variant it started with, and a new split or load never mixes with a call in flight.
"""

from __future__ import annotations

import bisect
import copy
import random
import time
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import ConfigError, describe_failure
from ..pipelines.callbacks import overrides
from ..pipelines.nodes import Node
from ..pipelines.ops import BaseOp
from ..pipelines.pipeline import Pipeline
from ..pipelines.runners import BaseRunner
from ..versioning import Version
from .prediction_log import PredictionLog, snapshot
from .responses import JobStatus, PipelineResponse
from .splits import ShadowRunner, key_point
from .workers import wants_worker

if TYPE_CHECKING:
    from .app import Chariots

__all__ = ["VersionCache", "Variant", "Route", "check_key"]


@attrs.frozen
class VersionCache:
    """The versions of one pipeline object's op nodes, split by whether they can change.

    An op's version can only change if its class computes ``op_version`` itself (an ML op
    adds each fit's identity); every other op reports its class version, fixed when the
    class was created. Only the first kind is asked again on each call.
    """

    pipeline: Pipeline
    fixed: dict[str, Version]  # every op node's name, in order; values of the fixed ones
    changing: tuple[Node, ...]  # the nodes whose version is asked on each call

    @classmethod
    def of(cls, pipeline: Pipeline) -> VersionCache:
        """Compute the cache for ``pipeline``."""
        last: dict[str, Node] = {}
        for node in pipeline.op_nodes():
            last[node.name] = node  # a name used twice reports its last node, as it always did
        changing = tuple(node for node in last.values() if overrides(node.op, BaseOp, "op_version"))
        return cls(pipeline, {name: node.node_version for name, node in last.items()}, changing)

    def versions(self) -> dict[str, Version]:
        """A new dict of the current versions (callers may keep or change it)."""
        versions = dict(self.fixed)
        for node in self.changing:
            versions[node.name] = node.node_version
        return versions


@attrs.frozen
class Variant:
    """One deployment a route serves: ``name`` is ``None`` when the pipeline is not split."""

    name: str | None
    pipeline: Pipeline
    versions: VersionCache = attrs.field()

    @versions.default
    def _versions(self) -> VersionCache:
        return VersionCache.of(self.pipeline)


def check_key(key: Any) -> None:
    """Raise :class:`ConfigError` unless ``key`` is ``None`` or a string."""
    if key is not None and not isinstance(key, str):
        raise ConfigError(f"'key' must be None or a string that identifies the caller (got {key!r})")


@attrs.frozen(eq=False)
class Route:
    """Everything a call of one split or logged pipeline needs, read once per call.

    :param pipeline_name: the pipeline's name.
    :param runner: runs the variants (the app's runner).
    :param served: the variants that answer calls (one when the pipeline is not split).
    :param shares: each served variant's share of the calls, in the same order (sums to 1).
    :param shadow: the variant that runs after each call without answering it.
    :param log: where calls are logged (``None``: not logged).
    :param hashes_only: log the sha256 of inputs and outputs instead of the values.
    :param shadows: the app's shadow runner (required with a ``shadow``).
    """

    pipeline_name: str
    runner: BaseRunner
    served: tuple[Variant, ...]
    shares: tuple[float, ...] = (1.0,)
    shadow: Variant | None = None
    log: PredictionLog | None = None
    hashes_only: bool = False
    shadows: ShadowRunner | None = None
    _bounds: tuple[float, ...] = attrs.field(init=False)
    _random: random.Random = attrs.field(init=False, factory=random.Random)

    @_bounds.default
    def _cumulative(self) -> tuple[float, ...]:
        total, bounds = 0.0, []
        for share in self.shares[:-1]:
            total += share
            bounds.append(total)
        return tuple(bounds)

    @property
    def split(self) -> bool:
        """Whether the pipeline is split between variants."""
        return len(self.served) > 1 or self.shadow is not None

    def pick(self, key: str | None) -> Variant:
        """The variant that answers a call with ``key`` (see :mod:`~chariots_core.serving.splits`)."""
        if len(self.served) == 1:
            return self.served[0]
        point = self._random.random() if key is None else key_point(self.pipeline_name, key)
        return self.served[bisect.bisect_right(self._bounds, point)]

    def call(self, app: Chariots, pipeline_input: Any, use_worker: bool | None, key: str | None) -> PipelineResponse:
        """Answer one call: pick a variant, run it (or queue it), then the shadow and the log."""
        variant = self.pick(key)
        pipeline = variant.pipeline
        if wants_worker(app.use_worker, pipeline.use_worker, use_worker):
            response = app._submit(pipeline, pipeline_input)
            response.variant = variant.name
            return response
        log, shadow = self.log, self.shadow
        shadow_input = copy.deepcopy(pipeline_input) if shadow is not None else None
        logged_input = snapshot(pipeline_input) if log is not None else None  # before ops may change it
        at, started = time.time_ns(), time.perf_counter_ns()
        try:
            value = self.runner.run(pipeline, pipeline_input)
        except Exception as exc:
            if log is not None:
                self._log_failure(variant, at, time.perf_counter_ns() - started, logged_input, exc, False)
            raise
        finally:
            if shadow is not None and self.shadows is not None:  # whatever the call's outcome
                self.shadows.submit(self, shadow, shadow_input)
        versions = variant.versions.versions()
        if log is not None:
            log.add(
                self.pipeline_name, at, time.perf_counter_ns() - started, variant.name, versions, logged_input,
                snapshot(value), None, False, self.hashes_only,
            )  # fmt: skip
        return PipelineResponse(value=value, versions=versions, job_status=JobStatus.done, variant=variant.name)

    def run_shadow(self, variant: Variant, pipeline_input: Any) -> BaseException | None:
        """Run the shadow ``variant`` on ``pipeline_input`` and log it; return what it raised."""
        log = self.log
        logged_input = snapshot(pipeline_input) if log is not None else None
        at, started = time.time_ns(), time.perf_counter_ns()
        try:
            value = self.runner.run(variant.pipeline, pipeline_input)
        except Exception as exc:
            if log is not None:
                self._log_failure(variant, at, time.perf_counter_ns() - started, logged_input, exc, True)
            return exc
        if log is not None:
            log.add(
                self.pipeline_name, at, time.perf_counter_ns() - started, variant.name, variant.versions.versions(),
                logged_input, snapshot(value), None, True, self.hashes_only,
            )  # fmt: skip
        return None

    def _log_failure(
        self, variant: Variant, at: int, latency: int, logged_input: str | None, failure: BaseException, shadow: bool
    ) -> None:
        assert self.log is not None
        described = describe_failure(failure)
        self.log.add(
            self.pipeline_name, at, latency, variant.name, variant.versions.versions(), logged_input, None,
            f"{described['type']}: {described['message']}", shadow, self.hashes_only,
        )  # fmt: skip
