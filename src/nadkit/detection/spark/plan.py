"""How flows are partitioned so that features looking across flows stay exact
(:class:`PartitionPlan`, :func:`partition_plan`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nadkit.features.buckets import BucketView
from nadkit.features.cadence import PAIR_KEY
from nadkit.features.pipeline import FeaturePipeline
from nadkit.features.segments import SUBNET_OF


@dataclass(frozen=True)
class PartitionPlan:
    """How flows must be partitioned so that features looking across flows stay exact.

    ``key``: flows equal in these columns share a partition (``dst_subnet`` / ``src_subnet`` are
    derived from the addresses as the segment features derive them); ``single``: all flows share
    one partition (state every flow shares); ``ordered``: a partition's flows are scored in time
    order; ``counters``: traffic counters are computed first, on time ranges with look-back context.
    """

    key: tuple[str, ...] = ()
    single: bool = False
    ordered: bool = False
    counters: bool = False

    def describe(self) -> str:
        parts = ["one partition" if self.single else f"by {', '.join(self.key)}" if self.key else "any"]
        if self.counters:
            parts.append("counters on time ranges")
        if self.ordered:
            parts.append("time order")
        return "; ".join(parts)


def partition_plan(
    pipeline: FeaturePipeline,
    *,
    windowed: bool,
    columns: Sequence[str],
    entity: Sequence[str] | None = None,
) -> PartitionPlan:
    """The :class:`PartitionPlan` of a fitted pipeline and detector input over a table with ``columns``.

    Segment features group flows by the segment key, a windowed detector by its entity, cadence
    features by pair (source, destination, protocol, destination port): the partition key is the
    part of the segment key that all of them determine (the whole segment key for row detectors).
    Computed counters look at all traffic and get their own time-range stage.
    """
    if entity is None:
        from nadkit.features.data import DEFAULT_ENTITY

        entity = DEFAULT_ENTITY
    counters = bool(pipeline.counters_computed_)
    segments = bool(pipeline.segments_computed_)
    cadence = bool(pipeline.cadence_computed_)
    present = tuple(entity) if entity and all(c in columns for c in entity) else ()

    def within(key: tuple[str, ...], columns: tuple[str, ...]) -> tuple[str, ...]:
        # the columns of `key` that `columns` determine (a subnet by its address)
        return tuple(c for c in key if c in columns or SUBNET_OF.get(c) in columns)

    if segments or cadence:
        key = tuple(pipeline.config.segments.key) if segments else PAIR_KEY
        if windowed:
            key = within(key, present)
        if cadence:
            key = within(key, PAIR_KEY)
        return PartitionPlan(key=key, single=not key, ordered=True, counters=counters)
    if windowed:
        return PartitionPlan(key=present, single=not present, ordered=True, counters=counters)
    return PartitionPlan(ordered=counters, counters=counters)


def bucket_plan(view: BucketView) -> PartitionPlan:
    """The :class:`PartitionPlan` of a model of time buckets: a bucket's metrics need all of its
    flows, and windows the buckets before it, so an entity's flows share a partition (all flows share
    one for the whole network's series), scored in time order."""
    by = view.config.by
    return PartitionPlan(key=(by,) if by else (), single=not by, ordered=True)


def _pipeline_variant(pipeline: FeaturePipeline, **changes: bool) -> FeaturePipeline:
    """The fitted pipeline with some of its computed-column steps switched off (their columns are
    then read from the input, where an earlier stage of the job put them)."""
    return FeaturePipeline.from_dict({**pipeline.to_dict(), **changes})
