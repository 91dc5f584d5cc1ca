"""Features of flows that arrive in pieces (file chunks, live micro-batches), equal to the features the
fitted pipeline computes on the whole table at once.

Per-flow features need nothing but the flow. Three feature families look across flows and need state
carried from one piece to the next:

- **traffic counters** look back: a flow's counts need the flows of the last ``slow_window_s``
  seconds and the last ``connections`` flows before it. They are computed as soon as a flow is
  released, on the flow plus a *context* of recent flows kept from earlier pieces.
- **cadence features** look back too, per pair of hosts and service: the context holds each pair's
  last ``gaps`` flows of the last ``horizon_s`` seconds.
- **segment features** describe a flow's whole segment, later flows included: a flow is *held* until
  its segment is closed, i.e. no flow of its key came for longer than ``gap_s``, or the clock has
  passed the end of the segment's ``max_span_s`` window.

Both assume flows arrive in time order. A reorder buffer of ``lateness_s`` seconds absorbs small
disorder (flow exporters emit a flow when it ends, not when it starts); a flow older than what was
already released is *late*: an error, or dropped and counted, as chosen.

With ``order_by`` (the entity key of a windowed detector, e.g. ``src``) flows are also released per
entity in order: a flow waits until every earlier flow of its entity is final, so a window of an
entity's flows is complete when it is scored.

Memory holds the contexts (the counters' longest window, the pairs' last flows), the flows of open
segments, and flows waiting for their entity; :attr:`IncrementalFeatures.held_rows` reports it.
Flows come out in time order of becoming final, each with the ``__seq`` column (its arrival number)
to restore input order.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from nadkit.errors import ConfigError, NadkitError
from nadkit.features import cadence as cadence_module
from nadkit.features import counters as counters_module
from nadkit.features import segments as segments_module
from nadkit.features.pipeline import FeaturePipeline

log = logging.getLogger(__name__)

#: arrival number of each flow, added to every piece
SEQ = "__seq"
_TIME = "__time_us"

LatePolicy = Literal["error", "drop"]


class OutOfOrderError(NadkitError):
    """A flow arrived older than flows already released (the input is not in time order)."""


@dataclass
class IncrementalStats:
    """Counts since the start: flows received, emitted with final features, dropped as late."""

    received: int = 0
    emitted: int = 0
    late_dropped: int = 0


def _empty_like(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.clear()


def _concat(first: pl.DataFrame | None, second: pl.DataFrame) -> pl.DataFrame:
    if first is None or first.height == 0:
        return second
    return pl.concat([first, second], how="diagonal_relaxed")


class IncrementalFeatures:
    """Carry the state of counters and segments across pieces of a flow table (module docstring).

    ``push(piece)`` returns the flows whose features became final (the input columns, ``__seq``, and the
    counter and segment columns the pipeline computes); ``flush()`` returns the rest at the end.
    ``pipeline.transform_augmented`` turns either into the scaled features.
    """

    def __init__(
        self,
        pipeline: FeaturePipeline,
        *,
        order_by: Sequence[str] | None = None,
        lateness_s: float = 0.0,
        late: LatePolicy = "error",
    ) -> None:
        if not lateness_s >= 0:
            raise ConfigError(f"lateness_s must be a non-negative number of seconds, got {lateness_s}")
        if late not in ("error", "drop"):
            raise ConfigError(f"late must be 'error' or 'drop', got {late!r}")
        self.pipeline = pipeline
        self.counters = bool(pipeline.counters_computed_)
        self.segments = bool(pipeline.segments_computed_)
        self.cadence = bool(pipeline.cadence_computed_)
        self.order_by = tuple(order_by or ())
        self.lateness_us = round(lateness_s * 1e6)
        self.late = late
        self.stats = IncrementalStats()
        self._next_seq = 0
        self._reorder: pl.DataFrame | None = None  # received, not yet released (lateness buffer)
        self._context: pl.DataFrame | None = None  # released flows the counters still look back on
        self._pairs: pl.DataFrame | None = None  # released flows the cadence features still look back on
        self._held: pl.DataFrame | None = None  # flows of open segments (counters done)
        self._waiting: pl.DataFrame | None = None  # final flows waiting for earlier flows of their entity
        self._max_seen: int | None = None
        self._watermark: int | None = None  # time of the newest released flow
        counter_config, windows = pipeline.config.counters, pipeline.config.counter_windows
        # what later flows look back on: the longest time window counted, the last `connections` flows
        self._context_us = round(max(counter_config.spans_s(windows).values(), default=0.0) * 1e6)
        self._context_rows = counter_config.connections if "connections" in windows else 0
        self._gap_us = round(pipeline.config.segments.gap_s * 1e6)

    @property
    def _computes(self) -> bool:
        """Whether columns are computed across flows (counters, segments or cadence)."""
        return self.counters or self.segments or self.cadence

    @property
    def stateful(self) -> bool:
        """Whether anything is carried between pieces (counters, segments, cadence or entity order)."""
        return self._computes or bool(self.order_by)

    @property
    def held_rows(self) -> int:
        """Flows kept in memory now (lateness buffer, open segments, entity order, look-back contexts)."""
        kept = (self._reorder, self._held, self._waiting, self._context, self._pairs)
        return sum(f.height for f in kept if f is not None)

    # -- the interface ------------------------------------------------------------------------------

    def push(self, piece: pl.DataFrame) -> pl.DataFrame:
        """Take the next piece of flows; return the flows whose features are now final."""
        self.pipeline.check_context_columns(piece.columns)
        piece = piece.with_columns(
            pl.int_range(self._next_seq, self._next_seq + piece.height, dtype=pl.Int64).alias(SEQ)
        )
        self._next_seq += piece.height
        self.stats.received += piece.height
        if not self._computes and not self.order_by:
            self.stats.emitted += piece.height
            return piece
        if not self._computes:
            return self._emit(self._order(piece, final=False))
        piece = piece.with_columns(pl.col("time").dt.epoch("us").fill_null(0).alias(_TIME))
        piece = self._drop_late(piece)
        if piece.height:
            newest = int(piece[_TIME].max())  # type: ignore[arg-type]
            self._max_seen = newest if self._max_seen is None else max(self._max_seen, newest)
        pending = _concat(self._reorder, piece)
        if self._max_seen is None:
            return self._emit(_empty_like(piece))
        release = pending.filter(pl.col(_TIME) <= self._max_seen - self.lateness_us)
        self._reorder = pending.filter(pl.col(_TIME) > self._max_seen - self.lateness_us)
        return self._emit(self._process(release.sort(_TIME, SEQ), final=False))

    def flush(self) -> pl.DataFrame:
        """Release everything still held (the end of the input): the remaining flows, features final.
        Pieces pushed afterwards start from scratch for the counters (no context is kept)."""
        if not self._computes:
            if not self.order_by or self._waiting is None:
                return pl.DataFrame()
            return self._emit(self._order(None, final=True))
        if self._reorder is None and self._held is None and self._waiting is None:
            return pl.DataFrame()
        release = self._reorder if self._reorder is not None else None
        self._reorder = None
        if release is None:
            template = self._held if self._held is not None else self._waiting
            assert template is not None
            release = _empty_like(template)
        out = self._emit(self._process(release.sort(_TIME, SEQ), final=True))
        self._context = self._pairs = None  # the end of the input: nothing left to look back from
        return out

    # -- steps ----------------------------------------------------------------------------------------

    def _drop_late(self, piece: pl.DataFrame) -> pl.DataFrame:
        if self._watermark is None:
            return piece
        late = piece[_TIME] < self._watermark
        count = int(late.sum())
        if not count:
            return piece
        if self.late == "error":
            first = int(late.arg_true()[0])
            raise OutOfOrderError(
                f"flow {self.stats.received - piece.height + first + 1} is older than flows already "
                f"processed; the input is not in time order (sort it, or allow lateness)"
            )
        self.stats.late_dropped += count
        log.warning("dropped %d late flow(s) older than the flows already processed", count)
        return piece.filter(~late)

    def _process(self, release: pl.DataFrame, *, final: bool) -> pl.DataFrame:
        """Counters for ``release`` (time-sorted), then segment closure; returns the final flows."""
        if release.height:
            self._watermark = int(release[_TIME].max())  # type: ignore[arg-type]
        if self.counters and release.height:
            release = self._count(release)
        if self.cadence and release.height:
            release = self._cadence(release)
        finished = self._close_segments(release, final=final) if self.segments else release
        return self._order(finished, final=final)

    def _count(self, release: pl.DataFrame) -> pl.DataFrame:
        """The counter columns of ``release`` computed with the context of earlier flows."""
        needed = [*counters_module.REQUIRED, _TIME, SEQ]
        own = release.select(needed)
        buffer = _concat(self._context, own)
        config = self.pipeline.config
        counted = counters_module.traffic_counters(buffer, config.counters, config.counter_windows)
        values = counted.slice(buffer.height - release.height)
        stale = [c for c in values.columns if c in release.columns]
        release = release.drop(stale).hstack(values)
        # keep what later flows may look back on: the longest window and the last `connections` flows
        newest = int(buffer[_TIME].max())  # type: ignore[arg-type]
        recent = buffer[_TIME] > newest - self._context_us
        recent = recent | (pl.int_range(0, buffer.height, eager=True) >= buffer.height - self._context_rows)
        self._context = buffer.filter(recent)
        return release

    def _cadence(self, release: pl.DataFrame) -> pl.DataFrame:
        """The cadence columns of ``release`` computed with each pair's last flows from earlier pieces."""
        own = release.select([*cadence_module.REQUIRED, _TIME, SEQ])
        buffer = _concat(self._pairs, own)
        config = self.pipeline.config.cadence
        values = cadence_module.cadence_features(buffer, config).slice(buffer.height - release.height)
        release = release.drop([c for c in values.columns if c in release.columns]).hstack(values)
        self._pairs = cadence_module.context(buffer, config, int(buffer[_TIME].max()))  # type: ignore[arg-type]
        return release

    def _close_segments(self, release: pl.DataFrame, *, final: bool) -> pl.DataFrame:
        """Flows whose segment can no longer grow, with the segment columns; the rest stay held."""
        held = _concat(self._held, release)
        if held.height == 0:
            self._held = None
            return held
        config = self.pipeline.config.segments
        features, ends = segments_module.segment_features_and_ends(held, config)
        if final:
            closed = np.ones(held.height, dtype=bool)
        else:
            assert self._watermark is not None
            closed = (self._watermark - ends) > self._gap_us
            windows = config.window_of(ends)
            if windows is not None:
                # a later flow is at the watermark or after it: in a later window, a new segment
                closed |= config.window_of(np.asarray(self._watermark)) > windows
        mask = pl.Series(closed)
        self._held = held.filter(~mask)
        stale = [c for c in features.columns if c in held.columns]
        return held.filter(mask).drop(stale).hstack(features.filter(mask))

    def _order(self, finished: pl.DataFrame | None, *, final: bool) -> pl.DataFrame:
        """With ``order_by``: let a flow out only after every earlier flow of its entity."""
        if not self.order_by:
            assert finished is not None
            return finished
        ready = self._waiting if finished is None else _concat(self._waiting, finished)
        if ready is None or ready.height == 0 or final:
            self._waiting = None
            return ready if ready is not None else pl.DataFrame()
        blockers = [f for f in (self._reorder, self._held) if f is not None and f.height]
        if not blockers:
            self._waiting = None
            return ready
        key = list(self.order_by)
        # the earliest not-yet-final flow of each entity (arrival order is time order once released)
        earliest = pl.concat([b.select([*key, SEQ]) for b in blockers], how="vertical_relaxed")
        earliest = earliest.group_by(key).agg(pl.col(SEQ).min().alias("__first_open"))
        joined = ready.join(earliest, on=key, how="left", nulls_equal=True)
        free = joined["__first_open"].is_null() | (joined[SEQ] < joined["__first_open"])
        self._waiting = ready.filter(~free)
        return ready.filter(free)

    def _emit(self, frame: pl.DataFrame) -> pl.DataFrame:
        if frame.width == 0:
            return frame
        if _TIME in frame.columns:
            frame = frame.drop(_TIME)
        frame = frame.sort(SEQ)
        self.stats.emitted += frame.height
        return frame


def augment_in_pieces(
    pipeline: FeaturePipeline, frame: pl.DataFrame, bounds: Sequence[int], **options: object
) -> pl.DataFrame:
    """The augmented table of ``frame`` fed in pieces cut at ``bounds`` (row positions), in input order:
    for checking that pieces give the whole table's features."""
    state = IncrementalFeatures(pipeline, **options)  # type: ignore[arg-type]
    cuts = [0, *sorted(b for b in bounds if 0 < b < frame.height), frame.height]
    out = [state.push(frame.slice(start, stop - start)) for start, stop in itertools.pairwise(cuts)]
    out.append(state.flush())
    parts = [p for p in out if p.height]
    return pl.concat(parts, how="vertical_relaxed").sort(SEQ) if parts else frame.head(0)


__all__ = ["SEQ", "IncrementalFeatures", "IncrementalStats", "OutOfOrderError", "augment_in_pieces"]
