"""The day and week load: hourly activity profiles (office hours, servers, nightly jobs), each day's
minute distributions drawn from them, and how many flows a weekday or a weekend day carries."""

from __future__ import annotations

import numpy as np

from nadkit.simulate.config import SimulationConfig

#: Relative activity per hour of the day (0-23), by load profile.
HOURLY = {
    "office": np.array(
        [.05, .04, .03, .03, .03, .05, .12, .40, .85, 1.0, 1.0, .95, .70, .88, 1.0, .98, .90, .70,
         .40, .25, .18, .14, .10, .07]
    ),
    "office_weekend": np.array(
        [.10, .08, .06, .05, .05, .06, .08, .12, .20, .30, .38, .42, .42, .42, .42, .40, .38, .36,
         .34, .32, .28, .22, .16, .12]
    ),
    "server": np.array(
        [.55, .52, .50, .50, .50, .52, .60, .75, .92, 1.0, 1.0, .98, .92, .96, 1.0, 1.0, .95, .88,
         .78, .70, .66, .62, .60, .57]
    ),
    "night": np.array(
        [.60, 1.0, 1.0, .90, .70, .40, .15, .05, .03, .03, .03, .03, .03, .03, .03, .03, .03, .03,
         .04, .05, .08, .12, .25, .40]
    ),
}  # fmt: skip
DAY_US = 86_400 * 1_000_000
MINUTE_US = 60 * 1_000_000


def minute_cdf(hourly: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cumulative minute weights: the hourly curve interpolated, with slow day-specific wobble."""
    minutes = np.arange(1440) / 60.0
    curve = np.interp(minutes, np.arange(24) + 0.5, hourly, period=24)
    wobble = np.repeat(rng.lognormal(0.0, 0.15, 96), 15)
    weights = curve * wobble
    return np.cumsum(weights / weights.sum())


def day_profiles(weekend: bool, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The day's cumulative minute weights per load profile: ``office`` (a flatter curve at weekends),
    ``server`` and ``night``."""
    office = HOURLY["office_weekend" if weekend else "office"]
    return {
        "office": minute_cdf(office, rng),
        "server": minute_cdf(HOURLY["server"], rng),
        "night": minute_cdf(HOURLY["night"], rng),
    }


def day_volume(config: SimulationConfig, weekend: bool, rng: np.random.Generator) -> int:
    """How many flows the day carries: ``flows_per_day`` is the weekly average, weekdays carry more and
    weekend days ``weekend_load`` times a weekday, with a little day-to-day noise."""
    week = 7.0 / (5.0 + 2.0 * config.weekend_load)
    factor = week * (config.weekend_load if weekend else 1.0)
    return max(100, round(config.flows_per_day * factor * rng.lognormal(0.0, 0.06)))
