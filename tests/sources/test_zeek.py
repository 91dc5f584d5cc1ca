from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from nadkit.errors import FormatError, SchemaError
from nadkit.sources import detect_format, load_flows, read_flows

FIELDS = [
    "ts",
    "uid",
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
    "proto",
    "service",
    "duration",
    "orig_bytes",
    "resp_bytes",
    "conn_state",
    "local_orig",
    "local_resp",
    "missed_bytes",
    "history",
    "orig_pkts",
    "orig_ip_bytes",
    "resp_pkts",
    "resp_ip_bytes",
    "tunnel_parents",
]
TYPES = [
    "time",
    "string",
    "addr",
    "port",
    "addr",
    "port",
    "enum",
    "string",
    "interval",
    "count",
    "count",
    "string",
    "bool",
    "bool",
    "count",
    "string",
    "count",
    "count",
    "count",
    "count",
    "set[string]",
]
ROWS = [
    # a DNS query, an unanswered SYN, IPv6 ICMP (type 135 in orig_p, code 0 in resp_p), a TLS session
    "1591367999.305988 CHhAvVGS1DHFjwGM9 192.168.4.76 36844 192.168.4.1 53 udp dns 0.066852 62 141 SF "
    "T T 0 Dd 2 118 2 197 (empty)",
    "1591368000.000001 CsWZ4V1Hd6LWNQBvF 192.168.4.76 46378 31.3.245.133 80 tcp - - - - S0 T F 0 S 1 60 0 0 "
    "(empty)",
    "1591368001.5 C9S8ei3a0oBbRxHI6 fe80::1 135 ff02::1:ff00:2 0 icmp - 0.5 32 0 OTH T F 0 - 1 72 0 0 "
    "(empty)",
    "1591368002.25 CtPZjS20MLrsMUOJi2 192.168.4.76 51112 93.184.216.34 443 tcp ssl,HTTP 12.75 1820 38211 SF "
    "T F 0 ShADadFf 14 2560 30 39783 (empty)",
]


def _tsv(fields: list[str], types: list[str], rows: list[str]) -> str:
    header = [
        "#separator \\x09",
        "#set_separator\t,",
        "#empty_field\t(empty)",
        "#unset_field\t-",
        "#path\tconn",
        "#open\t2020-06-05-14-39-59",
        "#fields\t" + "\t".join(fields),
        "#types\t" + "\t".join(types),
    ]
    lines = [row.replace(" ", "\t") for row in rows]
    return "\n".join([*header, *lines, "#close\t2020-06-05-15-00-00"]) + "\n"


def _write(path: Path, content: str) -> Path:
    path.write_text(content)
    return path


def test_golden_tsv(tmp_path: Path) -> None:
    path = _write(tmp_path / "conn.log", _tsv(FIELDS, TYPES, ROWS))
    assert detect_format(path) == "zeek"
    frame, fmt = load_flows(path)
    assert fmt == "zeek"
    assert frame.height == 4  # the #close trailer is not a flow
    assert frame.schema["time"] == pl.Datetime("us", "UTC")
    assert frame["time"].to_list() == [
        datetime(2020, 6, 5, 14, 39, 59, 305988, tzinfo=UTC),
        datetime(2020, 6, 5, 14, 40, 0, 1, tzinfo=UTC),
        datetime(2020, 6, 5, 14, 40, 1, 500000, tzinfo=UTC),
        datetime(2020, 6, 5, 14, 40, 2, 250000, tzinfo=UTC),
    ]
    assert frame["src"].to_list() == ["192.168.4.76", "192.168.4.76", "fe80::1", "192.168.4.76"]
    assert frame["dst"].to_list() == ["192.168.4.1", "31.3.245.133", "ff02::1:ff00:2", "93.184.216.34"]
    # ICMP: Zeek's type 135 (orig_p) and code 0 (resp_p) -> spt 0, dpt 135 * 256 + 0, as nfdump writes it
    assert frame["spt"].to_list() == [36844, 46378, 0, 51112]
    assert frame["dpt"].to_list() == [53, 80, 135 * 256, 443]
    assert frame["proto"].to_list() == ["udp", "tcp", "icmp", "tcp"]
    assert frame["app"].to_list() == ["dns", None, None, "ssl,http"]
    assert frame["duration"].to_list() == [0.066852, None, 0.5, 12.75]
    # orig_* is what the originator (src) sent, resp_* what it received
    assert frame["out_bytes"].to_list() == [62, None, 32, 1820]
    assert frame["in_bytes"].to_list() == [141, None, 0, 38211]
    assert frame["out_pkts"].to_list() == [2, 1, 1, 14]
    assert frame["in_pkts"].to_list() == [2, 0, 0, 30]
    assert frame["conn_state"].to_list() == ["SF", "S0", "OTH", "SF"]
    assert frame["history"].to_list() == ["Dd", "S", None, "ShADadFf"]
    assert frame["local_orig"].to_list() == [True, True, True, True]
    assert frame["local_resp"].to_list() == [True, False, False, False]
    assert frame["orig_ip_bytes"].to_list() == [118, 60, 72, 2560]
    assert frame["resp_ip_bytes"].to_list() == [197, 0, 0, 39783]
    assert frame["missed_bytes"].to_list() == [0, 0, 0, 0]
    for name, dtype in {
        "spt": pl.Int64,
        "out_bytes": pl.Int64,
        "duration": pl.Float64,
        "local_orig": pl.Boolean,
    }.items():
        assert frame.schema[name] == dtype, name
    for dropped in ("uid", "tunnel_parents", "ts", "id_orig_h"):
        assert dropped not in frame.columns
    assert "label" not in frame.columns


