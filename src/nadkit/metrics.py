"""Detection metrics: ranking quality (ROC-AUC, PR-AUC) and the outcome at a chosen threshold.
Never point-adjusted."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from nadkit.errors import ConfigError


@dataclass(frozen=True)
class BinaryMetrics:
    """Scores against attack/normal truth: AUCs, and precision/recall/F1/FPR at ``threshold``."""

    roc_auc: float
    pr_auc: float
    precision: float
    recall: float
    f1: float
    false_positive_rate: float
    threshold: float
    rows: int
    attacks: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def binary_metrics(scores: np.ndarray, is_attack: np.ndarray, threshold: float) -> BinaryMetrics:
    """Metrics of ``scores`` (higher = more anomalous) with ``score >= threshold`` as an alert."""
    scores = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(is_attack, dtype=bool)
    if scores.shape != truth.shape or scores.ndim != 1:
        raise ConfigError("scores and labels must be 1-D arrays of the same length")
    if truth.all() or not truth.any():
        raise ConfigError("metrics need both normal and attack rows")
    alerts = scores >= threshold
    true_positives = int((alerts & truth).sum())
    precision = true_positives / max(int(alerts.sum()), 1)
    recall = true_positives / int(truth.sum())
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return BinaryMetrics(
        roc_auc=float(roc_auc_score(truth, scores)),
        pr_auc=float(average_precision_score(truth, scores)),
        precision=precision,
        recall=recall,
        f1=f1,
        false_positive_rate=float((alerts & ~truth).sum() / max(int((~truth).sum()), 1)),
        threshold=float(threshold),
        rows=len(scores),
        attacks=int(truth.sum()),
    )
