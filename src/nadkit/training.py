"""From flow tables to what detectors read, and the honest split of labelled data for unsupervised
training: fit on normal rows only, keep a labelled hold-out for early stopping checks and thresholds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from nadkit.errors import ConfigError
from nadkit.features.counters import column_codes
from nadkit.features.pipeline import FeaturePipeline
from nadkit.features.series import BucketSeries
from nadkit.metrics import BinaryMetrics, binary_metrics
from nadkit.models.base import DetectorData, create
from nadkit.models.neural import NeuralDetector
from nadkit.models.trainer import EpochReport
from nadkit.schema import NORMAL
from nadkit.sources import load_flows
from nadkit.thresholds import f_beta_optimal_threshold, quantile_threshold

if TYPE_CHECKING:
    from nadkit.bundle import ModelBundle

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


def holdout_threshold(
    scores: np.ndarray, labels: np.ndarray | None, false_positive_rate: float = 0.01
) -> tuple[dict[str, Any], BinaryMetrics | None]:
    """The alert threshold chosen on a hold-out's scores, as saved in a bundle, and the hold-out's
    metrics at it (None without attacks). With both normal and attack rows: F1-optimal; otherwise
    the score exceeded by ``false_positive_rate`` of the normal (or unlabelled) rows."""
    attack = labels != NORMAL if labels is not None else np.zeros(len(scores), dtype=bool)
    if attack.any() and (~attack).any():
        value = f_beta_optimal_threshold(scores, attack, beta=1.0)
        threshold = {"method": "f_beta", "beta": 1.0, "value": value, "rows": len(scores)}
        return threshold, binary_metrics(scores, attack, value)
    normal_scores = scores[~attack] if (~attack).any() else scores
    value = quantile_threshold(normal_scores, false_positive_rate)
    threshold = {
        "method": "quantile",
        "false_positive_rate": false_positive_rate,
        "value": value,
        "rows": len(normal_scores),
    }
    return threshold, None


@dataclass(frozen=True)
class TrainingResult:
    """What `nadkit train` produced: the bundle, and the numbers to show."""

    bundle: ModelBundle
    path: Path
    train_rows: int
    holdout_rows: int
    holdout_attacks: int
    fit_seconds: float


def train_model(
    source: str | Path,
    out: str | Path,
    *,
    model: str,
    config: Mapping[str, Any] | None = None,
    format: str | None = None,
    mapping: str | None = None,
    holdout_fraction: float = 0.3,
    false_positive_rate: float = 0.01,
    seed: int = 0,
    overwrite: bool = False,
    progress: Callable[[EpochReport], None] | None = None,
) -> TrainingResult:
    """Train ``model`` on the flows of ``source`` and save the bundle to ``out``.

    Labelled data: the detector learns from normal rows only; a labelled hold-out (some normal rows
    and every attack row) sets the threshold (F1-optimal when it holds attacks, else the score
    exceeded by ``false_positive_rate`` of its normal rows). Unlabelled data is taken as mostly
    normal and the threshold is the quantile one.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out}: already exists (use --force to replace it)")
    options = dict(config or {})
    options.setdefault("seed", seed)
    detector = create(model, options)
    if detector.supervised:
        raise ConfigError(f"{model} is supervised; it is trained with labels (not available here yet)")
    frame, _ = load_flows(source, format=format, mapping=mapping)
    split = unsupervised_split(frame, holdout_fraction=holdout_fraction, seed=seed)
    if split.train.height == 0:
        raise ConfigError(f"{source}: no normal rows left to train on")
    pipeline = FeaturePipeline().fit(split.train)
    train = detector_data(pipeline, split.train)
    holdout = detector_data(pipeline, split.holdout)
    started = time.perf_counter()
    fit_options: dict[str, Any] = {"progress": progress} if isinstance(detector, NeuralDetector) else {}
    detector.fit(train, **fit_options)
    fit_seconds = time.perf_counter() - started
    threshold, measured = holdout_threshold(detector.score(holdout), holdout.labels, false_positive_rate)
    attack = holdout.labels != NORMAL if holdout.labels is not None else np.zeros(len(holdout), dtype=bool)
    metrics: dict[str, Any] = {"fit_seconds": fit_seconds, "train_rows": len(train)}
    history = getattr(detector, "history_", None)
    if history is not None:
        metrics["history"] = history.to_dict()
    if measured is not None:
        note = "on the hold-out the threshold was chosen on (optimistic)"
        metrics["holdout"] = {**measured.to_dict(), "note": note}
    from nadkit.bundle import ModelBundle, fingerprint

    bundle = ModelBundle(pipeline=pipeline, detector=detector, threshold=threshold, metrics=metrics)
    bundle.save(out, overwrite=overwrite, data_fingerprint=fingerprint(train))
    return TrainingResult(
        bundle=bundle,
        path=out,
        train_rows=len(train),
        holdout_rows=len(holdout),
        holdout_attacks=int(attack.sum()),
        fit_seconds=fit_seconds,
    )


@dataclass(frozen=True)
class BucketScaling:
    """Standardisation of ``log1p`` bucket metrics, fitted on training buckets."""

    columns: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, series: BucketSeries) -> BucketScaling:
        """Learn the mean and spread of each metric's ``log1p`` on ``series``."""
        values = np.log1p(np.maximum(series.matrix(), 0.0))
        std = values.std(axis=0)
        return cls(columns=series.metrics, mean=values.mean(axis=0), std=np.where(std > 0, std, 1.0))

    def transform(self, series: BucketSeries) -> np.ndarray:
        """The scaled ``(buckets, metrics)`` float32 matrix of ``series``."""
        if tuple(series.metrics) != self.columns:
            raise ConfigError("bucket metrics differ from the ones the scaling was fitted on")
        values = np.log1p(np.maximum(series.matrix(), 0.0))
        return ((values - self.mean) / self.std).astype(np.float32)


def bucket_detector_data(series: BucketSeries, scaling: BucketScaling) -> DetectorData:
    """The time-bucket view for windowed detectors: one row per (entity, bucket), windows over
    consecutive buckets of an entity; scores map back to flows with ``series.to_flows``."""
    by = series.config.by
    entity = None
    if by:
        entity, _ = column_codes(series.frame[by])
    time = series.frame["bucket"].dt.epoch("us").to_numpy()
    return DetectorData(
        features=scaling.transform(series),
        feature_names=tuple(series.metrics),
        entity=entity,
        time=time,
    )
