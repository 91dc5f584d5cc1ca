from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from nadkit.errors import SchemaError
from nadkit.sources import detect_format, load_flows, read_flows

# NF-UNSW-NB15-v2 style: the v1 fields plus a few v2 ones (MIN_TTL, DNS_QUERY_ID)
HEADER = (
    "IPV4_SRC_ADDR,L4_SRC_PORT,IPV4_DST_ADDR,L4_DST_PORT,PROTOCOL,L7_PROTO,IN_BYTES,IN_PKTS,OUT_BYTES,"
    "OUT_PKTS,TCP_FLAGS,FLOW_DURATION_MILLISECONDS,MIN_TTL,DNS_QUERY_ID,Label,Attack"
)
ROWS = [
    "149.171.126.0,62073,59.166.0.5,56082,6,0.0,9672,11,416,8,25,15,31,0,0,Benign",
    "175.45.176.1,10000,149.171.126.16,80,6,7.178,1000,5,20000,6,27,1500,254,0,1,Exploits",
    "59.166.0.1,53,149.171.126.5,5353,17,5.0,66,1,82,1,0,0,64,4660,0,Benign",
    "175.45.176.2,0,149.171.126.9,0,1,81.0,84,1,0,0,0,4294,62,0,1,Reconnaissance",
]


