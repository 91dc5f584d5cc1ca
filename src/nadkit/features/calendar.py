"""The calendar group: a flow's time of day and day of week (UTC), each as a point on a circle (sine and
cosine), so that the daily and weekly rhythm of the traffic becomes part of what is normal and a
night-time burst reads differently from a workday one.

A cycle is only learnt when the training flows span it: the time of day from about a day of traffic,
the day of week from about a week. A model trained on two days has seen Monday and Tuesday only; a
day-of-week feature would make every Thursday flow look new. The spans are checked at fit and the
cycles the training data covers are kept in the group's state, so scoring computes the same features.

Not among the default groups: the window models (LSTM, GRU, transformer, CNN-LSTM) ask for it (their
``wants_calendar``), and a user can add it to any model's feature groups.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from nadkit.errors import ConfigError
from nadkit.features.base import FeatureGroup, State

log = logging.getLogger(__name__)

_DAY_S = 86_400.0
_WEEK_S = 7 * _DAY_S
#: cycle -> (its length in seconds, the feature name stem)
CYCLES: dict[str, tuple[float, str]] = {"day": (_DAY_S, "time_of_day"), "week": (_WEEK_S, "day_of_week")}
#: the share of a cycle the training flows must span for it to be learnt (a day of flows written from
#: 00:00:05 to 23:59:50 spans just under a day)
MIN_COVERAGE = 0.95
_EPOCH_WEEKDAY_S = 3 * _DAY_S  # 1970-01-01 was a Thursday: Monday 00:00 is angle 0 of the week


def spanned_cycles(span_s: float) -> list[str]:
    """The cycles a training span of ``span_s`` seconds covers (at least :data:`MIN_COVERAGE` of each)."""
    return [name for name, (length, _) in CYCLES.items() if span_s >= MIN_COVERAGE * length]


def calendar_names(cycles: list[str] | tuple[str, ...]) -> list[str]:
    """The feature names of ``cycles``, in order (``time_of_day_sin``, ``time_of_day_cos``, ...)."""
    return [f"{CYCLES[c][1]}_{part}" for c in cycles for part in ("sin", "cos")]


def _offset(cycle: str) -> float:
    return _EPOCH_WEEKDAY_S if cycle == "week" else 0.0


def calendar_matrix(start_us: np.ndarray, cycles: list[str] | tuple[str, ...] = tuple(CYCLES)) -> np.ndarray:
    """``(rows, 2 * len(cycles))`` float32: the sine and cosine of each time (microseconds since the
    epoch, UTC) on each cycle, the columns of :func:`calendar_names` (what the group's expressions
    compute, for the bucket view's NumPy rows)."""
    seconds = np.asarray(start_us, dtype=np.int64) / 1e6
    columns = []
    for cycle in cycles:
        length = CYCLES[cycle][0]
        angle = ((seconds + _offset(cycle)) % length) * (2 * math.pi / length)
        columns += [np.sin(angle), np.cos(angle)]
    return (
        np.stack(columns, axis=1).astype(np.float32) if columns else np.empty((len(seconds), 0), np.float32)
    )


class CalendarGroup(FeatureGroup):
    """Time of day and day of week of each flow's start, as sine and cosine (module docstring)."""

    name = "calendar"
    requires = ("time",)

    def fit(self, frame: pl.DataFrame) -> State:
        """The cycles the training flows span (at least :data:`MIN_COVERAGE` of each)."""
        times = frame["time"].drop_nulls()
        span_s = 0.0
        if len(times):
            span = times.max() - times.min()  # type: ignore[operator]
            span_s = span.total_seconds() if hasattr(span, "total_seconds") else 0.0
        cycles = spanned_cycles(span_s)
        skipped = [name for name in CYCLES if name not in cycles]
        if skipped:
            log.info(
                "calendar features: the training flows span %.1f h, too short to learn the %s cycle",
                span_s / 3600,
                " and ".join(skipped),
            )
        return {"cycles": cycles}

    def expressions(self, state: Mapping[str, Any]) -> list[pl.Expr]:
        seconds = pl.col("time").dt.epoch("us").cast(pl.Float64) / 1e6
        exprs: list[pl.Expr] = []
        cycles = state.get("cycles", [])
        if not isinstance(cycles, list) or any(c not in CYCLES for c in cycles):
            raise ConfigError(f"calendar group: cycles must be a list of {', '.join(CYCLES)}, got {cycles!r}")
        for cycle in cycles:
            length, stem = CYCLES[cycle]
            angle = ((seconds + _offset(cycle)) % length) * (2 * math.pi / length)
            exprs += [angle.sin().cast(pl.Float32).alias(f"{stem}_sin")]
            exprs += [angle.cos().cast(pl.Float32).alias(f"{stem}_cos")]
        return exprs


__all__ = ["CYCLES", "MIN_COVERAGE", "CalendarGroup", "calendar_matrix", "calendar_names", "spanned_cycles"]
