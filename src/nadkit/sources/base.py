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
import math
import os
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

import polars as pl

from nadkit.errors import ConfigError, FormatError, SchemaError
from nadkit.schema import (
    CANONICAL,
    NUMERIC_CANONICAL,
    TIME_DTYPE,
    canonical_order,
    label_expr,
    proto_name_expr,
    snake_case,
)

log = logging.getLogger(__name__)

INVALID_PREFIX = "__invalid__"
#: hidden column holding a row's 0-based position in its file, for readers that drop rows
#: (repeated headers, blank lines) before values are checked
SOURCE_ROW = "__source_row__"
#: text time layouts tried after ISO-8601 when a source does not fix one (year first only: a
#: day/month order cannot be guessed safely)
TEXT_TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.fZ",
    "%Y-%m-%dT%H:%M:%S%.f%z",
    "%Y-%m-%d %H:%M:%S%.f%z",
    "%Y/%m/%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d",
)
GZIP_MAGIC = b"\x1f\x8b"
HEAD_BYTES = 64 * 1024
#: gzip input may decompress to at most this many MiB (``NADKIT_MAX_DECOMPRESSED_MB`` or
#: ``nadkit --max-decompressed-mb``) ...
MAX_DECOMPRESSED_ENV = "NADKIT_MAX_DECOMPRESSED_MB"
DEFAULT_MAX_DECOMPRESSED_MB = 4096
#: ... and past :data:`RATIO_FLOOR_BYTES`, to at most this many times its compressed size
#: (``NADKIT_MAX_GZIP_RATIO``): flow files compress 2 to 20 times, a gzip bomb about 1,000 times
MAX_RATIO_ENV = "NADKIT_MAX_GZIP_RATIO"
DEFAULT_MAX_RATIO = 100
RATIO_FLOOR_BYTES = 16 << 20


def _env_number(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{name} must be a positive number, not {text!r}")
    return value


def decompression_limits() -> tuple[int, float]:
    """The most bytes gzip input may decompress to, and the most times its compressed size."""
    megabytes = _env_number(MAX_DECOMPRESSED_ENV, DEFAULT_MAX_DECOMPRESSED_MB)
    return int(megabytes * (1 << 20)), _env_number(MAX_RATIO_ENV, DEFAULT_MAX_RATIO)


def bounded_gunzip(path: str | Path, target: BinaryIO | None = None) -> int:
    """Decompress the gzip file ``path`` (into ``target`` when given, else only counting) within the
    bounds of :func:`decompression_limits`; returns the decompressed size. A :class:`FormatError`
    names the file when it is corrupt or decompresses beyond a bound (a gzip bomb), before more than
    the bound is decompressed."""
    path = Path(path)
    limit, ratio = decompression_limits()
    packed = max(path.stat().st_size, 1)
    bound = min(limit, max(RATIO_FLOOR_BYTES, int(ratio * packed)))
    total = 0
    try:
        with gzip.open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                total += len(block)
                if total > bound:
                    why = (
                        f"more than {limit >> 20:,} MiB ({MAX_DECOMPRESSED_ENV})"
                        if bound == limit
                        else f"more than {ratio:g} times its compressed size ({MAX_RATIO_ENV})"
                    )
                    raise FormatError(f"{path}: gzip data decompresses to {why}; refused as a gzip bomb")
                if target is not None:
                    target.write(block)
    except (OSError, EOFError, zlib.error) as error:
        raise FormatError(f"{path}: gzip data is corrupt ({error})") from error
    return total


def check_gzip(path: str | Path) -> None:
    """Refuse a gzip file that is corrupt or decompresses beyond the bounds (see :func:`bounded_gunzip`);
    files that are not gzip pass untouched."""
    with Path(path).open("rb") as handle:
        if handle.read(2) != GZIP_MAGIC:
            return
    bounded_gunzip(path)


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
            except (OSError, EOFError, zlib.error) as error:
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


def scan_csv(path: str | Path, **options: object) -> pl.LazyFrame:
    """``pl.scan_csv`` with the settings every flow CSV needs (gzip is handled by Polars)."""
    settings: dict[str, object] = {
        "infer_schema_length": 10_000,
        "null_values": ["", "NA", "NaN", "nan", "-", "Infinity", "-Infinity", "inf", "-inf"],
        "truncate_ragged_lines": False,
    }
    settings.update(options)
    try:
        frame = pl.scan_csv(path, **settings)  # type: ignore[arg-type]
        # resolving the schema reads the header (and the inference rows): a file that is not CSV
        # fails here, as a SchemaError, rather than later inside a query
        frame.collect_schema()
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError) as error:
        raise SchemaError(_first_line(error), path=path) from error
    return frame