def _write(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_golden_rows(tmp_path: Path) -> None:
    path = _write(tmp_path / "NF-UNSW-NB15-v2.csv", ROWS)
    assert detect_format(path) == "netflow"
    frame, fmt = load_flows(path)
    assert fmt == "netflow"
    assert frame.height == 4
    assert frame.columns[:13] == [
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
        "label",
        "label_original",
    ]
    assert "time" not in frame.columns  # no FLOW_START_MILLISECONDS in v1/v2 files
    for name, dtype in {
        "spt": pl.Int64,
        "duration": pl.Float64,
        "out_bytes": pl.Int64,
        "app": pl.String,
        "tcp_flags": pl.Int64,
        "min_ttl": pl.Int64,
        "dns_query_id": pl.Int64,
    }.items():
        assert frame.schema[name] == dtype, name
    second = frame.row(1, named=True)
    assert (second["src"], second["spt"], second["dst"], second["dpt"]) == (
        "175.45.176.1",
        10000,
        "149.171.126.16",
        80,
    )
    # IN_* is what the client (src) sent: out_*; OUT_* is what it received: in_*
    assert (second["out_bytes"], second["in_bytes"]) == (1000, 20000)
    assert (second["out_pkts"], second["in_pkts"]) == (5, 6)
    assert second["duration"] == 1.5
    assert second["app"] == "7.178"  # nDPI's master.application id: a code, kept as text
    assert frame["app"].to_list() == ["0.0", "7.178", "5.0", "81.0"]
    assert (second["tcp_flags"], second["min_ttl"]) == (27, 254)
    assert frame["proto"].to_list() == ["tcp", "tcp", "udp", "icmp"]
    assert frame["label"].to_list() == ["normal", "Exploits", "normal", "Reconnaissance"]
    assert frame["label_original"].to_list() == ["Benign", "Exploits", "Benign", "Reconnaissance"]
    assert frame["duration"].to_list() == pytest.approx([0.015, 1.5, 0.0, 4.294], rel=1e-12)
    assert frame["dns_query_id"].to_list() == [0, 0, 4660, 0]


def test_v3_start_time_and_binary_label_only(tmp_path: Path) -> None:
    header = (
        "FLOW_START_MILLISECONDS,FLOW_END_MILLISECONDS,IPV4_SRC_ADDR,L4_SRC_PORT,IPV4_DST_ADDR,"
        "L4_DST_PORT,PROTOCOL,L7_PROTO,IN_BYTES,IN_PKTS,OUT_BYTES,OUT_PKTS,TCP_FLAGS,"
        "FLOW_DURATION_MILLISECONDS,Label"
    )
    rows = [
        "1424242190000,1424242190250,10.0.0.1,40000,10.0.0.2,443,6,91.0,500,4,1500,3,27,250,0",
        "1424242191500,1424242191500,10.0.0.9,5000,10.0.0.2,22,6,92.0,60,1,0,0,2,0,1",
    ]
    frame, _ = load_flows(_write(tmp_path / "NF-v3.csv", rows, header))
    assert frame.schema["time"] == pl.Datetime("us", "UTC")
    assert frame["time"].to_list() == [
        datetime(2015, 2, 18, 6, 49, 50, tzinfo=UTC),
        datetime(2015, 2, 18, 6, 49, 51, 500000, tzinfo=UTC),
    ]
    assert "flow_end_milliseconds" not in frame.columns
    assert "flow_start_milliseconds" not in frame.columns
    assert frame["label"].to_list() == ["normal", "attack"]
    assert frame["label_original"].to_list() == ["0", "1"]
    assert frame["duration"].to_list() == [0.25, 0.0]


def test_ipv6_addresses(tmp_path: Path) -> None:
    header = (
        "IPV4_SRC_ADDR,IPV6_SRC_ADDR,L4_SRC_PORT,IPV4_DST_ADDR,IPV6_DST_ADDR,L4_DST_PORT,PROTOCOL,"
        "IN_BYTES,OUT_BYTES"
    )
    rows = [
        "10.0.0.1,::,1234,10.0.0.2,::,80,6,10,20",
        "0.0.0.0,2001:db8::1,5353,0.0.0.0,ff02::fb,5353,17,30,0",
    ]
    frame, _ = load_flows(_write(tmp_path / "mixed.csv", rows, header))
    assert frame["src"].to_list() == ["10.0.0.1", "2001:db8::1"]
    assert frame["dst"].to_list() == ["10.0.0.2", "ff02::fb"]
    only_v6 = "IPV6_SRC_ADDR,L4_SRC_PORT,IPV6_DST_ADDR,L4_DST_PORT,PROTOCOL,IN_BYTES,OUT_BYTES"
    frame, fmt = load_flows(_write(tmp_path / "v6.csv", ["fe80::1,546,ff02::1:2,547,17,100,0"], only_v6))
    assert fmt == "netflow"
    assert frame.row(0)[:4] == ("fe80::1", "ff02::1:2", 546, 547)
    assert "label" not in frame.columns


def test_nprobe_pipe_dump_keeps_the_application_and_drops_other_text_columns(tmp_path: Path) -> None:
    header = (
        "IPV4_SRC_ADDR|L4_SRC_PORT|IPV4_DST_ADDR|L4_DST_PORT|PROTOCOL|L7_PROTO_NAME|"
        "IN_BYTES|OUT_BYTES|IN_PKTS"
    )
    rows = [
        "192.168.1.2|51000|8.8.8.8|53|17|DNS.Google|70|120|1",
        "192.168.1.2|51001|1.1.1.1|443|6|TLS|900|4000|7",
    ]
    frame, fmt = load_flows(_write(tmp_path / "nprobe.txt", rows, header))
    assert fmt == "netflow"
    assert "l7_proto_name" not in frame.columns
    assert frame["app"].to_list() == ["dns.google", "tls"]  # the application's name, where a dump has it
    assert frame["out_bytes"].to_list() == [70, 900]
    assert frame["in_bytes"].to_list() == [120, 4000]
    assert frame["out_pkts"].to_list() == [1, 7]
    assert "in_pkts" not in frame.columns


def test_gzip_is_read_lazily(tmp_path: Path) -> None:
    path = tmp_path / "NF-ToN-IoT.csv.gz"
    path.write_bytes(gzip.compress(("\n".join([HEADER, *ROWS]) + "\n").encode()))
    lazy, fmt = read_flows(path)
    assert isinstance(lazy, pl.LazyFrame)
    assert fmt == "netflow"
    frame, _ = load_flows(path)
    assert frame["out_bytes"].to_list() == [9672, 1000, 66, 84]


def test_detection_is_specific(tmp_path: Path) -> None:
    # byte counters without the NetFlow address fields are not NetFlow
    path = _write(tmp_path / "other.csv", ["1,2,3"], "IN_BYTES,OUT_BYTES,L4_DST_PORT")
    with pytest.raises(Exception, match="unrecognised"):
        detect_format(path)


def test_missing_column_is_named(tmp_path: Path) -> None:
    header = HEADER.replace("L4_DST_PORT", "DST_PORT")
    with pytest.raises(SchemaError) as caught:
        load_flows(_write(tmp_path / "bad.csv", ROWS, header), format="netflow")
    assert caught.value.column == "L4_DST_PORT"
    header = HEADER.replace("IPV4_SRC_ADDR", "SRC")
    with pytest.raises(SchemaError) as caught:
        load_flows(_write(tmp_path / "bad.csv", ROWS, header), format="netflow")
    assert caught.value.column == "IPV4_SRC_ADDR"


def test_bad_value_names_source_column_and_row(tmp_path: Path) -> None:
    rows = list(ROWS)
    rows[2] = rows[2].replace(",66,", ",6x6,")
    with pytest.raises(SchemaError) as caught:
        load_flows(_write(tmp_path / "bad.csv", rows))
    assert (caught.value.column, caught.value.row) == ("IN_BYTES", 3)
    rows = list(ROWS)
    rows[3] = rows[3].replace(",4294,", ",4.2.9,")
    with pytest.raises(SchemaError) as caught:
        load_flows(_write(tmp_path / "bad.csv", rows))
    assert (caught.value.column, caught.value.row) == ("FLOW_DURATION_MILLISECONDS", 4)


def test_negative_counter_is_rejected(tmp_path: Path) -> None:
    rows = list(ROWS)
    rows[0] = rows[0].replace(",416,", ",-416,")
    with pytest.raises(SchemaError) as caught:
        load_flows(_write(tmp_path / "bad.csv", rows))
    assert (caught.value.column, caught.value.row) == ("in_bytes", 1)
