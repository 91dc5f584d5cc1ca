"""A summary of a flow table: what `nadkit inspect` shows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from nadkit.schema import IDENTIFYING
from nadkit.sources import expand, load_flows


@dataclass(frozen=True)
class ColumnSummary:
    """One column: name, dtype and how many values are null."""

    name: str
    dtype: str
    nulls: int


@dataclass(frozen=True)
class FlowSummary:
    """What a person wants to know about a flow file before using it."""

    path: str
    format: str
    files: int
    rows: int
    columns: list[ColumnSummary]
    time_start: str | None = None
    time_end: str | None = None
    labels: dict[str, int] = field(default_factory=dict)
    missing_identifying: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dictionary."""
        return asdict(self)


def summarize(frame: pl.DataFrame, *, path: str | Path, fmt: str, files: int = 1) -> FlowSummary:
    """Summarise a canonical flow table already in memory."""
    nulls = frame.null_count().row(0) if frame.width else ()
    columns = [
        ColumnSummary(name=name, dtype=str(dtype), nulls=int(count))
        for (name, dtype), count in zip(frame.schema.items(), nulls, strict=True)
    ]
    time_start = time_end = None
    if "time" in frame.columns and frame.height:
        low, high = frame.select(pl.col("time").min().alias("low"), pl.col("time").max().alias("high")).row(0)
        time_start = low.isoformat() if low is not None else None
        time_end = high.isoformat() if high is not None else None
    labels: dict[str, int] = {}
    if "label" in frame.columns:
        counts = frame["label"].fill_null("(none)").value_counts(sort=True)
        labels = {str(k): int(v) for k, v in counts.iter_rows()}
    return FlowSummary(
        path=str(path),
        format=fmt,
        files=files,
        rows=frame.height,
        columns=columns,
        time_start=time_start,
        time_end=time_end,
        labels=labels,
        missing_identifying=[c for c in IDENTIFYING if c not in frame.columns],
    )


def inspect_path(
    path: str | Path, *, format: str | None = None, mapping: str | None = None, **options: object
) -> FlowSummary:
    """Read ``path`` (file, directory or glob) and summarise it (``options``: those of
    :func:`nadkit.sources.load_flows`, e.g. ``on_file``)."""
    frame, fmt = load_flows(path, format=format, mapping=mapping, **options)
    return summarize(frame, path=path, fmt=fmt, files=len(expand(path)))
