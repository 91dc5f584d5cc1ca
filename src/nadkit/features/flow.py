"""Per-flow features from a flow's own columns: one-hot categories, zero flags, log transforms, ratios
and differences among bytes, packets and traffic counters, and the source's other numeric columns.

Everything is a Polars expression, so a pipeline runs vectorised (and lazily). Each group only produces
the features whose columns the training frame has.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from nadkit.features.base import FeatureGroup, State, flag, present, safe_divide
from nadkit.features.counters import COUNTER_COLUMNS
from nadkit.schema import IDENTIFYING

log = logging.getLogger(__name__)

#: Name of the one-hot bucket for rare values, values unseen at fit, and missing values.
OTHERS = "others"
#: Raw columns replaced by their transforms (log, zero flag, ratios) rather than passed through.
REPLACED = ("duration", "out_bytes", "in_bytes", "out_pkts", "in_pkts")
#: Columns that describe the flow's ground truth, never a feature.
LABELS = ("label", "label_original")
#: Prefix of the segment columns; the segment group passes them through.
SEGMENT_PREFIX = "seg_"

SERVICE_COUNTERS = tuple(c for c in COUNTER_COLUMNS if c.startswith("cnt_serv_"))
ZERO_FLAG_COLUMNS = ("duration", "in_bytes", "out_bytes", *SERVICE_COUNTERS)
LOG_COLUMNS = (
    "duration",
    "in_bytes",
    "out_bytes",
    "out_pkts",
    "in_pkts",
    "cnt_src",
    "cnt_dst",
    "cnt_serv_src",
    "cnt_serv_dst",
)
#: Shortest duration (s) a rate divides by, so a zero-length flow gets a large but finite rate.
MIN_RATE_DURATION_S = 1e-3


def log1p_nonnegative(column: str) -> pl.Expr:
    """``log(1 + x)`` with negative values treated as 0 (a count or duration cannot be negative)."""
    return pl.col(column).cast(pl.Float64).clip(lower_bound=0.0).log1p()


class CategoryGroup(FeatureGroup):
    """One-hot encoding of categorical columns (``proto``, ``app``) with a learned vocabulary.

    A value gets its own column (``proto=tcp``) when it covers at least ``min_share`` of the training
    rows and at least ``min_count`` rows (the ``max_values`` most frequent at most); everything else,
    values unseen at fit and missing values go to ``<column>=others``.
    """

    name = "categories"

    def __init__(
        self,
        columns: Sequence[str] = ("proto", "app"),
        *,
        min_share: float = 0.0005,
        min_count: int = 5,
        max_values: int = 64,
    ) -> None:
        if not 0.0 <= min_share < 1.0:
            raise ValueError("min_share must be in [0, 1)")
        if min_count < 1 or max_values < 1:
            raise ValueError("min_count and max_values must be at least 1")
        self.optional = tuple(columns)
        self.min_share = min_share
        self.min_count = min_count
        self.max_values = max_values

    def fit(self, frame: pl.DataFrame) -> State:
        """Learn one vocabulary per categorical column present (values sorted by name)."""
        vocabularies: dict[str, list[str]] = {}
        for column in present(frame.columns, self.optional):
            vocabularies[column] = self.vocabulary(frame[column])
            log.debug("vocabulary of %s: %s", column, vocabularies[column])
        return {"vocabularies": vocabularies}

    def vocabulary(self, values: pl.Series) -> list[str]:
        """The values of ``values`` frequent enough to get their own one-hot column."""
        rows = len(values)
        if rows == 0:
            return []
        counts = (
            values.cast(pl.String)
            .rename("value")
            .drop_nulls()
            .value_counts(name="count")
            .filter(pl.col("value") != OTHERS)
            .sort(["count", "value"], descending=[True, False])
        )
        threshold = max(self.min_count, self.min_share * rows)
        kept = counts.filter(pl.col("count") >= threshold).head(self.max_values)
        return sorted(kept["value"].to_list())

    def expressions(self, state: Mapping[str, Any]) -> list[pl.Expr]:
        """``column=value`` indicators for the vocabulary and a ``column=others`` bucket."""
        exprs: list[pl.Expr] = []
        for column, vocabulary in state["vocabularies"].items():
            text = pl.col(column).cast(pl.String)
            exprs.extend(flag(text == value).alias(f"{column}={value}") for value in vocabulary)
            known = text.is_in(vocabulary) if vocabulary else pl.lit(False)
            exprs.append(flag(~known.fill_null(False)).alias(f"{column}={OTHERS}"))
        return exprs


class ZeroFlagGroup(FeatureGroup):
    """1 where ``duration``, ``in_bytes``, ``out_bytes`` or a ``cnt_serv_*`` counter is zero.

    A zero is qualitatively different from a small value (no answer, an instant failure), which a
    log transform alone blurs.
    """

    name = "zero_flags"
    optional = ZERO_FLAG_COLUMNS

    def expressions(self, state: Mapping[str, Any]) -> list[pl.Expr]:
        """``<column>_zero`` per column present at fit."""
        return [flag(pl.col(c) == 0).alias(f"{c}_zero") for c in state["columns"]]


class LogGroup(FeatureGroup):
    """``log_<column>`` = log(1 + x) of durations, byte and packet counts and the main counters:
    heavy-tailed values become comparable across flows of very different sizes."""

    name = "logs"
    optional = LOG_COLUMNS

    def expressions(self, state: Mapping[str, Any]) -> list[pl.Expr]:
        """``log_<column>`` per column present at fit."""
        return [log1p_nonnegative(c).alias(f"log_{c}") for c in state["columns"]]


#: Gives the expression of ``log1p`` of a column (computed once, as a helper column).
LogOf = Callable[[str], pl.Expr]


@dataclass(frozen=True)
class _Derived:
    """A feature computed from named input columns (``logs``: those it needs ``log1p`` of)."""

    name: str
    inputs: tuple[str, ...]
    build: Callable[[LogOf], pl.Expr]
    logs: tuple[str, ...] = ()


def _ratio(numerator: str, denominator: str) -> _Derived:
    return _Derived(
        f"{numerator}_per_{denominator}",
        (numerator, denominator),
        lambda log: safe_divide(pl.col(numerator), pl.col(denominator)),
    )


def _difference(minuend: str, subtrahend: str) -> _Derived:
    return _Derived(
        f"{minuend}_minus_{subtrahend}",
        (minuend, subtrahend),
        lambda log: pl.col(minuend).cast(pl.Float64) - pl.col(subtrahend).cast(pl.Float64),
    )


def _log_rate(name: str, amounts: tuple[str, ...]) -> _Derived:
    def build(log: LogOf) -> pl.Expr:
        total = pl.sum_horizontal([pl.col(c).cast(pl.Float64).clip(lower_bound=0.0) for c in amounts])
        seconds = pl.col("duration").cast(pl.Float64).clip(lower_bound=MIN_RATE_DURATION_S)
        return (total / seconds).log1p()

    return _Derived(name, (*amounts, "duration"), build)


def _log_difference(first: str, second: str) -> _Derived:
    return _Derived(
        f"log_{first}_minus_log_{second}",
        (first, second),
        lambda log: log(first) - log(second),
        logs=(first, second),
    )


def _share(part: str, other: str) -> _Derived:
    def build(log: LogOf) -> pl.Expr:
        a, b = (pl.col(c).cast(pl.Float64).clip(lower_bound=0.0) for c in (part, other))
        return a / pl.max_horizontal(a + b, pl.lit(1.0))

    return _Derived(f"{part}_share", (part, other), build)


def _derived_features() -> list[_Derived]:
    """Every ratio and difference the group knows, in output order."""
    features = [
        _share("in_bytes", "out_bytes"),
        _log_difference("out_bytes", "in_bytes"),
        _share("in_pkts", "out_pkts"),
        _log_difference("out_pkts", "in_pkts"),
        _ratio("out_bytes", "out_pkts"),
        _ratio("in_bytes", "in_pkts"),
        _log_rate("log_bytes_per_s", ("out_bytes", "in_bytes")),
        _log_rate("log_pkts_per_s", ("out_pkts", "in_pkts")),
    ]
    for suffix in ("", "_slow", "_conn"):
        src, dst = f"cnt_src{suffix}", f"cnt_dst{suffix}"
        serv_src, serv_dst = f"cnt_serv_src{suffix}", f"cnt_serv_dst{suffix}"
        features += [
            _ratio(serv_src, src),
            _ratio(serv_dst, dst),
            _log_difference(src, dst),
            _difference(src, serv_src),
            _difference(dst, serv_dst),
            _difference(src, dst),
        ]
    for stem in ("cnt_src", "cnt_dst", "cnt_serv_src", "cnt_serv_dst"):
        features += [_difference(f"{stem}_slow", stem), _ratio(stem, f"{stem}_slow")]
    return features


DERIVED = _derived_features()


class RatioGroup(FeatureGroup):
    """Ratios and differences among bytes, packets, duration and the traffic counters.

    Ratios are ``a_per_b = a / max(b, 1)`` (finite when ``b`` is 0), used where they are bounded or
    physically meaningful (bytes per packet, the share of a host's recent flows that go to the same
    service: ``cnt_serv_src_per_cnt_src``, the fast window's share of the slow one); unbounded ratios
    are log differences ``log_a_minus_log_b = log1p(a) - log1p(b)`` (received versus sent bytes,
    flows from versus to a host); ``in_bytes_share`` is the received part of all bytes; differences
    ``a_minus_b`` are counts (how much the slow window adds to the fast one). Scans and floods skew
    these.
    """

    name = "ratios"
    optional = tuple(dict.fromkeys(c for d in DERIVED for c in d.inputs))

    @staticmethod
    def _features(state: Mapping[str, Any]) -> list[_Derived]:
        have = set(state["columns"])
        return [d for d in DERIVED if have.issuperset(d.inputs)]

    def helpers(self, state: Mapping[str, Any]) -> list[list[pl.Expr]]:
        """``log1p`` of each column a log difference needs, computed once."""
        logs = dict.fromkeys(c for d in self._features(state) for c in d.logs)
        return [[log1p_nonnegative(c).alias(f"_ratios_log_{c}") for c in logs]] if logs else []

    def expressions(self, state: Mapping[str, Any]) -> list[pl.Expr]:
        """The ratios and differences whose inputs were all present at fit."""

        def log(column: str) -> pl.Expr:
            return pl.col(f"_ratios_log_{column}")

        return [d.build(log).alias(d.name) for d in self._features(state)]


class RawNumericGroup(FeatureGroup):
    """The source's remaining numeric columns, unchanged (UNSW's ``sttl``, CIC's ``flow_iat_mean``,
    NAD's ``cnt_*`` counters).

    Left out: identifiers (time, addresses, ports), the columns other groups transform (duration,
    bytes, packets), labels, segment columns (their own group), the ``categorical`` columns (one-hot
    encoded instead), names starting with ``_`` and the names in ``exclude``.
    """

    name = "raw"

    def __init__(self, exclude: Iterable[str] = (), categorical: Iterable[str] = ("proto", "app")) -> None:
        self.exclude = tuple(exclude)
        self.categorical = tuple(categorical)

    def fit(self, frame: pl.DataFrame) -> State:
        """Record the numeric (or boolean) columns to pass through."""
        skip = {*IDENTIFYING, *REPLACED, *LABELS, *self.exclude, *self.categorical}
        columns = [
            name
            for name, dtype in frame.schema.items()
            if name not in skip
            and not name.startswith(("_", SEGMENT_PREFIX))
            and (dtype.is_numeric() or dtype == pl.Boolean)
        ]
        ignored = [name for name, dtype in frame.schema.items() if name not in skip and dtype == pl.String]
        if ignored:
            log.info(
                "text columns not used as features: %s (name them in the configuration's "
                "'categorical' list to one-hot encode them)",
                ", ".join(ignored),
            )
        return {"columns": columns}

    def expressions(self, state: Mapping[str, Any]) -> list[pl.Expr]:
        """Each recorded column as a float feature of the same name."""
        return [pl.col(c).cast(pl.Float64).alias(c) for c in state["columns"]]


class SegmentGroup(FeatureGroup):
    """The segment columns (``seg_flows``, ``seg_unique_dpt``, ...) computed before the groups run,
    passed through under their own names."""

    name = "segments"

    def fit(self, frame: pl.DataFrame) -> State:
        """Record the segment columns present."""
        return {"columns": [c for c in frame.columns if c.startswith(SEGMENT_PREFIX)]}

    def expressions(self, state: Mapping[str, Any]) -> list[pl.Expr]:
        """Each segment column as a float feature."""
        return [pl.col(c).cast(pl.Float64).alias(c) for c in state["columns"]]


__all__ = [
    "DERIVED",
    "LABELS",
    "LOG_COLUMNS",
    "OTHERS",
    "REPLACED",
    "SEGMENT_PREFIX",
    "ZERO_FLAG_COLUMNS",
    "CategoryGroup",
    "LogGroup",
    "RatioGroup",
    "RawNumericGroup",
    "SegmentGroup",
    "ZeroFlagGroup",
]
