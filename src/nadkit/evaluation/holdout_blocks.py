"""The normal hold-outs of unsupervised training that are not single rows: stretches of consecutive
flows in time, and whole groups of flows (captures); see
:func:`nadkit.evaluation.split.unsupervised_split`."""

from __future__ import annotations

import numpy as np
import polars as pl

from nadkit.errors import ConfigError

#: Consecutive stretches of flows a time-ordered hold-out is made of.
HOLDOUT_BLOCKS = 3


def group_blocks(
    groups: np.ndarray, normal: np.ndarray, fraction: float, rng: np.random.Generator
) -> np.ndarray | None:
    """The hold-out mask of whole groups of normal rows (see :func:`unsupervised_split`), or None
    where the normal rows are of one group."""
    groups = np.asarray(groups)
    if groups.shape != normal.shape:
        raise ConfigError(f"{groups.size} group names for {normal.size} rows")
    names, counts = np.unique(groups[normal].astype(str), return_counts=True)
    if len(names) < 2:
        return None
    target = fraction * counts.sum()
    chosen: list[str] = []
    held_rows = 0
    for index in rng.permutation(len(names)):
        if held_rows >= target or len(chosen) == len(names) - 1:
            break
        # a group that would take the hold-out far past its share is passed over
        if held_rows + counts[index] <= 2 * target:
            chosen.append(str(names[index]))
            held_rows += int(counts[index])
    if not chosen:  # every group alone is more than twice the share: the smallest one
        chosen = [str(names[int(np.argmin(counts))])]
    return np.isin(groups.astype(str), chosen) & normal


def time_blocks(
    frame: pl.DataFrame, normal: np.ndarray, fraction: float, rng: np.random.Generator
) -> np.ndarray | None:
    """The hold-out mask of :data:`HOLDOUT_BLOCKS` stretches of consecutive normal rows, or None where
    the rows have no times (or too few normal rows for the stretches)."""
    if "time" not in frame.columns or frame["time"].null_count() > 0:
        return None
    stretches = max(HOLDOUT_BLOCKS + 1, round(HOLDOUT_BLOCKS / fraction))
    rows = np.flatnonzero(normal)
    if len(rows) < 2 * stretches:
        return None
    order = rows[np.argsort(frame["time"].to_numpy()[rows], kind="stable")]
    held = np.zeros(frame.height, dtype=bool)
    parts = np.array_split(order, stretches)
    for index in rng.choice(stretches, HOLDOUT_BLOCKS, replace=False):
        held[parts[index]] = True
    return held
