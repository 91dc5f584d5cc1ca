"""A trained model measured on labelled flows: what `nadkit evaluate` computes and reports.

The flows are scored exactly as `nadkit detect` scores them (in chunks, with the bundle's threshold
unless another is given); the metrics come from :mod:`nadkit.evaluation.metrics` and the report from
:mod:`nadkit.pictures.report`.

Figures measured on the data a model was trained on are optimistic, so the evaluated rows are
compared with the training rows the bundle keeps hashes of (:mod:`nadkit.evaluation.overlap`), and with its
data
fingerprint where the row counts agree. When more than :data:`~nadkit.evaluation.overlap.OVERLAP_SHARE` of the
evaluated rows are training rows, or the fingerprint matches, a warning is logged and the report and
the JSON output say so first. A bundle saved without row hashes is evaluated without that check.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from nadkit.alerts.episodes import incident_evaluation
from nadkit.alerts.incidents import IncidentConfig
from nadkit.detection.comparison import Compared, compared
from nadkit.detection.detect import DEFAULT_CHUNK_ROWS, ScoredTable, score_table
from nadkit.errors import ConfigError, NadkitError, SchemaError
from nadkit.evaluation.overlap import OverlapCounter, TrainingOverlap
from nadkit.evaluation.thresholds import Threshold
from nadkit.evaluation.transfer import ThresholdTransfer, threshold_transfer
from nadkit.sources import BadRows, detect_format, expand
from nadkit.training.bundle import ModelBundle, fingerprint

log = logging.getLogger(__name__)

#: top features explained per alert when evaluating: the incidents name the feature heading most
#: of their alerts' explanations, and nothing else reads them
EXPLAINED = 1


def describe_threshold(threshold: Threshold | None, override: float | None = None) -> str:
    """How the threshold was chosen, in a few words."""
    if override is not None:
        return "given on the command line"
    return threshold.describe() if threshold is not None else "unknown"


def warnings_of(overlap: TrainingOverlap | None, transfer: ThresholdTransfer | None) -> list[str]:
    """What to read before an evaluation's figures: measured on training data, normal traffic unlike
    the training traffic (those that apply, in that order)."""
    found = [overlap.warning() if overlap else None, transfer.warning() if transfer else None]
    return [w for w in found if w]


@dataclass(frozen=True)
class EvaluationOutcome:
    """The metrics (as :func:`nadkit.evaluation.metrics.evaluate` gives them), the scores, the report path,
    and
    how much of the evaluated data the model was trained on."""

    metrics: dict[str, Any]
    scored: ScoredTable
    report: Path | None
    overlap: TrainingOverlap | None = None
    #: the normal flows over the threshold against the normal hold-out's (None where unknown)
    transfer: ThresholdTransfer | None = None
    #: this model and the others it was compared with, in that order (``compare``), else empty
    comparison: tuple[Compared, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """What ``nadkit evaluate --json`` prints: the training-data overlap and whether the threshold
        carries over to this traffic first, then the metrics."""
        overlap = None if self.overlap is None else self.overlap.to_dict()
        transfer = None if self.transfer is None else self.transfer.to_dict()
        return {"training_overlap": overlap, "threshold_transfer": transfer, **self.metrics}

    def warnings(self) -> list[str]:
        """What to read before the figures (:func:`warnings_of`)."""
        return warnings_of(self.overlap, self.transfer)

    def table(self) -> Table:
        """The metrics as a rich table for the terminal."""
        binary = self.metrics.get("binary") or {}
        table = Table(title="detection on the labelled input", show_header=False)

        def figure(value: Any, digits: int = 4) -> str:
            return "–" if value is None else f"{value:.{digits}f}"

        table.add_row("flows (attacks)", f"{binary.get('rows', 0):,} ({binary.get('attacks', 0):,})")
        table.add_row("threshold", f"{self.scored.threshold:.6g}")
        table.add_row("ROC-AUC", figure(binary.get("roc_auc")))
        table.add_row("PR-AUC (average precision)", figure(binary.get("pr_auc")))
        table.add_row(
            "precision / recall / F1",
            " / ".join(figure(binary.get(k)) for k in ("precision", "recall", "f1")),
        )
        table.add_row("false-positive rate", figure(binary.get("false_positive_rate"), 5))
        if self.transfer is not None:
            table.add_row(
                "normal flows over the threshold: here / hold-out",
                f"{self.transfer.rate:.1%} / {self.transfer.holdout_rate:.1%}"
                + (" (traffic unlike the training traffic)" if self.transfer.differs else ""),
            )
        if self.metrics.get("nad_score") is not None:
            table.add_row("NAD 2021 score", figure(self.metrics["nad_score"]))
        if self.metrics.get("macro_f_beta") is not None:
            table.add_row("macro F2", figure(self.metrics["macro_f_beta"]))
        for name, entry in sorted((self.metrics.get("per_class") or {}).items()):
            what = "false-positive rate" if name == "normal" else "detection rate"
            table.add_row(
                f"  {name}: {what}",
                f"{figure(entry.get('rate'))} ({entry.get('alerted', 0):,} of {entry.get('rows', 0):,})",
            )
        incidents = self.metrics.get("incidents") or {}
        if incidents:
            table.add_row(
                "incidents (alerts each)",
                f"{incidents['incidents']:,} ({figure(incidents.get('alerts_per_incident'), 1)})",
            )
        if incidents.get("attack_episodes"):
            table.add_row(
                "attack episodes in an incident",
                f"{incidents['attack_episodes_detected']:,} of {incidents['attack_episodes']:,} "
                f"({figure(incidents.get('episode_detection_rate'), 3)})",
            )
        if incidents.get("false_incidents_per_hour") is not None:
            table.add_row(
                "false incidents per hour of normal traffic",
                f"{figure(incidents['false_incidents_per_hour'], 3)} ({incidents['false_incidents']:,})",
            )
        return table


def _fingerprint_matches(
    bundle: ModelBundle, source: str | Path, rows: int, *, format: str | None, mapping: str | None
) -> bool:
    """Whether the flows of ``source`` (``rows`` of them) have the bundle's training data fingerprint;
    computed only when their count is that of the training rows (the fingerprint covers it)."""
    expected = bundle.manifest.get("data_fingerprint")
    trained = bundle.metrics.get("train_flows" if bundle.view is not None else "train_rows")
    if not expected or trained != rows:
        return False
    from nadkit.sources import load_flows

    frame, _ = load_flows(source, format=format, mapping=mapping)
    return fingerprint(bundle.data(frame)) == expected


def training_overlap(
    bundle: ModelBundle,
    counter: OverlapCounter,
    source: str | Path,
    *,
    format: str | None = None,
    mapping: str | None = None,
) -> TrainingOverlap:
    """The overlap ``counter`` counted on the flows of ``source``, with the fingerprint compared.
    Its warning (figures measured on training data) reaches the user through the evaluation's
    ``warnings()``, which the command line prints once above the metrics and the report puts first;
    the log has it at INFO, so that it is not shown twice."""
    matched = _fingerprint_matches(bundle, source, counter.evaluated, format=format, mapping=mapping)
    overlap = counter.result(fingerprint_match=matched)
    if overlap.compared is None:
        log.debug("%s: evaluated rows not compared with training rows: %s", source, overlap.note)
    log.info("%s: training data overlap: %s", source, overlap.describe())
    return overlap


def _compared(
    bundle: ModelBundle,
    bundle_path: str | Path | None,
    scored: ScoredTable,
    compare: Sequence[tuple[str, ModelBundle]],
    source: str | Path,
    format: str | None,
    mapping: str | None,
    chunk_rows: int,
    on_bad_rows: BadRows,
) -> tuple[Compared, ...]:
    """``bundle`` (its flows ``scored``) and each bundle of ``compare`` on the same flows of
    ``source`` (:mod:`nadkit.detection.comparison`); empty without ``compare``."""
    if not compare:
        return ()
    assert scored.labels is not None  # evaluation has checked it
    name = str(bundle_path) if bundle_path is not None else "this model"
    try:
        rows = [compared(name, bundle.detector.name, scored.scores, scored.labels, scored.threshold)]
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None
    for other_name, other in compare:
        try:
            theirs = score_table(
                other, source, format=format, mapping=mapping, chunk_rows=chunk_rows, on_bad_rows=on_bad_rows
            )
        except SchemaError as error:  # say which of the models cannot read the flows
            where = f"{error.path or source} (compared model {other_name})"
            raise SchemaError(error.message, path=where, column=error.column, row=error.row) from None
        same_rows = len(theirs.scores) == len(scored.scores)
        if not same_rows or (theirs.labels is not None and not np.array_equal(theirs.labels, scored.labels)):
            raise ConfigError(f"{other_name}: did not score the flows of {source} in the same order")
        rows.append(compared(other_name, other.detector.name, theirs.scores, scored.labels, theirs.threshold))
    return tuple(rows)


def evaluate_bundle(
    bundle: ModelBundle,
    source: str | Path,
    *,
    bundle_path: str | Path | None = None,
    report: str | Path | None = None,
    threshold: float | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    format: str | None = None,
    mapping: str | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    on_bad_rows: BadRows = "error",
    incident_config: IncidentConfig | None = None,
    compare: Sequence[tuple[str, ModelBundle]] = (),
) -> EvaluationOutcome:
    """Score the labelled flows of ``source``, compute the metrics (flow-level, and incident-level:
    see :mod:`nadkit.alerts.episodes`), compare the flows with the model's training data and (with
    ``report``) write the HTML report with its figures and top incidents. ``compare``: other bundles
    (a name each) that score the same flows, measured beside this one (:mod:`nadkit.detection.comparison`;
    the metrics' ``comparison``)."""
    from nadkit.evaluation.metrics import evaluate

    counter = OverlapCounter(bundle.training_rows)
    scored = score_table(
        bundle,
        source,
        format=format,
        mapping=mapping,
        chunk_rows=chunk_rows,
        threshold=threshold,
        progress=progress,
        on_read=counter.add,
        on_bad_rows=on_bad_rows,
        top=EXPLAINED,  # the incidents' "explained mostly by" reads the alerts' explanations
    )
    if scored.labels is None:
        raise ConfigError(
            f"{source}: has no label column; evaluation needs labelled flows ({_labelling(source, format)})"
        )
    metrics = evaluate(scored.scores, scored.labels, scored.threshold, predicted=scored.predicted).to_dict()
    figures, _ = incident_evaluation(scored.frame, incident_config)
    metrics["incidents"] = figures
    comparison = _compared(
        bundle, bundle_path, scored, compare, source, format, mapping, chunk_rows, on_bad_rows
    )
    if comparison:
        metrics["comparison"] = [row.to_dict() for row in comparison]
    overlap = training_overlap(bundle, counter, source, format=format, mapping=mapping)
    normal = bundle.calibration.normal if bundle.calibration is not None else None
    transfer = threshold_transfer(scored.scores, scored.labels, scored.threshold, normal)
    if transfer is not None:  # its warning is the outcome's to show (the command line prints it first)
        log.info("%s: threshold on this traffic: %s", source, transfer.describe())
    written = None
    if report is not None:
        from nadkit.pictures.report import ReportData, write_report

        data = ReportData(
            model=bundle.detector.name,
            bundle=str(bundle_path or bundle.manifest.get("path", "")),
            input=str(source),
            scores=scored.scores,
            labels=scored.labels.astype(str),
            threshold=scored.threshold,
            threshold_method=describe_threshold(bundle.threshold, threshold),
            metrics=metrics,
            time=scored.time,
            predicted=None if scored.predicted is None else scored.predicted.astype(str),
            history=bundle.metrics.get("history"),
            extra={
                "training data fingerprint": bundle.manifest.get("data_fingerprint", ""),
                "training data overlap": overlap.describe(),
                "normal flows over the threshold": "not known" if transfer is None else transfer.describe(),
                "model created": bundle.manifest.get("created", ""),
            },
            flows=scored.frame,
            warnings=tuple(warnings_of(overlap, transfer)),
            training_overlap=overlap.to_dict(),
        )
        written = write_report(report, data, overwrite=overwrite)
        log.info("report written to %s", written)
    return EvaluationOutcome(
        metrics=metrics,
        scored=scored,
        report=written,
        overlap=overlap,
        transfer=transfer,
        comparison=comparison,
    )


def _labelling(source: str | Path, format: str | None) -> str:
    """How to give ``source``'s flows labels: captures by file (``nadkit mix-captures``), other
    formats by a column."""
    try:
        files = expand(source)
        fmt = format or (detect_format(files[0]) if files else None)
    except (NadkitError, OSError):
        fmt = format
    if fmt == "pcap":
        return (
            "captures carry no labels: `nadkit mix-captures -o mix.parquet --benign DIR --attack DIR` "
            "labels their flows by file, `nadkit label-flows CAPTURE --labels FLOWS -o out.parquet` "
            "takes those of labelled flows of the same traffic (a conn.log); evaluate what they write"
        )
    return "a 'label' column: normal, or the attack's name"
