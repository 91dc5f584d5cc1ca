"""Thresholds, fitted on validation scores and kept outside detectors.

A threshold turns scores into alerts: ``score >= threshold`` is an alert. Each is chosen on
validation data only, never on the data it is evaluated on.
"""

from __future__ import annotations

import numpy as np

from nadkit.errors import ConfigError


def _check(scores: np.ndarray, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or len(scores) == 0:
        raise ConfigError("threshold fitting needs a non-empty 1-D array of scores")
    if not np.isfinite(scores).all():
        raise ConfigError("threshold fitting needs finite scores")
    if labels is None:
        return scores, None
    labels = np.asarray(labels, dtype=bool)
    if labels.shape != scores.shape:
        raise ConfigError("scores and labels differ in length")
    return scores, labels


def quantile_threshold(normal_scores: np.ndarray, false_positive_rate: float = 0.01) -> float:
    """The score above which ``false_positive_rate`` of the normal validation scores lie."""
    if not 0 < false_positive_rate < 1:
        raise ConfigError(f"false_positive_rate must be between 0 and 1, got {false_positive_rate}")
    scores, _ = _check(normal_scores)
    return float(np.quantile(scores, 1 - false_positive_rate, method="higher"))


def f_beta_optimal_threshold(scores: np.ndarray, is_attack: np.ndarray, beta: float = 1.0) -> float:
    """The threshold (one of the scores) maximising F-beta of ``score >= threshold`` on labelled
    validation data; ties go to the higher threshold (fewer alerts)."""
    if beta <= 0:
        raise ConfigError(f"beta must be positive, got {beta}")
    scores, labels = _check(scores, is_attack)
    assert labels is not None
    positives = int(labels.sum())
    if positives == 0:
        raise ConfigError("F-beta needs at least one attack among the validation rows")
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], labels[order]
    true_positives = np.cumsum(hits)
    alerts = np.arange(1, len(ranked) + 1)
    # only the last index of each run of equal scores is a reachable cut
    last = np.r_[ranked[1:] != ranked[:-1], True]
    precision = true_positives / alerts
    recall = true_positives / positives
    b2 = beta * beta
    with np.errstate(invalid="ignore", divide="ignore"):
        f_beta = np.where(
            precision + recall > 0, (1 + b2) * precision * recall / (b2 * precision + recall), 0.0
        )
    f_beta = np.where(last, f_beta, -1.0)
    best = int(np.argmax(f_beta))
    return float(ranked[best])
