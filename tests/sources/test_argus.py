from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from nadkit.errors import SchemaError
from nadkit.sources import detect_format, load_flows, read_flows

# CTU-13 layout (no SrcPkts): rows in the style of capture20110810.binetflow
HEADER = "StartTime,Dur,Proto,SrcAddr,Sport,Dir,DstAddr,Dport,State,sTos,dTos,TotPkts,TotBytes,SrcBytes,Label"
ROWS = [
    "2011/08/10 09:46:53.047277,3550.182373,udp,212.50.71.179,39678,  <->,147.32.84.229,13363,CON,0,0,12,875,"
    "413,flow=Background-UDP-Established",
    "2011/08/10 09:46:59.607825,0.000883,tcp,147.32.84.165,1040,   ->,60.190.222.139,80,SRPA_SPA,0,0,7,2182,"
    "1154,flow=From-Botnet-V42-TCP-CC6-Plain-HTTP-Encrypted-Data",
    "2011/08/10 09:47:00.133014,0.000000,icmp,147.32.84.165,0x0008,   ->,147.32.80.9,0x0303,ECO,0,,1,98,98,"
    "flow=From-Botnet-V42-ICMP",
    "2011/08/10 09:47:01.000000,1.500000,arp,147.32.84.1,,  who,147.32.84.2,,INT,,,2,120,60,"
    "flow=To-Normal-V42-Grill",
]


def _write(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_golden_ctu13_rows(tmp_path: Path) -> None:
    path = _write(tmp_path / "capture20110810.binetflow", ROWS)
    assert detect_format(path) == "argus"
    frame, fmt = load_flows(path)
    assert fmt == "argus"
    assert frame.height == 4
    assert frame.schema["time"] == pl.Datetime("us", "UTC")
    assert frame["time"].to_list() == [
        datetime(2011, 8, 10, 9, 46, 53, 47277, tzinfo=UTC),
        datetime(2011, 8, 10, 9, 46, 59, 607825, tzinfo=UTC),
        datetime(2011, 8, 10, 9, 47, 0, 133014, tzinfo=UTC),
        datetime(2011, 8, 10, 9, 47, 1, tzinfo=UTC),
    ]
    assert frame["src"].to_list() == ["212.50.71.179", "147.32.84.165", "147.32.84.165", "147.32.84.1"]
    assert frame["dst"].to_list() == ["147.32.84.229", "60.190.222.139", "147.32.80.9", "147.32.84.2"]
    # ICMP as nfdump writes it: Sport 0x0008 holds type 8 (echo request) in its low byte and code 0
    # in its high one -> dpt 8 * 256 + 0; Dport 0x0303, the ICMP identifier, is no port
    assert frame["spt"].to_list() == [39678, 1040, 0, None]
    assert frame["dpt"].to_list() == [13363, 80, 8 * 256, None]
    assert frame["proto"].to_list() == ["udp", "tcp", "icmp", "arp"]
    assert frame["duration"].to_list() == [3550.182373, 0.000883, 0.0, 1.5]
    # SrcBytes is what src sent; the rest of TotBytes came back
    assert frame["out_bytes"].to_list() == [413, 1154, 98, 60]
    assert frame["in_bytes"].to_list() == [462, 1028, 0, 60]
    # without SrcPkts the direction of the packets is unknown: the total is kept instead
    assert "out_pkts" not in frame.columns
    assert "in_pkts" not in frame.columns
    assert frame["tot_pkts"].to_list() == [12, 7, 1, 2]
    assert frame["dir"].to_list() == ["<->", "->", "->", "who"]
    assert frame["state"].to_list() == ["CON", "SRPA_SPA", "ECO", "INT"]
    # a TCP state of flags by side (ra -Z b) gives the OR of the flags, spelled as nfdump does
    assert frame["tcp_flags"].to_list() == [None, "...APRS.", None, None]
    assert frame["s_tos"].to_list() == [0, 0, 0, None]
    assert frame["d_tos"].to_list() == [0, 0, None, None]
    assert frame["label"].to_list() == ["normal", "botnet", "botnet", "normal"]
    assert frame["label_original"][1] == "flow=From-Botnet-V42-TCP-CC6-Plain-HTTP-Encrypted-Data"
    for dropped in ("start_time", "tot_bytes", "src_bytes", "src_addr", "sport"):
        assert dropped not in frame.columns


def test_src_pkts_gives_packet_directions(tmp_path: Path) -> None:
    header = HEADER.replace("SrcBytes,Label", "SrcBytes,SrcPkts,Label")
    rows = [
        "2018/09/28 11:00:31.592806,2.5,tcp,192.168.1.132,49732,   ->,104.16.0.1,443,FSPA_FSPA,0,0,20,9000,"
        "1500,8,flow=Background-Established-cmpgw-CVUT",
        "2018/09/28 11:00:32.000000,0.1,udp,192.168.1.132,53000,  <->,8.8.8.8,53,CON,0,0,2,180,70,1,"
        "flow=From-Botnet-V44-UDP-DNS",
    ]
    frame, _ = load_flows(_write(tmp_path / "flows.binetflow", rows, header))
    assert frame["out_pkts"].to_list() == [8, 1]
    assert frame["in_pkts"].to_list() == [12, 1]
    assert frame["out_bytes"].to_list() == [1500, 70]
    assert frame["in_bytes"].to_list() == [7500, 110]
    assert "tot_pkts" not in frame.columns
    assert frame["label"].to_list() == ["normal", "botnet"]


def test_time_zone_option(tmp_path: Path) -> None:
    path = _write(tmp_path / "f.binetflow", ROWS[:1])
    frame, _ = load_flows(path, timezone="Europe/Prague")
    assert frame["time"][0] == datetime(2011, 8, 10, 7, 46, 53, 47277, tzinfo=UTC)


def test_gzip(tmp_path: Path) -> None:
    path = tmp_path / "capture.binetflow.gz"
    path.write_bytes(gzip.compress(("\n".join([HEADER, *ROWS]) + "\n").encode()))
    lazy, fmt = read_flows(path)
    assert isinstance(lazy, pl.LazyFrame)
    assert fmt == "argus"
    frame, _ = load_flows(path)
    assert frame["out_bytes"].to_list() == [413, 1154, 98, 60]


def test_bad_value_names_column_and_row(tmp_path: Path) -> None:
    rows = list(ROWS)
    rows[1] = rows[1].replace(",2182,", ",2l82,")
    with pytest.raises(SchemaError) as caught:
        load_flows(_write(tmp_path / "bad.binetflow", rows))
    assert (caught.value.column, caught.value.row) == ("TotBytes", 2)
    rows = list(ROWS)
    rows[2] = rows[2].replace(",0x0303,", ",0xZZ,")
    with pytest.raises(SchemaError) as caught:
        load_flows(_write(tmp_path / "bad.binetflow", rows))
    assert (caught.value.column, caught.value.row) == ("Dport", 3)
    rows = list(ROWS)
    rows[3] = rows[3].replace("2011/08/10 09:47:01.000000", "10 Aug 2011")
    with pytest.raises(SchemaError) as caught:
        load_flows(_write(tmp_path / "bad.binetflow", rows))
    assert (caught.value.column, caught.value.row) == ("StartTime", 4)


def test_missing_column_is_named(tmp_path: Path) -> None:
    header = HEADER.replace("SrcBytes", "Bytes")
    with pytest.raises(SchemaError) as caught:
        load_flows(_write(tmp_path / "bad.binetflow", ROWS, header), format="argus")
    assert caught.value.column == "SrcBytes"
