"""Detection metrics: ranking quality (ROC-AUC, PR-AUC), the outcome at a chosen threshold, per-class
detection rates, confusion matrices, macro F-beta and the NAD 2021 challenge score.

Never point-adjusted: every row counts once, as itself. Where a figure is undefined on the data given
(an AUC with a single class, recall without attacks) it is NaN, written ``null`` in JSON.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from nadkit.errors import ConfigError
from nadkit.evaluation.labels import (
    NAD_CLASSES,
    NAD_COST,
    attack_mask,
    check_nad_labels,
    label_series,
    nad_lookup,
)
from nadkit.evaluation.thresholds import Threshold, threshold_value
from nadkit.schema import NORMAL

log = logging.getLogger(__name__)

__all__ = [
    "BinaryMetrics",
    "ClassDetection",
    "ConfusionMatrix",
    "Evaluation",
    "binary_metrics",
    "confusion_matrix",
    "evaluate",
    "f_beta",
    "false_positive_rate",
    "macro_f_beta",
    "macro_f_difference",
    "nad_score",
    "nad_score_from_confusion",
    "per_class_detection",
    "pr_auc",
    "precision",
    "ranking_curve",
    "recall",
    "roc_auc",
]

#: the NAD 2021 score: weight of the cost term, weight of the macro F-beta, and its beta
NAD_COST_WEIGHT = 0.3
NAD_F_WEIGHT = 0.7
NAD_BETA = 2.0

#: the label written for alerted rows in the binary (normal / attack) confusion matrix
ATTACK = "attack"


def _json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as None, numpy scalars as Python ones, tuples as lists."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_json_safe(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------------------------------
# binary outcome


def _binary_inputs(is_attack: np.ndarray, alerts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(is_attack, dtype=bool)
    alerted = np.asarray(alerts, dtype=bool)
    if truth.ndim != 1 or truth.shape != alerted.shape:
        raise ConfigError("truth and alerts must be 1-D arrays of the same length")
    return truth, alerted


def _outcome(is_attack: np.ndarray, alerts: np.ndarray, beta: float = 1.0) -> tuple[float, float, float]:
    """Precision, recall and F-beta of the alerts (as scikit-learn defines them): precision 0 when
    nothing is alerted; recall and F-beta NaN without attacks, F-beta 0 when nothing is caught."""
    if not beta > 0:
        raise ConfigError(f"beta must be positive, got {beta}")
    truth, alerted = _binary_inputs(is_attack, alerts)
    if not truth.any():
        return 0.0, math.nan, math.nan
    hits = int(np.count_nonzero(truth & alerted))
    flagged = int(np.count_nonzero(alerted))
    p = hits / flagged if flagged else 0.0
    r = hits / int(np.count_nonzero(truth))
    b2 = beta * beta
    f = (1 + b2) * p * r / (b2 * p + r) if p + r > 0 else 0.0
    return float(p), float(r), float(f)


def precision(is_attack: np.ndarray, alerts: np.ndarray) -> float:
    """Share of alerts that are attacks (0 when nothing is alerted)."""
    return _outcome(is_attack, alerts)[0]


def recall(is_attack: np.ndarray, alerts: np.ndarray) -> float:
    """Share of attacks that are alerted (NaN without attacks)."""
    return _outcome(is_attack, alerts)[1]


def f_beta(is_attack: np.ndarray, alerts: np.ndarray, beta: float = 1.0) -> float:
    """F-beta of the alerts (recall weighted ``beta`` times as much as precision); NaN without attacks."""
    return _outcome(is_attack, alerts, beta)[2]


def false_positive_rate(is_attack: np.ndarray, alerts: np.ndarray) -> float:
    """Share of normal rows that are alerted (NaN without normal rows)."""
    truth, alerted = _binary_inputs(is_attack, alerts)
    normal = int((~truth).sum())
    return int((alerted & ~truth).sum()) / normal if normal else math.nan


def _scores(scores: np.ndarray) -> np.ndarray:
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1:
        raise ConfigError("scores must be a 1-D array")
    if not np.isfinite(values).all():
        raise ConfigError("metrics need finite scores")
    return values


def ranking_curve(scores: np.ndarray, is_attack: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The attacks and normal rows at or above each distinct score, from the highest score down:
    ``(thresholds, true_positives, false_positives)``, one entry per distinct score (the points of
    the ROC and precision-recall curves; tied scores enter together)."""
    values, truth = _scores(scores), np.asarray(is_attack, dtype=bool)
    if truth.shape != values.shape:
        raise ConfigError("scores and labels must be 1-D arrays of the same length")
    if not len(values):
        empty = np.zeros(0, dtype=np.int64)
        return values, empty, empty
    order = np.argsort(values, kind="mergesort")[::-1]
    ranked, hits = values[order], truth[order]
    ends = np.append(np.flatnonzero(np.diff(ranked)), len(ranked) - 1)
    true_positives = np.cumsum(hits, dtype=np.int64)[ends]
    return ranked[ends], true_positives, ends + 1 - true_positives


