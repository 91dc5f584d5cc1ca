"""Argus flows for real: Argus (Debian's argus-server) meters the IoT-23 capture, ``ra`` (argus-client)
prints the flows in CTU-13's binetflow columns, and nadkit reads, featurizes and scores them."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from nadkit.features import FeatureConfig, FeaturePipeline
from nadkit.sources import argus_meter, detect_format, load_flows
from tests.conftest import shared_file
from tests.e2e.test_cli_inputs import assert_one_line_error, nadkit

SYN_SCAN = "pcaps/attack/synscan.pcap"
CAPTURE = "iot23/CTU-IoT-Malware-Capture-42-1/2019-01-10-14-34-38-192.168.1.197.pcap"
needs_argus = pytest.mark.skipif(
    shutil.which("argus") is None or shutil.which("ra") is None,
    reason="argus is not installed (Debian packages argus-server and argus-client; `make system-packages`)",
)


def binetflow(capture: Path, folder: Path) -> Path:
    """``capture`` metered by Argus (a status record an hour) and printed by ``ra -Z b`` in CTU-13's
    columns."""
    out = folder / "capture.binetflow"
    argus_meter.binetflow(capture, out, status_s=3600, fields=argus_meter.CTU13_FIELDS)
    return out


@pytest.fixture(scope="module")
def argus_flows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    capture = shared_file(CAPTURE)
    return binetflow(capture, tmp_path_factory.mktemp("argus"))


@needs_argus
def test_real_argus_flows_read_as_the_capture(argus_flows: Path) -> None:
    assert argus_flows.read_text().splitlines()[0].startswith("StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr")
    assert detect_format(argus_flows) == "argus"
    frame, _ = load_flows(argus_flows)
    assert frame.height > 1000
    # the capture's span (2019-01-10, 13:34 to 21:55 UTC), read as UTC
    assert frame["time"].min().strftime("%Y-%m-%d %H:%M") == "2019-01-10 13:34"
    assert frame["time"].max().strftime("%Y-%m-%d %H") == "2019-01-10 21"
    # the trojan's six downloads over HTTP (the conn.log's malicious flows) are there, each direction right
    downloads = frame.filter(pl.col("dst").is_in(["104.24.96.120", "104.24.97.120"]) & (pl.col("dpt") == 80))
    assert downloads.height == 6
    assert set(downloads["src"]) == {"192.168.1.197"}
    assert (downloads["in_bytes"] > downloads["out_bytes"]).all()  # files came back
    # ra -Z b prints a TCP flow's state as the flags each side sent; they become the OR of the flags
    tcp = frame.filter(pl.col("proto") == "tcp")
    assert tcp["state"].str.contains("_").all()
    assert tcp["tcp_flags"].null_count() == 0
    assert (tcp.filter(pl.col("state") == "S_")["tcp_flags"] == "......S.").all()
    udp = frame.filter(pl.col("proto") == "udp")
    assert udp["tcp_flags"].null_count() == udp.height
    assert set(udp["state"]) <= {"CON", "INT", "REQ", "RST", "ACC", "CLO", "URP"}


@needs_argus
def test_argus_state_and_direction_become_explained_features(argus_flows: Path) -> None:
    frame, _ = load_flows(argus_flows)
    pipeline = FeaturePipeline(FeatureConfig()).fit(frame)
    names = set(pipeline.feature_names_)
    assert {"state=CON", "state=S_", "dir=<->", "dir=->", "tcp_syn", "tcp_rst"} <= names
    out = pipeline.transform(frame)
    syn_only = frame["state"] == "S_"
    assert (out.filter(syn_only)["state=S_"] == 1).all()
    assert (out.filter(syn_only)["tcp_ack"] == 0).all()
    assert (out.filter(~syn_only)["state=S_"] == 0).all()


@needs_argus
def test_cli_trains_and_detects_on_argus_flows(argus_flows: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    trained = nadkit("train", argus_flows, model, "--model", "ae")
    assert trained.returncode == 0, trained.stderr
    assert json.loads((model / "pipeline.json").read_text())["source_format"] == "argus"
    alerts = tmp_path / "alerts.jsonl"
    # every flow explained (threshold 0), so that the states' words can be looked for
    detected = nadkit("detect", model, argus_flows, "--out", alerts, "--threshold", "0", "--top", "10")
    assert detected.returncode == 0, detected.stderr
    records = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert len(records) == load_flows(argus_flows)[0].height
    named = {
        item["feature"]: item["label"]
        for record in records
        for item in record["top_features"]
        if item["feature"].startswith(("state=", "dir="))
    }
    assert named, "no connection state or direction among the flows' contributions"
    for feature, label in named.items():
        assert label.startswith(("connection state is", "direction is")), (feature, label)


@needs_argus
def test_argus_meter_reads_a_capture_into_the_same_flows_as_nfstream(tmp_path: Path) -> None:
    capture = shared_file("pcaps/attack/synscan.pcap")
    by_argus, fmt = load_flows(capture, meter="argus", label="synscan")
    by_nfstream, _ = load_flows(capture)
    assert fmt == "pcap"
    assert by_argus.height == by_nfstream.height
    keys = ["src", "dst", "dpt", "proto"]
    assert by_argus.select(keys).sort(keys).equals(by_nfstream.select(keys).sort(keys))
    assert set(by_argus["label"]) == {"synscan"}
    # a SYN scan's probes: the SYN, then the answer's flags, by side
    assert by_argus["tcp_flags"].str.contains("S").all()
    # a compressed capture reads the same
    packed = tmp_path / "synscan.pcap.gz"
    packed.write_bytes(gzip.compress(capture.read_bytes()))
    assert load_flows(packed, meter="argus")[0].height == by_argus.height


@pytest.mark.slow
@needs_argus
def test_meter_is_chosen_on_the_command_line_and_remembered_by_the_bundle(tmp_path: Path) -> None:
    benign, attack = shared_file("pcaps/benign/instagram.pcap"), shared_file("pcaps/attack/synscan.pcap")
    model = tmp_path / "model"
    trained = nadkit("--meter", "argus", "train", benign, model, "--model", "iforest")
    assert trained.returncode == 0, trained.stderr
    assert json.loads((model / "pipeline.json").read_text())["source_format"] == "pcap_argus"
    alerts = tmp_path / "alerts.jsonl"
    assert nadkit("--meter", "argus", "detect", model, attack, "--out", alerts).returncode == 0
    assert alerts.exists()
    # the same capture through nfstream lacks what the model was fitted on: one line says which meter
    wrong = nadkit("detect", model, attack, "--out", tmp_path / "other.jsonl")
    assert_one_line_error(wrong, "metered by Argus", "--meter argus")
    assert not (tmp_path / "other.jsonl").exists()
    assert_one_line_error(nadkit("--meter", "tcpdump", "formats"), "meter must be one of nfstream, argus")


def test_argus_meter_without_argus_says_what_to_install(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "nadkit",
            "--meter",
            "argus",
            "inspect",
            shared_file("pcaps/attack/synscan.pcap"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": str(empty)},
        timeout=120,
    )
    assert result.returncode != 0
    assert "argus-server and argus-client" in result.stderr
    assert "Traceback" not in result.stderr
