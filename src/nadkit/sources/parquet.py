"""Canonical flow tables stored as Parquet (or Arrow IPC / Feather v2), as nadkit itself writes them.

The file must already use the canonical column names (``time``, ``src``, ``dst``, ``spt``, ``dpt``,
``proto``, ``app``, ``duration``, ``out_bytes``, ``in_bytes``, ``out_pkts``, ``in_pkts``, ``label``,
...); it is scanned lazily and only brought to the canonical dtypes: ``time`` to UTC microseconds
(naive times are taken as UTC, epoch numbers and ISO text are accepted), protocol numbers to
names, counts to integers. Other columns are kept as they are. A Parquet file with other column
names (an export of another tool) is not a canonical table: read it with a column mapping
(``--map time=StartTime,src=SrcAddr,...``), which uses :mod:`nadkit.sources.generic`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from nadkit.errors import FormatError
from nadkit.schema import CANONICAL, canonical_order
from nadkit.sources.base import INVALID_PREFIX, Head, convert, read_error

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

NAME = "parquet"
DESCRIPTION = "Parquet or Arrow IPC/Feather file holding a canonical flow table (time, src, dst, ...)"
SUFFIXES = (".parquet", ".pq", ".arrow", ".feather", ".ipc")

PARQUET_MAGIC = b"PAR1"
ARROW_MAGIC = b"ARROW1"
#: a table needs at least this many canonical flow columns (labels not counted) to be canonical
MIN_CANONICAL = 2
#: rows per batch when :func:`check_file` decodes a file (its memory bound)
CHECK_BATCH_ROWS = 65_536
_FLOW_COLUMNS = tuple(name for name in CANONICAL if name not in ("label", "label_original"))


def detect(head: Head) -> bool:
    """Parquet (``PAR1``) or Arrow IPC file (``ARROW1``) magic bytes at the start of the file."""
    if not head.raw.startswith((PARQUET_MAGIC, ARROW_MAGIC)):
        return False
    if head.compressed:
        raise FormatError(
            f"{head.path}: gzip-compressed Parquet/Arrow cannot be scanned; decompress it first"
        )
    return True


def check_file(path: str | Path) -> None:
    """Decode every page of a Parquet file with PyArrow, which refuses corrupt pages with an error,
    before Polars reads it: on some (a negative value count in a page header) Polars does not raise but
    aborts the whole process on an allocation of exabytes. A :class:`FormatError` names the file and
    what is corrupt.

    The cost is one more decoding pass, in batches of :data:`CHECK_BATCH_ROWS` rows (one row group at
    a time), so memory stays bounded whatever the file's size: 0.75 to 0.9 s for 1.6 million flows of
    44 columns (89 MB, 20 row groups; 230 MB at most), where Polars reads the same file in 0.9 to 1 s."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    started = time.perf_counter()
    try:
        with pq.ParquetFile(path) as parquet:
            for _ in parquet.iter_batches(batch_size=CHECK_BATCH_ROWS):
                pass  # decoding is the check: PyArrow refuses what Polars may abort on
    except (pa.ArrowException, OSError, ValueError, TypeError, IndexError, MemoryError, EOFError) as error:
        raise FormatError(f"{path}: corrupt Parquet file ({_first_line(error)})") from None
    log.debug("%s: pages checked in %.3f s", path, time.perf_counter() - started)


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _has_view(kind: pa.DataType) -> bool:
    """Whether ``kind`` is or holds a view type (string, binary or list views)."""
    import pyarrow as pa

    if pa.types.is_string_view(kind) or pa.types.is_binary_view(kind):
        return True
    if pa.types.is_list_view(kind) or pa.types.is_large_list_view(kind):
        return True
    return any(_has_view(kind.field(index).type) for index in range(kind.num_fields))


#: seconds from the epoch to 0001-01-01 and to 9999-12-31 23:59:59: the times Python and Polars can hold
_FIRST_S, _LAST_S = -62_135_596_800, 253_402_300_799
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _temporal_bounds(kind: pa.DataType) -> tuple[int, int] | None:
    """The lowest and highest stored integer of a date, time or timestamp type that Polars converts
    without a panic (years 1 to 9999; a time of day within one day); None for other types."""
    import pyarrow as pa

    if pa.types.is_timestamp(kind):
        per = _PER_SECOND[kind.unit]
        return _FIRST_S * per, _LAST_S * per
    if pa.types.is_date32(kind):
        return _FIRST_S // 86_400, _LAST_S // 86_400
    if pa.types.is_date64(kind):
        return _FIRST_S * 1_000, _LAST_S * 1_000
    if pa.types.is_time32(kind) or pa.types.is_time64(kind):
        return 0, 86_400 * _PER_SECOND[kind.unit] - 1
    return None


