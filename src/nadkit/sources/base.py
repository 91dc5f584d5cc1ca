"""What every source module shares: sniffing a file's head, scanning CSV safely, typed casts that
remember where a value failed to parse, and turning a source's own columns into the canonical table.

A source module exposes ``NAME``, ``DESCRIPTION``, ``SUFFIXES``, ``detect(head) -> bool`` and
``read(path, **options) -> pl.LazyFrame``. ``read`` is lazy; :func:`nadkit.sources.load` collects and
validates. A cast that fails on a value leaves a marker column (``__invalid__<name>``) so that
validation can name the row and value instead of silently producing nulls.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Protocol

import polars as pl

from nadkit.errors import FormatError, SchemaError
from nadkit.schema import CANONICAL, NUMERIC_CANONICAL, TIME_DTYPE, canonical_order, snake_case

log = logging.getLogger(__name__)

INVALID_PREFIX = "__invalid__"
GZIP_MAGIC = b"\x1f\x8b"
HEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Head:
    """The first bytes of a file (decompressed when gzip), for format detection."""

    path: Path
    raw: bytes
    compressed: bool = False
    suffixes: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, path: str | Path, size: int = HEAD_BYTES) -> Head:
        """Read the head of ``path``; gzip input is decompressed transparently."""
        path = Path(path)
        with path.open("rb") as handle:
            raw = handle.read(size)
        compressed = raw.startswith(GZIP_MAGIC)
        if compressed:
            try:
                with gzip.open(path, "rb") as handle:
                    raw = handle.read(size)
            except (OSError, EOFError) as error:
                raise FormatError(f"{path}: gzip data is corrupt ({error})") from error
        suffixes = tuple(s.lower() for s in path.suffixes if s.lower() != ".gz")
        return cls(path=path, raw=raw, compressed=compressed, suffixes=suffixes)

    @cached_property
    def is_text(self) -> bool:
        """True when the head looks like text (no NUL bytes, decodes as UTF-8 or Latin-1)."""
        if not self.raw or b"\x00" in self.raw[:4096]:
            return False
        sample = self.raw[:4096]
        printable = sum(32 <= b < 127 or b in (9, 10, 13) or b >= 128 for b in sample)
        return printable / len(sample) > 0.95

    @cached_property
    def text(self) -> str:
        """The head decoded as text (BOM removed), or '' for binary data."""
        if not self.is_text:
            return ""
        return self.raw.decode("utf-8", errors="replace").lstrip("\ufeff")

    @cached_property
    def lines(self) -> list[str]:
        """Complete lines of the head (the last, possibly cut, line dropped when the head is full)."""
        lines = self.text.splitlines()
        if len(self.raw) >= HEAD_BYTES and lines:
            lines = lines[:-1]
        return lines

    @cached_property
    def first_line(self) -> str:
        """The first non-empty line."""
        return next((line for line in self.lines if line.strip()), "")

    def header_fields(self, separator: str = ",") -> list[str]:
        """The first line split into stripped field names."""
        return [f.strip().strip('"') for f in self.first_line.split(separator)]

    def header_set(self, separator: str = ",") -> set[str]:
        """Header fields, lower-cased, for membership tests."""
        return {f.lower() for f in self.header_fields(separator)}


class SourceModule(Protocol):
    """The interface of a module under ``nadkit.sources``."""

    NAME: str
    DESCRIPTION: str
    SUFFIXES: tuple[str, ...]

    def detect(self, head: Head) -> bool: ...

    def read(self, path: str | Path, **options: object) -> pl.LazyFrame: ...


def scan_csv(path: str | Path, **options: object) -> pl.LazyFrame:
    """``pl.scan_csv`` with the settings every flow CSV needs (gzip is handled by Polars)."""
    settings: dict[str, object] = {
        "infer_schema_length": 10_000,
        "null_values": ["", "NA", "NaN", "nan", "-", "Infinity", "-Infinity", "inf", "-inf"],
        "truncate_ragged_lines": False,
    }
    settings.update(options)
    try:
        return pl.scan_csv(path, **settings)  # type: ignore[arg-type]
    except (pl.exceptions.PolarsError, OSError) as error:
        raise SchemaError(_first_line(error), path=path) from error


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def column_lookup(names: Iterable[str]) -> dict[str, str]:
    """Map normalised (``snake_case``) names to a frame's actual column names."""
    return {snake_case(name): name for name in names}


