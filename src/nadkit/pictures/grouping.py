"""Flows placed on the grid of the flow-groups picture: each flow's group (its column), its time
slot (its row), and its class in each class colouring.

* :func:`place` works out the groups of a flow table for some grouping keys (subnets computed from
  addresses, columns ordered by key hash, first appearance or size) and keeps the flows of a time
  window;
* :func:`time_slots` cuts the time axis into rows of a round length;
* :func:`predicted_classes` and :func:`class_layers` give the class of every flow for the
  ``label`` and ``prediction`` colourings, with the classes' colours.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from nadkit.errors import ConfigError, SchemaError
from nadkit.pictures.options import ORDERS, SUBNET, key_column
from nadkit.pictures.palette import (
    ALERT,
    NORMAL_COLOUR,
    NORMAL_TINT,
    assign_colours,
    count_text,
    duration_text,
    rgb,
)
from nadkit.schema import NORMAL

log = logging.getLogger(__name__)

#: most time slots (grid rows) a picture may have
MAX_ROWS = 20_000
#: round time-slot lengths in seconds
SLOT_LENGTHS: tuple[float, ...] = (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
    86400, 2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400, 91 * 86400, 365 * 86400,
)  # fmt: skip
_IPV4 = r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$"


# --------------------------------------------------------------------------------------------------
# groups


def _subnet(values: pl.Series, prefix: int) -> tuple[pl.Series, list[str]]:
    """Each address's network as a number into the list of network names (``10.1.2.0/24`` for IPv4
    with ``prefix`` bits, ``2001:db8::/64`` for IPv6; text that is no address stays as it is).
    Worked out once per distinct address; numbers rather than names per flow keep it fast."""
    distinct = values.drop_nulls().unique()
    octets = pl.DataFrame({"a": distinct}).select(pl.col("a").str.extract_groups(_IPV4).alias("o"))
    parts = [pl.col("o").struct.field(str(k)).cast(pl.Int64, strict=False) for k in range(1, 5)]
    size = 2 ** (32 - prefix)
    number = (parts[0] * 16_777_216 + parts[1] * 65_536 + parts[2] * 256 + parts[3]) // size * size
    valid = pl.all_horizontal([part.is_between(0, 255) for part in parts]).fill_null(False)
    mapped = octets.select(
        pl.when(valid)
        .then(
            pl.format(
                "{}.{}.{}.{}/{}",
                number // 16_777_216,
                (number // 65_536) % 256,
                (number // 256) % 256,
                number % 256,
                pl.lit(prefix),
            )
        )
        .otherwise(None)
        .alias("net")
    )["net"].to_list()
    texts = distinct.to_list()
    for index, value in enumerate(mapped):
        if value is not None:
            continue
        text = texts[index]
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            mapped[index] = text
            continue
        bits = 64 if address.version == 6 else prefix
        mapped[index] = str(ipaddress.ip_network(f"{address}/{bits}", strict=False))
    names = sorted(set(mapped))
    code_of = {name: index for index, name in enumerate(names)}
    codes = pl.Series([code_of[name] for name in mapped], dtype=pl.UInt32)
    return values.replace_strict(distinct, codes, return_dtype=pl.UInt32), names


def check_key_column(key: str, columns: Sequence[str], source: str | Path | None) -> None:
    """A :class:`~nadkit.errors.SchemaError` naming the column when ``columns`` lack the column
    behind grouping key ``key``."""
    column = key_column(key)
    if column in columns:
        return
    shown = [c for c in columns if not c.startswith("_")]
    have = ", ".join(shown[:12]) + (f" and {len(shown) - 12} more" if len(shown) > 12 else "")
    hint = " (this source has no addresses or ports)" if column in ("src", "dst", "spt", "dpt") else ""
    raise SchemaError(
        f"--by {key} needs this column, which the input lacks{hint}; it has: {have}",
        path=source,
        column=column,
    )


def _key_series(
    frame: pl.DataFrame, key: str, source: str | Path | None
) -> tuple[pl.Series, list[str] | None]:
    """The values of grouping key ``key`` for every flow of ``frame``; for a key that is computed
    (a subnet), numbers into the list of names that comes with them."""
    subnet = SUBNET.match(key)
    column = key_column(key)
    check_key_column(key, frame.columns, source)
    values = frame[column]
    if subnet:
        if values.dtype != pl.String:
            raise SchemaError(f"--by {key} needs addresses as text", path=source, column=column)
        codes, names = _subnet(values, int(subnet.group(2) or 24))
        return codes.alias(key), names
    return values.alias(key), None


def key_hash(keys: pl.DataFrame) -> pl.Series:
    """The hash of each row of group key values: what numbers and orders the groups."""
    return keys.select(pl.struct(pl.all()).hash(seed=7).alias("h"))["h"]


@dataclass(frozen=True)
class Placement:
    """Where each kept flow goes: its group column and its time (or row) position."""

    by: tuple[str, ...]
    order: str
    keep: np.ndarray | None  # rows of the input kept (None: all)
    column: np.ndarray  # group column of each kept flow (0-based)
    position: np.ndarray  # epoch seconds of each kept flow, or its row number
    by_time: bool
    groups: pl.DataFrame  # one row per group, in column order: the key columns and ``flows``
    hashes: np.ndarray  # the key hash of each group, in column order
    names: dict[str, list[str]] = field(default_factory=dict)  # names behind numbered keys

    @property
    def count(self) -> int:
        return self.groups.height

    @property
    def flows(self) -> int:
        return len(self.column)

    def key_texts(self) -> list[str]:
        """Each group's key as text, in column order: ``10.0.0.1 → 10.0.0.2`` for a pair."""
        separator = " → " if len(self.by) == 2 else ", "
        parts = [pl.col(name).cast(pl.String).fill_null("–") for name in self.by]
        return self.groups.select(pl.concat_str(parts, separator=separator).alias("k"))["k"].to_list()


