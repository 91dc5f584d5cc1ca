"""Suricata EVE JSON: flow and netflow events read as flows, other events left out, bad values named
by their line, and flows scored end to end like the same flows in nadkit's own table.

No Suricata binary is available to the test suite, so the events are written here in the layout
Suricata's EVE output documents (``flow`` and ``netflow`` event types)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from nadkit.errors import SchemaError
from nadkit.sources import detect_format, load_flows

FLOW = {
    "timestamp": "2024-03-01T10:00:05.123456+0000",
    "flow_id": 1,
    "event_type": "flow",
    "src_ip": "10.0.0.5",
    "src_port": 51000,
    "dest_ip": "93.184.216.34",
    "dest_port": 443,
    "proto": "TCP",
    "app_proto": "tls",
    "flow": {
        "pkts_toserver": 12,
        "pkts_toclient": 10,
        "bytes_toserver": 1500,
        "bytes_toclient": 9000,
        "start": "2024-03-01T10:00:00.000000+0000",
        "end": "2024-03-01T10:00:04.500000+0000",
        "age": 4,
        "state": "closed",
        "reason": "timeout",
        "alerted": False,
    },
}
NETFLOW = {
    "timestamp": "2024-03-01T10:00:07.000000+0000",
    "flow_id": 3,
    "event_type": "netflow",
    "src_ip": "10.0.0.7",
    "src_port": 53000,
    "dest_ip": "8.8.8.8",
    "dest_port": 53,
    "proto": "UDP",
    "app_proto": "dns",
    "netflow": {
        "pkts": 1,
        "bytes": 74,
        "start": "2024-03-01T10:00:06.900000+0000",
        "end": "2024-03-01T10:00:06.900000+0000",
        "age": 0,
    },
}
ICMP = {
    "timestamp": "2024-03-01T10:00:08.000000+0000",
    "event_type": "flow",
    "src_ip": "fe80::1",
    "dest_ip": "ff02::1",
    "proto": "IPv6-ICMP",
    "icmp_type": 135,
    "icmp_code": 0,
    "app_proto": "failed",
    "flow": {
        "pkts_toserver": 1,
        "pkts_toclient": 0,
        "bytes_toserver": 86,
        "bytes_toclient": 0,
        "start": "2024-03-01T10:00:07.500000+0000",
        "end": "2024-03-01T10:00:07.500000+0000",
        "state": "new",
        "reason": "timeout",
        "alerted": True,
    },
}
ALERT = {
    "timestamp": "2024-03-01T10:00:06.000000+0000",
    "event_type": "alert",
    "src_ip": "10.0.0.5",
    "src_port": 51001,
    "dest_ip": "10.0.0.9",
    "dest_port": 80,
    "proto": "TCP",
    "alert": {"signature": "ET SCAN", "severity": 2},
}
STATS = {"timestamp": "2024-03-01T10:00:09.000000+0000", "event_type": "stats", "stats": {"uptime": 9}}


def write(path: Path, events: list[dict]) -> Path:
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    return path


def test_flow_and_netflow_events_become_flows(tmp_path: Path) -> None:
    path = write(tmp_path / "eve.json", [FLOW, ALERT, NETFLOW, STATS, ICMP])
    assert detect_format(path) == "eve"
    flows, _ = load_flows(path)
    assert flows.height == 3, "the alert and stats events are not flows"
    first = flows.row(0, named=True)
    assert first["time"] == datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
    assert (first["src"], first["spt"], first["dst"], first["dpt"]) == (
        "10.0.0.5",
        51000,
        "93.184.216.34",
        443,
    )
    assert (first["proto"], first["app"], first["duration"]) == ("tcp", "tls", 4.5)
    assert (first["out_bytes"], first["in_bytes"], first["out_pkts"], first["in_pkts"]) == (
        1500,
        9000,
        12,
        10,
    )
    assert (first["flow_state"], first["flow_reason"], first["suricata_alerted"]) == (
        "closed",
        "timeout",
        False,
    )
    netflow = flows.row(1, named=True)
    assert (netflow["out_bytes"], netflow["in_bytes"], netflow["out_pkts"], netflow["in_pkts"]) == (
        74,
        0,
        1,
        0,
    )
    icmp = flows.row(2, named=True)
    assert icmp["spt"] is None and icmp["icmp_type"] == 135 and icmp["app"] is None
    assert icmp["suricata_alerted"] is True


def test_a_file_without_flow_events_says_what_it_holds(tmp_path: Path) -> None:
    path = write(tmp_path / "alerts.json", [ALERT, ALERT, STATS])
    with pytest.raises(SchemaError, match=r"no flow or netflow events \(events found: alert 2, stats 1\)"):
        load_flows(path, format="eve")


def test_a_bad_value_is_named_with_its_line(tmp_path: Path) -> None:
    broken = {**FLOW, "dest_port": "https"}
    path = write(tmp_path / "eve.json", [ALERT, FLOW, broken])
    with pytest.raises(SchemaError, match="row 3") as error:
        load_flows(path)
    assert error.value.column == "dest_port"


def test_other_json_lines_are_not_taken_for_eve(tmp_path: Path) -> None:
    zeek = {
        "ts": 1.5,
        "uid": "C1",
        "id.orig_h": "10.0.0.1",
        "id.orig_p": 1,
        "id.resp_h": "10.0.0.2",
        "id.resp_p": 80,
        "proto": "tcp",
        "conn_state": "SF",
        "orig_bytes": 1,
        "orig_pkts": 1,
        "resp_pkts": 1,
    }
    assert detect_format(write(tmp_path / "conn.json", [zeek])) == "zeek"
    canonical = {
        "time": "2024-03-01T10:00:00Z",
        "src": "10.0.0.1",
        "dst": "10.0.0.2",
        "dpt": 80,
        "proto": "tcp",
        "duration": 1.0,
        "out_bytes": 10,
        "in_bytes": 20,
        "out_pkts": 1,
        "in_pkts": 1,
    }
    assert detect_format(write(tmp_path / "flows.jsonl", [canonical])) != "eve"


def _as_eve(flows: pl.DataFrame) -> list[dict]:
    events = []
    for row in flows.iter_rows(named=True):
        start = row["time"]
        end = start.timestamp() + float(row["duration"] or 0.0)
        events.append(
            {
                "timestamp": datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+0000"),
                "event_type": "flow",
                "src_ip": row["src"],
                "src_port": row["spt"],
                "dest_ip": row["dst"],
                "dest_port": row["dpt"],
                "proto": str(row["proto"]).upper(),
                "app_proto": row.get("app"),
                "flow": {
                    "pkts_toserver": row["out_pkts"],
                    "pkts_toclient": row["in_pkts"],
                    "bytes_toserver": row["out_bytes"],
                    "bytes_toclient": row["in_bytes"],
                    "start": start.strftime("%Y-%m-%dT%H:%M:%S.%f+0000"),
                    "end": datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+0000"),
                },
            }
        )
    return events


def test_detect_scores_eve_flows_as_the_same_flows_in_nadkits_table(tmp_path: Path) -> None:
    from nadkit.simulate import SimulationConfig, simulate
    from nadkit.training.fit import fit

    days = simulate(SimulationConfig(days=2, flows_per_day=1500, seed=4))
    core = [
        "time",
        "src",
        "dst",
        "spt",
        "dpt",
        "proto",
        "app",
        "duration",
        "out_bytes",
        "in_bytes",
        "out_pkts",
        "in_pkts",
    ]
    days = days.select(core).with_columns(pl.col("time").dt.truncate("1us"))
    first_day = days["time"].dt.day().min()
    fit(days.filter(pl.col("time").dt.day() == first_day), model="iforest").save(
        tmp_path / "model", onnx=False
    )
    later = days.filter(pl.col("time").dt.day() != first_day).head(800)
    later.write_csv(tmp_path / "flows.csv")
    write(tmp_path / "eve.json", [ALERT, *_as_eve(later)])
    scores = {}
    for name in ("flows.csv", "eve.json"):
        out = tmp_path / f"{name}.jsonl"
        command = [sys.executable, "-m", "nadkit", "detect", str(tmp_path / "model"), str(tmp_path / name)]
        done = subprocess.run(
            [*command, "-o", str(out), "--all"], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        scores[name] = pl.read_ndjson(out, infer_schema_length=None).sort("row")["score"].to_numpy()
    assert len(scores["eve.json"]) == 800
    np.testing.assert_allclose(scores["eve.json"], scores["flows.csv"], rtol=1e-5, atol=1e-9)
