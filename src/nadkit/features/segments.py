"""Segment features: what a burst of related flows looks like as a whole.

Many attacks come from one machine and target a whole subnet (an IP sweep is one source opening
connections to many addresses of one /24), which single flows do not show. Flows are grouped by a key,
by default the source address and the destination subnet (``dst_subnet``: the /24 of an IPv4
destination, the /64 of an IPv6 one); within a group, ordered by time, a new *segment* starts wherever
the gap to the previous flow exceeds ``gap_s``. Every flow then carries facts about its segment:

====================  ==============================================================
``seg_flows``         number of flows in the segment
``seg_span_s``        seconds from the segment's first flow to its last
``seg_unique_dst``    distinct destination addresses in the segment (needs ``dst``)
``seg_unique_spt``    distinct source ports (needs ``spt``)
``seg_unique_dpt``    distinct destination ports (needs ``dpt``)
``seg_unique_app``    distinct application names (needs ``app``)
``seg_domain_names``  distinct names asked in the segment under the flow's own domain
                      (needs ``server_name``; 0 for a flow without one, null or empty)
``seg_unanswered``    share of the segment's flows that got no packet back (needs
                      ``in_pkts``; a null count is no packet)
``seg_size_spread``   spread of the segment's flow sizes (bytes both ways): their standard
                      deviation over their mean, 0 for a segment of one flow (needs
                      ``out_bytes``; ``in_bytes`` added where present)
====================  ==============================================================

The last two say how a burst went rather than how large it was. A scan's probes mostly go
unanswered, where the flows of a normal burst are answered; a password-guessing run, a scan and
a beacon repeat one exchange, so their sizes hardly vary, where a user's burst mixes small and
large transfers (KDD'99's error rates of recent connections are the same idea, per host).

``seg_domain_names`` is what gives a DNS tunnel or exfiltration away where each query is an
ordinary-sized flow: one host asking its resolver for many different names under one domain (each
carrying data), where ordinary lookups ask for a few names per domain. The domain is the last two
labels of the name (``r3.sn-4g5e.googlevideo.com`` -> ``googlevideo.com``; no public-suffix list,
so ``a.example.co.uk`` -> ``co.uk``), case and a trailing dot ignored.

Flows at times 1, 2, 3, 7, 8, 9, 10 and 15 of one group form the segments [1, 2, 3], [7, 8, 9, 10]
and [15] for any gap from 1 s up to (not including) 4 s: a cut needs a gap *longer* than ``gap_s``.

A segment also ends where the clock passes a multiple of ``max_span_s`` (300 s by default; windows
aligned to the epoch, as time buckets are): a host that never pauses for ``gap_s`` (a device
reporting every few seconds, a busy server's clients) would otherwise form one segment as long as the
data, so that its ``seg_flows`` and ``seg_span_s`` grew with the length of the file scored and a
model trained on a short capture would see every later flow of it as out of range. With the limit,
the segment features mean the same in a five-minute capture and a month of logs, and a streaming
caller holds a segment's flows for at most ``max_span_s`` plus the lateness it allows. ``None``
removes the limit (pipelines saved before it existed keep their unlimited segments).

A segment depends on all of its flows, later ones included, so a flow's values can change when later
flows arrive; a streaming caller must keep a segment open until ``gap_s`` has passed without a flow
or the clock has passed the end of its ``max_span_s`` window.
Null key values form a key of their own (null counts as a value in the distinct counts too); flows
without a time are segmented as if they happened at the epoch.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl

from nadkit.errors import ConfigError, SchemaError
from nadkit.features.counters import column_codes, dense_codes, key_time_order

log = logging.getLogger(__name__)

REQUIRED: tuple[str, ...] = ("time", "src", "dst")
SEGMENT_COLUMNS = (
    "seg_flows",
    "seg_span_s",
    "seg_unique_dst",
    "seg_unique_spt",
    "seg_unique_dpt",
    "seg_unique_app",
    "seg_domain_names",
    "seg_unanswered",
    "seg_size_spread",
)
#: the segment facts of how a burst went (the ``exchanges`` feature group; the others are ``segments``)
EXCHANGE_COLUMNS = ("seg_unanswered", "seg_size_spread")
#: distinct-count column -> the column it counts
UNIQUE_OF = {
    "seg_unique_dst": "dst",
    "seg_unique_spt": "spt",
    "seg_unique_dpt": "dpt",
    "seg_unique_app": "app",
}
#: segment column -> the column it needs besides the key and time
NEEDS = {
    **UNIQUE_OF,
    "seg_domain_names": "server_name",
    "seg_unanswered": "in_pkts",
    "seg_size_spread": "out_bytes",
}
#: derived key columns -> the address column they come from
SUBNET_OF = {"dst_subnet": "dst", "src_subnet": "src"}

_IPV4 = r"^\s*\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\s*$"
#: the default longest span of a segment, in seconds (see the module docstring)
DEFAULT_MAX_SPAN_S = 300.0


@dataclass(frozen=True)
class SegmentConfig:
    """How flows are grouped (``key``: column names; ``dst_subnet`` / ``src_subnet`` are derived
    from the addresses), the longest pause, in seconds, inside one segment, and the epoch-aligned
    windows (``max_span_s`` seconds long; None: no limit) no segment crosses."""

    key: tuple[str, ...] = ("src", "dst_subnet")
    gap_s: float = 60.0
    max_span_s: float | None = DEFAULT_MAX_SPAN_S

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.key,) if isinstance(self.key, str) else tuple(self.key))
        if not self.key:
            raise ConfigError("segment key needs at least one column")
        if not self.gap_s >= 0:
            raise ConfigError(f"segment gap_s must be a non-negative number of seconds, got {self.gap_s}")
        if self.max_span_s is not None and not self.max_span_s >= 1e-6:
            raise ConfigError(
                f"segment max_span_s must be a positive number of seconds (or null), got {self.max_span_s}"
            )

    @property
    def span_us(self) -> int | None:
        """``max_span_s`` in microseconds (None: no limit)."""
        return None if self.max_span_s is None else round(self.max_span_s * 1e6)

    def window_of(self, times_us: np.ndarray) -> np.ndarray | None:
        """The span window of each time (microseconds since the epoch); None without a limit."""
        span = self.span_us
        return None if span is None else times_us // span

    def needs(self) -> tuple[str, ...]:
        """The frame columns this configuration reads: ``time`` and the key's source columns."""
        return ("time", *dict.fromkeys(SUBNET_OF.get(k, k) for k in self.key))


