"""``multitask_gbt``: the multitask network (:mod:`nadkit.models.multitask`) and gradient-boosted
trees (scikit-learn's HistGradientBoostingClassifier, balanced class weights) trained on the same
rows, their class probabilities averaged.

Both learn from the training part and stop early on the validation part (the network on its
selection score, the trees on their validation loss); the network's share of the average,
``network_weight``, is then chosen (the macro F1, or the NAD score for NAD's classes) unless the
config fixes it: on the validation part, or, where the rows have times (``weight_from``), on later
traffic: a probe pair is trained on the earlier rows of the training and validation parts together
and judged on the latest of them, so that the share reflects how each part carries over to traffic
it has not seen (trees fit the exact values of their training days; on later days with new attack
families the network holds up far better), and the final pair is trained as before with the share
the probe chose. Scores: ``1 - P(normal)`` of the average. Predictions: its most probable class.

The trees are kept as flat arrays (children, split feature and threshold, leaf values, roots, the
class each tree votes for and the starting raw scores), so the bundle needs no pickle and scoring no
scikit-learn object. Contributions: the network's integrated gradients (its share of the score,
exact); the trees' share of the score is spread over the features in proportion to the absolute
values of those attributions (evenly where they are all 0), an approximation that keeps every row
summing to its score.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Self

import numpy as np
import torch
from torch import nn

from nadkit.errors import ConfigError
from nadkit.evaluation.split import stratified_holdout
from nadkit.models.base import Detector, DetectorData, NotFittedError
from nadkit.models.export import tree_depth
from nadkit.models.multitask import (
    IntegratedGradients,
    MultitaskClassifier,
    MultitaskConfig,
    MultitaskDetector,
    selection_score,
)
from nadkit.models.trainer import EpochReport
from nadkit.schema import NORMAL

log = logging.getLogger(__name__)

#: the state entries of the flattened trees
TREE_ARRAYS = (
    "gbt.left",
    "gbt.right",
    "gbt.feature",
    "gbt.threshold",
    "gbt.missing_left",
    "gbt.value",
    "gbt.roots",
    "gbt.column",
    "gbt.baseline",
    "gbt.class_of_column",
    "gbt.network_weight",
)
#: the network's shares of the average tried on the validation part
NETWORK_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: where :class:`MultitaskGBTConfig` may choose the network's share
WEIGHT_FROM = ("auto", "validation", "later")
#: tree-node visits per chunk of the NumPy walk (rows x trees), which bounds its memory
_WALK_CELLS = 1 << 22


@dataclass(frozen=True)
class MultitaskGBTConfig(MultitaskConfig):
    """:class:`~nadkit.models.multitask.MultitaskConfig`'s fields for the network, and the trees':
    at most ``tree_iterations`` boosting rounds (stopped early on the validation loss after
    ``tree_patience`` rounds without improvement), ``tree_learning_rate``, ``tree_leaves`` per tree,
    ``tree_class_weight`` (``"balanced"`` or ``"none"``). ``network_weight``: the network's share of
    the averaged probabilities (None: chosen among 0, 0.25, 0.5, 0.75, 1; 0.5 without labelled rows
    to choose it on). ``weight_from``: where a share left to choose is chosen: ``"validation"`` (the
    validation part), ``"later"`` (the latest ``validation_fraction`` by time of the training and
    validation rows together, judged with a probe pair trained on the earlier rest: about twice the
    training time; rows without times fall back to the validation part), ``"auto"`` (``later``
    where the rows have times, else ``validation``)."""

    tree_iterations: int = 500
    tree_learning_rate: float = 0.1
    tree_leaves: int = 31
    tree_patience: int = 10
    tree_class_weight: str = "balanced"
    network_weight: float | None = None
    weight_from: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.tree_iterations < 1 or self.tree_leaves < 2 or self.tree_patience < 1:
            raise ConfigError("tree_iterations and tree_patience must be at least 1, tree_leaves at least 2")
        if not self.tree_learning_rate > 0:
            raise ConfigError(f"tree_learning_rate must be positive, got {self.tree_learning_rate}")
        if self.tree_class_weight not in ("balanced", "none"):
            raise ConfigError(
                f"tree_class_weight must be 'balanced' or 'none', got {self.tree_class_weight!r}"
            )
        if self.network_weight is not None and not 0 <= self.network_weight <= 1:
            raise ConfigError(f"network_weight must be in [0, 1], got {self.network_weight}")
        if self.weight_from not in WEIGHT_FROM:
            raise ConfigError(
                f"weight_from must be one of {', '.join(WEIGHT_FROM)}, got {self.weight_from!r}"
            )

    def network_config(self) -> MultitaskConfig:
        """The network's part of the config."""
        names = {f.name for f in dataclasses.fields(MultitaskConfig)}
        return MultitaskConfig(**{k: v for k, v in dataclasses.asdict(self).items() if k in names})


