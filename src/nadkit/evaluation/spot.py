"""Streaming peaks over threshold: :class:`Spot` (SPOT, and DSPOT with a drift window), calibrated
on a first batch as the ``pot`` threshold is and then learning the tail from the peaks of a stream."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from nadkit.errors import ConfigError
from nadkit.evaluation.tails import (
    MIN_PEAKS,
    GeneralisedPareto,
    _log_distribution,
    _tail,
    _tail_value,
    _track_generalised_pareto,
    fit_generalised_pareto,
    fit_truncated_generalised_pareto,
)
from nadkit.evaluation.threshold_type import (
    Threshold,
    _check,
    _check_tail_levels,
    _count,
    _positive,
    _probability,
    _real,
)


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
        truncated: bool = False,
    ) -> None:
        self.risk = _probability("risk", risk)
        self.initial_quantile = _probability("initial_quantile", initial_quantile)
        _check_tail_levels(self.risk, self.initial_quantile)
        self.depth = None if depth is None else _count("depth", depth, minimum=1)
        self.refit_every = _count("refit_every", refit_every, minimum=1)
        self.truncated = bool(truncated)

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
        # each peak's limit: the largest excess it could have had to be learnt (inf: any)
        self.limits_: list[float] = [math.inf] * len(self.peaks_)
        self.rows_ = found.rows
        self.tail_ = fit_generalised_pareto(found.excesses)
        self.since_refit_ = 0
        self.value_ = self._value()
        self.last_thresholds_ = np.empty(0)
        return self

    def _value(self) -> float:
        # never below the initial threshold: scores under it are the normal rows the tail is counted
        # against, never alarms
        if not self.truncated:
            value = _tail_value(self.initial_threshold_, self.tail_, self.risk, self.rows_, len(self.peaks_))
            return max(value, self.initial_threshold_)
        return max(self.initial_threshold_ + self._truncated_excess(), self.initial_threshold_)

    def _truncated_excess(self) -> float:
        """The excess at the risk, where each peak could only be learnt under its limit: a peak seen
        under limit ``c`` stands for ``1 / F(c)`` peaks, ``1 / F(c) - 1`` of them over the limit and
        never seen, which count as rows too (scores under the initial threshold were always seen)."""
        limits = np.asarray(self.limits_, dtype=np.float64)
        finite = np.isfinite(limits)
        unseen = 0.0
        if finite.any():
            seen = np.exp(_log_distribution(limits[finite], self.tail_.shape, self.tail_.scale))
            unseen = float(np.sum(1 / np.maximum(seen, 1e-12) - 1))
        share = (len(self.peaks_) + unseen) / max(self.rows_ + unseen, 1.0)
        if not share > 0:
            return 0.0
        exceedance = self.risk / share
        return 0.0 if exceedance >= 1 else self.tail_.excess_quantile(exceedance)

    def _add_peak(self, excess: float, limit: float = math.inf) -> None:
        self.peaks_.append(excess)
        self.limits_.append(limit)
        self.rows_ += 1
        self.since_refit_ += 1
        if self.since_refit_ >= self.refit_every:
            self._refit()
        self.value_ = self._value()

    def _refit(self) -> None:
        peaks = np.asarray(self.peaks_)
        if self.truncated:
            self.tail_ = fit_truncated_generalised_pareto(peaks, np.asarray(self.limits_), self.tail_)
        else:
            self.tail_ = _track_generalised_pareto(peaks, self.tail_)
        self.since_refit_ = 0

    def _limit(self, ceiling: float) -> float:
        """The largest excess a peak can have to be learnt now, under the caller's ``ceiling`` and the
        current threshold (inf unless ``truncated``)."""
        if not self.truncated:
            return math.inf
        return min(self.value_, ceiling) - self.initial_threshold_

    def update(self, scores: np.ndarray, *, ceiling: float = math.inf) -> np.ndarray:
        """Judge ``scores`` in stream order and learn from them; returns the alarms. The threshold
        each score was judged against is left in ``last_thresholds_``. ``ceiling``: the caller gave no
        score above it (a truncated SPOT counts that in the limits of its peaks)."""
        if not hasattr(self, "tail_"):
            raise ConfigError("SPOT must be fitted on an initial batch before it is updated")
        values = np.asarray(scores, dtype=np.float64)
        if values.ndim != 1 or not np.isfinite(values).all():
            raise ConfigError("SPOT updates need a 1-D array of finite scores")
        if self.window_ is not None:
            return self._update_with_drift(values, ceiling)
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
                self._add_peak(float(values[i]) - self.initial_threshold_, self._limit(ceiling))
        thresholds[start:] = self.value_
        self.rows_ += int(len(values) - start)
        self.value_ = self._value()
        self.last_thresholds_ = thresholds
        return alarms

    def _update_with_drift(self, values: np.ndarray, ceiling: float) -> np.ndarray:
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
                self._add_peak(residual - self.initial_threshold_, self._limit(ceiling))
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
            "truncated": self.truncated,
            "initial_threshold": self.initial_threshold_,
            "peaks": list(self.peaks_),
            # JSON has no infinity: a peak learnt whatever its size has no limit (null)
            "limits": [None if math.isinf(c) else c for c in self.limits_],
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
            truncated=bool(data.get("truncated", False)),
        )
        peaks = data["peaks"]
        if not isinstance(peaks, list) or len(peaks) < MIN_PEAKS:
            raise ConfigError(f"threshold field 'peaks': must be a list of at least {MIN_PEAKS} excesses")
        spot.peaks_ = [_positive("peaks", p) for p in peaks]
        limits = data.get("limits")
        if limits is None:
            spot.limits_ = [math.inf] * len(peaks)
        elif isinstance(limits, list) and len(limits) == len(peaks):
            spot.limits_ = [math.inf if c is None else _positive("limits", c) for c in limits]
        else:
            raise ConfigError("threshold field 'limits': must be a list with one limit (or null) per peak")
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
