"""Whether a threshold carries over to evaluated traffic (:mod:`nadkit.evaluation.transfer`)."""

from __future__ import annotations

import numpy as np
import pytest

from nadkit.evaluation.calibration import NormalScores
from nadkit.evaluation.transfer import MIN_NORMAL_ROWS, threshold_transfer
from nadkit.schema import NORMAL


@pytest.fixture(scope="module")
def holdout() -> tuple[NormalScores, float]:
    """Normal hold-out scores and their 1% threshold."""
    scores = np.random.default_rng(0).exponential(size=5_000)
    normal = NormalScores.of(scores)
    assert normal is not None
    return normal, float(np.quantile(scores, 0.99))


def _labelled(normal: np.ndarray, attacks: int = 20) -> tuple[np.ndarray, np.ndarray]:
    scores = np.concatenate([normal, np.full(attacks, 50.0)])
    labels = np.array([NORMAL] * len(normal) + ["dos"] * attacks)
    return scores, labels


def test_normal_traffic_like_the_training_traffic_passes(holdout: tuple[NormalScores, float]) -> None:
    normal, threshold = holdout
    scores, labels = _labelled(np.random.default_rng(1).exponential(size=3_000))
    transfer = threshold_transfer(scores, labels, threshold, normal)
    assert transfer is not None
    assert transfer.holdout_rate == pytest.approx(0.01, abs=0.002)
    assert transfer.normal_rows == 3_000  # the attacks are left out
    assert 0.003 < transfer.rate < 0.02
    assert 40 < transfer.median_percentile < 60
    assert not transfer.differs and transfer.warning() is None
    assert transfer.to_dict()["differs"] is False


def test_traffic_of_another_network_is_named_first(holdout: tuple[NormalScores, float]) -> None:
    normal, threshold = holdout
    # normal flows that score like the hold-out's top tenth: another network's
    scores, labels = _labelled(np.random.default_rng(2).exponential(size=3_000) + threshold * 0.8)
    transfer = threshold_transfer(scores, labels, threshold, normal)
    assert transfer is not None and transfer.differs
    assert transfer.rate > 0.3 and transfer.median_percentile > 97
    warning = transfer.warning()
    assert warning is not None and warning.startswith("Normal traffic unlike the training traffic")
    assert f"{transfer.normal_alerts:,} of 3,000 normal flows" in warning
    assert transfer.to_dict()["warning"] == warning


def test_small_samples_and_small_gaps_give_no_verdict(holdout: tuple[NormalScores, float]) -> None:
    normal, threshold = holdout
    # every normal flow over the threshold, but too few of them to judge
    few = np.full(MIN_NORMAL_ROWS - 1, threshold * 3)
    transfer = threshold_transfer(*_labelled(few), threshold, normal)
    assert transfer is not None and transfer.rate == 1.0 and not transfer.differs
    # five times the hold-out's rate at a 0.1% threshold, but less than two points above it
    strict = float(normal.values[np.searchsorted(normal.levels, 0.999)])
    rng = np.random.default_rng(3)
    close = np.where(rng.random(10_000) < 0.005, strict * 2, strict / 10)
    transfer = threshold_transfer(*_labelled(close), strict, normal)
    assert transfer is not None and transfer.holdout_rate == pytest.approx(0.001, abs=0.0005)
    assert transfer.rate >= 3 * transfer.holdout_rate and not transfer.differs
    # the same share at ten points above it is a verdict
    far = np.where(rng.random(10_000) < 0.1, strict * 2, strict / 10)
    transfer = threshold_transfer(*_labelled(far), strict, normal)
    assert transfer is not None and transfer.differs


def test_no_verdict_without_what_it_needs(holdout: tuple[NormalScores, float]) -> None:
    normal, threshold = holdout
    scores, labels = _labelled(np.ones(500))
    assert threshold_transfer(scores, labels, threshold, None) is None
    assert threshold_transfer(scores, labels, float("nan"), normal) is None
    only_attacks = np.array(["dos"] * len(labels))
    assert threshold_transfer(scores, only_attacks, threshold, normal) is None
    # non-finite scores are left out of the normal flows
    scores[:10] = np.nan
    transfer = threshold_transfer(scores, labels, threshold, normal)
    assert transfer is not None and transfer.normal_rows == 490


def test_an_alert_rate_far_above_the_holdouts_gets_a_note(holdout: tuple[NormalScores, float]) -> None:
    """Without labels the same rule reads the alert rate, and the note names both causes."""
    from nadkit.evaluation.transfer import alert_rate_note, holdout_rate

    normal, threshold = holdout
    assert holdout_rate(threshold, normal) == pytest.approx(0.01, abs=0.002)
    assert holdout_rate(threshold, None) is None
    assert alert_rate_note(10_000, 150, threshold, normal) is None  # 1.5%: the hold-out's level
    note = alert_rate_note(10_000, 4_000, threshold, normal)
    assert note is not None and note.startswith("40.0% of the flows are alerts, where 1.0%")
    assert "attack traffic" in note and "unlike the traffic the model was trained on" in note
    assert alert_rate_note(MIN_NORMAL_ROWS - 1, MIN_NORMAL_ROWS - 1, threshold, normal) is None
    assert alert_rate_note(10_000, 4_000, threshold, None) is None
