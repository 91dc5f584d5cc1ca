"""Any flow CSV or Parquet/Arrow file, read through a user's column mapping.

The mapping names, for each canonical column, the file's column that holds it: a dict or the text
form of ``--map`` (``time=StartTime,src=SrcAddr,dst=DstAddr,dpt=Dport,proto=Proto,label=Label``;
see :func:`nadkit.schema.parse_mapping`). Mapped columns are brought to canonical dtypes whatever
their encoding:

* ``time``: datetimes (naive taken as UTC), epoch numbers in s, ms, us or ns (unit guessed by
  magnitude), or text: ISO-8601 and its common variants, or the layouts given as ``time_format``;
* ``proto``: IANA numbers or names (``6`` and ``TCP`` both give ``tcp``);
* ``label``: benign values (``normal``, ``benign``, ``0``, ...) give ``normal``, a bare ``1`` gives
  ``attack``, anything else is kept as the class name; ``label_original`` keeps the text as written;
* ``duration``: seconds, unless ``duration_unit`` is ``ms`` or ``us``;
* counts and ports: numbers, with the first value that does not parse reported by column and row.

A column already named like a canonical one (``Label``, ``proto``) is read as that column without
a mapping entry. Other unmapped columns are kept under ``snake_case`` names: numbers as numbers,
text as text.
The CSV separator (comma, tab, semicolon or pipe) is taken from the header line unless ``separator``
is given. Without a mapping this reader refuses the file: it never guesses which column is which.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from nadkit.errors import ConfigError, FormatError, SchemaError
from nadkit.schema import CANONICAL, label_expr, parse_mapping, snake_case
from nadkit.sources.base import Head, build, convert, scan_csv, text
from nadkit.sources.parquet import ARROW_MAGIC, PARQUET_MAGIC, scan_table

log = logging.getLogger(__name__)

NAME = "generic"
DESCRIPTION = "any CSV, Parquet or Arrow file with a column mapping (--map time=...,src=...,...)"
SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq", ".arrow", ".feather")

SEPARATORS = (",", "\t", ";", "|")
DURATION_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def detect(head: Head) -> bool:
    """Never: the generic reader is chosen by a mapping or ``--format generic``, not by content."""
    return False


def read(
    path: str | Path,
    *,
    mapping: Mapping[str, str] | str | None = None,
    time_format: str | Sequence[str] | None = None,
    duration_unit: str = "s",
    separator: str | None = None,
    **_: object,
) -> pl.LazyFrame:
    """Scan ``path`` lazily into the canonical table through ``mapping`` (canonical -> file column).

    Raises :class:`FormatError` without a mapping, and :class:`SchemaError` naming the column and
    the file when the mapping names a column the file does not have.
    """
    pairs = parse_mapping(mapping)
    if not pairs:
        raise FormatError(
            f"{path}: the generic reader needs a column mapping, e.g. "
            "--map time=StartTime,src=SrcAddr,dst=DstAddr,dpt=Dport,proto=Proto"
        )
    if duration_unit not in DURATION_UNITS:
        raise ConfigError(f"duration_unit must be one of {', '.join(DURATION_UNITS)}, got {duration_unit!r}")
    formats = [time_format] if isinstance(time_format, str) else list(time_format or []) or None

    frame = _scan(path, separator)
    schema = frame.collect_schema()
    sources = {target: _resolve(source, schema.names(), path, target) for target, source in pairs.items()}
    mapped = set(sources.values())
    for name in schema.names():
        # a column already named like a canonical one (``Label``, ``proto``) needs no mapping entry
        target = snake_case(name)
        if target in CANONICAL and target not in sources and name not in mapped:
            sources[target] = name
    log.debug("%s: generic mapping %s", path, sources)

    canonical: dict[str, pl.Expr | list[pl.Expr]] = {}
    for target, source in sources.items():
        dtype = schema[source]
        if target == "label":
            canonical[target] = label_expr(source, attack_value="attack").alias(target)
            if "label_original" not in sources:
                canonical["label_original"] = text(source, "label_original")
            continue
        exprs = convert(target, source, dtype, time_formats=formats)
        if target == "duration" and duration_unit != "s":
            exprs[0] = (exprs[0] * DURATION_UNITS[duration_unit]).alias(target)
        canonical[target] = exprs
    consumed = set(sources.values())
    keep_text = [name for name, dtype in schema.items() if name not in consumed and dtype == pl.String]
    if keep_text:
        log.debug("%s: unmapped text columns kept as text: %s", path, keep_text)
    return build(frame, canonical, consumed=consumed, keep_text=keep_text)


def _scan(path: str | Path, separator: str | None) -> pl.LazyFrame:
    """A lazy frame over a Parquet/Arrow file or a delimited text file (gzip allowed)."""
    head = Head.of(path)
    if head.raw.startswith((PARQUET_MAGIC, ARROW_MAGIC)):
        if head.compressed:
            raise FormatError(f"{path}: gzip-compressed Parquet/Arrow cannot be scanned; decompress it first")
        return scan_table(path)
    if not head.is_text:
        raise FormatError(
            f"{path}: neither delimited text nor Parquet/Arrow; the generic reader cannot read it"
        )
    if separator is None:
        line = head.first_line
        separator = max(SEPARATORS, key=line.count) if any(s in line for s in SEPARATORS) else ","
    return scan_csv(path, separator=separator)


def _resolve(source: str, names: Sequence[str], path: str | Path, target: str) -> str:
    """The file's column for a mapped name: exact, else ignoring case and surrounding spaces."""
    if source in names:
        return source
    wanted = source.strip().lower()
    matches = [name for name in names if name.strip().lstrip("\ufeff").lower() == wanted]
    if len(matches) == 1:
        return matches[0]
    shown = ", ".join(names[:15]) + (", ..." if len(names) > 15 else "")
    raise SchemaError(
        f"mapping {target}={source} names a column the file does not have (columns: {shown})",
        path=path,
        column=source,
    )
