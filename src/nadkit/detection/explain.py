"""Scores and explanations in words: what the scorers add to the bare score and top features.

For every scored flow, :meth:`Explainer.scale` gives ``score_percentile``, ``threshold_multiple`` and
``severity`` (:mod:`nadkit.evaluation.calibration`). For alerts, :meth:`Explainer.entries` turns the
top contributions into ``top_features`` entries with a readable ``label``
(:func:`~nadkit.features.labels.feature_label`), the ``share`` of the score in percent and the
feature's ``normal`` range on training traffic, and :meth:`Explainer.explanation` writes them as one
text per alert::

    distinct destination ports in this burst from the source to the subnet: 912 (normal: 1-4),
    61% of the score; bytes sent: 60 (normal: 120-4,800), 12% of the score; ...

The value an explanation shows is the one its normal range describes: the raw column behind the
feature where it has one numeric column (``log_in_bytes`` shows ``in_bytes``), ``yes``/``no`` for an
indicator, else the feature's own unscaled value (recovered from the scaled one). Everything runs
as NumPy and Polars column operations over the alerts' entries, with no per-alert Python loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl

from nadkit.alerts.records import TOP_FEATURE
from nadkit.evaluation.calibration import Calibration, SeverityRules, threshold_multiple
from nadkit.features.labels import feature_label
from nadkit.features.ranges import number_text_expr
from nadkit.features.scaling import Scaling

#: how an entry's shown value is found: no range known, indicator, raw column, own value
_NONE, _SHARE, _RAW, _OWN = 0, 1, 2, 3
_KIND_CODES = {"share": _SHARE, "raw": _RAW, "feature": _OWN}
#: the entry fields of ``top_features``, in order
FIELDS = tuple(TOP_FEATURE.to_schema())


class Explainer:
    """Labels, normal ranges and the score scale of one model (``names``: its features, in column
    order; ``scaling``: the flow pipeline's, to recover unscaled values; ``rules``: severity cut
    points, the defaults when None)."""

    def __init__(
        self,
        names: Sequence[str],
        calibration: Calibration | None,
        *,
        scaling: Mapping[str, Scaling] | None = None,
        rules: SeverityRules | None = None,
    ) -> None:
        self.names = tuple(names)
        self.calibration = calibration
        self.rules = rules if rules is not None else SeverityRules()
        ranges = calibration.ranges if calibration is not None else {}
        self.labels = np.asarray([feature_label(n) for n in self.names], dtype=object)
        self.normal = np.asarray(
            [ranges[n].text() if n in ranges else None for n in self.names], dtype=object
        )
        self.kinds = np.asarray(
            [_KIND_CODES[ranges[n].kind] if n in ranges else _NONE for n in self.names], dtype=np.int8
        )
        scaling = scaling or {}
        self._center = np.asarray([scaling[n].center if n in scaling else 0.0 for n in self.names])
        self._scale = np.asarray([scaling[n].scale if n in scaling else 1.0 for n in self.names])
        self._compressed = np.asarray(
            [bool(scaling[n].log_compress) if n in scaling else False for n in self.names]
        )
        if not scaling:  # without a pipeline there is no scaled value to recover a feature's own value from
            self.kinds[self.kinds == _OWN] = _NONE
        # per feature, as Polars columns to gather from: an entry takes its feature's row
        self._features = pl.DataFrame(
            {
                "feature": pl.Series(self.names, dtype=pl.String),
                "label": pl.Series(self.labels.tolist(), dtype=pl.String),
                "normal": pl.Series(self.normal.tolist(), dtype=pl.String),
            }
        ).with_columns(
            (pl.col("label") + pl.lit(": ")).alias("_lead"),
            pl.format(" (normal: {})", pl.col("normal")).fill_null(pl.lit("")).alias("_range"),
        )

    # -- the score scale -----------------------------------------------------------------------------

    def scale(self, scores: np.ndarray, threshold: float, alerts: np.ndarray) -> list[pl.Series]:
        """``score_percentile``, ``threshold_multiple`` and ``severity`` of every row."""
        normal = self.calibration.normal if self.calibration is not None else None
        percentile = None if normal is None else normal.percentile(scores)
        multiple = threshold_multiple(scores, threshold)
        severity = self.rules.grade(alerts, percentile, multiple, normal.rows if normal is not None else 0)
        if percentile is None:
            percentiles = pl.repeat(None, len(scores), dtype=pl.Float64, eager=True)
        else:
            percentiles = pl.Series(percentile, dtype=pl.Float64).fill_nan(None)
        return [
            percentiles.alias("score_percentile"),
            pl.Series("threshold_multiple", multiple, dtype=pl.Float64).fill_nan(None),
            severity,
        ]

    # -- explanations --------------------------------------------------------------------------------

    def own_values(self, scaled: np.ndarray, features: np.ndarray) -> np.ndarray:
        """The unscaled values behind scaled feature values (``scaled[i]`` of feature
        ``features[i]``): the log compression undone, then the robust scaling."""
        z = np.asarray(scaled, dtype=np.float64)
        compressed = self._compressed[features] & (np.abs(z) > 1.0)
        z = np.where(compressed, np.sign(z) * np.exp(np.abs(z) - 1.0), z)
        return z * self._scale[features] + self._center[features]

    def entries(
        self,
        features: np.ndarray,
        contributions: np.ndarray,
        values: np.ndarray,
        totals: np.ndarray,
        scaled: np.ndarray | None = None,
    ) -> pl.DataFrame:
        """One row per listed feature: the ``top_features`` fields (:data:`FIELDS`) and ``text``, its
        part of the explanation. ``features``: feature indices; ``contributions``: theirs;
        ``values``: the raw value texts; ``totals``: the sum of absolute contributions of each
        entry's row; ``scaled``: each entry's scaled feature value (None where unknown)."""
        kinds = self.kinds[features]
        if scaled is None:
            scaled = np.full(len(features), np.nan)
            kinds = np.where(kinds == _OWN, _NONE, kinds)
        number = np.where(kinds == _OWN, self.own_values(scaled, features), scaled)
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(totals > 0, 100.0 * contributions / totals, np.nan)
        per_feature = self._features[pl.Series(features, dtype=pl.UInt32)]
        frame = per_feature.with_columns(
            pl.Series("contribution", contributions, dtype=pl.Float64),
            values.cast(pl.String).alias("value")
            if isinstance(values, pl.Series)
            else pl.Series("value", values, dtype=pl.String),
            pl.Series("share", share, dtype=pl.Float64).fill_nan(None),
            pl.Series("_kind", kinds, dtype=pl.Int8),
            pl.Series("_number", number, dtype=pl.Float64),
        )
        kind, value, share_col = pl.col("_kind"), pl.col("value"), pl.col("share")
        # one number formatting for both kinds that show a number (a branch of when/then is
        # computed for every row, so two would format every row twice)
        as_number = number_text_expr(
            pl.when(kind == _RAW).then(value.cast(pl.Float64, strict=False)).otherwise(pl.col("_number"))
        )
        shown = (
            pl.when(kind == _SHARE)
            .then(pl.when(pl.col("_number") >= 0.5).then(pl.lit("yes")).otherwise(pl.lit("no")))
            .when(kind == _RAW)
            .then(as_number.fill_null(value))
            .when(kind == _OWN)
            .then(as_number)
            .otherwise(value)
            .fill_null(pl.lit("unknown"))
        )
        percent = (
            pl.when(share_col.abs() < 1)
            .then(pl.lit("<1"))
            .otherwise(share_col.round(0).cast(pl.Int64).cast(pl.String))
        )
        text = pl.concat_str(
            [
                pl.col("_lead"),
                shown,
                pl.col("_range"),
                pl.when(share_col.is_not_null())
                .then(pl.format(", {}% of the score", percent))
                .otherwise(pl.lit("")),
            ]
        )
        return frame.with_columns(text.alias("text")).select(*FIELDS, "text")

    @staticmethod
    def lists(entries: pl.DataFrame, rows: int, top: int) -> tuple[pl.Series, pl.Series]:
        """``top_features`` (a list of :data:`TOP_FEATURE` per row) and ``explanation`` (the entries'
        texts joined) of ``rows`` rows of ``top`` consecutive entries each."""
        structs = entries.select(pl.struct(*FIELDS).alias("top_features"))["top_features"]
        top_features = structs.reshape((rows, top)).cast(pl.List(TOP_FEATURE)).alias("top_features")
        texts = entries["text"].reshape((rows, top)).cast(pl.List(pl.String))
        return top_features, texts.list.join("; ").alias("explanation")


def no_explanations(rows: int) -> tuple[pl.Series, pl.Series]:
    """Null ``top_features`` and ``explanation`` columns of ``rows`` rows."""
    return (
        pl.Series("top_features", [None] * rows, dtype=pl.List(TOP_FEATURE)),
        pl.repeat(None, rows, dtype=pl.String, eager=True).alias("explanation"),
    )


# ---------------------------------------------------------------------------------------------------
# what a detection summary lists
# ---------------------------------------------------------------------------------------------------

#: the columns :func:`top_alerts` keeps (those present)
TOP_ALERT_COLUMNS = (
    "row",
    "time",
    "bucket",
    "src",
    "dst",
    "dpt",
    "proto",
    "score",
    "score_percentile",
    "threshold_multiple",
    "severity",
    "class",
    "explanation",
)


def top_alerts(alerts: Sequence[pl.DataFrame], shown: int = 10) -> pl.DataFrame:
    """The ``shown`` highest-scoring of these alert records (highest first), with the columns a
    summary lists (:data:`TOP_ALERT_COLUMNS`, those present)."""
    parts = [part for part in alerts if part.height]
    if not parts:
        return pl.DataFrame()
    best = [part.top_k(shown, by="score") for part in parts]
    merged = pl.concat(best, how="diagonal_relaxed").sort("score", descending=True, nulls_last=True)
    merged = merged.head(shown)
    return merged.select([c for c in TOP_ALERT_COLUMNS if c in merged.columns])


def severity_counts(alerts: Sequence[pl.DataFrame]) -> dict[str, int]:
    """Alerts of each severity among these alert records, most severe first (``unknown``: none
    given)."""
    counts: dict[str, int] = {}
    for part in alerts:
        if part.height == 0:
            continue
        column = part["severity"] if "severity" in part.columns else pl.Series([None] * part.height)
        for name, count in column.fill_null("unknown").value_counts().iter_rows():
            counts[name] = counts.get(name, 0) + count
    order = {name: i for i, name in enumerate(("critical", "high", "medium", "low", "unknown"))}
    return dict(sorted(counts.items(), key=lambda item: order.get(item[0], len(order))))


__all__ = ["FIELDS", "TOP_ALERT_COLUMNS", "Explainer", "no_explanations", "severity_counts", "top_alerts"]
