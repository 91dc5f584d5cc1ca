"""The low-volume attacks `benchmarks/lowvolume.py` writes, metered by nfstream as a user's capture
is: one flow per session or probe, of the expected service, and segment facts that tell how each
burst went (a password-guessing run repeats one exchange; a slow scan's probes go mostly unanswered;
a beacon asks one server once a minute)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from benchmarks.lowvolume import write_http_beacon, write_slow_scan, write_ssh_bruteforce

from nadkit.features.segments import segment_features
from nadkit.sources import load_flows


def flows_of(capture: Path) -> pl.DataFrame:
    frame, fmt = load_flows(capture, format="pcap")
    assert fmt == "pcap"
    return frame.hstack(segment_features(frame)).sort("time")


def test_a_password_guessing_run_is_one_burst_of_alike_sessions(tmp_path: Path) -> None:
    flows = flows_of(write_ssh_bruteforce(tmp_path / "ssh.pcap", 12))
    assert flows.height == 12
    assert set(flows["dpt"]) == {22} and set(flows["app"]) == {"ssh"}
    assert flows["spt"].n_unique() == 12
    # the handshake, 13 payloads and the close: every session answered, each about the same size
    assert flows["in_pkts"].min() >= 8 and flows["seg_unanswered"].max() == 0.0
    assert flows["seg_flows"].max() >= 6
    assert flows.filter(pl.col("seg_flows") > 1)["seg_size_spread"].max() < 0.1


def test_a_slow_scan_probes_one_port_and_is_mostly_unanswered(tmp_path: Path) -> None:
    flows = flows_of(write_slow_scan(tmp_path / "scan.pcap", 40))
    assert flows.height == 40
    assert set(flows["dpt"]) == {80} and flows["dst"].n_unique() == 40 and flows["spt"].n_unique() == 1
    assert flows["out_pkts"].max() <= 2
    assert flows["seg_unique_dst"].max() >= 20
    assert flows["seg_unanswered"].min() > 0.5


def test_a_beacon_asks_one_server_once_a_minute(tmp_path: Path) -> None:
    flows = flows_of(write_http_beacon(tmp_path / "beacon.pcap", 5))
    assert flows.height == 5
    assert set(flows["app"]) == {"http"} and set(flows["server_name"]) == {"cdn-update-check.net"}
    gaps = flows["time"].diff().drop_nulls().dt.total_milliseconds() / 1000
    assert gaps.min() >= 54 and gaps.max() <= 66
    # a minute apart, beacons hardly form bursts: a pause of over 60 s ends a segment
    assert flows["seg_flows"].max() <= 3
