"""The time-bucket view as a fitted, saved stage: what a detector of per-bucket metrics reads.

A :class:`BucketView` holds the bucket settings with the application vocabulary fixed at fit time and
the scaling of the metrics (``log1p``, then standardised on the training buckets). It turns flows
into a :class:`~nadkit.features.series.BucketSeries` and that into the
:class:`~nadkit.models.base.DetectorData` detectors read: one row per (entity, bucket), the entity
code and the bucket's start time, so windowed detectors read consecutive buckets of one entity and
row detectors read one bucket at a time. Scores of the buckets are carried back to their flows with
:meth:`BucketSeries.to_flows`.

Metric rows can be given directly too (:meth:`BucketView.data_of`): detection in chunks prepends the
last buckets of every entity it scored before, and the empty buckets between them and the new ones,
so each window reads what it would read in one pass over the whole input.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from nadkit.errors import ConfigError, SchemaError
from nadkit.features.calendar import CYCLES, calendar_matrix, calendar_names, spanned_cycles
from nadkit.features.counters import column_codes
from nadkit.features.data import DetectorData
from nadkit.features.series import DISTINCT_METRICS, BucketConfig, BucketSeries, bucket_metrics
from nadkit.schema import CANONICAL

log = logging.getLogger(__name__)

#: the key column of the working frames: the ``by`` column's value, or 0 for the whole network
KEY = "_key"
#: the bucket number (start time in microseconds divided by the bucket width)
NUMBER = "_number"
#: the calendar features of a bucket (:attr:`BucketConfig.calendar`), from its start time (UTC)
CALENDAR = tuple(calendar_names(tuple(CYCLES)))


def calendar_text(start_us: int) -> str:
    """The bucket start as an analyst reads it: ``Tue 14:05 UTC``."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(start_us / 1e6, UTC).strftime("%a %H:%M UTC")