def frame_names(frame: pl.LazyFrame, path: str | Path) -> list[str]:
    """The column names of a lazy frame; a Polars failure becomes a :class:`SchemaError` naming ``path``."""
    try:
        return frame.collect_schema().names()
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError) as error:
        raise SchemaError(_first_line(error), path=path) from error


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def read_error(error: BaseException, path: str | Path) -> SchemaError:
    """A :class:`SchemaError` for a Polars or OS failure reading ``path``: the error's first line."""
    return SchemaError(_first_line(error), path=path)


def column_lookup(names: Iterable[str]) -> dict[str, str]:
    """Map normalised (``snake_case``) names to a frame's actual column names."""
    return {snake_case(name): name for name in names}


_BLANK = r"^\s*-?\s*$"


def _only_failed(raw: pl.Expr, parsed: pl.Expr) -> pl.Expr:
    """``raw`` where ``parsed`` gave nothing, else null: text work then touches only those values."""
    return pl.when(parsed.is_null() & raw.is_not_null()).then(raw)


def _parse_float(raw: pl.Expr) -> pl.Expr:
    """Text to float: plain numbers, ``inf``/``Infinity``/``NaN`` included; padded text retried stripped."""
    parsed = raw.cast(pl.Float64, strict=False)
    retry = _only_failed(raw, parsed).str.strip_chars().cast(pl.Float64, strict=False)
    return pl.coalesce(parsed, retry)


def _unparsed(raw: pl.Expr, value: pl.Expr) -> pl.Expr:
    """True where ``raw`` holds something (not empty, blank or ``-``) that gave no ``value``."""
    return _only_failed(raw, value).str.contains(_BLANK).not_().fill_null(False)


def numeric(
    source: str | pl.Expr,
    dtype: pl.DataType,
    name: str,
    *,
    source_dtype: pl.DataType | None = None,
) -> list[pl.Expr]:
    """Cast ``source`` to ``dtype`` as column ``name``, with a marker for values that failed to parse.

    Text such as ``"1,234"`` or ``"abc"`` in a numeric field becomes null in ``name`` and ``True`` in
    ``__invalid__name``; validation turns the first such row into a :class:`SchemaError`. Empty,
    blank and ``-`` values are nulls, not errors. Floats with a fractional part cast to an integer
    column are rounded (NetFlow exports write ``12.0``); ``0x``-prefixed text is hexadecimal.
    ``source_dtype``, when known to be numeric, skips the text parsing.
    """
    expr = pl.col(source) if isinstance(source, str) else source
    if source_dtype is not None and (source_dtype.is_numeric() or source_dtype == pl.Boolean):
        if dtype.is_integer() and source_dtype.is_float():
            value = expr.round(0).cast(dtype, strict=False)
        else:
            value = expr.cast(dtype, strict=False)
        return [value.alias(name), (value.is_null() & expr.is_not_null()).alias(INVALID_PREFIX + name)]
    raw = expr.cast(pl.String)
    if dtype.is_integer():
        direct = raw.cast(pl.Int64, strict=False)  # exact, also beyond float precision
        rest = _only_failed(raw, direct).str.strip_chars()
        # hexadecimal ports (Argus writes ICMP type/code as 0x0303)
        as_hex = pl.when(rest.str.starts_with("0x")).then(
            rest.str.slice(2).str.to_integer(base=16, strict=False)
        )
        as_float = rest.cast(pl.Float64, strict=False).round(0).cast(pl.Int64, strict=False)
        value = pl.coalesce(direct, as_float, as_hex).cast(dtype, strict=False)
    else:
        value = _parse_float(raw).cast(dtype, strict=False)
    return [value.alias(name), _unparsed(raw, value).alias(INVALID_PREFIX + name)]


