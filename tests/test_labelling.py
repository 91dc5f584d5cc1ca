"""Labels carried to flows from labelled flows of the same traffic: matched by addresses, ports and
protocol in either direction at the nearest start within a tolerance, attacks before normal, ICMP
without ports; unmatched flows dropped, called normal or kept; and `nadkit label-flows` on IoT-23's
capture and its labelled conn.log."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from nadkit.errors import ConfigError, SchemaError
from nadkit.sources.labelling import carry_labels
from tests.conftest import shared_file
from tests.e2e.test_cli_inputs import assert_one_line_error, nadkit

T0 = dt.datetime(2021, 1, 4, 9, tzinfo=dt.UTC)


def _flows(
    rows: list[tuple[float, str, int, str, int, str]], labels: list[str] | None = None
) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "time": [T0 + dt.timedelta(seconds=r[0]) for r in rows],
            "src": [r[1] for r in rows],
            "spt": [r[2] for r in rows],
            "dst": [r[3] for r in rows],
            "dpt": [r[4] for r in rows],
            "proto": [r[5] for r in rows],
            "out_bytes": list(range(len(rows))),
        }
    )
    if labels is not None:
        frame = frame.with_columns(
            pl.Series("label", labels), pl.Series("label_original", [f"was {x}" for x in labels])
        )
    return frame


def test_each_flow_takes_the_label_of_its_nearest_match_in_either_direction() -> None:
    flows = _flows(
        [
            (0.0, "10.0.0.1", 5000, "10.0.0.2", 80, "tcp"),  # forward, 0.5 s apart
            (10.0, "10.0.0.2", 53, "10.0.0.1", 6000, "udp"),  # reverse direction
            (20.0, "10.0.0.3", 7000, "10.0.0.4", 22, "tcp"),  # two candidates: the nearer one
            (30.0, "10.0.0.5", 0, "10.0.0.6", 0, "icmp"),  # ICMP: no ports to match
            (40.0, "10.0.0.7", 8000, "10.0.0.8", 443, "tcp"),  # 5 s off: no match
            (50.0, "10.0.0.9", 9000, "10.0.0.1", 80, "tcp"),  # both directions: the attack wins
        ]
    )
    labelled = _flows(
        [
            (0.5, "10.0.0.1", 5000, "10.0.0.2", 80, "TCP"),
            (10.2, "10.0.0.1", 6000, "10.0.0.2", 53, "udp"),
            (18.5, "10.0.0.3", 7000, "10.0.0.4", 22, "tcp"),
            (20.4, "10.0.0.3", 7000, "10.0.0.4", 22, "tcp"),
            (30.1, "10.0.0.5", 8, "10.0.0.6", 0, "icmp"),
            (45.0, "10.0.0.7", 8000, "10.0.0.8", 443, "tcp"),
            (50.0, "10.0.0.9", 9000, "10.0.0.1", 80, "tcp"),
            (50.1, "10.0.0.1", 80, "10.0.0.9", 9000, "tcp"),
        ],
        ["normal", "dns tunnel", "normal", "ssh guessing", "icmp sweep", "normal", "normal", "beacon"],
    )
    carried = carry_labels(flows, labelled, unmatched="keep")
    assert carried.frame["label"].to_list() == [
        "normal",
        "dns tunnel",
        "ssh guessing",
        "icmp sweep",
        None,
        "beacon",
    ]
    assert carried.frame["label_original"].to_list()[-1] == "was beacon"
    assert carried.frame["out_bytes"].to_list() == list(range(6)), "the flows keep their order and values"
    assert (carried.matched, carried.unmatched) == (5, 1)
    assert carry_labels(flows, labelled).frame.height == 5  # dropped by default
    assert carry_labels(flows, labelled, unmatched="normal").frame["label"][4] == "normal"
    assert carry_labels(flows, labelled, tolerance_s=6.0).frame.height == 6
    # another clock: the labelled flows' times moved back into line
    later = labelled.with_columns(pl.col("time") + dt.timedelta(hours=3))
    assert carry_labels(flows, later).matched == 0
    assert carry_labels(flows, later, shift_s=-3 * 3600).frame["label"].to_list() == (
        carry_labels(flows, labelled).frame["label"].to_list()
    )
    counts = carry_labels(flows, labelled, unmatched="keep").counts()
    assert counts["unlabelled"] == 1 and sum(counts.values()) == 6


def test_the_flows_own_labels_are_replaced_and_bad_requests_refused() -> None:
    flows = _flows([(0.0, "10.0.0.1", 1, "10.0.0.2", 2, "tcp")], ["stale"])
    labelled = _flows([(0.0, "10.0.0.1", 1, "10.0.0.2", 2, "tcp")], ["fresh"])
    assert carry_labels(flows, labelled).frame["label"].to_list() == ["fresh"]
    with pytest.raises(SchemaError, match="no label column"):
        carry_labels(flows, labelled.drop("label"))
    with pytest.raises(SchemaError, match="lack column"):
        carry_labels(flows.drop("src"), labelled)
    with pytest.raises(ConfigError, match="unmatched"):
        carry_labels(flows, labelled, unmatched="guess")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="tolerance"):
        carry_labels(flows, labelled, tolerance_s=-1)


def test_cli_labels_the_iot23_capture_from_its_conn_log(tmp_path: Path) -> None:
    capture = shared_file("iot23/CTU-IoT-Malware-Capture-42-1/2019-01-10-14-34-38-192.168.1.197.pcap")
    conn_log = capture.parent / "conn.log.labeled"
    out = tmp_path / "capture.parquet"
    result = nadkit("label-flows", capture, "--labels", conn_log, "-o", out, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    frame = pl.read_parquet(out)
    assert summary["written"] == frame.height == summary["matched"]
    assert summary["matched"] > 0.95 * summary["flows"]
    # the five malicious connections of the capture (HTTP file downloads)
    attacks = frame.filter(pl.col("label") != "normal")
    assert attacks.height == 5 and set(attacks["label_original"].str.starts_with("Malicious")) == {True}
    assert summary["labels"]["normal"] == frame.height - 5

    before = out.read_bytes()
    assert_one_line_error(nadkit("label-flows", capture, "--labels", conn_log, "-o", out), "already exists")
    assert out.read_bytes() == before
    unlabelled = tmp_path / "unlabelled.parquet"
    frame.drop("label", "label_original").write_parquet(unlabelled)
    assert_one_line_error(
        nadkit("label-flows", capture, "--labels", unlabelled, "-o", tmp_path / "x.parquet"),
        "no label column",
    )
    other = shared_file("iot23/CTU-Honeypot-Capture-4-1/conn.log.labeled")
    assert_one_line_error(
        nadkit("label-flows", capture, "--labels", other, "-o", tmp_path / "y.parquet"), "no flow of"
    )
    assert not (tmp_path / "x.parquet").exists() and not (tmp_path / "y.parquet").exists()
