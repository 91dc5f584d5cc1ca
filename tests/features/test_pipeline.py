"""The feature pipeline: fit/transform determinism, fixed column order, scaling, JSON round trip,
unseen categories, missing columns, group skipping, configuration, and real and simulated data."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from nadkit.errors import BundleError, ConfigError, NadkitError, SchemaError
from nadkit.features import FeatureConfig, FeaturePipeline, segments
from nadkit.features.counters import COUNTER_COLUMNS, CounterConfig
from nadkit.features.counters import REQUIRED as COUNTER_INPUTS
from nadkit.features.pipeline import GROUP_NAMES, SEGMENT_GROUPS
from nadkit.features.scaling import FLOAT32_MAX_OFFSET, Scaling, compress_log, fit_scaling
from nadkit.schema import TIME_DTYPE
from nadkit.simulate import COLUMNS, SimulationConfig, simulate
from nadkit.sources import load_flows
from tests.conftest import shared_file

#: Settings without segment features, for faster fits (one test below covers them).
NO_SEGMENTS = FeatureConfig(
    groups=tuple(g for g in GROUP_NAMES if g not in SEGMENT_GROUPS), vocabulary_min_count=2
)


def make_flows(rows: int = 400, seed: int = 0) -> pl.DataFrame:
    """A small NAD-like canonical table (no cnt_* columns: the pipeline computes them)."""
    rng = np.random.default_rng(seed)
    start = dt.datetime(2020, 12, 3, tzinfo=dt.UTC)
    seconds = np.sort(rng.integers(0, 3600, rows))
    internal = [f"192.168.1.{i}" for i in range(1, 30)]
    external = [f"8.8.{i}.{j}" for i in range(3) for j in (1, 8, 200)]
    proto = rng.choice(["tcp", "udp", "icmp"], rows, p=[0.7, 0.25, 0.05])
    return pl.DataFrame(
        {
            "time": [start + dt.timedelta(seconds=int(s)) for s in seconds],
            "src": rng.choice(internal, rows).tolist(),
            "dst": rng.choice(internal + external + ["192.168.1.255"], rows).tolist(),
            "spt": rng.integers(1024, 65536, rows),
            "dpt": rng.choice([53, 80, 443, 22, 8080], rows),
            "proto": proto.tolist(),
            "app": rng.choice(["http", "https", "domain", "ssh", "others"], rows).tolist(),
            "duration": np.round(rng.exponential(2.0, rows) * (rng.random(rows) > 0.2), 3),
            "out_bytes": rng.integers(0, 5000, rows),
            "in_bytes": rng.integers(0, 50000, rows) * (rng.random(rows) > 0.3),
            "out_pkts": rng.integers(1, 30, rows),
            "in_pkts": rng.integers(0, 40, rows),
            "label": ["normal"] * rows,
        },
        schema_overrides={"time": TIME_DTYPE},
    )


@pytest.fixture(scope="module")
def train() -> pl.DataFrame:
    return make_flows(600, seed=1)


@pytest.fixture(scope="module")
def pipeline(train: pl.DataFrame) -> FeaturePipeline:
    return FeaturePipeline(NO_SEGMENTS).fit(train)


def test_fit_is_deterministic_and_transform_fixed(train: pl.DataFrame, pipeline: FeaturePipeline) -> None:
    again = FeaturePipeline(NO_SEGMENTS).fit(train)
    assert again.to_dict() == pipeline.to_dict()
    first, second = pipeline.transform(train), again.transform(train)
    assert first.equals(second)
    assert first.columns == pipeline.feature_names_
    assert set(first.dtypes) == {pl.Float32}
    assert first.height == train.height


def test_refitting_replaces_the_features_of_the_earlier_fit(train: pl.DataFrame) -> None:
    pipeline = FeaturePipeline(NO_SEGMENTS).fit(train)
    first = pipeline.transform(train)
    other = make_flows(rows=400, seed=5).with_columns(pl.col("in_bytes") * 1000)
    pipeline.fit(other)
    assert_frame_equal(pipeline.transform(train), FeaturePipeline(NO_SEGMENTS).fit(other).transform(train))
    assert not pipeline.transform(train).equals(first)


def test_output_is_finite_and_column_order_ignores_input_order(
    train: pl.DataFrame, pipeline: FeaturePipeline
) -> None:
    shuffled = train.select(list(reversed(train.columns)))
    out = pipeline.transform(shuffled)
    assert out.equals(pipeline.transform(train))
    matrix = out.to_numpy()
    assert np.isfinite(matrix).all()
    array = pipeline.transform_numpy(train)
    assert array.dtype == np.float32 and array.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(array, matrix)


def test_nad_like_features_and_their_raw_columns(pipeline: FeaturePipeline) -> None:
    names = pipeline.feature_names_
    for name in [
        "proto=tcp",
        "proto=icmp",
        "proto=others",
        "app=http",
        "app=others",
        "duration_zero",
        "log_out_bytes",
        "log_cnt_src",
        "cnt_serv_src_per_cnt_src",
        "cnt_src",
        "dst_area=broadcast",
        "ip_flow_type=egress",
        "ip_binary_match",
        "dpt_area=well_known",
        "port_match",
    ]:
        assert name in names, name
    assert "app=others" in names and names.count("app=others") == 1
    assert not {"time", "src", "dst", "spt", "dpt", "duration", "out_bytes", "label"} & set(names)
    assert pipeline.raw_columns_["ip_binary_match"] == ["src", "dst"]
    assert pipeline.raw_columns_["log_out_bytes"] == ["out_bytes"]
    assert pipeline.raw_columns_["cnt_serv_src_per_cnt_src"] == ["cnt_serv_src", "cnt_src"]
    assert pipeline.raw_columns_["port_match"] == ["spt", "dpt"]
    # the counters were computed from the flows, and say so
    assert pipeline.counters_computed_
    assert pipeline.derived_columns_["cnt_src"] == list(COUNTER_INPUTS)
    flow_columns = {c for c in COLUMNS if c not in COUNTER_COLUMNS} - {"label", "label_original", "day"}
    assert set(pipeline.input_columns_) == flow_columns


def test_binary_features_stay_zero_or_one(train: pl.DataFrame, pipeline: FeaturePipeline) -> None:
    out = pipeline.transform(train)
    for name in ("proto=tcp", "dst_area=broadcast", "ip_flow_type=intranet", "port_match"):
        assert set(out[name].unique().to_list()) <= {0.0, 1.0}, name
    assert out["proto=tcp"].sum() == (train["proto"] == "tcp").sum()


def test_scaled_values_follow_the_fitted_statistics(train: pl.DataFrame, pipeline: FeaturePipeline) -> None:
    scaling = pipeline.scaling_["log_out_bytes"]
    raw = np.log1p(train["out_bytes"].to_numpy().astype(np.float64))
    q25, median, q75 = np.quantile(raw, [0.25, 0.5, 0.75])
    assert (scaling.center, scaling.scale) == pytest.approx((median, q75 - q25))
    assert (scaling.lower, scaling.upper) == pytest.approx(
        (median - 100 * (q75 - q25), median + 100 * (q75 - q25))
    )
    got = pipeline.transform(train)["log_out_bytes"].to_numpy()
    # the features are computed in Float32: within about 1e-6 of the Float64 values; then compressed
    np.testing.assert_allclose(got, compress_log((raw - median) / (q75 - q25)), rtol=1e-5, atol=1e-5)


def test_compression_can_be_turned_off_and_older_pipelines_load_without_it(train: pl.DataFrame) -> None:
    plain = FeaturePipeline(FeatureConfig(groups=("logs",), compress="none")).fit(train)
    compressed = FeaturePipeline(FeatureConfig(groups=("logs",))).fit(train)
    z = plain.transform_numpy(train)
    np.testing.assert_allclose(compressed.transform_numpy(train), compress_log(z), rtol=1e-5, atol=1e-6)
    assert compress_log(np.array([-100.0, -1.0, 0.5, 1.0, np.e])).tolist() == pytest.approx(
        [-1 - np.log(100.0), -1.0, 0.5, 1.0, 2.0]
    )
    # a pipeline saved before compression existed has neither the setting nor the per-feature flag
    saved = compressed.to_dict()
    del saved["config"]["compress"]
    for feature in saved["features"]:
        del feature["log_compress"]
    old = FeaturePipeline.from_dict(saved)
    assert old.config.compress == "none"
    np.testing.assert_allclose(old.transform_numpy(train), z, rtol=1e-6)
    with pytest.raises(ConfigError, match="compress"):
        FeatureConfig(compress="sqrt")


def test_values_beyond_the_training_range_stay_visible_up_to_the_bound(train: pl.DataFrame) -> None:
    pipeline = FeaturePipeline(FeatureConfig(groups=("logs",), max_scaled=20.0)).fit(train)
    scaling = pipeline.scaling_["log_out_bytes"]
    huge = train.head(2).with_columns(pl.Series("out_bytes", [10**7, 10**15]))
    out = pipeline.transform(huge)["log_out_bytes"].to_list()
    expected = (np.log1p(1e7) - scaling.center) / scaling.scale
    assert out[0] == pytest.approx(compress_log(expected), rel=1e-5)
    assert out[0] > compress_log((np.log1p(train["out_bytes"].max()) - scaling.center) / scaling.scale)
    assert out[1] == pytest.approx(compress_log(20.0))


def test_unseen_categories_go_to_others(pipeline: FeaturePipeline) -> None:
    new = make_flows(50, seed=9).with_columns(
        pl.when(pl.int_range(pl.len()) < 5).then(pl.lit("gre")).otherwise(pl.col("proto")).alias("proto"),
        pl.lit("quic").alias("app"),
    )
    out = pipeline.transform(new)
    assert out["proto=others"][:5].to_list() == [1.0] * 5
    assert out["proto=tcp"][:5].to_list() == [0.0] * 5
    assert out["app=others"].to_list() == [1.0] * 50
    assert out["app=http"].sum() == 0.0
    assert np.isfinite(out.to_numpy()).all()


def test_missing_column_is_an_error_naming_it(train: pl.DataFrame, pipeline: FeaturePipeline) -> None:
    with pytest.raises(SchemaError, match="'dst'") as caught:
        pipeline.transform(train.drop("dst"))
    assert caught.value.column == "dst"
    with pytest.raises(SchemaError, match="'app'"):
        pipeline.transform(train.drop("app"))


def test_the_missing_columns_are_counted_and_the_fitted_format_named(train: pl.DataFrame) -> None:
    """A pipeline knows the format of the flows it was fitted on where the reader said it, keeps it
    through saving, and a table lacking its columns is told that format and how many columns lack."""
    pipeline = FeaturePipeline(NO_SEGMENTS).fit(train)
    with pytest.raises(SchemaError) as caught:
        pipeline.transform(train.drop("app", "duration", "in_pkts"))
    message = str(caught.value)
    assert caught.value.column == "app" and "2 more of its columns are missing too" in message
    assert "in_pkts" in message and "fitted on" not in message  # no format told: none named
    pipeline.source_format = "zeek"
    loaded = FeaturePipeline.from_dict(json.loads(json.dumps(pipeline.to_dict())))
    assert loaded.source_format == "zeek"
    with pytest.raises(SchemaError, match="fitted on 'zeek' flows: score flows of that format"):
        loaded.transform(train.drop("duration"))
    with pytest.raises(SchemaError, match=r"'src'.*fitted on 'zeek' flows"):
        loaded.check_context_columns([c for c in train.columns if c != "src"])
    assert FeaturePipeline(NO_SEGMENTS).fit(train).source_format is None  # a new fit forgets it
    for hostile in ("../../etc", "Zeek flows; rm -rf", 7, "x" * 40):
        state = {**pipeline.to_dict(), "source_format": hostile}
        with pytest.raises(BundleError, match="corrupt"):
            FeaturePipeline.from_dict(state)


def test_a_retrained_bundle_keeps_the_format_its_parent_was_fitted_on(train: pl.DataFrame) -> None:
    from types import SimpleNamespace

    from nadkit.training.bundle import carry_source_format

    parent = FeaturePipeline(NO_SEGMENTS).fit(train)
    parent.source_format = "netflow"
    child = FeaturePipeline(NO_SEGMENTS).fit(train)
    carry_source_format(SimpleNamespace(pipeline=parent), SimpleNamespace(pipeline=child))  # type: ignore[arg-type]
    assert child.source_format == "netflow"
    other = FeaturePipeline(NO_SEGMENTS).fit(train)
    other.source_format = "zeek"  # what the retraining read itself says wins
    carry_source_format(SimpleNamespace(pipeline=parent), SimpleNamespace(pipeline=other))  # type: ignore[arg-type]
    assert other.source_format == "zeek"


def test_save_and_load_give_identical_output(
    tmp_path: Path, train: pl.DataFrame, pipeline: FeaturePipeline
) -> None:
    path = pipeline.save(tmp_path / "pipeline.json")
    loaded = FeaturePipeline.load(path)
    assert loaded.feature_names_ == pipeline.feature_names_
    assert loaded.raw_columns_ == pipeline.raw_columns_
    assert loaded.to_dict() == pipeline.to_dict()
    new = make_flows(200, seed=4)
    assert loaded.transform(new).equals(pipeline.transform(new))
    saved = json.loads(path.read_text())
    assert saved["format"] == "nadkit.feature_pipeline"
    assert [f["name"] for f in saved["features"]] == pipeline.feature_names_
    assert not list(tmp_path.glob(".*part"))  # no temporary file left behind
    with pytest.raises(NadkitError, match="already exists"):
        pipeline.save(path)
    pipeline.save(path, overwrite=True)


def test_corrupt_or_foreign_state_is_refused(tmp_path: Path, pipeline: FeaturePipeline) -> None:
    with pytest.raises(BundleError, match="not a saved"):
        FeaturePipeline.from_dict({"format": "something else"})
    state = pipeline.to_dict()
    state["features"] = state["features"][:-1]
    with pytest.raises(BundleError, match="does not match"):
        FeaturePipeline.from_dict(state)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        FeaturePipeline.load(broken)
    with pytest.raises(ConfigError, match="not fitted"):
        FeaturePipeline().transform(make_flows(5))


def test_nan_and_inf_are_handled() -> None:
    rows = 200
    values = np.linspace(0.0, 100.0, rows)
    frame = pl.DataFrame({"proto": ["tcp"] * rows, "flow_bytes_s": values, "sttl": np.arange(rows) % 2})
    config = FeatureConfig(groups=("categories", "raw"))
    pipeline = FeaturePipeline(config).fit(frame)
    assert pipeline.feature_names_ == ["proto=tcp", "proto=others", "flow_bytes_s", "sttl"]
    scaling = pipeline.scaling_["flow_bytes_s"]
    assert (scaling.center, scaling.scale) == pytest.approx((50.0, 50.0))
    new = pl.DataFrame(
        {
            "proto": ["tcp"] * 5,
            "flow_bytes_s": [float("inf"), float("-inf"), float("nan"), None, 75.0],
            "sttl": [1, 0, 1, 0, 0],
        }
    )
    out = pipeline.transform(new)
    bound = float(compress_log(100.0))  # the scaling bound, compressed
    assert out["flow_bytes_s"].to_list() == pytest.approx([bound, -bound, 0.0, 0.0, 0.5])
    assert out["sttl"].to_list() == [1.0, 0.0, 1.0, 0.0, 0.0]  # a 0/1 column keeps its values
    assert np.isfinite(out.to_numpy()).all()


def test_a_large_offset_keeps_its_precision() -> None:
    # values far from 0 with a small spread (a timestamp, a sequence number) are scaled in Float64
    values = 1e9 + np.arange(400, dtype=np.float64) / 4
    frame = pl.DataFrame({"proto": ["tcp"] * 400, "seq": values, "small": np.arange(400) % 7})
    pipeline = FeaturePipeline(FeatureConfig(groups=("raw",))).fit(frame)
    scaling = pipeline.scaling_["seq"]
    assert abs(scaling.center) / scaling.scale > FLOAT32_MAX_OFFSET
    out = pipeline.transform(frame)

    expected = compress_log((values - scaling.center) / scaling.scale)
    np.testing.assert_allclose(out["seq"].to_numpy(), expected, atol=1e-6)
    small = pipeline.scaling_["small"]
    expected = compress_log((frame["small"].to_numpy() - small.center) / small.scale)
    np.testing.assert_allclose(out["small"].to_numpy(), expected, atol=1e-6)


def test_fit_scaling_rules() -> None:
    m = 100.0
    binary = fit_scaling(np.array([0.0, 1.0, 1.0, 0.0, 1.0]), (0.001, 0.999))
    assert binary == Scaling(center=0.0, scale=1.0, lower=-m, upper=m)
    constant = fit_scaling(np.full(10, 7.0), (0.001, 0.999))
    assert constant == Scaling(center=7.0, scale=1.0, lower=7.0 - m, upper=7.0 + m)
    # mostly zero with one large value: inter-quartile and quantile ranges are 0, the full range is used
    rare = fit_scaling(np.array([0.0] * 9999 + [50.0]), (0.01, 0.99))
    assert (rare.center, rare.scale) == (0.0, 50.0)
    empty = fit_scaling(np.array([np.nan, np.inf]), (0.001, 0.999))
    assert empty == Scaling(0.0, 1.0, -m, m)
    spread = fit_scaling(np.arange(1.0, 102.0), (0.0, 1.0))
    assert spread == Scaling(center=51.0, scale=50.0, lower=51.0 - 50 * m, upper=51.0 + 50 * m)
    # a heavy tail far beyond the inter-quartile range widens the scale: the central range fits in +-m
    tailed = fit_scaling(np.concatenate([np.arange(1.0, 102.0), [1e6]]), (0.0, 1.0))
    assert tailed.scale == pytest.approx((1e6 - 1.0) / m)
    assert (tailed.upper - tailed.center) / tailed.scale == pytest.approx(m)


def test_groups_are_skipped_with_a_note_when_columns_are_missing(caplog: pytest.LogCaptureFixture) -> None:
    # a UNSW-like table: no time, addresses or ports
    frame = pl.DataFrame(
        {
            "proto": ["tcp", "udp"] * 50,
            "app": ["http", "dns"] * 50,
            "duration": np.linspace(0.0, 2.0, 100),
            "out_bytes": np.arange(100),
            "in_bytes": np.arange(100) * 2,
            "sttl": [254, 62] * 50,
            "label": ["normal", "dos"] * 50,
        }
    )
    with caplog.at_level(logging.INFO, logger="nadkit.features.pipeline"):
        pipeline = FeaturePipeline(FeatureConfig()).fit(frame)
    assert "feature group address skipped: the data has no src, dst" in caplog.text
    assert "feature group port skipped: the data has no spt, dpt" in caplog.text
    assert "traffic counters not computed: the data has no time, src, dst" in caplog.text
    skipped = {"address": ["src", "dst"], "port": ["spt", "dpt"], "tcp": ["tcp_flags"]}
    assert pipeline.skipped_groups_ == skipped
    assert not pipeline.counters_computed_ and not pipeline.segments_computed_
    names = pipeline.feature_names_
    assert not any(n.startswith(("src_", "dst_", "ip_", "spt_", "dpt_", "cnt_", "seg_")) for n in names)
    assert {"sttl", "log_duration", "in_bytes_share", "proto=tcp"} <= set(names)
    assert pipeline.transform(frame).shape == (100, len(names))


def test_lazy_input_stays_lazy_when_nothing_is_computed_first(train: pl.DataFrame) -> None:
    from nadkit.features.counters import add_traffic_counters

    with_counters = add_traffic_counters(train)
    pipeline = FeaturePipeline(NO_SEGMENTS).fit(with_counters)
    assert not pipeline.counters_computed_  # the source's own counters are used
    lazy = pipeline.transform_lazy(with_counters.lazy())
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().equals(pipeline.transform(with_counters))
    # the same flows with counters computed by the pipeline give the same features
    computed = FeaturePipeline(NO_SEGMENTS).fit(train)
    assert computed.transform(train).equals(pipeline.transform(with_counters).select(computed.feature_names_))


def test_groups_share_helper_columns(train: pl.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    # logs and ratios both need log(1 + bytes): computed once, under one name
    pipeline = FeaturePipeline(FeatureConfig(groups=("logs", "ratios"))).fit(train)
    stages, _ = pipeline._expressions()
    names = [e.meta.output_name() for stage in stages for e in stage]
    assert len(names) == len(set(names))
    assert "_log1p_out_bytes" in names
    out = pipeline.transform(train)
    assert out.columns == pipeline.feature_names_
    # a group that reuses a helper name for another expression is refused
    from nadkit.features import pipeline as pipeline_module
    from nadkit.features.flow import LogGroup

    class Clashing(LogGroup):
        name = "ratios"

        def helpers(self, state: dict) -> list[list[pl.Expr]]:
            return [[pl.col("out_bytes").cast(pl.Float32).alias("_float_out_bytes")]]

    original = pipeline_module.build_groups
    monkeypatch.setattr(pipeline_module, "build_groups", lambda config: [*original(config)[:1], Clashing()])
    with pytest.raises(ConfigError, match="_float_out_bytes"):
        pipeline._expressions()


def test_a_subset_of_groups(train: pl.DataFrame) -> None:
    pipeline = FeaturePipeline(FeatureConfig(groups=("port",))).fit(train)
    assert pipeline.feature_names_ == [
        "spt_area=well_known",
        "spt_area=registered",
        "spt_area=ephemeral",
        "dpt_area=well_known",
        "dpt_area=registered",
        "dpt_area=ephemeral",
        "port_match",
    ]
    assert not pipeline.counters_computed_
    assert pipeline.input_columns_ == ["dpt", "spt"]


def test_config_round_trips_through_dict_yaml_toml_and_json(tmp_path: Path) -> None:
    config = FeatureConfig(
        groups=("categories", "logs", "port"),
        vocabulary_min_share=0.01,
        counters=CounterConfig(window_s=5.0),
        segments=segments.SegmentConfig(key=("src", "dst"), gap_s=30.0),
        clip_quantiles=(0.01, 0.99),
    )
    assert FeatureConfig.from_dict(config.to_dict()) == config
    assert FeatureConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    yaml_file = tmp_path / "features.yaml"
    yaml_file.write_text("groups: [categories, logs]\nvocabulary_min_count: 3\ncounters:\n  window_s: 4\n")
    from_yaml = FeatureConfig.from_file(yaml_file)
    assert from_yaml.groups == ("categories", "logs")
    assert from_yaml.vocabulary_min_count == 3
    assert from_yaml.counters == CounterConfig(window_s=4)
    toml_file = tmp_path / "features.toml"
    toml_file.write_text(
        'categorical = ["proto"]\nclip_quantiles = [0.0, 1.0]\n[counters]\nconnections = 50\n'
    )
    from_toml = FeatureConfig.from_file(toml_file)
    assert from_toml.categorical == ("proto",)
    assert from_toml.clip_quantiles == (0.0, 1.0)
    assert from_toml.counters.connections == 50
    with pytest.raises(ConfigError, match="unknown feature group 'bogus'"):
        FeatureConfig(groups=("bogus",))
    with pytest.raises(ConfigError, match="unknown feature setting 'windows'"):
        FeatureConfig.from_dict({"windows": 3})
    with pytest.raises(ConfigError, match="counters"):
        FeatureConfig.from_dict({"counters": {"window_s": -1}})
    with pytest.raises(ConfigError, match="clip_quantiles"):
        FeatureConfig(clip_quantiles=(0.5, 0.9))
    with pytest.raises(ConfigError, match="max_scaled"):
        FeatureConfig(max_scaled=0.0)


def test_empty_table_cannot_be_fitted(train: pl.DataFrame) -> None:
    with pytest.raises(SchemaError, match="empty"):
        FeaturePipeline(NO_SEGMENTS).fit(train.head(0))


def test_segment_features_are_added(train: pl.DataFrame) -> None:
    pipeline = FeaturePipeline(FeatureConfig(vocabulary_min_count=2)).fit(train)
    assert pipeline.segments_computed_
    seg_names = [n for n in pipeline.feature_names_ if n.startswith("seg_")]
    # every segment column the simulated flows allow (they carry no server names)
    assert set(seg_names) == set(segments.SEGMENT_COLUMNS) - {"seg_domain_names"}
    assert pipeline.feature_names_[-len(seg_names) :] == seg_names
    assert set(pipeline.derived_columns_["seg_unique_dpt"]) == {*segments.REQUIRED, "dpt"}
    out = pipeline.transform(train)
    assert np.isfinite(out.to_numpy()).all()
    assert FeaturePipeline.from_dict(pipeline.to_dict()).transform(train).equals(out)


def test_older_pipelines_keep_unlimited_segments_and_settings_take_null(tmp_path: Path) -> None:
    # a pipeline saved before segments had a longest span loads with none, as it was fitted
    flows = make_flows(400).with_columns(
        (
            pl.lit(dt.datetime(2024, 5, 6, tzinfo=dt.UTC)) + pl.duration(seconds=pl.int_range(0, 400) * 5)
        ).alias("time"),
        pl.lit("10.0.0.1").alias("src"),
        pl.lit("10.0.9.9").alias("dst"),
    )
    fitted = FeaturePipeline(FeatureConfig(groups=("segments",))).fit(flows)
    assert fitted.config.segments.max_span_s == 300.0
    saved = fitted.to_dict()
    assert saved["config"]["segments"]["max_span_s"] == 300.0
    assert FeaturePipeline.from_dict(saved).config.segments.max_span_s == 300.0
    del saved["config"]["segments"]["max_span_s"]
    old = FeaturePipeline.from_dict(saved)
    assert old.config.segments.max_span_s is None
    # 2,000 s of flows every 5 s, never a pause: one segment unlimited, 300 s windows otherwise
    assert old.augment(flows)["seg_flows"].unique().to_list() == [400]
    assert fitted.augment(flows)["seg_flows"].max() == 60
    settings = tmp_path / "features.yaml"
    settings.write_text("segments:\n  max_span_s: null\n  gap_s: 30\n")
    assert FeatureConfig.from_file(settings).segments == segments.SegmentConfig(gap_s=30.0, max_span_s=None)
    with pytest.raises(ConfigError, match="max_span_s"):
        FeatureConfig.from_dict({"segments": {"max_span_s": "long"}})


def test_simulated_nad_data_gives_at_least_100_features() -> None:
    flows = simulate(SimulationConfig(days=2, flows_per_day=20_000, seed=1))
    assert set(COUNTER_COLUMNS) <= set(flows.columns)
    pipeline = FeaturePipeline().fit(flows)
    assert len(pipeline.feature_names_) >= 100
    assert not pipeline.counters_computed_  # the simulator writes NAD's own counters
    out = pipeline.transform(flows)
    assert out.shape == (flows.height, len(pipeline.feature_names_))
    assert np.isfinite(out.to_numpy()).all()
    # broadcast destinations (smurf) are visible as such
    assert out["dst_area=broadcast"].sum() > 0


@pytest.mark.parametrize(
    ("relative", "fmt", "minimum"),
    [
        ("unsw_nb15/UNSW_NB15_training-set.csv", "unsw", 30),
        ("nsl_kdd/KDDTrain+_20Percent.txt", "kdd", 30),
        ("cicids2017/CICIDS2017_sample_km.csv", "cic", 60),
    ],
)
def test_real_datasets_featurize(relative: str, fmt: str, minimum: int) -> None:
    flows, _ = load_flows(shared_file(relative), format=fmt)
    pipeline = FeaturePipeline().fit(flows)
    assert len(pipeline.feature_names_) >= minimum
    assert "label" not in pipeline.feature_names_
    out = pipeline.transform(flows)
    assert out.shape == (flows.height, len(pipeline.feature_names_))
    assert np.isfinite(out.to_numpy()).all()


def test_both_polars_engines_give_the_same_features(
    train: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large tables run on the streaming engine, small ones in memory: the same values either way,
    non-finite and beyond-range inputs included."""
    from nadkit.features import pipeline as module

    fitted = FeaturePipeline().fit(train)
    table = make_flows(3_000, seed=5).with_columns(
        pl.when(pl.int_range(pl.len()) % 97 == 0)
        .then(pl.lit(float("nan")))
        .when(pl.int_range(pl.len()) % 89 == 0)
        .then(pl.lit(float("inf")))
        .otherwise(pl.col("duration") * 1e6)
        .alias("duration")
    )
    monkeypatch.setattr(module, "STREAMING_ROWS", 10**12)
    in_memory = fitted.transform(table)
    monkeypatch.setattr(module, "STREAMING_ROWS", 0)
    streamed = fitted.transform(table)
    batches = pl.concat(fitted.transform_batches(table, batch_rows=700))
    assert_frame_equal(in_memory, streamed, check_exact=True)
    assert_frame_equal(in_memory, batches, check_exact=True)


