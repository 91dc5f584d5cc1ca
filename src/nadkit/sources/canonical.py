"""Canonical flow tables stored as CSV or JSON lines, as nadkit writes and documents them.

A CSV whose header line names canonical columns (``time,src,dst,spt,dpt,proto,app,duration,
out_bytes,...``), or JSON lines whose first object has canonical keys, is read as it is: the
canonical columns are brought to their dtypes exactly as for a canonical Parquet table (see
:func:`nadkit.sources.parquet.canonical`: times as ISO text or epoch numbers, protocols by name or
number, counts as integers), and every other column is kept under its own name with the type it
reads as (text stays text). Alert records written by ``nadkit detect`` read the same way.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import polars as pl

from nadkit.schema import CANONICAL
from nadkit.sources.base import Head, read_error, scan_csv
from nadkit.sources.parquet import MIN_CANONICAL, canonical

log = logging.getLogger(__name__)

NAME = "canonical"
DESCRIPTION = "CSV or JSON lines with canonical column names (time, src, dst, spt, dpt, proto, ...)"
SUFFIXES = (".csv", ".jsonl", ".ndjson", ".json")

#: the flow columns that make a table canonical (labels alone do not)
_FLOW_COLUMNS = frozenset(name for name in CANONICAL if name not in ("label", "label_original"))
#: the counters of a flow: sources without addresses (UNSW-NB15, NSL-KDD, the CIC-IDS2017 sample)
#: are canonical by three of them
_COUNTERS = frozenset(("duration", "out_bytes", "in_bytes", "out_pkts", "in_pkts"))


def _names(head: Head) -> tuple[str, list[str]]:
    """``("json", keys)`` for JSON lines, ``("csv", header fields)`` otherwise."""
    text = head.text.lstrip()
    if text.startswith("{"):
        first = text.splitlines()[0]
        try:
            record = json.loads(first)
        except ValueError:
            return "json", []
        return "json", list(record) if isinstance(record, dict) else []
    return "csv", head.header_fields(",")


def detect(head: Head) -> bool:
    """A header (or a first JSON object) holding at least two canonical flow columns, ``src`` and
    ``dst`` among them, or (the tables of sources without addresses) three of the flow's counters
    (``duration``, ``out_bytes``, ...), in canonical spellings (exact, lower-case names)."""
    if not head.is_text:
        return False
    _, names = _names(head)
    present = _FLOW_COLUMNS & set(names)
    addressed = {"src", "dst"} <= present
    return len(present) >= MIN_CANONICAL and (addressed or len(_COUNTERS & present) >= 3)


def read(path: str | Path, **_: object) -> pl.LazyFrame:
    """Scan a canonical CSV or JSON-lines table lazily, with canonical dtypes and column order."""
    kind, names = _names(Head.of(path))
    try:
        if kind == "json":
            frame = pl.scan_ndjson(path, infer_schema_length=10_000)
        else:
            # canonical text columns stay text whatever the first rows look like
            texts = ("src", "dst", "proto", "app", "label", "label_original")
            text = {c: pl.String for c in names if c in texts}
            frame = scan_csv(path, schema_overrides=text)
        frame.collect_schema()
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError) as error:
        raise read_error(error, path) from error
    if "time" in names and kind == "json":
        frame = frame.with_columns(pl.col("time").cast(pl.String))
    log.debug("%s: canonical %s table", path, kind)
    return canonical(frame, path)