def place(
    frame: pl.DataFrame,
    by: tuple[str, ...],
    order: str,
    *,
    start: float | None,
    end: float | None,
    source: str | Path | None,
) -> Placement:
    """The groups of ``frame`` by keys ``by``, in column order ``order``, and where each flow from
    ``start`` to ``end`` (epoch seconds; None: open) falls."""
    if order not in ORDERS:
        raise ConfigError(f"--order {order!r}: use one of {', '.join(ORDERS)}")
    columns = [_key_series(frame, key, source) for key in by]
    keys = pl.DataFrame([values for values, _ in columns])
    names = {key: decoded for key, (_, decoded) in zip(by, columns, strict=True) if decoded is not None}
    by_time = "time" in frame.columns and frame["time"].null_count() < frame.height
    keep: np.ndarray | None = None
    if by_time:
        time = frame["time"]
        if not isinstance(time.dtype, pl.Datetime):
            raise SchemaError(f"has dtype {time.dtype}, expected a date-time", path=source, column="time")
        position = time.dt.epoch("us").to_numpy().astype(np.float64) / 1e6
        wanted = ~np.isnan(position)
        if start is not None:
            wanted &= position >= start
        if end is not None:
            wanted &= position < end
        if not wanted.all():
            dropped = int((~wanted).sum())
            missing = int(time.null_count())
            if missing:
                log.warning("%s flow(s) without a time are left out of the picture", f"{missing:,}")
            log.debug("%s flow(s) outside the time window left out", f"{dropped - missing:,}")
            keep = wanted
            position = position[wanted]
            keys = keys.filter(pl.Series(wanted))
    else:
        if start is not None or end is not None:
            raise ConfigError("--start/--end need a time column, and the input has none")
        position = np.arange(frame.height, dtype=np.float64)
    if len(position) == 0:
        raise ConfigError("no flows to draw" + (" in the chosen time window" if keep is not None else ""))
    hashes = key_hash(keys)
    # groups numbered in the order of their key hashes: one sort, no table joins
    rank = (hashes.rank("dense") - 1).to_numpy()
    count = int(rank.max()) + 1
    sizes = np.bincount(rank, minlength=count)
    group_hash = np.empty(count, dtype=np.uint64)
    group_hash[rank] = hashes.to_numpy()
    member = np.empty(count, dtype=np.int64)  # one flow of each group, for its key
    member[rank] = np.arange(len(rank), dtype=np.int64)
    if order == "hash":
        ordering = np.arange(count)
        column = rank.astype(np.int64)
    else:
        first = np.full(count, np.inf)
        np.minimum.at(first, rank, position)
        if order == "first":
            ordering = np.lexsort((group_hash, first))
        else:
            ordering = np.lexsort((group_hash, first, -sizes))
        at = np.empty(count, dtype=np.int64)
        at[ordering] = np.arange(count)
        column = at[rank]
    described = keys[member[ordering]]
    for key, decoded in names.items():  # numbered keys shown by their names
        described = described.with_columns(pl.Series(key, decoded, dtype=pl.String).gather(described[key]))
    described = described.with_columns(pl.Series("flows", sizes[ordering], dtype=pl.Int64))
    return Placement(
        by=by,
        order=order,
        keep=keep,
        column=column,
        position=position,
        by_time=by_time,
        groups=described,
        hashes=group_hash[ordering],
        names=names,
    )


# --------------------------------------------------------------------------------------------------
# time slots


@dataclass(frozen=True)
class Slots:
    """The time axis cut into rows: row ``r`` holds positions ``start + r * size`` up to the next."""

    start: float
    size: float
    rows: int
    by_time: bool

    @property
    def end(self) -> float:
        return self.start + self.rows * self.size

    def row_of(self, position: np.ndarray) -> np.ndarray:
        """The row of each position, as whole numbers in a float array."""
        rows = position - self.start
        rows /= self.size
        np.floor(rows, out=rows)
        return np.clip(rows, 0, self.rows - 1, out=rows)

    def centre_of(self, position: np.ndarray) -> np.ndarray:
        """The middle of each position's row, in rows (what the aggregation bins)."""
        rows = self.row_of(position)
        rows += 0.5
        return rows

    def describe(self) -> str:
        if not self.by_time:
            return f"{count_text(self.size)} row(s) of the input per slot"
        return f"time slot {duration_text(self.size)}"


