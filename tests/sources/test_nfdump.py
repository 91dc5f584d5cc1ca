"""nfdump CSV exports. The classic-layout lines are real output of nfdump 1.7.1 (Debian 12), collecting
NetFlow v9 / IPFIX that softflowd 1.1.0 exported on loopback from the shared captures ssh.pcap,
nmap_nmap_80_w_service_detection.pcap and youtube_quic.pcap (``nfdump -R spool -o csv``; ``-B`` for the
bidirectional line). The named-column layout follows nfdump's later source code."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from nadkit.errors import ConfigError, FormatError, SchemaError
from nadkit.sources import detect_format, load_flows, read_flows

HEADER = (
    "ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,in,out,sas,das,smk,dmk,dtos,dir,nh,nhb,"
    "svln,dvln,ismc,odmc,idmc,osmc,mpls1,mpls2,mpls3,mpls4,mpls5,mpls6,mpls7,mpls8,mpls9,mpls10,cl,sl,al,"
    "ra,eng,exid,tr"
)
# next hops, VLANs, MAC addresses, MPLS labels, latencies, router, engine, exporter: as nfdump wrote them
_TAIL = (
    "0.0.0.0,0.0.0.0,0,0,00:00:00:00:00:00,00:00:00:00:00:00,00:00:00:00:00:00,00:00:00:00:00:00,"
    "0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,0-0-0,    0.000,    0.000,    0.000,"
    "127.0.0.1,0/0,1,"
)
V9_FLOWS = [
    "2026-12-13 15:47:14,2026-12-13 15:51:22,248.477,172.16.238.1,172.16.238.168,58395,22,TCP,...AP.SF,"
    "0,0,159,13389,0,0,0,0,0,0,0,0,0,0," + _TAIL + "2026-11-22 07:45:00.144",
    "2026-12-13 15:47:14,2026-12-13 15:51:22,248.477,172.16.238.168,172.16.238.1,22,58395,TCP,...AP.SF,"
    "0,0,99,18545,0,0,0,0,0,0,0,0,0,1," + _TAIL + "2026-11-22 07:45:00.144",
    "2026-12-25 15:12:24,2026-12-25 15:12:24,0.213,130.211.223.103,10.87.1.10,0,778,ICMP,........,"
    "0,0,6,408,0,0,0,0,0,0,0,0,0,1," + _TAIL + "2026-11-22 07:45:00.161",
    "2026-12-30 03:31:08,2026-12-30 03:31:08,0.559,192.168.1.7,216.58.205.66,54997,443,UDP,........,"
    "0,0,7,2214,0,0,0,0,0,0,0,0,0,0," + _TAIL + "2026-11-22 07:50:27.573",
]
SUMMARY = ["Summary", "flows,bytes,packets,avg_bps,avg_pps,avg_bpp", "70,213728,981,1,0,217"]
BIDIRECTIONAL_FLOW = (
    "2026-12-30 03:31:08,2026-12-30 03:31:11,3.124,192.168.1.7,216.58.198.33,56074,443,UDP,........,"
    "0,0,113,14529,145,160354,0,0,0,0,0,0,0,0," + _TAIL + "2026-11-22 07:50:27.573"
)
# softflowd's IPFIX read by nfdump 1.7.1: the end precedes the start and td wraps around
IPFIX_WRAPPED_FLOW = (
    "2026-12-13 15:51:23,2026-12-13 15:47:14,18446744073709304.000,172.16.238.1,172.16.238.168,58395,22,"
    "TCP,...AP.SF,0,0,159,13389,0,0,0,0,0,0,0,0,0,0," + _TAIL + "2026-11-22 07:50:14.749"
)


def _write(path: Path, lines: list[str], *, trailing: str = "\n") -> Path:
    path.write_text("\n".join(lines) + trailing)
    return path


def test_golden_classic_export(tmp_path: Path) -> None:
    path = _write(tmp_path / "nfdump.csv", [HEADER, *V9_FLOWS, *SUMMARY])
    assert detect_format(path) == "nfdump"
    frame, fmt = load_flows(path)
    assert fmt == "nfdump"
    assert frame.height == 4  # the summary block is not a flow
    assert frame.schema["time"] == pl.Datetime("us", "UTC")
    assert frame["time"].to_list() == [
        datetime(2026, 12, 13, 15, 47, 14, tzinfo=UTC),
        datetime(2026, 12, 13, 15, 47, 14, tzinfo=UTC),
        datetime(2026, 12, 25, 15, 12, 24, tzinfo=UTC),
        datetime(2026, 12, 30, 3, 31, 8, tzinfo=UTC),
    ]
    assert frame["src"].to_list() == ["172.16.238.1", "172.16.238.168", "130.211.223.103", "192.168.1.7"]
    assert frame["dst"].to_list() == ["172.16.238.168", "172.16.238.1", "10.87.1.10", "216.58.205.66"]
    assert frame["spt"].to_list() == [58395, 22, 0, 54997]
    assert frame["dpt"].to_list() == [22, 58395, 3 * 256 + 10, 443]  # ICMP port unreachable: type 3 code 10
    assert frame["proto"].to_list() == ["tcp", "tcp", "icmp", "udp"]
    assert frame["duration"].to_list() == [248.477, 248.477, 0.213, 0.559]
    # NetFlow v9 records are unidirectional: ibyt/ipkt (source to destination) are what src sent
    assert frame["out_bytes"].to_list() == [13389, 18545, 408, 2214]
    assert frame["out_pkts"].to_list() == [159, 99, 6, 7]
    assert frame["in_bytes"].to_list() == [0, 0, 0, 0]
    assert frame["in_pkts"].to_list() == [0, 0, 0, 0]
    assert frame["tcp_flags"].to_list() == ["...AP.SF", "...AP.SF", "........", "........"]
    assert frame["dir"].to_list() == [0, 1, 1, 0]
    for name, dtype in {
        "spt": pl.Int64,
        "dir": pl.Int64,
        "sas": pl.Int64,
        "in": pl.Int64,
        "cl": pl.Float64,
    }.items():
        assert frame.schema[name] == dtype, name
    for dropped in ("te", "ra", "nh", "ismc", "mpls1", "eng", "exid", "tr", "flg", "td", "ibyt"):
        assert dropped not in frame.columns, dropped
    assert "label" not in frame.columns


def test_bidirectional_export_fills_both_directions(tmp_path: Path) -> None:
    summary = ["Summary", "flows,bytes,packets,avg_bps,avg_pps,avg_bpp", "6,187593,289,441915,85,649"]
    frame, _ = load_flows(_write(tmp_path / "bi.csv", [HEADER, BIDIRECTIONAL_FLOW, *summary]))
    row = frame.row(0, named=True)
    assert (row["src"], row["spt"], row["dst"], row["dpt"], row["proto"]) == (
        "192.168.1.7",
        56074,
        "216.58.198.33",
        443,
        "udp",
    )
    assert (row["out_pkts"], row["out_bytes"], row["in_pkts"], row["in_bytes"]) == (113, 14529, 145, 160354)
    assert row["duration"] == 3.124
    assert row["time"] == datetime(2026, 12, 30, 3, 31, 8, tzinfo=UTC)


def test_wrapped_duration_is_unset(tmp_path: Path) -> None:
    frame, _ = load_flows(_write(tmp_path / "ipfix.csv", [HEADER, IPFIX_WRAPPED_FLOW]))
    assert frame["duration"].to_list() == [None]
    assert frame["time"].to_list() == [datetime(2026, 12, 13, 15, 51, 23, tzinfo=UTC)]


def test_quiet_export_with_blank_lines(tmp_path: Path) -> None:
    # `nfdump -q` prints no summary; a blank line at the end (or between blocks) is not a flow
    path = _write(tmp_path / "quiet.csv", [HEADER, V9_FLOWS[0], "", V9_FLOWS[1]], trailing="\n\n")
    frame, _ = load_flows(path)
    assert frame["out_bytes"].to_list() == [13389, 18545]


def test_bad_value_after_blank_line_names_file_row(tmp_path: Path) -> None:
    bad = V9_FLOWS[1].replace(",99,18545,", ",99,x,")
    path = _write(tmp_path / "bad.csv", [HEADER, V9_FLOWS[0], "", bad, *SUMMARY])
    with pytest.raises(SchemaError) as caught:
        load_flows(path)
    assert (caught.value.column, caught.value.row) == ("ibyt", 3)  # third line after the header


def test_milliseconds_and_time_zone(tmp_path: Path) -> None:
    line = V9_FLOWS[3].replace("2026-12-30 03:31:08,2026-12-30 03:31:08", "2024-01-05 10:00:01.123,")
    path = _write(tmp_path / "ms.csv", [HEADER, line, *SUMMARY])
    frame, _ = load_flows(path)
    assert frame["time"].to_list() == [datetime(2024, 1, 5, 10, 0, 1, 123000, tzinfo=UTC)]
    frame, _ = load_flows(path, timezone="Europe/Berlin")
    assert frame["time"].to_list() == [datetime(2024, 1, 5, 9, 0, 1, 123000, tzinfo=UTC)]
    with pytest.raises(ConfigError, match="Mars/Olympus"):
        load_flows(path, timezone="Mars/Olympus")


def test_named_layout(tmp_path: Path) -> None:
    lines = [
        "firstSeen,duration,proto,srcAddr,srcPort,dstAddr,dstPort,packets,bytes,flows",
        "2024-01-05 10:00:01.123,0.250,6,10.0.0.1,40000,10.0.0.2,443,4,500,1",
        "2024-01-05 10:00:02.000,0.000,1,10.0.0.1,0,10.0.0.3,8.0,1,84,1",
        "2024-01-05 10:00:03.500,1.000,17,2001:db8::1,5353,ff02::fb,5353,2,300,2",
    ]
    path = _write(tmp_path / "named.csv", lines)
    assert detect_format(path) == "nfdump"
    frame, _ = load_flows(path)
    assert frame["proto"].to_list() == ["tcp", "icmp", "udp"]
    assert frame["dpt"].to_list() == [443, 8 * 256, 5353]  # ICMP echo request written "8.0"
    assert frame["out_pkts"].to_list() == [4, 1, 2]
    assert frame["out_bytes"].to_list() == [500, 84, 300]
    assert "in_bytes" not in frame.columns
    assert frame["flows"].to_list() == [1, 1, 2]
    assert frame["src"][2] == "2001:db8::1"
    assert frame["time"][0] == datetime(2024, 1, 5, 10, 0, 1, 123000, tzinfo=UTC)


def test_csv_fast_layout_epoch_times(tmp_path: Path) -> None:
    lines = [
        "cnt,af,firstSeen,lastSeen,proto,srcAddr,srcPort,dstAddr,dstPort,srcAS,dstAS,input,output,flags,"
        "srcTos,packets,bytes",
        "1,2,1704448801123,1704448803623,6,10.0.0.1,40000,10.0.0.2,443,0,0,1,2,...AP.SF,0,4,500",
    ]
    frame, _ = load_flows(_write(tmp_path / "fast.csv", lines))
    row = frame.row(0, named=True)
    assert row["time"] == datetime(2024, 1, 5, 10, 0, 1, 123000, tzinfo=UTC)
    assert row["duration"] == 2.5
    assert (row["tcp_flags"], row["input"], row["output"], row["src_as"]) == ("...AP.SF", 1, 2, 0)
    assert "cnt" not in frame.columns


def test_gzip(tmp_path: Path) -> None:
    path = tmp_path / "nfdump.csv.gz"
    path.write_bytes(gzip.compress(("\n".join([HEADER, *V9_FLOWS, *SUMMARY]) + "\n").encode()))
    lazy, fmt = read_flows(path)
    assert isinstance(lazy, pl.LazyFrame)
    assert fmt == "nfdump"
    frame, _ = load_flows(path)
    assert frame.height == 4


def test_detection_is_specific(tmp_path: Path) -> None:
    argus = "StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes"
    path = _write(
        tmp_path / "flows.csv", [argus, "2011/08/10 09:46:53.04,1.0,udp,1.1.1.1,1,->,2.2.2.2,2,CON,0,0,2,9,4"]
    )
    assert detect_format(path) != "nfdump"
    with pytest.raises(FormatError):
        detect_format(_write(tmp_path / "x.csv", ["ts,sa,da,value", "1,2,3,4"]))


def test_bad_value_names_column_and_row(tmp_path: Path) -> None:
    flows = list(V9_FLOWS)
    flows[1] = flows[1].replace(",99,18545,", ",99,18k545,")
    with pytest.raises(SchemaError) as caught:
        load_flows(_write(tmp_path / "bad.csv", [HEADER, *flows, *SUMMARY]))
    assert (caught.value.column, caught.value.row) == ("ibyt", 2)
    flows = list(V9_FLOWS)
    flows[2] = flows[2].replace("2026-12-25 15:12:24,2026", "yesterday,2026")
    with pytest.raises(SchemaError) as caught:
        load_flows(_write(tmp_path / "bad.csv", [HEADER, *flows, *SUMMARY]))
    assert (caught.value.column, caught.value.row) == ("ts", 3)


def test_missing_column_is_named(tmp_path: Path) -> None:
    header = HEADER.replace(",sa,", ",source,")
    with pytest.raises(SchemaError) as caught:
        load_flows(_write(tmp_path / "bad.csv", [header, *V9_FLOWS]), format="nfdump")
    assert caught.value.column == "sa"