def _network_of(text: str) -> str:
    """The subnet text of one non-dotted-quad address: the /64 of IPv6 (a.b.c.0/24 for an
    IPv4-mapped one); anything that does not parse is returned unchanged."""
    try:
        address = ipaddress.ip_address(text.strip().split("%", 1)[0])
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        return str(ipaddress.ip_network((address, 24), strict=False))
    return str(ipaddress.ip_network((address, 64), strict=False))


def _subnet_text(text: pl.Series) -> pl.Series:
    """Subnet texts of address texts (meant for distinct values: the regex is the costly part)."""
    is_ipv4 = text.str.contains(_IPV4).fill_null(False)
    # a dotted quad's /24 is the text up to its last dot (stripping the last octet's digits)
    out = pl.select(
        pl.when(is_ipv4)
        .then(text.str.strip_chars().str.strip_chars_end("0123456789") + "0/24")
        .otherwise(text)
    ).to_series()
    others = text.filter(~is_ipv4 & text.is_not_null()).unique()
    if len(others):
        mapped = [_network_of(value) for value in others.to_list()]
        out = out.replace(others, pl.Series(mapped, dtype=pl.String))
    return out


def subnet(addresses: pl.Series) -> pl.Series:
    """The subnet of each address text: ``a.b.c.0/24`` for IPv4 (also when IPv4-mapped in IPv6), the
    ``/64`` network for IPv6. Text that is not an address stays as it is, null stays null.

    Each distinct address is converted once: dotted quads by a vectorised regex, others by ``ipaddress``.
    """
    text = addresses.cast(pl.String)
    distinct = text.drop_nulls().unique()
    return text.replace_strict(distinct, _subnet_text(distinct), default=None).alias(addresses.name)


