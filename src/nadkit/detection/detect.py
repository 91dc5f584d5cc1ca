"""A model bundle applied to flows: scores, alerts and their explanations, in bounded memory.

The input is read in chunks (:func:`nadkit.sources.iter_flows`); features that look across flows keep
their state from chunk to chunk (:class:`~nadkit.features.incremental.IncrementalFeatures`), and windowed
detectors keep the last rows of each entity, so detection in chunks gives the same scores as detection
of the whole input at once. Memory holds one chunk plus that carried-over state.

Each scored flow carries its identifying fields, the score, the threshold, whether it is an alert,
the predicted class (models that have classes) and, for alerts, the top contributing features with the
flow's raw values behind them.

A model of time buckets (:class:`BucketScorer`) scores whole buckets: a bucket is scored once the
time-ordered input has moved past it, every flow takes its bucket's score, and an alert's top features
are its bucket's metrics with the bucket's values; records carry the bucket's start as ``bucket``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from nadkit.alerts.records import (
    ID_COLUMNS,
    TOP_FEATURE,
    RecordWriter,
    output_kind,
)
from nadkit.errors import ConfigError, SchemaError
from nadkit.features.buckets import KEY, NUMBER, BucketView, calendar_text
from nadkit.features.data import DEFAULT_ENTITY, entity_codes
from nadkit.features.incremental import SEQ, IncrementalFeatures
from nadkit.features.series import BucketSeries
from nadkit.fileio import atomic_path
from nadkit.models.base import DetectorData, top_contributions
from nadkit.schema import NORMAL
from nadkit.sources import ROW, BadRows, iter_flows
from nadkit.training.bundle import ModelBundle

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 200_000


# ---------------------------------------------------------------------------------------------------
# scoring a stream of chunks
# ---------------------------------------------------------------------------------------------------


@dataclass
class _WindowTail:
    """The last ``window - 1`` rows of each entity already scored, prepended to the next rows so that
    their windows see the same history as in one pass over the whole input."""

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


@dataclass(frozen=True)
class ScoredChunk:
    """Scores of some flows: the identifying columns, ``score``, ``alert``, ``class`` and, for
    alerts, ``top_features``; ``row`` is the flow's 1-based row in the input."""

    frame: pl.DataFrame

    @property
    def alerts(self) -> int:
        return int(self.frame["alert"].sum()) if self.frame.height else 0


