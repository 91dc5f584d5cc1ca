"""The two views a model reads flows through, one contract for :class:`~nadkit.detection.detect.Scorer`.

A view turns pushed flows into the rows a detector reads, carries what it needs from one push to the
next, and says how the rows' scores go back to the flows:

- :class:`FlowScoring`: one row per flow (the flow pipeline's features). Features that look across
  flows carry their state in :class:`~nadkit.features.incremental.IncrementalFeatures`; a windowed
  detector also gets the last ``window - 1`` rows of each entity scored before in front of the new
  ones. A unit is a flow.
- :class:`BucketScoring`: one row per (entity, time bucket) (a fitted
  :class:`~nadkit.features.buckets.BucketView`). The flows of buckets still open are held until the
  time-ordered input has moved past them (less the allowed lateness); a windowed detector gets the
  last ``window - 1`` buckets of each entity, and the empty buckets since, in front. A unit is a
  bucket, and every flow takes its bucket's score.

Both give a :class:`ViewBatch` per push: the flows whose scores are final, the detector's input, which
of its rows are this batch's units, each flow's unit, extra record columns, and how to show the value
behind a feature of a unit. Both drop (``late="drop"``, counted) or refuse (``late="error"``) a flow
older than flows already released, so that no scored unit ever changes afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
import polars as pl

from nadkit.errors import ConfigError, SchemaError
from nadkit.features.buckets import KEY, NUMBER, BucketView, calendar_text
from nadkit.features.data import DEFAULT_ENTITY, entity_codes
from nadkit.features.incremental import IncrementalFeatures, OutOfOrderError
from nadkit.features.series import BucketSeries
from nadkit.models.base import DetectorData
from nadkit.sources import ROW
from nadkit.training.bundle import ModelBundle

log = logging.getLogger(__name__)

LatePolicy = Literal["error", "drop"]


@dataclass
class ViewBatch:
    """What a view gives the scorer for one push.

    ``flows``: the flows these scores are for (identity and raw columns); ``data``: the detector's
    input, this batch's units among rows of context; ``units``: the positions of the units among
    ``data``'s rows, in unit order (None: every row is a unit); ``unit_of_flow``: each flow's unit
    (None: one unit per flow, in order); ``columns``: extra record columns, one value per flow;
    ``matrix``: the units' scaled features when the view can recover values from them."""

    flows: pl.DataFrame
    data: DetectorData
    units: np.ndarray | None = None
    unit_of_flow: np.ndarray | None = None
    columns: list[pl.Series] = field(default_factory=list)
    matrix: np.ndarray | None = None
    #: the bucket series behind the units (bucket view)
    series: BucketSeries | None = None
    #: the units' features as float32 columns (flow view without context rows): the scored-rows
    #: hook gets them column-major from here (see :meth:`hook_rows`)
    by_feature: pl.DataFrame | None = None

    def hook_rows(self) -> np.ndarray:
        """The units' detector input for the scored-rows hook (``Scorer.on_scored``): column-major
        where the feature columns are at hand. The drift counts read each feature's values together;
        Polars copies its columns into that layout several times faster than a row-major matrix
        is transposed."""
        if self.units is None and self.by_feature is not None:
            return self.by_feature.to_numpy(order="fortran")
        features = self.data.features
        return features if self.units is None else features[self.units]


class ScoringView(Protocol):
    """What a :class:`~nadkit.detection.detect.Scorer` needs of a view (module docstring)."""

    names: tuple[str, ...]
    windowed: bool

    @property
    def held_rows(self) -> int: ...

    @property
    def time_ordered(self) -> bool: ...

    @property
    def lateness_us(self) -> int: ...

    @property
    def late_dropped(self) -> int: ...

    @property
    def input_columns(self) -> tuple[str, ...]: ...

    def push(self, flows: pl.DataFrame) -> ViewBatch | None: ...

    def flush(self) -> ViewBatch | None: ...

    def complete(self, flows: pl.DataFrame) -> ViewBatch | None: ...

    def values(self, batch: ViewBatch, units: np.ndarray, features: np.ndarray) -> np.ndarray | pl.Series: ...


