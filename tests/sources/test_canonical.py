"""The canonical flow table as CSV and JSON lines: detected like any format, read back as written,
extra columns (text too) kept."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from nadkit.simulate import SimulationConfig, simulate
from nadkit.sources import detect_format, load_flows


@pytest.fixture(scope="module")
def flows() -> pl.DataFrame:
    day = simulate(SimulationConfig(days=1, flows_per_day=2000, seed=4))
    return day.with_columns(pl.lit("web").alias("app_category"))


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_canonical_table_reads_back_as_written(flows: pl.DataFrame, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"flows{suffix}"
    if suffix == ".csv":
        flows.write_csv(path)
    else:
        flows.write_ndjson(path)
    assert detect_format(path) == "canonical"
    read, fmt = load_flows(path)
    assert fmt == "canonical" and read.height == flows.height
    assert read["time"].dtype == pl.Datetime("us", "UTC")
    assert read["app_category"].dtype == pl.String and set(read["app_category"]) == {"web"}
    for column in ("src", "dst", "spt", "dpt", "proto", "out_bytes", "label"):
        assert read[column].to_list() == flows[column].to_list(), column
    assert read["time"].to_list() == flows["time"].to_list()


def test_a_table_without_addresses_is_canonical_by_its_counters(tmp_path: Path) -> None:
    """What the UNSW-NB15, NSL-KDD and CIC-sample readers write has no src or dst: three counters
    of the flow make it canonical; a label and one counter do not."""
    path = tmp_path / "records.csv"
    path.write_text("proto,duration,out_bytes,in_bytes,label,state\ntcp,0.5,10,20,normal,FIN\n")
    assert detect_format(path) == "canonical"
    read, _ = load_flows(path)
    assert read["state"].dtype == pl.String and read["out_bytes"].to_list() == [10]
    loose = tmp_path / "loose.csv"
    loose.write_text("duration,label,state\n0.5,normal,FIN\n")
    with pytest.raises(Exception, match="unrecognised flow format"):
        detect_format(loose)


def test_other_headers_are_not_taken_for_canonical(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("StartTime,SrcAddr,DstAddr\n2021-01-01 00:00:00,10.0.0.1,10.0.0.2\n")
    with pytest.raises(Exception, match="unrecognised flow format"):
        detect_format(path)


@pytest.mark.slow
def test_the_cli_trains_and_detects_on_a_canonical_csv(flows: pl.DataFrame, tmp_path: Path) -> None:
    source = tmp_path / "flows.csv"
    flows.write_csv(source)
    nadkit = [sys.executable, "-m", "nadkit"]
    trained = subprocess.run(
        [*nadkit, "train", str(source), str(tmp_path / "m"), "--model", "iforest"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert trained.returncode == 0, trained.stderr
    out = tmp_path / "alerts.jsonl"
    detected = subprocess.run(
        [*nadkit, "detect", str(tmp_path / "m"), str(source), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert detected.returncode == 0, detected.stderr
    # the records nadkit writes are themselves a canonical table
    assert detect_format(out) == "canonical"
