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
from pathlib import Path

import polars as pl

from nadkit.errors import FormatError
from nadkit.schema import CANONICAL, canonical_order
from nadkit.sources.base import INVALID_PREFIX, Head, convert, read_error

log = logging.getLogger(__name__)

NAME = "parquet"
DESCRIPTION = "Parquet or Arrow IPC/Feather file holding a canonical flow table (time, src, dst, ...)"
SUFFIXES = (".parquet", ".pq", ".arrow", ".feather", ".ipc")

PARQUET_MAGIC = b"PAR1"
ARROW_MAGIC = b"ARROW1"
#: a table needs at least this many canonical flow columns (labels not counted) to be canonical
MIN_CANONICAL = 2
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


def scan_table(path: str | Path) -> pl.LazyFrame:
    """Scan a Parquet or Arrow IPC file lazily (by its magic bytes); used by the generic reader too."""
    head = Head.of(path, size=8)
    try:
        if head.raw.startswith(ARROW_MAGIC):
            frame = pl.scan_ipc(path)
        elif head.raw.startswith(PARQUET_MAGIC):
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
