"""`nadkit simulate`, `featurize` and `split` run for real."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from tests.e2e.test_cli_inputs import assert_one_line_error, nadkit


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "days"
    result = nadkit("simulate", out, "--days", "2", "--flows-per-day", "4000", "--seed", "5")
    assert result.returncode == 0, result.stderr
    return out


def test_simulate_refuses_to_overwrite(simulated: Path) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in simulated.iterdir()}
    result = nadkit("simulate", simulated, "--days", "2", "--flows-per-day", "4000")
    assert_one_line_error(result, str(simulated))
    assert {p.name: p.stat().st_mtime_ns for p in simulated.iterdir()} == before


@pytest.mark.slow
def test_featurize_and_reuse_pipeline(simulated: Path, tmp_path: Path) -> None:
    first = tmp_path / "f.parquet"
    result = nadkit("featurize", simulated, first)
    assert result.returncode == 0, result.stderr
    table = pl.read_parquet(first)
    rows = sum(pl.read_csv(p).height for p in simulated.glob("*.csv"))
    assert table.height == rows
    assert table.columns[:3] == ["time", "src", "dst"]
    assert "ip_binary_match" in table.columns and "seg_unique_dpt" in table.columns
    pipeline = tmp_path / "f.pipeline.json"
    assert json.loads(pipeline.read_text())

    again = tmp_path / "g.parquet"
    reused = nadkit("featurize", simulated, again, "--pipeline", pipeline)
    assert reused.returncode == 0, reused.stderr
    assert pl.read_parquet(again).equals(table)
    assert not (tmp_path / "g.pipeline.json").exists()

    assert_one_line_error(nadkit("featurize", simulated, first), "already exists")


def test_featurize_rejects_tampered_pipeline(simulated: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "something else"')
    out = tmp_path / "x.parquet"
    assert_one_line_error(nadkit("featurize", simulated, out, "--pipeline", broken), str(broken))
    assert not out.exists()


def test_split_group_and_day(simulated: Path, tmp_path: Path) -> None:
    out = tmp_path / "split"
    result = nadkit("split", simulated, "--out", out, "--validation", "0.3", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["groups_on_both_sides"] == 0
    assert abs(report["validation_share"] - 0.3) < 0.05
    train = pl.read_parquet(out / "train.parquet")
    validation = pl.read_parquet(out / "validation.parquet")
    assert train.height == report["rows"]["train"]
    assert validation.height == report["rows"]["validation"]

    by_day = nadkit("split", simulated, "--method", "day", "--json")
    assert by_day.returncode == 0, by_day.stderr
    day_report = json.loads(by_day.stdout)
    assert day_report["method"] == "day"
    assert day_report["rows"]["train"] > 0 and day_report["rows"]["validation"] > 0


def test_split_needs_time_for_day_split(shared_data: Path) -> None:
    kdd = shared_data / "nsl_kdd" / "KDDTrain+_20Percent.txt"
    assert_one_line_error(nadkit("split", kdd, "--method", "day"), "time")
