"""UNSW-NB15: the partition files (header, BOM) and the 49-column full records (no header)."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from nadkit.errors import SchemaError
from nadkit.sources import detect_format, load_flows, read_flows
from nadkit.sources.unsw import RAW_COLUMNS
from tests.conftest import shared_file

PARTITION_HEADER = (
    "id,dur,proto,service,state,spkts,dpkts,sbytes,dbytes,rate,sttl,dttl,sload,dload,sloss,dloss,sinpkt,"
    "dinpkt,sjit,djit,swin,stcpb,dtcpb,dwin,tcprtt,synack,ackdat,smean,dmean,trans_depth,response_body_len,"
    "ct_srv_src,ct_state_ttl,ct_dst_ltm,ct_src_dport_ltm,ct_dst_sport_ltm,ct_dst_src_ltm,is_ftp_login,"
    "ct_ftp_cmd,ct_flw_http_mthd,ct_src_ltm,ct_srv_dst,is_sm_ips_ports,attack_cat,label"
)
PARTITION_ROWS = [
    "1,0.000011,udp,-,INT,2,0,496,0,90909.0902,254,0,180363632,0,0,0,0.011,0,0,0,0,0,0,0,0,0,0,248,0,0,0,"
    "2,2,1,1,1,2,0,0,0,1,2,0,Normal,0",
    "2,1.623129,TCP,http,FIN,10,8,798,1464,10.473,62,252,3568.0,6278.0,2,2,179.35,217.02,9.9,12.1,255,"
    "1417884146,3077387971,255,0.1,0.06,0.04,80,183,1,0,1,1,1,1,1,1,0,0,1,1,1,0,Exploits,1",
    "3,0.000009,unas,-,INT,2,0,200,0,111111.1072,254,0,88888888,0,0,0,0.009,0,0,0,0,0,0,0,0,0,0,100,0,0,0,"
    "3,2,3,3,3,3,0,0,0,3,3,0,Generic,1",
]


def _raw_row(**values: str) -> str:
    fields = {name: "0" for name in RAW_COLUMNS}
    fields.update(values)
    return ",".join(fields[name] for name in RAW_COLUMNS)


RAW_ROWS = [
    _raw_row(
        srcip="59.166.0.0",
        sport="1390",
        dstip="149.171.126.6",
        dsport="53",
        proto="udp",
        state="CON",
        dur="0.001055",
        sbytes="132",
        dbytes="164",
        sttl="31",
        service="dns",
        Sload="500473.9375",
        Spkts="2",
        Dpkts="2",
        smeansz="66",
        dmeansz="82",
        Stime="1421927414",
        Ltime="1421927414",
        attack_cat="",
        Label="0",
    ),
    _raw_row(
        srcip="175.45.176.3",
        sport="0x000b",
        dstip="149.171.126.16",
        dsport="-",
        proto="ICMP",
        state="INT",
        sbytes="100",
        service="-",
        Spkts="1",
        Stime="1421927415",
        Ltime="1421927416",
        attack_cat=" Fuzzers",
        Label="1",
    ),
    _raw_row(
        srcip="175.45.176.0",
        sport="33661",
        dstip="149.171.126.18",
        dsport="0x20205321",
        proto="tcp",
        state="FIN",
        sbytes="1540",
        dbytes="1644",
        service="ftp",
        res_bdy_len="40",
        ct_ftp_cmd=" ",
        Stime="1421927500",
        Ltime="1421927501",
        attack_cat="Backdoors",
        Label="1",
    ),
]


def _write(path: Path, lines: list[str], *, bom: bool = False) -> Path:
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_golden_partition_rows(tmp_path: Path) -> None:
    path = _write(tmp_path / "UNSW_NB15_testing-set.csv", [PARTITION_HEADER, *PARTITION_ROWS], bom=True)
    assert detect_format(path) == "unsw"
    frame, fmt = load_flows(path)
    assert fmt == "unsw"
    assert frame.height == 3
    assert frame.columns[:7] == ["proto", "app", "duration", "out_bytes", "in_bytes", "out_pkts", "in_pkts"]
    assert frame["proto"].to_list() == ["udp", "tcp", "unas"]
    assert frame["app"].to_list() == [None, "http", None]
    assert frame["duration"].to_list() == [0.000011, 1.623129, 0.000009]
    assert frame["out_bytes"].to_list() == [496, 798, 200]
    assert frame["in_bytes"].to_list() == [0, 1464, 0]
    assert frame["out_pkts"].to_list() == [2, 10, 2]
    assert frame["in_pkts"].to_list() == [0, 8, 0]
    assert frame["label"].to_list() == ["normal", "Exploits", "Generic"]
    assert frame["label_original"].to_list() == ["Normal", "Exploits", "Generic"]
    assert frame["state"].to_list() == ["INT", "FIN", "INT"]
    assert frame.schema["state"] == pl.String
    # integer features stay integers, rates floats; the row id is not a feature
    assert frame.schema["sttl"] == pl.Int64 and frame.schema["dtcpb"] == pl.Int64
    assert frame["dtcpb"][1] == 3077387971
    assert frame.schema["sload"] == pl.Float64 and frame["sload"][1] == 3568.0
    assert frame["rate"].to_list()[1] == 10.473
    assert "id" not in frame.columns and "attack_cat" not in frame.columns
    assert not {"time", "src", "dst", "spt", "dpt"} & set(frame.columns)


def test_golden_full_records(tmp_path: Path) -> None:
    path = _write(tmp_path / "UNSW-NB15_1.csv", RAW_ROWS)
    assert detect_format(path) == "unsw"
    frame, _ = load_flows(path)
    assert frame.height == 3
    assert frame.columns[:6] == ["time", "src", "dst", "spt", "dpt", "proto"]
    assert frame["time"].to_list() == [
        datetime(2015, 1, 22, 11, 50, 14, tzinfo=UTC),
        datetime(2015, 1, 22, 11, 50, 15, tzinfo=UTC),
        datetime(2015, 1, 22, 11, 51, 40, tzinfo=UTC),
    ]
    assert frame["src"].to_list() == ["59.166.0.0", "175.45.176.3", "175.45.176.0"]
    assert frame["dst"][0] == "149.171.126.6"
    assert frame["spt"].to_list() == [1390, 11, 33661]  # 0x000b is hexadecimal
    assert frame["dpt"].to_list() == [53, None, None]  # '-' and an out-of-range value are nulls
    assert frame["proto"].to_list() == ["udp", "icmp", "tcp"]
    assert frame["app"].to_list() == ["dns", None, "ftp"]
    assert frame["duration"][0] == 0.001055
    assert frame["out_bytes"].to_list() == [132, 100, 1540]
    assert frame["in_pkts"].to_list() == [2, 0, 0]
    assert frame["label"].to_list() == ["normal", "Fuzzers", "Backdoor"]
    assert frame["state"].to_list() == ["CON", "INT", "FIN"]
    # full-record names are aligned with the partition files
    assert frame["smean"][0] == 66 and frame["dmean"][0] == 82
    assert frame["response_body_len"][2] == 40
    assert frame["ct_ftp_cmd"].to_list() == [0, 0, None]
    assert frame["sload"][0] == 500473.9375
    assert not {"ltime", "stime", "smeansz", "res_bdy_len", "srcip"} & set(frame.columns)


def test_both_layouts_share_feature_columns(tmp_path: Path) -> None:
    partition, _ = load_flows(_write(tmp_path / "part.csv", [PARTITION_HEADER, *PARTITION_ROWS]))
    records, _ = load_flows(_write(tmp_path / "records.csv", RAW_ROWS))
    assert set(partition.columns) - {"rate"} <= set(records.columns)
    for name in partition.columns:
        if name in records.columns:
            assert partition.schema[name] == records.schema[name], name


def test_full_records_with_added_header(tmp_path: Path) -> None:
    path = _write(tmp_path / "records.csv", [",".join(RAW_COLUMNS), *RAW_ROWS])
    assert detect_format(path) == "unsw"
    frame, _ = load_flows(path)
    assert frame["spt"].to_list() == [1390, 11, 33661]


def test_gzip_and_lazy(tmp_path: Path) -> None:
    path = tmp_path / "UNSW-NB15_2.csv.gz"
    path.write_bytes(gzip.compress(("\n".join(RAW_ROWS) + "\n").encode()))
    assert detect_format(path) == "unsw"
    lazy, _ = read_flows(path)
    assert isinstance(lazy, pl.LazyFrame)
    frame, _ = load_flows(path)
    assert frame["label"].to_list() == ["normal", "Fuzzers", "Backdoor"]


def test_bad_value_names_column_and_row(tmp_path: Path) -> None:
    rows = list(PARTITION_ROWS)
    rows[1] = rows[1].replace(",798,", ",79B,")
    with pytest.raises(SchemaError) as caught:
        load_flows(_write(tmp_path / "bad.csv", [PARTITION_HEADER, *rows]))
    assert (caught.value.column, caught.value.row) == ("out_bytes", 2)


def test_bad_stime_names_row(tmp_path: Path) -> None:
    rows = [*RAW_ROWS[:2], RAW_ROWS[2].replace("1421927500", "14219x7500")]
    with pytest.raises(SchemaError) as caught:
        load_flows(_write(tmp_path / "bad.csv", rows), format="unsw")
    assert (caught.value.column, caught.value.row) == ("time", 3)


def test_missing_column_is_named(tmp_path: Path) -> None:
    header = PARTITION_HEADER.replace(",dbytes,", ",dbytez,")
    with pytest.raises(SchemaError) as caught:
        load_flows(_write(tmp_path / "bad.csv", [header, *PARTITION_ROWS]), format="unsw")
    assert caught.value.column == "dbytes"


def test_short_full_record_is_not_unsw(tmp_path: Path) -> None:
    row = RAW_ROWS[0].rsplit(",", 1)[0]  # 48 fields
    path = _write(tmp_path / "short.csv", [row])
    assert not _is_unsw(path)


def _is_unsw(path: Path) -> bool:
    try:
        return detect_format(path) == "unsw"
    except Exception:
        return False


def test_real_training_set() -> None:
    path = shared_file("unsw_nb15/UNSW_NB15_training-set.csv")
    assert detect_format(path) == "unsw"
    frame, _ = load_flows(path)
    assert frame.height == 82_332
    counts = dict(frame["label"].value_counts().iter_rows())
    assert counts == {
        "normal": 37_000,
        "Generic": 18_871,
        "Exploits": 11_132,
        "Fuzzers": 6_062,
        "DoS": 4_089,
        "Reconnaissance": 3_496,
        "Analysis": 677,
        "Backdoor": 583,
        "Shellcode": 378,
        "Worms": 44,
    }
    assert frame["proto"].null_count() == 0
    assert frame["out_bytes"].min() >= 0
    assert frame.filter(pl.col("proto") == "tcp").height == 43_095
