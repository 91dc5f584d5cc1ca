"""Classical detectors kept for comparison: every evaluation reports them beside the deep models, on
the same features and split (deep models often lose to them).

- :class:`IsolationForestDetector`: scikit-learn's isolation forest.
- :class:`ECODDetector`: ECOD (Li et al., 2022, "ECOD: Unsupervised Outlier Detection Using Empirical
  Cumulative Distribution Functions"), written here with NumPy.

Both follow the detector contract: contributions are non-negative and a row's contributions sum to
its score.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

import numpy as np

from nadkit.errors import ConfigError
from nadkit.models.base import Detector, DetectorConfig, DetectorData, NotFittedError

if TYPE_CHECKING:
    from sklearn.ensemble import IsolationForest
    from torch import nn

    from nadkit.models.trainer import EpochReport

log = logging.getLogger(__name__)


def _subsample(train: DetectorData, max_rows: int | None, seed: int) -> np.ndarray:
    """The training features, or a seeded random ``max_rows`` of them."""
    features = train.features
    if max_rows is not None and len(features) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(len(features), max_rows, replace=False))
        features = features[rows]
    return features


# ---------------------------------------------------------------------------------------------------
# isolation forest
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IsolationForestConfig(DetectorConfig):
    """``trees`` in the forest, ``max_samples`` rows drawn for each tree (``"auto"``: 256, or a
    count or a fraction), ``max_features`` fraction of features per tree, ``max_train_rows`` (a
    seeded sample of a larger training table)."""

    trees: int = 200
    max_samples: int | float | str = "auto"
    max_features: float = 1.0
    max_train_rows: int | None = None

    def __post_init__(self) -> None:
        if self.trees < 1:
            raise ConfigError(f"trees must be at least 1, got {self.trees}")
        if not 0 < self.max_features <= 1:
            raise ConfigError(f"max_features must be in (0, 1], got {self.max_features}")
        if isinstance(self.max_samples, str) and self.max_samples != "auto":
            raise ConfigError(f"max_samples must be 'auto', a count or a fraction, got {self.max_samples!r}")
        if self.max_train_rows is not None and self.max_train_rows < 2:
            raise ConfigError("max_train_rows must be at least 2")


class IsolationForestDetector(Detector):
    """Isolation forest (scikit-learn); score = ``-score_samples``, the forest's anomaly score in
    (0, 1], higher = isolated sooner.

    The forest gives no per-feature attribution, so contributions use a cheap proxy: each feature's
    absolute deviation from its training median divided by its training inter-quartile range (the
    standard deviation where the IQR is zero, 1 where both are), normalised so that a row's
    contributions are its score split in proportion to these deviations (evenly when a row sits at
    the median on every feature). They are non-negative and sum to the score.
    """

    name = "iforest"
    summary = "isolation forest (scikit-learn), a baseline"
    input = "rows"
    config_class = IsolationForestConfig
    config: IsolationForestConfig

    @classmethod
    def test_config(cls) -> IsolationForestConfig:
        """A small forest that fits in well under a second."""
        return IsolationForestConfig(trees=50)

    def fit(
        self,
        train: DetectorData,
        *,
        validation: DetectorData | None = None,
        target: DetectorData | None = None,
        progress: Callable[[EpochReport], None] | None = None,
    ) -> Self:
        """Grow the forest on ``train`` (normal traffic) and learn the median and spread of each feature."""
        self._start_fit(train)
        config = self.config
        features = _subsample(train, config.max_train_rows, config.seed)
        from sklearn.ensemble import IsolationForest  # imported when used: slow to import

        forest = IsolationForest(
            n_estimators=config.trees,
            max_samples=config.max_samples,
            max_features=config.max_features,
            random_state=config.seed,
            n_jobs=1,
        )
        self.trees_ = _flatten_forest(forest.fit(features))
        values = features.astype(np.float64)
        self.median_ = np.median(values, axis=0)
        low, high = np.percentile(values, [25, 75], axis=0)
        spread = high - low
        std = values.std(axis=0)
        spread = np.where(spread > 0, spread, np.where(std > 0, std, 1.0))
        self.spread_ = spread
        self._finish_fit(train)
        return self

    def score(self, data: DetectorData) -> np.ndarray:
        """The forest's anomaly score of each row, float64."""
        self._check_fitted(data)
        if len(data) == 0:
            return np.zeros(0, dtype=np.float64)
        return _forest_scores(data.features, self.trees_)

    def state(self) -> dict[str, np.ndarray]:
        """The flattened trees and the per-feature median and spread."""
        if not self.is_fitted:
            raise NotFittedError(f"{self.name} is not fitted yet (call fit first)")
        return {**self.trees_, "median": self.median_, "spread": self.spread_}

    def load_state(self, arrays: Mapping[str, np.ndarray], feature_names: tuple[str, ...]) -> Self:
        """Restore the forest from :meth:`state`'s arrays."""
        missing = [k for k in (*_TREE_ARRAYS, "median", "spread") if k not in arrays]
        if missing:
            raise ConfigError(f"saved isolation forest lacks {missing[0]!r}")
        self.trees_ = {k: np.asarray(arrays[k]) for k in _TREE_ARRAYS}
        self.median_ = np.asarray(arrays["median"], dtype=np.float64)
        self.spread_ = np.asarray(arrays["spread"], dtype=np.float64)
        self.feature_names_ = tuple(feature_names)
        return self

    def contributions(self, data: DetectorData) -> np.ndarray:
        """The score of each row split over the features by their scaled deviation from the median."""
        scores = self.score(data)
        deviation = np.abs(data.features.astype(np.float64) - self.median_) / self.spread_
        total = deviation.sum(axis=1, keepdims=True)
        share = np.divide(
            deviation,
            total,
            out=np.full_like(deviation, 1.0 / max(data.width, 1)),
            where=total > 0,
        )
        return share * scores[:, None]

    def export_module(self) -> nn.Module:
        """The forest walk and the deviation shares as a torch module (see :meth:`contributions`)."""
        if not self.is_fitted:
            raise NotFittedError(f"{self.name} is not fitted yet (call fit first)")
        from nadkit.models.export import ForestModule

        return ForestModule(self.trees_, self.median_, self.spread_)


