from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from nadkit.errors import SchemaError
from nadkit.schema import (
    CANONICAL,
    canonical_order,
    label_expr,
    parse_mapping,
    proto_name_expr,
    snake_case,
    validate,
)


def _flows(**overrides: list) -> pl.DataFrame:
    data = {
        "time": [datetime(2020, 12, 3, tzinfo=UTC)] * 2,
        "src": ["10.0.0.1", "2001:db8::1"],
        "dst": ["10.0.0.2", "2001:db8::2"],
        "spt": [1234, 5353],
        "dpt": [80, 53],
        "duration": [0.5, 0.0],
        "out_bytes": [100, 0],
    }
    data.update(overrides)
    frame = pl.DataFrame(data)
    return frame.with_columns([pl.col(c).cast(CANONICAL[c]) for c in frame.columns if c in CANONICAL])


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" Flow Bytes/s", "flow_bytes_s"),
        ("out (bytes)", "out_bytes"),
        ("\ufeffid", "id"),
        ("FlowDuration", "flow_duration"),
        ("id.orig_h", "id_orig_h"),
        ("TotLen Fwd Pkts", "tot_len_fwd_pkts"),
    ],
)
def test_snake_case(raw: str, expected: str) -> None:
    assert snake_case(raw) == expected


def test_proto_names_from_numbers_and_text() -> None:
    frame = pl.DataFrame({"p": ["6", "17", "1", "2", "TCP", " udp ", "icmp6", "253"]})
    names = frame.select(proto_name_expr("p"))["p"].to_list()
    assert names == ["tcp", "udp", "icmp", "igmp", "tcp", "udp", "ipv6-icmp", "253"]


def test_label_normalisation() -> None:
    frame = pl.DataFrame({"l": ["BENIGN", " Normal", "DDOS-smurf", "0", None, "PortScan "]})
    labels = frame.select(label_expr("l"))["l"].to_list()
    assert labels == ["normal", "normal", "DDOS-smurf", "normal", None, "PortScan"]
    binary = pl.DataFrame({"l": ["0", "1"]}).select(label_expr("l", attack_value="attack"))["l"]
    assert binary.to_list() == ["normal", "attack"]


def test_canonical_order_puts_schema_first() -> None:
    assert canonical_order(["sttl", "label", "src", "time"]) == ["time", "src", "label", "sttl"]


def test_validate_accepts_ipv6_and_reports_missing_identifying() -> None:
    report = validate(_flows().drop("spt"), path="x.csv")
    assert report.rows == 2
    assert report.missing_identifying == ("spt",)


def test_validate_names_column_and_row_of_negative_bytes() -> None:
    with pytest.raises(SchemaError) as caught:
        validate(_flows(out_bytes=[5, -3]), path="flows.csv")
    error = caught.value
    assert (error.path, error.column, error.row) == ("flows.csv", "out_bytes", 2)
    assert str(error).startswith("flows.csv: column 'out_bytes': row 2: negative value")


def test_validate_rejects_port_out_of_range_and_wrong_dtype() -> None:
    with pytest.raises(SchemaError, match="port outside"):
        validate(_flows(dpt=[80, 70000]))
    with pytest.raises(SchemaError, match="dtype"):
        validate(_flows().with_columns(pl.col("dpt").cast(pl.String)))


def test_validate_required_column() -> None:
    with pytest.raises(SchemaError, match="required column is missing") as caught:
        validate(_flows(), require=["label"])
    assert caught.value.column == "label"


def test_parse_mapping() -> None:
    assert parse_mapping("time=StartTime, src=SrcAddr") == {"time": "StartTime", "src": "SrcAddr"}
    with pytest.raises(SchemaError, match="unknown canonical column 'source'"):
        parse_mapping("source=SrcAddr")
    with pytest.raises(SchemaError, match="not of the form"):
        parse_mapping("time")