def subnet_codes(
    addresses: pl.Series, address_codes: tuple[np.ndarray, int] | None = None
) -> tuple[np.ndarray, int]:
    """Integer codes of each address's subnet (as :func:`subnet`; null is a code of its own) and an
    exclusive bound of the codes, without building the subnet text of every row.

    ``address_codes``: the addresses' own ``column_codes``, when the caller has them already.
    """
    codes, bound = address_codes if address_codes is not None else column_codes(addresses)
    if len(codes) == 0:
        return codes, 1
    present = np.zeros(bound, dtype=bool)
    present[codes] = True
    distinct_codes = np.flatnonzero(present)
    # one row of each distinct address (any row with that code: they all hold the same text)
    some_row = np.zeros(bound, dtype=np.int64)
    some_row[codes] = np.arange(len(codes), dtype=np.int64)
    texts = addresses.cast(pl.String).gather(some_row[distinct_codes])
    networks, bound = column_codes(_subnet_text(texts))
    table = np.zeros(int(distinct_codes[-1]) + 1, dtype=np.int64)
    table[distinct_codes] = networks
    return table[codes], bound


def _check(frame: pl.DataFrame, config: SegmentConfig) -> None:
    """Raise SchemaError naming the first column the configuration needs that ``frame`` lacks."""
    for column in config.needs():
        if column not in frame.columns:
            raise SchemaError(
                f"segment features need column {column!r} (have: {', '.join(frame.columns)})", column=column
            )


class _Codes(dict[str, tuple[np.ndarray, int]]):
    """``column_codes`` of a frame's columns (and derived subnets), each computed once on demand."""

    def __init__(self, frame: pl.DataFrame) -> None:
        super().__init__()
        self.frame = frame

    def __missing__(self, name: str) -> tuple[np.ndarray, int]:
        if name in SUBNET_OF and name not in self.frame.columns:
            address = SUBNET_OF[name]
            value = subnet_codes(self.frame[address], self[address])
        else:
            value = column_codes(self.frame[name])
        self[name] = value
        return value


def key_codes(frame: pl.DataFrame, key: tuple[str, ...]) -> list[tuple[np.ndarray, int]]:
    """``column_codes`` of each key column, deriving ``dst_subnet`` / ``src_subnet`` from the
    addresses when the frame has no such column."""
    codes = _Codes(frame)
    return [codes[name] for name in key]


@dataclass(frozen=True)
class _Segments:
    """Segments of a frame: rows listed segment by segment (each in time order), and segment bounds."""

    rows: np.ndarray  # input row of each listed element
    times_us: np.ndarray  # time of each listed element
    starts: np.ndarray  # index of each segment's first element
    segment_of_element: np.ndarray  # segment number of each listed element

    @property
    def count(self) -> int:
        return len(self.starts)

    def of_rows(self) -> np.ndarray:
        """Segment number of each input row."""
        out = np.empty(len(self.rows), dtype=np.int64)
        out[self.rows] = self.segment_of_element
        return out


def _segments(frame: pl.DataFrame, config: SegmentConfig, codes: _Codes) -> _Segments:
    _check(frame, config)
    times = frame["time"].dt.epoch("us").fill_null(0).to_numpy()
    rows, new = key_time_order([codes[name] for name in config.key], times)
    element_times = times[rows]
    gap_us = round(config.gap_s * 1e6)
    new[1:] |= (element_times[1:] - element_times[:-1]) > gap_us
    windows = config.window_of(element_times)
    if windows is not None:
        new[1:] |= windows[1:] != windows[:-1]
    segment = np.cumsum(new) - 1
    return _Segments(
        rows=rows, times_us=element_times, starts=np.flatnonzero(new), segment_of_element=segment
    )