def scoring_view(
    bundle: ModelBundle,
    *,
    entity: Sequence[str] = DEFAULT_ENTITY,
    lateness_s: float = 0.0,
    late: LatePolicy = "error",
) -> FlowScoring | BucketScoring:
    """The view ``bundle``'s model reads flows through."""
    if bundle.view is not None:
        return BucketScoring(bundle.view, bundle, lateness_s=lateness_s, late=late)
    return FlowScoring(bundle, entity=entity, lateness_s=lateness_s, late=late)


def _window_keep(bundle: ModelBundle) -> int:
    """How many rows before a unit a windowed detector reads (0 for row detectors)."""
    detector = bundle.detector
    return int(getattr(detector.config, "window", 1)) - 1 if detector.input == "windows" else 0


# ---------------------------------------------------------------------------------------------------
# one row per flow
# ---------------------------------------------------------------------------------------------------


@dataclass
class _WindowTail:
    """The last ``keep`` rows of each entity already scored, prepended to the next rows so that their
    windows see the same history as in one pass over the whole input."""

    keep: int
    key: tuple[str, ...]
    keys: pl.DataFrame | None = None
    time: np.ndarray | None = None
    features: np.ndarray | None = None

    def combine(
        self, keys: pl.DataFrame, times: np.ndarray | None, features: np.ndarray
    ) -> tuple[pl.DataFrame, np.ndarray | None, np.ndarray, int]:
        if self.features is None or len(self.features) == 0:
            return keys, times, features, 0
        assert self.keys is not None
        all_keys = pl.concat([self.keys, keys], how="vertical_relaxed")
        all_times = None if times is None or self.time is None else np.concatenate([self.time, times])
        return all_keys, all_times, np.concatenate([self.features, features]), len(self.features)

    def update(self, keys: pl.DataFrame, times: np.ndarray | None, features: np.ndarray) -> None:
        codes = entity_codes(keys, self.key) if self.key else None
        if codes is None:
            codes = np.zeros(len(features), dtype=np.int64)
        order_time = times if times is not None else np.arange(len(features))
        order = np.lexsort((np.arange(len(features)), order_time, codes))
        sorted_codes = codes[order]
        # position of each sorted row counted from the end of its entity's run
        ends = np.r_[sorted_codes[1:] != sorted_codes[:-1], True]
        run_end = np.flatnonzero(ends)
        end_of = run_end[np.searchsorted(run_end, np.arange(len(order)))]
        chosen = np.sort(order[(end_of - np.arange(len(order))) < self.keep])
        self.keys = keys[chosen]
        self.time = None if times is None else times[chosen]
        self.features = features[chosen]


