"""An alert threshold that follows a stream: SPOT (or DSPOT) started from a bundle's fixed threshold.

:class:`StreamThreshold` wraps :class:`~nadkit.evaluation.spot.Spot`. It starts from the normal
hold-out scores the bundle keeps (:class:`~nadkit.evaluation.calibration.NormalScores`, read back as
``prior`` rows spread over its quantiles): the initial quantile is set below the bundle's threshold,
and the risk to the tail probability the fitted tail gives that threshold, so that the first value
*is* the bundle's threshold. It then learns from the scores of the units (flows or buckets) the
stream did not alert on; the threshold moves with the tail of the live normal scores.

``memory``: the peaks remembered (the oldest are forgotten with their share of the rows counted, so
the share of scores above the initial threshold is kept): the threshold follows the recent tail, as
traffic changes from hour to hour and day to day, instead of averaging over the whole stream; it
also bounds the state. ``depth`` (DSPOT): scores are first reduced by the mean of the last ``depth``
normal scores, and the threshold is that mean plus the residual's. ``floor``: the threshold never
goes below this share of the bundle's (1 keeps the bundle's as the lowest: SPOT may then only cut
false positives, never add alerts below the validated line).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from nadkit.errors import ConfigError
from nadkit.evaluation.calibration import NormalScores
from nadkit.evaluation.spot import Spot

log = logging.getLogger(__name__)

FORMAT: Final = "nadkit.stream-threshold"
ADAPTIVE: Final = ("spot", "dspot")


@dataclass(frozen=True)
class AdaptiveSettings:
    """How the threshold adapts (module docstring)."""

    method: str = "spot"
    prior: int = 2000
    memory: int = 500
    depth: int = 200
    refit_every: int = 10
    floor: float = 0.0

    def __post_init__(self) -> None:
        if self.method not in ADAPTIVE:
            raise ConfigError(f"adaptive threshold must be one of {', '.join(ADAPTIVE)}, not {self.method!r}")
        if self.prior < 100 or self.memory < 20 or self.depth < 1 or self.refit_every < 1:
            raise ConfigError("SPOT needs prior >= 100, memory >= 20, depth >= 1 and refit_every >= 1")
        if not 0 <= self.floor <= 1:
            raise ConfigError("the SPOT floor must be a share of the bundle's threshold, from 0 to 1")


def _prior_scores(normal: NormalScores, rows: int, seed: int = 0) -> np.ndarray:
    """``rows`` scores spread evenly over the normal quantiles (shuffled: DSPOT reads them in order)."""
    levels = (np.arange(rows) + 0.5) / rows
    scores = np.interp(levels, normal.levels, normal.values)
    return np.random.default_rng(seed).permutation(scores)


class StreamThreshold:
    """The threshold of a stream (module docstring): :attr:`value` now, :meth:`update` after each
    scored chunk, :meth:`to_dict` / :meth:`from_dict` for checkpoints."""

    def __init__(self, spot: Spot, settings: AdaptiveSettings, start: float) -> None:
        self.spot = spot
        self.settings = settings
        self.start = float(start)
        self.updates = 0
        self.learned = 0

    @classmethod
    def begin(
        cls, normal: NormalScores | None, threshold: float, settings: AdaptiveSettings
    ) -> StreamThreshold:
        """Start at ``threshold`` from the bundle's normal hold-out scores (ConfigError without them)."""
        if normal is None:
            raise ConfigError(
                "an adaptive threshold starts from the bundle's normal hold-out scores (calibration.json); "
                "retrain the model with this nadkit"
            )
        rows = settings.prior
        scores = _prior_scores(normal, rows + (settings.depth if settings.method == "dspot" else 0))
        depth = settings.depth if settings.method == "dspot" else None
        if depth is not None:
            sums = np.cumsum(np.r_[0.0, scores])
            residuals = scores[depth:] - (sums[depth:-1] - sums[: len(scores) - depth]) / depth
            target = threshold - float(scores[-depth:].mean())
        else:
            residuals, target = scores, threshold
        below = float(np.mean(residuals < target))
        quantile = min(0.98, max(0.5, 1 - 2 * (1 - below)))
        spot = Spot(
            risk=0.5 * (1 - quantile) / 2,
            initial_quantile=quantile,
            depth=depth,
            refit_every=1,
            truncated=depth is None,
        )
        spot.fit(scores)
        spot.refit_every = settings.refit_every
        excess = target - spot.initial_threshold_
        peaks, total = len(spot.peaks_), spot.rows_
        if excess > 0:
            survival = _survival(spot.tail_.shape, spot.tail_.scale, excess)
            risk = peaks / total * survival
        else:
            risk = 0.0
        lowest = 1e-3 / total
        if not risk > lowest:
            log.info("the bundle's threshold lies beyond the normal tail: SPOT starts at risk %.3g", lowest)
            risk = lowest
        spot.risk = min(risk, 0.999 * peaks / total)
        spot.value_ = spot._value()
        made = cls(spot, settings, threshold)
        log.info(
            "%s threshold from %.6g (initial quantile %.3g, risk %.3g); fitted start %.6g",
            settings.method,
            threshold,
            quantile,
            spot.risk,
            made.spot_value,
        )
        return made

    @property
    def spot_value(self) -> float:
        spot = self.spot
        if spot.window_ is not None and spot.depth is not None:
            return float(sum(spot.window_) / spot.depth + spot.value_)
        return float(spot.value_)

    @property
    def value(self) -> float:
        """The threshold now: the bundle's until the first update, then SPOT's (never under the floor)."""
        if self.updates == 0:
            return self.start
        return max(self.spot_value, self.settings.floor * self.start)

    def update(self, scores: np.ndarray, alerted: np.ndarray) -> float:
        """Learn from the ``scores`` of units not ``alerted`` (in stream order); the new value."""
        scores = np.asarray(scores, dtype=np.float64)
        keep = ~np.asarray(alerted, dtype=bool) & np.isfinite(scores)
        learned = scores[keep]
        if learned.size:
            if self.spot.window_ is None:
                # the stream alerted on every score over its threshold now: SPOT learns only from
                # scores under that line and under its own, and counts the peaks it could not see
                ceiling = self.value
                learned = learned[learned <= ceiling]
                self.spot.update(learned, ceiling=ceiling)
            else:
                self.spot.update(learned)
            self.learned += int(learned.size)
            self._forget()
        self.updates += 1
        return self.value

    def _forget(self) -> None:
        spot = self.spot
        extra = len(spot.peaks_) - self.settings.memory
        if extra <= 0:
            return
        share = len(spot.peaks_) / spot.rows_
        del spot.peaks_[:extra]
        del spot.limits_[:extra]
        spot.rows_ = max(len(spot.peaks_) + 1, round(len(spot.peaks_) / share))
        spot.value_ = spot._value()

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "method": self.settings.method,
            "start": self.start,
            "updates": self.updates,
            "learned": self.learned,
            "value": self.value,
            "spot": self.spot.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], settings: AdaptiveSettings) -> StreamThreshold:
        """A threshold resumed from a checkpoint (ConfigError when it is not one of ``settings``' method)."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ConfigError("not a saved stream threshold")
        if data.get("method") != settings.method:
            raise ConfigError(f"the checkpoint holds a {data.get('method')} threshold, not {settings.method}")
        spot = Spot.from_dict(data["spot"])
        made = cls(spot, settings, float(data["start"]))
        made.updates = int(data.get("updates", 0))
        made.learned = int(data.get("learned", 0))
        return made


def _survival(shape: float, scale: float, excess: float) -> float:
    """The generalised Pareto tail's probability of an excess above ``excess``."""
    if abs(shape) < 1e-12:
        return math.exp(-excess / scale)
    base = 1 + shape * excess / scale
    return 0.0 if base <= 0 else base ** (-1 / shape)


__all__ = ["ADAPTIVE", "AdaptiveSettings", "StreamThreshold"]
