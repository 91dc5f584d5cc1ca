"""Thresholds, fitted on validation scores and kept outside detectors.

A threshold turns scores into alerts: ``score >= value`` is an alert. Each is chosen on validation data
only, never on the data it is evaluated on, and is saved beside the model as a JSON-ready dict
(:meth:`Threshold.to_dict`), so that it can be changed without retraining.

Methods (:func:`fit_threshold`):

- ``quantile``: the score exceeded by a target share of the normal validation rows (the target
  false-positive rate). Where fewer than :data:`MIN_PEAKS` normal rows would lie above it (a few
  hundred rows at 1%), the empirical quantile is one or two scores, and how many new normal rows
  exceed it varies tenfold between samples; the score is then read off an exponential tail fitted to
  the :data:`MIN_PEAKS` largest scores (:func:`~nadkit.evaluation.tails.exponential_tail_quantile`).
- ``f_beta``: the score maximising F-beta of the alerts on labelled validation rows.
- ``pot``: peaks over threshold. A generalised Pareto distribution is fitted by maximum likelihood to
  the excesses over a high initial quantile; the threshold is the score it exceeds with probability
  ``risk``. Needs no labels and reaches false-alarm rates far below one per validation set.
- ``spot``: the streaming form of ``pot`` (:class:`Spot`): calibrated on a first batch, it then
  raises alarms on a stream and keeps learning the tail from the new peaks.

For detectors that output class probabilities, :func:`cost_optimal_decision` picks the class of least
expected cost under a cost matrix (the NAD 2021 challenge matrix by default).

The saved :class:`Threshold` and its checks live in :mod:`~nadkit.evaluation.threshold_type`, the
generalised Pareto tail of ``pot`` in :mod:`~nadkit.evaluation.tails` and the streaming :class:`Spot`
in :mod:`~nadkit.evaluation.spot`; this module fits thresholds, picks cost-optimal classes and holds
the policy training uses (:func:`choose_threshold`). Every name is importable from here.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nadkit.errors import ConfigError
from nadkit.evaluation.labels import NAD_CLASSES, NAD_COST, attack_mask
from nadkit.evaluation.spot import Spot
from nadkit.evaluation.tails import (
    MIN_PEAKS,
    GeneralisedPareto,
    _tail,
    _tail_value,
    exponential_tail_quantile,
    fit_generalised_pareto,
)
from nadkit.evaluation.threshold_type import (
    _PARAMS,
    THRESHOLD_METHODS,
    Threshold,
    _check,
    _check_method,
    _check_tail_levels,
    apply,
    threshold_value,
)
from nadkit.schema import NORMAL

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# quantile and F-beta


def quantile_threshold(normal_scores: np.ndarray, false_positive_rate: float = 0.01) -> float:
    """The score above which ``false_positive_rate`` of the normal validation scores lie."""
    if not 0 < false_positive_rate < 1:
        raise ConfigError(f"false_positive_rate must be between 0 and 1, got {false_positive_rate}")
    scores, _ = _check(normal_scores)
    return float(np.quantile(scores, 1 - false_positive_rate, method="higher"))


def f_beta_optimal_threshold(scores: np.ndarray, is_attack: np.ndarray, beta: float = 1.0) -> float:
    """The threshold (one of the scores) maximising F-beta of ``score >= threshold`` on labelled
    validation data; ties go to the higher threshold (fewer alerts)."""
    if beta <= 0:
        raise ConfigError(f"beta must be positive, got {beta}")
    scores, labels = _check(scores, is_attack)
    assert labels is not None
    positives = int(labels.sum())
    if positives == 0:
        raise ConfigError("F-beta needs at least one attack among the validation rows")
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], labels[order]
    true_positives = np.cumsum(hits)
    alerts = np.arange(1, len(ranked) + 1)
    # only the last index of each run of equal scores is a reachable cut
    last = np.r_[ranked[1:] != ranked[:-1], True]
    precision = true_positives / alerts
    recall = true_positives / positives
    b2 = beta * beta
    with np.errstate(invalid="ignore", divide="ignore"):
        f_beta = np.where(
            precision + recall > 0, (1 + b2) * precision * recall / (b2 * precision + recall), 0.0
        )
    f_beta = np.where(last, f_beta, -1.0)
    best = int(np.argmax(f_beta))
    return float(ranked[best])


def _pot(values: np.ndarray, risk: float, initial_quantile: float, method: str) -> Threshold:
    found = _tail(values, initial_quantile, risk)
    model = fit_generalised_pareto(found.excesses)
    peaks = len(found.excesses)
    value = _tail_value(found.initial_threshold, model, risk, found.rows, peaks)
    log.info(
        "%s: %d peaks over %.6g (shape %.4g, scale %.4g) -> threshold %.6g at risk %g",
        method,
        peaks,
        found.initial_threshold,
        model.shape,
        model.scale,
        value,
        risk,
    )
    params = {
        "risk": risk,
        "initial_quantile": initial_quantile,
        "initial_threshold": found.initial_threshold,
        "shape": model.shape,
        "scale": model.scale,
        "peaks": peaks,
    }
    return Threshold(method=method, value=value, params=params, rows=found.rows)


# --------------------------------------------------------------------------------------------------
# dispatch


def threshold_settings(method: str, **params: Any) -> dict[str, Any]:
    """The checked settings of ``method`` for :func:`fit_threshold`: ``params`` over the defaults of
    :data:`THRESHOLD_METHODS`; an unknown name or a value out of range raises :class:`ConfigError`
    naming it (so settings can be checked before the scores to fit on exist)."""
    method = _check_method(method)
    settings = dict(THRESHOLD_METHODS[method])
    for name, value in params.items():
        if name not in settings:
            known = ", ".join(sorted(settings))
            raise ConfigError(f"threshold field {name!r}: not a parameter of {method!r} (known: {known})")
        settings[name] = value
    checked = {name: _PARAMS[method][name](name, value) for name, value in settings.items()}
    if method in ("pot", "spot"):
        _check_tail_levels(checked["risk"], checked["initial_quantile"])
    return checked


def fit_threshold(
    method: str, scores: np.ndarray, labels: np.ndarray | None = None, **params: Any
) -> Threshold:
    """Fit a threshold of ``method`` on validation ``scores``.

    ``labels`` (booleans "is attack" or class names with ``'normal'`` for benign rows) are required by
    ``f_beta``; the other methods fit on the normal rows only when labels are given, on all rows
    otherwise. ``params`` are the method's settings (see :data:`THRESHOLD_METHODS` for the defaults):
    ``false_positive_rate`` for ``quantile``, ``beta`` for ``f_beta``, ``risk`` and ``initial_quantile``
    for ``pot`` and ``spot``.
    """
    method = _check_method(method)
    checked = threshold_settings(method, **params)
    values, _ = _check(scores)
    attack = None
    if labels is not None:
        attack = attack_mask(labels)
        if attack.shape != values.shape:
            raise ConfigError("scores and labels differ in length")

    if method == "f_beta":
        if attack is None:
            raise ConfigError("the f_beta threshold needs labels")
        value = f_beta_optimal_threshold(values, attack, beta=checked["beta"])
        return Threshold(method, value, checked, rows=len(values), attacks=int(attack.sum()))

    if attack is not None:
        values = values[~attack]
        if len(values) == 0:
            raise ConfigError(f"the {method} threshold needs normal validation rows, the labels have none")
    if method == "quantile":
        rate = checked["false_positive_rate"]
        tail = exponential_tail_quantile(values, rate) if len(values) * rate < MIN_PEAKS else None
        if tail is not None:
            log.info(
                "%d normal rows are too few for their %g quantile (fewer than %d above it): read off an "
                "exponential tail fitted to the %d largest scores -> threshold %.6g",
                len(values),
                1 - rate,
                MIN_PEAKS,
                tail.peaks,
                tail.value,
            )
            fitted = {"initial_threshold": tail.initial_threshold, "scale": tail.scale, "peaks": tail.peaks}
            return Threshold(method, tail.value, {**checked, **fitted}, rows=len(values))
        value = quantile_threshold(values, rate)
        return Threshold(method, value, checked, rows=len(values))
    if method == "pot":
        return _pot(values, checked["risk"], checked["initial_quantile"], "pot")
    return Spot(checked["risk"], checked["initial_quantile"]).fit(values).threshold_


# --------------------------------------------------------------------------------------------------
# cost-optimal multi-class decisions


def _cost_inputs(probabilities: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probabilities, dtype=np.float64)
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2 or 0 in c.shape or not np.isfinite(c).all():
        raise ConfigError("the cost matrix must be a finite 2-D array (rows true, columns predicted)")
    if p.ndim != 2 or p.shape[1] != c.shape[0]:
        raise ConfigError(
            f"class probabilities must be an (n, {c.shape[0]}) array, one column per cost matrix row; "
            f"got shape {p.shape}"
        )
    if not np.isfinite(p).all() or (p < 0).any():
        raise ConfigError("class probabilities must be finite and non-negative")
    return p, c


def expected_costs(probabilities: np.ndarray, cost: np.ndarray = NAD_COST) -> np.ndarray:
    """The expected cost of each possible decision per row: ``probabilities @ cost``, an ``(n, m)``
    array for ``(n, k)`` probabilities and a ``(k, m)`` cost matrix (rows true, columns predicted)."""
    p, c = _cost_inputs(probabilities, cost)
    return p @ c


def cost_optimal_decision(
    probabilities: np.ndarray,
    cost: np.ndarray = NAD_COST,
    classes: Sequence[Any] | None = NAD_CLASSES,
) -> np.ndarray:
    """The decision of least expected cost per row, ``argmin_j Σ_i p_i·cost[i, j]``.

    ``probabilities`` is ``(n, k)`` over the true classes (the rows of ``cost``); ``classes`` names
    the decisions (the columns of ``cost``) and the result holds those names, or the column indices
    when ``classes`` is None. Ties go to the first column. The defaults are the NAD 2021 classes and
    cost matrix, so a model's class probabilities in :data:`NAD_CLASSES` order can be passed as they are.
    """
    p, c = _cost_inputs(probabilities, cost)
    choice = np.argmin(p @ c, axis=1)
    if classes is None:
        return choice
    names = list(classes)
    if len(names) != c.shape[1]:
        raise ConfigError(f"{len(names)} class names for a cost matrix with {c.shape[1]} columns")
    return np.asarray(names)[choice]


# --------------------------------------------------------------------------------------------------
# the policy training uses: which method, and the auto choice


#: the threshold methods training offers; ``auto``: ``f_beta`` when the hold-out has attack and
#: normal rows (capped at the ``quantile`` threshold, see :func:`choose_threshold`), else ``quantile``
THRESHOLD_CHOICES: tuple[str, ...] = ("auto", "quantile", "f_beta", "pot")
#: the methods ``auto`` chooses between
_AUTO_METHODS = ("f_beta", "quantile")
#: the most of the hold-out's normal rows an ``auto`` threshold may flag (see :func:`choose_threshold`)
AUTO_MAX_FALSE_POSITIVE_RATE = 0.05


def check_threshold_choice(method: str, params: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`ConfigError` naming the problem unless ``method`` is one of
    :data:`THRESHOLD_CHOICES` and ``params`` are valid settings of it (for ``auto``: of the method
    it may choose), so a bad choice fails before training rather than after."""
    if method not in THRESHOLD_CHOICES:
        raise ConfigError(f"unknown threshold method {method!r} (known: {', '.join(THRESHOLD_CHOICES)})")
    params = dict(params or {})
    if method != "auto":
        if "max_false_positive_rate" in params:
            raise ConfigError("threshold field 'max_false_positive_rate': only the auto threshold takes it")
        threshold_settings(method, **params)
        return
    ceiling = params.pop("max_false_positive_rate", AUTO_MAX_FALSE_POSITIVE_RATE)
    if not isinstance(ceiling, int | float) or not 0 < float(ceiling) < 1:
        raise ConfigError(
            f"threshold field 'max_false_positive_rate': a share between 0 and 1 (exclusive), got {ceiling!r}"
        )
    floor = params.get("false_positive_rate", 0.0)
    if isinstance(floor, int | float) and float(floor) > float(ceiling):
        raise ConfigError(
            f"threshold field 'max_false_positive_rate': {ceiling} lies below the false-positive rate {floor}"
        )
    for name in params:
        if not any(name in THRESHOLD_METHODS[m] for m in _AUTO_METHODS):
            raise ConfigError(
                f"threshold field {name!r}: not a parameter of the auto threshold (it fits f_beta "
                "or quantile; choose the method that takes it)"
            )
    for candidate in _AUTO_METHODS:
        own = {name: value for name, value in params.items() if name in THRESHOLD_METHODS[candidate]}
        threshold_settings(candidate, **own)