# ---------------------------------------------------------------------------------------------------
# flat trees
# ---------------------------------------------------------------------------------------------------


def flatten_boosting(model: object, classes: tuple[str, ...]) -> dict[str, np.ndarray]:
    """A fitted HistGradientBoostingClassifier (numeric features) as the flat arrays of
    :data:`TREE_ARRAYS` (all but the network weight): every tree's nodes, with global child indices
    (-1 at leaves), ``roots`` of the trees, the raw-score ``column`` each tree adds to, the starting
    raw scores and, per column, the index in ``classes`` of the class it scores (with two classes the
    one column is the logit of its class)."""
    lefts, rights, features, thresholds, missing, values, roots, columns = [], [], [], [], [], [], [], []
    offset = 0
    for iteration in model._predictors:  # type: ignore[attr-defined]
        for column, predictor in enumerate(iteration):
            nodes = predictor.nodes
            leaf = nodes["is_leaf"].astype(bool)
            if np.any(nodes["is_categorical"][~leaf]):
                raise ConfigError("categorical splits are not supported (the features are numeric)")
            lefts.append(np.where(leaf, -1, nodes["left"].astype(np.int64) + offset))
            rights.append(np.where(leaf, -1, nodes["right"].astype(np.int64) + offset))
            features.append(np.where(leaf, 0, nodes["feature_idx"]).astype(np.int64))
            thresholds.append(np.where(leaf, 0.0, nodes["num_threshold"]).astype(np.float64))
            missing.append(nodes["missing_go_to_left"].astype(np.uint8))
            values.append(np.where(leaf, nodes["value"], 0.0).astype(np.float64))
            roots.append(offset)
            columns.append(column)
            offset += len(nodes)
    tree_classes = [str(c) for c in model.classes_]  # type: ignore[attr-defined]
    lookup = {name: index for index, name in enumerate(classes)}
    per_column = tree_classes[1:] if len(tree_classes) == 2 else tree_classes
    return {
        "gbt.left": np.concatenate(lefts),
        "gbt.right": np.concatenate(rights),
        "gbt.feature": np.concatenate(features),
        "gbt.threshold": np.concatenate(thresholds),
        "gbt.missing_left": np.concatenate(missing),
        "gbt.value": np.concatenate(values),
        "gbt.roots": np.asarray(roots, dtype=np.int64),
        "gbt.column": np.asarray(columns, dtype=np.int64),
        "gbt.baseline": np.asarray(model._baseline_prediction, dtype=np.float64).reshape(-1),  # type: ignore[attr-defined]
        "gbt.class_of_column": np.asarray([lookup[name] for name in per_column], dtype=np.int64),
    }


