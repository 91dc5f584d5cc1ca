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

from nadkit.features.base import FeatureGroup, State, flag, present
from nadkit.features.cadence import CADENCE_COLUMNS
from nadkit.features.counters import COUNTER_COLUMNS
from nadkit.features.segments import EXCHANGE_COLUMNS
from nadkit.schema import IDENTIFYING

log = logging.getLogger(__name__)

#: Name of the one-hot bucket for rare values, values unseen at fit, and missing values.
OTHERS = "others"
#: numeric fields that are codes, not magnitudes (nProbe's, as the NF- data sets' second versions carry
#: them): one-hot encoded like text
CODES = ("icmp_type", "icmp_code", "icmp_ipv4_type", "dns_query_type", "ftp_command_ret_code")
#: the text columns one-hot encoded by default: protocol and application, and the connection state
#: where the source has one (NSL-KDD's ``flag``, Zeek's ``conn_state``, Argus's ``state`` and ``dir``,
#: Suricata's ``flow_state``): what a half-open scan, a rejected or reset connection and a completed
#: exchange look like when a record carries no TCP flags; and the numeric :data:`CODES`
CATEGORICAL = ("proto", "app", "flag", "conn_state", "state", "dir", "flow_state", *CODES)
#: a connection-state column is left out where the table already carries features computed from the
#: states: NSL-KDD's error rates (the share of recent connections in SYN-error and REJ states) and
#: UNSW-NB15's ``ct_state_ttl`` (state and TTLs combined); encoding the state again there lowered
#: detection (see the README's "Which detector to use")
STATE_COVERED_BY = {"flag": ("serror_rate", "rerror_rate"), "state": ("ct_state_ttl",)}
#: Vocabularies of at least this many values are matched through an Enum code rather than value by value.
ENUM_MIN_VALUES = 9
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


# Shared helper columns of the per-flow groups. Several groups read the same inputs (the logs group and
# the log differences of the ratios group both need log(1 + bytes), ...); each group declares the
# helpers it needs under these names, and the pipeline computes each once. Values are Float32: the
# inputs are counts, bytes and durations, which Float32 holds to about 1e-7 relative (counts up to
# 2**24 exactly), well within the resolution of a scaled feature.


def as_float(column: str) -> pl.Expr:
    """The helper column holding ``column`` as Float32."""
    return pl.col(f"_float_{column}")


def nonnegative(column: str) -> pl.Expr:
    """The helper column holding ``column`` as Float32 with negative values as 0 (null and NaN kept)."""
    return pl.col(f"_nonneg_{column}")


def log1p_of(column: str) -> pl.Expr:
    """The helper column holding ``log(1 + x)`` of ``column`` with negative values as 0, in Float32."""
    return pl.col(f"_log1p_{column}")


def float_helpers(
    floats: Iterable[str] = (), nonnegatives: Iterable[str] = (), logs: Iterable[str] = ()
) -> list[list[pl.Expr]]:
    """The stages of shared helper columns (:func:`as_float`, :func:`nonnegative`, :func:`log1p_of`)
    for the named columns, those they depend on included, always in the same three stages so that the
    pipeline can merge the helpers of several groups."""
    logs = list(dict.fromkeys(logs))
    nonnegatives = list(dict.fromkeys([*nonnegatives, *logs]))
    floats = list(dict.fromkeys([*floats, *nonnegatives]))
    zero = pl.lit(0.0, dtype=pl.Float32)
    stages = [
        # through Float64: Polars casts Int64 to Float64 and then to Float32 faster than directly
        [pl.col(c).cast(pl.Float64).cast(pl.Float32).alias(f"_float_{c}") for c in floats],
        [
            pl.when(as_float(c) < zero).then(zero).otherwise(as_float(c)).alias(f"_nonneg_{c}")
            for c in nonnegatives
        ],
        # 1 + x is exact for counts below 2**24: log(1 + x) is then log1p(x), at a fraction of its cost
        [(nonnegative(c) + pl.lit(1.0, dtype=pl.Float32)).log().alias(f"_log1p_{c}") for c in logs],
    ]
    while stages and not stages[-1]:
        stages.pop()
    return stages


