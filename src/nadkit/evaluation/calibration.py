"""A score scale people read: percentiles among normal scores, multiples of the threshold, severity.

A raw anomaly score (a reconstruction error, a distance, ``1 - P(normal)``) has no scale of its own.
Training keeps the scores of the normal hold-out (validation) rows as quantiles
(:class:`NormalScores`, 1,005 points), and each scored flow is then placed on two scales:

- ``score_percentile``: the share of normal hold-out scores at or below the score, 0-100 (100 above
  every normal score seen): how rare the score is in normal traffic;
- ``threshold_multiple``: ``score / threshold`` (null where the threshold is not positive): how far
  past the alert line the score lies, which keeps growing after the percentile has reached 100.

:class:`SeverityRules` turns the two into ``low``, ``medium``, ``high`` or ``critical`` for alerts.
:class:`Calibration` is what a bundle saves (``calibration.json``): the normal scores and the
typical ranges of the features (:mod:`nadkit.features.ranges`) that explanations quote.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import polars as pl

from nadkit.errors import ConfigError
from nadkit.features.ranges import DEFAULT_QUANTILES, FeatureRange

FORMAT: Final = "nadkit.calibration"
FORMAT_VERSION: Final = 1
#: the quantile levels kept of the normal scores: every 0.1%, and a finer tail
LEVELS: Final = np.concatenate([np.linspace(0.0, 1.0, 1001), np.array([0.9995, 0.9999, 0.99995, 0.99999])])
LEVELS.sort()
SEVERITIES: Final = ("low", "medium", "high", "critical")


@dataclass(frozen=True)
class NormalScores:
    """Quantiles of the anomaly scores of normal hold-out rows: ``values[i]`` is the score below
    which a share ``levels[i]`` of them lie; ``rows``: how many scores they summarise."""

    levels: np.ndarray
    values: np.ndarray
    rows: int

    @classmethod
    def of(cls, scores: np.ndarray) -> NormalScores | None:
        """The quantiles of ``scores`` (non-finite ones left out); None when none is finite."""
        scores = np.asarray(scores, dtype=np.float64)
        finite = scores[np.isfinite(scores)]
        if finite.size == 0:
            return None
        return cls(LEVELS.copy(), np.quantile(finite, LEVELS), int(finite.size))

    def percentile(self, scores: np.ndarray) -> np.ndarray:
        """Each score's percentile among the normal scores (0-100; NaN for a non-finite score):
        linear between the stored quantiles, the highest level among tied quantiles, 0 below the
        lowest normal score and 100 above the highest."""
        scores = np.asarray(scores, dtype=np.float64)
        values, last = np.unique(self.values[::-1], return_index=True)
        # np.unique keeps the first occurrence in the reversed array: the highest level of each value
        levels = self.levels[::-1][last]
        out = np.interp(scores, values, levels, left=0.0, right=1.0) * 100.0
        if len(values) == 1:  # every normal score equal: at or above it is 100, below 0
            out = np.where(scores >= values[0], 100.0, 0.0)
        out[~np.isfinite(scores)] = np.nan
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "levels": self.levels.tolist(), "values": self.values.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NormalScores:
        levels = np.asarray(data["levels"], dtype=np.float64)
        values = np.asarray(data["values"], dtype=np.float64)
        if levels.ndim != 1 or levels.shape != values.shape or len(levels) < 2:
            raise ValueError("normal score levels and values must be two lists of one length")
        if np.any(np.diff(levels) < 0) or np.any(np.diff(values) < 0) or not np.all(np.isfinite(values)):
            raise ValueError("normal score quantiles must be finite and increasing")
        return cls(levels, values, int(data["rows"]))


@dataclass(frozen=True)
class SeverityRules:
    """How an alert's severity follows from its percentile and threshold multiple.

    An alert is ``critical`` when its percentile reaches ``critical_percentile`` or its multiple
    ``critical_multiple``, else ``high`` on the ``high_*`` cut points, else ``medium`` on the
    ``medium_*`` ones, else ``low``. Flows that are not alerts get no severity. Defaults:

    ========  ===========  ==========  ================================================
    severity  percentile   multiple    reading
    ========  ===========  ==========  ================================================
    critical  >= 99.99     >= 10       rarer than 1 in 10,000 normal flows, or ten times
                                       the threshold
    high      >= 99.9      >= 3        rarer than 1 in 1,000 normal flows
    medium    >= 99.5      >= 1.5      rarer than 1 in 200 normal flows
    low       (any alert)              inside the normal tail the threshold's false-alarm
                                       budget admits
    ========  ===========  ==========  ================================================

    Why these: the threshold is usually fitted near the 99th percentile of normal scores (the
    default false-positive budget is 1%), so an alert just past it is as common as 1 normal flow in
    100 and says little on its own (``low``); each step up makes it ten times rarer in normal
    traffic or puts it clearly further past the threshold. Both scales count because each fails
    where the other holds: the percentile stops at 100 above the highest normal score seen, while
    the multiple keeps growing; and a multiple means little when normal scores spread widely,
    which the percentile sees. A percentile cut point is used only where the normal hold-out had
    enough rows to measure it (at least ``1 / (1 - p / 100)`` scores, e.g. 10,000 for 99.99):
    with fewer, any score above the highest normal one would reach it. A model saved without normal
    scores is graded on the multiple alone.
    """

    critical_percentile: float = 99.99
    critical_multiple: float = 10.0
    high_percentile: float = 99.9
    high_multiple: float = 3.0
    medium_percentile: float = 99.5
    medium_multiple: float = 1.5

    def __post_init__(self) -> None:
        percentiles = (self.medium_percentile, self.high_percentile, self.critical_percentile)
        multiples = (self.medium_multiple, self.high_multiple, self.critical_multiple)
        if not all(0.0 < p <= 100.0 for p in percentiles) or list(percentiles) != sorted(percentiles):
            raise ConfigError("severity percentiles must be in (0, 100] and rise from medium to critical")
        if not all(m > 0 for m in multiples) or list(multiples) != sorted(multiples):
            raise ConfigError(
                "severity threshold multiples must be positive and rise from medium to critical"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SeverityRules:
        """Rules from a mapping of the field names (others refused)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown severity setting {unknown[0]!r} (known: {', '.join(sorted(known))})")
        try:
            return cls(**{k: float(v) for k, v in data.items()})
        except (TypeError, ValueError) as error:
            raise ConfigError(f"invalid severity settings: {error}") from None

    @classmethod
    def parse(cls, text: str) -> SeverityRules:
        """Rules from ``critical=99.99:10,high=99.9:3,medium=99.5:1.5`` (a level's percentile and
        threshold multiple; levels left out keep their defaults)."""
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            level, _, cuts = part.partition("=")
            percentile, _, multiple = cuts.partition(":")
            if level.strip() not in ("critical", "high", "medium") or not percentile or not multiple:
                raise ConfigError(
                    f"severity cut {part!r}: write LEVEL=PERCENTILE:MULTIPLE "
                    "(LEVEL: critical, high or medium)"
                )
            try:
                values[f"{level.strip()}_percentile"] = float(percentile)
                values[f"{level.strip()}_multiple"] = float(multiple)
            except ValueError:
                raise ConfigError(
                    f"severity cut {part!r}: the percentile and the multiple are numbers"
                ) from None
        return cls.from_dict(values)

    def grade(
        self, alerts: np.ndarray, percentile: np.ndarray | None, multiple: np.ndarray, normal_rows: int = 0
    ) -> pl.Series:
        """The ``severity`` column: a level for each alert, null for other rows. ``percentile`` None
        (no normal scores) grades on the multiple alone; ``normal_rows``: how many normal scores the
        percentiles come from."""
        alerts = np.asarray(alerts, dtype=bool)
        multiple = np.nan_to_num(np.asarray(multiple, dtype=np.float64), nan=-np.inf)
        level = np.zeros(len(alerts), dtype=np.int8)
        cuts = (
            (1, self.medium_percentile, self.medium_multiple),
            (2, self.high_percentile, self.high_multiple),
            (3, self.critical_percentile, self.critical_multiple),
        )
        if percentile is not None:
            percentile = np.nan_to_num(np.asarray(percentile, dtype=np.float64), nan=-np.inf)
        for value, cut_percentile, cut_multiple in cuts:
            reached = multiple >= cut_multiple
            if percentile is not None and normal_rows >= _rows_to_measure(cut_percentile):
                reached |= percentile >= cut_percentile
            level[reached] = value
        codes = pl.Series("severity", np.where(alerts, level, -1), dtype=pl.Int8)
        return codes.replace_strict(dict(enumerate(SEVERITIES)), default=None, return_dtype=pl.String).alias(
            "severity"
        )


