"""A trained model measured on labelled flows: what `nadkit evaluate` computes and reports.

The flows are scored exactly as `nadkit detect` scores them (in chunks, with the bundle's threshold
unless another is given); the metrics come from :mod:`nadkit.metrics` and the report from
:mod:`nadkit.report`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from nadkit.bundle import ModelBundle
from nadkit.detect import DEFAULT_CHUNK_ROWS, ScoredTable, score_table
from nadkit.errors import ConfigError

log = logging.getLogger(__name__)


def describe_threshold(threshold: dict[str, Any] | None, override: float | None = None) -> str:
    """How the threshold was chosen, in a few words."""
    if override is not None:
        return "given on the command line"
    if not threshold:
        return "unknown"
    method = str(threshold.get("method", "unknown"))
    details = {
        key: value for key, value in threshold.items() if key not in ("method", "value", "rows", "params")
    }
    details.update(threshold.get("params") or {})
    if not details:
        return method
    inner = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in details.items())
    return f"{method} ({inner})"


@dataclass(frozen=True)
class EvaluationOutcome:
    """The metrics (as :func:`nadkit.metrics.evaluate` gives them), the scores, and the report path."""

    metrics: dict[str, Any]
    scored: ScoredTable
    report: Path | None

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
        return table


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
) -> EvaluationOutcome:
    """Score the labelled flows of ``source``, compute the metrics and (with ``report``) write the
    HTML report with its figures."""
    from nadkit.metrics import evaluate

    scored = score_table(
        bundle,
        source,
        format=format,
        mapping=mapping,
        chunk_rows=chunk_rows,
        threshold=threshold,
        progress=progress,
    )
    if scored.labels is None:
        raise ConfigError(f"{source}: has no label column; evaluation needs labelled flows")
    metrics = evaluate(scored.scores, scored.labels, scored.threshold, predicted=scored.predicted).to_dict()
    written = None
    if report is not None:
        from nadkit.report import ReportData, write_report

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
                "model created": bundle.manifest.get("created", ""),
            },
            flows=scored.frame,
        )
        written = write_report(report, data, overwrite=overwrite)
        log.info("report written to %s", written)
    return EvaluationOutcome(metrics=metrics, scored=scored, report=written)
