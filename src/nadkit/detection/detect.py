"""A model bundle applied to flows: scores, alerts and their explanations, in bounded memory.

The input is read in chunks (:func:`nadkit.sources.iter_flows`); features that look across flows keep
their state from chunk to chunk (:class:`~nadkit.features.incremental.IncrementalFeatures`), and windowed
detectors keep the last rows of each entity, so detection in chunks gives the same scores as detection
of the whole input at once. Memory holds one chunk plus that carried-over state.

Each scored flow carries its identifying fields, the score, the threshold, the score's percentile
among normal scores and its multiple of the threshold, whether it is an alert, the predicted class
(models that have classes) and, for alerts, a severity, the top contributing features with the flow's
raw values behind them, their labels, shares of the score and normal ranges, and an explanation in
words (:mod:`nadkit.detection.explain`).

A model of time buckets (:class:`~nadkit.detection.buckets.BucketScorer`) scores whole buckets: a
bucket is scored once the time-ordered input has moved past it, every flow takes its bucket's score,
and an alert's top features are its bucket's metrics with the bucket's values; records carry the
bucket's start as ``bucket``.
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

from nadkit.alerts.ecs import EcsWriter, incident_lines
from nadkit.alerts.incidents import IncidentConfig, group_alerts
from nadkit.alerts.records import (
    RecordWriter,
    output_kind,
    times_as_text,
)
from nadkit.detection.buckets import BucketScorer
from nadkit.detection.chunks import ScoredChunk, bundle_threshold, identity, over_alerts
from nadkit.detection.explain import Explainer, no_explanations, severity_counts, top_alerts
from nadkit.errors import ConfigError, SchemaError
from nadkit.evaluation.calibration import SeverityRules
from nadkit.features.data import DEFAULT_ENTITY, entity_codes
from nadkit.features.incremental import IncrementalFeatures
from nadkit.fileio import atomic_path
from nadkit.models.base import DetectorData, top_contributions
from nadkit.schema import NORMAL
from nadkit.sources import BadRows, iter_flows
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
        severity: SeverityRules | None = None,
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
        self.explainer = Explainer(
            self._names, bundle.calibration, scaling=self.pipeline.scaling_, rules=severity
        )

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
        top_features, explanation = self._top_features(augmented, explained, alerts, matrix)
        out = identity(augmented).with_columns(
            pl.Series("score", scores, dtype=pl.Float64),
            pl.lit(self.threshold, dtype=pl.Float64).alias("threshold"),
            *self.explainer.scale(scores, self.threshold, alerts),
            pl.Series("alert", alerts, dtype=pl.Boolean),
            self._predicted(matrix, augmented, times, len(alerts), predicted),
            top_features,
            explanation,
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
        self, augmented: pl.DataFrame, explained: np.ndarray | None, alerts: np.ndarray, matrix: np.ndarray
    ) -> tuple[pl.Series, pl.Series]:
        """For each alert, its ``top`` features (largest contributions first) with their raw values,
        labels, shares and normal ranges, and its explanation; null for other flows. ``explained``:
        the contributions of the alerts only, in row order; ``matrix``: every row's scaled features.
        Work grows with alerts x ``top``, not with the number of features."""
        rows = np.flatnonzero(alerts)
        if len(rows) == 0 or explained is None:
            return no_explanations(len(alerts))
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
        totals = np.abs(explained).sum(axis=1)[alert_of]
        scaled = matrix[rows[alert_of], best]
        entries = self.explainer.entries(best, picked, texts, totals, scaled)
        structs, explanation = self.explainer.lists(entries, len(rows), top)
        return over_alerts(structs, alerts), over_alerts(explanation, alerts).alias("explanation")


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


def make_scorer(
    bundle: ModelBundle,
    *,
    threshold: float | None = None,
    top: int = 5,
    severity: SeverityRules | None = None,
) -> Scorer | BucketScorer:
    """The scorer for ``bundle``: :class:`BucketScorer` for a model of time buckets, else
    :class:`Scorer`; ``severity``: the cut points of the alerts' severity (the defaults when None)."""
    if bundle.view is not None:
        return BucketScorer(bundle, threshold=threshold, top=top, severity=severity)
    return Scorer(bundle, threshold=threshold, top=top, severity=severity)


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
    #: the incidents the alerts form (one row each, see :mod:`nadkit.alerts.incidents`)
    incidents: pl.DataFrame | None = None
    #: where the incidents were written, when asked
    incidents_output: Path | None = None
    #: alerts of each severity (see :class:`~nadkit.evaluation.calibration.SeverityRules`)
    by_severity: dict[str, int] = field(default_factory=dict)
    #: the highest-scoring alerts (see :func:`top_alerts`)
    top_alerts: pl.DataFrame | None = None

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
            "incidents": 0 if self.incidents is None else self.incidents.height,
            "incidents_by_kind": {}
            if self.incidents is None or self.incidents.height == 0
            else dict(self.incidents["kind"].value_counts().iter_rows()),
            "incidents_output": str(self.incidents_output) if self.incidents_output else None,
            "alerts_by_severity": self.by_severity,
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
    severity: SeverityRules | None = None,
) -> Iterator[tuple[ScoredChunk, Scorer | BucketScorer]]:
    """Scored chunks of ``source`` (in the order flows become final; ``row`` gives input order).
    ``on_read`` is called with each chunk of flows as read, before it is scored; ``on_bad_rows``:
    see :func:`nadkit.sources.load_flows`."""
    scorer = make_scorer(bundle, threshold=threshold, top=top, severity=severity)
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
    incidents: str | Path | None = None,
    incident_config: IncidentConfig | None = None,
    layout: str = "nadkit",
    severity: SeverityRules | None = None,
) -> DetectResult:
    """Score every flow of ``source`` and write alerts (or every scored flow) to ``out``
    (``.jsonl``, ``.parquet`` or ``.csv``), atomically. ``progress(flows_scored, alerts)`` is called
    after each chunk; ``severity``: the alerts' severity cut points. The alerts are grouped into
    incidents (``incident_config``), returned in the
    result and written to ``incidents`` when given (JSON lines, Parquet or CSV by its suffix; an
    incident's ``refs`` are the rows of its alerts). ``layout="ecs"`` writes both as Elastic Common
    Schema documents in JSON lines (:mod:`nadkit.alerts.ecs`)."""
    out = Path(out)
    kind = output_kind(out, layout)
    if not isinstance(bundle, ModelBundle):
        bundle = ModelBundle.load(bundle, engine=engine)
    started = time.perf_counter()
    flows = alerts = held = 0
    by_class: dict[str, int] = {}
    if incidents is not None:
        output_kind(incidents, layout)
        if Path(incidents).exists() and not overwrite:
            raise ConfigError(f"{incidents}: already exists (use --force to replace it)")
    raised: list[pl.DataFrame] = []
    with atomic_path(out, overwrite=overwrite) as temporary:
        writer = EcsWriter(temporary) if kind == "ecs" else RecordWriter(temporary, kind)
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
                severity=severity,
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
                if chunk.alerts:
                    raised.append(frame.filter(pl.col("alert")))
                if progress is not None:
                    progress(flows, alerts)
        finally:
            writer.close()
    found = group_alerts(
        pl.concat(raised, how="diagonal_relaxed") if raised else pl.DataFrame(), incident_config
    ).summary
    if incidents is not None:
        write_incidents(found, incidents, overwrite=overwrite, layout=layout)
    seconds = time.perf_counter() - started
    log.info("%d flows scored, %d alerts, %d incidents, in %.1f s", flows, alerts, found.height, seconds)
    return DetectResult(
        output=out,
        flows=flows,
        alerts=alerts,
        written=writer.rows,
        seconds=seconds,
        threshold=float(value) if value is not None else float("nan"),
        max_held_rows=held,
        by_class=by_class,
        incidents=found,
        incidents_output=Path(incidents) if incidents is not None else None,
        by_severity=severity_counts(raised),
        top_alerts=top_alerts(raised),
    )