class Scorer:
    """Scores flows chunk after chunk with a bundle, carrying feature and window state across chunks."""

    def __init__(
        self,
        bundle: ModelBundle,
        *,
        threshold: float | None = None,
        top: int = 5,
        entity: Sequence[str] = DEFAULT_ENTITY,
        lateness_s: float = 0.0,
        late: Literal["error", "drop"] = "error",
    ) -> None:
        self.bundle = bundle
        self.pipeline = bundle.flow_pipeline()
        self.detector = bundle.detector
        self.threshold = bundle_threshold(bundle, threshold)
        self.top = max(1, int(top))
        self.windowed = self.detector.input == "windows"
        self.entity = tuple(entity)
        self._entity_key = self.entity if self.windowed else ()
        order_by = self._entity_key if self.windowed and self.pipeline.stateful else None
        self.features = IncrementalFeatures(
            self.pipeline, order_by=order_by, lateness_s=lateness_s, late=late
        )
        window = int(getattr(self.detector.config, "window", 1))
        self._tail = _WindowTail(keep=window - 1, key=self._entity_key) if self.windowed else None
        self._names = tuple(self.pipeline.feature_names_)
        self._raw = {name: self.pipeline.raw_columns_.get(name, []) for name in self._names}
        self._classes: tuple[str, ...] = self.detector.classes_
        self._explain_alerts_only = self.detector.costly_contributions and not self.windowed

    @property
    def held_rows(self) -> int:
        """Flows held back now for features that need later flows (open segments...)."""
        return self.features.held_rows

    @property
    def time_ordered(self) -> bool:
        """Whether the input must come in time order (features that look across flows)."""
        return self.pipeline.stateful

    def push(self, flows: pl.DataFrame) -> ScoredChunk:
        """Score the flows of this chunk whose features are final (the rest come later)."""
        with _numbers_expected():
            return self._score(self.features.push(flows))

    def flush(self) -> ScoredChunk:
        """Score every flow still held (end of input)."""
        with _numbers_expected():
            return self._score(self.features.flush())

    def score_all(self, flows: pl.DataFrame) -> ScoredChunk:
        """Score a whole table at once: :meth:`push` then :meth:`flush` as one model call (a fresh
        scorer's answer for a complete batch, such as one request's flows)."""
        with _numbers_expected():
            final = self.features.push(flows)
            rest = self.features.flush()
            parts = [p for p in (final, rest) if p.height]
            if len(parts) == 2:
                return self._score(pl.concat(parts, how="vertical_relaxed"))
            return self._score(parts[0] if parts else final)

    # -- internals ---------------------------------------------------------------------------------

    def _score(self, augmented: pl.DataFrame) -> ScoredChunk:
        if augmented.height == 0:
            return ScoredChunk(pl.DataFrame())
        features = self.pipeline.transform_augmented(augmented)
        matrix = np.ascontiguousarray(features.to_numpy(), dtype=np.float32)
        times = (
            augmented["time"].dt.epoch("us").fill_null(0).to_numpy() if "time" in augmented.columns else None
        )
        if self._explain_alerts_only:
            # contributions cost far more than scores here: score every flow, explain the alerts
            data = self._data(augmented, matrix, times)
            scores, predicted = self.detector.score_and_predict(data)
            alerts = scores >= self.threshold
            explained = self.bundle.contributions(data.take(alerts)) if alerts.any() else None
        else:
            contributions = self._contributions(augmented, matrix, times)
            scores = contributions.sum(axis=1)
            alerts = scores >= self.threshold
            explained, predicted = contributions[alerts], None
        out = identity(augmented).with_columns(
            pl.Series("score", scores, dtype=pl.Float64),
            pl.lit(self.threshold, dtype=pl.Float64).alias("threshold"),
            pl.Series("alert", alerts, dtype=pl.Boolean),
            self._predicted(matrix, augmented, times, len(alerts), predicted),
            self._top_features(augmented, explained, alerts),
        )
        return ScoredChunk(out)

    def _data(self, keys: pl.DataFrame, matrix: np.ndarray, times: np.ndarray | None) -> DetectorData:
        return DetectorData(
            features=matrix,
            feature_names=self._names,
            entity=entity_codes(keys, self._entity_key) if self._entity_key else None,
            time=times,
        )

    def _contributions(
        self, augmented: pl.DataFrame, matrix: np.ndarray, times: np.ndarray | None
    ) -> np.ndarray:
        if self._tail is None:
            return self.bundle.contributions(self._data(augmented, matrix, times))
        key_columns = [c for c in self._entity_key if c in augmented.columns]
        keys = augmented.select(key_columns)
        all_keys, all_times, all_matrix, offset = self._tail.combine(keys, times, matrix)
        contributions = self.bundle.contributions(self._data(all_keys, all_matrix, all_times))
        self._tail.update(all_keys, all_times, all_matrix)
        return contributions[offset:]

    def _predicted(
        self,
        matrix: np.ndarray,
        augmented: pl.DataFrame,
        times: np.ndarray | None,
        rows: int,
        predicted: np.ndarray | None = None,
    ) -> pl.Series:
        """The ``class`` column: ``predicted`` (computed with the scores) or the detector's
        predictions; null for detectors without classes."""
        if predicted is None and not self._classes:
            return pl.repeat(None, rows, dtype=pl.String, eager=True).alias("class")
        if predicted is None:
            predicted = self.detector.predict(self._data(augmented, matrix, times))
        return pl.Series("class", np.asarray(predicted, dtype=str), dtype=pl.String)

    def _value_text(self, name: str, columns: Sequence[str]) -> pl.Expr:
        """The raw value(s) behind feature ``name`` as text: ``296``, or ``a=1, b=2`` for several."""
        raw = [c for c in self._raw[name] if c in columns]
        if not raw:
            return pl.lit(None, dtype=pl.String)
        if len(raw) == 1:
            return _as_text(pl.col(raw[0]))
        parts: list[pl.Expr] = []
        for i, column in enumerate(raw):
            parts.extend(
                [pl.lit(("" if i == 0 else ", ") + column + "="), _as_text(pl.col(column)).fill_null("null")]
            )
        return pl.concat_str(parts)

    def _top_features(
        self, augmented: pl.DataFrame, explained: np.ndarray | None, alerts: np.ndarray
    ) -> pl.Series:
        """For each alert, its ``top`` features (largest contributions first) with their raw values;
        null for other flows. ``explained``: the contributions of the alerts only, in row order.
        Work grows with alerts x ``top``, not with the number of features."""
        rows = np.flatnonzero(alerts)
        dtype = pl.List(TOP_FEATURE)
        if len(rows) == 0 or explained is None:
            return pl.Series("top_features", [None] * len(alerts), dtype=dtype)
        indices, values = top_contributions(explained, self.top)
        top = indices.shape[1]
        best, picked = indices.ravel(), values.ravel()
        # the raw values behind each listed feature, one query per distinct feature
        alert_of = np.repeat(np.arange(len(rows)), top)
        subset = augmented[rows]
        texts = np.full(len(best), None, dtype=object)
        by_feature = np.argsort(best, kind="stable")
        features, starts = np.unique(best[by_feature], return_index=True)
        ends = np.append(starts[1:], len(best))
        for j, start, stop in zip(features, starts, ends, strict=True):
            where = by_feature[start:stop]
            expression = self._value_text(self._names[j], subset.columns).alias("v")
            texts[where] = subset[alert_of[where]].select(expression)["v"].to_numpy()
        names = np.asarray(self._names, dtype=object)[best]
        flat = pl.DataFrame(
            {
                "feature": pl.Series(names, dtype=pl.String),
                "contribution": pl.Series(picked, dtype=pl.Float64),
                "value": pl.Series(texts, dtype=pl.String),
            }
        ).select(pl.struct("feature", "contribution", "value").alias("top_features"))["top_features"]
        structs = flat.reshape((len(rows), top)).cast(dtype).alias("top_features")
        return over_alerts(structs, alerts)


