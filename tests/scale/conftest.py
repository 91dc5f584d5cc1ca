"""Shared fixtures of the scale-out tests: a small simulated Parquet dataset, bundles trained on it,
and one local Spark session (skipped, with the reason, where no Java runtime is installed)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from nadkit.features.counters import COUNTER_COLUMNS
from nadkit.features.data import detector_data
from nadkit.features.pipeline import FeatureConfig, FeaturePipeline
from nadkit.features.segments import SegmentConfig
from nadkit.models import REGISTRY
from nadkit.schema import NORMAL
from nadkit.simulate import SimulationConfig, simulate_day
from nadkit.training.bundle import ModelBundle
from nadkit.training.fit import holdout_threshold

FLOWS_PER_DAY = 3000


def simulated_day(index: int, *, counters: bool) -> pl.DataFrame:
    """Day ``index`` of a small simulation; without ``counters`` the cnt_* columns are dropped, so a
    pipeline fitted on it computes them itself (the path where they look across all traffic)."""
    config = SimulationConfig(days=3, flows_per_day=FLOWS_PER_DAY, seed=21, start=date(2020, 12, 3))
    day = simulate_day(config, index).drop("day", strict=False)
    return day if counters else day.drop(list(COUNTER_COLUMNS))


def trained_bundle(train: pl.DataFrame, path: Path, model: str = "ae") -> Path:
    """A small bundle (test-size detector, segments with a 30 s gap, threshold, ONNX graph) at ``path``."""
    normal = train.filter(pl.col("label") == NORMAL)
    pipeline = FeaturePipeline(FeatureConfig(segments=SegmentConfig(gap_s=30.0))).fit(normal)
    detector = REGISTRY[model](REGISTRY[model].test_config())
    detector.fit(detector_data(pipeline, normal))
    holdout = detector_data(pipeline, train)
    threshold, _ = holdout_threshold(detector.score(holdout), holdout.labels)
    bundle = ModelBundle(pipeline=pipeline, detector=detector, threshold=threshold)
    bundle.save(path, onnx=True)
    return path


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two Parquet datasets of the same two days (with and without the cnt_* columns, one file per
    day) and a bundle trained on an earlier day for each."""
    root = tmp_path_factory.mktemp("scale")
    out: dict[str, Any] = {}
    for name, counters in (("counters", True), ("computed", False)):
        folder = root / name
        folder.mkdir()
        for index in (1, 2):
            simulated_day(index, counters=counters).write_parquet(folder / f"day{index}.parquet")
        out[name] = folder
        out[f"{name}_bundle"] = trained_bundle(simulated_day(0, counters=counters), root / f"{name}-ae")
    return out


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local Spark session with two cores for all tests; skipped without Java."""
    from nadkit.detection.spark import _java_binary, spark_session

    if _java_binary() is None:
        pytest.skip("no Java runtime found (the spark engine needs Java 17+: openjdk-17-jre-headless)")
    session = spark_session("local[2]", {"spark.sql.shuffle.partitions": "4"})
    yield session
    session.stop()
