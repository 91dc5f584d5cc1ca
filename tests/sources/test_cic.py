"""CICFlowMeter CSV (CIC-IDS2017 and CSE-CIC-IDS2018 layouts) into the canonical table."""

from __future__ import annotations

import gzip
import math
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from nadkit.errors import SchemaError
from nadkit.sources import detect_format, load_flows, read_flows
from tests.conftest import shared_file

# 2017 day-file layout: leading spaces, a duplicated header name, addresses and a Timestamp
HEADER_2017 = (
    "Flow ID, Source IP, Source Port, Destination IP, Destination Port, Protocol, Timestamp,"
    " Flow Duration, Total Fwd Packets, Total Backward Packets,Total Length of Fwd Packets,"
    " Total Length of Bwd Packets,Flow Bytes/s, Flow Packets/s, Fwd Header Length, Fwd Header Length,"
    " Label"
)
ROWS_2017 = [
    "104.16.207.165-192.168.10.5-443-54865-6,104.16.207.165,443,192.168.10.5,54865,6,3/7/2017 8:55,"
    "3,2,0,12,0,4000000,666666.6667,40,40,BENIGN",
    "192.168.10.8-192.168.10.3-51000-80-6,192.168.10.8,51000,192.168.10.3,80,6,03/07/2017 08:55:58,"
    "1500000,5,4,600,1200,1200,6,100,96,DoS Hulk",
    "172.16.0.1-192.168.10.50-40000-22-6,172.16.0.1,40000,192.168.10.50,22,6,7/7/2017 15:30,"
    "0,1,1,0,0,Infinity,Infinity,20,20,SSH-Patator",
    "192.168.10.9-8.8.8.8-123-53-17,192.168.10.9,123,8.8.8.8,53,17,7/7/2017 15:30,"
    "-1,1,0,0,0,NaN,-Infinity,8,8,Web Attack \x96 Brute Force",
]
EMPTY_ROW_2017 = "," * 16

HEADER_2018 = (
    "Dst Port,Protocol,Timestamp,Flow Duration,Tot Fwd Pkts,Tot Bwd Pkts,TotLen Fwd Pkts,TotLen Bwd Pkts,"
    "Flow Byts/s,Flow IAT Mean,Label"
)
ROWS_2018 = [
    "443,6,14/02/2018 08:31:01,112641719,3,0,0,0,0,56320859.5,Benign",
    HEADER_2018,  # the public 2018 day files repeat their header inside the data
    "21,6,14/02/2018 10:15:00,1000,1,1,0,0,0,1000.0,FTP-BruteForce",
    "0,0,14/02/2018 10:16:00,2000000,2,0,0,0,0,1000000.0,Benign",
]


def _write(path: Path, header: str, rows: list[str]) -> Path:
    # latin-1 keeps the 0x96 dash byte of the original files (not valid UTF-8)
    path.write_bytes(("\n".join([header, *rows]) + "\n").encode("latin-1"))
    return path


def test_golden_cic_2017_rows(tmp_path: Path) -> None:
    path = _write(tmp_path / "Monday-WorkingHours.pcap_ISCX.csv", HEADER_2017, [*ROWS_2017, EMPTY_ROW_2017])
    assert detect_format(path) == "cic"
    frame, fmt = load_flows(path)
    assert fmt == "cic"
    assert frame.height == 4  # the all-empty row is skipped
    assert frame.columns[:7] == ["time", "src", "dst", "spt", "dpt", "proto", "duration"]
    assert frame.schema["time"] == pl.Datetime("us", "UTC")
    assert frame.schema["spt"] == pl.Int64 and frame.schema["out_bytes"] == pl.Int64
    assert frame["time"].to_list() == [
        datetime(2017, 7, 3, 8, 55, tzinfo=UTC),
        datetime(2017, 7, 3, 8, 55, 58, tzinfo=UTC),
        datetime(2017, 7, 7, 15, 30, tzinfo=UTC),
        datetime(2017, 7, 7, 15, 30, tzinfo=UTC),
    ]
    first = frame.row(0, named=True)
    assert (first["src"], first["spt"], first["dst"], first["dpt"]) == (
        "104.16.207.165",
        443,
        "192.168.10.5",
        54865,
    )
    assert frame["proto"].to_list() == ["tcp", "tcp", "tcp", "udp"]
    # microseconds -> seconds; a negative duration (CICFlowMeter artefact) becomes null
    assert frame["duration"].to_list() == [3e-6, 1.5, 0.0, None]
    assert frame["out_pkts"].to_list() == [2, 5, 1, 1]
    assert frame["in_pkts"].to_list() == [0, 4, 1, 0]
    assert frame["out_bytes"].to_list() == [12, 600, 0, 0]
    assert frame["in_bytes"].to_list() == [0, 1200, 0, 0]
    assert frame["label"].to_list() == ["normal", "DoS Hulk", "SSH-Patator", "Web Attack - Brute Force"]
    assert frame["label_original"].to_list()[0] == "BENIGN"
    # statistics kept as floats; Infinity stays inf, NaN is null
    assert frame.schema["flow_bytes_s"] == pl.Float64
    assert frame["flow_bytes_s"].to_list()[:3] == [4e6, 1200.0, math.inf]
    assert frame["flow_bytes_s"][3] is None
    assert frame["flow_packets_s"][3] == -math.inf
    assert frame["fwd_header_length"].to_list() == [40.0, 100.0, 20.0, 8.0]
    # the repeated header name gets the name pandas-saved copies of these files use
    assert frame["fwd_header_length_1"].to_list() == [40.0, 96.0, 20.0, 8.0]
    assert "flow_id" not in frame.columns and "timestamp" not in frame.columns
    assert not any(c.startswith("__") for c in frame.columns)