def epoch_to_time(source: str | pl.Expr, *, unit: str = "auto", name: str = "time") -> list[pl.Expr]:
    """Epoch numbers to UTC time: seconds, ms, us or ns; ``auto`` guesses the unit by magnitude."""
    expr = pl.col(source) if isinstance(source, str) else source
    raw = expr.cast(pl.String)
    seconds = _parse_float(raw)
    if unit == "auto":
        magnitude = seconds.abs()
        micros = (
            pl.when(magnitude > 1e17)
            .then(seconds / 1e3)
            .when(magnitude > 1e14)
            .then(seconds)
            .when(magnitude > 1e11)
            .then(seconds * 1e3)
            .otherwise(seconds * 1e6)
        )
    else:
        factor = {"s": 1e6, "ms": 1e3, "us": 1.0, "ns": 1e-3}[unit]
        micros = seconds * factor
    value = micros.round(0).cast(pl.Int64, strict=False).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    return [value.alias(name), _unparsed(raw, value).alias(INVALID_PREFIX + name)]


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
    return [value.alias(name), _unparsed(as_text, value).alias(INVALID_PREFIX + name)]


def any_to_time(
    source: str | pl.Expr,
    source_dtype: pl.DataType,
    formats: Sequence[str] | None = None,
    *,
    name: str = "time",
) -> list[pl.Expr]:
    """A time column of any dtype to UTC time, for sources whose time encoding is not fixed.

    Datetimes are converted to UTC (naive ones are taken as UTC), dates become midnight, numbers
    are epoch values (unit guessed), and text is tried as epoch numbers and then as ``formats``
    (ISO-8601 and the common variants of :data:`TEXT_TIME_FORMATS` when none are given).
    """
    expr = pl.col(source) if isinstance(source, str) else source
    if isinstance(source_dtype, pl.Datetime):
        if source_dtype.time_zone is None:
            value = expr.dt.replace_time_zone("UTC")
        else:
            value = expr.dt.convert_time_zone("UTC")
        return [value.dt.cast_time_unit("us").alias(name)]
    if source_dtype == pl.Date:
        return [expr.cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias(name)]
    if source_dtype.is_numeric():
        return epoch_to_time(expr, name=name)
    return flexible_time(expr, list(formats or TEXT_TIME_FORMATS), name=name)


def convert(
    target: str,
    source: str,
    source_dtype: pl.DataType,
    *,
    time_formats: Sequence[str] | None = None,
) -> list[pl.Expr]:
    """Expressions turning one source column into canonical column ``target``, by its dtype.

    The one conversion for sources that do not fix their encodings (a user mapping, a Parquet
    file): times via :func:`any_to_time`, protocols by number or name, labels normalised (the raw
    text is not added here), text stripped, numbers parsed with a marker for bad values.
    """
    expr = pl.col(source)
    if target == "time":
        return any_to_time(expr, source_dtype, time_formats, name=target)
    if target == "proto":
        if source_dtype.is_numeric():
            expr = expr.cast(pl.Int64, strict=False)
        return [proto_name_expr(expr).alias(target)]
    if target == "label":
        return [label_expr(expr).alias(target)]
    dtype = CANONICAL[target]
    if dtype == pl.String:
        value = text(expr, target)
        return [value.str.to_lowercase().alias(target) if target == "app" else value]
    return numeric(expr, dtype, target, source_dtype=source_dtype)


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
        if column == SOURCE_ROW:
            exprs.append(pl.col(column))
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
    visible = [n for n in names if not n.startswith(INVALID_PREFIX) and n != SOURCE_ROW]
    hidden = [n for n in names if n.startswith(INVALID_PREFIX) or n == SOURCE_ROW]
    return out.with_columns(casts).select(canonical_order(visible) + hidden)