class CategoryGroup(FeatureGroup):
    """One-hot encoding of categorical columns (:data:`CATEGORICAL`) with a learned vocabulary.

    A value gets its own column (``proto=tcp``) when it covers at least ``min_share`` of the training
    rows and at least ``min_count`` rows (the ``max_values`` most frequent at most); everything else,
    values unseen at fit and missing values go to ``<column>=others``.
    """

    name = "categories"

    def __init__(
        self,
        columns: Sequence[str] = CATEGORICAL,
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
            covering = [name for name in STATE_COVERED_BY.get(column, ()) if name in frame.columns]
            if covering:
                log.info(
                    "%s not encoded: the table carries features computed from it (%s)", column, covering[0]
                )
                continue
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

    def helpers(self, state: Mapping[str, Any]) -> list[list[pl.Expr]]:
        """What the one-hot columns and the ``others`` bucket read: for a long vocabulary, the column as
        an Enum of its vocabulary (null outside it: one hash per row); for a short one, the indicator
        of each value (a few text comparisons per row are cheaper)."""
        helpers: list[pl.Expr] = []
        for column, vocabulary in state["vocabularies"].items():
            text = pl.col(column).cast(pl.String)
            if len(vocabulary) >= ENUM_MIN_VALUES:
                helpers.append(text.cast(pl.Enum(vocabulary), strict=False).alias(_category_helper(column)))
            else:
                helpers += [
                    flag(text == value).alias(_category_helper(column, value)) for value in vocabulary
                ]
        return [helpers]

    def expressions(self, state: Mapping[str, Any]) -> list[pl.Expr]:
        """``column=value`` indicators for the vocabulary and a ``column=others`` bucket."""
        exprs: list[pl.Expr] = []
        for column, vocabulary in state["vocabularies"].items():
            # missing values and values outside the vocabulary match none of the values
            if len(vocabulary) >= ENUM_MIN_VALUES:
                code = pl.col(_category_helper(column))
                known = [flag(code == value) for value in vocabulary]
                others = code.is_null()
            else:
                known = [pl.col(_category_helper(column, value)) for value in vocabulary]
                every = pl.col(column).is_null() | pl.col(column).is_not_null()
                others = ~pl.any_horizontal(known) if known else every
            exprs.extend(k.alias(f"{column}={value}") for k, value in zip(known, vocabulary, strict=True))
            exprs.append(others.alias(f"{column}={OTHERS}"))
        return exprs


def _category_helper(column: str, value: str | None = None) -> str:
    return f"_categories_{column}" if value is None else f"_categories_{column}={value}"


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

    def helpers(self, state: Mapping[str, Any]) -> list[list[pl.Expr]]:
        """The shared ``log(1 + x)`` helper of each column present at fit."""
        return float_helpers(logs=state["columns"])

    def expressions(self, state: Mapping[str, Any]) -> list[pl.Expr]:
        """``log_<column>`` per column present at fit."""
        return [log1p_of(c).alias(f"log_{c}") for c in state["columns"]]


@dataclass(frozen=True)
class _Derived:
    """A feature computed from named input columns through the shared helpers: ``floats``,
    ``nonnegatives`` and ``logs`` name the columns it needs :func:`as_float`, :func:`nonnegative` and
    :func:`log1p_of` of."""

    name: str
    inputs: tuple[str, ...]
    build: Callable[[], pl.Expr]
    floats: tuple[str, ...] = ()
    nonnegatives: tuple[str, ...] = ()
    logs: tuple[str, ...] = ()


_F32_ONE = pl.lit(1.0, dtype=pl.Float32)


def _ratio(numerator: str, denominator: str) -> _Derived:
    return _Derived(
        f"{numerator}_per_{denominator}",
        (numerator, denominator),
        lambda: as_float(numerator) / pl.max_horizontal(as_float(denominator), _F32_ONE),
        floats=(numerator, denominator),
    )


def _difference(minuend: str, subtrahend: str) -> _Derived:
    return _Derived(
        f"{minuend}_minus_{subtrahend}",
        (minuend, subtrahend),
        lambda: as_float(minuend) - as_float(subtrahend),
        floats=(minuend, subtrahend),
    )


def _log_rate(name: str, amounts: tuple[str, ...]) -> _Derived:
    def build() -> pl.Expr:
        total = pl.sum_horizontal([nonnegative(c) for c in amounts])
        least = pl.lit(MIN_RATE_DURATION_S, dtype=pl.Float32)
        duration = as_float("duration")
        seconds = pl.when(duration < least).then(least).otherwise(duration)
        # the rate is not negative: log(1 + rate) stands for log1p(rate), as in log1p_of
        return (total / seconds + _F32_ONE).log()

    return _Derived(name, (*amounts, "duration"), build, floats=("duration",), nonnegatives=amounts)


def _log_difference(first: str, second: str) -> _Derived:
    return _Derived(
        f"log_{first}_minus_log_{second}",
        (first, second),
        lambda: log1p_of(first) - log1p_of(second),
        logs=(first, second),
    )


def _share(part: str, other: str) -> _Derived:
    def build() -> pl.Expr:
        a, b = nonnegative(part), nonnegative(other)
        return a / pl.max_horizontal(a + b, _F32_ONE)

    return _Derived(f"{part}_share", (part, other), build, nonnegatives=(part, other))


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
        """The shared Float32, non-negative and ``log(1 + x)`` helpers the features read."""
        features = self._features(state)
        return float_helpers(
            floats=[c for d in features for c in d.floats],
            nonnegatives=[c for d in features for c in d.nonnegatives],
            logs=[c for d in features for c in d.logs],
        )

    def expressions(self, state: Mapping[str, Any]) -> list[pl.Expr]:
        """The ratios and differences whose inputs were all present at fit (Float32)."""
        return [d.build().alias(d.name) for d in self._features(state)]


class RawNumericGroup(FeatureGroup):
    """The source's remaining numeric columns, unchanged (UNSW's ``sttl``, CIC's ``flow_iat_mean``,
    NAD's ``cnt_*`` counters).

    Left out: identifiers (time, addresses, ports), the columns other groups transform (duration,
    bytes, packets), labels, segment and cadence columns (their own groups), the ``categorical``
    columns (one-hot encoded instead), names starting with ``_`` and the names in ``exclude``.
    """

    name = "raw"

    def __init__(self, exclude: Iterable[str] = (), categorical: Iterable[str] = CATEGORICAL) -> None:
        self.exclude = tuple(exclude)
        self.categorical = tuple(categorical)

    def fit(self, frame: pl.DataFrame) -> State:
        """Record the numeric (or boolean) columns to pass through."""
        skip = {*IDENTIFYING, *REPLACED, *LABELS, *CADENCE_COLUMNS, *self.exclude, *self.categorical}
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
    passed through under their own names; how each burst went is :class:`ExchangeGroup`'s."""

    name = "segments"

    def fit(self, frame: pl.DataFrame) -> State:
        """Record the segment columns present."""
        return {
            "columns": [
                c for c in frame.columns if c.startswith(SEGMENT_PREFIX) and c not in EXCHANGE_COLUMNS
            ]
        }

    def expressions(self, state: Mapping[str, Any]) -> list[pl.Expr]:
        """Each segment column as a float feature."""
        return [pl.col(c).cast(pl.Float64).alias(c) for c in state["columns"]]


class ExchangeGroup(SegmentGroup):
    """How each burst went (:data:`~nadkit.features.segments.EXCHANGE_COLUMNS`: the share of its
    flows unanswered, the spread of their sizes), computed with the segments and passed through."""

    name = "exchanges"

    def fit(self, frame: pl.DataFrame) -> State:
        """Record the exchange columns present."""
        return {"columns": [c for c in EXCHANGE_COLUMNS if c in frame.columns]}


class CadenceGroup(SegmentGroup):
    """How often and how regularly the flow's source came back to its destination and service
    (:data:`~nadkit.features.cadence.CADENCE_COLUMNS`, computed before the groups run), passed through."""

    name = "cadence"

    def fit(self, frame: pl.DataFrame) -> State:
        """Record the cadence columns present."""
        return {"columns": [c for c in CADENCE_COLUMNS if c in frame.columns]}


__all__ = [
    "DERIVED",
    "ENUM_MIN_VALUES",
    "LABELS",
    "LOG_COLUMNS",
    "OTHERS",
    "REPLACED",
    "SEGMENT_PREFIX",
    "ZERO_FLAG_COLUMNS",
    "CadenceGroup",
    "CategoryGroup",
    "ExchangeGroup",
    "LogGroup",
    "RatioGroup",
    "RawNumericGroup",
    "SegmentGroup",
    "ZeroFlagGroup",
    "as_float",
    "float_helpers",
    "log1p_of",
    "nonnegative",
]