@dataclass(frozen=True)
class BucketScaling:
    """Standardisation of ``log1p`` bucket metrics, fitted on training buckets."""

    columns: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, series: BucketSeries) -> BucketScaling:
        """Learn the mean and spread of each metric's ``log1p`` on ``series``."""
        values = np.log1p(np.maximum(series.matrix().astype(np.float64), 0.0))
        std = values.std(axis=0)
        return cls(columns=series.metrics, mean=values.mean(axis=0), std=np.where(std > 0, std, 1.0))

    def transform(self, series: BucketSeries) -> np.ndarray:
        """The scaled ``(buckets, metrics)`` float32 matrix of ``series``."""
        if tuple(series.metrics) != self.columns:
            raise ConfigError("bucket metrics differ from the ones the scaling was fitted on")
        return self.transform_matrix(series.matrix())

    def transform_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Scale raw metric values, columns in :attr:`columns` order."""
        values = np.log1p(np.maximum(np.asarray(matrix, dtype=np.float64), 0.0))
        return ((values - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"columns": list(self.columns), "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BucketScaling:
        """Read what :meth:`to_dict` wrote."""
        columns = tuple(str(c) for c in data["columns"])
        mean = np.asarray(data["mean"], dtype=np.float64)
        std = np.asarray(data["std"], dtype=np.float64)
        if mean.shape != (len(columns),) or std.shape != (len(columns),) or not (std > 0).all():
            raise ConfigError("bucket scaling: mean and std must hold one value per metric, std positive")
        return cls(columns=columns, mean=mean, std=std)


def bucket_detector_data(series: BucketSeries, scaling: BucketScaling) -> DetectorData:
    """The time-bucket view for windowed detectors: one row per (entity, bucket), windows over
    consecutive buckets of an entity; scores map back to flows with ``series.to_flows``."""
    by = series.config.by
    entity = None
    if by:
        entity, _ = column_codes(series.frame[by])
    time = series.frame["bucket"].dt.epoch("us").to_numpy()
    return DetectorData(
        features=scaling.transform(series),
        feature_names=tuple(series.metrics),
        entity=entity,
        time=time,
    )


@dataclass(frozen=True)
class BucketView:
    """Fitted time-bucket view: the settings (``apps`` fixed, ``span`` ``active``), the scaling, and
    the calendar cycles the training buckets span (:func:`~nadkit.features.calendar.spanned_cycles`:
    the time of day from about a day of buckets, the day of week from about a week), which are the
    calendar features a detector reads when ``config.calendar`` is on."""

    config: BucketConfig
    scaling: BucketScaling
    cycles: tuple[str, ...] = ("day", "week")

    @classmethod
    def fit(cls, frame: pl.DataFrame, config: BucketConfig | None = None) -> BucketView:
        """Fix the application vocabulary and fit the scaling on the buckets of ``frame``."""
        return cls.fit_series(frame, config)[0]

    @classmethod
    def fit_series(
        cls, frame: pl.DataFrame, config: BucketConfig | None = None
    ) -> tuple[BucketView, BucketSeries]:
        """:meth:`fit`, and the bucket series of ``frame`` it was fitted on."""
        config = config or BucketConfig()
        if config.span != "active":
            raise ConfigError(
                "the bucket view scores each entity from its first to its last active bucket; "
                f"span {config.span!r} is for analysis of a whole table only"
            )
        series = bucket_metrics(frame, config)
        if series.frame.height == 0:
            raise ConfigError("no flow has a time: the bucket view has nothing to learn from")
        fixed = dataclasses.replace(config, apps=series.apps)
        times = series.frame["bucket"].dt.epoch("us")
        span_s = (float(times.max()) - float(times.min())) / 1e6 + config.bucket_s  # type: ignore[arg-type]
        cycles = tuple(spanned_cycles(span_s))
        if config.calendar and len(cycles) < len(CYCLES):
            log.info(
                "bucket view: the training buckets span %.1f h; calendar features for %s only",
                span_s / 3600,
                " and ".join(cycles) or "no cycle",
            )
        return cls(config=fixed, scaling=BucketScaling.fit(series), cycles=cycles), series

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metric (feature) names, in column order."""
        return self.scaling.columns

    @property
    def features(self) -> tuple[str, ...]:
        """What a detector reads: the metrics, then the calendar features when the view has them."""
        return (*self.metrics, *calendar_names(self.cycles)) if self.config.calendar else self.metrics

    @property
    def input_columns(self) -> tuple[str, ...]:
        """The flow columns the metrics are computed from: ``time``, the ``by`` column, then those the
        metrics read."""
        wanted = ["time", *([self.config.by] if self.config.by else [])]
        for metric in self.metrics:
            column = _source_column(metric)
            if column in CANONICAL and column not in wanted:
                wanted.append(column)
        return tuple(wanted)

    @property
    def width_us(self) -> int:
        """The bucket width in microseconds."""
        return round(self.config.bucket_s * 1e6)

    def series(self, frame: pl.DataFrame) -> BucketSeries:
        """The fitted metrics of the buckets of ``frame`` (metrics its extra columns allow are left
        out); ConfigError naming the fitted metrics its columns cannot give."""
        series = bucket_metrics(frame, self.config)
        if tuple(series.metrics) == self.metrics:
            return series
        missing = [m for m in self.metrics if m not in series.metrics]
        if missing:
            raise SchemaError(
                f"column is missing; the model's bucket metric(s) {', '.join(missing)} need it",
                column=_source_column(missing[0]),
            )
        keys = [self.config.by] if self.config.by else []
        kept = series.frame.select(*keys, "bucket", *self.metrics)
        return dataclasses.replace(series, frame=kept, metrics=self.metrics)

    def data(self, series: BucketSeries) -> DetectorData:
        """What a detector reads for ``series`` (the same encoding as detection in chunks reads)."""
        return self.data_of(self.working_frame(series))

    def working_frame(self, series: BucketSeries) -> pl.DataFrame:
        """``series.frame`` as key, bucket number and raw metrics (see :meth:`data_of`)."""
        key = pl.col(self.config.by) if self.config.by else pl.lit(0, dtype=pl.Int64)
        return series.frame.select(
            key.alias(KEY),
            (pl.col("bucket").dt.epoch("us") // self.width_us).alias(NUMBER),
            *self.metrics,
        )

    def data_of(self, rows: pl.DataFrame) -> DetectorData:
        """What a detector reads for metric rows in the layout of :meth:`working_frame` (sorted by
        key, then bucket number)."""
        entity, _ = column_codes(rows[KEY])
        start = rows[NUMBER].to_numpy() * self.width_us
        features = self.scaling.transform_matrix(rows.select(self.metrics).to_numpy())
        if self.config.calendar and self.cycles:
            features = np.concatenate([features, calendar_matrix(start, self.cycles)], axis=1)
        return DetectorData(
            features=np.ascontiguousarray(features),
            feature_names=self.features,
            entity=entity if self.config.by else None,
            time=start,
        )

    def empty_rows(self, keys: pl.Series, numbers: np.ndarray) -> pl.DataFrame:
        """Metric rows of empty buckets: ``keys[i]`` at bucket ``numbers[i]``, every metric 0."""
        columns: dict[str, Any] = {KEY: keys, NUMBER: pl.Series(NUMBER, numbers, dtype=pl.Int64)}
        for name in self.metrics:
            dtype = pl.Float64 if "share=" in name else pl.Int64
            columns[name] = pl.Series(name, np.zeros(len(numbers)), dtype=dtype)
        return pl.DataFrame(columns)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (saved in a model bundle)."""
        config = dataclasses.asdict(self.config)
        config["apps"] = list(self.config.apps or ())
        return {
            "kind": "buckets",
            "config": config,
            "scaling": self.scaling.to_dict(),
            "cycles": list(self.cycles),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BucketView:
        """Read what :meth:`to_dict` wrote."""
        if data.get("kind") != "buckets":
            raise ConfigError(f"unknown view kind {data.get('kind')!r}")
        settings = dict(data["config"])
        known = {f.name for f in dataclasses.fields(BucketConfig)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ConfigError(f"unknown bucket setting {unknown[0]!r}")
        settings["apps"] = tuple(settings.get("apps") or ())
        settings.setdefault("calendar", False)  # views saved before the calendar features existed
        cycles = data.get("cycles", list(CYCLES))  # views saved before the cycles were learnt: both
        if not isinstance(cycles, list) or any(c not in CYCLES for c in cycles):
            raise ConfigError(f"bucket view cycles must be a list of {', '.join(CYCLES)}")
        return cls(
            config=BucketConfig(**settings),
            scaling=BucketScaling.from_dict(data["scaling"]),
            cycles=tuple(c for c in CYCLES if c in cycles),
        )


def _source_column(metric: str) -> str:
    """The flow column a bucket metric is computed from (``app_share=http``: ``app``)."""
    if "_share=" in metric:
        return metric.split("_share=")[0]
    return DISTINCT_METRICS.get(metric, metric)


__all__ = [
    "CALENDAR",
    "BucketScaling",
    "BucketView",
    "bucket_detector_data",
    "calendar_text",
]