def test_iot23_labels_separated_by_spaces(tmp_path: Path) -> None:
    # IoT-23 conn.log.labeled: the last three fields are separated by spaces, not tabs
    fields = "\t".join(FIELDS) + "   label   detailed-label"
    types = "\t".join(TYPES) + "   string   string"
    rows = [
        "1525879831.015811\tCUmrqr4svHuSXJy5z7\t192.168.100.103\t51524\t65.127.233.163\t23\ttcp\t-\t"
        "2.999051\t0\t0\tS0\t-\t-\t0\tS\t3\t180\t0\t0\t-   Malicious   PartOfAHorizontalPortScan",
        "1525879839.102456\tCk1nAV1bUj4zwMzp6k\t192.168.100.103\t37270\t192.168.100.1\t53\tudp\tdns\t"
        "0.031024\t35\t51\tSF\t-\t-\t0\tDd\t1\t63\t1\t79\t-   Benign   -",
        "1525879840.000000\tCk1nAV1bUj4zwMzp6x\t192.168.100.103\t37271\t185.1.1.1\t6667\ttcp\t-\t"
        "1.0\t10\t20\tSF\t-\t-\t0\tShAD\t2\t100\t2\t120\t-   Malicious   -",
    ]
    header = "#separator \\x09\n#path\tconn\n#fields\t" + fields + "\n#types\t" + types + "\n"
    path = _write(tmp_path / "conn.log.labeled", header + "\n".join(rows) + "\n#close\t2019-01-01\n")
    assert detect_format(path) == "zeek"
    frame, _ = load_flows(path)
    assert frame["label"].to_list() == ["PartOfAHorizontalPortScan", "normal", "malicious"]
    assert frame["label_original"].to_list() == ["Malicious PartOfAHorizontalPortScan", "Benign", "Malicious"]
    assert frame["dpt"].to_list() == [23, 53, 6667]
    assert frame["local_orig"].to_list() == [None, None, None]
    assert "detailed_label" not in frame.columns


def test_json_lines_epoch_and_iso_times(tmp_path: Path) -> None:
    records = [
        {
            "ts": 1591367999.305988,
            "uid": "CHhAvVGS1DHFjwGM9",
            "id.orig_h": "192.168.4.76",
            "id.orig_p": 36844,
            "id.resp_h": "192.168.4.1",
            "id.resp_p": 53,
            "proto": "udp",
            "service": "dns",
            "duration": 0.066852,
            "orig_bytes": 62,
            "resp_bytes": 141,
            "conn_state": "SF",
            "local_orig": True,
            "missed_bytes": 0,
            "history": "Dd",
            "orig_pkts": 2,
            "orig_ip_bytes": 118,
            "resp_pkts": 2,
            "resp_ip_bytes": 197,
        },
        # unset fields are left out of Zeek's JSON; ts may be ISO-8601 text
        {
            "ts": "2020-06-05T14:40:00.000001Z",
            "uid": "CsWZ4V1Hd6LWNQBvF",
            "id.orig_h": "192.168.4.76",
            "id.orig_p": 46378,
            "id.resp_h": "31.3.245.133",
            "id.resp_p": 80,
            "proto": "tcp",
            "conn_state": "S0",
            "local_orig": False,
            "missed_bytes": 0,
            "history": "S",
            "orig_pkts": 1,
            "orig_ip_bytes": 60,
            "resp_pkts": 0,
            "resp_ip_bytes": 0,
        },
    ]
    path = _write(tmp_path / "conn.json", "\n".join(json.dumps(r) for r in records) + "\n")
    assert detect_format(path) == "zeek"
    frame, _ = load_flows(path)
    assert frame["time"].to_list() == [
        datetime(2020, 6, 5, 14, 39, 59, 305988, tzinfo=UTC),
        datetime(2020, 6, 5, 14, 40, 0, 1, tzinfo=UTC),
    ]
    assert frame["app"].to_list() == ["dns", None]
    assert frame["duration"].to_list() == [0.066852, None]
    assert frame["out_bytes"].to_list() == [62, None]
    assert frame["in_pkts"].to_list() == [2, 0]
    assert frame["local_orig"].to_list() == [True, False]
    assert frame["orig_ip_bytes"].to_list() == [118, 60]
    assert frame["conn_state"].to_list() == ["SF", "S0"]


