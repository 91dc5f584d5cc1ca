"""The alert record: one scored flow as every output writes it.

A record is the flow's identifying columns (:data:`~nadkit.schema.RECORD_FLOW_COLUMNS`, those
present) and the scorer's columns (:data:`SCORE_COLUMNS`): ``row`` (the flow's 1-based position in
its input), ``score``, ``threshold``, ``score_percentile`` (the score's percentile among the normal
hold-out scores of training, 0-100; null for a model saved without them), ``threshold_multiple``
(``score / threshold``), ``severity`` (``low``, ``medium``, ``high`` or ``critical`` for alerts, see
:class:`~nadkit.evaluation.calibration.SeverityRules`), ``alert``, ``class``, ``top_features`` (a list
of :data:`TOP_FEATURE`) and ``explanation`` (the top features in words, for alerts). Batch detection,
Spark, the stream's sinks, the store and the service write records through this module, so they agree
on the columns and on ONE time format (:data:`TIME_FORMAT`: ISO 8601 in UTC with microseconds and
``Z``).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import polars as pl

from nadkit.errors import ConfigError
from nadkit.schema import RECORD_FLOW_COLUMNS

#: one entry of ``top_features``: the feature, its contribution to the score, and its value as text;
#: its readable ``label``, its ``share`` of the score in percent (of the sum of absolute contributions,
#: so signed attributions count by size) and its ``normal`` range on training traffic as text
TOP_FEATURE: Final = pl.Struct(
    {
        "feature": pl.String,
        "contribution": pl.Float64,
        "value": pl.String,
        "label": pl.String,
        "share": pl.Float64,
        "normal": pl.String,
    }
)
#: the columns the scorer adds to a flow, with their types
SCORE_SCHEMA: Final = {
    "row": pl.Int64,
    "score": pl.Float64,
    "threshold": pl.Float64,
    "score_percentile": pl.Float64,
    "threshold_multiple": pl.Float64,
    "severity": pl.String,
    "alert": pl.Boolean,
    "class": pl.String,
    "top_features": pl.List(TOP_FEATURE),
    "explanation": pl.String,
}
SCORE_COLUMNS: Final = frozenset(SCORE_SCHEMA)
#: the flow columns copied into every record (those present)
ID_COLUMNS: Final = RECORD_FLOW_COLUMNS
#: how every record writes a time, in Polars' layout ...
TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S%.6fZ"
#: ... and in Python's (the same text)
STRFTIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"
#: the layout Polars parses record times with (any number of fraction digits)
PARSE_FORMAT: Final = "%Y-%m-%dT%H:%M:%S%.fZ"
#: record files by suffix
OUTPUT_KINDS: Final = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".csv": "csv"}
#: the suffixes of files written as ECS documents (JSON lines)
ECS_SUFFIXES: Final = (".json", ".jsonl", ".ndjson")


def format_time(value: datetime) -> str:
    """A time as records write it (a naive time is taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime(STRFTIME_FORMAT)


def times_as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with every datetime column as record time text."""
    times = [c for c, dtype in frame.schema.items() if isinstance(dtype, pl.Datetime)]
    return frame.with_columns(pl.col(times).dt.to_string(TIME_FORMAT)) if times else frame


def empty_records() -> pl.DataFrame:
    """No records, with the scorer's columns and types."""
    return pl.DataFrame(schema=SCORE_SCHEMA)


def flat_top_features(frame: pl.DataFrame) -> pl.DataFrame:
    """``top_features`` as one text per record (``feature=value (contribution); ...``), for CSV."""
    return frame.with_columns(
        pl.col("top_features")
        .list.eval(
            pl.format(
                "{}={} ({})",
                pl.element().struct.field("feature"),
                pl.element().struct.field("value").fill_null(""),
                pl.element().struct.field("contribution").round(4),
            )
        )
        .list.join("; ")
    )


def json_lines(records: pl.DataFrame) -> list[bytes]:
    """One JSON text per record."""
    if records.height == 0:
        return []
    buffer = io.BytesIO()
    times_as_text(records).write_ndjson(buffer)
    return buffer.getvalue().splitlines()


def output_kind(path: str | Path, layout: str = "nadkit") -> str:
    """``jsonl``, ``parquet`` or ``csv`` from a record file's suffix; ConfigError otherwise.
    ``layout="ecs"`` (Elastic Common Schema documents, :mod:`nadkit.alerts.ecs`) gives ``ecs`` for a
    JSON-lines file (:data:`ECS_SUFFIXES`)."""
    suffix = Path(path).suffix.lower()
    if layout == "ecs":
        if suffix not in ECS_SUFFIXES:
            known = ", ".join(ECS_SUFFIXES)
            raise ConfigError(f"{path}: ECS documents are written as JSON lines (use one of {known})")
        return "ecs"
    if layout != "nadkit":
        raise ConfigError(f"unknown output layout {layout!r} (use nadkit or ecs)")
    try:
        return OUTPUT_KINDS[suffix]
    except KeyError:
        known = ", ".join(sorted(OUTPUT_KINDS))
        raise ConfigError(
            f"{path}: unknown output type {suffix or '(none)'!r} (use one of {known})"
        ) from None


class RecordWriter:
    """Appends record batches to one JSON-lines, Parquet or CSV file (``kind``, see
    :func:`output_kind`); :meth:`close` leaves a valid file even when nothing was written (empty
    JSON lines, a CSV header, an empty Parquet file with the scorer's columns)."""

    def __init__(self, path: Path, kind: str) -> None:
        self.path = path
        self.kind = kind
        self._handle: Any = None
        self._parquet: Any = None
        self.rows = 0

    def write(self, frame: pl.DataFrame) -> None:
        if frame.height == 0:
            return
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            table = frame.to_arrow()
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, table.schema)
            self._parquet.write_table(table)
        elif self.kind == "jsonl":
            if self._handle is None:
                self._handle = self.path.open("wb")
            times_as_text(frame).write_ndjson(self._handle)
        else:
            flat = flat_top_features(frame) if "top_features" in frame.columns else frame
            if self._handle is None:
                self._handle = self.path.open("wb")
                flat.write_csv(self._handle, include_header=True)
            else:
                flat.write_csv(self._handle, include_header=False)
        self.rows += frame.height

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._handle is not None:
            self._handle.close()
        if self.rows == 0:
            empty = empty_records()
            if self.kind == "parquet":
                empty.write_parquet(self.path)
            elif self.kind == "csv":
                empty.drop("top_features").write_csv(self.path)
            else:
                self.path.write_bytes(b"")
