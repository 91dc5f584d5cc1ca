"""Thresholds, fitted on validation scores and kept outside detectors.

A threshold turns scores into alerts: ``score >= value`` is an alert. Each is chosen on validation data
only, never on the data it is evaluated on, and is saved beside the model as a JSON-ready dict
(:meth:`Threshold.to_dict`), so that it can be changed without retraining.

Methods (:func:`fit_threshold`):

- ``quantile``: the score exceeded by a target share of the normal validation rows (the target
  false-positive rate).
- ``f_beta``: the score maximising F-beta of the alerts on labelled validation rows.
- ``pot``: peaks over threshold. A generalised Pareto distribution is fitted by maximum likelihood to
  the excesses over a high initial quantile; the threshold is the score it exceeds with probability
  ``risk``. Needs no labels and reaches false-alarm rates far below one per validation set.
- ``spot``: the streaming form of ``pot`` (:class:`Spot`): calibrated on a first batch, it then
  raises alarms on a stream and keeps learning the tail from the new peaks.

For detectors that output class probabilities, :func:`cost_optimal_decision` picks the class of least
expected cost under a cost matrix (the NAD 2021 challenge matrix by default).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import numpy as np

from nadkit.errors import ConfigError
from nadkit.evaluation.labels import NAD_CLASSES, NAD_COST, attack_mask
from nadkit.schema import NORMAL

log = logging.getLogger(__name__)

#: the fewest excesses over the initial quantile that a generalised Pareto tail is fitted to
MIN_PEAKS = 10


# --------------------------------------------------------------------------------------------------
# checks shared by every method


def _check(scores: np.ndarray, labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or len(scores) == 0:
        raise ConfigError("threshold fitting needs a non-empty 1-D array of scores")
    if not np.isfinite(scores).all():
        raise ConfigError("threshold fitting needs finite scores")
    if labels is None:
        return scores, None
    labels = np.asarray(labels, dtype=bool)
    if labels.shape != scores.shape:
        raise ConfigError("scores and labels differ in length")
    return scores, labels


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ConfigError(f"threshold field {name!r}: must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(f"threshold field {name!r}: must be finite, got {value!r}")
    return number


def _probability(name: str, value: Any) -> float:
    number = _real(name, value)
    if not 0 < number < 1:
        raise ConfigError(f"threshold field {name!r}: must be between 0 and 1 (exclusive), got {value!r}")
    return number


def _positive(name: str, value: Any) -> float:
    number = _real(name, value)
    if number <= 0:
        raise ConfigError(f"threshold field {name!r}: must be positive, got {value!r}")
    return number


def _count(name: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or int(value) < minimum:
        raise ConfigError(f"threshold field {name!r}: must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _peaks(name: str, value: Any) -> int:
    return _count(name, value, minimum=1)


_TAIL_PARAMS = {
    "risk": _probability,
    "initial_quantile": _probability,
    "initial_threshold": _real,
    "shape": _real,
    "scale": _positive,
    "peaks": _peaks,
}

#: each method's saved parameters (all required) and their checks
_PARAMS: dict[str, dict[str, Any]] = {
    "quantile": {"false_positive_rate": _probability},
    "f_beta": {"beta": _positive},
    "pot": _TAIL_PARAMS,
    "spot": _TAIL_PARAMS,
}

#: the methods :func:`fit_threshold` knows, and their tunable parameters with defaults
THRESHOLD_METHODS: dict[str, dict[str, float]] = {
    "quantile": {"false_positive_rate": 0.01},
    "f_beta": {"beta": 1.0},
    "pot": {"risk": 1e-4, "initial_quantile": 0.98},
    "spot": {"risk": 1e-4, "initial_quantile": 0.98},
}


def _check_method(method: Any) -> str:
    if not isinstance(method, str) or method not in _PARAMS:
        known = ", ".join(sorted(_PARAMS))
        raise ConfigError(f"threshold field 'method': unknown method {method!r} (known: {known})")
    return method


def _check_tail_levels(risk: float, initial_quantile: float) -> None:
    if risk >= 1 - initial_quantile:
        raise ConfigError(
            f"threshold field 'risk': must be below 1 - initial_quantile = {1 - initial_quantile:.6g} "
            f"(the share of rows above the initial threshold), got {risk!r}"
        )


# --------------------------------------------------------------------------------------------------
# the saved threshold


@dataclass(frozen=True)
class Threshold:
    """A fitted alert threshold: ``score >= value`` is an alert.

    ``params`` holds the method's settings and what was fitted besides the value (for ``pot`` and
    ``spot`` the tail model); ``rows`` and ``attacks`` count the validation rows it was fitted on
    (``attacks`` only where labels were used). Saved flat: ``{"method", "value", **params, "rows",
    "attacks"}``, the layout model bundles have always stored.
    """

    method: str
    value: float
    params: dict[str, Any] = field(default_factory=dict)
    rows: int | None = None
    attacks: int | None = None

    def __post_init__(self) -> None:
        method = _check_method(self.method)
        object.__setattr__(self, "value", _real("value", self.value))
        if self.rows is not None:
            object.__setattr__(self, "rows", _count("rows", self.rows))
        if self.attacks is not None:
            object.__setattr__(self, "attacks", _count("attacks", self.attacks))
        if not isinstance(self.params, Mapping):
            raise ConfigError(f"threshold field 'params': must be a mapping, got {self.params!r}")
        checks = _PARAMS[method]
        for name in self.params:
            if name not in checks:
                raise ConfigError(f"threshold field {name!r}: not a parameter of the {method!r} method")
        params: dict[str, Any] = {}
        for name, check in checks.items():
            if name not in self.params:
                raise ConfigError(f"threshold field {name!r}: missing (needed by the {method!r} method)")
            params[name] = check(name, self.params[name])
        if method in ("pot", "spot"):
            _check_tail_levels(params["risk"], params["initial_quantile"])
        object.__setattr__(self, "params", params)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready flat dict, readable back with :meth:`from_dict`."""
        out: dict[str, Any] = {"method": self.method, **self.params, "value": self.value}
        if self.rows is not None:
            out["rows"] = self.rows
        if self.attacks is not None:
            out["attacks"] = self.attacks
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Threshold:
        """The threshold saved by :meth:`to_dict` (or by any earlier nadkit version); a missing,
        unknown or invalid field raises :class:`ConfigError` naming it."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a threshold must be a JSON object, got {type(data).__name__}")
        if "method" not in data:
            raise ConfigError("threshold field 'method': missing")
        if "value" not in data:
            raise ConfigError("threshold field 'value': missing")
        params = {k: v for k, v in data.items() if k not in ("method", "value", "rows", "attacks")}
        return cls(
            method=data["method"],
            value=data["value"],
            params=params,
            rows=data.get("rows"),
            attacks=data.get("attacks"),
        )

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """Alerts (``score >= value``) for ``scores``."""
        return apply(self, scores)

    def describe(self) -> str:
        """How the threshold was chosen, in a few words: the method and its settings."""
        settings = {k: v for k, v in self.params.items() if not isinstance(v, Mapping | list)}
        if not settings:
            return self.method
        inner = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items())
        return f"{self.method} ({inner})"


def threshold_value(threshold: Threshold | Mapping[str, Any] | float) -> float:
    """The alert value of a threshold given as a :class:`Threshold`, a saved dict, or a number."""
    if isinstance(threshold, Threshold):
        return threshold.value
    if isinstance(threshold, Mapping):
        return Threshold.from_dict(threshold).value
    return _real("value", threshold)


def apply(threshold: Threshold | Mapping[str, Any] | float, scores: np.ndarray) -> np.ndarray:
    """Alerts for ``scores``: ``score >= value`` (a NaN score never alerts, and is logged)."""
    value = threshold_value(threshold)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ConfigError("scores must be a 1-D array")
    missing = int(np.isnan(scores).sum())
    if missing:
        log.warning("%d of %d scores are NaN and raise no alert", missing, len(scores))
    return scores >= value


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


# --------------------------------------------------------------------------------------------------
# generalised Pareto tail (peaks over threshold)


@dataclass(frozen=True)
class GeneralisedPareto:
    """A generalised Pareto distribution of excesses ``y > 0``: survival ``(1 + shape·y/scale)^(-1/shape)``,
    ``exp(-y/scale)`` at ``shape = 0``. A positive shape is a heavy tail, a negative one a bounded one."""

    shape: float
    scale: float

    def log_likelihood(self, excesses: np.ndarray) -> float:
        """Log-likelihood of ``excesses`` (``-inf`` where one lies beyond a bounded tail's end)."""
        return _log_likelihood(np.asarray(excesses, dtype=np.float64), self.shape, self.scale)

    def excess_quantile(self, exceedance: float) -> float:
        """The excess exceeded with probability ``exceedance`` (given that the initial threshold was
        exceeded): ``(scale/shape)·(exceedance^(-shape) - 1)``, ``-scale·ln(exceedance)`` at shape 0."""
        log_p = math.log(exceedance)
        if abs(self.shape) < 1e-12:
            return -self.scale * log_p
        return self.scale * math.expm1(-self.shape * log_p) / self.shape


def _log_likelihood(y: np.ndarray, shape: float, scale: float) -> float:
    if scale <= 0:
        return -math.inf
    if abs(shape) < 1e-12:
        return float(-len(y) * math.log(scale) - y.sum() / scale)
    z = shape * y / scale
    if (z <= -1).any():
        return -math.inf
    return float(-len(y) * math.log(scale) - (1 + 1 / shape) * np.log1p(z).sum())


def _grimshaw_terms(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each ``x``: ``w(x) = u(x)·v(x) - 1`` of Grimshaw's equation, with ``u = mean(1/(1 + x·y))``
    and ``v = 1 + mean(log1p(x·y))``, and ``mean(log1p(x·y))``; evaluated in blocks so that memory
    stays bounded. ``u - 1`` is summed as ``-mean(x·y/(1 + x·y))`` to keep its precision near 0."""
    w = np.empty(len(x))
    mean_log = np.empty(len(x))
    block = max(1, 2_000_000 // max(len(y), 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        for start in range(0, len(x), block):
            part = slice(start, start + block)
            xy = np.outer(x[part], y)
            mean_ratio = (xy / (1 + xy)).mean(axis=1)
            mean_log[part] = np.log1p(xy).mean(axis=1)
            w[part] = -mean_ratio + (1 - mean_ratio) * mean_log[part]
    return w, mean_log


def _grimshaw_roots(y: np.ndarray, grid_points: int = 48) -> list[float]:
    """Roots ``x != 0`` of Grimshaw's equation for excesses ``y`` scaled to mean 1; each root gives a
    stationary point of the likelihood with ``shape = mean(log1p(x·y))`` and ``scale = shape / x``."""
    y_min, y_max = float(y.min()), float(y.max())
    if y_max - y_min <= 1e-12 * y_max:
        return []
    smallest = 1e-6  # below this, rounding hides the sign of w and the tail is exponential anyway
    lower = -1.0 / y_max  # 1 + x·y must stay positive
    upper = min(2 * (1 - y_min) / y_min**2, 1e8)  # Grimshaw's bound on a positive root
    negative = np.concatenate(
        [
            lower * (1 - np.logspace(-10, 0, grid_points, endpoint=False)),
            -np.logspace(math.log10(smallest), math.log10(-lower), grid_points),
        ]
    )
    grids = [np.unique(negative[negative <= -smallest])]
    if upper > smallest:
        grids.append(np.logspace(math.log10(smallest), math.log10(upper), 2 * grid_points))

    from scipy.optimize import brentq  # imported when used: slow to import

    def w_at(x: float) -> float:
        return float(_grimshaw_terms(np.array([x]), y)[0][0])

    roots: list[float] = []
    for grid in grids:
        w, _ = _grimshaw_terms(grid, y)
        finite = np.isfinite(w)
        sign = np.sign(w)
        for i in np.flatnonzero(finite[:-1] & finite[1:] & (sign[:-1] * sign[1:] < 0)):
            roots.append(float(brentq(w_at, grid[i], grid[i + 1], xtol=1e-14, rtol=1e-12)))
        roots.extend(float(grid[i]) for i in np.flatnonzero(w == 0))
    return roots


def fit_generalised_pareto(excesses: np.ndarray) -> GeneralisedPareto:
    """Maximum-likelihood generalised Pareto fit to positive ``excesses`` by Grimshaw's method.

    Every root of Grimshaw's one-dimensional equation is a candidate, as is the exponential limit
    (shape 0, scale = mean excess); the candidate of highest likelihood wins. Negative shapes (bounded
    tails) are searched as well as positive ones.
    """
    y = np.asarray(excesses, dtype=np.float64)
    if y.ndim != 1 or len(y) < 2:
        raise ConfigError("a generalised Pareto fit needs at least two excesses")
    if not np.isfinite(y).all() or (y <= 0).any():
        raise ConfigError("generalised Pareto excesses must be positive and finite")
    mean = float(y.mean())
    scaled = y / mean
    candidates = [(0.0, 1.0)]
    for x in _grimshaw_roots(scaled):
        shape = float(np.log1p(x * scaled).mean())
        scale = shape / x
        if math.isfinite(shape) and math.isfinite(scale) and scale > 0:
            candidates.append((shape, scale))
    shape, scale = max(candidates, key=lambda c: _log_likelihood(scaled, c[0], c[1]))
    return GeneralisedPareto(shape=shape, scale=scale * mean)


def _profile_log_likelihood(x: float, y: np.ndarray) -> float:
    """Log-likelihood per excess at ``shape/scale = x``, maximised over the scale (Grimshaw's
    reduction); ``y`` scaled to mean 1. Continuous through ``x = 0``, the exponential limit."""
    if x == 0:
        scale = 1.0
    else:
        z = x * y
        if (z <= -1).any():
            return -math.inf
        scale = float(np.log1p(z).mean()) / x
    return -(math.log(scale) + x * scale + 1)


def _track_generalised_pareto(excesses: np.ndarray, previous: GeneralisedPareto) -> GeneralisedPareto:
    """The maximum-likelihood fit after a few excesses were added to those ``previous`` was fitted
    on: the profile likelihood is maximised near the previous optimum, with the full
    :func:`fit_generalised_pareto` as fallback when the optimum leaves that neighbourhood."""
    y = np.asarray(excesses, dtype=np.float64)
    mean = float(y.mean())
    scaled = y / mean
    start = previous.shape / previous.scale * mean
    half_width = 0.1 + 0.2 * abs(start)
    domain_end = -1.0 / float(scaled.max())
    low, high = max(start - half_width, domain_end * (1 - 1e-9)), start + half_width
    if not low < high:
        return fit_generalised_pareto(y)
    from scipy.optimize import minimize_scalar  # imported when used: slow to import

    found = minimize_scalar(
        lambda x: -_profile_log_likelihood(x, scaled),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-10},
    )
    x = float(found.x)
    edge = 1e-6 * max(1.0, abs(x))
    if not found.success or x - low < edge or high - x < edge:
        return fit_generalised_pareto(y)
    scale = float(np.log1p(x * scaled).mean()) / x if x != 0 else 1.0
    return GeneralisedPareto(shape=x * scale, scale=scale * mean)


@dataclass(frozen=True)
class _Tail:
    initial_threshold: float
    excesses: np.ndarray
    rows: int


def _tail(values: np.ndarray, initial_quantile: float, risk: float) -> _Tail:
    initial = float(np.quantile(values, initial_quantile, method="lower"))
    excesses = values[values > initial] - initial
    if len(excesses) < MIN_PEAKS:
        raise ConfigError(
            f"peaks over threshold needs at least {MIN_PEAKS} scores above the initial "
            f"{initial_quantile:g} quantile, found {len(excesses)} among {len(values)}: give more "
            "validation rows or a lower initial_quantile"
        )
    if risk * len(values) >= len(excesses):
        raise ConfigError(
            f"threshold field 'risk': {risk:g} is not below the share of scores above the initial "
            f"threshold ({len(excesses)} of {len(values)}); lower it or lower initial_quantile"
        )
    return _Tail(initial_threshold=initial, excesses=excesses, rows=len(values))


def _tail_value(
    initial_threshold: float, tail: GeneralisedPareto, risk: float, rows: int, peaks: int
) -> float:
    return initial_threshold + tail.excess_quantile(risk * rows / peaks)


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
        value = quantile_threshold(values, checked["false_positive_rate"])
        return Threshold(method, value, checked, rows=len(values))
    if method == "pot":
        return _pot(values, checked["risk"], checked["initial_quantile"], "pot")
    return Spot(checked["risk"], checked["initial_quantile"]).fit(values).threshold_


# --------------------------------------------------------------------------------------------------
# streaming peaks over threshold


class Spot:
    """Streaming peaks over threshold (SPOT; Siffer et al., KDD 2017), and its drift-aware form (DSPOT)
    when ``depth`` is set.

    :meth:`fit` calibrates on a first batch exactly as the ``pot`` threshold does. :meth:`update` then
    judges each new score in order: above the current threshold it is an alarm (and is not learnt
    from); between the initial threshold and the current one it is a new peak, which refits the tail
    and moves the threshold; below it only counts as one more normal row.

    With ``depth = d`` every score is first reduced by the mean of the last ``d`` non-alarm scores, so
    that a slowly drifting level does not raise alarms; the thresholds reported in
    ``last_thresholds_`` are then in score units (local mean plus threshold on the residual).

    ``refit_every`` refits the tail after every that many new peaks (1, the published algorithm,
    refits on each); the threshold still moves with every peak, and at the end of each
    :meth:`update` it also takes the batch's normal rows into account. It never drops below the
    initial threshold.

    As alarms are never learnt from, on stationary scores the threshold settles somewhat below the
    batch ``pot`` one fitted on the same data (by about a tenth at ``risk`` 1e-3 on exponential scores
    in the tests): a score far in the tail is treated as an attack, not as evidence of a heavier tail.
    """

    def __init__(
        self,
        risk: float = 1e-4,
        initial_quantile: float = 0.98,
        *,
        depth: int | None = None,
        refit_every: int = 1,
    ) -> None:
        self.risk = _probability("risk", risk)
        self.initial_quantile = _probability("initial_quantile", initial_quantile)
        _check_tail_levels(self.risk, self.initial_quantile)
        self.depth = None if depth is None else _count("depth", depth, minimum=1)
        self.refit_every = _count("refit_every", refit_every, minimum=1)

    # learned state: initial_threshold_, peaks_ (list of excesses), rows_, tail_, value_, window_,
    # since_refit_, last_thresholds_

    def fit(self, scores: np.ndarray) -> Spot:
        """Calibrate on a first batch of (normal) scores."""
        values, _ = _check(scores)
        self.window_: deque[float] | None = None
        if self.depth is not None:
            d = self.depth
            if len(values) <= d:
                raise ConfigError(f"a drift-aware SPOT with depth {d} needs more than {d} initial scores")
            sums = np.cumsum(np.r_[0.0, values])
            local_mean = (sums[d:-1] - sums[: len(values) - d]) / d
            self.window_ = deque(values[-d:].tolist(), maxlen=d)
            values = values[d:] - local_mean
        found = _tail(values, self.initial_quantile, self.risk)
        self.initial_threshold_ = found.initial_threshold
        self.peaks_: list[float] = found.excesses.tolist()
        self.rows_ = found.rows
        self.tail_ = fit_generalised_pareto(found.excesses)
        self.since_refit_ = 0
        self.value_ = self._value()
        self.last_thresholds_ = np.empty(0)
        return self

    def _value(self) -> float:
        # never below the initial threshold: scores under it are the normal rows the tail is counted
        # against, never alarms
        value = _tail_value(self.initial_threshold_, self.tail_, self.risk, self.rows_, len(self.peaks_))
        return max(value, self.initial_threshold_)

    def _add_peak(self, excess: float) -> None:
        self.peaks_.append(excess)
        self.rows_ += 1
        self.since_refit_ += 1
        if self.since_refit_ >= self.refit_every:
            self.tail_ = _track_generalised_pareto(np.asarray(self.peaks_), self.tail_)
            self.since_refit_ = 0
        self.value_ = self._value()

    def update(self, scores: np.ndarray) -> np.ndarray:
        """Judge ``scores`` in stream order and learn from them; returns the alarms. The threshold
        each score was judged against is left in ``last_thresholds_``."""
        if not hasattr(self, "tail_"):
            raise ConfigError("SPOT must be fitted on an initial batch before it is updated")
        values = np.asarray(scores, dtype=np.float64)
        if values.ndim != 1 or not np.isfinite(values).all():
            raise ConfigError("SPOT updates need a 1-D array of finite scores")
        if self.window_ is not None:
            return self._update_with_drift(values)
        alarms = np.zeros(len(values), dtype=bool)
        thresholds = np.empty(len(values))
        # the threshold only moves at a peak: the scores below the initial threshold in between are
        # normal rows, counted in one step
        start = 0
        for i in np.flatnonzero(values > self.initial_threshold_):
            thresholds[start : i + 1] = self.value_
            self.rows_ += int(i - start)
            start = i + 1
            if values[i] > self.value_:
                alarms[i] = True
            else:
                self._add_peak(float(values[i]) - self.initial_threshold_)
        thresholds[start:] = self.value_
        self.rows_ += int(len(values) - start)
        self.value_ = self._value()
        self.last_thresholds_ = thresholds
        return alarms

    def _update_with_drift(self, values: np.ndarray) -> np.ndarray:
        window = self.window_
        assert window is not None and self.depth is not None
        alarms = np.zeros(len(values), dtype=bool)
        thresholds = np.empty(len(values))
        total = float(sum(window))
        for i, x in enumerate(values.tolist()):
            local_mean = total / self.depth
            residual = x - local_mean
            thresholds[i] = local_mean + self.value_
            if residual > self.value_:
                alarms[i] = True
                continue
            if residual > self.initial_threshold_:
                self._add_peak(residual - self.initial_threshold_)
            else:
                self.rows_ += 1
            total += x - window[0]
            window.append(x)
        self.value_ = self._value()
        self.last_thresholds_ = thresholds
        return alarms

    @property
    def threshold_(self) -> Threshold:
        """The current threshold, to save or apply as a fixed one (plain SPOT only: a drift-aware
        threshold moves with the local mean)."""
        if not hasattr(self, "tail_"):
            raise ConfigError("SPOT has not been fitted")
        if self.depth is not None:
            raise ConfigError("a drift-aware SPOT has no fixed threshold; save its state with to_dict()")
        params = {
            "risk": self.risk,
            "initial_quantile": self.initial_quantile,
            "initial_threshold": self.initial_threshold_,
            "shape": self.tail_.shape,
            "scale": self.tail_.scale,
            "peaks": len(self.peaks_),
        }
        return Threshold("spot", self.value_, params, rows=int(self.rows_))

    def to_dict(self) -> dict[str, Any]:
        """The settings and the full learned state, JSON-ready, to resume the stream later."""
        if not hasattr(self, "tail_"):
            raise ConfigError("SPOT has not been fitted")
        return {
            "risk": self.risk,
            "initial_quantile": self.initial_quantile,
            "depth": self.depth,
            "refit_every": self.refit_every,
            "initial_threshold": self.initial_threshold_,
            "peaks": list(self.peaks_),
            "rows": int(self.rows_),
            "shape": self.tail_.shape,
            "scale": self.tail_.scale,
            "since_refit": self.since_refit_,
            "window": None if self.window_ is None else list(self.window_),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Spot:
        """A SPOT resumed from :meth:`to_dict`; a missing or invalid field raises :class:`ConfigError`."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"a SPOT state must be a JSON object, got {type(data).__name__}")
        for name in ("risk", "initial_quantile", "initial_threshold", "peaks", "rows", "shape", "scale"):
            if name not in data:
                raise ConfigError(f"threshold field {name!r}: missing")
        spot = cls(
            data["risk"],
            data["initial_quantile"],
            depth=data.get("depth"),
            refit_every=data.get("refit_every", 1),
        )
        peaks = data["peaks"]
        if not isinstance(peaks, list) or len(peaks) < MIN_PEAKS:
            raise ConfigError(f"threshold field 'peaks': must be a list of at least {MIN_PEAKS} excesses")
        spot.peaks_ = [_positive("peaks", p) for p in peaks]
        spot.initial_threshold_ = _real("initial_threshold", data["initial_threshold"])
        spot.rows_ = _count("rows", data["rows"], minimum=len(peaks))
        spot.tail_ = GeneralisedPareto(_real("shape", data["shape"]), _positive("scale", data["scale"]))
        spot.since_refit_ = _count("since_refit", data.get("since_refit", 0))
        window = data.get("window")
        spot.window_ = None
        if spot.depth is not None:
            if not isinstance(window, list) or len(window) != spot.depth:
                raise ConfigError(f"threshold field 'window': must be a list of {spot.depth} scores")
            spot.window_ = deque((_real("window", v) for v in window), maxlen=spot.depth)
        elif window is not None:
            raise ConfigError("threshold field 'window': only a drift-aware SPOT (depth set) has one")
        spot.value_ = spot._value()
        spot.last_thresholds_ = np.empty(0)
        return spot


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


def check_threshold_choice(method: str, params: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`ConfigError` naming the problem unless ``method`` is one of
    :data:`THRESHOLD_CHOICES` and ``params`` are valid settings of it (for ``auto``: of the method
    it may choose), so a bad choice fails before training rather than after."""
    if method not in THRESHOLD_CHOICES:
        raise ConfigError(f"unknown threshold method {method!r} (known: {', '.join(THRESHOLD_CHOICES)})")
    params = dict(params or {})
    if method != "auto":
        threshold_settings(method, **params)
        return
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
    normal rows, but never above the score exceeded by ``false_positive_rate`` of its normal rows
    (then that quantile is the threshold); otherwise that quantile of the normal (or unlabelled)
    rows. The cap is there because a hold-out's attacks are the attacks already known, and often
    floods: an F-beta-optimal threshold fitted on them is pulled far above the normal scores, and
    attacks unlike them (slower, smaller, new) would fall below it while a false-positive budget of
    ``false_positive_rate`` was left unused. ``quantile``, ``f_beta`` and ``pot`` fit that method of
    :func:`fit_threshold` (on the normal rows where labels say which they are)
    with ``params`` (``false_positive_rate``, ``beta``, ``risk``, ``initial_quantile``).
    """
    if method in ("auto", "quantile"):
        params["false_positive_rate"] = false_positive_rate
    check_threshold_choice(method, params)
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
    return fitted
