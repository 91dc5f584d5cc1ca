"""`detect --engine spark`: the same rows, scores, alerts and explanations as local detection; how flows
are partitioned; clear errors on bad input or a missing runtime."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from nadkit.alerts.records import TOP_FEATURE
from nadkit.detection import spark as spark_engine
from nadkit.detection.detect import detect_file
from nadkit.detection.spark import detect_spark, parse_conf, partition_plan, record_lines
from nadkit.errors import FormatError, MissingDependencyError, NadkitError
from nadkit.features.pipeline import GROUP_NAMES, SEGMENT_GROUPS, FeatureConfig, FeaturePipeline
from nadkit.training.bundle import ModelBundle
from tests.scale.conftest import simulated_day

# columns computed from the score: equal within the float tolerance of two ONNX sessions
SCORED = ("score", "threshold_multiple", "score_percentile")


def _close(ours: pl.DataFrame, theirs: pl.DataFrame) -> None:
    for name in SCORED:
        if name in theirs.columns:
            np.testing.assert_allclose(
                ours[name].cast(pl.Float64).to_numpy(),
                theirs[name].cast(pl.Float64).to_numpy(),
                rtol=1e-5,
                atol=1e-6,
            )


def _compare(local: pl.DataFrame, distributed: pl.DataFrame) -> None:
    """Same flows, scores within 1e-5, same alerts, same explanations."""
    local, distributed = local.sort("row"), distributed.sort("row")
    assert distributed.columns == local.columns
    assert distributed["row"].to_list() == local["row"].to_list()
    _close(distributed, local)
    assert distributed["alert"].to_list() == local["alert"].to_list()
    rest = [c for c in local.columns if c not in (*SCORED, "top_features")]
    assert distributed.select(rest).equals(local.select(rest))
    for ours, theirs in zip(
        distributed["top_features"].to_list(), local["top_features"].to_list(), strict=True
    ):
        assert (ours is None) == (theirs is None)
        if ours is not None:
            assert [t["feature"] for t in ours] == [t["feature"] for t in theirs]
            assert [t["value"] for t in ours] == [t["value"] for t in theirs]


@pytest.mark.slow
def test_spark_detect_equals_local_detect(dataset: dict[str, Any], spark: Any, tmp_path: Path) -> None:
    bundle, data = dataset["counters_bundle"], dataset["counters"]
    local = detect_file(bundle, data, tmp_path / "local.parquet", alerts_only=False)
    # every flow, as a Parquet dataset directory, in more partitions than cores
    result = detect_spark(
        bundle, data, tmp_path / "spark.parquet", spark=spark, partitions=3, alerts_only=False
    )
    assert (tmp_path / "spark.parquet").is_dir()
    assert result.flows == local.flows == pl.scan_parquet(data).select(pl.len()).collect().item()
    assert result.alerts == local.alerts > 0
    assert result.written == result.flows
    assert result.plan == "by src, dst_subnet; time order"
    written = pl.read_parquet(tmp_path / "spark.parquet" / "*.parquet")
    _compare(pl.read_parquet(tmp_path / "local.parquet"), written)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local.parquet", "spark.parquet"]
    assert sorted(p.suffix for p in (tmp_path / "spark.parquet").iterdir()) == [".parquet"]


@pytest.mark.slow
def test_spark_groups_its_alerts_into_the_incidents_of_local_detection(
    dataset: dict[str, Any], spark: Any, tmp_path: Path
) -> None:
    bundle, data = dataset["counters_bundle"], dataset["counters"]
    local = detect_file(bundle, data, tmp_path / "local.jsonl", incidents=tmp_path / "local-incidents.jsonl")
    result = detect_spark(
        bundle, data, tmp_path / "spark.jsonl", spark=spark, incidents=tmp_path / "spark-incidents.jsonl"
    )
    assert local.incidents is not None and result.incidents is not None and local.incidents.height > 0
    columns = ["incident_id", "kind", "key", "alerts", "sources", "destinations"]
    assert (
        result.incidents.sort("incident_id")
        .select(columns)
        .equals(local.incidents.sort("incident_id").select(columns))
    )
    written = pl.read_ndjson(tmp_path / "spark-incidents.jsonl")
    assert sorted(written["incident_id"]) == sorted(local.incidents["incident_id"])


@pytest.mark.slow
def test_spark_alerts_as_json_lines_replace_a_file_only_with_force(
    dataset: dict[str, Any], spark: Any, tmp_path: Path
) -> None:
    bundle, data = dataset["counters_bundle"], dataset["counters"]
    local_jsonl = tmp_path / "local.jsonl"
    local = detect_file(bundle, data, local_jsonl)
    out = tmp_path / "alerts.jsonl"
    out.write_text("earlier alerts\n")
    with pytest.raises(NadkitError, match="already exists"):
        detect_spark(bundle, data, out, spark=spark)
    assert out.read_text() == "earlier alerts\n"
    result = detect_spark(bundle, data, out, spark=spark, partitions=2, overwrite=True)
    # one file holding the records local detection writes, in input order
    ours = [json.loads(line) for line in out.read_text().splitlines()]
    theirs = sorted(
        (json.loads(line) for line in local_jsonl.read_text().splitlines()), key=lambda r: r["row"]
    )
    assert [r["row"] for r in ours] == [r["row"] for r in theirs]
    assert result.alerts == result.written == len(ours) == local.alerts > 0
    for mine, other in zip(ours, theirs, strict=True):
        assert mine.keys() == other.keys()
        for name in SCORED:
            if other[name] is None:
                assert mine[name] is None
            else:
                assert mine[name] == pytest.approx(other[name], rel=1e-5)
        assert mine["top_features"] is not None
        assert [t["feature"] for t in mine["top_features"]] == [t["feature"] for t in other["top_features"]]
        skip = (*SCORED, "top_features")
        assert {k: v for k, v in mine.items() if k not in skip} == {
            k: v for k, v in other.items() if k not in skip
        }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alerts.jsonl", "local.jsonl"]


@pytest.mark.slow
def test_spark_detect_with_computed_counters_equals_local(
    dataset: dict[str, Any], spark: Any, tmp_path: Path
) -> None:
    """Counters computed from the flows look back over all traffic: time ranges with look-back
    context, then the segment partitions; still the same result, here as CSV with every flow."""
    bundle, data = dataset["computed_bundle"], dataset["computed"]
    assert ModelBundle.load(bundle).pipeline.counters_computed_
    local = detect_file(bundle, data, tmp_path / "local.parquet", alerts_only=False)
    out = tmp_path / "spark.csv"
    result = detect_spark(bundle, data, out, spark=spark, partitions=4, alerts_only=False)
    assert "counters on time ranges" in result.plan
    assert result.flows == result.written == local.flows
    assert result.alerts == local.alerts
    _compare(pl.read_parquet(tmp_path / "local.parquet"), _spark_parquet(bundle, data, spark, tmp_path))
    # the records of the local CSV writer, in input order
    detect_file(bundle, data, tmp_path / "local.csv", alerts_only=False)
    expected = pl.read_csv(tmp_path / "local.csv").sort("row")
    written = pl.read_csv(out)
    assert out.read_text().splitlines()[0] == (tmp_path / "local.csv").read_text().splitlines()[0]
    assert written["row"].to_list() == expected["row"].to_list()
    _close(written, expected)
    rest = [c for c in expected.columns if c not in SCORED]
    assert written.select(rest).equals(expected.select(rest))


def _spark_parquet(bundle: Path, data: Path, spark: Any, tmp_path: Path) -> pl.DataFrame:
    out = tmp_path / "every-flow.parquet"
    detect_spark(bundle, data, out, spark=spark, partitions=3, alerts_only=False)
    return pl.read_parquet(out / "*.parquet")


def test_partition_plans_keep_shared_state_together() -> None:
    frame = simulated_day(1, counters=True)
    columns = frame.columns
    segments = FeaturePipeline(FeatureConfig()).fit(frame)
    plan = partition_plan(segments, windowed=False, columns=columns)
    assert (plan.key, plan.single, plan.ordered, plan.counters) == (("src", "dst_subnet"), False, True, False)
    # windows of one source: only the part of the segment key the source determines
    assert partition_plan(segments, windowed=True, columns=columns).key == ("src",)
    assert partition_plan(segments, windowed=True, columns=columns, entity=("dst",)).key == ("dst_subnet",)
    assert partition_plan(segments, windowed=True, columns=columns, entity=("proto",)).single
    per_flow = FeaturePipeline(
        FeatureConfig(groups=tuple(g for g in GROUP_NAMES if g not in SEGMENT_GROUPS))
    ).fit(frame)
    assert partition_plan(per_flow, windowed=False, columns=columns) == spark_engine.PartitionPlan()
    assert partition_plan(per_flow, windowed=True, columns=columns).key == ("src",)
    # cadence features look back along one pair of hosts and service: a pair's flows stay together
    pairs = FeaturePipeline(
        FeatureConfig(groups=(*(g for g in GROUP_NAMES if g not in SEGMENT_GROUPS), "cadence"))
    ).fit(frame)
    plan = partition_plan(pairs, windowed=False, columns=columns)
    assert (plan.key, plan.ordered) == (("src", "dst", "proto", "dpt"), True)
    assert partition_plan(pairs, windowed=True, columns=columns).key == ("src",)
    assert partition_plan(pairs, windowed=True, columns=columns, entity=("app",)).single
    computed = FeaturePipeline(FeatureConfig()).fit(simulated_day(1, counters=False))
    assert partition_plan(computed, windowed=False, columns=columns).counters


def test_csv_records_with_line_breaks_stay_one_record_each() -> None:
    frame = pl.DataFrame(
        {
            "row": [1, 2, 3],
            "app": ["web", "multi\nline", None],
            "score": [1.0, 2.5, 3.0],
            "top_features": pl.Series([None, None, None], dtype=pl.List(TOP_FEATURE)),
        }
    )
    lines = record_lines(frame, "csv")
    assert len(lines) == 3
    rows = list(csv.reader(io.StringIO("\n".join(lines) + "\n")))
    assert [r[1] for r in rows] == ["web", "multi\nline", ""]
    assert [json.loads(line)["app"] for line in record_lines(frame, "jsonl")] == ["web", "multi\nline", None]


def test_input_that_is_not_parquet_is_refused_before_spark_starts(
    dataset: dict[str, Any], tmp_path: Path
) -> None:
    text = tmp_path / "flows.csv"
    simulated_day(1, counters=True).head(50).write_csv(text)
    with pytest.raises(FormatError, match="not a Parquet file"):
        detect_spark(dataset["counters_bundle"], text, tmp_path / "out.parquet")
    with pytest.raises(FormatError, match="no such file"):
        detect_spark(dataset["counters_bundle"], tmp_path / "missing", tmp_path / "out.parquet")
    with pytest.raises(NadkitError, match="unknown output type"):
        detect_spark(dataset["counters_bundle"], dataset["counters"], tmp_path / "out.txt")
    # the command line: one line on standard error, exit code 2
    command = [sys.executable, "-m", "nadkit", "detect", str(dataset["counters_bundle"]), str(text)]
    result = subprocess.run(
        [*command, "--out", str(tmp_path / "out.parquet"), "--engine", "spark"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "not a Parquet file" in lines[0], result.stderr
    assert not (tmp_path / "out.parquet").exists()


def test_missing_pyspark_or_java_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)  # makes `import pyspark` fail
    with pytest.raises(MissingDependencyError, match="needs pyspark"):
        spark_engine.check_requirements()
    monkeypatch.delitem(sys.modules, "pyspark")
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingDependencyError, match="Java 17 or newer"):
        spark_engine.check_requirements()
    old = tmp_path / "bin" / "java"
    old.parent.mkdir()
    old.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    old.chmod(0o755)
    with pytest.raises(MissingDependencyError, match="Java 11 found"):
        spark_engine.check_requirements()


def test_conf_options_are_key_value_pairs() -> None:
    assert parse_conf(["spark.executor.memory=8g", " a.b = c=d "]) == {
        "spark.executor.memory": "8g",
        "a.b": "c=d",
    }
    with pytest.raises(NadkitError, match="KEY=VALUE"):
        parse_conf(["spark.executor.memory"])


@pytest.mark.slow
def test_windowed_detector_on_spark_equals_local(dataset: dict[str, Any], spark: Any, tmp_path: Path) -> None:
    """A windowed detector reads the last flows of each source: partitions by source only."""
    from tests.scale.conftest import trained_bundle

    bundle = trained_bundle(simulated_day(0, counters=True), tmp_path / "gru", model="gru")
    data = dataset["counters"]
    local = detect_file(bundle, data, tmp_path / "local.parquet", alerts_only=False)
    result = detect_spark(
        bundle, data, tmp_path / "spark.parquet", spark=spark, partitions=3, alerts_only=False
    )
    assert result.plan == "by src; time order"
    assert result.alerts == local.alerts
    _compare(
        pl.read_parquet(tmp_path / "local.parquet"), pl.read_parquet(tmp_path / "spark.parquet" / "*.parquet")
    )


@pytest.mark.slow
def test_command_line_spark_engine(dataset: dict[str, Any], tmp_path: Path) -> None:
    if spark_engine._java_binary() is None:
        pytest.skip("no Java runtime found (the spark engine needs Java 17+: openjdk-17-jre-headless)")
    out = tmp_path / "alerts.csv"
    command = [
        sys.executable,
        "-m",
        "nadkit",
        "detect",
        str(dataset["counters_bundle"]),
        str(dataset["counters"]),
    ]
    command += ["--out", str(out), "--engine", "spark", "--master", "local[2]", "--partitions", "2", "--json"]
    result = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"}, timeout=600
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["engine"] == "spark" and summary["master"] == "local[2]" and summary["partitions"] == 2
    local = detect_file(dataset["counters_bundle"], dataset["counters"], tmp_path / "local.csv")
    assert summary["flows"] == local.flows and summary["alerts"] == local.alerts == summary["written"]
    assert len(out.read_text().splitlines()) == local.alerts + 1
    # Spark's own start-up chatter stays off standard error (the JVM may still note a module it loads)
    noise = [line for line in result.stderr.splitlines() if line.strip() and "incubator" not in line]
    assert noise == [], result.stderr


@pytest.mark.slow
def test_a_model_of_time_buckets_on_spark_equals_local(
    dataset: dict[str, Any], spark: Any, tmp_path: Path
) -> None:
    """A per-host bucket model: each host's flows share a partition, and every flow carries its
    bucket's score and start, as local detection gives them."""
    from nadkit.features.series import BucketConfig
    from nadkit.training.fit import fit

    config = {"window": 4, "epochs": 2, "batch_size": 256, "hidden": 8, "latent": 4, "device": "cpu"}
    result = fit(simulated_day(0, counters=True), model="lstm", config=config, buckets=BucketConfig(by="src"))
    bundle = result.save(tmp_path / "buckets").bundle
    data = dataset["counters"]
    local = detect_file(bundle, data, tmp_path / "local.parquet", alerts_only=False)
    distributed = detect_spark(
        bundle, data, tmp_path / "spark.parquet", spark=spark, partitions=3, alerts_only=False
    )
    assert distributed.plan == "by src; time order"
    assert distributed.alerts == local.alerts > 0
    ours = pl.read_parquet(tmp_path / "local.parquet")
    assert "bucket" in ours.columns
    _compare(ours, pl.read_parquet(tmp_path / "spark.parquet" / "*.parquet"))
