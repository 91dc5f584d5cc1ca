from __future__ import annotations

import numpy as np
import pytest

from nadkit.errors import ConfigError
from nadkit.metrics import binary_metrics
from nadkit.thresholds import f_beta_optimal_threshold, quantile_threshold


def test_quantile_threshold_gives_the_target_false_positive_rate() -> None:
    normal = np.random.default_rng(0).normal(size=100_000)
    threshold = quantile_threshold(normal, 0.01)
    assert threshold == pytest.approx(2.326, abs=0.03)  # the 99th percentile of N(0, 1)
    assert (normal >= threshold).mean() == pytest.approx(0.01, abs=0.001)


def test_f1_optimal_threshold_on_a_known_ranking() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    attack = np.array([1, 1, 0, 1, 0, 0], dtype=bool)
    # cut after 0.6: precision 3/4, recall 1 -> F1 0.857; after 0.8: P 1, R 2/3 -> 0.8
    assert f_beta_optimal_threshold(scores, attack) == 0.6
    # recall-heavy beta keeps the lower cut, precision-heavy beta prefers the higher one
    assert f_beta_optimal_threshold(scores, attack, beta=2.0) == 0.6
    assert f_beta_optimal_threshold(scores, attack, beta=0.3) == 0.8


def test_f1_threshold_never_splits_tied_scores() -> None:
    scores = np.array([1.0, 1.0, 1.0, 0.0])
    attack = np.array([True, False, False, False])
    assert f_beta_optimal_threshold(scores, attack) == 1.0


def test_threshold_errors() -> None:
    with pytest.raises(ConfigError):
        f_beta_optimal_threshold(np.array([1.0, 2.0]), np.array([False, False]))
    with pytest.raises(ConfigError):
        quantile_threshold(np.array([1.0, np.nan]))
    with pytest.raises(ConfigError):
        quantile_threshold(np.array([1.0]), 1.5)


def test_binary_metrics_at_threshold() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    attack = np.array([1, 1, 0, 1, 0, 0], dtype=bool)
    metrics = binary_metrics(scores, attack, threshold=0.6)
    assert metrics.precision == pytest.approx(0.75)
    assert metrics.recall == pytest.approx(1.0)
    assert metrics.f1 == pytest.approx(6 / 7)
    assert metrics.false_positive_rate == pytest.approx(1 / 3)
    assert metrics.roc_auc == pytest.approx(8 / 9)
    assert 0 < metrics.pr_auc <= 1
