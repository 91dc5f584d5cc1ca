"""Scoring flows with a model of time buckets: a bucket is scored once the time-ordered input has
moved past it, every flow takes its bucket's score, and an alert's top features are its bucket's
metrics with the bucket's values; records carry the bucket's start as ``bucket``."""

from __future__ import annotations

import numpy as np
import polars as pl

from nadkit.detection.chunks import ScoredChunk, bundle_threshold, identity, over_alerts
from nadkit.detection.explain import Explainer, no_explanations
from nadkit.errors import ConfigError, SchemaError
from nadkit.evaluation.calibration import SeverityRules
from nadkit.features.buckets import KEY, NUMBER, BucketView, calendar_text
from nadkit.features.series import BucketSeries
from nadkit.models.base import top_contributions
from nadkit.sources import ROW
from nadkit.training.bundle import ModelBundle


class BucketScorer:
    """Scores time-ordered flows chunk after chunk with a model of time buckets.

    The flows of the newest bucket seen are held until a later flow closes it (or the input ends);
    closed buckets are scored with the last ``window - 1`` buckets of their entity scored before
    (and the empty buckets since) in front of them, so the scores equal those of one pass over the
    whole input."""

    time_ordered = True

    def __init__(
        self,
        bundle: ModelBundle,
        *,
        threshold: float | None = None,
        top: int = 5,
        severity: SeverityRules | None = None,
    ) -> None:
        if bundle.view is None:
            raise ConfigError("a bucket scorer needs a model of time buckets")
        self.bundle = bundle
        self.view: BucketView = bundle.view
        self.explainer = Explainer(self.view.features, bundle.calibration, rules=severity)
        self.detector = bundle.detector
        self.threshold = bundle_threshold(bundle, threshold)
        self.top = max(1, int(top))
        windowed = self.detector.input == "windows"
        self._keep = int(getattr(self.detector.config, "window", 1)) - 1 if windowed else 0
        self._held: pl.DataFrame | None = None
        self._tail: pl.DataFrame | None = None

    @property
    def held_rows(self) -> int:
        """Flows of the newest bucket, held until it closes."""
        return 0 if self._held is None else self._held.height

    def push(self, flows: pl.DataFrame) -> ScoredChunk:
        """Score the flows of the buckets this chunk closes."""
        if flows.height == 0:
            return ScoredChunk(pl.DataFrame())
        self._check(flows)
        held = flows if self._held is None else pl.concat([self._held, flows], how="vertical_relaxed")
        numbers = held["time"].dt.epoch("us") // self.view.width_us
        closed = (numbers < numbers.max()).to_numpy()
        self._held = held.filter(pl.Series(~closed))
        return self._score(held.filter(pl.Series(closed)))

    def flush(self) -> ScoredChunk:
        """Score the flows still held (end of input)."""
        held, self._held = self._held, None
        return self._score(held) if held is not None else ScoredChunk(pl.DataFrame())

    def score_all(self, flows: pl.DataFrame) -> ScoredChunk:
        """Score a whole table at once (its flows in time order): every bucket it holds is closed."""
        if flows.height == 0:
            return ScoredChunk(pl.DataFrame())
        self._check(flows)
        return self._score(flows)

    def _check(self, flows: pl.DataFrame) -> None:
        if "time" not in flows.columns:
            raise SchemaError(
                "the model scores time buckets and needs each flow's time; these flows have none",
                column="time",
            )
        missing = flows["time"].is_null()
        if missing.any():
            first = int(missing.arg_true()[0])
            row = int(flows[ROW][first]) + 1 if ROW in flows.columns else first + 1
            raise SchemaError(
                f"row {row}: no time (the model scores time buckets and needs every flow's time)",
                column="time",
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

    def _score(self, flows: pl.DataFrame) -> ScoredChunk:
        if flows.height == 0:
            return ScoredChunk(pl.DataFrame())
        series = self.view.series(flows)
        new = self.view.working_frame(series).with_columns(
            pl.int_range(pl.len(), dtype=pl.Int64).alias("_series_row")
        )
        combined = self._with_history(new)
        contributions = self.bundle.contributions(self.view.data_of(combined))
        position = combined["_series_row"]
        is_new = position.is_not_null().to_numpy()
        per_bucket = np.empty((series.frame.height, contributions.shape[1]), dtype=np.float64)
        per_bucket[position.drop_nulls().to_numpy()] = contributions[is_new]
        self._remember(combined)
        bucket_scores = per_bucket.sum(axis=1)
        scores = series.to_flows(bucket_scores)
        alerts = scores >= self.threshold
        top_features, explanation = self._top_features(series, per_bucket, alerts)
        out = identity(flows).with_columns(
            series.frame["bucket"].gather(series.row_bucket).alias("bucket"),
            pl.Series("score", scores, dtype=pl.Float64),
            pl.lit(self.threshold, dtype=pl.Float64).alias("threshold"),
            *self.explainer.scale(scores, self.threshold, alerts),
            pl.Series("alert", alerts, dtype=pl.Boolean),
            pl.repeat(None, flows.height, dtype=pl.String, eager=True).alias("class"),
            top_features,
            explanation,
        )
        return ScoredChunk(out)

    def _top_features(
        self, series: BucketSeries, per_bucket: np.ndarray, alerts: np.ndarray
    ) -> tuple[pl.Series, pl.Series]:
        """Each alert's top bucket metrics (largest contributions first) with the bucket's values,
        labels, shares and normal ranges, and its explanation; work grows with alerted buckets."""
        if not alerts.any():
            return no_explanations(len(alerts))
        buckets, which = np.unique(series.row_bucket[alerts], return_inverse=True)
        metrics = len(self.view.metrics)
        found, shares = top_contributions(per_bucket[buckets], self.top)
        top = found.shape[1]
        raw = series.frame.select(self.view.metrics).to_numpy()[buckets]
        starts = series.frame["bucket"].dt.epoch("us").to_numpy()[buckets]
        best = found.ravel()
        bucket_of = np.repeat(np.arange(len(buckets)), top)
        # a calendar feature reads as the bucket's time
        texts = [
            _metric_text(raw[b, j]) if j < metrics else calendar_text(int(starts[b]))
            for b, j in zip(bucket_of.tolist(), best.tolist(), strict=True)
        ]
        totals = np.abs(per_bucket[buckets]).sum(axis=1)[bucket_of]
        entries = self.explainer.entries(best, shares.ravel(), np.asarray(texts, dtype=object), totals)
        structs, explanation = self.explainer.lists(entries, len(buckets), top)
        index = pl.Series(which)
        return (
            over_alerts(structs.gather(index), alerts),
            over_alerts(explanation.gather(index), alerts).alias("explanation"),
        )


def _metric_text(value: float) -> str:
    """A bucket metric as text: counts without decimals, shares to three places."""
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:.3f}"


__all__ = ["BucketScorer"]