def check_invalid(frame: pl.DataFrame, path: str | Path | None, *, row_offset: int = 0) -> pl.DataFrame:
    """Raise :class:`SchemaError` for the first value that failed to parse; drop the marker columns.

    Rows are numbered from 1, by their position in the file when the reader kept a
    :data:`SOURCE_ROW` column, else by their position in ``frame``.
    """
    markers = [c for c in frame.columns if c.startswith(INVALID_PREFIX)]
    hidden = [*markers, SOURCE_ROW] if SOURCE_ROW in frame.columns else markers
    if not markers:
        return frame.drop(hidden)
    firsts = frame.select([pl.col(m).fill_null(False).arg_true().first().alias(m) for m in markers]).row(0)
    bad = [(first, marker) for first, marker in zip(firsts, markers, strict=True) if first is not None]
    if bad:
        first, marker = min(bad)
        column = marker.removeprefix(INVALID_PREFIX)
        if SOURCE_ROW in frame.columns and frame[SOURCE_ROW][first] is not None:
            first = int(frame[SOURCE_ROW][first])
        raise SchemaError(
            "value could not be parsed as the column's type",
            path=path,
            column=column,
            row=row_offset + first + 1,
        )
    return frame.drop(hidden)


def skip_invalid(frame: pl.DataFrame, path: str | Path | None) -> pl.DataFrame:
    """``frame`` without the rows holding a value that failed to parse (counted and logged by column,
    for ``--on-bad-rows skip``), the marker columns dropped."""
    markers = [c for c in frame.columns if c.startswith(INVALID_PREFIX)]
    hidden = [*markers, SOURCE_ROW] if SOURCE_ROW in frame.columns else markers
    if not markers:
        return frame.drop(hidden)
    counts = frame.select(pl.col(markers).fill_null(False).sum()).row(0)
    bad = {m.removeprefix(INVALID_PREFIX): int(n) for m, n in zip(markers, counts, strict=True) if n}
    if not bad:
        return frame.drop(hidden)
    drop = frame.select(pl.any_horizontal(pl.col(markers).fill_null(False))).to_series()
    where = f"{path}: " if path is not None else ""
    log.warning(
        "%s%d row(s) skipped: %s",
        where,
        int(drop.sum()),
        "; ".join(f"{column}: value could not be parsed ({n})" for column, n in bad.items()),
    )
    return frame.filter(~drop).drop(hidden)


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
    try:
        expected = len(next(csv.reader([header_line], delimiter=separator)))
        got = len(next(csv.reader([lines[-1]], delimiter=separator)))
    except csv.Error as error:  # a stray carriage return inside the header or the last row
        raise SchemaError(f"header or last row is not CSV ({error})", path=path) from None
    if got < expected:
        raise SchemaError(f"last row has {got} of {expected} fields (file truncated?)", path=path, row=rows)


def flexible_time(
    source: str | pl.Expr,
    formats: Sequence[str] = (),
    *,
    unit: str = "auto",
    timezone: str | None = None,
    name: str = "time",
) -> list[pl.Expr]:
    """Timestamps written either as epoch numbers or as text in one of ``formats``, as UTC time.

    Flow exporters mix both (Zeek JSON writes epoch floats or ISO text; nfdump writes local text or
    raw epoch). ``timezone`` (an IANA name) says where text times without an offset were written;
    ``None`` reads them as UTC. Epoch numbers are UTC by definition.
    """
    if timezone is not None:
        _check_timezone(timezone)
    expr = pl.col(source) if isinstance(source, str) else source
    as_text = expr.cast(pl.String).str.strip_chars()
    epoch, _ = epoch_to_time(as_text, unit=unit, name=name)
    value = epoch
    if formats:
        written, _ = text_to_time(as_text, formats, name=name)
        if timezone:
            written = (
                written.dt.replace_time_zone(None)
                .dt.replace_time_zone(timezone, ambiguous="earliest", non_existent="null")
                .dt.convert_time_zone("UTC")
            )
        value = pl.coalesce(epoch, written)
    return [value.alias(name), _unparsed(as_text, value).alias(INVALID_PREFIX + name)]