_TREE_ARRAYS = ("left", "right", "feature", "threshold", "leaf_depth", "roots", "normaliser")


def _average_path_length(samples: np.ndarray) -> np.ndarray:
    """Expected path length of an unsuccessful search in a binary search tree of ``samples`` points
    (the isolation forest's correction for leaves holding several points)."""
    samples = np.asarray(samples, dtype=np.float64)
    out = np.zeros_like(samples)
    out[samples == 2] = 1.0
    many = samples > 2
    n = samples[many]
    out[many] = 2.0 * (np.log(n - 1.0) + np.euler_gamma) - 2.0 * (n - 1.0) / n
    return out


def _flatten_forest(forest: IsolationForest) -> dict[str, np.ndarray]:
    """All trees of a fitted forest as flat arrays (children, split feature and threshold, and for
    leaves depth plus the average path length of the points left there), so scoring needs no
    scikit-learn object and the forest saves as plain arrays."""
    lefts, rights, features, thresholds, leaf_depths, roots = [], [], [], [], [], []
    offset = 0
    for estimator, used in zip(forest.estimators_, forest.estimators_features_, strict=True):
        tree = estimator.tree_
        left, right = tree.children_left.astype(np.int64), tree.children_right.astype(np.int64)
        leaf = left == -1
        depth = np.zeros(tree.node_count, dtype=np.float64)
        for node in range(tree.node_count):  # children are numbered after their parent
            if not leaf[node]:
                depth[left[node]] = depth[right[node]] = depth[node] + 1
        lefts.append(np.where(leaf, -1, left + offset))
        rights.append(np.where(leaf, -1, right + offset))
        features.append(np.where(leaf, 0, np.asarray(used)[np.maximum(tree.feature, 0)]))
        thresholds.append(tree.threshold.astype(np.float64))
        samples = tree.n_node_samples.astype(np.float64)
        leaf_depths.append(np.where(leaf, depth + _average_path_length(samples), 0.0))
        roots.append(offset)
        offset += tree.node_count
    normaliser = len(forest.estimators_) * _average_path_length(np.array([forest.max_samples_]))[0]
    return {
        "left": np.concatenate(lefts),
        "right": np.concatenate(rights),
        "feature": np.concatenate(features).astype(np.int64),
        "threshold": np.concatenate(thresholds),
        "leaf_depth": np.concatenate(leaf_depths),
        "roots": np.asarray(roots, dtype=np.int64),
        "normaliser": np.array([normaliser], dtype=np.float64),
    }


def _forest_scores(features: np.ndarray, trees: Mapping[str, np.ndarray], chunk: int = 8192) -> np.ndarray:
    """Anomaly scores ``2 ** (-mean path length / c(max_samples))`` of each row, walking every tree
    for a chunk of rows at once."""
    left, right, feature = trees["left"], trees["right"], trees["feature"]
    threshold, leaf_depth, roots = trees["threshold"], trees["leaf_depth"], trees["roots"]
    normaliser = float(trees["normaliser"][0])
    out = np.empty(len(features), dtype=np.float64)
    for start in range(0, len(features), chunk):
        block = features[start : start + chunk]
        rows = np.arange(len(block))[:, None]
        node = np.broadcast_to(roots, (len(block), len(roots))).copy()
        while True:
            inner = left[node] >= 0
            if not inner.any():
                break
            goes_left = block[rows, feature[node]].astype(np.float64) <= threshold[node]
            node = np.where(inner, np.where(goes_left, left[node], right[node]), node)
        out[start : start + chunk] = 2.0 ** (-leaf_depth[node].sum(axis=1) / normaliser)
    return out


# ---------------------------------------------------------------------------------------------------
# ECOD
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ECODConfig(DetectorConfig):
    """``max_reference_rows``: above this many training rows, each feature's empirical distribution
    is kept as that many evenly spaced quantiles instead of every sorted value (bounds memory and
    scoring time; tail probabilities then resolve to ``1 / (max_reference_rows + 1)``)."""

    max_reference_rows: int = 100_000

    def __post_init__(self) -> None:
        if self.max_reference_rows < 2:
            raise ConfigError("max_reference_rows must be at least 2")