def _check_times(table: pa.Table, name: str) -> None:
    """:class:`FormatError` for a date, time or timestamp column with a value beyond what Polars can
    convert (a changed unit made microseconds into seconds 48 million years away: Polars panicked)."""
    import pyarrow.compute as pc

    for field, column in zip(table.schema, table.columns, strict=True):
        bounds = _temporal_bounds(field.type)
        if bounds is None or column.null_count == len(column):
            continue
        extremes = pc.min_max(column)
        if extremes["min"].value < bounds[0] or extremes["max"].value > bounds[1]:
            raise FormatError(f"{name}: column {field.name!r} holds times beyond the years 1 to 9999")


def safe_arrow(table: pa.Table, name: str) -> pl.DataFrame:
    """An Arrow table from untrusted bytes as a Polars frame that Polars cannot crash on. PyArrow
    validates every array in full, but not the views behind null slots of string and binary view
    columns, which Polars reads (a corrupt one segfaulted it): those columns are rebuilt as plain
    strings and binaries by PyArrow first, dictionaries decoded; and times beyond what Polars can
    convert (it panics) are refused. :class:`FormatError` naming ``name``
    for anything corrupt or a column that holds views inside another type."""
    import pyarrow as pa

    try:
        table.validate(full=True)
        fields = []
        for field in table.schema:
            kind = field.type
            if pa.types.is_dictionary(kind):
                kind = kind.value_type
            if pa.types.is_string_view(kind):
                kind = pa.large_string()
            elif pa.types.is_binary_view(kind):
                kind = pa.large_binary()
            elif _has_view(kind):
                raise FormatError(f"{name}: column {field.name!r} holds views inside {kind}; not read")
            fields.append(pa.field(field.name, kind, field.nullable))
        schema = pa.schema(fields)
        if schema != table.schema:
            table = table.cast(schema)
            table.validate(full=True)
        _check_times(table, name)
        frame = pl.from_arrow(table, rechunk=False)
    except (pa.ArrowException, ValueError, TypeError, IndexError, MemoryError, OverflowError) as error:
        raise FormatError(f"{name}: corrupt Arrow data ({_first_line(error)})") from None
    if not isinstance(frame, pl.DataFrame):
        raise FormatError(f"{name}: Arrow data is not a table")
    return frame


def _read_arrow_file(path: Path) -> pl.LazyFrame:
    """An Arrow IPC file read by PyArrow and handed to Polars as checked arrays (:func:`safe_arrow`)."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    try:
        with ipc.open_file(pa.memory_map(str(path))) as reader:
            table = reader.read_all()
    except (pa.ArrowException, OSError, ValueError, EOFError) as error:
        raise FormatError(f"{path}: corrupt Arrow file ({_first_line(error)})") from None
    return safe_arrow(table, str(path)).lazy()


def scan_table(path: str | Path) -> pl.LazyFrame:
    """Scan a Parquet file lazily once :func:`check_file` has decoded it safely, or read an Arrow IPC
    file through PyArrow (:func:`safe_arrow`), by its magic bytes; used by the generic reader too."""
    head = Head.of(path, size=8)
    if head.raw.startswith(ARROW_MAGIC):
        return _read_arrow_file(Path(path))
    if head.raw.startswith(PARQUET_MAGIC):
        check_file(path)
    try:
        if head.raw.startswith(PARQUET_MAGIC):
            frame = pl.scan_parquet(path)
        else:
            raise FormatError(f"{path}: not a Parquet or Arrow IPC file")
        frame.collect_schema()
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError) as error:
        raise read_error(error, path) from error
    return frame


def read(path: str | Path, **_: object) -> pl.LazyFrame:
    """Scan a canonical Parquet/Arrow table lazily, with canonical dtypes and column order."""
    return canonical(scan_table(path), path)


def canonical(frame: pl.LazyFrame, path: str | Path) -> pl.LazyFrame:
    """A table with canonical column names brought to canonical dtypes and column order (what
    :func:`read` does after scanning; also applied to pieces of a Parquet dataset read elsewhere).
    :class:`FormatError` naming ``path`` when the table is not a canonical flow table."""
    schema = frame.collect_schema()
    present = [name for name in _FLOW_COLUMNS if name in schema]
    if len(present) < MIN_CANONICAL:
        shown = ", ".join(list(schema.names())[:8])
        raise FormatError(
            f"{path}: not a canonical flow table (columns: {shown}...); "
            "map its columns with --map time=...,src=...,dst=... to read it"
        )
    log.debug("%s: canonical columns %s", path, present)
    exprs: list[pl.Expr] = []
    for name, dtype in schema.items():
        if name in CANONICAL and dtype != CANONICAL[name]:
            exprs.extend(convert(name, name, dtype))
        else:
            exprs.append(pl.col(name))
    out = frame.select(exprs)
    names = out.collect_schema().names()
    visible = [n for n in names if not n.startswith(INVALID_PREFIX)]
    hidden = [n for n in names if n.startswith(INVALID_PREFIX)]
    return out.select(canonical_order(visible) + hidden)
