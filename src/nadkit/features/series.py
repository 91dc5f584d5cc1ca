"""Time-series views of flows for the sequence models (LSTM, GRU, Transformer, CNN-LSTM).

Two views, one windowing:

**Flow sequences.** For every flow, the window of the last ``length`` flows of the same entity (a
source host, a (src, dst) pair, any key), oldest first and the flow itself last: the model reads the
window and scores its last flow, so there is exactly one window per flow and a score maps straight
back to a row. A flow with fewer than ``length - 1`` earlier flows in its entity gets a window padded
on the left.

**Bucket metrics.** Per bucket of ``bucket_s`` seconds (aligned to the epoch, so batches of a stream
agree on bucket edges), for the whole network or per host: flows, bytes and packets each way,
distinct destinations / destination ports / sources, the protocol mix and the mix of the most common
applications. Empty buckets are present with zeros so each series is regular. Windows of ``length``
buckets end at the bucket scored, and every flow knows the row of its bucket, so a bucket's score can
be carried to the flows in it.

**Windows** (:class:`SlidingWindows`) are never stored as n x length x d floats. A window is a row of
row numbers into a feature matrix (``-1`` for padding), and :func:`gather` turns a batch of such
rows into a ``(batch, length, d)`` array when a model needs it::

    windows = flow_windows(frame, length=16, key=("src",))
    for rows in windows.batches(4096):
        x = gather(features, windows.index(rows))   # (len(rows), 16, d), padding filled with 0
        mask = windows.mask(rows)                     # True where a real flow is
        scores[rows] = model(x, mask)                 # window of row r scores row r

A forecasting model (LSTM, GRU) reads the first ``length - 1`` rows of a window and predicts the
last; a reconstruction model (Transformer, CNN-LSTM autoencoder) reads the whole window; both score
the window's last row. Windows only look back within the frame they are built on: build them on the
training and validation frames separately so that no window reaches across a split.

Ties in time keep the input row order. Flows without a time sort as if at the epoch in flow windows
and belong to no bucket.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from nadkit.errors import ConfigError, SchemaError
from nadkit.features.counters import column_codes, key_time_order
from nadkit.features.flow import OTHERS

log = logging.getLogger(__name__)

#: protocol shares in the bucket metrics; ipv6-icmp counts as icmp, anything else as other
PROTOCOLS = ("tcp", "udp", "icmp")
OTHER = "other"
#: columns summed per bucket, and the distinct-count metrics with the column each counts
SUM_METRICS = ("out_bytes", "in_bytes", "out_pkts", "in_pkts")
DISTINCT_METRICS = {"unique_dst": "dst", "unique_dpt": "dpt", "unique_src": "src"}


@dataclass(frozen=True)
class SlidingWindows:
    """One window of ``length`` rows per row of a table: the row and up to ``length - 1`` rows of
    the same entity before it, in time order.

    ``order`` lists the rows entity by entity in time order, ``position`` is each row's place in it
    and ``rank`` the number of earlier rows of its entity; windows are built from these on demand.
    """

    length: int
    order: np.ndarray
    position: np.ndarray
    rank: np.ndarray

    def __len__(self) -> int:
        return len(self.order)

    def _rows(self, rows: np.ndarray | slice | None) -> np.ndarray:
        if rows is None:
            return np.arange(len(self), dtype=np.int64)
        if isinstance(rows, slice):
            return np.arange(len(self), dtype=np.int64)[rows]
        return np.asarray(rows, dtype=np.int64)

    def index(self, rows: np.ndarray | slice | None = None) -> np.ndarray:
        """``(m, length)`` int64 row numbers of the windows of ``rows`` (all rows when None), oldest
        first; the last column is the row itself, ``-1`` marks padding on the left."""
        rows = self._rows(rows)
        offsets = np.arange(1 - self.length, 1, dtype=np.int64)
        index = np.add.outer(self.position[rows], offsets)
        np.maximum(index, 0, out=index)
        np.take(self.order, index, out=index)
        index[offsets < -self.rank[rows][:, None]] = -1
        return index

    def lengths(self, rows: np.ndarray | slice | None = None) -> np.ndarray:
        """Number of real (not padding) rows in each window, 1 to ``length``."""
        return np.minimum(self.rank[self._rows(rows)] + 1, self.length)

    def mask(self, rows: np.ndarray | slice | None = None) -> np.ndarray:
        """``(m, length)`` booleans, True where the window holds a real row."""
        offsets = np.arange(1 - self.length, 1, dtype=np.int64)
        return offsets >= -self.rank[self._rows(rows)][:, None]

    def batches(
        self, batch_size: int, rows: np.ndarray | None = None, *, shuffle: bool = False, seed: int = 0
    ) -> Iterator[np.ndarray]:
        """The rows (all, or ``rows``) in batches of ``batch_size`` (shuffled with ``seed`` if asked),
        to pass to :meth:`index` and :meth:`mask`."""
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        chosen = self._rows(rows)
        if shuffle:
            chosen = np.random.default_rng(seed).permutation(chosen)
        for start in range(0, len(chosen), batch_size):
            yield chosen[start : start + batch_size]


def _times(times: pl.Series | np.ndarray | None, n: int) -> np.ndarray:
    if times is None:
        return np.arange(n, dtype=np.int64)
    if isinstance(times, pl.Series):
        if times.dtype.is_temporal():
            times = times.dt.epoch("us") if isinstance(times.dtype, pl.Datetime | pl.Date) else times
        values = times.fill_null(0).to_numpy()
    else:
        values = np.asarray(times)
        if np.issubdtype(values.dtype, np.datetime64):
            values = values.astype("datetime64[us]").astype(np.int64)
    if len(values) != n:
        raise ConfigError(f"times has {len(values)} values for {n} rows")
    return values


def _entity_parts(
    entity: pl.Series | pl.DataFrame | np.ndarray | None, n: int
) -> list[tuple[np.ndarray, int]]:
    if entity is None:
        return [(np.zeros(n, dtype=np.int64), 1)]
    if isinstance(entity, pl.DataFrame):
        parts = [column_codes(entity[name]) for name in entity.columns]
    elif isinstance(entity, pl.Series):
        parts = [column_codes(entity)]
    else:
        parts = [column_codes(pl.Series(np.asarray(entity)))]
    if any(len(codes) != n for codes, _ in parts):
        raise ConfigError(f"entity has a different number of rows than times ({n})")
    return parts


def sliding_windows(
    entity: pl.Series | pl.DataFrame | np.ndarray | None,
    times: pl.Series | np.ndarray | None,
    length: int,
) -> SlidingWindows:
    """Windows of the last ``length`` rows of each entity, one per row, ending at that row.

    ``entity``: the entity of each row (a column, several columns as a frame, or None for one
    entity); ``times``: datetimes or numbers ordering the rows (None: the row order is the time
    order). Ties keep the row order.
    """
    if length < 1:
        raise ConfigError(f"window length must be at least 1, got {length}")
    if times is not None:
        n = len(times)
    elif entity is not None:
        n = len(entity)
    else:
        raise ConfigError("sliding_windows needs an entity or times")
    values = _times(times, n)
    parts = _entity_parts(entity, n)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return SlidingWindows(length=length, order=empty, position=empty, rank=empty)
    rows, new = key_time_order(parts, values)
    # rank: place of each listed row within its entity (its index minus the index of the entity's start)
    listed = np.arange(n, dtype=np.int64)
    starts = np.where(new, listed, 0)
    np.maximum.accumulate(starts, out=starts)
    position = np.empty(n, dtype=np.int64)
    position[rows] = listed
    rank = np.empty(n, dtype=np.int64)
    rank[rows] = listed - starts
    return SlidingWindows(length=length, order=rows, position=position, rank=rank)


def flow_windows(frame: pl.DataFrame, length: int, key: Sequence[str] = ("src",)) -> SlidingWindows:
    """:func:`sliding_windows` over a flow table: the flows of each ``key`` (default: the source
    host) in ``time`` order. Raises SchemaError naming a missing column."""
    for column in ("time", *key):
        if column not in frame.columns:
            raise SchemaError(f"flow windows need column {column!r}", column=column)
    entity = frame.select(list(key)) if key else None
    return sliding_windows(entity, frame["time"], length)


def gather(features: np.ndarray, index: np.ndarray, fill: float = 0.0) -> np.ndarray:
    """The ``(m, length, d)`` windows of ``index`` (from :meth:`SlidingWindows.index`) taken from the
    ``(n, d)`` feature matrix (same dtype), with ``fill`` where the index is ``-1``."""
    features = np.asarray(features)
    if features.ndim == 1:
        features = features[:, None]
    out = features[np.maximum(index, 0)]
    out[index < 0] = fill
    return out


@dataclass(frozen=True)
class BucketConfig:
    """Time-bucket metrics: bucket width in seconds; ``by``: None for the whole network or a column
    (``src`` for per-host series); ``apps``: the applications given a share column (None: the
    ``top_apps`` most common in the frame; an app named ``others`` always falls in the ``others``
    share); ``span``: each entity's series runs from its first to its last active bucket
    (``active``) or over the frame's whole time range (``full``); ``calendar``: detectors of the bucket
    view also read the bucket's time of day and day of week (UTC), each as a point on a circle
    (sine and cosine), so the daily and weekly rhythm of the traffic is part of what is normal.

    A per-host series has a row for every bucket of every host's span: hosts x buckets rows (20,000
    hosts over a day of minutes is some 16 million), so filter the hosts first where that is too many.
    """

    bucket_s: float = 60.0
    by: str | None = None
    apps: tuple[str, ...] | None = None
    top_apps: int = 5
    span: Literal["active", "full"] = "active"
    calendar: bool = True

    def __post_init__(self) -> None:
        if not self.bucket_s > 0:
            raise ConfigError(f"bucket_s must be positive, got {self.bucket_s}")
        if round(self.bucket_s * 1e6) < 1:
            raise ConfigError("bucket_s must be at least one microsecond")
        if self.top_apps < 0:
            raise ConfigError("top_apps must not be negative")
        if self.span not in ("active", "full"):
            raise ConfigError(f"span must be 'active' or 'full', got {self.span!r}")
        if self.apps is not None:
            object.__setattr__(self, "apps", tuple(self.apps))


#: the share of a training series' buckets, empty, from which training says so
SILENT_SHARE = 0.9


@dataclass(frozen=True)
class BucketSeries:
    """Regular per-bucket metrics and how flows map onto them.

    ``frame``: one row per (entity, bucket), sorted by entity then time: the ``by`` column (when
    set), ``bucket`` (start time, UTC) and the metric columns. ``row_bucket``: for each flow of the
    input, the row of its bucket in ``frame`` (-1 for a flow without a time). ``apps``: the
    applications given a share column, to reuse on later data so the columns agree.
    """

    frame: pl.DataFrame
    row_bucket: np.ndarray
    config: BucketConfig
    apps: tuple[str, ...]
    metrics: tuple[str, ...]

    @property
    def silent(self) -> int:
        """Buckets that hold no flow (present with zeros: an entity's series runs from its first bucket
        to its last, so flows in short stretches far apart make it mostly silence)."""
        return int((self.frame["flows"] == 0).sum())

    def matrix(self, columns: Sequence[str] | None = None) -> np.ndarray:
        """The metric columns (all, or ``columns``) as an ``(m, d)`` float32 matrix."""
        return self.frame.select(list(columns or self.metrics)).to_numpy().astype(np.float32, copy=False)

    def windows(self, length: int) -> SlidingWindows:
        """Windows of ``length`` consecutive buckets of the same entity, one per bucket row, each
        ending at the bucket it scores."""
        if length < 1:
            raise ConfigError(f"window length must be at least 1, got {length}")
        rows = np.arange(self.frame.height, dtype=np.int64)
        rank = rows.copy()
        if self.config.by and self.frame.height:
            # the frame is sorted by entity: each entity's rows are one run
            run = self.frame[self.config.by].rle_id().to_numpy()
            starts = np.zeros(len(rows), dtype=np.int64)
            changes = np.flatnonzero(run[1:] != run[:-1]) + 1
            starts[changes] = changes
            np.maximum.accumulate(starts, out=starts)
            rank -= starts
        return SlidingWindows(length=length, order=rows, position=rows, rank=rank)

    def to_flows(self, values: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """Per-bucket ``values`` (one per row of ``frame``) carried to the flows; ``fill`` for flows
        without a bucket."""
        values = np.asarray(values, dtype=np.float64)
        out = values[np.maximum(self.row_bucket, 0)]
        out[self.row_bucket < 0] = fill
        return out


def _app_vocabulary(frame: pl.DataFrame, config: BucketConfig) -> tuple[str, ...]:
    if "app" not in frame.columns:
        return ()
    if config.apps is not None:
        return tuple(app for app in config.apps if app != OTHERS)
    counts = (
        frame.select(pl.col("app").drop_nulls().value_counts(sort=False))
        .unnest("app")
        .filter(pl.col("app") != OTHERS)
        .sort(["count", "app"], descending=[True, False])
    )
    return tuple(counts["app"].head(config.top_apps).to_list())


def _aggregations(frame: pl.DataFrame, apps: tuple[str, ...]) -> tuple[list[pl.Expr], list[str]]:
    exprs = [pl.len().cast(pl.Int64).alias("flows")]
    for column in SUM_METRICS:
        if column in frame.columns:
            exprs.append(pl.col(column).sum().alias(column))
    for name, column in DISTINCT_METRICS.items():
        if column in frame.columns:
            exprs.append(pl.col(column).n_unique().cast(pl.Int64).alias(name))
    if "proto" in frame.columns:
        proto = pl.col("proto").str.to_lowercase().replace({"ipv6-icmp": "icmp"})
        known = proto.is_in(list(PROTOCOLS)).fill_null(False)
        for name in PROTOCOLS:
            exprs.append((proto == name).fill_null(False).mean().alias(f"proto_share={name}"))
        exprs.append((~known).mean().alias(f"proto_share={OTHER}"))
    if "app" in frame.columns:
        for name in apps:
            exprs.append((pl.col("app") == name).fill_null(False).mean().alias(f"app_share={name}"))
        others = ~pl.col("app").is_in(list(apps)).fill_null(False)
        exprs.append(others.mean().alias(f"app_share={OTHERS}"))
    return exprs, [e.meta.output_name() for e in exprs]


def bucket_metrics(frame: pl.DataFrame, config: BucketConfig | None = None) -> BucketSeries:
    """Regular time-bucket metrics of ``frame`` (see the module docstring), the metrics its columns
    allow. Raises SchemaError when ``time`` or the ``by`` column is missing."""
    config = config or BucketConfig()
    for column in ("time", *([config.by] if config.by else [])):
        if column not in frame.columns:
            raise SchemaError(f"bucket metrics need column {column!r}", column=column)
    width_us = round(config.bucket_s * 1e6)
    apps = _app_vocabulary(frame, config)
    aggregations, metrics = _aggregations(frame, apps)
    bucket = (pl.col("time").dt.epoch("us") // width_us).alias("_bucket")
    if config.by:
        keys = [config.by]
        flows = frame.with_columns(bucket)
    else:
        keys = ["_entity"]  # the whole network: one entity
        flows = frame.with_columns(bucket, pl.lit(0).alias("_entity"))
    timed = flows.filter(pl.col("_bucket").is_not_null())
    observed = timed.group_by([*keys, "_bucket"]).agg(aggregations)
    low, high = observed["_bucket"].min(), observed["_bucket"].max()
    if config.span == "full":
        bounds = (
            observed.select(keys)
            .unique()
            .with_columns(
                pl.lit(low, dtype=pl.Int64).alias("_low"), pl.lit(high, dtype=pl.Int64).alias("_high")
            )
        )
    else:
        bounds = observed.group_by(keys).agg(
            pl.col("_bucket").min().alias("_low"), pl.col("_bucket").max().alias("_high")
        )
    # each entity's regular series is one run of rows: its offset plus the bucket's distance from the
    # entity's first bucket gives a row, so observed buckets and flows are placed without a large join
    bounds = bounds.sort(keys, nulls_last=True).with_columns(
        (pl.col("_high") - pl.col("_low") + 1).alias("_len")
    )
    bounds = bounds.with_columns((pl.col("_len").cum_sum() - pl.col("_len")).alias("_offset"))
    lengths = bounds["_len"].to_numpy()
    total = int(lengths.sum()) if len(lengths) else 0
    entity_of_row = np.repeat(np.arange(len(lengths)), lengths)
    start_of_row = np.repeat(bounds["_offset"].to_numpy() - bounds["_low"].to_numpy(), lengths)
    located = observed.join(bounds, on=keys, how="left", nulls_equal=True)
    places = (located["_offset"] + located["_bucket"] - located["_low"]).to_numpy()
    columns: dict[str, pl.Series] = {}
    if config.by:
        columns[config.by] = bounds[config.by].gather(entity_of_row)
    buckets = np.arange(total, dtype=np.int64) - start_of_row
    columns["bucket"] = pl.Series("bucket", buckets * width_us).cast(pl.Datetime("us", "UTC"))
    for name in metrics:
        values = located[name].to_numpy()
        filled = np.zeros(total, dtype=values.dtype)
        filled[places] = values
        columns[name] = pl.Series(name, filled)
    mapping = flows.select(*keys, "_bucket").join(
        bounds, on=keys, how="left", nulls_equal=True, maintain_order="left"
    )
    row_bucket = (
        (mapping["_offset"] + mapping["_bucket"] - mapping["_low"]).fill_null(-1).cast(pl.Int64).to_numpy()
    )
    return BucketSeries(
        frame=pl.DataFrame(columns),
        row_bucket=row_bucket,
        config=config,
        apps=apps,
        metrics=tuple(metrics),
    )


__all__ = [
    "BucketConfig",
    "BucketSeries",
    "SlidingWindows",
    "bucket_metrics",
    "flow_windows",
    "gather",
    "sliding_windows",
]
