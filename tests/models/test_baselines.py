"""Baselines: ECOD against hand-computed tail probabilities; the isolation forest and its
attribution."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from nadkit.errors import ConfigError
from nadkit.models.base import DetectorData
from nadkit.models.baselines import (
    ECODConfig,
    ECODDetector,
    IsolationForestConfig,
    IsolationForestDetector,
)

NAMES = ("a", "b")
# a: symmetric (skewness 0 -> right tail); b: right-skewed (-> right tail)
TRAIN = DetectorData(np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 10.0]]), NAMES)


def test_ecod_matches_a_hand_computed_example() -> None:
    detector = ECODDetector().fit(TRAIN)
    assert detector.skewness_[1] > 0
    rows = DetectorData(np.array([[5.0, 0.0], [0.0, 10.0], [2.5, 5.0]]), NAMES)
    # m = 4 training values: P_left(x) = (#{<= x} + 1) / 5, P_right(x) = (#{>= x} + 1) / 5
    # row 1: a=5 -> left 5/5, right 1/5; b=0 -> left 4/5, right 5/5: sums left log(5/4), right log 5
    # row 2: a=0 -> left 1/5, right 5/5; b=10 -> left 5/5, right 2/5: left log 5, right log(5/2)
    # row 3: a=2.5 -> 3/5, 3/5; b=5 -> left 4/5, right 2/5: left log(25/12), right log(25/6)
    expected = [math.log(5), math.log(5), math.log(25 / 6)]
    np.testing.assert_allclose(detector.score(rows), expected, rtol=1e-12)
    left, right = detector.tails(rows)
    np.testing.assert_allclose(left[2], [math.log(5 / 3), math.log(5 / 4)], rtol=1e-12)
    np.testing.assert_allclose(right[2], [math.log(5 / 3), math.log(5 / 2)], rtol=1e-12)
    contributions = detector.contributions(rows)
    np.testing.assert_allclose(contributions[0], [math.log(5), 0.0], atol=1e-12)
    np.testing.assert_allclose(contributions[1], [math.log(5), 0.0], atol=1e-12)  # the left sum won
    np.testing.assert_allclose(contributions[2], [math.log(5 / 3), math.log(5 / 2)], rtol=1e-12)


def test_ecod_skewness_picks_the_tail() -> None:
    # b is left-skewed: its skewness-corrected term is the left tail
    train = DetectorData(np.array([[1.0, 10.0], [2.0, 10.0], [3.0, 10.0], [4.0, 0.0]]), NAMES)
    detector = ECODDetector().fit(train)
    assert detector.skewness_[1] < 0
    rows = DetectorData(np.array([[4.0, 0.0]]), NAMES)
    left, right = detector.tails(rows)
    skew_sum = right[0, 0] + left[0, 1]
    assert detector.score(rows)[0] == pytest.approx(max(left.sum(), right.sum(), skew_sum))


def test_ecod_quantile_summary_approximates_the_exact_scores() -> None:
    rng = np.random.default_rng(0)
    names = tuple(f"f{j}" for j in range(5))
    train = DetectorData(rng.lognormal(size=(5000, 5)), names)
    test = DetectorData(rng.lognormal(size=(500, 5)), names)
    exact = ECODDetector().fit(train)
    summary = ECODDetector(ECODConfig(max_reference_rows=500)).fit(train)
    assert exact.reference_.shape == (5, 5000)
    assert summary.reference_.shape == (5, 500)
    assert np.corrcoef(exact.score(test), summary.score(test))[0, 1] > 0.99
    # beyond the training range the tail saturates at log(m + 1)
    far = DetectorData(np.full((1, 5), 1e6), names)
    assert exact.score(far)[0] == pytest.approx(5 * math.log(5001))


def test_ecod_config_is_validated() -> None:
    with pytest.raises(ConfigError):
        ECODConfig(max_reference_rows=1)


def _gaussian(rows: int, seed: int) -> DetectorData:
    names = tuple(f"f{j}" for j in range(6))
    return DetectorData(np.random.default_rng(seed).normal(size=(rows, 6)), names)


def test_isolation_forest_ranks_outliers_and_attributes_them() -> None:
    train = _gaussian(2000, 0)
    detector = IsolationForestDetector(IsolationForestConfig(trees=100, seed=1)).fit(train)
    test = _gaussian(200, 1)
    features = test.features.copy()
    features[:10, 4] = 8.0
    features[:10, 1] = -5.0
    test = DetectorData(features, test.feature_names)
    scores = detector.score(test)
    assert roc_auc_score(np.arange(len(scores)) < 10, scores) > 0.9
    assert ((scores > 0) & (scores <= 1)).all()
    assert all(row[0][0] == "f4" for row in detector.explain(test.take(slice(0, 10)), top=1))
    np.testing.assert_allclose(detector.contributions(test).sum(axis=1), scores, rtol=1e-12)


def test_isolation_forest_seed_controls_the_forest() -> None:
    train, test = _gaussian(500, 0), _gaussian(100, 1)
    first = IsolationForestDetector(IsolationForestConfig(trees=20, seed=3)).fit(train).score(test)
    same = IsolationForestDetector(IsolationForestConfig(trees=20, seed=3)).fit(train).score(test)
    other = IsolationForestDetector(IsolationForestConfig(trees=20, seed=4)).fit(train).score(test)
    np.testing.assert_array_equal(first, same)
    assert not np.array_equal(first, other)


def test_isolation_forest_spreads_a_median_row_evenly() -> None:
    detector = IsolationForestDetector(IsolationForestConfig(trees=10)).fit(TRAIN)
    row = DetectorData(detector.median_[None, :], NAMES)
    contributions = detector.contributions(row)
    assert contributions[0, 0] == pytest.approx(contributions[0, 1])
    assert contributions.sum() == pytest.approx(detector.score(row)[0])


@pytest.mark.parametrize(
    "options", [{"trees": 0}, {"max_features": 0.0}, {"max_samples": "all"}, {"max_train_rows": 1}]
)
def test_isolation_forest_config_is_validated(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        IsolationForestConfig(**options)


def test_isolation_forest_scores_equal_scikit_learns_and_survive_saving() -> None:
    """The flattened forest scores exactly like scikit-learn's, also with feature subsampling, and
    its arrays restore it."""
    from sklearn.ensemble import IsolationForest

    from nadkit.models.baselines import IsolationForestConfig, IsolationForestDetector, _flatten_forest

    rng = np.random.default_rng(3)
    train = rng.normal(size=(3000, 12)).astype(np.float32)
    test = (rng.normal(size=(500, 12)) * 2).astype(np.float32)
    forest = IsolationForest(n_estimators=40, max_features=0.5, random_state=1).fit(train)
    flat = _flatten_forest(forest)
    from nadkit.models.baselines import _forest_scores

    np.testing.assert_allclose(_forest_scores(test, flat), -forest.score_samples(test), rtol=0, atol=1e-12)

    names = tuple(f"f{i}" for i in range(12))
    detector = IsolationForestDetector(IsolationForestConfig(trees=30, seed=2)).fit(
        DetectorData(train, names)
    )
    restored = IsolationForestDetector(detector.config).load_state(detector.state(), names)
    data = DetectorData(test, names)
    np.testing.assert_array_equal(restored.score(data), detector.score(data))
    np.testing.assert_array_equal(restored.contributions(data), detector.contributions(data))
