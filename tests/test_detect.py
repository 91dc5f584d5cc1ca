"""`detect`: chunked scoring equals whole-input scoring; alerts carry explanations; outputs are safe."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from nadkit.alerts.records import output_kind
from nadkit.detection.detect import Scorer, detect_file, score_table
from nadkit.errors import ConfigError, NadkitError, SchemaError
from nadkit.features.counters import COUNTER_COLUMNS
from nadkit.features.data import detector_data
from nadkit.features.pipeline import FeatureConfig, FeaturePipeline
from nadkit.features.segments import SegmentConfig
from nadkit.models import REGISTRY
from nadkit.schema import NORMAL
from nadkit.simulate import COLUMNS, SimulationConfig, simulate_day
from nadkit.sources import ROW
from nadkit.training.bundle import ModelBundle
from nadkit.training.fit import holdout_threshold


def _day(index: int, flows: int = 5000) -> pl.DataFrame:
    config = SimulationConfig(days=2, flows_per_day=flows, seed=21, start=date(2020, 12, 3))
    day = simulate_day(config, index)
    # without the cnt_* columns the pipeline computes the counters itself: the stateful path
    return day.drop([c for c in day.columns if c.startswith("cnt_")] + ["day"], strict=False)


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, Path]:
    folder = tmp_path_factory.mktemp("detect")
    test = _day(1)
    path = folder / "day2.parquet"
    test.write_parquet(path)
    return _day(0), path


def _bundle(name: str, train_flows: pl.DataFrame) -> ModelBundle:
    normal = train_flows.filter(pl.col("label") == NORMAL)
    pipeline = FeaturePipeline(FeatureConfig(segments=SegmentConfig(gap_s=30.0))).fit(normal)
    detector = REGISTRY[name](REGISTRY[name].test_config())
    detector.fit(detector_data(pipeline, normal))
    holdout = detector_data(pipeline, train_flows)
    threshold, _ = holdout_threshold(detector.score(holdout), holdout.labels)
    return ModelBundle(pipeline=pipeline, detector=detector, threshold=threshold, engine="torch")


@pytest.fixture(scope="module")
def ae_bundle(days: tuple[pl.DataFrame, Path]) -> ModelBundle:
    return _bundle("ae", days[0])


@pytest.mark.parametrize("chunk_rows", [997, 2500])
def test_chunked_scores_equal_whole_input_scores(
    ae_bundle: ModelBundle, days: tuple[pl.DataFrame, Path], chunk_rows: int
) -> None:
    _, path = days
    whole = score_table(ae_bundle, path, chunk_rows=10**9)
    chunked = score_table(ae_bundle, path, chunk_rows=chunk_rows)
    assert chunked.frame["row"].to_list() == list(range(1, whole.frame.height + 1))
    np.testing.assert_allclose(chunked.scores, whole.scores, rtol=1e-6, atol=1e-9)
    # and both equal the bundle scoring the whole table in memory
    table = pl.read_parquet(path)
    np.testing.assert_allclose(whole.scores, ae_bundle.score(table), rtol=1e-5, atol=1e-6)


def test_windowed_model_scores_in_chunks_equal_one_pass(days: tuple[pl.DataFrame, Path]) -> None:
    windowed = [name for name, cls in sorted(REGISTRY.items()) if cls.input == "windows"]
    assert windowed, "no windowed detector registered"
    bundle = _bundle(windowed[0], days[0])
    _, path = days
    whole = score_table(bundle, path, chunk_rows=10**9)
    chunked = score_table(bundle, path, chunk_rows=1234)
    np.testing.assert_allclose(chunked.scores, whole.scores, rtol=1e-5, atol=1e-6)


def test_one_call_scoring_equals_push_then_flush(days: tuple[pl.DataFrame, Path]) -> None:
    windowed = [name for name, cls in sorted(REGISTRY.items()) if cls.input == "windows"]
    _, path = days
    table = pl.read_parquet(path).with_row_index(ROW).with_columns(pl.col(ROW).cast(pl.Int64))
    for bundle in (_bundle("ae", days[0]), _bundle(windowed[0], days[0])):
        stepwise = Scorer(bundle)
        parts = [stepwise.push(table).frame, stepwise.flush().frame]
        expected = pl.concat([p for p in parts if p.height]).sort("row")
        once = Scorer(bundle).score_all(table).frame.sort("row")
        assert once["row"].to_list() == expected["row"].to_list()
        np.testing.assert_allclose(
            once["score"].to_numpy(), expected["score"].to_numpy(), rtol=1e-5, atol=1e-6
        )
        assert once["alert"].to_list() == expected["alert"].to_list()


def test_alerts_carry_fields_scores_and_top_features(
    ae_bundle: ModelBundle, days: tuple[pl.DataFrame, Path], tmp_path: Path
) -> None:
    _, path = days
    out = tmp_path / "alerts.jsonl"
    result = detect_file(ae_bundle, path, out, chunk_rows=2000, top=3)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == result.alerts == result.written > 0
    assert result.flows == pl.read_parquet(path).height
    first = records[0]
    for key in (
        "row",
        "time",
        "src",
        "dst",
        "dpt",
        "proto",
        "score",
        "threshold",
        "alert",
        "class",
        "top_features",
    ):
        assert key in first
    assert all(r["alert"] and r["score"] >= r["threshold"] for r in records)
    top = first["top_features"]
    assert len(top) == 3
    assert top[0]["contribution"] >= top[1]["contribution"] >= top[2]["contribution"]
    assert all(item["feature"] in ae_bundle.pipeline.feature_names_ for item in top)
    # the raw value behind a feature is the flow's own value
    table = pl.read_parquet(path)
    flow = table.row(first["row"] - 1, named=True)
    assert flow["src"] == first["src"] and flow["dpt"] == first["dpt"]
    assert any(item["value"] is not None for item in top)


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_every_output_type_holds_every_scored_flow(
    ae_bundle: ModelBundle, days: tuple[pl.DataFrame, Path], tmp_path: Path, suffix: str
) -> None:
    _, path = days
    out = tmp_path / f"scores{suffix}"
    result = detect_file(ae_bundle, path, out, alerts_only=False, chunk_rows=3000)
    read = {".parquet": pl.read_parquet, ".csv": pl.read_csv, ".jsonl": pl.read_ndjson}[suffix](out)
    assert read.height == result.flows == result.written
    assert read["alert"].sum() == result.alerts
    assert sorted(read["row"].to_list()) == list(range(1, result.flows + 1))


def test_outputs_are_never_overwritten_or_left_half_written(
    ae_bundle: ModelBundle, days: tuple[pl.DataFrame, Path], tmp_path: Path
) -> None:
    _, path = days
    out = tmp_path / "alerts.parquet"
    detect_file(ae_bundle, path, out)
    before = out.read_bytes()
    with pytest.raises(NadkitError, match="already exists"):
        detect_file(ae_bundle, path, out)
    assert out.read_bytes() == before
    with pytest.raises(ConfigError, match="unknown output type"):
        output_kind(tmp_path / "alerts.xlsx")

    # a bad value far into the input: a one-line error naming the row, and no output file at all
    table = pl.read_parquet(path).with_columns(pl.col("time").cast(pl.String))
    bad = tmp_path / "bad.csv"
    table.write_csv(bad)
    lines = bad.read_text().splitlines()
    fields = lines[4001].split(",")
    fields[table.columns.index("dpt")] = "eighty"
    lines[4001] = ",".join(fields)
    bad.write_text("\n".join(lines) + "\n")
    target = tmp_path / "never.jsonl"
    with pytest.raises(SchemaError) as caught:
        flow_columns = [c for c in COLUMNS if c not in COUNTER_COLUMNS and c not in ("label_original", "day")]
        mapping = ",".join(f"{c}={c}" for c in flow_columns)
        detect_file(ae_bundle, bad, target, chunk_rows=1000, mapping=mapping)
    assert "dpt" in str(caught.value)
    assert "4001" in str(caught.value)
    assert not target.exists()
    assert not list(tmp_path.glob(".never*"))


def test_threshold_override_and_missing_threshold(ae_bundle: ModelBundle) -> None:
    assert Scorer(ae_bundle, threshold=1.5).threshold == 1.5
    bare = ModelBundle(
        pipeline=ae_bundle.pipeline, detector=ae_bundle.detector, threshold=None, engine="torch"
    )
    with pytest.raises(ConfigError, match="no threshold"):
        Scorer(bare)
