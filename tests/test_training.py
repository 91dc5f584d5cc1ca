"""Preparing flows for detectors: the unsupervised split, and the time-bucket view end to end."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from nadkit.features.series import BucketConfig, bucket_metrics
from nadkit.models import REGISTRY
from nadkit.models.base import DetectorData
from nadkit.schema import NORMAL
from nadkit.synthetic import SimulationConfig, simulate
from nadkit.training import BucketScaling, bucket_detector_data, unsupervised_split


@pytest.fixture(scope="module")
def days() -> pl.DataFrame:
    return simulate(SimulationConfig(days=2, flows_per_day=8000, seed=12))


def test_unsupervised_split_trains_on_normal_rows_only(days: pl.DataFrame) -> None:
    split = unsupervised_split(days, holdout_fraction=0.3, seed=1)
    assert (split.train["label"] == NORMAL).all()
    attacks = int((days["label"] != NORMAL).sum())
    assert int((split.holdout["label"] != NORMAL).sum()) == attacks
    assert split.train.height + split.holdout.height == days.height
    normal = days.height - attacks
    assert abs((split.holdout.height - attacks) / normal - 0.3) < 0.03


@pytest.mark.parametrize("name", [n for n, c in sorted(REGISTRY.items()) if c.input == "windows"])
def test_windowed_detector_on_the_bucket_view(days: pl.DataFrame, name: str) -> None:
    """Train on one day's per-minute network metrics, score the next day's buckets with planted
    bursts, and carry the bucket scores to the flows of each bucket."""
    normal = days.filter(pl.col("label") == NORMAL)
    first, second = (normal.filter(pl.col("day") == d) for d in sorted(normal["day"].unique()))
    config = BucketConfig(bucket_s=60, span="full")
    train_series = bucket_metrics(first, config)
    test_series = bucket_metrics(second, BucketConfig(bucket_s=60, span="full", apps=train_series.apps))
    scaling = BucketScaling.fit(train_series)
    train = bucket_detector_data(train_series, scaling)
    test = bucket_detector_data(test_series, scaling)
    rng = np.random.default_rng(2)
    planted = np.zeros(len(test), dtype=bool)
    planted[rng.choice(len(test), size=max(5, len(test) // 20), replace=False)] = True
    features = test.features.copy()
    columns = [test.feature_names.index(c) for c in ("flows", "unique_dst", "unique_dpt")]
    features[np.ix_(planted, columns)] += 6.0  # several hundred times the usual counts, in log scale
    test = DetectorData(features, test.feature_names, entity=test.entity, time=test.time)

    cls = REGISTRY[name]
    detector = cls(cls.test_config()).fit(train)
    scores = detector.score(test)
    assert roc_auc_score(planted, scores) > 0.9
    per_flow = test_series.to_flows(scores)
    assert per_flow.shape == (second.height,)
    assert np.isfinite(per_flow).all()
    in_planted = planted[test_series.row_bucket]
    if in_planted.any():
        assert per_flow[in_planted].mean() > per_flow[~in_planted].mean()
