"""How `nadkit train` draws an unsupervised model's normal hold-out, the rows its threshold is set on.

``rows`` holds out single rows at random; ``time`` three stretches of consecutive flows; ``capture``
whole captures (the files of a directory or glob, or the values of a mix's ``capture`` column), so
the threshold is set on devices and sessions the model never trained on. ``auto``, the default, is
``capture`` where the flows come from at least :data:`AUTO_MIN_CAPTURES` packet captures with
normal flows (the pcap files of a directory or glob, or the ``capture`` column of a mix), and
``rows`` otherwise: on the shared captures (``benchmarks/holdout.py --datasets pcaps``) a threshold
set on held-out captures flagged 1.8% of other devices' normal flows (1% asked), one set on single
rows 39%. Files of flow records (a day's export each, say) are held out whole only on request.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from nadkit.errors import ConfigError
from nadkit.schema import CAPTURE, NORMAL
from nadkit.sources import load_flows, pcap

log = logging.getLogger(__name__)

#: how :func:`~nadkit.training.fit.fit` may draw an unsupervised model's normal hold-out
HOLDOUT_BY = ("auto", "rows", "time", "capture")
#: the column :func:`read_training_flows` reads each flow's file into where the flows come from
#: several files (never fitted on)
FILE_COLUMN = "__file"
#: the fewest captures with normal flows ``auto`` holds out whole captures of: with two, one of
#: them would be about half the normal flows, taken from training
AUTO_MIN_CAPTURES = 3


def check_holdout_by(holdout_by: str) -> None:
    """A ConfigError naming the choices where ``holdout_by`` is not one of them."""
    if holdout_by not in HOLDOUT_BY:
        raise ConfigError(f"unknown hold-out {holdout_by!r} (use {', '.join(HOLDOUT_BY)})")


def capture_groups(frame: pl.DataFrame, given: np.ndarray | None, holdout_by: str) -> np.ndarray | None:
    """The capture of each row, where ``holdout_by`` holds out whole captures: ``given`` (the file
    each flow came from), else the frame's ``capture`` column. None for ``rows`` and ``time``, and
    for ``auto`` where the flows name fewer than :data:`AUTO_MIN_CAPTURES` captures with normal
    flows; for ``capture`` a ConfigError where they name none."""
    if holdout_by not in ("capture", "auto"):
        return None
    if given is not None:
        groups = np.asarray(given)
    elif CAPTURE in frame.columns:
        groups = frame[CAPTURE].cast(pl.String).fill_null("").to_numpy()
    elif holdout_by == "auto":
        return None
    else:
        raise ConfigError(
            "--holdout-by capture needs flows of several captures: several files (a directory or glob), "
            f"or a table with a {CAPTURE!r} column (nadkit mix-captures writes one)"
        )
    if holdout_by == "auto" and _normal_captures(frame, groups) < AUTO_MIN_CAPTURES:
        return None
    return groups


def resolved(holdout_by: str, groups: np.ndarray | None) -> str:
    """The way ``holdout_by`` draws the hold-out once the captures are known: ``auto`` is
    ``capture`` where :func:`capture_groups` found enough of them, else ``rows``."""
    if holdout_by != "auto":
        return holdout_by
    way = "capture" if groups is not None else "rows"
    log.info("hold-out by %s (auto)", way)
    return way


def _normal_captures(frame: pl.DataFrame, groups: np.ndarray) -> int:
    if "label" in frame.columns:
        normal = (frame["label"].fill_null(NORMAL) == NORMAL).to_numpy()
        groups = groups[normal]
    return len(np.unique(groups.astype(str)))


def read_training_flows(
    source: str | Path, *, holdout_by: str = "auto", **reading: Any
) -> tuple[pl.DataFrame, str, np.ndarray | None]:
    """The flows of ``source`` (read by :func:`~nadkit.sources.load_flows` with ``reading``), their
    format, and, where ``holdout_by`` holds out whole captures (``capture``; ``auto`` for packet
    captures), the file each flow came from where there are several files and the flows do not name
    their captures themselves (a mix's ``capture`` column), for :func:`~nadkit.training.fit.fit`'s
    ``holdout_groups``; None otherwise."""
    check_holdout_by(holdout_by)
    by_file = holdout_by in ("capture", "auto")
    frame, source_format = load_flows(source, file_column=FILE_COLUMN if by_file else None, **reading)
    if not by_file:
        return frame, source_format, None
    files = frame[FILE_COLUMN].to_numpy()
    frame = frame.drop(FILE_COLUMN)
    several = CAPTURE not in frame.columns and len(np.unique(files)) > 1
    if holdout_by == "auto" and source_format != pcap.NAME:
        several = False
    return frame, source_format, files if several else None


__all__ = [
    "AUTO_MIN_CAPTURES",
    "FILE_COLUMN",
    "HOLDOUT_BY",
    "capture_groups",
    "check_holdout_by",
    "read_training_flows",
    "resolved",
]