def test_counter_windows_leave_out_a_window_and_what_is_built_on_it(train: pl.DataFrame) -> None:
    every = FeaturePipeline(NO_SEGMENTS).fit(train)
    config = FeatureConfig(
        groups=NO_SEGMENTS.groups, vocabulary_min_count=2, counter_windows=("fast", "connections")
    )
    without_slow = FeaturePipeline(config).fit(train)
    left_out = set(every.feature_names_) - set(without_slow.feature_names_)
    # the four slow counters, their zero flags, and every ratio or difference that reads one
    assert {"cnt_src_slow", "cnt_serv_dst_slow_zero", "cnt_src_per_cnt_src_slow"} <= left_out
    assert all("_slow" in name for name in left_out)
    assert not any("_slow" in name for name in without_slow.feature_names_)
    assert set(without_slow.feature_names_) < set(every.feature_names_)
    assert not any(c.endswith("_slow") for c in without_slow.input_columns_)
    out = without_slow.transform(train)
    assert out.columns == without_slow.feature_names_ and np.isfinite(out.to_numpy()).all()
    # saved and loaded with its windows; a pipeline saved before they could be chosen keeps all
    saved = without_slow.to_dict()
    assert saved["config"]["counter_windows"] == ["fast", "connections"]
    assert FeaturePipeline.from_dict(saved).transform(train).equals(out)
    older = every.to_dict()
    del older["config"]["counter_windows"]
    assert FeaturePipeline.from_dict(older).config.counter_windows == ("fast", "slow", "connections")
    # a source that carries all twelve counters (NAD) loses the slow ones the same way
    given = every.augment(train)
    assert set(COUNTER_COLUMNS) <= set(given.columns)
    assert FeaturePipeline(config).fit(given).feature_names_ == without_slow.feature_names_
    with pytest.raises(ConfigError, match="unknown counter window 'hourly'"):
        FeatureConfig(counter_windows=("fast", "hourly"))
    with pytest.raises(ConfigError, match="counter_windows must be a list of windows, got 'fast'"):
        FeatureConfig.from_dict({"counter_windows": "fast"})


def test_unsupervised_detectors_are_trained_without_the_slow_window_counters() -> None:
    from nadkit.models import create
    from nadkit.training.fit import UNSUPERVISED_COUNTER_WINDOWS, default_features

    assert UNSUPERVISED_COUNTER_WINDOWS == ("fast", "connections")
    for name in ("ae", "vae", "iforest", "ecod", "lstm"):
        assert default_features(create(name)).counter_windows == ("fast", "connections")
    # the supervised network keeps the seed's twelve counters
    assert default_features(create("multitask")).counter_windows == ("fast", "slow", "connections")
    assert FeatureConfig().counter_windows == ("fast", "slow", "connections")
