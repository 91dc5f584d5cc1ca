"""The calendar group: time of day and day of week as points on a circle, each learnt only when the
training flows span its cycle; the window models are trained with it, the row models without."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from nadkit.errors import ConfigError
from nadkit.features.calendar import CalendarGroup, calendar_matrix, calendar_names
from nadkit.features.labels import feature_label
from nadkit.features.pipeline import GROUP_NAMES, FeatureConfig, FeaturePipeline
from nadkit.models import create
from nadkit.training.fit import default_features


def _times(start: datetime, hours: float, count: int = 200) -> pl.DataFrame:
    steps = [start + timedelta(hours=hours * i / (count - 1)) for i in range(count)]
    return pl.DataFrame({"time": pl.Series(steps, dtype=pl.Datetime("us", "UTC"))})


MONDAY = datetime(2021, 1, 4, tzinfo=UTC)


@pytest.mark.parametrize(
    ("hours", "cycles"),
    [(6, []), (23, ["day"]), (48, ["day"]), (7 * 24 - 2, ["day", "week"]), (9 * 24, ["day", "week"])],
)
def test_a_cycle_is_learnt_only_when_the_training_flows_span_it(hours: float, cycles: list[str]) -> None:
    state = CalendarGroup().fit(_times(MONDAY, hours))
    assert state == {"cycles": cycles}
    assert CalendarGroup().apply(_times(MONDAY, 1), state).columns == calendar_names(cycles)


def test_the_angles() -> None:
    state = {"cycles": ["day", "week"]}
    moments = [MONDAY, MONDAY + timedelta(hours=6), MONDAY + timedelta(days=3, hours=12)]
    frame = pl.DataFrame({"time": pl.Series(moments, dtype=pl.Datetime("us", "UTC"))})
    out = CalendarGroup().apply(frame, state)
    assert out["time_of_day_sin"].to_list() == pytest.approx([0.0, 1.0, 0.0], abs=1e-6)
    assert out["time_of_day_cos"].to_list() == pytest.approx([1.0, 0.0, -1.0], abs=1e-6)
    # Monday 00:00 is angle 0 of the week; Thursday noon is half the week
    assert out["day_of_week_sin"].to_list() == pytest.approx([0.0, math.sin(2 * math.pi / 28), 0.0], abs=1e-6)
    assert out["day_of_week_cos"][2] == pytest.approx(-1.0, abs=1e-6)
    assert out.dtypes == [pl.Float32] * 4
    # the bucket view's NumPy form gives the same columns
    start_us = frame["time"].dt.epoch("us").to_numpy()
    np.testing.assert_allclose(calendar_matrix(start_us, ("day", "week")), out.to_numpy(), atol=1e-6)
    assert calendar_matrix(start_us, ()).shape == (3, 0)
    with pytest.raises(ConfigError, match="cycles"):  # a tampered pipeline state
        CalendarGroup().apply(frame, {"cycles": ["month"]})


def test_in_a_pipeline_the_calendar_reads_the_time_and_round_trips() -> None:
    rng = np.random.default_rng(0)
    frame = _times(MONDAY, 50, count=500).with_columns(
        src=pl.lit("10.0.0.1"),
        dst=pl.lit("10.0.0.2"),
        spt=pl.Series(rng.integers(1024, 65535, 500)),
        dpt=pl.lit(443),
        proto=pl.lit("tcp"),
        duration=pl.Series(rng.exponential(size=500)),
        out_bytes=pl.Series(rng.integers(100, 10_000, 500)),
        in_bytes=pl.Series(rng.integers(100, 10_000, 500)),
        out_pkts=pl.lit(5),
        in_pkts=pl.lit(4),
    )
    pipeline = FeaturePipeline(FeatureConfig(groups=(*GROUP_NAMES, "calendar"))).fit(frame)
    names = [n for n in pipeline.feature_names_ if n.startswith(("time_of_day", "day_of_week"))]
    assert names == ["time_of_day_sin", "time_of_day_cos"]  # two days: no weekly cycle
    assert pipeline.raw_columns_["time_of_day_sin"] == ["time"]
    assert feature_label("time_of_day_sin") == "time of day"
    again = FeaturePipeline.from_dict(pipeline.to_dict())
    assert again.feature_names_ == pipeline.feature_names_
    assert again.transform(frame).equals(pipeline.transform(frame))
    plain = FeaturePipeline().fit(frame)
    assert not [n for n in plain.feature_names_ if n.startswith("time_of_day")]


def test_window_models_are_trained_with_the_calendar_and_row_models_without() -> None:
    for name in ("lstm", "gru", "transformer", "cnn_lstm"):
        assert "calendar" in default_features(create(name)).groups
    for name in ("ae", "iforest"):
        assert default_features(create(name)).groups == GROUP_NAMES
    # a supervised model leaves out how each burst went (see default_features)
    assert default_features(create("multitask")).groups == tuple(g for g in GROUP_NAMES if g != "exchanges")