class FlowScoring:
    """The per-flow view: the bundle's flow pipeline, with its cross-flow state and window history."""

    def __init__(
        self,
        bundle: ModelBundle,
        *,
        entity: Sequence[str] = DEFAULT_ENTITY,
        lateness_s: float = 0.0,
        late: LatePolicy = "error",
    ) -> None:
        self.pipeline = bundle.flow_pipeline()
        self.windowed = bundle.detector.input == "windows"
        self.entity = tuple(entity) if self.windowed else ()
        order_by = self.entity if self.windowed and self.pipeline.stateful else None
        self.features = IncrementalFeatures(
            self.pipeline, order_by=order_by, lateness_s=lateness_s, late=late
        )
        keep = _window_keep(bundle)
        self._tail = _WindowTail(keep=keep, key=self.entity) if self.windowed else None
        self.names = tuple(self.pipeline.feature_names_)
        self._raw = {name: self.pipeline.raw_columns_.get(name, []) for name in self.names}

    @property
    def held_rows(self) -> int:
        return self.features.held_rows

    @property
    def time_ordered(self) -> bool:
        """Whether the input must come in time order (features that look across flows)."""
        return self.pipeline.stateful

    @property
    def lateness_us(self) -> int:
        return self.features.lateness_us

    @property
    def late_dropped(self) -> int:
        return self.features.stats.late_dropped

    @property
    def input_columns(self) -> tuple[str, ...]:
        return tuple(self.pipeline.input_columns_)

    def push(self, flows: pl.DataFrame) -> ViewBatch | None:
        return self._batch(self.features.push(flows))

    def flush(self) -> ViewBatch | None:
        return self._batch(self.features.flush())

    def complete(self, flows: pl.DataFrame) -> ViewBatch | None:
        final = self.features.push(flows)
        rest = self.features.flush()
        parts = [p for p in (final, rest) if p.height]
        if len(parts) == 2:
            return self._batch(pl.concat(parts, how="vertical_relaxed"))
        return self._batch(parts[0] if parts else final)

    def _batch(self, augmented: pl.DataFrame) -> ViewBatch | None:
        if augmented.height == 0:
            return None
        features = self.pipeline.transform_augmented(augmented)
        # cast in Polars (in parallel, column by column), then one copy to row-major
        by_feature = features.select(pl.all().cast(pl.Float32))
        matrix = by_feature.to_numpy(order="c")
        times = (
            augmented["time"].dt.epoch("us").fill_null(0).to_numpy() if "time" in augmented.columns else None
        )
        if self._tail is None:
            data = self._data(augmented, matrix, times)
            return ViewBatch(augmented, data, matrix=matrix, by_feature=by_feature)
        keys = augmented.select([c for c in self.entity if c in augmented.columns])
        all_keys, all_times, all_matrix, offset = self._tail.combine(keys, times, matrix)
        self._tail.update(all_keys, all_times, all_matrix)
        data = self._data(all_keys, all_matrix, all_times)
        units = np.arange(offset, offset + augmented.height) if offset else None
        return ViewBatch(augmented, data, units=units, matrix=matrix)

    def _data(self, keys: pl.DataFrame, matrix: np.ndarray, times: np.ndarray | None) -> DetectorData:
        return DetectorData(
            features=matrix,
            feature_names=self.names,
            entity=entity_codes(keys, self.entity) if self.entity else None,
            time=times,
        )

    def values(self, batch: ViewBatch, units: np.ndarray, features: np.ndarray) -> pl.Series:
        """The raw value(s) behind feature ``features[i]`` of flow ``units[i]`` as text: ``296``, or
        ``a=1, b=2`` for several columns. One query: the alerted flows' raw columns are gathered once
        and every distinct set of columns formatted over them, then each entry picks its cell."""
        if len(features) == 0:
            return pl.Series("v", [], dtype=pl.String)
        columns = set(batch.flows.columns)
        distinct, feature_slot = np.unique(features, return_inverse=True)
        # the raw columns behind each distinct feature (those the flows have); features that share
        # their columns share one formatted text
        raws = [tuple(c for c in self._raw[self.names[j]] if c in columns) for j in distinct]
        shapes = sorted({raw for raw in raws if raw})
        if not shapes:
            return pl.repeat(None, len(features), dtype=pl.String, eager=True).alias("v")
        flows, unit_row = np.unique(units, return_inverse=True)
        needed = sorted({c for raw in shapes for c in raw})
        texts = batch.flows.select(pl.col(needed).gather(pl.Series(flows))).select(
            [self._value_text(raw).alias(f"v{k}") for k, raw in enumerate(shapes)]
        )
        # the texts column after column in one series; an entry's cell is (its shape, its flow)
        cells = pl.concat([texts.to_series(k) for k in range(texts.width)]).append(
            pl.Series([None], dtype=pl.String)
        )
        shape_of = {raw: k for k, raw in enumerate(shapes)}
        slot = np.asarray([shape_of.get(raw, -1) for raw in raws], dtype=np.int64)[feature_slot]
        index = np.where(slot >= 0, slot * len(flows) + unit_row, len(cells) - 1)
        return cells.gather(pl.Series(index)).alias("v")

    @staticmethod
    def _value_text(raw: Sequence[str]) -> pl.Expr:
        if len(raw) == 1:
            return pl.col(raw[0]).cast(pl.String)
        parts: list[pl.Expr] = []
        for i, column in enumerate(raw):
            parts.extend(
                [
                    pl.lit(("" if i == 0 else ", ") + column + "="),
                    pl.col(column).cast(pl.String).fill_null("null"),
                ]
            )
        return pl.concat_str(parts)


# ---------------------------------------------------------------------------------------------------
# one row per (entity, time bucket)
# ---------------------------------------------------------------------------------------------------


