"""Reader for the pcap format (being written)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from nadkit.errors import FormatError
from nadkit.sources.base import Head

NAME = "pcap"
DESCRIPTION = "pcap"
SUFFIXES: tuple[str, ...] = ()


def detect(head: Head) -> bool:
    return False


def read(path: str | Path, **options: object) -> pl.LazyFrame:
    raise FormatError(f"{path}: the pcap reader is not available yet")
