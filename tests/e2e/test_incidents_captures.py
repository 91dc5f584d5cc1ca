"""Incidents on real captures, as a new user gets them: the shared benign and attack captures mixed
with `nadkit mix-captures`, `ae` trained on the benign ones, `nadkit detect --incidents` on the mix.
Each attack capture the model alerts on becomes at most three incidents, of its shape: sweeps and
port scans are scans, the floods (spoofed SYN, ISAKMP amplification) floods."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from nadkit.alerts.incidents import IncidentConfig, group_alerts

pytestmark = pytest.mark.slow

#: the shape each attack capture has, by its file name
SHAPES = {
    "masscan": "scan",
    "synscan": "scan",
    "icmp-portscan": "scan",
    "synflood": "flood",
    "amp.UDP": "flood",
}


def _nadkit(*args: str | Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "nadkit", *map(str, args)], capture_output=True, text=True, timeout=1200
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_each_attack_capture_is_a_few_incidents_of_its_shape(shared_data: Path, tmp_path: Path) -> None:
    captures = shared_data / "pcaps"
    mixed = tmp_path / "mixed.parquet"
    _nadkit("mix-captures", mixed, "--benign", captures / "benign", "--attack", captures / "attack")
    _nadkit("train", captures / "benign", tmp_path / "model", "--model", "ae")
    alerts, incidents = tmp_path / "alerts.jsonl", tmp_path / "incidents.jsonl"
    summary = json.loads(
        _nadkit(
            "detect", tmp_path / "model", mixed, "--out", alerts, "--incidents", incidents, "--json"
        ).stdout
    )
    assert summary["incidents"] == len(incidents.read_text().splitlines())
    records = pl.read_ndjson(alerts).with_columns(pl.col("time").str.to_datetime(time_zone="UTC"))
    grouped = group_alerts(records).alerts
    per_capture = grouped.group_by("label").agg(
        pl.col("incident_id").n_unique().alias("incidents"),
        pl.col("incident_kind").unique().alias("kinds"),
        pl.struct("dst", "dpt").n_unique().alias("targets"),
    )
    attacks = per_capture.filter(pl.col("label") != "normal")
    assert attacks.height >= 6, per_capture  # most attack captures raise alerts
    least = IncidentConfig().min_scan_targets
    for label, count, kinds, targets in attacks.iter_rows():
        assert count <= 3, (label, count, kinds)
        shape = next((s for name, s in SHAPES.items() if name in label), None)
        if shape == "scan" and targets < least:
            # a scan of which the model flags fewer targets than a scan needs is one host's alerts
            assert kinds == ["host"], (label, kinds, targets)
        elif shape is not None:
            assert kinds == [shape], (label, kinds)
    # far fewer incidents than alerts, and the floods are one incident each
    assert summary["incidents"] * 100 < summary["alerts"]