def numeric(source: str | pl.Expr, dtype: pl.DataType, name: str) -> list[pl.Expr]:
    """Cast ``source`` to ``dtype`` as column ``name``, with a marker for values that failed to parse.

    Text such as ``"1,234"`` or ``"abc"`` in a numeric field becomes null in ``name`` and ``True`` in
    ``__invalid__name``; validation turns the first such row into a :class:`SchemaError`.
    Floats with a fractional part cast to an integer column are rounded (NetFlow exports write
    ``12.0``).
    """
    expr = pl.col(source) if isinstance(source, str) else source
    as_text = expr.cast(pl.String).str.strip_chars()
    as_float = as_text.cast(pl.Float64, strict=False)
    if dtype.is_integer():
        # hexadecimal ports (Argus writes ICMP type/code as 0x0303)
        as_hex = as_text.str.strip_prefix("0x").str.to_integer(base=16, strict=False)
        is_hex = as_text.str.starts_with("0x")
        value = (pl.when(is_hex).then(as_hex).otherwise(as_float.round(0).cast(pl.Int64, strict=False))).cast(
            dtype, strict=False
        )
    else:
        value = as_float.cast(dtype, strict=False)
    invalid = as_text.is_not_null() & (as_text != "") & value.is_null()
    if dtype.is_float():
        invalid = invalid & ~as_text.str.to_lowercase().str.contains("nan|inf")
    return [value.alias(name), invalid.alias(INVALID_PREFIX + name)]


