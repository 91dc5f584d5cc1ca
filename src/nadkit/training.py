"""From flow tables to what detectors read, and the honest split of labelled data for unsupervised
training: fit on normal rows only, keep a labelled hold-out for early stopping checks and thresholds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from nadkit.errors import ConfigError
from nadkit.features.counters import column_codes
from nadkit.features.pipeline import FeaturePipeline
from nadkit.models.base import DetectorData
from nadkit.schema import NORMAL

log = logging.getLogger(__name__)

#: the default sequence entity of windowed detectors: flows of one source host
DEFAULT_ENTITY: tuple[str, ...] = ("src",)


def entity_codes(frame: pl.DataFrame, key: Sequence[str] = DEFAULT_ENTITY) -> np.ndarray | None:
    """One integer per row identifying its entity (rows of one key value share it), or None when the
    frame lacks a key column."""
    if not key or any(c not in frame.columns for c in key):
        return None
    if len(key) == 1:
        codes, _ = column_codes(frame[key[0]])
        return codes.astype(np.int64)
    # several columns: a 64-bit hash of the tuple (collisions are negligible at flow-table sizes)
    return frame.select(pl.struct(list(key)).hash(seed=11)).to_series().to_numpy().view(np.int64)


def detector_data(
    pipeline: FeaturePipeline, frame: pl.DataFrame, *, entity: Sequence[str] = DEFAULT_ENTITY
) -> DetectorData:
    """The scaled features of ``frame`` with entity, time (epoch microseconds) and labels attached."""
    features = pipeline.transform_numpy(frame)
    time = frame["time"].dt.epoch("us").fill_null(0).to_numpy() if "time" in frame.columns else None
    labels = frame["label"].fill_null(NORMAL).to_numpy() if "label" in frame.columns else None
    return DetectorData(
        features=features,
        feature_names=tuple(pipeline.feature_names_),
        entity=entity_codes(frame, entity),
        time=time,
        labels=labels,
    )


@dataclass(frozen=True)
class UnsupervisedSplit:
    """Normal rows to train on, and a labelled hold-out (normal and attack rows) for thresholds."""

    train: pl.DataFrame
    holdout: pl.DataFrame


def unsupervised_split(
    frame: pl.DataFrame, *, holdout_fraction: float = 0.3, seed: int = 0
) -> UnsupervisedSplit:
    """Split labelled flows for unsupervised training: ``holdout_fraction`` of the normal rows and all
    attack rows form the labelled hold-out; the remaining normal rows are the training set.

    Unlabelled data is taken as mostly normal: a random ``holdout_fraction`` is held out (unlabelled)
    for early stopping. Rows keep their original order on both sides.
    """
    if not 0 < holdout_fraction < 1:
        raise ConfigError(f"holdout_fraction must be between 0 and 1, got {holdout_fraction}")
    rng = np.random.default_rng(seed)
    if "label" not in frame.columns:
        held = rng.random(frame.height) < holdout_fraction
        mask = pl.Series(held)
        return UnsupervisedSplit(train=frame.filter(~mask), holdout=frame.filter(mask))
    normal = (frame["label"].fill_null(NORMAL) == NORMAL).to_numpy()
    if not normal.any():
        raise ConfigError("the labelled data has no normal rows to train an unsupervised model on")
    held = ~normal | (rng.random(frame.height) < holdout_fraction)
    mask = pl.Series(held)
    split = UnsupervisedSplit(train=frame.filter(~mask), holdout=frame.filter(mask))
    log.info(
        "unsupervised split: %d normal training rows, %d hold-out rows (%d attacks)",
        split.train.height,
        split.holdout.height,
        int((~normal).sum()),
    )
    return split