def roc_auc(scores: np.ndarray, is_attack: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` (higher = more anomalous; ties as a straight segment);
    NaN with a single class."""
    _, tp, fp = ranking_curve(scores, is_attack)
    if not len(tp) or tp[-1] == 0 or fp[-1] == 0:
        return math.nan
    tpr = np.concatenate([[0.0], tp / tp[-1]])
    fpr = np.concatenate([[0.0], fp / fp[-1]])
    return float(np.trapezoid(tpr, fpr))


def fpr_at_recall(scores: np.ndarray, is_attack: np.ndarray, recall: float) -> float:
    """The false-positive rate of the highest threshold that flags at least a share ``recall`` of the
    attacks: the normal rows scoring at or above the attack score that many attacks reach (a point
    of the ROC curve, read off the test scores: a ranking figure, not a threshold to deploy). NaN
    with a single class."""
    values, truth = _scores(scores), np.asarray(is_attack, dtype=bool)
    if truth.shape != values.shape:
        raise ConfigError("scores and labels must be 1-D arrays of the same length")
    if not 0.0 < recall <= 1.0:
        raise ConfigError(f"recall must be in (0, 1], got {recall}")
    if truth.all() or not truth.any():
        return math.nan
    attacks = np.sort(values[truth])[::-1]
    needed = min(len(attacks), math.ceil(recall * len(attacks) - 1e-9))
    cut = attacks[needed - 1]
    return float(np.mean(values[~truth] >= cut))


def pr_auc(scores: np.ndarray, is_attack: np.ndarray) -> float:
    """Average precision of ``scores`` (area under the precision-recall curve, without interpolation:
    the precision at each distinct score weighed by the recall it adds); NaN with a single class."""
    _, tp, fp = ranking_curve(scores, is_attack)
    if not len(tp) or tp[-1] == 0 or fp[-1] == 0:
        return math.nan
    added = np.diff(np.concatenate([[0], tp])) / tp[-1]
    return float(np.sum(added * tp / (tp + fp)))


@dataclass(frozen=True)
class BinaryMetrics:
    """Scores against attack/normal truth: AUCs, and precision/recall/F1/FPR at ``threshold``."""

    roc_auc: float
    pr_auc: float
    precision: float
    recall: float
    f1: float
    false_positive_rate: float
    threshold: float
    rows: int
    attacks: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (an undefined figure, NaN, is written as None)."""
        return _json_safe(asdict(self))


def _binary(scores: np.ndarray, truth: np.ndarray, threshold: float) -> BinaryMetrics:
    alerts = scores >= threshold
    p, r, f1 = _outcome(truth, alerts)
    return BinaryMetrics(
        roc_auc=roc_auc(scores, truth),
        pr_auc=pr_auc(scores, truth),
        precision=p,
        recall=r,
        f1=f1,
        false_positive_rate=false_positive_rate(truth, alerts),
        threshold=float(threshold),
        rows=len(scores),
        attacks=int(truth.sum()),
    )


def binary_metrics(scores: np.ndarray, is_attack: np.ndarray, threshold: float) -> BinaryMetrics:
    """Metrics of ``scores`` (higher = more anomalous) with ``score >= threshold`` as an alert.

    Needs both normal and attack rows (see :func:`evaluate` for data with one class only)."""
    scores = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(is_attack, dtype=bool)
    if scores.shape != truth.shape or scores.ndim != 1:
        raise ConfigError("scores and labels must be 1-D arrays of the same length")
    if truth.all() or not truth.any():
        raise ConfigError("metrics need both normal and attack rows")
    return _binary(_scores(scores), truth, threshold)


# --------------------------------------------------------------------------------------------------
# labels, confusion matrices and macro F-beta


def _ordered(labels: Sequence[Any]) -> list[Any]:
    """Labels in report order: normal first, then sorted."""
    rest = sorted(label for label in labels if label != NORMAL)
    return [NORMAL, *rest] if NORMAL in labels else rest


def _pair_frame(true: Any, predicted: Any) -> pl.DataFrame:
    t, p = label_series(true, "true"), label_series(predicted, "predicted")
    if len(t) != len(p):
        raise ConfigError(f"{len(t)} true labels but {len(p)} predicted ones")
    if t.dtype != p.dtype:
        t, p = t.cast(pl.String), p.cast(pl.String)
    return pl.DataFrame([t, p])


def _pair_counts(true: Any, predicted: Any) -> pl.DataFrame:
    return _pair_frame(true, predicted).group_by("true", "predicted").len()


@dataclass(frozen=True)
class ConfusionMatrix:
    """Row counts by true label (rows) and predicted label (columns), both in ``labels`` order."""

    labels: tuple[Any, ...]
    matrix: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready ``{"labels": [...], "matrix": [[...]]}``."""
        return {"labels": _json_safe(list(self.labels)), "matrix": self.matrix.tolist()}

    def f_beta(self, beta: float = 1.0) -> dict[Any, float]:
        """One-vs-rest F-beta of each label; NaN for a label with neither rows nor predictions."""
        return dict(zip(self.labels, _f_beta_per_class(self.matrix, beta).tolist(), strict=True))

    def macro_f_beta(self, beta: float = 2.0) -> float:
        """Unweighted mean of the one-vs-rest F-beta over the labels that occur (as truth or as a
        prediction); NaN when none does."""
        return _macro_f_beta(self.matrix, beta)


def _f_beta_per_class(matrix: np.ndarray, beta: float) -> np.ndarray:
    if not beta > 0:
        raise ConfigError(f"beta must be positive, got {beta}")
    counts = np.asarray(matrix, dtype=np.float64)
    hits = np.diag(counts)
    missed = counts.sum(axis=1) - hits
    false_alarms = counts.sum(axis=0) - hits
    b2 = beta * beta
    denominator = (1 + b2) * hits + b2 * missed + false_alarms
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, (1 + b2) * hits / denominator, math.nan)


def _macro_f_beta(matrix: np.ndarray, beta: float) -> float:
    scores = _f_beta_per_class(matrix, beta)
    present = ~np.isnan(scores)
    return float(scores[present].mean()) if present.any() else math.nan


def _square(matrix: Any) -> np.ndarray:
    counts = np.asarray(matrix.matrix if isinstance(matrix, ConfusionMatrix) else matrix)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ConfigError(f"a confusion matrix must be square, got shape {counts.shape}")
    if not np.isfinite(counts).all() or (counts < 0).any():
        raise ConfigError("confusion counts must be finite and non-negative")
    return counts


def confusion_matrix(
    true: Sequence[Any] | np.ndarray | pl.Series,
    predicted: Sequence[Any] | np.ndarray | pl.Series,
    labels: Sequence[Any] | None = None,
) -> ConfusionMatrix:
    """Counts of (true, predicted) label pairs for any label set. ``labels`` fixes the order (every
    value met must be among them); by default the labels met, normal first, then sorted."""
    pair = _pair_frame(true, predicted)
    met = set(pair["true"].unique().to_list()) | set(pair["predicted"].unique().to_list())
    order = list(labels) if labels is not None else _ordered(list(met))
    if len(set(order)) != len(order):
        raise ConfigError("confusion matrix labels must be distinct")
    index = {label: i for i, label in enumerate(order)}
    unknown = sorted(str(label) for label in met if label not in index)
    if unknown:
        raise ConfigError(f"labels {unknown} are not among the confusion matrix labels {order}")
    codes = [
        pair[side].replace_strict(index, return_dtype=pl.Int64).to_numpy() for side in ("true", "predicted")
    ]
    size = len(order)
    matrix = (
        np.bincount(codes[0] * size + codes[1], minlength=size * size).reshape(size, size).astype(np.int64)
    )
    return ConfusionMatrix(labels=tuple(order), matrix=matrix)


def macro_f_beta(
    true: Sequence[Any] | np.ndarray | pl.Series,
    predicted: Sequence[Any] | np.ndarray | pl.Series,
    beta: float = 2.0,
    labels: Sequence[Any] | None = None,
) -> float:
    """Unweighted mean over the classes of one-vs-rest F-beta, for any label set (classes with
    neither rows nor predictions are left out, their F-beta being undefined)."""
    return confusion_matrix(true, predicted, labels).macro_f_beta(beta)


@dataclass(frozen=True)
class Difference:
    """A difference of two figures on the same rows and its ``level`` percentile interval over
    paired bootstrap resamples of the rows (``resamples`` of them)."""

    value: float
    low: float
    high: float
    level: float
    resamples: int

    def text(self, digits: int = 3) -> str:
        """``+0.012 (-0.004 to +0.027)``."""
        return f"{self.value:+.{digits}f} ({self.low:+.{digits}f} to {self.high:+.{digits}f})"


def macro_f_difference(
    true: Sequence[Any] | np.ndarray,
    first: Sequence[Any] | np.ndarray,
    second: Sequence[Any] | np.ndarray,
    *,
    beta: float = 1.0,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Difference:
    """Macro F-beta of the predictions ``first`` minus that of ``second`` (both of the rows whose
    classes are ``true``), with a paired bootstrap interval: the rows are drawn with replacement
    ``resamples`` times, both predictions scored on each draw, and the interval is the central
    ``level`` of the differences. A class absent from a draw (neither true nor predicted there) is
    left out of that draw's macro mean, as :func:`macro_f_beta` leaves it out."""
    if not 0 < level < 1:
        raise ConfigError(f"level must be in (0, 1), got {level}")
    if resamples < 1:
        raise ConfigError(f"resamples must be at least 1, got {resamples}")
    columns = [np.asarray(values).astype(str) for values in (true, first, second)]
    if len({len(c) for c in columns}) != 1 or len(columns[0]) == 0:
        raise ConfigError("macro_f_difference needs the same, non-zero number of true and predicted labels")
    labels, codes = np.unique(np.concatenate(columns), return_inverse=True)
    k = len(labels)
    truth, one, two = codes.reshape(3, -1)
    pairs = (truth * k + one, truth * k + two)

    def difference(weights: np.ndarray) -> float:
        matrices = [np.bincount(p, weights=weights, minlength=k * k).reshape(k, k) for p in pairs]
        return _macro_f_beta(matrices[0], beta) - _macro_f_beta(matrices[1], beta)

    rows = len(truth)
    rng = np.random.default_rng(seed)
    # a draw of rows with replacement is a multinomial count per row
    draws = np.array([difference(rng.multinomial(rows, np.full(rows, 1.0 / rows))) for _ in range(resamples)])
    draws = draws[np.isfinite(draws)]
    tail = (1.0 - level) / 2.0
    low, high = (float(q) for q in np.quantile(draws, [tail, 1.0 - tail])) if len(draws) else (math.nan,) * 2
    return Difference(difference(np.ones(rows)), low, high, level, resamples)


# --------------------------------------------------------------------------------------------------
# NAD 2021 score


def _nad_confusion(true: Any, predicted: Any, classes: Sequence[str]) -> ConfusionMatrix | None:
    counts = _pair_counts(true, predicted).with_columns(pl.col("true", "predicted").cast(pl.String))
    met = set(counts["true"].to_list()) | set(counts["predicted"].to_list())
    lookup = nad_lookup(list(met), classes)
    if lookup is None:
        return None
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p, n in counts.iter_rows():
        matrix[lookup[t], lookup[p]] += n
    return ConfusionMatrix(labels=tuple(classes), matrix=matrix)


def nad_score_from_confusion(matrix: ConfusionMatrix | np.ndarray) -> float:
    """The NAD 2021 challenge score of a 5×5 confusion matrix (rows true, columns predicted, classes
    in :data:`NAD_CLASSES` order).

    ``0.3·(1 - ln(C_T)/ln(C_max)) + 0.7·macro F2``: ``C_T`` is the total cost under :data:`NAD_COST`,
    ``C_max = 2·N`` (the largest cost times the row count) and the cost term is 1 when ``C_T = 0``;
    macro F2 is the unweighted mean over the classes of the one-vs-rest F-beta with beta 2 (a class
    with neither rows nor predictions is left out).
    """
    counts = _square(matrix)
    if counts.shape != NAD_COST.shape:
        raise ConfigError(f"the NAD score needs a {NAD_COST.shape[0]}×{NAD_COST.shape[1]} confusion matrix")
    rows = float(counts.sum())
    if rows <= 0:
        raise ConfigError("the NAD score needs at least one row")
    total_cost = float((counts * NAD_COST).sum())
    largest_cost = float(NAD_COST.max()) * rows
    cost_term = 1.0 if total_cost == 0 else 1 - math.log(total_cost) / math.log(largest_cost)
    return NAD_COST_WEIGHT * cost_term + NAD_F_WEIGHT * _macro_f_beta(counts, NAD_BETA)


def nad_score(
    true: Sequence[str] | np.ndarray | pl.Series,
    predicted: Sequence[str] | np.ndarray | pl.Series,
    classes: Sequence[str] = NAD_CLASSES,
) -> float:
    """The NAD 2021 challenge score of predicted class names against the true ones.

    Labels may be spelled as nadkit's NAD reader writes them (``normal``, ``DDOS-smurf``,
    ``Probing-IP sweep``...), as in the raw files (``Normal``) or loosely (``ddos_smurf``,
    ``IP sweep``); ``classes`` lists the five class names in the cost matrix's order.
    """
    confusion = _nad_confusion(true, predicted, classes)
    if confusion is None:
        met = set(label_series(true, "true").cast(pl.String).unique().to_list())
        met |= set(label_series(predicted, "predicted").cast(pl.String).unique().to_list())
        check_nad_labels(met, classes)
    return nad_score_from_confusion(confusion)


# --------------------------------------------------------------------------------------------------
# per-class detection and the full evaluation


@dataclass(frozen=True)
class ClassDetection:
    """How many rows of one class there are, how many were alerted, and the share alerted."""

    rows: int
    alerted: int
    rate: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return _json_safe(asdict(self))


def per_class_detection(
    labels: Sequence[Any] | np.ndarray | pl.Series, alerts: np.ndarray, normal: str = NORMAL
) -> dict[str, ClassDetection]:
    """For each class present, the share of its rows alerted: an attack class's detection rate, and
    for ``normal`` its false-positive rate. Normal first, then the classes sorted by name."""
    series = label_series(labels, "label")
    alerted = np.asarray(alerts, dtype=bool)
    if alerted.shape != (len(series),):
        raise ConfigError("labels and alerts differ in length")
    grouped = (
        pl.DataFrame([series.cast(pl.String), pl.Series("alert", alerted)])
        .group_by("label")
        .agg(pl.len().alias("rows"), pl.col("alert").sum().alias("alerted"))
    )
    found = {label: (int(rows), int(hits)) for label, rows, hits in grouped.iter_rows()}
    rest = sorted(label for label in found if label != normal)
    order = [normal, *rest] if normal in found else rest
    return {
        label: ClassDetection(
            rows=found[label][0], alerted=found[label][1], rate=found[label][1] / found[label][0]
        )
        for label in order
    }


@dataclass(frozen=True)
class Evaluation:
    """A detector's scores judged against labels: the binary outcome at the threshold, the per-class
    detection rates, a confusion matrix, and (with class predictions) the macro F2 and NAD score."""

    binary: BinaryMetrics
    per_class: dict[str, ClassDetection]
    confusion: ConfusionMatrix
    nad_score: float | None
    macro_f_beta: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``binary``, ``per_class`` (name -> rows, alerted, rate), ``confusion``
        (labels, matrix), ``nad_score`` and ``macro_f_beta``; undefined figures are None."""
        return _json_safe(
            {
                "binary": self.binary.to_dict(),
                "per_class": {name: c.to_dict() for name, c in self.per_class.items()},
                "confusion": self.confusion.to_dict(),
                "nad_score": self.nad_score,
                "macro_f_beta": self.macro_f_beta,
            }
        )


def evaluate(
    scores: np.ndarray,
    labels: Sequence[Any] | np.ndarray | pl.Series,
    threshold: Threshold | Mapping[str, Any] | float,
    predicted: Sequence[Any] | np.ndarray | pl.Series | None = None,
    normal: str = NORMAL,
) -> Evaluation:
    """Judge ``scores`` (higher = more anomalous) against class ``labels``, alerting at ``score >=
    threshold``.

    The binary figures treat every label other than ``normal`` as an attack. With ``predicted`` class
    names, the confusion matrix and macro F2 compare them with the labels, and when all are NAD 2021
    classes the NAD score is computed too; without, the confusion matrix is the 2×2 normal/attack one
    of the alerts and the macro F2 is over those two classes. Data with a single class is evaluated
    as well: the figures it leaves undefined are NaN.
    """
    values = _scores(scores)
    series = label_series(labels, "label")
    if len(series) != len(values):
        raise ConfigError(f"{len(values)} scores but {len(series)} labels")
    value = threshold_value(threshold)
    if series.dtype == pl.String:
        truth = (series != normal).to_numpy()
    else:
        truth = attack_mask(series.to_numpy(), normal=normal)
    alerts = values >= value
    binary = _binary(values, truth, value)
    per_class = per_class_detection(series, alerts, normal=normal)
    score: float | None = None
    if predicted is not None:
        confusion = _nad_confusion(series, predicted, NAD_CLASSES)
        if confusion is not None:
            score = nad_score_from_confusion(confusion)
        else:
            confusion = confusion_matrix(series, predicted)
    else:
        matrix = np.array(
            [
                [int((~truth & ~alerts).sum()), int((~truth & alerts).sum())],
                [int((truth & ~alerts).sum()), int((truth & alerts).sum())],
            ],
            dtype=np.int64,
        )
        confusion = ConfusionMatrix(labels=(normal, ATTACK), matrix=matrix)
    macro = confusion.macro_f_beta(NAD_BETA)
    log.info(
        "evaluated %d rows (%d attacks): ROC-AUC %.4f, F1 %.4f at threshold %.6g",
        len(values),
        binary.attacks,
        binary.roc_auc,
        binary.f1,
        value,
    )
    return Evaluation(
        binary=binary,
        per_class=per_class,
        confusion=confusion,
        nad_score=score,
        macro_f_beta=None if math.isnan(macro) else macro,
    )
