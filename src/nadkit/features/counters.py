"""Traffic counters: how many recent flows share this flow's destination, source or service.

These are the twelve ``cnt_*`` columns of the NAD 2021 data (KDD'99's ``count`` / ``srv_count`` family),
computed from the flows themselves so that every source with time, addresses and ports gets them.

Definitions (flows ordered by time, ties kept in input order; every count includes the flow itself
and only flows that came before it, so a live stream can compute the same values):

=====================  ==============================================================
``cnt_dst``            flows to the same ``dst`` in the last ``window_s`` seconds
``cnt_src``            flows from the same ``src`` in the last ``window_s`` seconds
``cnt_serv_src``       flows from the same ``src`` to the same service (proto, dpt), same window
``cnt_serv_dst``       flows to the same ``dst`` and the same service, same window
``*_slow``             the same four over the last ``slow_window_s`` seconds
``*_conn``             the same four among the last ``connections`` flows (of all traffic)
=====================  ==============================================================

A time window covers ``(t - window, t]``. Default windows: 2 s (as KDD's time-based features),
60 s (slow scans) and the last 100 connections (as KDD's host-based features).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import polars as pl

log = logging.getLogger(__name__)

REQUIRED = ("time", "src", "dst", "proto", "dpt")

#: counter name stem -> the key columns it groups by
KEYS: dict[str, tuple[str, ...]] = {
    "cnt_dst": ("dst",),
    "cnt_src": ("src",),
    "cnt_serv_src": ("src", "proto", "dpt"),
    "cnt_serv_dst": ("dst", "proto", "dpt"),
}
SUFFIXES = ("", "_slow", "_conn")
COUNTER_COLUMNS = tuple(stem + suffix for suffix in SUFFIXES for stem in KEYS)


@dataclass(frozen=True)
class CounterConfig:
    """Window definitions of the traffic counters."""

    window_s: float = 2.0
    slow_window_s: float = 60.0
    connections: int = 100

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.slow_window_s <= 0:
            raise ValueError("counter windows must be positive")
        if self.connections < 1:
            raise ValueError("connections must be at least 1")


def _group_order(frame: pl.DataFrame, keys: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Row order that makes each key tuple contiguous (rows of one key stay in row order), and the
    dense key id of each row in that order. Keys are compared through a 64-bit hash; nulls are a value
    of their own."""
    ids = frame.select(pl.struct(list(keys)).hash(seed=7).rank("dense").cast(pl.Int64).alias("g"))
    order = ids.with_row_index("row").select(pl.arg_sort_by(["g", "row"])).to_series().to_numpy()
    groups = ids["g"].to_numpy()[order]
    return order, groups


def _counts(
    order: np.ndarray, groups: np.ndarray, ranks: np.ndarray, lower_ranks: np.ndarray, span: int
) -> np.ndarray:
    """For each row i: #rows j <= i (in row order) with the same key and ranks[j] >= lower_ranks[i].

    ``order``/``groups`` come from :func:`_group_order`; ``ranks`` must be non-decreasing in row order
    and below ``span``.
    """
    base = groups * span
    combined = base + ranks[order]
    lower = np.searchsorted(combined, base + lower_ranks[order], side="left")
    counts = np.empty(len(order), dtype=np.int64)
    counts[order] = np.arange(len(order)) - lower + 1
    return counts


def traffic_counters(frame: pl.DataFrame, config: CounterConfig | None = None) -> pl.DataFrame:
    """The twelve counters for ``frame`` (rows in the same order as ``frame``), as a new frame.

    ``frame`` needs ``time``, ``src``, ``dst``, ``proto`` and ``dpt``; raises ``KeyError`` naming the
    first missing one.
    """
    config = config or CounterConfig()
    for column in REQUIRED:
        if column not in frame.columns:
            raise KeyError(column)
    n = frame.height
    if n == 0:
        return pl.DataFrame({c: pl.Series(c, [], dtype=pl.Int64) for c in COUNTER_COLUMNS})
    times = frame["time"].dt.epoch("us").fill_null(0).to_numpy()
    order = np.argsort(times, kind="stable")
    sorted_frame = frame.select(REQUIRED)[order]
    sorted_times = times[order]
    changes = np.empty(n, dtype=bool)
    changes[0] = True
    np.not_equal(sorted_times[1:], sorted_times[:-1], out=changes[1:])
    unique_times = sorted_times[changes]
    time_rank = np.cumsum(changes) - 1
    span_time = len(unique_times) + 1
    windows = {
        "": int(round(config.window_s * 1e6)),
        "_slow": int(round(config.slow_window_s * 1e6)),
    }
    lower_time = {
        suffix: np.searchsorted(unique_times, sorted_times - width, side="right")
        for suffix, width in windows.items()
    }
    positions = np.arange(n, dtype=np.int64)
    lower_conn = np.maximum(positions - config.connections + 1, 0)
    out: dict[str, np.ndarray] = {}
    for stem, keys in KEYS.items():
        key_order, groups = _group_order(sorted_frame, keys)
        for suffix in windows:
            out[stem + suffix] = _counts(key_order, groups, time_rank, lower_time[suffix], span_time)
        out[stem + "_conn"] = _counts(key_order, groups, positions, lower_conn, n + 1)
    inverse = np.empty(n, dtype=np.int64)
    inverse[order] = np.arange(n)
    return pl.DataFrame({name: out[name][inverse] for name in COUNTER_COLUMNS})


def add_traffic_counters(frame: pl.DataFrame, config: CounterConfig | None = None) -> pl.DataFrame:
    """``frame`` with the twelve counter columns added (replacing any it had)."""
    counters = traffic_counters(frame, config)
    return frame.drop([c for c in COUNTER_COLUMNS if c in frame.columns]).hstack(counters)
