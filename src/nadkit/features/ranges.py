"""Typical ranges of features on normal training traffic, for explanations (``normal: 1-4``).

A range describes what a reader sees beside the feature in an explanation:

- ``share``: a 0/1 indicator (``proto=icmp``, ``in_bytes_zero``): the share of normal flows where it
  holds (``yes in 0.5% of flows``);
- ``raw``: a feature computed from one numeric column (``log_in_bytes`` from ``in_bytes``, a counter, a
  bucket metric): the low and high quantiles (by default the 5th and 95th percentiles) of that column,
  the value an explanation shows;
- ``feature``: any other feature (ratios, differences, bits of an address): the quantiles of the
  feature's own unscaled value.

:func:`typical_ranges` measures them for a fitted :class:`~nadkit.features.pipeline.FeaturePipeline`
and :func:`metric_ranges` for the bucket metrics of a time-bucket view; :func:`number_text` is the one
way numbers are written in ranges and explanations.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

import polars as pl

if TYPE_CHECKING:
    from nadkit.features.pipeline import FeaturePipeline

log = logging.getLogger(__name__)

RangeKind = Literal["share", "raw", "feature"]
KINDS: Final = ("share", "raw", "feature")
#: the quantiles a range spans unless told otherwise
DEFAULT_QUANTILES: Final = (0.05, 0.95)
#: rows a range is measured on at most (a fixed random sample of a larger table)
SAMPLE_ROWS: Final = 200_000


def number_text(value: float) -> str:
    """A number as explanations write it: whole numbers without decimals, others to two decimals
    from 1 on and two significant digits below (``912``, ``12.35``, ``0.0042``)."""
    if value is None or not math.isfinite(value):
        return str(value)
    if abs(value - round(value)) <= 1e-5 * max(abs(value), 1.0) and abs(value) < 1e15:
        return str(round(value))
    magnitude = abs(value)
    if magnitude >= 100:
        return str(round(value))
    if magnitude >= 1:
        return f"{round(value, 2):g}"
    return f"{float(f'{value:.2g}'):g}" if magnitude >= 1e-4 else f"{value:.1e}"


def number_text_expr(expr: pl.Expr) -> pl.Expr:
    """:func:`number_text` as a Polars expression (null where the value is null or not finite)."""
    value = expr.cast(pl.Float64)
    magnitude = value.abs()
    # within float32 rounding of a whole number (a value recovered from its scaled feature)
    whole = ((value - value.round(0)).abs() <= 1e-5 * pl.max_horizontal(magnitude, 1.0)) & (magnitude < 1e15)
    return (
        pl.when(value.is_null() | ~value.is_finite())
        .then(pl.lit(None, dtype=pl.String))
        .when(whole | (magnitude >= 100))
        .then(value.round(0).cast(pl.Int64).cast(pl.String))
        .when(magnitude >= 1)
        .then(value.round(2).cast(pl.String))
        .otherwise(value.round_sig_figs(2).cast(pl.String))
    )


def _percent(share: float) -> str:
    percent = 100.0 * share
    if percent == 0:
        return "0%"
    if percent < 0.1:
        return "<0.1%"
    return f"{number_text(float(f'{percent:.2g}'))}%"


@dataclass(frozen=True)
class FeatureRange:
    """What a feature looks like on normal traffic (see the module docstring for ``kind``)."""

    kind: RangeKind
    low: float | None = None
    high: float | None = None
    share: float | None = None
    #: the column the quantiles were measured on (``raw``)
    column: str | None = None

    def text(self) -> str:
        """The range as explanations write it: ``1-4``, ``-3 to 2``, ``yes in 0.5% of flows``."""
        if self.kind == "share":
            return f"yes in {_percent(self.share or 0.0)} of flows"
        if self.low is None or self.high is None:
            return "unknown"
        low, high = number_text(self.low), number_text(self.high)
        if low == high:
            return low
        return f"{low} to {high}" if self.low < 0 or self.high < 0 else f"{low}-{high}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        for key in ("low", "high", "share", "column"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureRange:
        kind = data.get("kind")
        if kind not in KINDS:
            raise ValueError(f"unknown range kind {kind!r}")

        def number(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        column = data.get("column")
        return cls(
            kind, number("low"), number("high"), number("share"), None if column is None else str(column)
        )


def _quantile_ranges(
    frame: pl.DataFrame, columns: Mapping[str, str], quantiles: tuple[float, float]
) -> dict[str, tuple[float | None, float | None]]:
    """feature -> (low, high) quantiles of ``frame[column]`` for each ``feature: column``, in one query
    (non-finite values ignored)."""
    distinct = sorted(set(columns.values()))
    if not distinct:
        return {}
    exprs = []
    for i, column in enumerate(distinct):
        value = pl.col(column).cast(pl.Float64)
        finite = value.filter(value.is_finite())
        exprs += [
            finite.quantile(quantiles[0]).alias(f"{i}_low"),
            finite.quantile(quantiles[1]).alias(f"{i}_high"),
        ]
    row = frame.select(exprs).row(0)
    found = {column: (row[2 * i], row[2 * i + 1]) for i, column in enumerate(distinct)}
    return {feature: found[column] for feature, column in columns.items()}


def typical_ranges(
    pipeline: FeaturePipeline,
    frame: pl.DataFrame,
    *,
    quantiles: tuple[float, float] = DEFAULT_QUANTILES,
    sample_rows: int = SAMPLE_ROWS,
    seed: int = 0,
) -> dict[str, FeatureRange]:
    """The typical range of every feature of the fitted ``pipeline`` on ``frame`` (normal training
    flows). Counters and segments are computed on the whole table (they look across flows), the
    ranges on a fixed sample of at most ``sample_rows`` rows."""
    if frame.height == 0:
        return {}
    augmented = pipeline.augment(frame)
    if augmented.height > sample_rows:
        augmented = augmented.sample(n=sample_rows, seed=seed)
    unscaled = pipeline.unscaled_features(augmented)
    kinds: dict[str, RangeKind] = {}
    raw_of: dict[str, str] = {}
    for name in pipeline.feature_names_:
        raw = pipeline.raw_columns_.get(name, [])
        if pipeline.scaling_[name].indicator:
            kinds[name] = "share"
        elif len(raw) == 1 and raw[0] in augmented.columns and augmented.schema[raw[0]].is_numeric():
            kinds[name], raw_of[name] = "raw", raw[0]
        else:
            kinds[name] = "feature"
    shares = unscaled.select(
        [pl.col(n).cast(pl.Float64).mean().alias(n) for n, kind in kinds.items() if kind == "share"]
    )
    raw_ranges = _quantile_ranges(augmented, raw_of, quantiles)
    own = [n for n, kind in kinds.items() if kind == "feature"]
    own_ranges = _quantile_ranges(unscaled, {n: n for n in own}, quantiles)
    ranges: dict[str, FeatureRange] = {}
    for name, kind in kinds.items():
        if kind == "share":
            share = shares[name].item() if shares.width else None
            ranges[name] = FeatureRange("share", share=float(share) if share is not None else 0.0)
        elif kind == "raw":
            low, high = raw_ranges[name]
            ranges[name] = FeatureRange("raw", low, high, column=raw_of[name])
        else:
            low, high = own_ranges[name]
            ranges[name] = FeatureRange("feature", low, high)
    log.debug("typical ranges of %d features from %d rows", len(ranges), augmented.height)
    return ranges


def metric_ranges(
    frame: pl.DataFrame, metrics: Sequence[str], *, quantiles: tuple[float, float] = DEFAULT_QUANTILES
) -> dict[str, FeatureRange]:
    """The typical range of each bucket metric (a column of ``frame``, the training buckets)."""
    present = {m: m for m in metrics if m in frame.columns}
    if frame.height == 0 or not present:
        return {}
    found = _quantile_ranges(frame, present, quantiles)
    return {m: FeatureRange("raw", low, high, column=m) for m, (low, high) in found.items()}


__all__ = [
    "DEFAULT_QUANTILES",
    "FeatureRange",
    "metric_ranges",
    "number_text",
    "number_text_expr",
    "typical_ranges",
]