def _distinct_per_group(groups: np.ndarray, count: int, column_codes: tuple[np.ndarray, int]) -> np.ndarray:
    """Number of distinct values of a coded column in each of ``count`` groups (``groups``: the
    group, 0 to ``count - 1``, of each element; ``column_codes``: the elements' codes)."""
    codes, bound = column_codes
    if (bound - 1).bit_length() + max(count, 1).bit_length() > 62:
        codes, bound = dense_codes(codes)
    shift = (bound - 1).bit_length()
    packed = (groups << shift) | codes  # a new array: sorted in place
    packed.sort()
    first = np.empty(len(packed), dtype=bool)
    first[:1] = True
    np.not_equal(packed[1:], packed[:-1], out=first[1:])
    return np.bincount(packed[first] >> shift, minlength=count)


def _distinct_per_segment(segments: _Segments, column_codes: tuple[np.ndarray, int]) -> np.ndarray:
    """Number of distinct values of a coded column in each segment."""
    codes, bound = column_codes
    return _distinct_per_group(segments.segment_of_element, segments.count, (codes[segments.rows], bound))


def _exchanges(
    frame: pl.DataFrame, segments: _Segments, flows: np.ndarray, available: list[str]
) -> dict[str, np.ndarray]:
    """``seg_unanswered`` and ``seg_size_spread`` per segment, those of ``available``."""
    out: dict[str, np.ndarray] = {}
    group = segments.segment_of_element

    def per_segment(values: np.ndarray) -> np.ndarray:
        return np.bincount(group, weights=values[segments.rows], minlength=segments.count)

    if "seg_unanswered" in available:
        unanswered = (frame["in_pkts"].fill_null(0).to_numpy() <= 0).astype(np.float64)
        out["seg_unanswered"] = per_segment(unanswered) / flows
    if "seg_size_spread" in available:
        size = frame["out_bytes"].cast(pl.Float64).fill_null(0.0).to_numpy()
        if "in_bytes" in frame.columns:
            size = size + frame["in_bytes"].cast(pl.Float64).fill_null(0.0).to_numpy()
        size = np.maximum(size, 0.0)
        mean = per_segment(size) / flows
        variance = np.maximum(per_segment(size * size) / flows - mean * mean, 0.0)
        out["seg_size_spread"] = np.divide(np.sqrt(variance), mean, out=np.zeros_like(mean), where=mean > 0)
    return out


def domain_of(names: pl.Series) -> pl.Series:
    """The domain of each name (module docstring): its last two labels, lower case, without a
    trailing dot; null stays null."""
    text = names.cast(pl.String).str.to_lowercase().str.strip_chars().str.strip_chars_end(".")
    return text.str.split(".").list.slice(-2).list.join(".").alias("domain")


def _names_per_domain(of_rows: np.ndarray, names: pl.Series) -> np.ndarray:
    """For each row (``of_rows``: its segment): the distinct names of its segment under its own
    domain (0 without a name)."""
    names = names.cast(pl.String)
    domain_codes, domain_bound = column_codes(domain_of(names))
    # one group per (segment, domain), numbered densely
    group, groups = dense_codes(of_rows * domain_bound + domain_codes)
    out = _distinct_per_group(group, groups, column_codes(names))[group]
    out[(names.str.strip_chars().fill_null("") == "").to_numpy()] = 0
    return out


def segment_ids(frame: pl.DataFrame, config: SegmentConfig | None = None) -> pl.Series:
    """The segment of each row (same row order as ``frame``), numbered 0, 1, ... in the order of each
    segment's first row in ``frame``, so the numbers depend only on the frame.

    Used to keep a session's flows together, for example when splitting data for validation.
    """
    config = config or SegmentConfig()
    if frame.height == 0:
        _check(frame, config)
        return pl.Series("segment", [], dtype=pl.Int64)
    segments = _segments(frame, config, _Codes(frame))
    first_rows = np.minimum.reduceat(segments.rows, segments.starts)
    is_first = np.zeros(frame.height, dtype=bool)
    is_first[first_rows] = True
    renumber = (np.cumsum(is_first) - 1)[first_rows]
    return pl.Series("segment", renumber[segments.of_rows()])


