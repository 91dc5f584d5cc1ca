"""Canonical flow tables in Parquet / Arrow IPC: scanned lazily, brought to canonical dtypes."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from nadkit.errors import FormatError, SchemaError
from nadkit.schema import CANONICAL
from nadkit.sources import detect_format, load_flows, read_flows
from tests.sources.test_nad import HEADER, ROWS


def _nad_frame(tmp_path: Path) -> pl.DataFrame:
    path = tmp_path / "day.csv"
    path.write_text("\n".join([HEADER, *ROWS]) + "\n")
    frame, _ = load_flows(path)
    return frame


def test_round_trip_of_a_canonical_table(tmp_path: Path) -> None:
    original = _nad_frame(tmp_path)
    path = tmp_path / "flows.parquet"
    original.write_parquet(path)
    assert detect_format(path) == "parquet"
    lazy, fmt = read_flows(path)
    assert isinstance(lazy, pl.LazyFrame) and fmt == "parquet"
    frame, _ = load_flows(path)
    assert_frame_equal(frame, original)
    assert frame["time"][2] == datetime(2020, 12, 3, 13, 45, 59, tzinfo=UTC)


def test_arrow_ipc_file(tmp_path: Path) -> None:
    original = _nad_frame(tmp_path)
    path = tmp_path / "flows.arrow"
    original.write_ipc(path)
    assert detect_format(path) == "parquet"
    frame, _ = load_flows(path)
    assert_frame_equal(frame, original)


def test_other_dtypes_are_brought_to_canonical(tmp_path: Path) -> None:
    table = pl.DataFrame(
        {
            "extra_text": ["a", "b", "c"],
            "time": [datetime(2021, 5, 1, 12, 0, 0), datetime(2021, 5, 1, 12, 0, 1), None],
            "src": ["10.0.0.1", "10.0.0.2", "10.0.0.3"],
            "dpt": pl.Series([80, 443, 53], dtype=pl.Int32),
            "proto": pl.Series([6, 17, 1], dtype=pl.UInt8),
            "duration": pl.Series([1.5, 0.0, 2.25], dtype=pl.Float32),
            "out_bytes": [100.0, 200.0, 300.0],
            "label": ["normal", "scan", None],
            "score": [0.5, 0.25, 0.125],
        }
    ).with_columns(pl.col("time").cast(pl.Datetime("ns")))
    path = tmp_path / "other.parquet"
    table.write_parquet(path)
    frame, _ = load_flows(path)
    for name in ("time", "src", "dpt", "proto", "duration", "out_bytes", "label"):
        assert frame.schema[name] == CANONICAL[name], name
    assert frame.columns == [
        "time",
        "src",
        "dpt",
        "proto",
        "duration",
        "out_bytes",
        "label",
        "extra_text",
        "score",
    ]
    assert frame["time"].to_list() == [
        datetime(2021, 5, 1, 12, 0, 0, tzinfo=UTC),
        datetime(2021, 5, 1, 12, 0, 1, tzinfo=UTC),
        None,
    ]
    assert frame["proto"].to_list() == ["tcp", "udp", "icmp"]
    assert frame["dpt"].to_list() == [80, 443, 53]
    assert frame["out_bytes"].to_list() == [100, 200, 300]
    assert frame["duration"].to_list() == [1.5, 0.0, 2.25]
    assert frame["extra_text"].to_list() == ["a", "b", "c"]  # other columns as they are
    assert frame["score"].to_list() == [0.5, 0.25, 0.125]


def test_time_zone_and_epoch_time(tmp_path: Path) -> None:
    aware = pl.DataFrame(
        {"time": [datetime(2021, 5, 1, 14, 0, tzinfo=UTC)], "src": ["10.0.0.1"], "dst": ["10.0.0.2"]}
    ).with_columns(pl.col("time").dt.convert_time_zone("Europe/Berlin"))
    aware.write_parquet(tmp_path / "aware.parquet")
    frame, _ = load_flows(tmp_path / "aware.parquet")
    assert frame["time"][0] == datetime(2021, 5, 1, 14, 0, tzinfo=UTC)
    assert frame.schema["time"] == pl.Datetime("us", "UTC")

    epoch = pl.DataFrame({"time": [1_620_000_000_000], "src": ["10.0.0.1"], "dst": ["10.0.0.2"]})
    epoch.write_parquet(tmp_path / "epoch.parquet")
    frame, _ = load_flows(tmp_path / "epoch.parquet")
    assert frame["time"][0] == datetime(2021, 5, 3, 0, 0, tzinfo=UTC)


def test_bad_text_value_names_column_and_row(tmp_path: Path) -> None:
    table = pl.DataFrame({"src": ["a", "b", "c"], "dst": ["d", "e", "f"], "spt": ["1", "2", "three"]})
    table.write_parquet(tmp_path / "bad.parquet")
    with pytest.raises(SchemaError) as caught:
        load_flows(tmp_path / "bad.parquet")
    assert (caught.value.column, caught.value.row) == ("spt", 3)


def test_non_canonical_parquet_suggests_mapping(tmp_path: Path) -> None:
    pl.DataFrame({"SrcAddr": ["10.0.0.1"], "DstAddr": ["10.0.0.2"], "TotBytes": [10]}).write_parquet(
        tmp_path / "argus.parquet"
    )
    assert detect_format(tmp_path / "argus.parquet") == "parquet"
    with pytest.raises(FormatError, match="--map"):
        load_flows(tmp_path / "argus.parquet")


def test_compressed_parquet_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "flows.parquet"
    _nad_frame(tmp_path).write_parquet(source)
    path = tmp_path / "flows.parquet.gz"
    path.write_bytes(gzip.compress(source.read_bytes()))
    with pytest.raises(FormatError, match="decompress"):
        detect_format(path)


def test_corrupt_parquet_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1" + b"\x00" * 64)
    with pytest.raises(FormatError) as caught:
        load_flows(path)
    assert str(path) in str(caught.value)
