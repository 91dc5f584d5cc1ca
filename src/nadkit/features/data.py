"""What a detector reads (:class:`DetectorData`) and how a flow table becomes it.

The contract between the features stage and the models: scaled features as a ``float32`` matrix
with their names and, per row, the entity (for sequence models), the time and the label.
:func:`detector_data` builds it from a fitted :class:`~nadkit.features.pipeline.FeaturePipeline`
and a flow table; :func:`entity_codes` numbers the sequence entity (by default the source host).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from nadkit.errors import ConfigError
from nadkit.features.counters import column_codes
from nadkit.schema import NORMAL

if TYPE_CHECKING:
    from nadkit.features.pipeline import FeaturePipeline

#: what :func:`as_detector_data` reads: a detector's input, a 2-D array, or a pandas or Polars table
ArrayLike = Any


@dataclass(frozen=True)
class DetectorData:
    """What a detector reads: features (``float32``, rows x features) and, for sequence models, the
    entity (any integer code per row; rows of one entity form a sequence) and time (int64
    microseconds, or any increasing number) of each row. ``labels`` are class names, for supervised
    models and evaluation only."""

    features: np.ndarray
    feature_names: tuple[str, ...]
    entity: np.ndarray | None = None
    time: np.ndarray | None = None
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        features = np.ascontiguousarray(self.features, dtype=np.float32)
        if features.ndim != 2:
            raise ConfigError(f"features must be a 2-D array, got shape {features.shape}")
        if features.shape[1] != len(self.feature_names):
            raise ConfigError(
                f"{features.shape[1]} feature columns but {len(self.feature_names)} feature names"
            )
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        for name in ("entity", "time", "labels"):
            value = getattr(self, name)
            if value is not None and len(value) != len(features):
                raise ConfigError(f"{name} has {len(value)} values for {len(features)} rows")

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def width(self) -> int:
        """Number of features."""
        return int(self.features.shape[1])

    def take(self, rows: np.ndarray | slice) -> DetectorData:
        """The subset of rows (``rows``: indices, a boolean mask or a slice), in that order."""

        def pick(value: np.ndarray | None) -> np.ndarray | None:
            return None if value is None else value[rows]

        return DetectorData(
            features=self.features[rows],
            feature_names=self.feature_names,
            entity=pick(self.entity),
            time=pick(self.time),
            labels=pick(self.labels),
        )


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


def as_detector_data(value: ArrayLike, feature_names: Sequence[str] | None = None) -> DetectorData:
    """``value`` as a detector's input: a :class:`DetectorData` as it is; a 2-D NumPy array (or
    anything ``numpy.asarray`` makes one of) with ``feature_names`` or ``x0``, ``x1``...; a pandas
    or Polars table with its column names (every column must be numeric). Rows form one sequence,
    in order, for windowed detectors."""
    if isinstance(value, DetectorData):
        return value
    if isinstance(value, pl.DataFrame):
        names = value.columns
        text = [n for n, dtype in value.schema.items() if not dtype.is_numeric() and dtype != pl.Boolean]
        if text:
            raise ConfigError(f"column {text[0]!r} is not numeric: detectors read numbers")
        array = value.cast(pl.Float32).to_numpy()
    elif hasattr(value, "columns") and hasattr(value, "to_numpy"):  # a pandas DataFrame
        names = [str(c) for c in value.columns]
        try:
            array = value.to_numpy(dtype=np.float32)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"the table is not all numeric: detectors read numbers ({error})") from None
    else:
        try:
            array = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"cannot read the rows as numbers ({error})") from None
        if array.ndim == 1:
            raise ConfigError("a detector reads a 2-D array (rows x features); reshape a single row")
        names = [f"x{i}" for i in range(array.shape[1])] if array.ndim == 2 else []
    if feature_names is not None:
        names = list(feature_names)
    return DetectorData(features=array, feature_names=tuple(names))
