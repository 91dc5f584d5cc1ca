"""Readers for every flow format nadkit understands, and format auto-detection.

``read_flows(path)`` gives a lazy canonical table; ``load_flows(path)`` collects and validates it.
A path may be a file, a directory (every data file inside, one format) or a glob.
The registry is explicit: detection tries the modules in this order and the first that recognises
the file's head wins; ``--format NAME`` skips detection.
"""

from __future__ import annotations

import glob as globbing
import logging
from collections.abc import Callable, Collection, Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Literal

import polars as pl

from nadkit.errors import FormatError, SchemaError
from nadkit.schema import drop_bad_rows, parse_mapping, validate
from nadkit.sources import (
    argus,
    canonical,
    cic,
    eve,
    generic,
    kdd,
    nad,
    netflow,
    nfdump,
    parquet,
    pcap,
    unsw,
    zeek,
)
from nadkit.sources.base import (
    INVALID_PREFIX,
    SOURCE_ROW,
    Head,
    check_gzip,
    check_invalid,
    check_last_row,
    skip_invalid,
)

log = logging.getLogger(__name__)

#: name -> module, in detection order (binary magic first, the loosest text formats last).
SOURCES: dict[str, ModuleType] = {
    module.NAME: module
    for module in (pcap, parquet, zeek, eve, nad, cic, unsw, netflow, nfdump, argus, canonical, kdd, generic)
}

_SKIP_NAMES = {"readme", "readme.md", "sha256sums", "license", "licence"}


def expand(path: str | Path) -> list[Path]:
    """The data files behind ``path``: the file itself, a directory's files, or a glob's matches."""
    text = str(path)
    if any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in globbing.glob(text, recursive=True) if Path(p).is_file())
    else:
        target = Path(path)
        if target.is_dir():
            files = sorted(
                p
                for p in target.rglob("*")
                if p.is_file() and not p.name.startswith(".") and p.name.lower() not in _SKIP_NAMES
            )
        elif target.exists():
            files = [target]
        else:
            raise FormatError(f"{path}: no such file or directory")
    if not files:
        raise FormatError(f"{path}: no data files found")
    return files


def detect_format(path: str | Path) -> str:
    """Name of the format of a file, from its magic bytes or header; :class:`FormatError` if unknown."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise FormatError(f"{path}: file is empty")
    head = Head.of(path)
    for name, module in SOURCES.items():
        if name == generic.NAME:
            continue
        try:
            if module.detect(head):
                log.debug("%s detected as %s", path, name)
                return name
        except FormatError:
            raise
        except Exception as error:  # a detector must never break detection of the others
            log.debug("detector %s failed on %s: %s", name, path, error)
    if not head.is_text:
        raise FormatError(f"{path}: unrecognised binary data (not pcap, pcapng or Parquet)")
    first = head.first_line[:80]
    raise FormatError(
        f"{path}: unrecognised flow format (first line: {first!r}); "
        "name it with --format or map its columns with --map"
    )


def source_module(fmt: str) -> ModuleType:
    """The source module for a format name; :class:`FormatError` listing the known names otherwise."""
    try:
        return SOURCES[fmt]
    except KeyError:
        raise FormatError(f"unknown format {fmt!r} (known: {', '.join(SOURCES)})") from None


def read_flows(
    path: str | Path,
    *,
    format: str | None = None,
    mapping: Mapping[str, str] | str | None = None,
    on_file: FileProgress | None = None,
    file_column: str | None = None,
    **options: object,
) -> tuple[pl.LazyFrame, str]:
    """A lazy canonical flow table for ``path`` and the format name it was read as; ``on_file(done,
    total, file)`` is called after each file is opened (captures are metered then); ``file_column``
    names a column to add with each flow's file name (its path where names repeat).

    With ``mapping`` (``{"time": "StartTime", ...}`` or ``"time=StartTime,..."``) the generic reader
    is used unless ``format`` says otherwise. Files of a directory or glob must share one format.
    """
    mapping = parse_mapping(mapping) or None
    files = expand(path)
    if mapping and format is None:
        format = generic.NAME
    fmt = format or detect_format(files[0])
    module = source_module(fmt)
    if mapping:
        options["mapping"] = mapping
    frames = []
    if module is pcap and len(files) > 1:
        # captures are metered in processes of their own: several at a time, each file checked first
        for file in files:
            _check_file(file, files[0], fmt, detect=format is None)
        done = None if on_file is None else lambda count, file: on_file(count, len(files), file)
        frames = pcap.map_captures(lambda file: module.read(file, **options), files, on_done=done)
    else:
        for file in files:
            _check_file(file, files[0], fmt, detect=format is None and len(files) > 1)
            frames.append(module.read(file, **options))
            if on_file is not None:
                on_file(len(frames), len(files), file)
    if file_column is not None:
        # each file by its name, or by its path where names repeat (``folder/*/conn.log``)
        names = [file.name for file in files]
        if len(set(names)) < len(names):
            names = [str(file) for file in files]
        frames = [
            f.with_columns(pl.lit(name).alias(file_column)) for f, name in zip(frames, names, strict=True)
        ]
    frame = frames[0] if len(frames) == 1 else pl.concat(frames, how="diagonal_relaxed")
    return frame, fmt


def _check_file(file: Path, first: Path, fmt: str, *, detect: bool) -> None:
    """Refuse an empty file, corrupt gzip, a gzip bomb, and (with ``detect``) a file of another format
    than the first of its input."""
    if file.stat().st_size == 0:
        raise FormatError(f"{file}: file is empty")
    check_gzip(file)  # corrupt gzip and gzip bombs refused before a reader decompresses them
    if detect and file != first:
        other = detect_format(file)
        if other != fmt:
            raise FormatError(
                f"{file}: format {other} differs from {first} ({fmt}); the files of one read are one "
                "format: name those of one with a glob (e.g. 'folder/*/conn.log*')"
            )


def load_flows(
    path: str | Path,
    *,
    format: str | None = None,
    mapping: Mapping[str, str] | str | None = None,
    columns: Collection[str] | None = None,
    on_bad_rows: BadRows = "error",
    on_file: FileProgress | None = None,
    file_column: str | None = None,
    **options: object,
) -> tuple[pl.DataFrame, str]:
    """Read, collect and validate: a canonical :class:`polars.DataFrame` and its format name
    (``file_column``: see :func:`read_flows`).

    With ``columns`` only those of them the input has are read (all columns when it has none of
    them); the rest are neither read nor checked."""
    frame, fmt = read_flows(
        path, format=format, mapping=mapping, on_file=on_file, file_column=file_column, **options
    )
    if columns is not None:
        names = frame.collect_schema().names()
        wanted = [c for c in names if c in columns]
        # with the invalid-value markers and source rows, so errors still name the value and the row
        if wanted:
            markers = [c for c in names if c.startswith(INVALID_PREFIX)]
            wanted += [c for c in markers if c.removeprefix(INVALID_PREFIX) in columns]
            wanted += [SOURCE_ROW] if SOURCE_ROW in names else []
            frame = frame.select(wanted)
    try:
        collected = frame.collect()
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError) as error:
        raise SchemaError(_describe(error), path=path) from error
    collected = _checked(collected, path, on_bad_rows)
    separator = getattr(source_module(fmt), "LAST_ROW_SEPARATOR", None)
    if separator is not None and collected.height:
        files = expand(path)
        for file in files:
            check_last_row(file, rows=collected.height if len(files) == 1 else None, separator=separator)
    validate(collected, path=path)
    return collected, fmt


#: called after each file of an input is opened: (files done, files in all, the file)
FileProgress = Callable[[int, int, Path], None]

#: what a reader does with a row whose value cannot be parsed or is not valid (an address that is no
#: address, a port beyond 65535...): ``error`` names it and stops, ``skip`` drops it and counts it
BadRows = Literal["error", "skip"]


def _checked(frame: pl.DataFrame, path: str | Path, on_bad_rows: BadRows, offset: int = 0) -> pl.DataFrame:
    """``frame`` with its unparsed and invalid values refused (``error``) or their rows dropped
    (``skip``); validation itself follows."""
    if on_bad_rows not in ("error", "skip"):
        raise SchemaError(f"on_bad_rows must be 'error' or 'skip', got {on_bad_rows!r}")
    if on_bad_rows == "error":
        return check_invalid(frame, path, row_offset=offset)
    frame = skip_invalid(frame, path)
    frame, _ = drop_bad_rows(frame, path=path)
    return frame


#: column :func:`iter_flows` adds: the 0-based row of each flow in the input (across its files)
ROW = "row"


def _time_sorted(frame: pl.LazyFrame, path: str | Path) -> bool:
    """True when ``frame``'s times never decrease (nulls first count as sorted)."""
    try:
        disorder = frame.select((pl.col("time").diff() < pl.duration(microseconds=0)).any()).collect()
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError) as error:
        raise SchemaError(_describe(error), path=path) from error
    return not bool(disorder.item())