def epoch_to_time(source: str | pl.Expr, *, unit: str = "auto", name: str = "time") -> list[pl.Expr]:
    """Epoch numbers (seconds, milliseconds or microseconds; ``auto`` guesses by magnitude) to UTC time."""
    expr = pl.col(source) if isinstance(source, str) else source
    as_text = expr.cast(pl.String).str.strip_chars()
    seconds = as_text.cast(pl.Float64, strict=False)
    if unit == "auto":
        micros = (
            pl.when(seconds.abs() > 1e14)
            .then(seconds)
            .when(seconds.abs() > 1e11)
            .then(seconds * 1e3)
            .otherwise(seconds * 1e6)
        )
    else:
        factor = {"s": 1e6, "ms": 1e3, "us": 1.0}[unit]
        micros = seconds * factor
    value = micros.round(0).cast(pl.Int64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    invalid = as_text.is_not_null() & (as_text != "") & seconds.is_null()
    return [value.alias(name), invalid.alias(INVALID_PREFIX + name)]


def text_to_time(
    source: str | pl.Expr, formats: Sequence[str] | None = None, *, name: str = "time"
) -> list[pl.Expr]:
    """Parse text timestamps (trying each format in turn; ISO-8601 when none given) as UTC time."""
    expr = pl.col(source) if isinstance(source, str) else source
    as_text = expr.cast(pl.String).str.strip_chars()
    candidates = [
        as_text.str.to_datetime(fmt, strict=False, time_unit="us").dt.replace_time_zone(None)
        for fmt in (formats or [None])  # type: ignore[list-item]
    ]
    value = pl.coalesce(candidates).dt.replace_time_zone("UTC")
    invalid = as_text.is_not_null() & (as_text != "") & value.is_null()
    return [value.alias(name), invalid.alias(INVALID_PREFIX + name)]


def text(source: str | pl.Expr, name: str) -> pl.Expr:
    """A text column, stripped, empty and ``-`` as null."""
    expr = pl.col(source) if isinstance(source, str) else source
    stripped = expr.cast(pl.String).str.strip_chars()
    return pl.when(stripped.is_in(["", "-", "(empty)"])).then(None).otherwise(stripped).alias(name)


def build(
    frame: pl.LazyFrame,
    canonical: Mapping[str, pl.Expr | list[pl.Expr]],
    *,
    consumed: Iterable[str] = (),
    keep_text: Iterable[str] = (),
) -> pl.LazyFrame:
    """Assemble the canonical table from a source's frame.

    ``canonical`` maps canonical names to expressions (or expression lists from :func:`numeric`);
    source columns not listed in ``consumed`` are kept under ``snake_case`` names when numeric, and
    text columns named in ``keep_text`` (source names) are kept as text.
    """
    schema = frame.collect_schema()
    exprs: list[pl.Expr] = []
    produced: set[str] = set()
    for name, expr in canonical.items():
        parts = expr if isinstance(expr, list) else [expr.alias(name)]
        exprs.extend(parts)
        produced.add(name)
    consumed_set = set(consumed)
    keep_text_set = set(keep_text)
    for column, dtype in schema.items():
        if column in consumed_set:
            continue
        target = snake_case(column)
        if target in produced or target.startswith("__"):
            continue
        if dtype.is_numeric() or dtype == pl.Boolean:
            exprs.append(pl.col(column).cast(pl.Float64 if dtype.is_float() else dtype).alias(target))
        elif column in keep_text_set:
            exprs.append(text(column, target))
        elif dtype == pl.String and column not in keep_text_set:
            # numbers that Polars inferred as text because of a stray value are still numbers
            exprs.extend(numeric(column, pl.Float64(), target))
        else:
            continue
        produced.add(target)
    out = frame.select(exprs)
    names = out.collect_schema().names()
    casts = [
        pl.col(n).cast(CANONICAL[n])
        for n in names
        if n in CANONICAL and n != "time" and n not in NUMERIC_CANONICAL
    ]
    if "time" in names:
        casts.append(pl.col("time").cast(TIME_DTYPE))
    visible = [n for n in names if not n.startswith(INVALID_PREFIX)]
    hidden = [n for n in names if n.startswith(INVALID_PREFIX)]
    return out.with_columns(casts).select(canonical_order(visible) + hidden)


def check_invalid(frame: pl.DataFrame, path: str | Path | None, *, row_offset: int = 0) -> pl.DataFrame:
    """Raise :class:`SchemaError` for the first value that failed to parse; drop the marker columns."""
    markers = [c for c in frame.columns if c.startswith(INVALID_PREFIX)]
    if not markers:
        return frame
    firsts = frame.select([pl.col(m).fill_null(False).arg_true().first().alias(m) for m in markers]).row(0)
    bad = [(first, marker) for first, marker in zip(firsts, markers, strict=True) if first is not None]
    if bad:
        first, marker = min(bad)
        column = marker.removeprefix(INVALID_PREFIX)
        raise SchemaError(
            "value could not be parsed as the column's type",
            path=path,
            column=column,
            row=row_offset + first + 1,
        )
    return frame.drop(markers)


def require_columns(names: Iterable[str], required: Iterable[str], path: str | Path, fmt: str) -> None:
    """Raise a :class:`SchemaError` naming the first required source column that is missing."""
    have = set(names)
    for column in required:
        if column not in have:
            raise SchemaError(f"not a valid {fmt} file: column is missing", path=path, column=column)


def pick(lookup: Mapping[str, str], *candidates: str) -> str | None:
    """The first of ``candidates`` (``snake_case`` names) present in ``lookup``, as the actual name."""
    for candidate in candidates:
        if candidate in lookup:
            return lookup[candidate]
    return None


def check_last_row(path: str | Path, *, rows: int | None, separator: str = ",") -> None:
    """Raise :class:`SchemaError` when a delimited text file ends in the middle of a row.

    A cut-off download or a copy interrupted mid-write leaves a last row with fewer fields than the
    header; CSV parsers fill the gap with nulls, so it is checked here. Compressed files are not
    checked (their decompression fails on truncation by itself).
    """
    import csv

    path = Path(path)
    with path.open("rb") as handle:
        if handle.read(2) == GZIP_MAGIC:
            return
        handle.seek(0)
        header_line = handle.readline().decode("utf-8", errors="replace").lstrip("\ufeff")
        size = path.stat().st_size
        handle.seek(max(0, size - HEAD_BYTES))
        tail = handle.read().decode("utf-8", errors="replace")
    lines = [line for line in tail.splitlines() if line.strip()]
    if len(lines) < 2:
        return
    expected = len(next(csv.reader([header_line], delimiter=separator)))
    got = len(next(csv.reader([lines[-1]], delimiter=separator)))
    if got < expected:
        raise SchemaError(f"last row has {got} of {expected} fields (file truncated?)", path=path, row=rows)
