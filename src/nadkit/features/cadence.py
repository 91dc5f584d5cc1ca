"""Cadence features: how often, and how regularly, one host has come back to one service.

Malware that has a foothold calls home: an HTTP request, a DNS query or a TLS handshake to its
command server every minute, every ten minutes, every hour. Each call is an ordinary small flow and a
burst of its own (the pause is longer than the segments' gap), so nothing that looks at one flow or one
burst sees it. What gives it away is its rhythm: the same host talks to the same server and port again
and again, at nearly the same interval, where a person's visits to a server come at irregular times.

Flows are grouped by *pair*: source address, destination address, protocol and destination port (not
the source port, which a new connection changes). For each flow, looking back at most ``horizon_s``
seconds and at most ``gaps`` earlier flows of its pair:

==================  ===============================================================================
``pair_repeats``    earlier flows of the pair in the horizon, at most ``gaps`` (0 for a first visit)
``pair_gap_s``      seconds since the pair's previous flow; ``horizon_s`` where there is none in the
                    horizon
``pair_gap_cv``     the coefficient of variation (standard deviation over mean) of the intervals
                    between the flow and its earlier flows counted in ``pair_repeats``: near 0 for a
                    timer, about 1 for arrivals at random; 1 where fewer than two intervals are
                    known, and 0 where they are all 0 (flows that start in the same microsecond)
==================  ===============================================================================

Every value looks back only (the flow itself and flows that started before it; ties in row order),
so a stream computes the same values as a whole table as long as it keeps, per pair, the last
``gaps`` flows of the horizon (:class:`~nadkit.features.incremental.IncrementalFeatures` does).
Capping the look-back at ``gaps`` flows bounds that state: a busy pair (a resolver, a mail server)
costs ``gaps`` flows, not an hour of its traffic. Flows without a time count as if at the epoch; null
key values form a key of their own.

Flows at times 0, 60, 120, 181 and 240 s of one pair: the last has ``pair_repeats`` 4,
``pair_gap_s`` 59 and intervals 60, 60, 61, 59, whose coefficient of variation is 0.0118.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import polars as pl

from nadkit.errors import ConfigError
from nadkit.features.counters import column_codes, key_time_order

log = logging.getLogger(__name__)

REQUIRED: tuple[str, ...] = ("time", "src", "dst", "proto", "dpt")
#: the columns of the key a pair is
PAIR_KEY: tuple[str, ...] = ("src", "dst", "proto", "dpt")
CADENCE_COLUMNS: tuple[str, ...] = ("pair_repeats", "pair_gap_s", "pair_gap_cv")


@dataclass(frozen=True)
class CadenceConfig:
    """How far back the cadence features look: at most ``horizon_s`` seconds and ``gaps`` earlier
    flows of a pair (see the module docstring)."""

    horizon_s: float = 3600.0
    gaps: int = 8

    def __post_init__(self) -> None:
        if not self.horizon_s >= 1:
            raise ConfigError(f"cadence horizon_s must be at least 1 second, got {self.horizon_s}")
        if not 2 <= self.gaps <= 64:
            raise ConfigError(f"cadence gaps must be between 2 and 64, got {self.gaps}")

    @property
    def horizon_us(self) -> int:
        """``horizon_s`` in microseconds."""
        return round(self.horizon_s * 1e6)


def _shifted(values: np.ndarray, back: int, fill: float) -> np.ndarray:
    """``values`` moved ``back`` places later (``out[i] = values[i - back]``), ``fill`` before."""
    out = np.full(len(values), fill, dtype=values.dtype)
    if back < len(values):
        out[back:] = values[: len(values) - back]
    return out


def cadence_features(frame: pl.DataFrame, config: CadenceConfig | None = None) -> pl.DataFrame:
    """The cadence columns of ``frame`` (its rows, in its order), as a new frame.

    ``frame`` needs ``time``, ``src``, ``dst``, ``proto`` and ``dpt``; raises ``KeyError`` naming the
    first missing one.
    """
    config = config or CadenceConfig()
    for column in REQUIRED:
        if column not in frame.columns:
            raise KeyError(column)
    n = frame.height
    times = frame["time"].dt.epoch("us").fill_null(0).to_numpy().astype(np.int64, copy=False)
    order, starts = key_time_order([column_codes(frame[c]) for c in PAIR_KEY], times)
    t = times[order]
    # each listed row's index within its pair's listing (rows of a pair are consecutive, in time order)
    first = np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    within = np.arange(n) - first
    horizon = config.horizon_us
    # how many earlier flows of the pair are in the horizon, at most `gaps`: they are the listed rows
    # just before, and a row k back is in the horizon when t - t[k back] < horizon
    repeats = np.zeros(n, dtype=np.int64)
    alive = np.ones(n, dtype=bool)
    for back in range(1, config.gaps + 1):
        alive &= (within >= back) & (t - _shifted(t, back, 0) < horizon)
        repeats += alive
    # intervals between consecutive flows of the pair (0 at a pair's first row: never read there)
    interval = np.zeros(n, dtype=np.float64)
    interval[1:] = (t[1:] - t[:-1]) / 1e6
    interval[starts] = 0.0
    gap = np.where(repeats > 0, interval, config.horizon_s)
    # the coefficient of variation of the last `repeats` intervals, summed in one fixed order so that
    # a stream's values are bit for bit the table's
    earlier = [np.where(back < repeats, _shifted(interval, back, 0.0), np.nan) for back in range(config.gaps)]
    total = np.zeros(n, dtype=np.float64)
    for values in earlier:
        total += np.nan_to_num(values)
    mean = total / np.maximum(repeats, 1)
    spread = np.zeros(n, dtype=np.float64)
    for values in earlier:
        spread += np.nan_to_num((values - mean) ** 2)
    std = np.sqrt(spread / np.maximum(repeats, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        cv = np.where(mean > 0, std / mean, 0.0)
    cv = np.where(repeats >= 2, cv, 1.0)
    out_repeats = np.empty(n, dtype=np.int64)
    out_gap = np.empty(n, dtype=np.float64)
    out_cv = np.empty(n, dtype=np.float64)
    out_repeats[order] = repeats
    out_gap[order] = gap
    out_cv[order] = cv
    return pl.DataFrame({"pair_repeats": out_repeats, "pair_gap_s": out_gap, "pair_gap_cv": out_cv})


def add_cadence(frame: pl.DataFrame, config: CadenceConfig | None = None) -> pl.DataFrame:
    """``frame`` with the cadence columns added (replacing any it had)."""
    columns = cadence_features(frame, config)
    return frame.drop([c for c in CADENCE_COLUMNS if c in frame.columns]).hstack(columns)


def context(frame: pl.DataFrame, config: CadenceConfig, newest_us: int) -> pl.DataFrame:
    """The rows of ``frame`` (in time order, ties in arrival order) a later flow may still look back
    on: per pair, the last ``gaps`` flows that started less than ``horizon_s`` before ``newest_us``
    (microseconds since the epoch)."""
    started = pl.col("time").dt.epoch("us").fill_null(0)
    recent = frame.filter(started > newest_us - config.horizon_us)
    if recent.height == 0:
        return recent
    rank = pl.int_range(pl.len(), dtype=pl.Int64).reverse().over(list(PAIR_KEY))
    return recent.filter(rank < config.gaps)


__all__ = [
    "CADENCE_COLUMNS",
    "PAIR_KEY",
    "REQUIRED",
    "CadenceConfig",
    "add_cadence",
    "cadence_features",
    "context",
]
