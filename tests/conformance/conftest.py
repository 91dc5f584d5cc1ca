"""Shared data of the detector conformance suite, built once per session: simulated flows through a
fitted feature pipeline, normal training rows of day 1 (for unsupervised detectors), the labelled
rows of day 1 with planted anomalies among them (for supervised detectors), the labelled rows of
day 2, and normal day-2 rows with planted anomalies."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import polars as pl
import pytest

from nadkit.features.pipeline import FeaturePipeline
from nadkit.models.base import DetectorData
from nadkit.simulate import SimulationConfig, simulate

#: share of the normal test rows that get planted anomalies
PLANTED_ROW_SHARE = 0.05
#: share of the features of a planted row set to an extreme value
PLANTED_FEATURE_SHARE = 0.15
#: planted values, in units of the scaled features (robust scaling: IQRs from the median)
PLANTED_RANGE = (20.0, 50.0)


@dataclass(frozen=True)
class ConformanceData:
    """``train``: normal rows of day 1; ``train_labelled``: every row of day 1 with its label, a
    share of the normal ones carrying planted anomalies and labelled ``planted`` (for supervised
    detectors); ``test``: every row of day 2 with labels; ``planted``: the normal rows of day 2 with
    anomalies planted in ``planted_mask`` of them (labelled ``planted``)."""

    train: DetectorData
    train_labelled: DetectorData
    test: DetectorData
    planted: DetectorData
    planted_mask: np.ndarray


def _detector_data(pipeline: FeaturePipeline, frame: pl.DataFrame) -> DetectorData:
    return DetectorData(
        features=pipeline.transform_numpy(frame),
        feature_names=tuple(pipeline.feature_names_),
        entity=frame["src"].rank("dense").cast(pl.Int64).to_numpy(),
        time=frame["time"].dt.epoch("us").to_numpy(),
        labels=frame["label"].to_numpy(),
    )


def plant_anomalies(
    data: DetectorData, seed: int, *, only_normal: bool = False
) -> tuple[DetectorData, np.ndarray]:
    """A copy of ``data`` where a share of the rows (of the normal ones with ``only_normal``) has a
    share of its features set to extreme values and the label ``planted``, and the mask of those
    rows."""
    rng = np.random.default_rng(seed)
    features = data.features.copy()
    mask = rng.random(len(features)) < PLANTED_ROW_SHARE
    if only_normal:
        mask &= data.labels == "normal"
    count = max(3, math.ceil(PLANTED_FEATURE_SHARE * data.width))
    for row in np.flatnonzero(mask):
        columns = rng.choice(data.width, count, replace=False)
        features[row, columns] = rng.uniform(*PLANTED_RANGE, count)
    planted = DetectorData(
        features=features,
        feature_names=data.feature_names,
        entity=data.entity,
        time=data.time,
        labels=np.where(mask, "planted", data.labels),
    )
    return planted, mask


@pytest.fixture(scope="session")
def conformance_data() -> ConformanceData:
    """Two simulated days: day 1 trains (pipeline and detectors), day 2 is scored."""
    flows = simulate(SimulationConfig(days=2, flows_per_day=6000, seed=3))
    first, second = flows["day"].unique().sort().to_list()
    day1 = flows.filter(pl.col("day") == first)
    day2 = flows.filter(pl.col("day") == second)
    normal1 = day1.filter(pl.col("label") == "normal")
    pipeline = FeaturePipeline().fit(normal1)
    test = _detector_data(pipeline, day2)
    planted, mask = plant_anomalies(test.take(test.labels == "normal"), seed=7)
    # supervised detectors learn the planted class from day 1 (other rows, other features planted)
    train_labelled, _ = plant_anomalies(_detector_data(pipeline, day1), seed=5, only_normal=True)
    return ConformanceData(
        train=_detector_data(pipeline, normal1),
        train_labelled=train_labelled,
        test=test,
        planted=planted,
        planted_mask=mask,
    )