@contextlib.contextmanager
def _numbers_expected() -> Iterator[None]:
    """A column the model reads as numbers that holds text (a service request, a stream line) is a
    :class:`SchemaError` naming the column, not a failure inside the feature computation."""
    try:
        yield
    except pl.exceptions.InvalidOperationError as error:
        found = re.search(r"in column '([^']+)'", str(error))
        if found is None:
            raise
        raise SchemaError(
            "holds values that are not numbers, and the model reads this column as numbers",
            column=found.group(1),
        ) from None


def identity(flows: pl.DataFrame) -> pl.DataFrame:
    """The 1-based input ``row`` of each flow (from the reader's row number, else the incremental
    features' sequence number, else the position) and the identifying columns present."""
    if ROW in flows.columns:
        row = pl.col(ROW) + 1
    elif SEQ in flows.columns:
        row = pl.col(SEQ) + 1
    else:
        row = pl.int_range(1, pl.len() + 1)
    return flows.select(row.alias("row"), *[c for c in ID_COLUMNS if c in flows.columns])


def over_alerts(per_alert: pl.Series, alerts: np.ndarray) -> pl.Series:
    """``per_alert`` (one value per alert, in row order) as a ``top_features`` column of every row,
    null where there is no alert."""
    if len(per_alert) == len(alerts):
        return per_alert.alias("top_features")
    position = np.full(len(alerts), -1, dtype=np.int64)
    position[np.flatnonzero(alerts)] = np.arange(len(per_alert))
    index = pl.Series("i", position).replace(-1, None)
    return per_alert.gather(index).alias("top_features")


def bundle_threshold(bundle: ModelBundle, threshold: float | None) -> float:
    """``threshold``, or the bundle's own when None (ConfigError when it has none)."""
    if threshold is None:
        if bundle.threshold is None:
            raise ConfigError("the bundle has no threshold; give one with --threshold")
        return bundle.threshold.value
    return float(threshold)


class BucketScorer:
    """Scores time-ordered flows chunk after chunk with a model of time buckets.

    The flows of the newest bucket seen are held until a later flow closes it (or the input ends);
    closed buckets are scored with the last ``window - 1`` buckets of their entity scored before
    (and the empty buckets since) in front of them, so the scores equal those of one pass over the
    whole input."""

    time_ordered = True

    def __init__(self, bundle: ModelBundle, *, threshold: float | None = None, top: int = 5) -> None:
        if bundle.view is None:
            raise ConfigError("a bucket scorer needs a model of time buckets")
        self.bundle = bundle
        self.view: BucketView = bundle.view
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
        out = identity(flows).with_columns(
            series.frame["bucket"].gather(series.row_bucket).alias("bucket"),
            pl.Series("score", scores, dtype=pl.Float64),
            pl.lit(self.threshold, dtype=pl.Float64).alias("threshold"),
            pl.Series("alert", alerts, dtype=pl.Boolean),
            pl.repeat(None, flows.height, dtype=pl.String, eager=True).alias("class"),
            self._top_features(series, per_bucket, alerts),
        )
        return ScoredChunk(out)

    def _top_features(self, series: BucketSeries, per_bucket: np.ndarray, alerts: np.ndarray) -> pl.Series:
        """Each alert's top bucket metrics (largest contributions first) with the bucket's values."""
        dtype = pl.List(TOP_FEATURE)
        if not alerts.any():
            return pl.Series("top_features", [None] * len(alerts), dtype=dtype)
        buckets, which = np.unique(series.row_bucket[alerts], return_inverse=True)
        names = self.view.features
        metrics = len(self.view.metrics)
        found, shares = top_contributions(per_bucket[buckets], self.top)
        raw = series.frame.select(self.view.metrics).to_numpy()[buckets]
        starts = series.frame["bucket"].dt.epoch("us").to_numpy()[buckets]
        lists = []
        for b, (indices, values) in enumerate(zip(found.tolist(), shares.tolist(), strict=True)):
            lists.append(
                [
                    {
                        "feature": names[j],
                        "contribution": float(v),
                        # a calendar feature reads as the bucket's time
                        "value": _metric_text(raw[b, j]) if j < metrics else calendar_text(int(starts[b])),
                    }
                    for j, v in zip(indices, values, strict=True)
                ]
            )
        return over_alerts(pl.Series("top_features", lists, dtype=dtype).gather(which), alerts)