def write_incidents(
    summary: pl.DataFrame, path: str | Path, *, overwrite: bool = False, layout: str = "nadkit"
) -> Path:
    """Write an incidents summary (JSON lines, Parquet or CSV by the suffix; in CSV the lists as
    text; ``layout="ecs"``: ECS documents), atomically."""
    kind = output_kind(path, layout)
    with atomic_path(path, overwrite=overwrite) as temporary:
        if kind == "ecs":
            temporary.write_bytes(b"".join(line + b"\n" for line in incident_lines(summary)))
        elif kind == "parquet":
            summary.write_parquet(temporary)
        elif kind == "jsonl":
            times_as_text(summary).write_ndjson(temporary)
        else:
            flat = summary.with_columns(
                [
                    pl.col(c).list.eval(pl.element().cast(pl.String)).list.join("; ")
                    if not isinstance(summary.schema[c].inner, pl.Struct)  # type: ignore[attr-defined]
                    else pl.col(c)
                    .list.eval(
                        pl.format(
                            "{} ({})", pl.element().struct.field("value"), pl.element().struct.field("count")
                        )
                    )
                    .list.join("; ")
                    for c, dtype in summary.schema.items()
                    if isinstance(dtype, pl.List)
                ]
            )
            times_as_text(flat).write_csv(temporary)
    return Path(path)


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


def score_flows(
    bundle: ModelBundle, flows: pl.DataFrame, *, top: int = 5, severity: SeverityRules | None = None
) -> pl.DataFrame:
    """Score a canonical flow table as one table (a fresh scorer, flushed at the end): every row's
    scored record in input order (``row`` is the 1-based input row), with the input's other flow
    columns beside the scorer's; a value the schema refuses raises :class:`SchemaError`. ``severity``:
    see :func:`make_scorer`. Flows are
    scored in time order when the model's features look across flows; the output keeps the input
    order."""
    if flows.height == 0:
        return pl.DataFrame()
    indexed = flows.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
    scorer = make_scorer(bundle, top=top, severity=severity)
    if scorer.time_ordered and "time" in indexed.columns:
        indexed = indexed.sort("time", maintain_order=True, nulls_last=False)
    scored = scorer.score_all(indexed).frame.sort("row")
    rest = [c for c in indexed.columns if c not in scored.columns]
    if rest:
        extra = indexed.select(pl.col("row") + 1, *rest)
        scored = scored.join(extra, on="row", how="left")
    return scored