class BucketScoring:
    """The time-bucket view: flows held until their bucket closes, windows over an entity's buckets."""

    def __init__(
        self,
        view: BucketView,
        bundle: ModelBundle,
        *,
        lateness_s: float = 0.0,
        late: LatePolicy = "error",
    ) -> None:
        if not lateness_s >= 0:
            raise ConfigError(f"lateness_s must be a non-negative number of seconds, got {lateness_s}")
        if late not in ("error", "drop"):
            raise ConfigError(f"late must be 'error' or 'drop', got {late!r}")
        self.view = view
        self.names = tuple(view.features)
        self.windowed = bundle.detector.input == "windows"
        self.late = late
        self._lateness_us = round(lateness_s * 1e6)
        self._keep = _window_keep(bundle)
        self._held: pl.DataFrame | None = None
        self._tail: pl.DataFrame | None = None
        self._max_seen: int | None = None
        self._watermark: int | None = None  # the newest released flow's time
        self._received = 0
        self._late_dropped = 0

    @property
    def held_rows(self) -> int:
        """Flows of buckets still open (or within the lateness), held until their bucket closes."""
        return 0 if self._held is None else self._held.height

    @property
    def time_ordered(self) -> bool:
        return True

    @property
    def lateness_us(self) -> int:
        return self._lateness_us

    @property
    def late_dropped(self) -> int:
        return self._late_dropped

    @property
    def input_columns(self) -> tuple[str, ...]:
        return self.view.input_columns

    def push(self, flows: pl.DataFrame) -> ViewBatch | None:
        """Take flows; score the buckets that closed (every flow at least the lateness older than the
        newest seen is released, and a bucket closes when a released flow lies past its end)."""
        if flows.height == 0:
            return None
        times = self._times(flows)
        flows = self._drop_late(flows, times)
        if flows.height == 0:
            return None
        times = flows["time"].dt.epoch("us").to_numpy()
        newest = int(times.max())
        self._max_seen = newest if self._max_seen is None else max(self._max_seen, newest)
        released = times[times <= self._max_seen - self._lateness_us]
        if len(released):
            top = int(released.max())
            self._watermark = top if self._watermark is None else max(self._watermark, top)
        held = flows if self._held is None else pl.concat([self._held, flows], how="vertical_relaxed")
        if self._watermark is None:
            self._held = held
            return None
        width = self.view.width_us
        ends = (held["time"].dt.epoch("us") // width + 1) * width
        closed = (ends <= self._watermark).to_numpy()
        self._held = held.filter(pl.Series(~closed))
        return self._batch(held.filter(pl.Series(closed)))

    def flush(self) -> ViewBatch | None:
        """Score the flows still held (end of input)."""
        held, self._held = self._held, None
        if held is not None and held.height:
            newest = int(held["time"].dt.epoch("us").max())  # type: ignore[arg-type]
            self._watermark = newest if self._watermark is None else max(self._watermark, newest)
        return self._batch(held) if held is not None else None

    def complete(self, flows: pl.DataFrame) -> ViewBatch | None:
        """A whole table at once (its flows in any order): every bucket it holds is closed."""
        if flows.height == 0:
            return None
        self._times(flows)
        return self._batch(flows)

    def _times(self, flows: pl.DataFrame) -> np.ndarray:
        if "time" not in flows.columns:
            raise SchemaError(
                "the model scores time buckets and needs each flow's time; these flows have none",
                column="time",
            )
        missing = flows["time"].is_null()
        if missing.any():
            first = int(missing.arg_true()[0])
            row = int(flows[ROW][first]) + 1 if ROW in flows.columns else self._received + first + 1
            raise SchemaError(
                f"row {row}: no time (the model scores time buckets and needs every flow's time)",
                column="time",
            )
        self._received += flows.height
        return flows["time"].dt.epoch("us").to_numpy()

    def _drop_late(self, flows: pl.DataFrame, times: np.ndarray) -> pl.DataFrame:
        if self._watermark is None:
            return flows
        late = times < self._watermark
        count = int(late.sum())
        if not count:
            return flows
        if self.late == "error":
            first = int(np.flatnonzero(late)[0])
            before = self._received - flows.height
            row = int(flows[ROW][first]) + 1 if ROW in flows.columns else before + first + 1
            raise OutOfOrderError(
                f"flow {row} is older than flows already processed; the input is not in time order "
                "(sort it, or allow lateness)"
            )
        self._late_dropped += count
        log.warning("dropped %d late flow(s) older than the buckets already scored", count)
        return flows.filter(pl.Series(~late))

    def _batch(self, flows: pl.DataFrame) -> ViewBatch | None:
        if flows.height == 0:
            return None
        series = self.view.series(flows)
        new = self.view.working_frame(series).with_columns(
            pl.int_range(pl.len(), dtype=pl.Int64).alias("_series_row")
        )
        combined = self._with_history(new)
        self._remember(combined)
        position = combined["_series_row"]
        data = self.view.data_of(combined)
        units: np.ndarray | None = None
        order = position.to_numpy()
        if combined.height != new.height or not np.array_equal(order, np.arange(new.height)):
            # the units in bucket-row order, among the history rows
            units = np.empty(series.frame.height, dtype=np.int64)
            is_new = position.is_not_null().to_numpy()
            units[position.drop_nulls().to_numpy()] = np.flatnonzero(is_new)
        bucket = series.frame["bucket"].gather(series.row_bucket).alias("bucket")
        return ViewBatch(
            flows, data, units=units, unit_of_flow=series.row_bucket, columns=[bucket], series=series
        )

    def _with_history(self, new: pl.DataFrame) -> pl.DataFrame:
        """``new`` bucket rows (with ``_series_row``) after the remembered rows of their entities and
        the empty buckets between (``_series_row`` null), sorted by entity and bucket."""
        if self._keep == 0 or self._tail is None or self._tail.height == 0:
            return new
        keys = new.select(KEY).unique()
        before = self._tail.join(keys, on=KEY, how="semi", nulls_equal=True)
        gaps = (
            new.group_by(KEY)
            .agg(pl.col(NUMBER).min().alias("_first"))
            .join(before.group_by(KEY).agg(pl.col(NUMBER).max().alias("_last")), on=KEY, nulls_equal=True)
            .with_columns(
                pl.max_horizontal(pl.col("_last") + 1, pl.col("_first") - self._keep).alias("_from")
            )
            .filter(pl.col("_from") < pl.col("_first"))
        )
        counts = (gaps["_first"] - gaps["_from"]).to_numpy()
        total = int(counts.sum())
        step = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        empty = self.view.empty_rows(
            gaps[KEY].gather(np.repeat(np.arange(gaps.height), counts)).alias(KEY),
            np.repeat(gaps["_from"].to_numpy(), counts) + step,
        )
        none = pl.lit(None, dtype=pl.Int64).alias("_series_row")
        parts = [before.with_columns(none), empty.with_columns(none), new]
        return pl.concat(parts, how="vertical_relaxed").sort([KEY, NUMBER], maintain_order=True)

    def _remember(self, combined: pl.DataFrame) -> None:
        """Keep the last ``window - 1`` bucket rows of every entity."""
        if self._keep == 0:
            return
        last = combined.drop("_series_row").group_by(KEY, maintain_order=True).tail(self._keep)
        if self._tail is not None and self._tail.height:
            others = self._tail.join(last.select(KEY).unique(), on=KEY, how="anti", nulls_equal=True)
            last = pl.concat([others, last], how="vertical_relaxed")
        self._tail = last

    def values(self, batch: ViewBatch, units: np.ndarray, features: np.ndarray) -> np.ndarray:
        """The bucket's value of each listed metric (counts without decimals, shares to three places);
        a calendar feature reads as the bucket's time (``Thu 18:00 UTC``)."""
        assert batch.series is not None
        metrics = len(self.view.metrics)
        raw = batch.series.frame.select(self.view.metrics).to_numpy()
        starts = batch.series.frame["bucket"].dt.epoch("us").to_numpy()
        return np.asarray(
            [
                _metric_text(raw[u, j]) if j < metrics else calendar_text(int(starts[u]))
                for u, j in zip(units.tolist(), features.tolist(), strict=True)
            ],
            dtype=object,
        )


def _metric_text(value: float) -> str:
    """A bucket metric as text: counts without decimals, shares to three places."""
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:.3f}"


__all__ = ["BucketScoring", "FlowScoring", "ScoringView", "ViewBatch", "scoring_view"]
