"""Any CSV or Parquet file through a user's column mapping."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from nadkit.errors import ConfigError, FormatError, SchemaError
from nadkit.sources import detect_format, load_flows, read_flows

# an Argus-like export with its own names, a semicolon separator and mixed encodings
LINES = [
    "StartTime;SrcAddr;DstAddr;Sport;Dport;Proto;Dur;SrcBytes;DstBytes;Label;State;sTos",
    "2011-08-10 09:46:59.607825;147.32.84.165;8.8.8.8;1025;53;17;1.5;300;120;Background;CON;0",
    "2011-08-10T09:47:00Z;10.0.0.1;10.0.0.2;40000;0x0050;TCP;0;10;0;Botnet-Scan;FIN;2",
    "1312969621;10.0.0.1;fe80::1;;;icmp;0.25;84;84;normal;INT;",
]
MAPPING = (
    "time=StartTime,src=SrcAddr,dst=DstAddr,spt=Sport,dpt=Dport,proto=Proto,duration=Dur,"
    "out_bytes=SrcBytes,in_bytes=DstBytes,label=Label"
)


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_golden_mapped_csv(tmp_path: Path) -> None:
    path = _write(tmp_path / "flows.csv", LINES)
    frame, fmt = load_flows(path, mapping=MAPPING)
    assert fmt == "generic"
    canonical = ["time", "src", "dst", "spt", "dpt", "proto", "duration", "out_bytes", "in_bytes", "label"]
    assert frame.columns[:10] == canonical
    assert frame.schema["time"] == pl.Datetime("us", "UTC")
    assert frame["time"].to_list() == [
        datetime(2011, 8, 10, 9, 46, 59, 607825, tzinfo=UTC),
        datetime(2011, 8, 10, 9, 47, 0, tzinfo=UTC),
        datetime(2011, 8, 10, 9, 47, 1, tzinfo=UTC),  # epoch seconds
    ]
    assert frame["dst"].to_list() == ["8.8.8.8", "10.0.0.2", "fe80::1"]
    assert frame["spt"].to_list() == [1025, 40000, None]
    assert frame["dpt"].to_list() == [53, 80, None]
    assert frame["proto"].to_list() == ["udp", "tcp", "icmp"]
    assert frame["duration"].to_list() == [1.5, 0.0, 0.25]
    assert frame["out_bytes"].to_list() == [300, 10, 84]
    assert frame["label"].to_list() == ["normal", "Botnet-Scan", "normal"]
    assert frame["label_original"].to_list() == ["Background", "Botnet-Scan", "normal"]
    # unmapped columns: numbers kept as numbers, text as text, under snake_case names
    assert frame["s_tos"].to_list() == [0, 2, None]
    assert frame["state"].to_list() == ["CON", "FIN", "INT"]
    assert "start_time" not in frame.columns and "src_addr" not in frame.columns


def test_mapping_as_dict_and_case_insensitive_names(tmp_path: Path) -> None:
    path = _write(tmp_path / "flows.csv", LINES)
    frame, _ = load_flows(path, mapping={"src": "srcaddr", "dst": " DSTADDR ", "out_bytes": "SrcBytes"})
    assert frame["src"].to_list() == ["147.32.84.165", "10.0.0.1", "10.0.0.1"]
    assert frame["dst"][2] == "fe80::1"
    assert "time" not in frame.columns
    assert frame["dur"].to_list() == [1.5, 0.0, 0.25]  # unmapped numeric, kept


def test_epoch_milliseconds_binary_label_and_duration_unit(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "export.csv",
        [
            "ts,sa,da,ms,bytes,attack",
            "1600000000123,1.1.1.1,2.2.2.2,1500,10,0",
            "1600000001000,1.1.1.1,2.2.2.2,20,5,1",
        ],
    )
    frame, _ = load_flows(
        path, mapping="time=ts,src=sa,dst=da,duration=ms,out_bytes=bytes,label=attack", duration_unit="ms"
    )
    assert frame["time"].to_list() == [
        datetime(2020, 9, 13, 12, 26, 40, 123000, tzinfo=UTC),
        datetime(2020, 9, 13, 12, 26, 41, tzinfo=UTC),
    ]
    assert frame["duration"].to_list() == [1.5, 0.02]
    assert frame["label"].to_list() == ["normal", "attack"]


def test_time_format_option(tmp_path: Path) -> None:
    path = _write(tmp_path / "eu.csv", ["when,from,to", "03/07/2017 08:55:58,1.1.1.1,2.2.2.2"])
    frame, _ = load_flows(path, mapping="time=when,src=from,dst=to", time_format="%d/%m/%Y %H:%M:%S")
    assert frame["time"][0] == datetime(2017, 7, 3, 8, 55, 58, tzinfo=UTC)
    with pytest.raises(SchemaError) as caught:  # not a default layout: day/month order is not guessed
        load_flows(path, mapping="time=when,src=from,dst=to")
    assert (caught.value.column, caught.value.row) == ("time", 1)


def test_mapped_parquet(tmp_path: Path) -> None:
    table = pl.DataFrame(
        {
            "StartTime": [datetime(2021, 1, 1, 0, 0, 1)],
            "SrcAddr": ["10.0.0.1"],
            "Proto": pl.Series([17], dtype=pl.Int16),
            "TotBytes": pl.Series([1234], dtype=pl.UInt32),
            "Note": ["x"],
        }
    )
    path = tmp_path / "flows.parquet"
    table.write_parquet(path)
    frame, fmt = load_flows(path, mapping="time=StartTime,src=SrcAddr,proto=Proto,out_bytes=TotBytes")
    assert fmt == "generic"
    row = frame.row(0, named=True)
    assert row["time"] == datetime(2021, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert (row["proto"], row["out_bytes"], row["note"]) == ("udp", 1234, "x")
    assert frame.schema["out_bytes"] == pl.Int64


def test_gzip_and_lazy(tmp_path: Path) -> None:
    path = tmp_path / "flows.csv.gz"
    path.write_bytes(gzip.compress(("\n".join(LINES) + "\n").encode()))
    lazy, fmt = read_flows(path, mapping=MAPPING)
    assert isinstance(lazy, pl.LazyFrame) and fmt == "generic"
    frame, _ = load_flows(path, mapping=MAPPING)
    assert frame["proto"].to_list() == ["udp", "tcp", "icmp"]


def test_missing_mapped_column_names_column_and_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "flows.csv", LINES)
    with pytest.raises(SchemaError) as caught:
        load_flows(path, mapping="src=SrcAddr,dst=DestinationAddress")
    assert caught.value.column == "DestinationAddress"
    assert str(path) in str(caught.value)


def test_unknown_canonical_name_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "flows.csv", LINES)
    with pytest.raises(SchemaError, match="source_ip"):
        load_flows(path, mapping="source_ip=SrcAddr")


def test_bad_value_names_column_and_row(tmp_path: Path) -> None:
    lines = [*LINES[:2], LINES[2].replace(";10;0;", ";ten;0;"), LINES[3]]
    with pytest.raises(SchemaError) as caught:
        load_flows(_write(tmp_path / "bad.csv", lines), mapping=MAPPING)
    assert (caught.value.column, caught.value.row) == ("out_bytes", 2)


def test_without_mapping_generic_refuses(tmp_path: Path) -> None:
    path = _write(tmp_path / "flows.csv", LINES)
    with pytest.raises(FormatError, match="mapping"):
        load_flows(path, format="generic")
    with pytest.raises(ConfigError):
        load_flows(path, mapping=MAPPING, duration_unit="hours")


def test_generic_never_detects(tmp_path: Path) -> None:
    path = _write(tmp_path / "flows.csv", LINES)
    with pytest.raises(FormatError, match="--map"):
        detect_format(path)


def test_columns_named_like_canonical_ones_need_no_entry(tmp_path: Path) -> None:
    path = _write(tmp_path / "flows.csv", LINES)
    frame, _ = load_flows(path, mapping="src=SrcAddr,dst=DstAddr")
    # "Proto" and "Label" are read as the canonical proto and label, converted as if mapped
    assert frame["proto"].to_list() == ["udp", "tcp", "icmp"]
    assert frame["label"].to_list() == ["normal", "Botnet-Scan", "normal"]
    assert frame.schema["proto"] == pl.String
