"""`nadkit mix-captures --columns cicflowmeter`: flows metered from the shared captures under the column
names and units of the shared CIC-IDS2017 files, read back by nadkit as the same flows."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from nadkit.sources import load_flows
from tests.conftest import shared_file
from tests.e2e.test_cli_inputs import nadkit


@pytest.mark.slow
def test_captures_written_with_cicflowmeter_names_read_back(tmp_path: Path) -> None:
    captures = shared_file("pcaps")
    cic = shared_file("cicids2017/CICIDS2017_improved_rnd5000_timesorted.csv")
    inputs = (
        "--benign",
        captures / "benign" / "ssh.pcap",
        "--attack",
        captures / "attack" / "icmp-portscan.pcap",
    )
    ours = nadkit("mix-captures", "-o", tmp_path / "flows.parquet", *inputs)
    theirs = nadkit(
        "mix-captures", "-o", tmp_path / "cic.csv", *inputs, "--columns", "cicflowmeter", "--json"
    )
    assert ours.returncode == 0 and theirs.returncode == 0, ours.stderr + theirs.stderr
    assert json.loads(theirs.stdout)["columns"] == "cicflowmeter"

    written = pl.read_csv(tmp_path / "cic.csv", infer_schema_length=0)
    cic_names = set(pl.read_csv(cic, n_rows=1, infer_schema_length=0).columns)
    for name in ("Src IP", "Dst Port", "Protocol", "Timestamp", "Flow Duration", "Total Fwd Packet",
                 "Total Bwd packets", "Total Length of Fwd Packet", "Fwd IAT Mean", "Flow Bytes/s",
                 "Packet Length Max", "SYN Flag Count", "Label"):  # fmt: skip
        assert name in written.columns and name in cic_names, name
    flows = pl.read_parquet(tmp_path / "flows.parquet")
    micros = written["Flow Duration"].cast(pl.Float64)
    assert (micros - flows["duration"] * 1e6).abs().max() < 1.0, "durations in microseconds"
    iat = written["Fwd IAT Max"].cast(pl.Float64)
    assert (iat - flows["src2dst_max_piat_ms"] * 1000).abs().max() < 1e-6, "IATs in microseconds"
    assert set(written["Protocol"].cast(pl.Int64)) <= {1, 6, 17}
    assert set(written["Label"]) == {"BENIGN", "icmp-portscan"}

    check = nadkit("inspect", tmp_path / "cic.csv", "--json")
    assert json.loads(check.stdout)["format"] == "cic"
    back, fmt = load_flows(tmp_path / "cic.csv")
    assert fmt == "cic" and back.height == flows.height
    for column in ("time", "src", "dst", "spt", "dpt", "proto", "app", "out_bytes", "in_pkts", "label",
                   "app_category"):  # fmt: skip
        assert back[column].to_list() == flows[column].to_list(), column
    assert (back["duration"] - flows["duration"]).abs().max() < 1e-6


def test_cicflowmeter_names_are_csv_only(tmp_path: Path) -> None:
    captures = shared_file("pcaps")
    benign = captures / "benign" / "ssh.pcap"
    result = nadkit(
        "mix-captures", "-o", tmp_path / "cic.parquet", "--benign", benign, "--columns", "cicflowmeter"
    )
    assert result.returncode == 2 and "writes CSV" in result.stderr
    assert not (tmp_path / "cic.parquet").exists()