def iter_flows(
    path: str | Path,
    *,
    format: str | None = None,
    mapping: Mapping[str, str] | str | None = None,
    chunk_rows: int = 200_000,
    time_order: bool = False,
    on_bad_rows: BadRows = "error",
    **options: object,
) -> Iterator[pl.DataFrame]:
    """The validated canonical flows of ``path`` in pieces of at most ``chunk_rows`` rows, each with a
    :data:`ROW` column (the flow's 0-based row in the input), so a large input is never held in memory
    whole. Errors name the file and the row of the file, as :func:`load_flows` does.

    With ``time_order`` the pieces come in time order: an input whose times ever decrease is sorted
    first (which needs the input in memory; flow exports are normally in time order already).
    """
    if chunk_rows < 1:
        raise SchemaError("chunk_rows must be at least 1")
    frame, fmt = read_flows(path, format=format, mapping=mapping, **options)
    frame = frame.with_row_index(ROW).with_columns(pl.col(ROW).cast(pl.Int64))
    names = frame.collect_schema().names()
    if time_order and "time" in names and not _time_sorted(frame, path):
        log.warning("%s: flows are not in time order; sorting them first (this reads the whole input)", path)
        frame = frame.sort("time", maintain_order=True, nulls_last=False)
    if SOURCE_ROW not in names:
        # parse errors name the flow's row of the input, whatever order the pieces come in
        frame = frame.with_columns(pl.col(ROW).alias(SOURCE_ROW))
    rows = 0
    try:
        for piece in frame.collect_batches(chunk_size=chunk_rows):
            if piece.height == 0:
                continue
            offset = int(piece[ROW][0])
            piece = _checked(piece, path, on_bad_rows)
            validate(piece, path=path, row_offset=offset)
            rows += piece.height
            yield piece
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError) as error:
        raise SchemaError(_describe(error), path=path) from error
    separator = getattr(source_module(fmt), "LAST_ROW_SEPARATOR", None)
    if separator is not None and rows:
        files = expand(path)
        for file in files:
            check_last_row(file, rows=rows if len(files) == 1 else None, separator=separator)


def _describe(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    message = lines[0] if lines else type(error).__name__
    return f"could not be read ({message})"


__all__ = [
    "ROW",
    "SOURCES",
    "BadRows",
    "Head",
    "detect_format",
    "expand",
    "iter_flows",
    "load_flows",
    "read_flows",
    "source_module",
]
