"""Pictures as files: the flow-groups picture written as PNG or as the interactive HTML page, an
alert's explanation written as PNG (each atomically: a reader never sees half a picture), and the
alert record read back from the alerts file ``nadkit detect`` wrote.

The flows come in as a table: reading a flow file (:func:`nadkit.sources.load_flows`) or scoring it
with a model is the caller's part.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time as clock
from pathlib import Path
from typing import Any

import polars as pl

from nadkit.errors import ConfigError, SchemaError
from nadkit.fileio import atomic_path
from nadkit.pictures.alert import plot_alert
from nadkit.pictures.groups import render_groups
from nadkit.pictures.page import groups_html
from nadkit.sources.parquet import check_file

log = logging.getLogger(__name__)

#: what a flow-groups picture can be written as
GROUPS_SUFFIXES = (".png", ".html", ".htm")


def check_out(out: str | Path, *, suffixes: tuple[str, ...], overwrite: bool) -> Path:
    """``out`` as a picture path: one of ``suffixes``, and not there yet unless ``overwrite``."""
    out = Path(out)
    if out.suffix.lower() not in suffixes:
        kinds = [suffix for suffix in suffixes if suffix != ".htm"]
        raise ConfigError(f"{out}: the picture must be {' or '.join(kinds)}")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out}: already exists (use --force to replace it)")
    return out


def write_groups(frame: pl.DataFrame, out: str | Path, *, overwrite: bool = False, **options: Any) -> Path:
    """Draw the flow-groups picture of ``frame`` into ``out``: a PNG for ``.png``, the interactive
    page for ``.html``. Options as :func:`nadkit.pictures.draw_groups` (``panel_titles`` only for
    PNG, ``levels`` only for HTML)."""
    out = check_out(out, suffixes=GROUPS_SUFFIXES, overwrite=overwrite)
    started = clock.perf_counter()
    with atomic_path(out, overwrite=overwrite) as temporary:
        if out.suffix.lower() == ".png":
            temporary.write_bytes(render_groups(frame, **options))
        else:
            temporary.write_text(groups_html(frame, **options), encoding="utf-8")
    log.info("%s drawn from %s flows in %.1f s", out, f"{frame.height:,}", clock.perf_counter() - started)
    return out


def write_alert(record: dict[str, Any], out: str | Path, *, overwrite: bool = False) -> Path:
    """Draw the feature attribution of the alert ``record`` into ``out`` (PNG)."""
    out = check_out(out, suffixes=(".png",), overwrite=overwrite)
    image = plot_alert(record)
    with atomic_path(out, overwrite=overwrite) as temporary:
        temporary.write_bytes(image)
    return out


def load_alert(path: str | Path, row: int) -> dict[str, Any]:
    """The alert of input row ``row`` from an alerts file written by ``nadkit detect`` (JSON lines or
    Parquet)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such alerts file")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        needle = f'"row":{int(row)}'
        seen = 0
        with path.open("r", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                seen += 1
                if needle not in line.replace(" ", ""):
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise SchemaError(f"line {number} is not JSON ({error.msg})", path=path) from None
                if isinstance(record, dict) and record.get("row") == row:
                    return record
        raise ConfigError(f"{path}: no alert for row {row} among its {seen:,} record(s)")
    if suffix in (".parquet", ".pq"):
        check_file(path)  # corrupt pages refused before Polars, which may abort on them, reads them
        try:
            table = pl.scan_parquet(path).filter(pl.col("row") == row).collect()
        except (pl.exceptions.PolarsError, OSError) as error:
            raise SchemaError(f"could not be read ({str(error).splitlines()[0]})", path=path) from None
        if table.height == 0:
            raise ConfigError(f"{path}: no alert for row {row}")
        record = table.row(0, named=True)
        if isinstance(record.get("time"), dt.datetime):
            record["time"] = record["time"].strftime("%Y-%m-%dT%H:%M:%S")
        return record
    raise ConfigError(
        f"{path}: alerts must be JSON lines (.jsonl) or Parquet (.parquet), as `nadkit detect` writes"
    )


__all__ = ["GROUPS_SUFFIXES", "check_out", "load_alert", "write_alert", "write_groups"]
