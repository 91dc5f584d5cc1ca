"""How `nadkit train` draws an unsupervised model's normal hold-out, the rows its threshold is set on.

``rows``, the default, holds out single rows at random; ``time`` three stretches of consecutive
flows; ``capture`` whole captures (the files of a directory or glob, or the values of a mix's
``capture`` column), so that the threshold is set on devices and sessions the model never trained
on (``benchmarks/holdout.py``). Whole captures are not the default: where the captures are few and
uneven, a share of the flows held out as whole captures leaves the model few devices to learn
(trained on the 17 shared benign captures, one of which holds about half the flows, the hold-out
took 13 of the others), and a threshold set for other devices is higher than the traffic of the
training devices needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from nadkit.errors import ConfigError
from nadkit.schema import CAPTURE
from nadkit.sources import expand, load_flows, pcap

#: how :func:`~nadkit.training.fit.fit` may draw an unsupervised model's normal hold-out
HOLDOUT_BY = ("rows", "time", "capture")
#: the column :func:`read_training_flows` reads each flow's file into where the flows come from
#: several files (never fitted on)
FILE_COLUMN = "__file"


def check_holdout_by(holdout_by: str) -> None:
    """A ConfigError naming the choices where ``holdout_by`` is not one of them."""
    if holdout_by not in HOLDOUT_BY:
        raise ConfigError(f"unknown hold-out {holdout_by!r} (use {', '.join(HOLDOUT_BY)})")


def capture_groups(frame: pl.DataFrame, given: np.ndarray | None, holdout_by: str) -> np.ndarray | None:
    """The capture of each row where ``holdout_by`` is ``capture``: ``given`` (the file each flow came
    from), else the frame's ``capture`` column, else a ConfigError; None for the other ways."""
    if holdout_by != "capture":
        return None
    if given is not None:
        return np.asarray(given)
    if CAPTURE in frame.columns:
        return frame[CAPTURE].cast(pl.String).fill_null("").to_numpy()
    raise ConfigError(
        "--holdout-by capture needs flows of several captures: several files (a directory or glob), "
        f"or a table with a {CAPTURE!r} column (nadkit mix-captures writes one)"
    )


def read_training_flows(
    source: str | Path, *, holdout_by: str = "rows", **reading: Any
) -> tuple[pl.DataFrame, str, np.ndarray | None]:
    """The flows of ``source`` (read by :func:`~nadkit.sources.load_flows` with ``reading``), their
    format, and, where ``holdout_by`` is ``capture``, the file each flow came from where there are
    several files and the flows do not name their captures themselves (a mix's ``capture`` column),
    for :func:`~nadkit.training.fit.fit`'s ``holdout_groups``; None otherwise."""
    check_holdout_by(holdout_by)
    by_file = holdout_by == "capture"
    frame, source_format = load_flows(source, file_column=FILE_COLUMN if by_file else None, **reading)
    if not by_file:
        return frame, source_format, None
    files = frame[FILE_COLUMN].to_numpy()
    frame = frame.drop(FILE_COLUMN)
    several = CAPTURE not in frame.columns and len(np.unique(files)) > 1
    return frame, source_format, files if several else None


def training_flows(
    source: str | Path, settings: Mapping[str, Any], **reading: Any
) -> tuple[pl.DataFrame, str, dict[str, Any]]:
    """:func:`read_training_flows` for a fit with ``settings`` (its ``holdout_by``): the flows, their
    format, and the settings to fit them with, ``holdout_groups`` added where whole files are held
    out."""
    frame, source_format, groups = read_training_flows(
        source, holdout_by=settings.get("holdout_by", "rows"), **reading
    )
    return frame, source_format, {**settings, **({} if groups is None else {"holdout_groups": groups})}


def captures_in(source: str | Path, frame: pl.DataFrame, source_format: str) -> int:
    """How many captures the training flows came from: the distinct values of a mix's ``capture``
    column, else the packet-capture files ``source`` names; 0 for files of flow records."""
    if CAPTURE in frame.columns:
        return frame[CAPTURE].n_unique()
    return len(expand(source)) if source_format == pcap.NAME else 0


__all__ = [
    "FILE_COLUMN",
    "HOLDOUT_BY",
    "capture_groups",
    "captures_in",
    "check_holdout_by",
    "read_training_flows",
    "training_flows",
]