def test_gzip_tsv_and_json(tmp_path: Path) -> None:
    path = tmp_path / "conn.log.gz"
    path.write_bytes(gzip.compress(_tsv(FIELDS, TYPES, ROWS).encode()))
    lazy, fmt = read_flows(path)
    assert isinstance(lazy, pl.LazyFrame)
    assert fmt == "zeek"
    frame, _ = load_flows(path)
    assert frame["spt"].to_list() == [36844, 46378, 0, 51112]
    record = {"ts": 1.5, "id.orig_h": "10.0.0.1", "id.orig_p": 1, "id.resp_h": "10.0.0.2", "id.resp_p": 2}
    record |= {"proto": "tcp", "conn_state": "REJ"}
    json_path = tmp_path / "conn.json.gz"
    json_path.write_bytes(gzip.compress((json.dumps(record) + "\n").encode()))
    frame, fmt = load_flows(json_path)
    assert (fmt, frame["conn_state"].to_list()) == ("zeek", ["REJ"])


def test_broken_json_line_is_reported_with_the_file(tmp_path: Path) -> None:
    record = {"ts": 1.5, "id.orig_h": "10.0.0.1", "id.orig_p": 1, "id.resp_h": "10.0.0.2", "id.resp_p": 2}
    record |= {"proto": "tcp", "conn_state": "REJ"}
    path = _write(tmp_path / "conn.json", json.dumps(record) + '\n{"ts": 2.5, "id.orig_h": oops}\n')
    assert detect_format(path) == "zeek"
    with pytest.raises(SchemaError, match=str(path)):
        load_flows(path)


def test_other_zeek_logs_are_not_conn(tmp_path: Path) -> None:
    dns_fields = [
        "ts",
        "uid",
        "id.orig_h",
        "id.orig_p",
        "id.resp_h",
        "id.resp_p",
        "proto",
        "trans_id",
        "query",
    ]
    dns_types = ["time", "string", "addr", "port", "addr", "port", "enum", "count", "string"]
    row = "1591367999.3 CH 192.168.4.76 36844 192.168.4.1 53 udp 1 example.org"
    path = _write(tmp_path / "dns.log", _tsv(dns_fields, dns_types, [row]))
    with pytest.raises(FormatError):
        detect_format(path)


def test_bad_value_names_column_and_row(tmp_path: Path) -> None:
    rows = list(ROWS)
    rows[3] = rows[3].replace(" 1820 ", " 1,820 ")
    with pytest.raises(SchemaError) as caught:
        load_flows(_write(tmp_path / "conn.log", _tsv(FIELDS, TYPES, rows)))
    assert (caught.value.column, caught.value.row) == ("orig_bytes", 4)
    rows = list(ROWS)
    rows[1] = rows[1].replace("1591368000.000001", "noon")
    with pytest.raises(SchemaError) as caught:
        load_flows(_write(tmp_path / "conn.log", _tsv(FIELDS, TYPES, rows)))
    assert (caught.value.column, caught.value.row) == ("ts", 2)


def test_missing_field_is_named(tmp_path: Path) -> None:
    fields = [f if f != "id.resp_p" else "resp_port" for f in FIELDS]
    with pytest.raises(SchemaError) as caught:
        load_flows(_write(tmp_path / "conn.log", _tsv(fields, TYPES, ROWS)), format="zeek")
    assert caught.value.column == "id.resp_p"
