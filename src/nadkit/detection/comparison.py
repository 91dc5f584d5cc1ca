"""Several models measured side by side on the same labelled flows (`nadkit evaluate --compare`).

Each model scores the flows exactly as `nadkit evaluate` scores them (its own features, its own
threshold). Two views per model: at its own threshold (what it would alert on: precision, recall, F1,
the false-positive rate, the mean detection rate over the attack classes), and at one false-positive
rate for all of them, the score exceeded by :data:`SAME_FPR` of these normal flows (a point of each
ROC curve read off these labelled flows, so that a model whose threshold lands at 5% false positives
is not ranked above one at 1% for flagging more). ROC-AUC and PR-AUC rank the flows whatever the
threshold. The point is to choose between models on labelled traffic of the network they will
score, as the README's few-rows advice asks; it is not a way to choose a threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.table import Table

from nadkit.errors import ConfigError
from nadkit.evaluation.metrics import binary_metrics, per_class_detection
from nadkit.evaluation.thresholds import quantile_threshold
from nadkit.schema import NORMAL

#: the false-positive rate at which every compared model is also measured
SAME_FPR = 0.01


@dataclass(frozen=True)
class Compared:
    """One model's figures on the labelled flows (see the module docstring)."""

    name: str
    model: str
    threshold: float
    roc_auc: float | None
    pr_auc: float | None
    precision: float
    recall: float
    f1: float
    false_positive_rate: float
    macro_detection: float | None
    recall_same_fpr: float
    macro_detection_same_fpr: float | None
    #: the false-positive rate these flows give at that score (``target_fpr``, or a little more on ties)
    same_fpr: float
    #: the share of the normal flows whose exceeded score all models are measured at (:data:`SAME_FPR`)
    target_fpr: float = SAME_FPR

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (an undefined figure, NaN, as None)."""
        return {k: None if isinstance(v, float) and v != v else v for k, v in self.__dict__.items()}


def _macro_detection(labels: np.ndarray, alerts: np.ndarray) -> float | None:
    """The mean over the attack classes of the share of their flows alerted (None without attacks)."""
    rates = [entry.rate for name, entry in per_class_detection(labels, alerts).items() if name != NORMAL]
    return float(np.mean(rates)) if rates else None


def compared(name: str, model: str, scores: np.ndarray, labels: np.ndarray, threshold: float) -> Compared:
    """``model``'s figures (named ``name``, e.g. its bundle's path) from its ``scores`` of flows
    labelled ``labels`` and its ``threshold``."""
    labels = np.asarray(labels).astype(str)
    scores = np.asarray(scores, dtype=np.float64)
    attack = labels != NORMAL
    if attack.all() or not attack.any():
        raise ConfigError("comparing models needs labelled flows of both normal and attack traffic")
    metrics = binary_metrics(scores, attack, threshold)
    same = quantile_threshold(scores[~attack], SAME_FPR)
    at_same = scores >= same
    return Compared(
        name=name,
        model=model,
        threshold=float(threshold),
        roc_auc=metrics.roc_auc,
        pr_auc=metrics.pr_auc,
        precision=metrics.precision,
        recall=metrics.recall,
        f1=metrics.f1,
        false_positive_rate=metrics.false_positive_rate,
        macro_detection=_macro_detection(labels, scores >= threshold),
        recall_same_fpr=float(at_same[attack].mean()),
        macro_detection_same_fpr=_macro_detection(labels, at_same),
        same_fpr=float(at_same[~attack].mean()),
    )


def comparison_table(rows: Sequence[Compared]) -> Table:
    """The compared models as a rich table, one row each (the evaluated model first)."""

    def figure(value: float | None, digits: int = 4) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    same = f"{SAME_FPR:.0%} FPR: recall / macro"
    table = Table(
        title="models compared on the labelled input",
        caption=f"P / R / F1, FPR, macro: at each model's own threshold (macro: the mean detection rate "
        f"over the attack classes); {same}: at the score {SAME_FPR:.0%} of these normal flows exceed",
    )
    for column in ("bundle", "model", "ROC-AUC", "PR-AUC", "P / R / F1", "FPR", "macro", same):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.name,
            row.model,
            figure(row.roc_auc),
            figure(row.pr_auc),
            " / ".join(figure(v, 3) for v in (row.precision, row.recall, row.f1)),
            f"{row.false_positive_rate:.2%}",
            figure(row.macro_detection, 3),
            f"{figure(row.recall_same_fpr, 3)} / {figure(row.macro_detection_same_fpr, 3)}",
        )
    return table
