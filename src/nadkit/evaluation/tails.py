"""The generalised Pareto tail of peaks over threshold: the distribution
(:class:`GeneralisedPareto`), its maximum-likelihood fit by Grimshaw's method
(:func:`fit_generalised_pareto`), the refit as a few excesses are added, and the excesses over a
high initial quantile that it is fitted to."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nadkit.errors import ConfigError

#: the fewest excesses over the initial quantile that a generalised Pareto tail is fitted to
MIN_PEAKS = 10


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


def _log_distribution(c: np.ndarray, shape: float, scale: float) -> np.ndarray:
    """``log F(c)``, the log-probability of an excess at most ``c`` (0 for an infinite ``c`` and beyond a
    bounded tail's end)."""
    c = np.asarray(c, dtype=np.float64)
    finite = np.isfinite(c)
    log_survival = np.full(c.shape, -np.inf)
    if abs(shape) < 1e-12:
        log_survival[finite] = -c[finite] / scale
    else:
        z = 1 + shape * c[finite] / scale
        inside = z > 0
        values = np.full(z.shape, -np.inf)
        values[inside] = -np.log(z[inside]) / shape
        log_survival[finite] = values
    with np.errstate(divide="ignore"):
        return np.log(-np.expm1(log_survival))


def fit_truncated_generalised_pareto(
    excesses: np.ndarray, limits: np.ndarray, start: GeneralisedPareto
) -> GeneralisedPareto:
    """The maximum-likelihood scale of the tail of ``excesses`` each of which could only be seen when at
    most its ``limit`` (``inf``: seen whatever its size), what a stream that learns only from scores
    under its own threshold sees: each excess counts ``log f(y) - log F(limit)``. The shape is kept
    at ``start``'s: excesses cut at a limit near the quantile sought say little about how heavy the
    tail is beyond it, and a free shape lets the threshold run away."""
    y = np.asarray(excesses, dtype=np.float64)
    c = np.asarray(limits, dtype=np.float64)
    if not np.isfinite(c).any():
        return _track_generalised_pareto(y, start)
    from scipy.optimize import minimize_scalar  # imported when used: slow to import

    shape = start.shape

    def negative(log_scale: float) -> float:
        scale = math.exp(log_scale)
        value = _log_likelihood(y, shape, scale)
        truncation = _log_distribution(c, shape, scale)
        if not math.isfinite(value) or not np.isfinite(truncation).all():
            return 1e300  # outside the support: finite, so that the bounded search can compare it
        return -(value - float(truncation.sum()))

    centre = math.log(start.scale)
    found = minimize_scalar(negative, bounds=(centre - 3, centre + 3), method="bounded")
    if not float(found.fun) < 1e300:
        return start
    return GeneralisedPareto(shape=shape, scale=math.exp(float(found.x)))


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


@dataclass(frozen=True)
class ExponentialTail:
    """A quantile read off an exponential tail: ``value`` is exceeded with the asked probability when
    the ``peaks`` largest scores' excesses over ``initial_threshold`` (the next score below them) are
    exponential with mean ``scale``."""

    value: float
    initial_threshold: float
    scale: float
    peaks: int


def exponential_tail_quantile(
    values: np.ndarray, exceedance: float, peaks: int = MIN_PEAKS
) -> ExponentialTail | None:
    """The score exceeded with probability ``exceedance``, from an exponential tail fitted to the
    ``peaks`` largest of ``values``: ``u + scale·ln(peaks / (n·exceedance))``, ``u`` the largest score
    below those peaks and ``scale`` their mean excess over it (the maximum-likelihood fit, a generalised
    Pareto tail of shape 0).

    For a small sample where ``n·exceedance`` is about one, the empirical quantile is the largest or
    second largest score alone, whose exceedance on new data varies tenfold from one sample to the
    next; the tail fit spreads that over ``peaks`` scores. The value is kept within the largest
    score plus its excess over ``u``. None where it does not apply: fewer than ``peaks + 1`` scores,
    or no spread among the largest."""
    y = np.sort(np.asarray(values, dtype=np.float64))
    n = len(y)
    if n <= peaks or not 0 < exceedance < 1:
        return None
    initial = float(y[n - peaks - 1])
    excesses = y[n - peaks :] - initial
    scale = float(excesses.mean())
    if not (math.isfinite(scale) and scale > 0):
        return None
    value = initial + scale * math.log(peaks / (n * exceedance))
    # never further beyond the largest score than the largest score lies beyond the initial one: a
    # hold-out of a few dozen rows asks for a quantile far past its top, where the fit says nothing
    value = min(value, 2.0 * float(y[-1]) - initial)
    return ExponentialTail(value=value, initial_threshold=initial, scale=scale, peaks=peaks)


def _tail_value(
    initial_threshold: float, tail: GeneralisedPareto, risk: float, rows: int, peaks: int
) -> float:
    return initial_threshold + tail.excess_quantile(risk * rows / peaks)