def _metric_text(value: float) -> str:
    """A bucket metric as text: counts without decimals, shares to three places."""
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:.3f}"


def make_scorer(
    bundle: ModelBundle, *, threshold: float | None = None, top: int = 5
) -> Scorer | BucketScorer:
    """The scorer for ``bundle``: :class:`BucketScorer` for a model of time buckets, else
    :class:`Scorer`."""
    if bundle.view is not None:
        return BucketScorer(bundle, threshold=threshold, top=top)
    return Scorer(bundle, threshold=threshold, top=top)


def _as_text(expr: pl.Expr) -> pl.Expr:
    """A column's values as text (times as ISO text)."""
    return expr.cast(pl.String)


# ---------------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectResult:
    """What `nadkit detect` did."""

    output: Path | None
    flows: int
    alerts: int
    written: int
    seconds: float
    threshold: float
    max_held_rows: int
    by_class: dict[str, int] = field(default_factory=dict)

    @property
    def alert_rate(self) -> float:
        return self.alerts / self.flows if self.flows else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "output": str(self.output) if self.output else None,
            "flows": self.flows,
            "alerts": self.alerts,
            "alert_rate": self.alert_rate,
            "written": self.written,
            "seconds": self.seconds,
            "threshold": self.threshold,
            "max_held_rows": self.max_held_rows,
            "alerts_by_class": self.by_class,
        }


def score_chunks(
    bundle: ModelBundle,
    source: str | Path,
    *,
    format: str | None = None,
    mapping: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    threshold: float | None = None,
    top: int = 5,
    on_read: Callable[[pl.DataFrame], None] | None = None,
    on_bad_rows: BadRows = "error",
) -> Iterator[tuple[ScoredChunk, Scorer | BucketScorer]]:
    """Scored chunks of ``source`` (in the order flows become final; ``row`` gives input order).
    ``on_read`` is called with each chunk of flows as read, before it is scored; ``on_bad_rows``:
    see :func:`nadkit.sources.load_flows`."""
    scorer = make_scorer(bundle, threshold=threshold, top=top)
    time_order = scorer.time_ordered
    try:
        for piece in iter_flows(
            source,
            format=format,
            mapping=mapping,
            chunk_rows=chunk_rows,
            time_order=time_order,
            on_bad_rows=on_bad_rows,
        ):
            if on_read is not None:
                on_read(piece)
            yield scorer.push(piece), scorer
        yield scorer.flush(), scorer
    except SchemaError as error:
        if error.path is not None:
            raise
        # what the flows lack for this model: name the file they came from
        raise SchemaError(error.message, path=source, column=error.column, row=error.row) from error