def tree_raw_scores(features: np.ndarray, trees: Mapping[str, np.ndarray]) -> np.ndarray:
    """The boosted raw scores ``(rows, columns)`` of feature rows: the starting scores plus the leaf
    value each tree sends the row to (left when at most the threshold; NaN by the node's rule)."""
    left, right, feature = trees["gbt.left"], trees["gbt.right"], trees["gbt.feature"]
    threshold, missing_left = trees["gbt.threshold"], trees["gbt.missing_left"].astype(bool)
    value, roots, column = trees["gbt.value"], trees["gbt.roots"], trees["gbt.column"]
    baseline = trees["gbt.baseline"]
    out = np.tile(baseline, (len(features), 1))
    chunk = max(1, _WALK_CELLS // max(len(roots), 1))
    for start in range(0, len(features), chunk):
        block = features[start : start + chunk].astype(np.float64)
        rows = np.arange(len(block))[:, None]
        node = np.broadcast_to(roots, (len(block), len(roots))).copy()
        while True:
            inner = left[node] >= 0
            if not inner.any():
                break
            x = block[rows, feature[node]]
            goes_left = (x <= threshold[node]) | (np.isnan(x) & missing_left[node])
            node = np.where(inner, np.where(goes_left, left[node], right[node]), node)
        leaves = value[node]
        for c in range(len(baseline)):
            out[start : start + chunk, c] += leaves[:, column == c].sum(axis=1)
    return out


def raw_to_probabilities(raw: np.ndarray, class_of_column: np.ndarray, classes: int) -> np.ndarray:
    """Class probabilities ``(rows, classes)`` from the trees' raw scores: a softmax over the
    columns, or with one column the logistic of its class against the other."""
    out = np.zeros((len(raw), classes), dtype=np.float64)
    if raw.shape[1] == 1:
        positive = 1.0 / (1.0 + np.exp(-raw[:, 0]))
        out[:, class_of_column[0]] = positive
        out[:, 1 - class_of_column[0]] = 1.0 - positive
        return out
    shifted = np.exp(raw - raw.max(axis=1, keepdims=True))
    out[:, class_of_column] = shifted / shifted.sum(axis=1, keepdims=True)
    return out


class BoostedTreesModule(nn.Module):
    """The flat trees as a torch module: ``forward(x)`` gives the ``(b, classes)`` probabilities of
    feature rows. Every row walks every tree for as many steps as the deepest leaf is deep (a leaf
    leads to itself); the leaf values are summed into their columns by a ``(trees, columns)``
    one-hot matrix."""

    def __init__(self, trees: Mapping[str, np.ndarray], classes: int) -> None:
        super().__init__()
        from nadkit.models.export import _round_down_float32

        left = np.asarray(trees["gbt.left"], dtype=np.int64)
        right = np.asarray(trees["gbt.right"], dtype=np.int64)
        roots = np.asarray(trees["gbt.roots"], dtype=np.int64)
        nodes = np.arange(len(left), dtype=np.int64)
        leaf = left < 0
        self.depth = tree_depth(left, right, roots)
        children = np.stack([np.where(leaf, nodes, left), np.where(leaf, nodes, right)], axis=1)
        self.register_buffer("child", torch.from_numpy(children.reshape(-1)))
        self.register_buffer("feature", torch.from_numpy(np.asarray(trees["gbt.feature"], dtype=np.int64)))
        self.register_buffer("threshold", torch.from_numpy(_round_down_float32(trees["gbt.threshold"])))
        missing = np.asarray(trees["gbt.missing_left"], dtype=bool)
        self.register_buffer("missing_left", torch.from_numpy(missing))
        self.register_buffer("value", torch.from_numpy(np.asarray(trees["gbt.value"], dtype=np.float64)))
        self.register_buffer("roots", torch.from_numpy(roots))
        column = np.asarray(trees["gbt.column"], dtype=np.int64)
        baseline = np.asarray(trees["gbt.baseline"], dtype=np.float64)
        one_hot = np.zeros((len(column), len(baseline)), dtype=np.float64)
        one_hot[np.arange(len(column)), column] = 1.0
        self.register_buffer("one_hot", torch.from_numpy(one_hot))
        self.register_buffer("baseline", torch.from_numpy(baseline))
        class_of_column = np.asarray(trees["gbt.class_of_column"], dtype=np.int64)
        # probabilities in column order, then placed at their classes
        placement = np.zeros((max(len(baseline), 2), classes), dtype=np.float64)
        if len(baseline) == 1:
            placement[0, class_of_column[0]] = 1.0
            placement[1, 1 - class_of_column[0]] = 1.0
        else:
            placement[np.arange(len(baseline)), class_of_column] = 1.0
        self.register_buffer("placement", torch.from_numpy(placement))
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(b, classes)`` float64 probabilities of rows ``x``."""
        node = self.roots.unsqueeze(0).expand(x.shape[0], -1)
        for _ in range(self.depth):
            value = torch.gather(x, 1, self.feature[node])
            goes_left = (value <= self.threshold[node]) | (torch.isnan(value) & self.missing_left[node])
            node = self.child[node * 2 + 1 - goes_left.long()]
        raw = self.value[node] @ self.one_hot + self.baseline
        if raw.shape[1] == 1:
            positive = torch.sigmoid(raw)
            in_columns = torch.cat([positive, 1.0 - positive], dim=1)
        else:
            in_columns = torch.softmax(raw, dim=1)
        return in_columns @ self.placement


class HybridProbabilities(nn.Module):
    """``forward(x)``: the ``(b, k)`` averaged probabilities, ``w`` x the network's plus ``1 - w`` x
    the trees'."""

    def __init__(
        self, network: MultitaskClassifier, trees: BoostedTreesModule, network_weight: float
    ) -> None:
        super().__init__()
        self.network = network
        self.trees = trees
        self.network_weight = float(network_weight)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities of feature rows ``x``."""
        tree_part = self.trees(x).to(x.dtype)
        return self.network_weight * self.network(x) + (1.0 - self.network_weight) * tree_part


class HybridContributions(nn.Module):
    """``forward(x)``: the ``(b, d)`` float32 contributions of the hybrid's scores (see the module
    docstring), each row summing to its score."""

    def __init__(
        self, network: MultitaskClassifier, trees: BoostedTreesModule, network_weight: float, steps: int
    ) -> None:
        super().__init__()
        self.attribution = IntegratedGradients(network, steps)
        self.trees = trees
        self.network_weight = float(network_weight)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-feature contributions of each row of ``x``."""
        network_part = self.attribution(x).to(torch.float64) * self.network_weight
        tree_score = self.trees(x)[:, 1:].sum(dim=1, keepdim=True) * (1.0 - self.network_weight)
        size = network_part.abs()
        total = size.sum(dim=1, keepdim=True)
        share = torch.where(total > 0, size / torch.clamp(total, min=1e-300), 1.0 / x.shape[1])
        return (network_part + share * tree_score).to(torch.float32)


