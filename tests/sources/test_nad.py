from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from nadkit.errors import NadkitError, SchemaError
from nadkit.sources import detect_format, load_flows, read_flows

HEADER = (
    "time,src,dst,spt,dpt,duration,out (bytes),in (bytes),proto,app,cnt_dst,cnt_src,cnt_serv_src,"
    "cnt_serv_dst,cnt_dst_slow,cnt_src_slow,cnt_serv_src_slow,cnt_serv_dst_slow,cnt_dst_conn,"
    "cnt_src_conn,cnt_serv_src_conn,cnt_serv_dst_conn,label"
)
ROWS = [
    "2020-12-03 00:00:01,192.168.1.5,10.0.0.255,0,0,0,84,0,1,icmp,3,1,1,1,5,2,2,2,7,3,3,3,DDOS-smurf",
    "2020-12-03 00:00:02,192.168.1.6,8.8.8.8,51514,53,0.02,70,120,17,domain,1,1,1,1,2,1,1,1,2,1,1,1,Normal",
    "2020-12-03 13:45:59,10.1.2.3,10.1.2.77,40000,445,1.5,0,0,6,microsoft-ds,1,9,9,1,1,40,40,1,1,60,60,1,"
    "Probing-IP sweep",
    "2020-12-03 23:59:59,fe80::1,ff02::fb,5353,5353,0.001,300,0,17,others,1,1,1,1,1,1,1,1,1,1,1,1,Normal",
]


def _write(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_golden_nad_rows(tmp_path: Path) -> None:
    path = _write(tmp_path / "day.csv", ROWS)
    assert detect_format(path) == "nad"
    frame, fmt = load_flows(path)
    assert fmt == "nad"
    assert frame.height == 4
    assert frame.schema["time"] == pl.Datetime("us", "UTC")
    first = frame.row(0, named=True)
    assert first["time"] == datetime(2020, 12, 3, 0, 0, 1, tzinfo=UTC)
    assert (first["src"], first["dst"], first["spt"], first["dpt"]) == ("192.168.1.5", "10.0.0.255", 0, 0)
    assert first["proto"] == "icmp"
    assert (first["out_bytes"], first["in_bytes"]) == (84, 0)
    assert (first["cnt_dst"], first["cnt_dst_slow"], first["cnt_dst_conn"]) == (3, 5, 7)
    assert first["label"] == "DDOS-smurf"
    assert frame["label"].to_list() == ["DDOS-smurf", "normal", "Probing-IP sweep", "normal"]
    assert frame["label_original"].to_list()[1] == "Normal"
    assert frame["proto"].to_list() == ["icmp", "udp", "tcp", "udp"]
    assert frame["app"].to_list() == ["icmp", "domain", "microsoft-ds", "others"]
    assert frame["duration"].to_list() == [0.0, 0.02, 1.5, 0.001]
    assert frame["src"][3] == "fe80::1"
    assert frame.columns[:4] == ["time", "src", "dst", "spt"]
    assert "cnt_serv_dst_conn" in frame.columns


def test_unlabelled_test_day(tmp_path: Path) -> None:
    header = HEADER.removesuffix(",label")
    rows = [row.rsplit(",", 1)[0] for row in ROWS]
    frame, _ = load_flows(_write(tmp_path / "test.csv", rows, header))
    assert "label" not in frame.columns
    assert frame.height == 4


def test_gzip_and_lazy(tmp_path: Path) -> None:
    path = tmp_path / "day.csv.gz"
    path.write_bytes(gzip.compress(("\n".join([HEADER, *ROWS]) + "\n").encode()))
    lazy, fmt = read_flows(path)
    assert isinstance(lazy, pl.LazyFrame)
    assert fmt == "nad"
    frame, _ = load_flows(path)
    assert frame.height == 4


def test_directory_of_days(tmp_path: Path) -> None:
    _write(tmp_path / "2020-12-03.csv", ROWS[:2])
    _write(tmp_path / "2020-12-10.csv", ROWS[2:])
    (tmp_path / "README.md").write_text("notes")
    frame, fmt = load_flows(tmp_path)
    assert (frame.height, fmt) == (4, "nad")


def test_a_folder_of_two_formats_is_refused_with_the_way_to_read_one(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    day = _write(tmp_path / "a" / "day.csv", ROWS[:2])
    load_flows(day)[0].write_parquet(tmp_path / "b" / "flows.parquet")
    with pytest.raises(NadkitError, match="differs from") as caught:
        load_flows(tmp_path)
    assert "name those of one with a glob" in str(caught.value)
    frame, fmt = load_flows(tmp_path / "*" / "*.csv")
    assert (frame.height, fmt) == (2, "nad")


def test_bad_value_names_column_and_row(tmp_path: Path) -> None:
    rows = list(ROWS)
    rows[2] = rows[2].replace("40000", "4o000")
    with pytest.raises(SchemaError) as caught:
        load_flows(_write(tmp_path / "bad.csv", rows))
    assert caught.value.column == "spt"
    assert caught.value.row == 3


def test_bad_timestamp_names_row(tmp_path: Path) -> None:
    rows = list(ROWS)
    rows[1] = rows[1].replace("2020-12-03 00:00:02", "yesterday")
    with pytest.raises(SchemaError) as caught:
        load_flows(_write(tmp_path / "bad.csv", rows))
    assert (caught.value.column, caught.value.row) == ("time", 2)


def test_missing_column_is_named(tmp_path: Path) -> None:
    header = HEADER.replace("dpt,", "port,")
    with pytest.raises(SchemaError) as caught:
        load_flows(_write(tmp_path / "bad.csv", ROWS, header), format="nad")
    assert caught.value.column == "dpt"