def time_slots(placement: Placement, rows: int, time_bin: float | None) -> Slots:
    """The rows of the picture: slots of ``time_bin`` seconds, or of a round length that gives about
    ``rows`` rows; without a time column, runs of input rows."""
    low, high = float(placement.position.min()), float(placement.position.max())
    if not placement.by_time:
        if time_bin is not None:
            raise ConfigError("--time-bin needs a time column, and the input has none")
        size = float(max(1, math.ceil((high + 1) / rows)))
        return Slots(0.0, size, math.floor(high / size) + 1, by_time=False)
    span = max(high - low, 1e-6)
    if time_bin is None:
        wanted = span / rows
        size = next((s for s in SLOT_LENGTHS if s >= wanted), SLOT_LENGTHS[-1])
        if high - low < 1e-3:  # one instant: a one-second slot, so the time axis has a length
            size = 1.0
        elif wanted < 1:  # sub-second data: a plain fraction of the span
            size = wanted
    else:
        size = time_bin
    start = math.floor(low / size) * size if size >= 1 else low
    count = math.floor((high - start) / size) + 1
    if count > MAX_ROWS:
        raise ConfigError(
            f"--time-bin {duration_text(size)} cuts {duration_text(span)} into {count:,} slots "
            f"(at most {MAX_ROWS:,}); choose a longer bin or a narrower --start/--end"
        )
    return Slots(start, size, count, by_time=True)


# --------------------------------------------------------------------------------------------------
# classes


@dataclass(frozen=True)
class Classes:
    """Class names in colour order (normal first, then attacks by frequency), their colours and the
    flows of each per colouring."""

    names: tuple[str, ...]
    colours: dict[str, str]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def shown(self, name: str) -> str:
        """The colour ``name`` is drawn in (normal traffic in its lighter tint)."""
        colour = self.colours[name]
        return NORMAL_TINT if name == NORMAL and colour == NORMAL_COLOUR else colour

    @property
    def palette(self) -> np.ndarray:
        return np.array([rgb(self.shown(name)) for name in self.names], dtype=np.uint8)

    @property
    def priority(self) -> np.ndarray:
        """Class codes in the order ties are broken: attacks before normal."""
        attacks = [k for k, name in enumerate(self.names) if name != NORMAL]
        return np.array(attacks + [k for k, name in enumerate(self.names) if name == NORMAL], dtype=np.int64)


def predicted_classes(frame: pl.DataFrame) -> pl.Series | None:
    """The model's prediction for each flow of a scored table: the predicted class of a supervised
    model, else ``alert`` or ``normal``; None when the table holds no scores."""
    if "class" in frame.columns and frame["class"].null_count() < frame.height:
        return frame["class"].cast(pl.String).fill_null(NORMAL).alias("prediction")
    if "alert" in frame.columns:
        return frame.select(
            pl.when(pl.col("alert").fill_null(False).cast(pl.Boolean))
            .then(pl.lit(ALERT))
            .otherwise(pl.lit(NORMAL))
            .alias("prediction")
        )["prediction"]
    if "score" in frame.columns and "threshold" in frame.columns:
        return frame.select(
            pl.when(pl.col("score") >= pl.col("threshold"))
            .then(pl.lit(ALERT))
            .otherwise(pl.lit(NORMAL))
            .alias("prediction")
        )["prediction"]
    return None


def class_layers(
    frame: pl.DataFrame,
    colourings: tuple[str, ...],
    keep: np.ndarray | None,
    colours: Mapping[str, str] | None,
    source: str | Path | None,
) -> tuple[dict[str, pl.Series], Classes]:
    """The class of each kept flow per class colouring, and the classes' colours."""
    layers: dict[str, pl.Series] = {}
    for name in colourings:
        if name == "label":
            if "label" not in frame.columns:
                raise SchemaError("--color label needs labelled flows", path=source, column="label")
            layers[name] = frame["label"].cast(pl.String).fill_null(NORMAL)
        elif name == "prediction":
            predicted = predicted_classes(frame)
            if predicted is None:
                raise ConfigError(
                    f"{source or 'the input'}: --color prediction needs scored flows: give --bundle DIR"
                )
            layers[name] = predicted
    if keep is not None:
        mask = pl.Series(keep)
        layers = {name: values.filter(mask) for name, values in layers.items()}
    counts = {name: dict(values.value_counts().iter_rows()) for name, values in layers.items()}
    truth = counts.get("label") or {}
    ordered = sorted(truth, key=lambda n: (n != NORMAL, -truth[n], n))
    others = sorted({n for table in counts.values() for n in table} - set(ordered))
    if NORMAL in others:  # normal comes first even when only the prediction has it
        others.remove(NORMAL)
        ordered.insert(0, NORMAL)
    assigned = assign_colours([*ordered, *others], colours)
    names = tuple(n for n in assigned if any(n in table for table in counts.values()))
    return layers, Classes(names=names, colours=assigned, counts=counts)


__all__ = [
    "MAX_ROWS",
    "Classes",
    "Placement",
    "Slots",
    "check_key_column",
    "class_layers",
    "place",
    "predicted_classes",
    "time_slots",
]