def test_golden_cic_2018_rows_with_repeated_header(tmp_path: Path) -> None:
    path = _write(tmp_path / "Wednesday-14-02-2018.csv", HEADER_2018, ROWS_2018)
    assert detect_format(path) == "cic"
    frame, _ = load_flows(path)
    assert frame.height == 3
    assert "spt" not in frame.columns and "src" not in frame.columns
    assert frame["dpt"].to_list() == [443, 21, 0]
    assert frame["proto"].to_list() == ["tcp", "tcp", "hopopt"]
    assert frame["time"].to_list() == [
        datetime(2018, 2, 14, 8, 31, 1, tzinfo=UTC),
        datetime(2018, 2, 14, 10, 15, tzinfo=UTC),
        datetime(2018, 2, 14, 10, 16, tzinfo=UTC),
    ]
    assert frame["duration"].to_list() == [112.641719, 0.001, 2.0]
    assert frame["out_pkts"].to_list() == [3, 1, 2]
    assert frame["label"].to_list() == ["normal", "FTP-BruteForce", "normal"]
    assert frame["flow_iat_mean"].to_list() == [56320859.5, 1000.0, 1000000.0]


def test_bad_value_row_counts_file_rows(tmp_path: Path) -> None:
    rows = [*ROWS_2018, "80,6,14/02/2018 10:17:00,5,1,1,0,0,0,1x5,Benign"]
    path = _write(tmp_path / "bad.csv", HEADER_2018, rows)
    with pytest.raises(SchemaError) as caught:
        load_flows(path)
    # the repeated header (data row 2) is skipped, yet the row reported is the file's fifth data row
    assert (caught.value.column, caught.value.row) == ("flow_iat_mean", 5)
    assert str(path) in str(caught.value)


def test_bad_canonical_value_names_column_and_row(tmp_path: Path) -> None:
    rows = list(ROWS_2017)
    rows[1] = rows[1].replace(",1500000,5,", ",1500000,five,")
    with pytest.raises(SchemaError) as caught:
        load_flows(_write(tmp_path / "bad.csv", HEADER_2017, rows))
    assert (caught.value.column, caught.value.row) == ("out_pkts", 2)


def test_bad_timestamp_names_row(tmp_path: Path) -> None:
    rows = list(ROWS_2017)
    rows[2] = rows[2].replace("7/7/2017 15:30", "7/31/2017 15:30")  # month 31: not day-first
    with pytest.raises(SchemaError) as caught:
        load_flows(_write(tmp_path / "bad.csv", HEADER_2017, rows))
    assert (caught.value.column, caught.value.row) == ("time", 3)


def test_missing_packet_column_is_named(tmp_path: Path) -> None:
    header = HEADER_2018.replace("Tot Fwd Pkts", "Fwd Pkts Tot")
    path = _write(tmp_path / "odd.csv", header, ROWS_2018[:1])
    with pytest.raises(SchemaError) as caught:
        load_flows(path, format="cic")
    assert caught.value.column == "Total Fwd Packets"


def test_gzip_and_lazy(tmp_path: Path) -> None:
    path = tmp_path / "day.csv.gz"
    path.write_bytes(gzip.compress(("\n".join([HEADER_2018, *ROWS_2018]) + "\n").encode()))
    assert detect_format(path) == "cic"
    lazy, fmt = read_flows(path)
    assert isinstance(lazy, pl.LazyFrame) and fmt == "cic"
    frame, _ = load_flows(path)
    assert frame["dpt"].to_list() == [443, 21, 0]


def test_unlabelled_cicflowmeter_output(tmp_path: Path) -> None:
    rows = [ROWS_2018[0].replace("Benign", "NeedManualLabel")]
    frame, _ = load_flows(_write(tmp_path / "live.csv", HEADER_2018, rows))
    assert frame["label"].to_list() == [None]


def test_real_cicids2017_sample() -> None:
    path = shared_file("cicids2017/CICIDS2017_sample_km.csv")
    assert detect_format(path) == "cic"
    frame, _ = load_flows(path)
    assert frame.height == 6311
    counts = dict(frame["label"].value_counts().iter_rows())
    assert counts == {
        "normal": 227,
        "WebAttack": 2180,
        "Bot": 1966,
        "DoS": 952,
        "BruteForce": 553,
        "PortScan": 397,
        "Infiltration": 36,
    }
    # no addresses, ports or times in this sample: the columns are absent, not empty
    assert not {"time", "src", "dst", "spt", "dpt", "proto"} & set(frame.columns)
    infinite = frame.select(pl.sum_horizontal(pl.col(pl.Float64).is_infinite().sum())).item()
    assert infinite == 20
    assert frame.width == 79
    assert frame["duration"][0] == pytest.approx(191e-6)