def segment_features(frame: pl.DataFrame, config: SegmentConfig | None = None) -> pl.DataFrame:
    """The segment columns for ``frame``, same row order; only those its columns allow
    (``seg_unique_spt`` needs ``spt``, ...).

    Raises :class:`SchemaError` when ``time`` or a key column (for ``dst_subnet``: ``dst``) is missing.
    """
    return segment_features_and_ends(frame, config)[0]


def segment_features_and_ends(
    frame: pl.DataFrame, config: SegmentConfig | None = None
) -> tuple[pl.DataFrame, np.ndarray]:
    """:func:`segment_features`, and for each row the time (epoch microseconds) of the last flow of
    its segment, from the same grouping (incremental features hold a segment until that time is
    far enough behind the newest flow)."""
    config = config or SegmentConfig()
    available = [name for name in SEGMENT_COLUMNS if NEEDS.get(name, "time") in frame.columns]
    skipped = [name for name in SEGMENT_COLUMNS if name not in available]
    if skipped:
        log.info("segment features %s skipped: their columns are missing", ", ".join(skipped))
    if frame.height == 0:
        _check(frame, config)
        dtypes = dict.fromkeys(("seg_span_s", "seg_unanswered", "seg_size_spread"), pl.Float64)
        empty = {name: pl.Series(name, [], dtype=dtypes.get(name, pl.Int64)) for name in available}
        return pl.DataFrame(empty), np.zeros(0, dtype=np.int64)
    _check(frame, config)
    codes = _Codes(frame)
    distinct = [name for name in available if name in UNIQUE_OF]
    # the columns' codes and the distinct counts are independent: run them in threads on large frames
    # (Polars and NumPy release the GIL for this work)
    workers = max(1, min(4, os.cpu_count() or 1)) if frame.height >= 50_000 else 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        columns = [SUBNET_OF.get(k, k) if k not in frame.columns else k for k in config.key]
        columns = list(dict.fromkeys([*columns, *(UNIQUE_OF[name] for name in distinct)]))
        for name, value in zip(columns, pool.map(lambda c: column_codes(frame[c]), columns), strict=True):
            codes[name] = value
        segments = _segments(frame, config, codes)
        counted = pool.map(lambda name: _distinct_per_segment(segments, codes[UNIQUE_OF[name]]), distinct)
        per_segment = dict(zip(distinct, counted, strict=True))
    ends = np.append(segments.starts[1:], len(segments.rows)) - 1
    per_segment["seg_flows"] = np.diff(np.append(segments.starts, len(segments.rows)))
    per_segment["seg_span_s"] = (segments.times_us[ends] - segments.times_us[segments.starts]) / 1e6
    per_segment.update(_exchanges(frame, segments, per_segment["seg_flows"], available))
    of_rows = segments.of_rows()
    # every column per segment, spread over its rows; the names per domain are per row already
    per_row = {name: values[of_rows] for name, values in per_segment.items()}
    if "seg_domain_names" in available:
        per_row["seg_domain_names"] = _names_per_domain(of_rows, frame["server_name"])
    ends_us = segments.times_us[ends][of_rows]
    return pl.DataFrame({name: per_row[name] for name in available}), ends_us


def add_segment_features(frame: pl.DataFrame, config: SegmentConfig | None = None) -> pl.DataFrame:
    """``frame`` with the segment columns added (replacing any it had)."""
    features = segment_features(frame, config)
    return frame.drop([c for c in features.columns if c in frame.columns]).hstack(features)


__all__ = [
    "EXCHANGE_COLUMNS",
    "NEEDS",
    "REQUIRED",
    "SEGMENT_COLUMNS",
    "SegmentConfig",
    "add_segment_features",
    "domain_of",
    "key_codes",
    "segment_features",
    "segment_features_and_ends",
    "segment_ids",
    "subnet",
    "subnet_codes",
]
