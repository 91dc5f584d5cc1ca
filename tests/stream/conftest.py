"""Shared fixtures of the stream tests: simulated days in time order and a small autoencoder bundle."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from nadkit.features.data import detector_data
from nadkit.features.pipeline import FeatureConfig, FeaturePipeline
from nadkit.features.segments import SegmentConfig
from nadkit.models import REGISTRY
from nadkit.schema import NORMAL
from nadkit.simulate import SimulationConfig, simulate_day
from nadkit.stream.sinks import Sink
from nadkit.training.bundle import ModelBundle
from nadkit.training.fit import holdout_threshold


def simulated_day(index: int, flows: int = 3000) -> pl.DataFrame:
    """A simulated day without the cnt_* columns (the pipeline computes counters: the stateful path)."""
    config = SimulationConfig(days=2, flows_per_day=flows, seed=5, start=date(2020, 12, 3))
    day = simulate_day(config, index)
    dropped = [c for c in day.columns if c.startswith("cnt_")] + ["day"]
    return day.drop(dropped, strict=False).sort("time", maintain_order=True)


@pytest.fixture(scope="session")
def train_day() -> pl.DataFrame:
    return simulated_day(0)


@pytest.fixture(scope="session")
def test_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, Path]:
    frame = simulated_day(1)
    path = tmp_path_factory.mktemp("stream-data") / "day.parquet"
    frame.write_parquet(path)
    return frame, path


@pytest.fixture(scope="session")
def bundle(train_day: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    """An autoencoder with counters and segment features (30 s gap), saved (the CLI can load it)."""
    normal = train_day.filter(pl.col("label") == NORMAL)
    pipeline = FeaturePipeline(FeatureConfig(segments=SegmentConfig(gap_s=30.0))).fit(normal)
    detector = REGISTRY["ae"](REGISTRY["ae"].test_config())
    detector.fit(detector_data(pipeline, normal))
    holdout = detector_data(pipeline, train_day)
    threshold, _ = holdout_threshold(detector.score(holdout), holdout.labels)
    made = ModelBundle(pipeline=pipeline, detector=detector, threshold=threshold, engine="torch")
    made.save(tmp_path_factory.mktemp("stream-bundle") / "ae")
    return made


class MemorySink(Sink):
    """Keeps what it is given."""

    name = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[pl.DataFrame] = []
        self.closed = False

    def write(self, records: pl.DataFrame) -> None:
        self.parts.append(records)
        self.written += records.height

    def close(self) -> None:
        self.closed = True

    def frame(self) -> pl.DataFrame:
        return pl.concat(self.parts, how="vertical_relaxed") if self.parts else pl.DataFrame()