# ---------------------------------------------------------------------------------------------------
# the detector
# ---------------------------------------------------------------------------------------------------


class MultitaskGBTDetector(MultitaskDetector):
    """The multitask network and balanced gradient-boosted trees, their probabilities averaged (see
    the module docstring). ``network_`` is the fitted network alone (a :class:`MultitaskDetector`)."""

    name = "multitask_gbt"
    summary = "multitask network and balanced boosted trees, probabilities averaged (weighed on later flows)"
    config_class = MultitaskGBTConfig
    config: MultitaskGBTConfig

    @classmethod
    def test_config(cls) -> MultitaskGBTConfig:
        """Small and quick: the network of ``multitask``'s test config and 30 rounds of small trees."""
        network = dataclasses.asdict(MultitaskDetector.test_config())
        return MultitaskGBTConfig(**network, tree_iterations=30, tree_leaves=8)

    def fit(
        self,
        train: DetectorData,
        *,
        validation: DetectorData | None = None,
        target: DetectorData | None = None,
        progress: Callable[[EpochReport], None] | None = None,
    ) -> Self:
        """Train the network (as ``multitask`` does) and the trees on ``train``, both stopped early
        on ``validation`` (else on a stratified ``validation_fraction`` of ``train``, the same rows for
        both), and choose the network's weight there. ``target``: unlabelled rows the network aligns
        to by CMD (the trees ignore it)."""
        self._start_fit(train)
        config = self.config
        if train.labels is None:
            raise ConfigError(f"{self.name} is supervised: the training data needs labels")
        if validation is None and config.validation_fraction > 0:
            labels = np.asarray(train.labels).astype(str)
            _, codes = np.unique(labels, return_inverse=True)
            held = stratified_holdout(codes, config.validation_fraction, config.seed)
            validation = train.take(np.flatnonzero(held))
            train = train.take(np.flatnonzero(~held))
        weight = config.network_weight
        #: how the network's share was set: "fixed" (the config), "later rows", "validation part" or
        #: "default" (0.5, nothing labelled to choose on), with the selection score of each share tried
        self.weight_choice_: dict[str, object] = {"chosen_on": "fixed"}
        if weight is None and config.weight_from != "validation":
            weight = self._weight_on_later_rows(train, validation)
        network = MultitaskDetector(config.network_config())
        network.fit(train, validation=validation, target=target, progress=progress)
        classes = network.classes_
        trees = _fit_trees(train, validation, classes, config)
        if weight is None:
            weight = 0.5  # without a labelled validation part
            self.weight_choice_ = {"chosen_on": "default"}
            if validation is not None and validation.labels is not None:
                weight = self._best_weight(
                    network.predict_proba(validation), trees, validation, classes, "validation part"
                )
        self.network_ = network
        self.trees_ = {**trees, "gbt.network_weight": np.array([weight], dtype=np.float64)}
        self.network_weight_ = float(weight)
        self.weight_choice_["network_weight"] = float(weight)
        self.module_ = network.module_
        self.device_ = network.device_
        self.classes_ = classes
        self.histories_ = network.histories_
        self.history_ = network.history_
        self._finish_fit(train)
        return self

    def _best_weight(
        self,
        network_probabilities: np.ndarray,
        trees: Mapping[str, np.ndarray],
        rows: DetectorData,
        classes: tuple[str, ...],
        where: str,
    ) -> float:
        """The network's share with the best selection score on the labelled ``rows`` (the one
        nearest 0.5 among equals), given the network's probabilities of those rows and the trees."""
        assert rows.labels is not None
        tree_part = raw_to_probabilities(
            tree_raw_scores(rows.features, trees), trees["gbt.class_of_column"], len(classes)
        )
        truth = np.asarray(rows.labels).astype(str)
        names = np.asarray(classes)
        found = {
            w: selection_score(truth, names[(w * network_probabilities + (1 - w) * tree_part).argmax(axis=1)])
            for w in NETWORK_WEIGHTS
        }
        weight = max(found, key=lambda w: (found[w], -abs(w - 0.5)))
        self.weight_choice_ = {"chosen_on": where, "scores": {str(w): v for w, v in found.items()}}
        log.info(
            "%s: score on the %s by network weight %s; chose %.2f",
            self.name,
            where,
            {w: round(v, 4) for w, v in found.items()},
            weight,
        )
        return weight

    def _weight_on_later_rows(self, train: DetectorData, validation: DetectorData | None) -> float | None:
        """The network's share judged on later traffic (see the module docstring): a probe pair
        trained on the earlier rows of ``train`` and ``validation`` together, scored on the latest
        ``validation_fraction`` of them. None where that cannot be done (rows without times, or an
        earlier or later part without two classes): the share is then chosen on the validation part."""
        config = self.config
        parts = [train] if validation is None else [train, validation]
        timed = all(part.time is not None and part.labels is not None for part in parts)
        time = np.concatenate([np.asarray(part.time) for part in parts]) if timed else np.zeros(0)
        if np.unique(time).size < 2:
            if config.weight_from == "later":
                log.warning(
                    "%s: the rows have no times; the network's share is chosen on the validation part",
                    self.name,
                )
            return None
        labels = np.concatenate([np.asarray(part.labels).astype(str) for part in parts])
        order = np.argsort(time, kind="stable")
        cut = round(len(order) * (1.0 - config.validation_fraction))
        earlier, later = order[:cut], order[cut:]
        if (
            NORMAL not in labels[earlier]
            or np.unique(labels[earlier]).size < 2
            or np.unique(labels[later]).size < 2
        ):
            log.info(
                "%s: too few classes before or after the cut in time; the share is chosen on validation rows",
                self.name,
            )
            return None
        features = np.concatenate([part.features for part in parts])
        rows = lambda chosen: DetectorData(  # noqa: E731
            features[chosen], train.feature_names, time=time[chosen], labels=labels[chosen]
        )
        log.info(
            "%s: choosing the network's share on the latest %d rows, a probe trained on the %d before",
            self.name,
            len(later),
            len(earlier),
        )
        probe = MultitaskGBTDetector(
            dataclasses.replace(config, network_weight=0.5, weight_from="validation")
        )
        try:
            probe.fit(rows(earlier))
        except (ConfigError, ValueError) as error:  # e.g. a class too small in the earlier rows
            log.warning(
                "%s: the probe on the earlier rows failed (%s); the share is chosen on validation rows",
                self.name,
                error,
            )
            return None
        latest = rows(later)
        return self._best_weight(
            probe.network_.predict_proba(latest), probe.trees_, latest, probe.classes_, "later rows"
        )

    # -- the contract ------------------------------------------------------------------------------

    def tree_probabilities(self, data: DetectorData) -> np.ndarray:
        """The trees' class probabilities ``(rows, classes)``, float64."""
        self._check_fitted(data)
        raw = tree_raw_scores(data.features, self.trees_)
        return raw_to_probabilities(raw, self.trees_["gbt.class_of_column"], len(self.classes_))

    def predict_proba(self, data: DetectorData) -> np.ndarray:
        """The averaged class probabilities ``(rows, classes)`` in the order of ``classes_``."""
        self._check_fitted(data)
        weight = self.network_weight_
        trees = self.tree_probabilities(data)
        if weight == 0:
            return trees
        return weight * super().predict_proba(data) + (1.0 - weight) * trees

    def contributions(self, data: DetectorData) -> np.ndarray:
        """The network's integrated gradients (weighted) plus the trees' share of the score spread in
        proportion to their absolute values (see the module docstring); rows sum to the scores."""
        self._check_fitted(data)
        weight = self.network_weight_
        network_part = (
            self.network_.contributions(data) * weight if weight > 0 else np.zeros((len(data), data.width))
        )
        tree_score = self.tree_probabilities(data)[:, 1:].sum(axis=1) * (1.0 - weight)
        size = np.abs(network_part)
        total = size.sum(axis=1, keepdims=True)
        share = np.divide(size, total, out=np.full_like(size, 1.0 / max(data.width, 1)), where=total > 0)
        out = network_part + share * tree_score[:, None]
        out += ((self.score(data) - out.sum(axis=1)) / max(data.width, 1))[:, None]
        return out

    def _tree_module(self) -> BoostedTreesModule:
        return BoostedTreesModule(self.trees_, len(self.classes_))

    def export_module(self) -> nn.Module:
        """The contributions as a CPU module in evaluation mode (see :class:`HybridContributions`)."""
        if not self.is_fitted:
            raise NotFittedError(f"{self.name} is not fitted yet (call fit first)")
        network = super().probability_module()
        return HybridContributions(
            network, self._tree_module(), self.network_weight_, self.config.attribution_steps
        )

    def probability_module(self) -> nn.Module:
        """The averaged class probabilities as a CPU module in evaluation mode."""
        if not self.is_fitted:
            raise NotFittedError(f"{self.name} is not fitted yet (call fit first)")
        return HybridProbabilities(super().probability_module(), self._tree_module(), self.network_weight_)

    # -- saving -------------------------------------------------------------------------------------

    def state(self) -> dict[str, np.ndarray]:
        """The network's state (as ``multitask`` saves it) and the flat trees (``gbt.*``)."""
        return {**super().state(), **self.trees_}

    def load_state(self, arrays: Mapping[str, np.ndarray], feature_names: tuple[str, ...]) -> Self:
        """Rebuild the network and the trees from :meth:`state`'s arrays."""
        arrays = dict(arrays)
        missing = [k for k in TREE_ARRAYS if k not in arrays]
        if missing:
            raise ConfigError(f"saved state of {self.name} lacks {missing[0]!r}")
        self.trees_ = {k: np.asarray(arrays.pop(k)) for k in TREE_ARRAYS}
        self.network_weight_ = float(self.trees_["gbt.network_weight"].reshape(-1)[0])
        super().load_state(arrays, feature_names)
        self.network_ = MultitaskDetector(self.config.network_config()).load_state(arrays, feature_names)
        return self