def _rows_to_measure(percentile: float) -> float:
    """Normal scores needed before a percentile cut point can be told from the highest one."""
    tail = 1.0 - percentile / 100.0
    return math.inf if tail <= 0 else 1.0 / tail - 1e-9


def threshold_multiple(scores: np.ndarray, threshold: float) -> np.ndarray:
    """``scores / threshold``; NaN where the threshold is not positive (the ratio would mislead)."""
    scores = np.asarray(scores, dtype=np.float64)
    if not (threshold > 0 and math.isfinite(threshold)):
        return np.full(len(scores), np.nan)
    return scores / threshold


@dataclass
class Calibration:
    """What a bundle keeps to place scores and explain features: the normal hold-out scores (None
    where there were none) and the typical range of each feature on normal training traffic."""

    normal: NormalScores | None = None
    ranges: dict[str, FeatureRange] = field(default_factory=dict)
    quantiles: tuple[float, float] = DEFAULT_QUANTILES
    #: the highest hold-out score, attacks included (None in bundles saved before it was kept): how
    #: high a threshold chosen on the hold-out can lie
    holdout_max: float | None = None

    def percentile(self, scores: np.ndarray) -> np.ndarray | None:
        """:meth:`NormalScores.percentile`, or None without normal scores."""
        return None if self.normal is None else self.normal.percentile(scores)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "normal_scores": None if self.normal is None else self.normal.to_dict(),
            "range_quantiles": list(self.quantiles),
            "ranges": {name: r.to_dict() for name, r in self.ranges.items()},
            **({"holdout_max": self.holdout_max} if self.holdout_max is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        """Read :meth:`to_dict`'s output; ValueError on anything malformed."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ValueError("not a nadkit calibration")
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"calibration format version {data.get('version')} is not supported")
        normal = data.get("normal_scores")
        low, high = (float(q) for q in data.get("range_quantiles", DEFAULT_QUANTILES))
        ranges = data.get("ranges") or {}
        if not isinstance(ranges, Mapping):
            raise ValueError("ranges must be a mapping")
        return cls(
            normal=None if normal is None else NormalScores.from_dict(normal),
            ranges={str(name): FeatureRange.from_dict(r) for name, r in ranges.items()},
            quantiles=(low, high),
            holdout_max=None if data.get("holdout_max") is None else float(data["holdout_max"]),
        )


__all__ = [
    "LEVELS",
    "SEVERITIES",
    "Calibration",
    "NormalScores",
    "SeverityRules",
    "threshold_multiple",
]