def choose_threshold(
    scores: np.ndarray,
    labels: np.ndarray | None,
    false_positive_rate: float = 0.01,
    *,
    method: str = "auto",
    **params: Any,
) -> Threshold:
    """The alert threshold chosen on a hold-out's scores, as training saves it in a bundle.

    ``method`` ``auto``: F-beta-optimal (``beta``, default 1) when the hold-out has attack and
    normal rows, but kept between the scores exceeded by ``false_positive_rate`` and by
    ``max_false_positive_rate`` (default :data:`AUTO_MAX_FALSE_POSITIVE_RATE`) of its normal rows;
    otherwise the ``false_positive_rate`` quantile of the normal (or unlabelled) rows. The upper
    bound is there because a hold-out's attacks are the attacks already known, and often floods: an
    F-beta-optimal threshold fitted on them is pulled far above the normal scores, and attacks unlike
    them (slower, smaller, new) would fall below it while a false-positive budget of
    ``false_positive_rate`` was left unused. The lower bound is there because the F-beta optimum
    depends on the hold-out's share of attacks: where attacks are most of the rows, as in most
    labelled data sets and in no real network, it lies so low that it flags a large part of the
    normal traffic, more alerts than anyone could triage. ``quantile``, ``f_beta`` and ``pot`` fit
    that method of :func:`fit_threshold` (on the normal rows where labels say which they are) with
    ``params`` (``false_positive_rate``, ``beta``, ``risk``, ``initial_quantile``).
    """
    if method in ("auto", "quantile"):
        params["false_positive_rate"] = false_positive_rate
    check_threshold_choice(method, params)
    ceiling = float(params.pop("max_false_positive_rate", AUTO_MAX_FALSE_POSITIVE_RATE))
    attack = labels != NORMAL if labels is not None else np.zeros(len(scores), dtype=bool)
    both = bool(attack.any() and (~attack).any())
    capped = method == "auto" and both
    if method == "auto":
        method = "f_beta" if both else "quantile"
        params = {k: v for k, v in params.items() if k in THRESHOLD_METHODS[method]}
        if not (~attack).any():
            labels = None  # only attack rows: the quantile of all of them
    if method == "f_beta" and not both:
        raise ConfigError(
            "the f_beta threshold needs labelled attack and normal rows in the hold-out; "
            "use the quantile or pot threshold"
        )
    values = np.asarray(scores, dtype=np.float64)
    fitted = fit_threshold(method, values, labels, **params)
    if capped:
        budget = fit_threshold("quantile", values, labels, false_positive_rate=false_positive_rate)
        if budget.value < fitted.value:
            log.info(
                "the F-beta-optimal threshold on the hold-out (%.6g) lies above the score exceeded by %g "
                "of its normal rows (%.6g): the lower one is kept, so attacks unlike the hold-out's "
                "are not missed within that false-positive rate",
                fitted.value,
                false_positive_rate,
                budget.value,
            )
            fitted = budget
        else:
            most = fit_threshold("quantile", values, labels, false_positive_rate=ceiling)
            if fitted.value < most.value:
                log.info(
                    "the F-beta-optimal threshold on the hold-out (%.6g) flags more than %g of its normal "
                    "rows: the score exceeded by that share (%.6g) is kept",
                    fitted.value,
                    ceiling,
                    most.value,
                )
                fitted = most
    return fitted


__all__ = [
    "AUTO_MAX_FALSE_POSITIVE_RATE",
    "MIN_PEAKS",
    "THRESHOLD_CHOICES",
    "THRESHOLD_METHODS",
    "GeneralisedPareto",
    "Spot",
    "Threshold",
    "apply",
    "check_threshold_choice",
    "choose_threshold",
    "cost_optimal_decision",
    "expected_costs",
    "f_beta_optimal_threshold",
    "fit_generalised_pareto",
    "fit_threshold",
    "quantile_threshold",
    "threshold_settings",
    "threshold_value",
]