def _check_timezone(timezone: object) -> None:
    """Raise :class:`ConfigError` unless ``timezone`` is an IANA zone name this system knows."""
    import zoneinfo

    if not isinstance(timezone, str):
        raise ConfigError(f"timezone must be an IANA zone name such as 'Europe/Prague', not {timezone!r}")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as error:
        raise ConfigError(
            f"unknown time zone {timezone!r} (use an IANA name such as 'Europe/Prague')"
        ) from error


def column_kinds(lines: Sequence[str], separator: str = ",", *, sample: int = 500) -> dict[str, str]:
    """What each column of a delimited head holds: ``int``, ``float`` or ``text``.

    ``lines`` starts with the header; the first ``sample`` rows are looked at. A column is ``text``
    when more than half of its non-empty values are not numbers (decimal or ``0x`` hexadecimal), so a
    numeric column with a stray bad value stays numeric and the bad value is reported by validation;
    it is ``int`` when every number in it is written without a fraction or exponent.
    """
    import csv

    rows = list(csv.reader(lines[: sample + 1], delimiter=separator))
    if not rows:
        return {}
    header = [name.strip().lstrip("\ufeff") for name in rows[0]]
    numbers = [0] * len(header)
    others = [0] * len(header)
    fractional = [False] * len(header)
    for row in rows[1:]:
        for index, value in enumerate(row[: len(header)]):
            value = value.strip()
            if value in ("", "-", "(empty)"):
                continue
            if _is_number(value):
                numbers[index] += 1
                fractional[index] |= not _is_integer(value)
            else:
                others[index] += 1
    kinds = {}
    for index, name in enumerate(header):
        if others[index] > numbers[index]:
            kinds[name] = "text"
        else:
            kinds[name] = "float" if fractional[index] else "int"
    return kinds


def text_columns(lines: Sequence[str], separator: str = ",", *, sample: int = 500) -> set[str]:
    """Names of the columns whose sampled values are mostly not numbers (see :func:`column_kinds`)."""
    return {name for name, kind in column_kinds(lines, separator, sample=sample).items() if kind == "text"}


def _is_number(value: str) -> bool:
    lowered = value.lower()
    try:
        if lowered.startswith("0x"):
            int(lowered, 16)
        else:
            float(lowered)
    except ValueError:
        return False
    return True


def _is_integer(value: str) -> bool:
    lowered = value.lower()
    if lowered.startswith("0x"):
        return True
    try:
        int(lowered)
    except ValueError:
        return False
    return True


#: protocols whose flows carry an ICMP type and code where other flows carry ports
ICMP_PROTOCOLS = ("icmp", "ipv6-icmp")


def icmp_ports(
    spt: list[pl.Expr], dpt: list[pl.Expr], proto: pl.Expr, type_code: pl.Expr
) -> tuple[list[pl.Expr], list[pl.Expr]]:
    """``spt`` and ``dpt`` (each a value and its parse markers, as :func:`numeric` gives them) with
    ICMP flows in the canonical layout, the one nfdump and the NetFlow collector write: ``spt`` 0 and
    ``dpt`` the ICMP ``type * 256 + code`` (``type_code``, an expression over the source's own
    fields), so that an ICMP identifier or a bare type never reads as a port."""
    icmp = proto.is_in(ICMP_PROTOCOLS).fill_null(False)
    (spt_value, *spt_markers), (dpt_value, *dpt_markers) = spt, dpt
    return (
        [pl.when(icmp).then(pl.lit(0, dtype=pl.Int64)).otherwise(spt_value).alias("spt"), *spt_markers],
        [pl.when(icmp).then(type_code).otherwise(dpt_value).alias("dpt"), *dpt_markers],
    )


def named_after(parts: list[pl.Expr], column: str) -> list[pl.Expr]:
    """Make the parse-failure marker of :func:`numeric` (or a time parser) name the source column.

    A reader that renames a column (``IN_BYTES`` -> ``out_bytes``) reports a bad value under the
    name a person finds in the file.
    """
    value, *markers = parts
    return [value, *(marker.alias(INVALID_PREFIX + column) for marker in markers)]
