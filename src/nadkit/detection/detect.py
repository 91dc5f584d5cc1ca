"""A model bundle applied to flows: scores, alerts and their explanations, in bounded memory.

The input is read in chunks (:func:`nadkit.sources.iter_flows`) and pushed to one :class:`Scorer`,
which reads them through the view the model was trained on (:mod:`nadkit.detection.views`): one row
per flow, with features that look across flows carrying their state from chunk to chunk, or one row
per entity and time bucket, a bucket scored once the time-ordered input has moved past it and every
flow taking its bucket's score (records then carry the bucket's start as ``bucket``). Windowed
detectors keep the last rows (or buckets) of each entity, so detection in chunks gives the same
scores as detection of the whole input at once. Memory holds one chunk plus that carried-over state.

Each scored flow carries its identifying fields, the score, the threshold, the score's percentile
among normal scores and its multiple of the threshold, whether it is an alert, the predicted class
(models that have classes) and, for alerts, a severity, the top contributing features of its unit
with the values behind them (the flow's raw values, or the bucket's metrics), their labels, shares of
the score and normal ranges, and an explanation in words (:mod:`nadkit.detection.explain`).
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from nadkit.detection.chunks import (
    Background,
    ScoredChunk,
    bundle_threshold,
    identity,
    over_alerts,
    prefetched,
)
from nadkit.detection.explain import Explainer, no_explanations, severity_counts, top_alerts
from nadkit.detection.views import ScoringView, ViewBatch, scoring_view
from nadkit.errors import ConfigError, SchemaError
from nadkit.evaluation.calibration import SeverityRules
from nadkit.features.data import DEFAULT_ENTITY
from nadkit.fileio import atomic_path
from nadkit.models.base import top_contributions
from nadkit.schema import NORMAL
from nadkit.sources import BadRows, iter_flows
from nadkit.training.bundle import ModelBundle

log = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 200_000
#: called by a :class:`Scorer` after each scored chunk with the units' detector input (rows x
#: features) and their scores, e.g. to measure drift (:mod:`nadkit.evaluation.drift`)
ScoredHook = Callable[[np.ndarray, np.ndarray], None]


# ---------------------------------------------------------------------------------------------------
# scoring a stream of chunks
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedBatch:
    """A chunk's features, ready to score (:meth:`Scorer.prepare`; None when no flow is final yet),
    and how many flows are held back after it."""

    batch: ViewBatch | None
    held_rows: int


class Scorer:
    """Scores flows chunk after chunk with a bundle, through the view its model reads
    (:mod:`nadkit.detection.views`: one row per flow, or per entity and time bucket), carrying the
    view's state across chunks.

    ``lateness_s``/``late``: how much out-of-order input is waited for, and whether a flow older than
    flows already released is refused (``error``) or dropped and counted (``drop``); ``entity``: the
    columns a windowed per-flow model's windows follow; ``severity``: the alerts' severity cut points
    (the defaults when None); ``alerts_only``: each chunk's frame holds the alerted flows only (its
    ``flows`` still counts every flow scored), for callers that keep nothing else."""

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
        on_scored: ScoredHook | None = None,
        alerts_only: bool = False,
    ) -> None:
        self.bundle = bundle
        self.alerts_only = alerts_only
        self.on_scored = on_scored
        self.view: ScoringView = scoring_view(bundle, entity=entity, lateness_s=lateness_s, late=late)
        self.detector = bundle.detector
        self.threshold = bundle_threshold(bundle, threshold)
        #: features listed per alert; 0: alerts are not explained (scores and alerts only)
        self.top = max(0, int(top))
        self._classes: tuple[str, ...] = self.detector.classes_
        # a row detector scores every unit and explains only the alerted ones (a window detector's
        # units need the rows before them, so it computes every unit's contributions at once)
        self._explain_alerts_only = not self.view.windowed
        scaling = bundle.pipeline.scaling_ if bundle.pipeline is not None else None
        self.explainer = Explainer(self.view.names, bundle.calibration, scaling=scaling, rules=severity)

    @property
    def held_rows(self) -> int:
        """Flows held back now: features that need later flows (open segments...), or buckets that
        are still open."""
        return self.view.held_rows

    @property
    def time_ordered(self) -> bool:
        """Whether the input must come in time order (features that look across flows, buckets)."""
        return self.view.time_ordered

    @property
    def lateness_us(self) -> int:
        """How far behind the newest flow a flow may arrive and still be scored (microseconds)."""
        return self.view.lateness_us

    @property
    def late_dropped(self) -> int:
        """Flows dropped because they came after newer flows had been released."""
        return self.view.late_dropped

    @property
    def input_columns(self) -> tuple[str, ...]:
        """The flow columns the model reads."""
        return self.view.input_columns

    def push(self, flows: pl.DataFrame) -> ScoredChunk:
        """Score the flows of this chunk whose features are final (the rest come later)."""
        return self.score_prepared(self.prepare(flows))

    def flush(self) -> ScoredChunk:
        """Score every flow still held (end of input)."""
        return self.score_prepared(self.prepare(None))

    def prepare(self, flows: pl.DataFrame | None) -> PreparedBatch:
        """The first half of :meth:`push` (``flows``) or :meth:`flush` (None): the features of the
        flows that are final now, and how many flows stay held. Calls must come in input order,
        but the scoring of one batch (:meth:`score_prepared`) may overlap the preparation of the
        next, as :func:`score_chunks` does on two threads."""
        with _numbers_expected():
            batch = self.view.flush() if flows is None else self.view.push(flows)
        return PreparedBatch(batch, self.view.held_rows)

    def score_prepared(self, prepared: PreparedBatch) -> ScoredChunk:
        """The second half of :meth:`push`: scores, alerts and explanations of a prepared batch."""
        with _numbers_expected():
            chunk = self._score(prepared.batch)
        return dataclasses.replace(chunk, held_rows=prepared.held_rows)

    def score_all(self, flows: pl.DataFrame) -> ScoredChunk:
        """Score a whole table at once: :meth:`push` then :meth:`flush` as one model call (a fresh
        scorer's answer for a complete batch, such as one request's flows)."""
        with _numbers_expected():
            return self._score(self.view.complete(flows))

    # -- internals ---------------------------------------------------------------------------------

    def _score(self, batch: ViewBatch | None) -> ScoredChunk:
        if batch is None or batch.flows.height == 0:
            return ScoredChunk(pl.DataFrame())
        predicted = None
        explained: np.ndarray | None = None
        if self._explain_alerts_only:
            if self._classes or self.detector.costly_contributions:
                unit_scores, predicted = self.detector.score_and_predict(batch.data)
            elif self.top and batch.unit_of_flow is None:
                # one pass: the alerts' contributions come out of the graph with the scores
                unit_scores, _, explained = self.bundle.score_and_explain(batch.data, self.threshold)
            else:
                unit_scores = self.bundle.score_data(batch.data)
            contributions = None
        else:
            contributions = self.bundle.contributions(batch.data)
            if batch.units is not None:
                contributions = contributions[batch.units]
            unit_scores = contributions.sum(axis=1)
        of_flow = batch.unit_of_flow
        scores = unit_scores if of_flow is None else np.asarray(unit_scores, dtype=np.float64)[of_flow]
        alerts = scores >= self.threshold
        units = np.flatnonzero(alerts) if of_flow is None else np.unique(of_flow[alerts])
        if self.top == 0 or not len(units):
            explained = None
        elif explained is None:  # not taken with the scores
            # ranked, summed and shown as float64, but from the graph's float32 numbers, which a
            # float64 copy of every alert's contributions would only have converted
            explained = (
                self.bundle.contributions(batch.data.take(units), native=True)
                if contributions is None
                else contributions[units]
            )
        top_features, explanation = self._top_features(batch, units, explained, alerts)
        flows, columns = batch.flows, batch.columns
        predicted_column = self._predicted(batch, len(alerts), predicted)
        if self.alerts_only:
            # only the alerted flows' records are built (the explanations are theirs already)
            kept = np.flatnonzero(alerts)
            flows, scores, alerts = flows[kept], scores[kept], alerts[kept]
            columns = [column.gather(kept) for column in columns]
            predicted_column = predicted_column.gather(kept)
        else:
            top_features, explanation = over_alerts(top_features, alerts), over_alerts(explanation, alerts)
        out = identity(flows).with_columns(
            *columns,
            pl.Series("score", scores, dtype=pl.Float64),
            pl.lit(self.threshold, dtype=pl.Float64).alias("threshold"),
            *self.explainer.scale(scores, self.threshold, alerts),
            pl.Series("alert", alerts, dtype=pl.Boolean),
            predicted_column,
            top_features.alias("top_features"),
            explanation.alias("explanation"),
        )
        if self.on_scored is not None:
            self.on_scored(batch.hook_rows(), np.asarray(unit_scores, float))
        return ScoredChunk(out, scored=batch.flows.height)

    def _predicted(self, batch: ViewBatch, rows: int, predicted: np.ndarray | None) -> pl.Series:
        """The ``class`` column: ``predicted`` (computed with the scores) or the detector's
        predictions; null for detectors without classes."""
        if predicted is None and not self._classes:
            return pl.repeat(None, rows, dtype=pl.String, eager=True).alias("class")
        if predicted is None:
            predicted = self.detector.predict(batch.data)
            if batch.units is not None:
                predicted = np.asarray(predicted)[batch.units]
        if batch.unit_of_flow is not None:
            predicted = np.asarray(predicted)[batch.unit_of_flow]
        return pl.Series("class", np.asarray(predicted, dtype=str), dtype=pl.String)

    def _top_features(
        self, batch: ViewBatch, units: np.ndarray, explained: np.ndarray | None, alerts: np.ndarray
    ) -> tuple[pl.Series, pl.Series]:
        """For each alert, in row order, the ``top`` features of its unit (largest contributions
        first) with the values behind them, labels, shares and normal ranges, and its explanation
        (nulls where alerts are not explained). ``units``: the alerted units (flows or buckets), in
        order; ``explained``: their contributions. Work grows with alerted units x ``top``, not with
        the number of features."""
        if len(units) == 0 or explained is None:
            return no_explanations(int(np.count_nonzero(alerts)))
        indices, values = top_contributions(explained, self.top)
        top = indices.shape[1]
        best, picked = indices.ravel(), values.ravel()
        unit_of_entry = np.repeat(units, top)
        texts = self.view.values(batch, unit_of_entry, best)
        totals = np.abs(explained).sum(axis=1, dtype=np.float64)[np.repeat(np.arange(len(units)), top)]
        scaled = None if batch.matrix is None else batch.matrix[unit_of_entry, best]
        entries = self.explainer.entries(best, picked, texts, totals, scaled)
        structs, explanation = self.explainer.lists(entries, len(units), top)
        if batch.unit_of_flow is not None:
            # every alerted flow takes its unit's explanation
            index = pl.Series(np.searchsorted(units, batch.unit_of_flow[alerts]))
            structs, explanation = structs.gather(index), explanation.gather(index)
        return structs, explanation


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
    on_scored: ScoredHook | None = None,
    alerts_only: bool = False,
) -> Iterator[tuple[ScoredChunk, Scorer]]:
    """Scored chunks of ``source`` (in the order flows become final; ``row`` gives input order).
    ``on_read`` is called with each chunk of flows as read, before it is scored; ``on_bad_rows``:
    see :func:`nadkit.sources.load_flows`; ``alerts_only``: each chunk's frame holds its alerts only
    (see :class:`Scorer`)."""
    scorer = Scorer(
        bundle, threshold=threshold, top=top, severity=severity, on_scored=on_scored, alerts_only=alerts_only
    )
    time_order = scorer.time_ordered
    try:
        pieces = iter_flows(
            source,
            format=format,
            mapping=mapping,
            chunk_rows=chunk_rows,
            time_order=time_order,
            on_bad_rows=on_bad_rows,
        )

        def prepared() -> Iterator[tuple[pl.DataFrame | None, PreparedBatch]]:
            for piece in prefetched(pieces):
                yield piece, scorer.prepare(piece)
            yield None, scorer.prepare(None)

        # three stages on three threads: reading the next chunks, the features of the next, and
        # scoring and explaining this one (the work in each releases the GIL for the most part)
        for piece, batch in prefetched(prepared()):
            if piece is not None and on_read is not None:
                on_read(piece)
            yield scorer.score_prepared(batch), scorer
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
    on_scored: ScoredHook | None = None,
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
    with (
        atomic_path(out, overwrite=overwrite) as temporary,
        # a chunk is written on its own thread while the next is scored, one write at a time and in
        # order, and so is the scored-rows hook (drift counting); a failure stops detection at the
        # next chunk
        Background(on_scored or (lambda features, scores: None), "nadkit-scored") as observe,
        Background(lambda frame: writer.write(frame), "nadkit-write") as write,
    ):
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
                on_scored=None if on_scored is None else observe,
                alerts_only=alerts_only,
            ):
                value = scorer.threshold
                held = max(held, chunk.held_rows)
                frame = chunk.frame
                if chunk.flows == 0:
                    continue
                flows += chunk.flows
                alerts += chunk.alerts
                if alerts_only:
                    alerted = frame  # the scorer kept the alerts only
                else:
                    alerted = frame.filter(pl.col("alert")) if chunk.alerts else frame.clear()
                if alerted.height and "class" in alerted.columns:
                    for name, count in alerted["class"].fill_null("anomaly").value_counts().iter_rows():
                        by_class[name] = by_class.get(name, 0) + count
                write(alerted if alerts_only else frame)
                if alerted.height:
                    raised.append(alerted)
                if progress is not None:
                    progress(flows, alerts)
            write.finish()
            observe.finish()
        finally:
            write.settle()
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
    top: int = 0,
) -> ScoredTable:
    """Scores of every flow of ``source`` in input order, identifying columns kept; with ``top`` the
    alerts' ``top_features`` (that many each) and ``explanation`` as well, else none are computed.
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
        top=top,
        on_read=on_read,
        on_bad_rows=on_bad_rows,
    ):
        value = scorer.threshold
        if chunk.frame.height:
            parts.append(chunk.frame if top else chunk.frame.drop("top_features"))
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
    bundle: ModelBundle,
    flows: pl.DataFrame,
    *,
    top: int = 5,
    severity: SeverityRules | None = None,
    threshold: float | None = None,
    on_scored: ScoredHook | None = None,
    alerts_only: bool = False,
) -> pl.DataFrame:
    """Score a canonical flow table as one table (a fresh scorer, flushed at the end): every row's
    scored record in input order (``row`` is the 1-based input row), with the input's other flow
    columns beside the scorer's; a value the schema refuses raises :class:`SchemaError`. ``severity``:
    see :class:`Scorer`; ``alerts_only``: the alerted rows' records only. Flows are
    scored in time order when the model's features look across flows; the output keeps the input
    order."""
    if flows.height == 0:
        return pl.DataFrame()
    indexed = flows.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
    scorer = Scorer(
        bundle, top=top, severity=severity, threshold=threshold, on_scored=on_scored, alerts_only=alerts_only
    )
    if scorer.time_ordered and "time" in indexed.columns:
        indexed = indexed.sort("time", maintain_order=True, nulls_last=False)
    scored = scorer.score_all(indexed).frame.sort("row")
    rest = [c for c in indexed.columns if c not in scored.columns]
    if rest:
        extra = indexed.select(pl.col("row") + 1, *rest)
        scored = scored.join(extra, on="row", how="left")
    return scored