class ECODDetector(Detector):
    """ECOD: per feature, the empirical left and right tail probabilities of a value under the
    training distribution, as ``-log`` probabilities.

    For feature ``j`` with ``m`` reference values, ``U_left = -log((#{ref <= x} + 1) / (m + 1))`` and
    ``U_right = -log((#{ref >= x} + 1) / (m + 1))`` (the scored row counts as one observation, so a
    value beyond the training range has a finite term ``log(m + 1)``). The skewness-corrected term
    ``U_skew`` takes the left tail on features whose training skewness is negative, else the right.
    The score is the largest of the three sums ``sum U_left``, ``sum U_right``, ``sum U_skew``; the
    contributions are the per-feature terms of that largest sum (non-negative, summing to the score).
    """

    name = "ecod"
    summary = "ECOD: empirical tail probabilities of each feature, a baseline"
    input = "rows"
    config_class = ECODConfig
    config: ECODConfig

    @classmethod
    def test_config(cls) -> ECODConfig:
        """ECOD has no training loop; the defaults are already fast."""
        return ECODConfig()

    def fit(
        self,
        train: DetectorData,
        *,
        validation: DetectorData | None = None,
        target: DetectorData | None = None,
        progress: Callable[[EpochReport], None] | None = None,
    ) -> Self:
        """Keep each feature's sorted training values (or quantiles of them) and its skewness."""
        self._start_fit(train)
        values = train.features
        limit = self.config.max_reference_rows
        if len(values) > limit:
            # evenly spaced order statistics: the inverted-CDF quantiles at (i + 0.5) / limit
            levels = (np.arange(limit) + 0.5) / limit
            index = np.ceil(levels * len(values)).astype(np.int64) - 1
            reference = np.sort(values, axis=0)[index]
            log.info("ecod: %d training rows summarised by %d quantiles per feature", len(values), limit)
        else:
            reference = np.sort(values, axis=0)
        self.reference_ = np.ascontiguousarray(reference.T, dtype=np.float32)
        from scipy import stats  # imported when used: slow to import

        with np.errstate(all="ignore"):
            skewness = stats.skew(values.astype(np.float64), axis=0, bias=True)
        self.skewness_ = np.nan_to_num(np.asarray(skewness, dtype=np.float64), nan=0.0)
        self._finish_fit(train)
        return self

    def state(self) -> dict[str, np.ndarray]:
        """The sorted reference columns and the per-feature skewness."""
        if not self.is_fitted:
            raise NotFittedError(f"{self.name} is not fitted yet (call fit first)")
        return {"reference": self.reference_, "skewness": self.skewness_}

    def load_state(self, arrays: Mapping[str, np.ndarray], feature_names: tuple[str, ...]) -> Self:
        """Restore from :meth:`state`'s arrays."""
        if "reference" not in arrays or "skewness" not in arrays:
            raise ConfigError("saved ECOD state lacks its reference or skewness arrays")
        self.reference_ = np.ascontiguousarray(arrays["reference"], dtype=np.float32)
        self.skewness_ = np.asarray(arrays["skewness"], dtype=np.float64)
        self.feature_names_ = tuple(feature_names)
        return self

    def tails(self, data: DetectorData) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, features)`` left and right tail terms ``-log`` probability of every value."""
        self._check_fitted(data)
        features = data.features
        reference = self.reference_
        m = reference.shape[1]
        left = np.empty(features.shape, dtype=np.float64)
        right = np.empty(features.shape, dtype=np.float64)
        for j in range(features.shape[1]):
            column = features[:, j]
            left[:, j] = np.searchsorted(reference[j], column, side="right")
            right[:, j] = m - np.searchsorted(reference[j], column, side="left")
        norm = np.log(m + 1.0)
        return norm - np.log1p(left), norm - np.log1p(right)

    def _chosen_terms(self, data: DetectorData) -> np.ndarray:
        left, right = self.tails(data)
        skew = np.where(self.skewness_ < 0, left, right)
        candidates = np.stack([left, right, skew])  # (3, rows, features)
        chosen = np.argmax(candidates.sum(axis=2), axis=0)
        return np.maximum(candidates[chosen, np.arange(len(data))], 0.0)

    def score(self, data: DetectorData) -> np.ndarray:
        """``max(sum U_left, sum U_right, sum U_skew)`` of each row, float64."""
        return self._chosen_terms(data).sum(axis=1)

    def contributions(self, data: DetectorData) -> np.ndarray:
        """The per-feature tail terms of the sum chosen for each row."""
        return self._chosen_terms(data)

    def export_module(self) -> nn.Module:
        """The tail terms and the choice of sum as a torch module (see :meth:`contributions`)."""
        if not self.is_fitted:
            raise NotFittedError(f"{self.name} is not fitted yet (call fit first)")
        from nadkit.models.export import TailModule

        return TailModule(self.reference_, self.skewness_)


#: the detectors this module defines, in registry order
DETECTORS: tuple[type[Detector], ...] = (IsolationForestDetector, ECODDetector)
