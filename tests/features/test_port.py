"""Port features: IANA ranges at their boundaries and port equality."""

from __future__ import annotations

import polars as pl
import pytest

from nadkit.features.port import PORT_AREAS, PortGroup


def port_area(row: dict[str, float], side: str) -> str:
    hot = [name for name, _, _ in PORT_AREAS if row[f"{side}_area={name}"] == 1.0]
    assert len(hot) <= 1
    return hot[0] if hot else "none"


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        (0, "well_known"),
        (1023, "well_known"),
        (1024, "registered"),
        (49151, "registered"),
        (49152, "ephemeral"),
        (65535, "ephemeral"),
        (None, "none"),
        (70000, "none"),
    ],
)
def test_port_area_boundaries(port: int | None, expected: str) -> None:
    frame = pl.DataFrame({"spt": [port], "dpt": [port]}, schema={"spt": pl.Int64, "dpt": pl.Int64})
    row = PortGroup().apply(frame, {}).row(0, named=True)
    assert port_area(row, "spt") == expected
    assert port_area(row, "dpt") == expected


def test_port_match() -> None:
    frame = pl.DataFrame({"spt": [53, 53, 40000, None], "dpt": [53, 54, 80, 80]})
    out = PortGroup().apply(frame, {})
    assert out["port_match"].to_list() == [1.0, 0.0, 0.0, 0.0]
    assert out["spt_area=ephemeral"].to_list() == [0.0, 0.0, 0.0, 0.0]
    assert out["spt_area=registered"].to_list() == [0.0, 0.0, 1.0, 0.0]
    assert out.columns == [
        "spt_area=well_known",
        "spt_area=registered",
        "spt_area=ephemeral",
        "dpt_area=well_known",
        "dpt_area=registered",
        "dpt_area=ephemeral",
        "port_match",
    ]


def test_port_group_needs_both_ports() -> None:
    assert PortGroup().missing(["spt"]) == ["dpt"]
    assert PortGroup().missing(["spt", "dpt"]) == []
