"""NAD 2021 (ZYELL-NCTU) firewall flow CSV: one file per day, 22 columns plus ``label`` when labelled.

``time`` is local wall-clock text ``%Y-%m-%d %H:%M:%S`` (read as UTC), ``proto`` an IP protocol number,
byte columns are named ``out (bytes)`` and ``in (bytes)``; the twelve ``cnt_*`` counters are kept.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from nadkit.schema import label_expr, proto_name_expr
from nadkit.sources.base import Head, build, numeric, require_columns, scan_csv, text, text_to_time

NAME = "nad"
DESCRIPTION = "NAD 2021 firewall flow CSV (time, src, dst, spt, dpt, duration, out (bytes), ...)"
SUFFIXES = (".csv",)
#: delimited text: `load_flows` checks that the last row is complete
LAST_ROW_SEPARATOR = ","

COUNTERS = (
    "cnt_dst",
    "cnt_src",
    "cnt_serv_src",
    "cnt_serv_dst",
    "cnt_dst_slow",
    "cnt_src_slow",
    "cnt_serv_src_slow",
    "cnt_serv_dst_slow",
    "cnt_dst_conn",
    "cnt_src_conn",
    "cnt_serv_src_conn",
    "cnt_serv_dst_conn",
)
COLUMNS = (
    "time",
    "src",
    "dst",
    "spt",
    "dpt",
    "duration",
    "out (bytes)",
    "in (bytes)",
    "proto",
    "app",
    *COUNTERS,
)
#: ``%.f`` also accepts whole seconds, so one format covers both
TIME_FORMATS = ("%Y-%m-%d %H:%M:%S%.f",)


def detect(head: Head) -> bool:
    """NAD files carry the ``out (bytes)`` / ``in (bytes)`` headers and the ``cnt_`` counters."""
    fields = head.header_set()
    return {"out (bytes)", "in (bytes)", "src", "dst"} <= fields


def read(path: str | Path, **_: object) -> pl.LazyFrame:
    """Scan a NAD CSV lazily into the canonical table (counters kept as ``cnt_*`` columns)."""
    frame = scan_csv(path, schema_overrides={"time": pl.String, "src": pl.String, "dst": pl.String})
    schema = frame.collect_schema()
    names = schema.names()
    require_columns(names, COLUMNS[:10], path, "NAD 2021")
    canonical: dict[str, pl.Expr | list[pl.Expr]] = {
        "time": text_to_time("time", TIME_FORMATS),
        "src": text("src", "src"),
        "dst": text("dst", "dst"),
        "spt": numeric("spt", pl.Int64(), "spt", source_dtype=schema["spt"]),
        "dpt": numeric("dpt", pl.Int64(), "dpt", source_dtype=schema["dpt"]),
        "proto": proto_name_expr("proto").alias("proto"),
        "app": text(pl.col("app").cast(pl.String).str.to_lowercase(), "app"),
        "duration": numeric("duration", pl.Float64(), "duration", source_dtype=schema["duration"]),
        "out_bytes": numeric("out (bytes)", pl.Int64(), "out_bytes", source_dtype=schema["out (bytes)"]),
        "in_bytes": numeric("in (bytes)", pl.Int64(), "in_bytes", source_dtype=schema["in (bytes)"]),
    }
    for counter in COUNTERS:
        if counter in names:
            canonical[counter] = numeric(counter, pl.Int64(), counter, source_dtype=schema[counter])
    consumed = set(COLUMNS)
    if "label" in names:
        canonical["label"] = label_expr("label").alias("label")
        canonical["label_original"] = pl.col("label").cast(pl.String).alias("label_original")
        consumed.add("label")
    return build(frame, canonical, consumed=consumed)
