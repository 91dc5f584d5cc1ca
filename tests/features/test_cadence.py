"""Cadence features: how often and how regularly a host comes back to one service."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from nadkit.errors import ConfigError
from nadkit.features.cadence import CADENCE_COLUMNS, CadenceConfig, cadence_features
from nadkit.features.incremental import augment_in_pieces
from nadkit.features.pipeline import FeatureConfig, FeaturePipeline

START = datetime(2024, 3, 1, tzinfo=UTC)


def _flows(seconds: list[float], **columns: list[object]) -> pl.DataFrame:
    n = len(seconds)
    base: dict[str, list[object]] = {"src": ["10.0.0.5"] * n, "dst": ["203.0.113.9"] * n}
    base |= {"proto": ["tcp"] * n, "dpt": [443] * n}
    base |= columns
    return pl.DataFrame({"time": [START + timedelta(seconds=s) for s in seconds], **base})


def test_a_timer_has_a_small_coefficient_of_variation() -> None:
    out = cadence_features(_flows([0, 60, 120, 181, 240]))
    assert out["pair_repeats"].to_list() == [0, 1, 2, 3, 4]
    assert out["pair_gap_s"].to_list() == [3600.0, 60.0, 60.0, 61.0, 59.0]
    # intervals 60, 60, 61, 59: standard deviation sqrt(0.5) over mean 60
    assert out["pair_gap_cv"].to_list()[:3] == [1.0, 1.0, 0.0]
    assert out["pair_gap_cv"][4] == pytest.approx(np.sqrt(0.5) / 60)


def test_the_look_back_stops_at_the_horizon_and_at_gaps_flows() -> None:
    config = CadenceConfig(horizon_s=100.0, gaps=3)
    out = cadence_features(_flows([0, 10, 20, 30, 40, 50, 200, 250, 340]), config)
    # at most 3 earlier flows; after a pause longer than the horizon the pair starts again
    assert out["pair_repeats"].to_list() == [0, 1, 2, 3, 3, 3, 0, 1, 1]
    assert out["pair_gap_s"].to_list()[6:] == [100.0, 50.0, 90.0]


def test_pairs_are_kept_apart_by_address_protocol_and_port_not_source_port() -> None:
    frame = _flows(
        [0, 1, 2, 3, 4],
        dst=["a", "a", "b", "a", "a"],
        dpt=[80, 80, 80, 80, 53],
        spt=[40000, 40001, 40002, 40003, 40004],
    )
    out = cadence_features(frame)
    assert out["pair_repeats"].to_list() == [0, 1, 0, 2, 0]
    assert out["pair_gap_s"].to_list() == [3600.0, 1.0, 3600.0, 2.0, 3600.0]


def test_rows_keep_their_order_and_ties_look_back_in_row_order() -> None:
    frame = _flows([30, 0, 30, 10])
    out = cadence_features(frame)
    # in time order the flows are 0 (row 1), 10 (row 3), 30 (row 0), 30 (row 2)
    assert out["pair_repeats"].to_list() == [2, 0, 3, 1]
    assert out["pair_gap_s"].to_list() == [20.0, 3600.0, 0.0, 10.0]


def _reference(frame: pl.DataFrame, config: CadenceConfig) -> pl.DataFrame:
    """The definitions, flow by flow."""
    times = frame["time"].dt.epoch("us").to_list()
    keys = list(zip(*(frame[c].to_list() for c in ("src", "dst", "proto", "dpt")), strict=True))
    order = sorted(range(frame.height), key=lambda i: (times[i], i))
    seen: dict[tuple[object, ...], list[int]] = {}
    rows: dict[int, tuple[int, float, float]] = {}
    for i in order:
        earlier = [t for t in seen.get(keys[i], []) if times[i] - t < config.horizon_us][-config.gaps :]
        chain = [*earlier, times[i]]
        intervals = [(b - a) / 1e6 for a, b in itertools.pairwise(chain)]
        gap = intervals[-1] if intervals else config.horizon_s
        cv = 1.0
        if len(intervals) >= 2:
            mean = sum(intervals) / len(intervals)
            std = (sum((x - mean) ** 2 for x in intervals) / len(intervals)) ** 0.5
            cv = std / mean if mean > 0 else 0.0
        rows[i] = (len(earlier), gap, cv)
        seen.setdefault(keys[i], []).append(times[i])
    values = [rows[i] for i in range(frame.height)]
    return pl.DataFrame(values, schema=list(CADENCE_COLUMNS), orient="row")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_flows_match_the_definitions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 600
    frame = pl.DataFrame(
        {
            "time": [START + timedelta(milliseconds=int(x)) for x in rng.integers(0, 900_000, n)],
            "src": rng.choice(["h1", "h2", None], n).tolist(),
            "dst": rng.choice(["s1", "s2", "s3"], n).tolist(),
            "proto": rng.choice(["tcp", "udp"], n).tolist(),
            "dpt": rng.choice([53, 80], n).tolist(),
        }
    )
    config = CadenceConfig(horizon_s=120.0, gaps=5)
    out = cadence_features(frame, config)
    expected = _reference(frame, config)
    assert out["pair_repeats"].to_list() == expected["pair_repeats"].to_list()
    np.testing.assert_allclose(out["pair_gap_s"].to_numpy(), expected["pair_gap_s"].to_numpy())
    np.testing.assert_allclose(out["pair_gap_cv"].to_numpy(), expected["pair_gap_cv"].to_numpy(), atol=1e-12)


def test_an_empty_table_has_empty_columns() -> None:
    out = cadence_features(_flows([]))
    assert out.height == 0 and out.columns == list(CADENCE_COLUMNS)
    assert out.dtypes == [pl.Int64, pl.Float64, pl.Float64]


def test_settings_out_of_range_are_refused() -> None:
    with pytest.raises(ConfigError, match="horizon_s"):
        CadenceConfig(horizon_s=0.5)
    with pytest.raises(ConfigError, match="gaps"):
        CadenceConfig(gaps=1)
    with pytest.raises(ConfigError, match="cadence"):
        FeatureConfig.from_dict({"cadence": {"gaps": 100}})


def test_the_pipeline_computes_saves_and_streams_them() -> None:
    rng = np.random.default_rng(5)
    n = 2000
    seconds = np.sort(rng.uniform(0, 7200, n))
    frame = _flows(
        seconds.tolist(),
        src=rng.choice([f"10.0.0.{i}" for i in range(8)], n).tolist(),
        dst=rng.choice([f"198.51.100.{i}" for i in range(5)], n).tolist(),
        dpt=rng.choice([53, 80, 443], n).tolist(),
        spt=rng.integers(1024, 65535, n).tolist(),
        out_bytes=rng.integers(40, 5000, n).tolist(),
    )
    pipeline = FeaturePipeline(FeatureConfig(groups=("logs", "cadence"), cadence=CadenceConfig(gaps=4)))
    pipeline.fit(frame)
    assert pipeline.cadence_computed_ and pipeline.stateful
    assert set(CADENCE_COLUMNS) <= set(pipeline.feature_names_)
    loaded = FeaturePipeline.from_dict(pipeline.to_dict())
    assert loaded.transform(frame).equals(pipeline.transform(frame))
    whole = pipeline.augment(frame)
    pieces = augment_in_pieces(pipeline, frame, [1, 7, 500, 501, 1200])
    for column in CADENCE_COLUMNS:
        assert pieces[column].equals(whole[column]), column


def test_a_pipeline_saved_before_cadence_features_computes_none() -> None:
    frame = _flows([0, 60, 120])
    pipeline = FeaturePipeline(FeatureConfig(groups=("logs",))).fit(frame.with_columns(out_bytes=pl.lit(10)))
    saved = pipeline.to_dict()
    del saved["cadence_computed"]
    assert not FeaturePipeline.from_dict(saved).cadence_computed_


def test_flows_without_what_they_need_skip_the_group() -> None:
    frame = _flows([0, 60, 120]).drop("dpt").with_columns(out_bytes=pl.lit(10))
    pipeline = FeaturePipeline(FeatureConfig(groups=("logs", "cadence"))).fit(frame)
    assert not pipeline.cadence_computed_
    assert not set(CADENCE_COLUMNS) & set(pipeline.feature_names_)