def _fit_trees(
    train: DetectorData, validation: DetectorData | None, classes: tuple[str, ...], config: MultitaskGBTConfig
) -> dict[str, np.ndarray]:
    """HistGradientBoostingClassifier on ``train``, early-stopped on the rows of ``validation`` whose
    class the training data has (else on a 10 % split of ``train``), flattened."""
    from sklearn.ensemble import HistGradientBoostingClassifier  # imported when used: slow to import

    assert train.labels is not None
    labels = np.asarray(train.labels).astype(str)
    model = HistGradientBoostingClassifier(
        max_iter=config.tree_iterations,
        learning_rate=config.tree_learning_rate,
        max_leaf_nodes=config.tree_leaves,
        early_stopping=True,
        n_iter_no_change=config.tree_patience,
        class_weight=None if config.tree_class_weight == "none" else "balanced",
        random_state=config.seed,
    )
    fit_options: dict[str, np.ndarray] = {}
    if validation is not None and validation.labels is not None:
        validation_labels = np.asarray(validation.labels).astype(str)
        known = np.isin(validation_labels, classes)
        if len(np.unique(validation_labels[known])) >= 2:
            fit_options = {"X_val": validation.features[known], "y_val": validation_labels[known]}
    model.fit(train.features, labels, **fit_options)
    log.info("multitask_gbt: %d boosting rounds", model.n_iter_)
    if NORMAL not in model.classes_:
        raise ConfigError(f"the training labels need {NORMAL!r} rows")
    return flatten_boosting(model, classes)


#: the detectors this module defines, in registry order
DETECTORS: tuple[type[Detector], ...] = (MultitaskGBTDetector,)