def detect_file(
    bundle: ModelBundle | str | Path,
    source: str | Path,
    out: str | Path,
    *,
    format: str | None = None,
    mapping: str | None = None,
    alerts_only: bool = True,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    threshold: float | None = None,
    top: int = 5,
    overwrite: bool = False,
    engine: str = "auto",
    progress: Callable[[int, int], None] | None = None,
    on_bad_rows: BadRows = "error",
) -> DetectResult:
    """Score every flow of ``source`` and write alerts (or every scored flow) to ``out``
    (``.jsonl``, ``.parquet`` or ``.csv``), atomically. ``progress(flows_scored, alerts)`` is called
    after each chunk."""
    out = Path(out)
    kind = output_kind(out)
    if not isinstance(bundle, ModelBundle):
        bundle = ModelBundle.load(bundle, engine=engine)
    started = time.perf_counter()
    flows = alerts = held = 0
    by_class: dict[str, int] = {}
    with atomic_path(out, overwrite=overwrite) as temporary:
        writer = RecordWriter(temporary, kind)
        try:
            value = threshold
            for chunk, scorer in score_chunks(
                bundle,
                source,
                format=format,
                mapping=mapping,
                chunk_rows=chunk_rows,
                threshold=threshold,
                top=top,
                on_bad_rows=on_bad_rows,
            ):
                value = scorer.threshold
                held = max(held, scorer.held_rows)
                frame = chunk.frame
                if frame.height == 0:
                    continue
                flows += frame.height
                alerts += chunk.alerts
                chosen = frame.filter(pl.col("alert")) if alerts_only else frame
                if chosen.height and "class" in chosen.columns:
                    for name, count in (
                        chosen.filter(pl.col("alert"))["class"]
                        .fill_null("anomaly")
                        .value_counts()
                        .iter_rows()
                    ):
                        by_class[name] = by_class.get(name, 0) + count
                writer.write(chosen)
                if progress is not None:
                    progress(flows, alerts)
        finally:
            writer.close()
    seconds = time.perf_counter() - started
    log.info("%d flows scored, %d alerts, in %.1f s", flows, alerts, seconds)
    return DetectResult(
        output=out,
        flows=flows,
        alerts=alerts,
        written=writer.rows,
        seconds=seconds,
        threshold=float(value) if value is not None else float("nan"),
        max_held_rows=held,
        by_class=by_class,
    )


@dataclass(frozen=True)
class ScoredTable:
    """Every flow's score in input order, with what evaluation needs."""

    scores: np.ndarray
    labels: np.ndarray | None
    time: np.ndarray | None
    predicted: np.ndarray | None
    threshold: float
    frame: pl.DataFrame


def score_table(
    bundle: ModelBundle,
    source: str | Path,
    *,
    format: str | None = None,
    mapping: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    threshold: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_read: Callable[[pl.DataFrame], None] | None = None,
    on_bad_rows: BadRows = "error",
) -> ScoredTable:
    """Scores of every flow of ``source`` in input order (identifying columns kept, explanations not);
    ``on_read``: see :func:`score_chunks`."""
    parts: list[pl.DataFrame] = []
    flows = alerts = 0
    value = threshold
    for chunk, scorer in score_chunks(
        bundle,
        source,
        format=format,
        mapping=mapping,
        chunk_rows=chunk_rows,
        threshold=threshold,
        on_read=on_read,
        on_bad_rows=on_bad_rows,
    ):
        value = scorer.threshold
        if chunk.frame.height:
            parts.append(chunk.frame.drop("top_features"))
            flows += chunk.frame.height
            alerts += chunk.alerts
            if progress is not None:
                progress(flows, alerts)
    if not parts:
        raise ConfigError(f"{source}: no flows to score")
    frame = pl.concat(parts, how="vertical_relaxed").sort("row")
    labels = frame["label"].fill_null(NORMAL).to_numpy() if "label" in frame.columns else None
    times = frame["time"].to_numpy() if "time" in frame.columns else None
    predicted = frame["class"].to_numpy() if frame["class"].null_count() < frame.height else None
    return ScoredTable(
        scores=frame["score"].to_numpy(),
        labels=labels,
        time=times,
        predicted=predicted,
        threshold=float(value) if value is not None else float("nan"),
        frame=frame,
    )


def summary_line(result: DetectResult) -> str:
    """One line for the terminal: flows, alerts, alert rate, speed."""
    rate = result.flows / result.seconds if result.seconds > 0 else 0.0
    return f"{result.flows:,} flows, {result.alerts:,} alerts ({result.alert_rate:.2%}), {rate:,.0f} flows/s"


def dumps(result: DetectResult) -> str:
    """The result as JSON text."""
    return json.dumps(result.to_dict(), indent=2)


def score_flows(bundle: ModelBundle, flows: pl.DataFrame, *, top: int = 5) -> pl.DataFrame:
    """Score a canonical flow table as one table (a fresh scorer, flushed at the end): every row's
    scored record in input order (``row`` is the 1-based input row), with the input's other flow
    columns beside the scorer's; a value the schema refuses raises :class:`SchemaError`. Flows are
    scored in time order when the model's features look across flows; the output keeps the input
    order."""
    if flows.height == 0:
        return pl.DataFrame()
    indexed = flows.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
    scorer = make_scorer(bundle, top=top)
    if scorer.time_ordered and "time" in indexed.columns:
        indexed = indexed.sort("time", maintain_order=True, nulls_last=False)
    scored = scorer.score_all(indexed).frame.sort("row")
    rest = [c for c in indexed.columns if c not in scored.columns]
    if rest:
        extra = indexed.select(pl.col("row") + 1, *rest)
        scored = scored.join(extra, on="row", how="left")
    return scored
