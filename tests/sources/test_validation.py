"""Values every reader checks: addresses, ports, blank rows; refused with the file, row and column
named, or skipped and counted with ``on_bad_rows="skip"``."""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl
import pytest

from nadkit.errors import SchemaError
from nadkit.schema import valid_addresses
from nadkit.sources import iter_flows, load_flows
from tests.sources.test_argus import HEADER as ARGUS_HEADER
from tests.sources.test_argus import ROWS as ARGUS_ROWS
from tests.sources.test_nad import HEADER as NAD_HEADER
from tests.sources.test_nad import ROWS as NAD_ROWS

GOOD = "2021-02-01T00:00:00Z,10.0.0.1,10.0.0.2,40000,443,tcp"


def _canonical(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "flows.csv"
    path.write_text("\n".join(["time,src,dst,spt,dpt,proto", GOOD, *rows]) + "\n")
    return path


def test_addresses() -> None:
    values = ["10.0.0.1", "::1", "2001:db8::1", "fe80::1%eth0", "00:11:22:33:44:55", None]
    assert valid_addresses(pl.Series(values)).to_list() == [True] * 5 + [None]
    bad = ["999.1.1.1", "abc", "1.2.3", "<script>alert(1)</script>", "6", "149.1", "10.0.0.01", ""]
    assert not any(valid_addresses(pl.Series(bad)).to_list())


@pytest.mark.parametrize(
    ("row", "column", "message"),
    [
        ("2021-02-01T00:00:01Z,999.1.1.1,10.0.0.2,1,2,tcp", "src", "not an IPv4 or IPv6 address"),
        ("2021-02-01T00:00:01Z,10.0.0.3,abc,1,2,tcp", "dst", "not an IPv4 or IPv6 address"),
        ("2021-02-01T00:00:01Z,1.2.3,10.0.0.2,1,2,tcp", "src", "not an IPv4 or IPv6 address"),
        ("2021-02-01T00:00:01Z,<b>x</b>,10.0.0.2,1,2,tcp", "src", "not an IPv4 or IPv6 address"),
        ("2021-02-01T00:00:01Z,10.0.0.3,10.0.0.2,1,70000,tcp", "dpt", "port outside 0-65535"),
        ("2121-02-01T00:00:01Z,10.0.0.3,10.0.0.2,1,2,tcp", "time", "more than a year ahead"),
    ],
)
def test_bad_values_are_named(tmp_path: Path, row: str, column: str, message: str) -> None:
    path = _canonical(tmp_path, row)
    with pytest.raises(SchemaError, match=message) as caught:
        load_flows(path)
    assert caught.value.column == column and caught.value.row == 2 and caught.value.path == str(path)


def test_skip_drops_and_counts_bad_rows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _canonical(
        tmp_path,
        "2021-02-01T00:00:01Z,999.1.1.1,10.0.0.2,1,2,tcp",
        "2021-02-01T00:00:02Z,10.0.0.3,10.0.0.4,1,many,tcp",
        GOOD,
    )
    with caplog.at_level(logging.WARNING):
        frame, _ = load_flows(path, on_bad_rows="skip")
    assert frame.height == 2 and frame["src"].to_list() == ["10.0.0.1", "10.0.0.1"]
    text = caplog.text
    assert "dpt: value could not be parsed (1)" in text and "src: not an IPv4 or IPv6 address (1)" in text
    pieces = list(iter_flows(path, on_bad_rows="skip", chunk_rows=2))
    assert sum(p.height for p in pieces) == 2
    with pytest.raises(SchemaError, match="on_bad_rows"):
        load_flows(path, on_bad_rows="ignore")  # type: ignore[arg-type]


def test_a_nad_header_with_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "nad.csv"
    path.write_text("\n".join([NAD_HEADER, NAD_ROWS[0], ",,,,,,,,,,,,,,,,,,,,,,"]) + "\n")
    with pytest.raises(SchemaError, match="blank or cut-off line") as caught:
        load_flows(path)
    assert caught.value.row == 2


def test_a_cut_argus_row_is_not_read_as_a_flow(tmp_path: Path) -> None:
    """The last line of a copied .binetflow cut in the destination address: refused, not read as the
    destination ``147.3``."""
    path = tmp_path / "flows.binetflow"
    cut = ARGUS_ROWS[0][: ARGUS_ROWS[0].index("147.32.84.229") + 5]
    path.write_text("\n".join([ARGUS_HEADER, *ARGUS_ROWS, cut]) + "\n")
    with pytest.raises(SchemaError):
        load_flows(path)
