"""Pictures of flows and detections: flow groups over time, and an alert's feature attribution.

The flow-groups picture puts every flow on a grid: each *column* is a group of flows (for example one
source and destination port pair, or one source and destination subnet pair), *time runs down* the
rows, and each cell is coloured by the class most of its flows have (the true label, or the model's
prediction), or by the highest anomaly score among them. A port sweep shows as a block or band of one
colour; a model that predicts noise shows as noise. The flows are aggregated on the grid with
datashader, so millions of flows draw in seconds.

* :func:`render_groups` gives the picture as PNG bytes (one panel per colouring, side by side, with
  axes, time ticks and a legend); :func:`draw_groups` also tells where each group and time fall in
  the image.
* :func:`groups_html` gives a self-contained HTML page (no external references) that zooms and pans
  over an image pyramid of the same picture.
* :func:`plot_alert` draws the features that contributed most to one alert.
* :func:`plot_groups_file` and :func:`plot_alert_file` are what ``nadkit plot`` runs.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import logging
import math
import re
import time as clock
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from matplotlib import colors as mcolors
from matplotlib import dates as mdates
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from nadkit.errors import ConfigError, SchemaError
from nadkit.fileio import atomic_path
from nadkit.report import ATTACK_COLOURS, NORMAL_COLOUR, class_colours
from nadkit.schema import NORMAL

log = logging.getLogger(__name__)

#: what a cell's colour can show
COLOURINGS: tuple[str, ...] = ("label", "prediction", "score")
#: how the group columns are ordered: in an arbitrary but fixed order (a hash of the group key: a
#: burst of many groups, such as a sweep, spreads over the whole width and shows as a band), by the
#: time of their first flow, or by their number of flows (largest first)
ORDERS: tuple[str, ...] = ("hash", "first", "size")
_ORDER_TEXT = {"hash": "in arbitrary order", "first": "by first appearance", "size": "largest first"}
DEFAULT_BY: tuple[str, ...] = ("src_port", "dst_port")
DEFAULT_WIDTH = 1000
DEFAULT_HEIGHT = 600
#: limits of the picture area of one panel, in pixels
MIN_SIZE, MAX_SIZE = 100, 8000
#: most time slots (grid rows) a picture may have
MAX_ROWS = 20_000
#: the predicted class of an unsupervised model's alerts, and its colour (where no class has it)
ALERT = "alert"
ALERT_COLOUR = "#c51b7d"
#: normal traffic in the flow-groups picture: the report's normal colour lightened, so that the
#: attack classes stand out from the mass of normal flows
NORMAL_TINT = "#adbed1"
#: resolution of the PNG images (one figure unit is one pixel at this resolution)
DPI = 100
#: at most this many groups get their key written under their column
LABELLED_GROUPS = 40
#: the interactive page knows the key of each group up to this many groups
HTML_KEYED_GROUPS = 50_000
#: deepest zoom level of the interactive page (level k has 4**k tiles)
HTML_MAX_LEVEL = 3

#: the names ``--by`` understands, and the canonical column behind each
KEY_COLUMNS: dict[str, str] = {
    "src": "src",
    "src_ip": "src",
    "dst": "dst",
    "dst_ip": "dst",
    "src_port": "spt",
    "spt": "spt",
    "dst_port": "dpt",
    "dpt": "dpt",
    "proto": "proto",
    "app": "app",
}
_SUBNET = re.compile(r"^(src|dst)_subnet(?:/(\d{1,2}))?$")
_IPV4 = r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$"
_EMPTY_RGB = np.array([255, 255, 255], dtype=np.uint8)
#: nice time-slot lengths in seconds
_SLOTS: tuple[float, ...] = (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
    86400, 2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400, 91 * 86400, 365 * 86400,
)  # fmt: skip
_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")
#: colours of scores below the threshold (light to dark blue-grey) and at or above it (orange to red)
_LOW_SCORES = ("#eef2f6", "#c3cfdc", "#7b95b3")
_HIGH_SCORES = ("#fdb863", "#e6550d", "#7f0000")
_PLAIN_SCORES = "viridis_r"


# --------------------------------------------------------------------------------------------------
# options


def parse_by(by: str | Sequence[str]) -> tuple[str, ...]:
    """The grouping keys of ``--by``: ``src_port,dst_port``, ``src_subnet,dst_subnet``, ``src,dst``,
    ``proto,app``, ``src_subnet/16`` (a /16 for IPv4) or any column name of the input."""
    parts = [p.strip() for p in (by.split(",") if isinstance(by, str) else by)]
    keys = tuple(p for p in parts if p)
    if not keys:
        raise ConfigError("--by needs at least one grouping key, e.g. src_port,dst_port")
    if len(set(keys)) != len(keys):
        raise ConfigError(f"--by names a key twice: {','.join(keys)}")
    for key in keys:
        match = _SUBNET.match(key)
        if match and match.group(2) is not None and not 1 <= int(match.group(2)) <= 32:
            raise ConfigError(f"--by {key}: the IPv4 prefix length must be between 1 and 32")
        if not re.match(r"^[A-Za-z0-9_./-]+$", key):
            raise ConfigError(f"--by {key!r}: not a grouping key or column name")
    return keys


def parse_colourings(color: str | Sequence[str]) -> tuple[str, ...]:
    """``label``, ``prediction``, ``score`` or several of them (comma-separated: side by side)."""
    parts = [p.strip() for p in (color.split(",") if isinstance(color, str) else color)]
    chosen = tuple(p for p in parts if p)
    if not chosen:
        raise ConfigError(f"--color needs one of {', '.join(COLOURINGS)}")
    for item in chosen:
        if item not in COLOURINGS:
            raise ConfigError(f"--color {item!r}: unknown colouring (use {', '.join(COLOURINGS)})")
    if len(set(chosen)) != len(chosen):
        raise ConfigError(f"--color names a colouring twice: {','.join(chosen)}")
    return chosen


def parse_duration(text: str | float | None) -> float | None:
    """Seconds of a time slot: ``30s``, ``5m``, ``1h``, ``1d``, ``250ms`` or plain seconds."""
    if text is None:
        return None
    if isinstance(text, int | float) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text).lower())
        if not match or match.group(2) not in ("", *_UNITS):
            raise ConfigError(f"--time-bin {text!r}: not a duration (use e.g. 30s, 5m, 1h, 1d)")
        seconds = float(match.group(1)) * _UNITS.get(match.group(2) or "s", 1.0)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"--time-bin {text!r}: must be a positive duration")
    return seconds


def parse_time(text: str | dt.datetime | None, option: str) -> float | None:
    """Epoch seconds of an ISO time (``2020-12-03T07:00``; UTC unless it names a zone)."""
    if text is None:
        return None
    if isinstance(text, dt.datetime):
        moment = text
    else:
        try:
            moment = dt.datetime.fromisoformat(str(text).strip())
        except ValueError:
            raise ConfigError(f"{option} {text!r}: not an ISO time (e.g. 2020-12-03T07:00)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def _check_size(name: str, value: int) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or not MIN_SIZE <= value <= MAX_SIZE
    ):
        raise ConfigError(f"--{name} must be a whole number of pixels from {MIN_SIZE} to {MAX_SIZE}")
    return int(value)


# --------------------------------------------------------------------------------------------------
# groups and time slots


def _subnet(values: pl.Series, prefix: int) -> tuple[pl.Series, list[str]]:
    """Each address's network as a number into the list of network names (``10.1.2.0/24`` for IPv4
    with ``prefix`` bits, ``2001:db8::/64`` for IPv6; text that is no address stays as it is).
    Worked out once per distinct address; numbers rather than names per flow keep it fast."""
    import ipaddress

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
    number = {name: index for index, name in enumerate(names)}
    codes = pl.Series([number[name] for name in mapped], dtype=pl.UInt32)
    return values.replace_strict(distinct, codes, return_dtype=pl.UInt32), names


def _key_column(key: str) -> str:
    """The input column behind grouping key ``key``."""
    subnet = _SUBNET.match(key)
    return subnet.group(1) if subnet else KEY_COLUMNS.get(key, key)


def _check_key_column(key: str, column: str, columns: Sequence[str], source: str | Path | None) -> None:
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
    subnet = _SUBNET.match(key)
    column = _key_column(key)
    _check_key_column(key, column, frame.columns, source)
    values = frame[column]
    if subnet:
        if values.dtype != pl.String:
            raise SchemaError(f"--by {key} needs addresses as text", path=source, column=column)
        codes, names = _subnet(values, int(subnet.group(2) or 24))
        return codes.alias(key), names
    return values.alias(key), None


@dataclass(frozen=True)
class _Placement:
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


def _place(
    frame: pl.DataFrame,
    by: tuple[str, ...],
    order: str,
    *,
    start: float | None,
    end: float | None,
    source: str | Path | None,
) -> _Placement:
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
    hashes = keys.select(pl.struct(pl.all()).hash(seed=7).alias("h"))["h"]
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
        place = np.empty(count, dtype=np.int64)
        place[ordering] = np.arange(count)
        column = place[rank]
    described = keys[member[ordering]]
    for key, decoded in names.items():  # numbered keys shown by their names
        described = described.with_columns(pl.Series(key, decoded, dtype=pl.String).gather(described[key]))
    described = described.with_columns(pl.Series("flows", sizes[ordering], dtype=pl.Int64))
    return _Placement(
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


@dataclass(frozen=True)
class _Slots:
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
            return f"{_count_text(self.size)} row(s) of the input per slot"
        return f"time slot {_duration_text(self.size)}"


def _slots(placement: _Placement, rows: int, time_bin: float | None) -> _Slots:
    low, high = float(placement.position.min()), float(placement.position.max())
    if not placement.by_time:
        if time_bin is not None:
            raise ConfigError("--time-bin needs a time column, and the input has none")
        size = float(max(1, math.ceil((high + 1) / rows)))
        return _Slots(0.0, size, math.floor(high / size) + 1, by_time=False)
    span = max(high - low, 1e-6)
    if time_bin is None:
        wanted = span / rows
        size = next((s for s in _SLOTS if s >= wanted), _SLOTS[-1])
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
            f"--time-bin {_duration_text(size)} cuts {_duration_text(span)} into {count:,} slots "
            f"(at most {MAX_ROWS:,}); choose a longer bin or a narrower --start/--end"
        )
    return _Slots(start, size, count, by_time=True)


# --------------------------------------------------------------------------------------------------
# classes, predictions and colours


@dataclass(frozen=True)
class _Classes:
    """Class names in colour order (normal first, then attacks by frequency), their colours and the
    order in which ties are broken (attacks before normal)."""

    names: tuple[str, ...]
    colours: dict[str, str]
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def shown(self, name: str) -> str:
        """The colour ``name`` is drawn in (normal traffic in its lighter tint)."""
        colour = self.colours[name]
        return NORMAL_TINT if name == NORMAL and colour == NORMAL_COLOUR else colour

    @property
    def palette(self) -> np.ndarray:
        return np.array([_rgb(self.shown(name)) for name in self.names], dtype=np.uint8)

    @property
    def priority(self) -> np.ndarray:
        attacks = [k for k, name in enumerate(self.names) if name != NORMAL]
        return np.array(attacks + [k for k, name in enumerate(self.names) if name == NORMAL], dtype=np.int64)


def _rgb(colour: str) -> tuple[int, int, int]:
    red, green, blue = mcolors.to_rgb(colour)
    return round(red * 255), round(green * 255), round(blue * 255)


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


def _class_layers(
    frame: pl.DataFrame,
    colourings: tuple[str, ...],
    keep: np.ndarray | None,
    colours: Mapping[str, str] | None,
    source: str | Path | None,
) -> tuple[dict[str, pl.Series], _Classes]:
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
    assigned = _assign_colours([*ordered, *others], colours)
    names = tuple(n for n in assigned if any(n in table for table in counts.values()))
    return layers, _Classes(names=names, colours=assigned, counts=counts)


def _assign_colours(names: list[str], given: Mapping[str, str] | None) -> dict[str, str]:
    """The report's colour of each class; names the given colours lack take the next unused colours."""
    if not given:
        colours = class_colours([n for n in names if n != ALERT], [])
        if ALERT in names:
            colours[ALERT] = ALERT_COLOUR
        return {name: colours[name] for name in names}
    result = {name: given[name] for name in names if name in given}
    if ALERT in names and ALERT not in result and ALERT_COLOUR not in given.values():
        result[ALERT] = ALERT_COLOUR
    missing = [name for name in names if name not in result]
    used = {*result.values(), *given.values()}
    spare = [colour for colour in ATTACK_COLOURS if colour not in used]
    for index, name in enumerate(missing):
        if name == NORMAL:
            result[name] = NORMAL_COLOUR
        else:
            result[name] = spare.pop(0) if spare else ATTACK_COLOURS[index % len(ATTACK_COLOURS)]
    return {name: result[name] for name in names}


# --------------------------------------------------------------------------------------------------
# aggregation (datashader)


def _aggregate(
    x: np.ndarray,
    y: np.ndarray,
    *,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    width: int,
    height: int,
    codes: np.ndarray | None = None,
    categories: int = 0,
    values: np.ndarray | None = None,
) -> np.ndarray:
    """Counts per cell and category (height, width, categories), or the highest value per cell
    (height, width; NaN where empty). Row 0 is the lowest ``y``."""
    import datashader as ds
    import pandas as pd

    data: dict[str, Any] = {"x": x, "y": y}
    canvas = ds.Canvas(plot_width=width, plot_height=height, x_range=x_range, y_range=y_range)
    if codes is not None:
        data["c"] = pd.Categorical.from_codes(codes, categories=list(range(categories)))
        reduction: Any = ds.by("c", ds.count())
    else:
        data["v"] = values
        reduction = ds.max("v")
    result = canvas.points(pd.DataFrame(data, copy=False), "x", "y", agg=reduction)
    return np.asarray(result.values)


def _majority(counts: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """The class most flows of each cell have (ties: earlier in ``priority``); -1 where empty."""
    planes = np.moveaxis(counts, -1, 0)
    best = planes[priority[0]].copy()
    winner = np.full(best.shape, priority[0], dtype=np.int64)
    for code in priority[1:]:
        plane = planes[code]
        better = plane > best
        winner[better] = code
        np.maximum(best, plane, out=best)
    winner[best == 0] = -1
    return winner


def _dilate(mask: np.ndarray, vertical: bool, horizontal: bool) -> np.ndarray:
    """``mask`` grown by one cell up and down (``vertical``) and left and right (``horizontal``)."""
    out = mask.copy()
    if vertical:
        out[1:] |= mask[:-1]
        out[:-1] |= mask[1:]
    if horizontal:
        tall = out.copy()
        out[:, 1:] |= tall[:, :-1]
        out[:, :-1] |= tall[:, 1:]
    return out


def _spread_codes(codes: np.ndarray, normal: int, vertical: bool, horizontal: bool) -> np.ndarray:
    """Grow every attack cell by one cell into its empty or normal neighbours, and normal cells into
    empty neighbours, so that a single cell of a rare class stays visible; attack cells keep their
    own class."""
    out = codes.copy()
    present = np.flatnonzero(np.bincount(codes.ravel() + 1, minlength=1)[1:])
    open_cells = (codes < 0) | (codes == normal)
    for code in present:
        if code == normal:
            continue
        grown = _dilate(codes == code, vertical, horizontal) & open_cells
        out[grown] = code
        open_cells &= ~grown
    if normal in present:
        grown = _dilate(codes == normal, vertical, horizontal) & (out < 0)
        out[grown] = normal
    return out


def _spread_values(
    values: np.ndarray, vertical: bool, horizontal: bool, threshold: float | None
) -> np.ndarray:
    """Scores at or above ``threshold`` grow into lower and empty neighbours, and the rest into empty
    neighbours (the highest neighbour wins), so that a single alerting cell stays visible."""
    from scipy import ndimage

    size = (3 if vertical else 1, 3 if horizontal else 1)
    filled = np.where(np.isnan(values), -np.inf, values)
    best = ndimage.maximum_filter(filled, size=size, mode="constant", cval=-np.inf)
    out = np.where(np.isnan(values) & ~np.isneginf(best), best, values)
    if threshold is not None:
        high = np.where(filled >= threshold, filled, -np.inf)
        grown = ndimage.maximum_filter(high, size=size, mode="constant", cval=-np.inf)
        out = np.where(grown > np.where(np.isnan(out), -np.inf, out), grown, out)
    return out


def _stretch(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """A grid resized to ``height`` x ``width`` pixels by repeating (or picking) whole cells."""
    rows = (np.arange(height) * grid.shape[0]) // height
    columns = (np.arange(width) * grid.shape[1]) // width
    return grid[rows][:, columns]


# --------------------------------------------------------------------------------------------------
# score colours


@dataclass(frozen=True)
class _ScoreScale:
    """Maps scores to colours: blue-greys below the threshold, oranges to red at or above it."""

    low: float
    high: float
    threshold: float | None
    log: bool

    def transform(self, values: np.ndarray) -> np.ndarray:
        if not self.log:
            return values
        with np.errstate(all="ignore"):
            return np.log10(np.maximum(values, 1e-300))

    @property
    def colormap(self) -> mcolors.Colormap:
        if self.threshold is None:
            from matplotlib import colormaps

            return colormaps[_PLAIN_SCORES]
        below = mcolors.LinearSegmentedColormap.from_list("below", _LOW_SCORES)(np.linspace(0, 1, 128))
        above = mcolors.LinearSegmentedColormap.from_list("above", _HIGH_SCORES)(np.linspace(0, 1, 128))
        return mcolors.ListedColormap(np.vstack([below, above]), name="nadkit_scores")

    @property
    def norm(self) -> mcolors.Normalize:
        low, high = self.transform(np.array([self.low, self.high]))
        if self.threshold is None:
            return mcolors.Normalize(vmin=float(low), vmax=float(high))
        centre = float(self.transform(np.array([self.threshold]))[0])
        return mcolors.TwoSlopeNorm(vcenter=centre, vmin=float(low), vmax=float(high))

    def rgb(self, values: np.ndarray) -> np.ndarray:
        empty = np.isnan(values)
        scaled = self.norm(self.transform(np.where(empty, self.low, values)))
        colours = (self.colormap(np.clip(np.ma.filled(scaled, 0.0), 0.0, 1.0))[..., :3] * 255).round()
        out = colours.astype(np.uint8)
        out[empty] = _EMPTY_RGB
        return out


def _score_scale(cells: np.ndarray, threshold: float | None) -> _ScoreScale:
    from nadkit.report import _spans_decades

    finite = cells[np.isfinite(cells)]
    if len(finite) == 0:
        finite = np.array([0.0 if threshold is None else threshold])
    low, high = (float(v) for v in np.quantile(finite, [0.002, 0.998]))
    if threshold is not None and math.isfinite(threshold):
        log_scale = _spans_decades(finite, threshold)
        pad = max(abs(threshold) * 0.05, 1e-6)
        low = min(low, threshold - pad) if not log_scale else min(low, threshold / 1.2)
        high = max(high, threshold + pad) if not log_scale else max(high, threshold * 1.2)
        return _ScoreScale(low, high, float(threshold), log_scale)
    if high <= low:
        low, high = low - 0.5, high + 0.5
    return _ScoreScale(low, high, None, _spans_decades(finite, max(low, 1e-300)) and low > 0)


# --------------------------------------------------------------------------------------------------
# the picture


@dataclass(frozen=True)
class _Layer:
    """One colouring, ready to aggregate: class codes (with their count) or scores."""

    name: str
    codes: np.ndarray | None = None
    values: np.ndarray | None = None


@dataclass(frozen=True)
class _Scene:
    """Everything a flow-groups picture shows, before it is drawn at some size."""

    placement: _Placement
    slots: _Slots
    layers: tuple[_Layer, ...]
    classes: _Classes | None
    scale: _ScoreScale | None
    spread: int | None
    title: str | None
    subtitle: str
    panel_titles: dict[str, str]


def _scene(
    frame: pl.DataFrame,
    *,
    by: str | Sequence[str],
    color: str | Sequence[str],
    rows: int,
    time_bin: str | float | None,
    order: str,
    start: str | dt.datetime | None,
    end: str | dt.datetime | None,
    threshold: float | None,
    colours: Mapping[str, str] | None,
    spread: int | None,
    title: str | None,
    source: str | Path | None,
    model: str | None,
    panel_titles: Mapping[str, str] | None = None,
) -> _Scene:
    keys = parse_by(by)
    colourings = parse_colourings(color)
    start_s, end_s = parse_time(start, "--start"), parse_time(end, "--end")
    if start_s is not None and end_s is not None and end_s <= start_s:
        raise ConfigError("--end must be later than --start")
    if frame.height == 0:
        raise ConfigError(f"{source or 'the input'}: no flows to draw")
    placement = _place(frame, keys, order, start=start_s, end=end_s, source=source)
    slots = _slots(placement, rows, parse_duration(time_bin))
    class_names = [c for c in colourings if c != "score"]
    classes = None
    layers: list[_Layer] = []
    series: dict[str, pl.Series] = {}
    if class_names:
        series, classes = _class_layers(frame, tuple(class_names), placement.keep, colours, source)
    scale = None
    for name in colourings:
        if name == "score":
            if "score" not in frame.columns:
                raise ConfigError(
                    f"{source or 'the input'}: --color score needs scored flows: give --bundle DIR"
                )
            values = frame["score"].cast(pl.Float64).to_numpy()
            if placement.keep is not None:
                values = values[placement.keep]
            finite = values[np.isfinite(values)]
            values = np.nan_to_num(
                values,
                nan=np.nan,
                posinf=float(finite.max()) if len(finite) else 0.0,
                neginf=float(finite.min()) if len(finite) else 0.0,
            )
            if threshold is None and "threshold" in frame.columns and frame["threshold"].null_count() == 0:
                threshold = float(frame["threshold"][0])
            scale = _score_scale(values, threshold)
            layers.append(_Layer(name, values=values))
        else:
            assert classes is not None
            lookup = {n: k for k, n in enumerate(classes.names)}
            codes = series[name].replace_strict(lookup, return_dtype=pl.Int16).to_numpy()
            layers.append(_Layer(name, codes=codes))
    subtitle = _subtitle(placement, slots, source)
    titles = {
        "label": "true label",
        "prediction": f"prediction of {model}" if model else "model prediction",
        "score": "highest anomaly score in the cell",
        **(panel_titles or {}),
    }
    return _Scene(
        placement=placement,
        slots=slots,
        layers=tuple(layers),
        classes=classes,
        scale=scale,
        spread=spread,
        title=title,
        subtitle=subtitle,
        panel_titles=titles,
    )


def _subtitle(placement: _Placement, slots: _Slots, source: str | Path | None) -> str:
    parts = []
    if source:
        parts.append(Path(str(source)).name or str(source))
    parts.append(f"{placement.flows:,} flows")
    parts.append(f"{placement.count:,} groups")
    if slots.by_time:
        first, last = _utc(placement.position.min()), _utc(placement.position.max())
        same_day = first[:10] == last[:10]
        parts.append(f"{first[:16]} – {last[11:16] if same_day else last[:16]} UTC")
    parts.append(slots.describe())
    return " · ".join(parts)


def _cells(scene: _Scene, layer: _Layer, columns: int, x_range: tuple[float, float], rows: int,
           y_range: tuple[float, float], x: np.ndarray, y: np.ndarray) -> np.ndarray:  # fmt: skip
    if layer.codes is not None:
        assert scene.classes is not None
        counts = _aggregate(
            x,
            y,
            x_range=x_range,
            y_range=y_range,
            width=columns,
            height=rows,
            codes=layer.codes,
            categories=len(scene.classes.names),
        )
        return _majority(counts, scene.classes.priority)
    return _aggregate(x, y, x_range=x_range, y_range=y_range, width=columns, height=rows, values=layer.values)


def _spread_amount(scene: _Scene, cell_width: float, cell_height: float) -> tuple[int, int]:
    """How many cells drawn cells grow up and down, and left and right: one along an axis whose
    cells are under 3 pixels, unless the picture was asked for a fixed amount."""
    if scene.spread is not None:
        return scene.spread, scene.spread
    return int(cell_height < 3.0), int(cell_width < 3.0)


def _finish(scene: _Scene, cells: np.ndarray, spread: tuple[int, int]) -> np.ndarray:
    """The cells after growing them by ``spread`` (see :func:`_spread_codes`)."""
    vertical, horizontal = spread
    for step in range(max(vertical, horizontal)):
        if cells.dtype.kind == "i":
            assert scene.classes is not None
            normal = scene.classes.names.index(NORMAL) if NORMAL in scene.classes.names else -2
            cells = _spread_codes(cells, normal, step < vertical, step < horizontal)
        else:
            threshold = scene.scale.threshold if scene.scale is not None else None
            cells = _spread_values(cells, step < vertical, step < horizontal, threshold)
    return cells


def _rgb_cells(scene: _Scene, cells: np.ndarray) -> np.ndarray:
    """The colour of each cell (white where empty)."""
    if cells.dtype.kind == "i":
        assert scene.classes is not None
        palette = np.vstack([scene.classes.palette, _EMPTY_RGB[None, :]])
        return palette[np.where(cells < 0, len(scene.classes.names), cells)]
    assert scene.scale is not None
    return scene.scale.rgb(cells)


def _colour_cells(scene: _Scene, cells: np.ndarray, spread: tuple[int, int]) -> np.ndarray:
    return _rgb_cells(scene, _finish(scene, cells, spread))


def _panel_images(scene: _Scene, width: int, height: int) -> tuple[list[np.ndarray], bool]:
    """Each layer as an RGB image of ``height`` x ``width`` pixels, earliest time at the top, and
    whether cells were grown to stay visible."""
    placement, slots = scene.placement, scene.slots
    columns = min(placement.count, width)
    x = placement.column.astype(np.float64) + 0.5
    y = slots.centre_of(placement.position)
    images = []
    grown = False
    for layer in scene.layers:
        cells = _cells(scene, layer, columns, (0.0, float(placement.count)), slots.rows,
                       (0.0, float(slots.rows)), x, y)  # fmt: skip
        spread = _spread_amount(scene, width / columns, height / slots.rows)
        grown = grown or max(spread) > 0
        images.append(_stretch(_colour_cells(scene, cells, spread), height, width))
    return images, grown


# --------------------------------------------------------------------------------------------------
# drawing


@dataclass(frozen=True)
class GroupsPicture:
    """A drawn flow-groups picture: the PNG and where things are in it.

    ``panels`` are the picture areas as (left, top, width, height) in image pixels, one per
    colouring in ``colourings``; ``locate`` gives the pixel of a group and time in a panel.
    """

    png: bytes
    colourings: tuple[str, ...]
    panels: tuple[tuple[int, int, int, int], ...]
    groups: pl.DataFrame
    colours: dict[str, str]
    slot_seconds: float
    _placement: _Placement = field(repr=False)
    _slots: _Slots = field(repr=False)

    def column_of(self, key: Sequence[Any]) -> int:
        """The column (0-based, in picture order) of the group with key values ``key``."""
        by = self._placement.by
        if len(key) != len(by):
            raise ConfigError(f"a group key has {len(by)} value(s) ({', '.join(by)})")
        values = []
        for name, value in zip(by, key, strict=True):
            decoded = self._placement.names.get(name)
            if decoded is None:
                values.append(pl.Series(name, [value], dtype=self.groups.schema[name]))
            elif value in decoded:
                values.append(pl.Series(name, [decoded.index(value)], dtype=pl.UInt32))
            else:
                raise ConfigError(f"no group {tuple(key)} in the picture")
        probe = pl.DataFrame(values)
        wanted = probe.select(pl.struct(pl.all()).hash(seed=7))[0, 0]
        found = np.flatnonzero(self._placement.hashes == wanted)
        if len(found) == 0:
            raise ConfigError(f"no group {tuple(key)} in the picture")
        return int(found[0])

    def locate(self, key: Sequence[Any], when: float | dt.datetime, panel: int = 0) -> tuple[int, int]:
        """Image pixel (row, column) of group ``key`` at time ``when`` (epoch seconds, a datetime,
        or a row number without time) in panel ``panel``."""
        left, top, width, height = self.panels[panel]
        groups = self._placement.count
        columns = min(groups, width)
        grid_column = math.floor((self.column_of(key) + 0.5) * columns / groups)
        position = when.timestamp() if isinstance(when, dt.datetime) else float(when)
        grid_row = int(self._slots.row_of(np.array([position]))[0])
        # the first pixel of the cell, then the middle of the cell's pixels
        x_first = math.ceil(grid_column * width / columns)
        x_last = math.ceil((grid_column + 1) * width / columns) - 1
        y_first = math.ceil(grid_row * height / self._slots.rows)
        y_last = math.ceil((grid_row + 1) * height / self._slots.rows) - 1
        return top + (y_first + y_last) // 2, left + (x_first + x_last) // 2


@dataclass(frozen=True)
class _Frame:
    """Pixel layout of the figure."""

    left: int
    top: int
    gap: int
    right: int
    bottom: int
    width: int
    height: int
    panels: int

    @property
    def total_width(self) -> int:
        return self.left + self.panels * self.width + (self.panels - 1) * self.gap + self.right

    @property
    def total_height(self) -> int:
        return self.top + self.height + self.bottom

    def panel(self, index: int) -> tuple[int, int, int, int]:
        return self.left + index * (self.width + self.gap), self.top, self.width, self.height


def _key_texts(placement: _Placement) -> list[str]:
    """Each group's key as text, in column order: ``10.0.0.1 → 10.0.0.2`` for a pair."""
    separator = " → " if len(placement.by) == 2 else ", "
    parts = [pl.col(name).cast(pl.String).fill_null("–") for name in placement.by]
    return placement.groups.select(pl.concat_str(parts, separator=separator).alias("k"))["k"].to_list()


def _draw(scene: _Scene, width: int, height: int) -> GroupsPicture:
    started = clock.perf_counter()
    images, grown = _panel_images(scene, width, height)
    placement, slots = scene.placement, scene.slots
    labelled = placement.count <= LABELLED_GROUPS
    key_texts = _key_texts(placement) if labelled else []
    longest = max((len(t) for t in key_texts), default=0)
    bottom = 62 if not labelled else 40 + int(min(longest, 40) * 5.4)
    has_classes = any(layer.codes is not None for layer in scene.layers)
    right = (250 if has_classes else 0) + (150 if scene.scale is not None else 0)
    layout = _Frame(
        left=110, top=78, gap=36, right=right, bottom=bottom, width=width, height=height, panels=len(images)
    )
    figure = Figure(figsize=(layout.total_width / DPI, layout.total_height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    total_w, total_h = layout.total_width, layout.total_height
    if slots.by_time:
        t_top = mdates.date2num(np.datetime64(round(slots.start * 1e6), "us"))
        t_bottom = mdates.date2num(np.datetime64(round(slots.end * 1e6), "us"))
    else:
        t_top, t_bottom = slots.start, slots.end
    boxes = []
    for index, layer in enumerate(scene.layers):
        left, top, w, h = layout.panel(index)
        boxes.append((left, top, w, h))
        axes = figure.add_axes((left / total_w, (total_h - top - h) / total_h, w / total_w, h / total_h))
        axes.patch.set_visible(False)
        axes.set_xlim(0, placement.count)
        axes.set_ylim(t_bottom, t_top)
        for spine in axes.spines.values():
            spine.set_visible(False)  # a frame is drawn around the pasted picture instead
        _x_axis(axes, placement, key_texts)
        _y_axis(axes, slots, index == 0)
        axes.set_title(scene.panel_titles[layer.name], fontsize=11, loc="left", pad=6)
    heading = scene.title or _heading(placement)
    figure.text(layout.left / total_w, 1 - 14 / total_h, heading, fontsize=13, weight="bold", va="top")
    figure.text(
        layout.left / total_w, 1 - 38 / total_h, scene.subtitle, fontsize=9, color="#4a535e", va="top"
    )
    legend_left = layout.left + layout.panels * layout.width + (layout.panels - 1) * layout.gap + 22
    if has_classes:
        _class_legend(figure, scene, legend_left / total_w, 1 - layout.top / total_h, grown)
    if scene.scale is not None:
        bar_left = legend_left + (250 if has_classes else 0)
        _score_bar(figure, scene, layout, bar_left, layout.top + 50.0)
    png = _compose(figure, images, boxes)
    log.debug("flow-groups picture drawn in %.2f s", clock.perf_counter() - started)
    return GroupsPicture(
        png=png,
        colourings=tuple(layer.name for layer in scene.layers),
        panels=tuple(boxes),
        groups=placement.groups,
        colours={name: scene.classes.shown(name) for name in scene.classes.names} if scene.classes else {},
        slot_seconds=slots.size,
        _placement=placement,
        _slots=slots,
    )


def _heading(placement: _Placement) -> str:
    when = "over time" if placement.by_time else "in input order"
    return f"Flows grouped by {', '.join(placement.by)} {when}"


def _compose(figure: Figure, images: list[np.ndarray], boxes: list[tuple[int, int, int, int]]) -> bytes:
    """The figure's axes, labels and legend with each panel's picture pasted in pixel for pixel, and
    a thin frame around each panel, as PNG bytes."""
    from PIL import Image

    figure.patch.set_facecolor("white")
    canvas = figure.canvas
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3].copy()  # type: ignore[attr-defined]
    frame = np.array(_rgb("#8a939e"), dtype=np.uint8)
    for image, (left, top, width, height) in zip(images, boxes, strict=True):
        pixels[top : top + height, left : left + width] = image
        pixels[top - 1, left - 1 : left + width + 1] = frame
        pixels[top + height, left - 1 : left + width + 1] = frame
        pixels[top - 1 : top + height + 1, left - 1] = frame
        pixels[top - 1 : top + height + 1, left + width] = frame
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def _x_axis(axes: Axes, placement: _Placement, key_texts: list[str]) -> None:
    if key_texts:
        axes.set_xticks(np.arange(placement.count) + 0.5)
        axes.set_xticklabels([_short(text, 40) for text in key_texts], rotation=90, fontsize=7.5)
        axes.tick_params(axis="x", length=2)
    else:
        axes.xaxis.set_major_locator(ticker.MaxNLocator(nbins=6, integer=True, min_n_ticks=3))
        axes.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _count_text(v)))
        axes.tick_params(axis="x", labelsize=8.5)
    axes.set_xlabel(_x_label(placement), fontsize=9, labelpad=4)


def _x_label(placement: _Placement) -> str:
    noun = "group" if placement.count == 1 else "groups"
    return f"{placement.count:,} {noun} of ({', '.join(placement.by)}), {_ORDER_TEXT[placement.order]}"


def _y_axis(axes: Axes, slots: _Slots, first: bool) -> None:
    axes.tick_params(axis="y", labelsize=8.5, labelleft=first)
    if not slots.by_time:
        axes.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: _count_text(v)))
        if first:
            axes.set_ylabel("row of the input (no time column)", fontsize=9)
        return
    span = slots.end - slots.start
    locator = mdates.AutoDateLocator(minticks=4, maxticks=12, tz=dt.UTC)
    axes.yaxis.set_major_locator(locator)
    same_day = _utc(slots.start)[:10] == _utc(slots.end - 1e-6)[:10]
    if span < 600:
        pattern = "%H:%M:%S"
    elif same_day or span <= 86400:
        pattern = "%H:%M"
    else:
        pattern = "%m-%d %H:%M"
    axes.yaxis.set_major_formatter(mdates.DateFormatter(pattern, tz=dt.UTC))
    if first:
        axes.set_ylabel(f"time (UTC) on {_utc(slots.start)[:10]}" if same_day else "time (UTC)", fontsize=9)


def _class_legend(figure: Figure, scene: _Scene, x: float, y: float, spread: bool) -> float:
    """The classes with their colours and flow counts, from (``x``, ``y``) down; returns the
    figure height fraction where the legend ends."""
    assert scene.classes is not None
    classes = scene.classes
    shown = [layer.name for layer in scene.layers if layer.codes is not None]
    compact = len(classes.names) > 10
    handles = []
    for name in classes.names:
        numbers = [classes.counts.get(layer, {}).get(name, 0) for layer in shown]
        if len(shown) == 1:
            detail = f"{numbers[0]:,} flows" if not compact else _count_text(numbers[0])
        else:
            detail = " / ".join(f"{_count_text(n)}" for n in numbers)
        # one line per class when compact: shorter names leave room for several counts
        text = _short(name, 24 if not compact or len(shown) == 1 else 15)
        label = f"{text} ({detail})" if compact else f"{text}\n{detail}"
        handles.append(Patch(facecolor=classes.shown(name), edgecolor="none", label=label))
    header = "class (flows)" if len(shown) == 1 else "class (flows: " + " / ".join(shown) + ")"
    legend = figure.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(x, y),
        frameon=False,
        fontsize=8 if compact else 8.5,
        title=header,
        title_fontsize=9,
        alignment="left",
        handlelength=1.4,
        handleheight=1.1 if compact else 1.4,
        labelspacing=0.45 if compact else 0.8,
        borderaxespad=0,
        borderpad=0,
    )
    legend.set_zorder(3)
    box = legend.get_window_extent(figure.canvas.get_renderer())  # type: ignore[attr-defined]
    bottom = box.y0 / figure.bbox.height
    note = "Each cell: the class most of\nits flows have (ties: the attack).\nBlank: no flows."
    if spread:
        note += "\nAttack cells are drawn one cell\nlarger, so single cells show."
    text = figure.text(x, bottom - 0.03, note, fontsize=7.5, color="#5a6470", va="top", linespacing=1.35)
    extent = text.get_window_extent(figure.canvas.get_renderer())  # type: ignore[attr-defined]
    return extent.y0 / figure.bbox.height


def _score_bar(figure: Figure, scene: _Scene, layout: _Frame, left: int, top: float) -> None:
    """The score colour scale, from ``top`` (pixels from the figure's top) to the panels' bottom,
    with the threshold marked."""
    scale = scene.scale
    assert scale is not None
    total_w, total_h = layout.total_width, layout.total_height
    bottom = total_h - layout.top - layout.height
    height = max(total_h - top - bottom, 80.0)
    axes = figure.add_axes((left / total_w, bottom / total_h, 16 / total_w, height / total_h))
    from matplotlib.colorbar import ColorbarBase

    bar = ColorbarBase(axes, cmap=scale.colormap, norm=scale.norm, orientation="vertical")
    bar.outline.set_edgecolor("#8a939e")
    axes.tick_params(labelsize=8)
    low, high = (float(v) for v in scale.transform(np.array([scale.low, scale.high])))
    if scale.log:  # 1, 2 and 5 times powers of ten (only the powers when there are many)
        powers = range(math.floor(low), math.ceil(high) + 1)
        ticks = [math.log10(m) + k for k in powers for m in (1, 2, 5) if low <= math.log10(m) + k <= high]
        if len(ticks) > 7:
            ticks = [float(k) for k in powers if low <= k <= high]
    else:
        ticks = [float(t) for t in ticker.MaxNLocator(nbins=6).tick_values(low, high) if low <= t <= high]
    threshold = None
    if scale.threshold is not None:
        threshold = float(scale.transform(np.array([scale.threshold]))[0])
        norm = scale.norm
        ticks = [t for t in ticks if abs(float(norm(t)) - float(norm(threshold))) > 0.07] + [threshold]
        axes.axhline(threshold, color="black", linewidth=1.6)

    def label(value: float, _: Any) -> str:
        shown = 10**value if scale.log else value
        if threshold is not None and abs(value - threshold) < 1e-12 * max(1.0, abs(threshold)):
            return f"threshold {_general(shown)}"
        return _general(shown)

    axes.yaxis.set_major_locator(ticker.FixedLocator(sorted(ticks)))
    axes.yaxis.set_major_formatter(ticker.FuncFormatter(label))
    axes.yaxis.set_minor_locator(ticker.NullLocator())
    for text in axes.get_yticklabels():
        if text.get_text().startswith("threshold"):
            text.set_fontweight("bold")
    axes.set_title(
        "highest score\nin the cell" + ("\n(log scale)" if scale.log else ""), fontsize=8.5, loc="left"
    )


# --------------------------------------------------------------------------------------------------
# public entry points


def draw_groups(
    frame: pl.DataFrame,
    *,
    by: str | Sequence[str] = DEFAULT_BY,
    color: str | Sequence[str] = "label",
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    time_bin: str | float | None = None,
    order: str = "hash",
    start: str | dt.datetime | None = None,
    end: str | dt.datetime | None = None,
    threshold: float | None = None,
    colours: Mapping[str, str] | None = None,
    spread: int | None = None,
    title: str | None = None,
    source: str | Path | None = None,
    model: str | None = None,
    panel_titles: Mapping[str, str] | None = None,
) -> GroupsPicture:
    """The flow-groups picture of ``frame`` (canonical flows; for ``prediction``/``score`` a scored
    table as :func:`nadkit.detect.score_table` gives it), with its layout.

    ``by``: grouping keys (see :func:`parse_by`); ``color``: one or several of ``label``,
    ``prediction``, ``score`` (several: panels side by side). ``width`` x ``height``: pixels of each
    panel's picture area. ``time_bin``: length of a time slot (default: a round length that fits
    ``height`` rows). ``order``: ``hash`` (arbitrary but fixed), ``first`` or ``size``.
    ``start``/``end``: a time window. ``colours``: colours of class names (default: the report's).
    ``spread``: how many cells attack cells (and high scores) grow into their neighbours, so that
    single cells stay visible (default: 1 where cells are smaller than 3 pixels, else 0).
    ``panel_titles``: titles of the colourings' panels in place of the defaults (``label``: "true
    label", ...), e.g. when the labels are analysts' verdicts.
    """
    width, height = _check_size("width", width), _check_size("height", height)
    scene = _scene(
        frame,
        by=by,
        color=color,
        rows=height,
        time_bin=time_bin,
        order=order,
        start=start,
        end=end,
        threshold=threshold,
        colours=colours,
        spread=spread,
        title=title,
        source=source,
        model=model,
        panel_titles=panel_titles,
    )
    height = max(height, min(scene.slots.rows, MAX_SIZE))
    return _draw(scene, width, height)


def render_groups(
    frame: pl.DataFrame,
    *,
    by: str | Sequence[str] = DEFAULT_BY,
    color: str | Sequence[str] = "label",
    **options: Any,
) -> bytes:
    """The flow-groups picture of ``frame`` as PNG bytes (options as :func:`draw_groups`)."""
    return draw_groups(frame, by=by, color=color, **options).png


# --------------------------------------------------------------------------------------------------
# the interactive page


def groups_html(
    frame: pl.DataFrame,
    *,
    by: str | Sequence[str] = DEFAULT_BY,
    color: str | Sequence[str] = "label",
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    time_bin: str | float | None = None,
    order: str = "hash",
    start: str | dt.datetime | None = None,
    end: str | dt.datetime | None = None,
    threshold: float | None = None,
    colours: Mapping[str, str] | None = None,
    spread: int | None = None,
    title: str | None = None,
    source: str | Path | None = None,
    model: str | None = None,
    levels: int = HTML_MAX_LEVEL,
) -> str:
    """A self-contained HTML page showing the flow-groups picture with zoom (mouse wheel) and pan
    (drag): each zoom level is a grid of image tiles aggregated at that level's resolution, so
    zooming in shows real detail. The page holds every tile; it references nothing outside itself.
    Several colourings give one view per colouring, zoomed and panned together."""
    width, height = _check_size("width", width), _check_size("height", height)
    scene = _scene(
        frame,
        by=by,
        color=color,
        rows=height,
        time_bin=time_bin,
        order=order,
        start=start,
        end=end,
        threshold=threshold,
        colours=colours,
        spread=spread,
        title=title,
        source=source,
        model=model,
    )
    started = clock.perf_counter()
    document = _page(scene, width, height, max(0, min(int(levels), HTML_MAX_LEVEL)))
    log.debug("interactive flow-groups page built in %.2f s", clock.perf_counter() - started)
    return document


def _fine_slots(scene: _Scene, height: int, levels: int) -> _Slots:
    """The finest time slots of the page: the picture's slots cut further for the zoom levels,
    never finer than the time resolution of the data."""
    slots = scene.slots
    if not slots.by_time or scene.placement.flows < 2:
        return slots
    positions = scene.placement.position
    whole = bool(np.all(positions == np.floor(positions)))
    quantum = 1.0 if whole else 1e-6
    wanted = (slots.end - slots.start) / (height * 2**levels)
    size = max(quantum, wanted)
    if whole:
        size = next((s for s in _SLOTS if s >= size), size)
    size = min(size, slots.size)
    count = math.ceil((slots.end - slots.start) / size)
    return _Slots(slots.start, size, min(count, 2_000_000_000), by_time=True)


def _tile_png(scene: _Scene, cells: np.ndarray) -> str:
    """One tile as a PNG data URI, one pixel per cell (the page scales it without smoothing); class
    cells as a palette image."""
    from PIL import Image

    buffer = io.BytesIO()
    if cells.dtype.kind == "i":
        assert scene.classes is not None
        indices = np.where(cells < 0, len(scene.classes.names), cells).astype(np.uint8)
        picture = Image.fromarray(indices, mode="L")
        palette = np.vstack([scene.classes.palette, _EMPTY_RGB[None, :]])
        picture = picture.convert("P")
        picture.putpalette(palette.ravel().tolist())
    else:
        picture = Image.fromarray(_rgb_cells(scene, cells), mode="RGB")
    picture.save(buffer, format="PNG", compress_level=3)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _page(scene: _Scene, width: int, height: int, max_level: int) -> str:
    placement, slots = scene.placement, scene.slots
    fine = _fine_slots(scene, height, max_level)
    groups = placement.count
    extent = (slots.end - slots.start) / fine.size  # height of the whole picture in fine slots
    x_all = placement.column.astype(np.float64) + 0.5
    # level 0 is the picture itself: its own time slots, one tile
    columns = min(groups, width)
    y_coarse = slots.centre_of(placement.position)
    first_level: list[list[list[str | None]]] = []
    for layer in scene.layers:
        cells = _cells(scene, layer, columns, (0.0, float(groups)), slots.rows, (0.0, float(slots.rows)),
                       x_all, y_coarse)  # fmt: skip
        spread = _spread_amount(scene, width / columns, height / slots.rows)
        first_level.append([[_tile_png(scene, _finish(scene, cells, spread))]])
    level_info: list[dict[str, Any]] = [{"groups": groups, "rows": extent, "tiles": first_level}]
    if groups <= width and fine.rows <= slots.rows:
        max_level = 0  # the picture already shows every group and every time slot
    row_all = fine.row_of(placement.position).astype(np.int64)
    order = np.argsort(row_all, kind="stable")
    sorted_rows = row_all[order]
    x_sorted = x_all[order]
    y_sorted = sorted_rows.astype(np.float64) + 0.5
    layer_data = [
        (
            layer,
            None if layer.codes is None else layer.codes[order],
            None if layer.values is None else layer.values[order],
        )
        for layer in scene.layers
    ]
    for level in range(1, max_level + 1):
        per_side = 2**level
        group_span = math.ceil(groups / per_side)
        row_span = math.ceil(fine.rows / per_side)
        columns = min(group_span, width)
        cell_rows = min(row_span, height)
        tiles: list[list[list[str | None]]] = [[] for _ in scene.layers]
        for tile_row in range(per_side):
            low_row, high_row = tile_row * row_span, (tile_row + 1) * row_span
            first, last = (int(i) for i in np.searchsorted(sorted_rows, [low_row, high_row]))
            band: list[list[str | None]] = [[None] * per_side for _ in scene.layers]
            x_band = x_sorted[first:last]
            for tile_column in range(per_side):
                low_group, high_group = tile_column * group_span, (tile_column + 1) * group_span
                if first == last or low_group >= groups:
                    continue
                inside = (x_band >= low_group) & (x_band < high_group)
                if not inside.any():
                    continue
                for index, (layer, codes, values) in enumerate(layer_data):
                    sub = _Layer(
                        layer.name,
                        codes=None if codes is None else codes[first:last][inside],
                        values=None if values is None else values[first:last][inside],
                    )
                    cells = _cells(
                        scene,
                        sub,
                        columns,
                        (float(low_group), float(high_group)),
                        cell_rows,
                        (float(low_row), float(high_row)),
                        x_band[inside],
                        y_sorted[first:last][inside],
                    )
                    spread = _spread_amount(scene, width / columns, height / cell_rows)
                    band[index][tile_column] = _tile_png(scene, _finish(scene, cells, spread))
            for index in range(len(scene.layers)):
                tiles[index].append(band[index])
        level_info.append({"groups": group_span, "rows": row_span, "tiles": tiles})
        if group_span <= width and row_span <= height:
            break
    payload = _page_payload(scene, fine, extent, width, height, level_info)
    return _PAGE.replace("__TITLE__", html.escape(payload["title"])).replace(
        "__DATA__", json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")
    )


def _page_payload(
    scene: _Scene, fine: _Slots, extent: float, width: int, height: int, levels: list[dict[str, Any]]
) -> dict[str, Any]:
    placement = scene.placement
    keys = _key_texts(placement) if placement.count <= HTML_KEYED_GROUPS else None
    legend: list[dict[str, Any]] = []
    if scene.classes is not None:
        shown = [layer.name for layer in scene.layers if layer.codes is not None]
        for name in scene.classes.names:
            legend.append(
                {
                    "name": name,
                    "colour": scene.classes.shown(name),
                    "counts": {layer: scene.classes.counts.get(layer, {}).get(name, 0) for layer in shown},
                }
            )
    scale = None
    if scene.scale is not None:
        stops = np.linspace(0.0, 1.0, 64)
        norm = scene.scale.norm
        low, high = float(norm.vmin), float(norm.vmax)  # type: ignore[arg-type]
        values = norm.inverse(stops) if hasattr(norm, "inverse") else low + stops * (high - low)
        scale = {
            "colours": [mcolors.to_hex(c) for c in scene.scale.colormap(stops)],
            "values": [float(v) for v in np.asarray(values)],
            "log": scene.scale.log,
            "threshold": scene.scale.threshold,
        }
    return {
        "title": scene.title or _heading(placement),
        "subtitle": scene.subtitle,
        "panels": [scene.panel_titles[layer.name] for layer in scene.layers],
        "width": width,
        "height": height,
        "groups": placement.count,
        "xlabel": _x_label(placement),
        "rows": extent,
        "time": fine.by_time,
        "start": fine.start,
        "slot": fine.size,
        "keys": keys,
        "legend": legend,
        "scale": scale,
        "levels": levels,
    }


_PAGE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1d232b;
  margin: 16px 24px; background: #fff; }
h1 { font-size: 1.3em; margin: 0 0 2px; }
p.sub { color: #4a535e; font-size: 0.9em; margin: 0 0 8px; }
p.help { color: #5a6470; font-size: 0.85em; margin: 4px 0 10px; }
button { font-size: 0.85em; margin-left: 8px; }
div.row { display: flex; align-items: flex-start; gap: 18px; flex-wrap: wrap; }
div.panel h2 { font-size: 0.95em; font-weight: 600; margin: 0 0 4px 76px; }
canvas { display: block; cursor: grab; }
canvas.dragging { cursor: grabbing; }
div.legend { font-size: 0.85em; min-width: 180px; max-width: 260px; }
div.legend div.item { margin: 4px 0; }
div.legend span.swatch { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 2px;
  margin-right: 6px; vertical-align: -1px; }
div.legend span.count { color: #5a6470; }
div#tip { position: fixed; pointer-events: none; background: rgba(29, 35, 43, 0.92); color: #fff;
  font-size: 0.8em; padding: 5px 8px; border-radius: 4px; display: none; white-space: pre; z-index: 5; }
</style></head><body>
<script type="application/json" id="picture-data">__DATA__</script>
<h1 id="title"></h1>
<p class="sub" id="subtitle"></p>
<p class="help">Scroll to zoom (hold Shift to zoom time only, Alt for groups only), drag to pan,
double-click or <button id="reset" type="button">reset</button> to see everything.</p>
<div class="row" id="views"></div>
<div id="tip"></div>
<script>
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("picture-data").textContent);
  const M = { left: 76, top: 8, right: 14, bottom: 46 };
  const W = data.width, H = data.height;
  const full = { x0: 0, x1: data.groups, y0: 0, y1: data.rows };
  let view = Object.assign({}, full);
  document.getElementById("title").textContent = data.title;
  document.getElementById("subtitle").textContent = data.subtitle;
  const views = document.getElementById("views");
  const tip = document.getElementById("tip");
  const canvases = [];
  const cache = new Map();

  data.panels.forEach(function (name, index) {
    const panel = document.createElement("div");
    panel.className = "panel";
    const heading = document.createElement("h2");
    heading.textContent = name;
    panel.appendChild(heading);
    const canvas = document.createElement("canvas");
    const ratio = window.devicePixelRatio || 1;
    canvas.width = (W + M.left + M.right) * ratio;
    canvas.height = (H + M.top + M.bottom) * ratio;
    canvas.style.width = (W + M.left + M.right) + "px";
    canvas.style.height = (H + M.top + M.bottom) + "px";
    canvas.dataset.index = String(index);
    panel.appendChild(canvas);
    views.appendChild(panel);
    canvases.push(canvas);
  });
  views.appendChild(legend());

  function legend() {
    const box = document.createElement("div");
    box.className = "legend";
    if (data.legend.length) {
      const shown = Object.keys(data.legend[0].counts);
      const head = document.createElement("div");
      head.innerHTML = "<strong>class</strong> <span class=\"count\">(flows: " +
        shown.join(" / ") + ")</span>";
      box.appendChild(head);
      data.legend.forEach(function (entry) {
        const item = document.createElement("div");
        item.className = "item";
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = entry.colour;
        const label = document.createElement("span");
        label.textContent = entry.name + " ";
        const count = document.createElement("span");
        count.className = "count";
        const numbers = shown.map(function (k) { return entry.counts[k].toLocaleString("en"); });
        count.textContent = "(" + numbers.join(" / ") + ")";
        item.appendChild(swatch); item.appendChild(label); item.appendChild(count);
        box.appendChild(item);
      });
      const note = document.createElement("p");
      note.className = "help";
      note.textContent = "Each cell is coloured by the class most of its flows have (ties: the attack).";
      box.appendChild(note);
    }
    if (data.scale) {
      const head = document.createElement("div");
      head.innerHTML = "<strong>highest score in the cell</strong>" + (data.scale.log ? " (log scale)" : "");
      box.appendChild(head);
      const bar = document.createElement("canvas");
      bar.width = 150; bar.height = 16;
      const ctx = bar.getContext("2d");
      data.scale.colours.forEach(function (c, i) {
        const step = bar.width / data.scale.colours.length;
        ctx.fillStyle = c; ctx.fillRect(i * step, 0, step + 1, 16);
      });
      box.appendChild(bar);
      const ends = document.createElement("div");
      ends.className = "count";
      const v = data.scale.values;
      const shown = function (x) { return data.scale.log ? Math.pow(10, x) : x; };
      ends.textContent = fmt(shown(v[0])) + " … " + fmt(shown(v[v.length - 1])) +
        (data.scale.threshold !== null ? "  (threshold " + fmt(data.scale.threshold) + ")" : "");
      box.appendChild(ends);
    }
    return box;
  }

  function fmt(value) {
    if (value === 0) return "0";
    const a = Math.abs(value);
    return (a >= 1e5 || a < 1e-3) ? value.toExponential(2) : String(Number(value.toPrecision(4)));
  }

  function image(uri) {
    let entry = cache.get(uri);
    if (!entry) {
      entry = new Image();
      entry.onload = schedule;
      entry.src = uri;
      cache.set(uri, entry);
    }
    return entry.complete && entry.naturalWidth ? entry : null;
  }

  function chooseLevel() {
    const zoom = Math.max((full.x1 - full.x0) / (view.x1 - view.x0),
      (full.y1 - full.y0) / (view.y1 - view.y0));
    let level = Math.max(0, Math.ceil(Math.log2(zoom) - 1e-9));
    return Math.min(level, data.levels.length - 1);
  }

  function drawLevel(ctx, panel, level, sx, sy) {
    const info = data.levels[level];
    const tiles = info.tiles[panel];
    let complete = true;
    for (let r = 0; r < tiles.length; r++) {
      const y0 = r * info.rows, y1 = y0 + info.rows;
      if (y1 <= view.y0 || y0 >= view.y1) continue;
      for (let c = 0; c < tiles[r].length; c++) {
        const x0 = c * info.groups, x1 = x0 + info.groups;
        if (x1 <= view.x0 || x0 >= view.x1 || !tiles[r][c]) continue;
        const img = image(tiles[r][c]);
        if (!img) { complete = false; continue; }
        const px = M.left + (x0 - view.x0) * sx, py = M.top + (y0 - view.y0) * sy;
        ctx.drawImage(img, px, py, info.groups * sx, info.rows * sy);
      }
    }
    return complete;
  }

  function ticksX(ctx, sx) {
    const span = view.x1 - view.x0;
    const step = niceStep(span / 6, [1, 2, 5]);
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    for (let v = Math.ceil(view.x0 / step) * step; v <= view.x1; v += step) {
      const px = M.left + (v - view.x0) * sx;
      line(ctx, px, M.top + H, px, M.top + H + 4);
      ctx.fillText(compact(v), px, M.top + H + 6);
    }
    ctx.fillText(data.xlabel, M.left + W / 2, M.top + H + 26);
  }

  const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
    43200, 86400, 172800, 604800];

  function ticksY(ctx, sy) {
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    if (!data.time) {
      const step = niceStep((view.y1 - view.y0) * data.slot / 8, [1, 2, 5]);
      for (let v = Math.ceil(view.y0 * data.slot / step) * step; v <= view.y1 * data.slot; v += step) {
        const py = M.top + (v / data.slot - view.y0) * sy;
        line(ctx, M.left - 4, py, M.left, py);
        ctx.fillText(compact(v), M.left - 6, py);
      }
      return;
    }
    const t0 = data.start + view.y0 * data.slot, t1 = data.start + view.y1 * data.slot;
    const wanted = (t1 - t0) / 8;
    let step = TIME_STEPS.find(function (s) { return s >= wanted; });
    if (step === undefined) step = TIME_STEPS[TIME_STEPS.length - 1];
    if (wanted < 1) step = niceStep(wanted, [1, 2, 5]);
    const withDate = (t1 - t0) > 86400 ||
      new Date(t0 * 1000).getUTCDate() !== new Date((t1 - 0.001) * 1000).getUTCDate();
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
      const py = M.top + ((t - data.start) / data.slot - view.y0) * sy;
      line(ctx, M.left - 4, py, M.left, py);
      ctx.fillText(timeText(t, step, withDate), M.left - 6, py);
    }
  }

  function timeText(t, step, withDate) {
    const iso = new Date(t * 1000).toISOString();
    let text = step < 60 ? iso.slice(11, 19) : iso.slice(11, 16);
    if (step < 1) text = iso.slice(11, 23);
    if (withDate) text = iso.slice(5, 10) + " " + text;
    return text;
  }

  function niceStep(raw, mantissas) {
    const power = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1e-12))));
    for (const m of mantissas) { if (m * power >= raw) return m * power; }
    return 10 * power;
  }

  function compact(v) {
    const a = Math.abs(v);
    if (a >= 1e6) return (v / 1e6).toPrecision(3) + "M";
    if (a >= 1e3) return (v / 1e3).toPrecision(3) + "k";
    return String(Math.round(v * 100) / 100);
  }

  function line(ctx, x0, y0, x1, y1) {
    ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); ctx.stroke();
  }

  let pending = false;
  function schedule() {
    if (pending) return;
    pending = true;
    window.requestAnimationFrame(function () { pending = false; draw(); });
  }

  function draw() {
    const level = chooseLevel();
    canvases.forEach(function (canvas, panel) {
      const ratio = canvas.width / (W + M.left + M.right);
      const ctx = canvas.getContext("2d");
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.clearRect(0, 0, W + M.left + M.right, H + M.top + M.bottom);
      ctx.fillStyle = "#fff";
      ctx.fillRect(M.left, M.top, W, H);
      const sx = W / (view.x1 - view.x0), sy = H / (view.y1 - view.y0);
      ctx.save();
      ctx.beginPath(); ctx.rect(M.left, M.top, W, H); ctx.clip();
      ctx.imageSmoothingEnabled = false;
      if (!drawLevel(ctx, panel, level, sx, sy)) {
        ctx.fillStyle = "#fff"; ctx.fillRect(M.left, M.top, W, H);
        drawLevel(ctx, panel, 0, sx, sy);
        drawLevel(ctx, panel, level, sx, sy);
      }
      ctx.restore();
      ctx.strokeStyle = "#8a939e"; ctx.fillStyle = "#1d232b";
      ctx.font = "11px sans-serif";
      ctx.strokeRect(M.left + 0.5, M.top + 0.5, W - 1, H - 1);
      ticksX(ctx, sx);
      ticksY(ctx, sy);
    });
  }

  function clamp() {
    const w = Math.min(view.x1 - view.x0, full.x1 - full.x0);
    const h = Math.min(view.y1 - view.y0, full.y1 - full.y0);
    view.x0 = Math.min(Math.max(view.x0, full.x0), full.x1 - w); view.x1 = view.x0 + w;
    view.y0 = Math.min(Math.max(view.y0, full.y0), full.y1 - h); view.y1 = view.y0 + h;
  }

  function toData(canvas, event) {
    const box = canvas.getBoundingClientRect();
    const px = event.clientX - box.left - M.left, py = event.clientY - box.top - M.top;
    return { inside: px >= 0 && py >= 0 && px < W && py < H,
      x: view.x0 + px / W * (view.x1 - view.x0), y: view.y0 + py / H * (view.y1 - view.y0), px: px, py: py };
  }

  let drag = null;
  canvases.forEach(function (canvas) {
    canvas.addEventListener("wheel", function (event) {
      const at = toData(canvas, event);
      if (!at.inside) return;
      event.preventDefault();
      const factor = Math.pow(1.0015, event.deltaY);
      const minW = Math.max(2, (full.x1 - full.x0) / 1e6), minH = Math.max(2, (full.y1 - full.y0) / 1e6);
      if (!event.shiftKey) {
        const w = Math.max(minW, (view.x1 - view.x0) * factor);
        view.x0 = at.x - (at.x - view.x0) * w / (view.x1 - view.x0); view.x1 = view.x0 + w;
      }
      if (!event.altKey) {
        const h = Math.max(minH, (view.y1 - view.y0) * factor);
        view.y0 = at.y - (at.y - view.y0) * h / (view.y1 - view.y0); view.y1 = view.y0 + h;
      }
      clamp(); schedule();
    }, { passive: false });
    canvas.addEventListener("mousedown", function (event) {
      drag = { x: event.clientX, y: event.clientY, view: Object.assign({}, view) };
      canvas.classList.add("dragging");
    });
    canvas.addEventListener("dblclick", function () { view = Object.assign({}, full); schedule(); });
    canvas.addEventListener("mousemove", function (event) {
      const at = toData(canvas, event);
      if (!at.inside || drag) { tip.style.display = "none"; return; }
      const group = Math.floor(at.x);
      const key = data.keys && group < data.keys.length ? data.keys[group]
        : "group " + (group + 1).toLocaleString("en");
      let when;
      if (data.time) {
        const t = data.start + Math.floor(at.y) * data.slot;
        when = new Date(t * 1000).toISOString().replace("T", " ").slice(0, data.slot < 1 ? 23 : 19) + " UTC";
      } else {
        when = "row " + Math.floor(at.y * data.slot).toLocaleString("en");
      }
      tip.textContent = key + "\n" + when;
      tip.style.left = (event.clientX + 14) + "px"; tip.style.top = (event.clientY + 12) + "px";
      tip.style.display = "block";
    });
    canvas.addEventListener("mouseleave", function () { tip.style.display = "none"; });
  });
  window.addEventListener("mousemove", function (event) {
    if (!drag) return;
    const dx = (event.clientX - drag.x) / W * (drag.view.x1 - drag.view.x0);
    const dy = (event.clientY - drag.y) / H * (drag.view.y1 - drag.view.y0);
    view = { x0: drag.view.x0 - dx, x1: drag.view.x1 - dx, y0: drag.view.y0 - dy, y1: drag.view.y1 - dy };
    clamp(); schedule();
  });
  window.addEventListener("mouseup", function () {
    drag = null; canvases.forEach(function (c) { c.classList.remove("dragging"); });
  });
  document.getElementById("reset").addEventListener("click", function () {
    view = Object.assign({}, full); schedule();
  });
  draw();
})();
</script>
</body></html>
"""


# --------------------------------------------------------------------------------------------------
# an alert's explanation


def plot_alert(alert_record: Mapping[str, Any]) -> bytes:
    """A bar chart (PNG bytes) of the features that contributed most to one alert's score, each with
    the flow's raw value behind it, and the rest of the score as one grey bar."""
    features = alert_record.get("top_features")
    if not isinstance(features, list | tuple) or not features:
        raise ConfigError("the record has no feature contributions (top_features); it is not an alert")
    names, values, contributions = [], [], []
    for entry in features:
        if not isinstance(entry, Mapping) or "feature" not in entry or "contribution" not in entry:
            raise ConfigError("top_features entries need 'feature' and 'contribution'")
        try:
            contribution = float(entry["contribution"])
        except (TypeError, ValueError):
            raise ConfigError(f"feature {entry['feature']!r}: contribution is not a number") from None
        names.append(str(entry["feature"]))
        values.append(entry.get("value"))
        contributions.append(contribution)
    score = _number(alert_record.get("score"))
    threshold = _number(alert_record.get("threshold"))
    rest = score - sum(contributions) if score is not None else None
    labels = [
        _short(f"{name} = {value}" if value not in (None, "") else name, 48)
        for name, value in zip(names, values, strict=True)
    ]
    bars = list(contributions)
    colours = ["#d62728" if c >= 0 else NORMAL_COLOUR for c in contributions]
    if rest is not None and abs(rest) > 1e-12 * max(1.0, abs(score or 0.0)):
        labels.append("all other features")
        bars.append(rest)
        colours.append("#b0b7bf")
    rows = len(bars)
    width, height = 9.5, 1.75 + 0.42 * rows  # inches
    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)
    label_inches = 0.25 + 0.068 * max(len(label) for label in labels)  # 9-point labels
    figure.subplots_adjust(
        left=min(label_inches, 0.5 * width) / width,
        right=1 - 0.3 / width,
        top=1 - 0.78 / height,
        bottom=0.55 / height,
    )
    axes = figure.subplots()
    positions = np.arange(rows)[::-1]
    axes.barh(positions, bars, color=colours, height=0.62)
    axes.set_yticks(positions, labels, fontsize=9)
    axes.axvline(0, color="#4a535e", linewidth=0.9)
    axes.grid(True, axis="x", color="#e3e3e3", linewidth=0.8)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    span = max(abs(min([*bars, 0.0])), abs(max([*bars, 0.0])), 1e-12)
    for y, value in zip(positions, bars, strict=True):
        axes.annotate(
            _general(value),
            xy=(value, y),
            xytext=(4 if value >= 0 else -4, 0),
            textcoords="offset points",
            ha="left" if value >= 0 else "right",
            va="center",
            fontsize=8.5,
        )
    low, high = min([*bars, 0.0]), max([*bars, 0.0])
    axes.set_xlim(low - 0.18 * span if low < 0 else 0, high + 0.22 * span)
    axes.set_xlabel("contribution to the anomaly score")
    headline = "Alert"
    if alert_record.get("row") is not None:
        headline += f" on row {alert_record['row']}"
    if score is not None:
        headline += f": score {_general(score)}"
        if threshold is not None:
            headline += f" (threshold {_general(threshold)})"
    figure.text(0.15 / width, 1 - 0.14 / height, headline, fontsize=12, weight="bold", va="top")
    figure.text(
        0.15 / width, 1 - 0.44 / height, _flow_text(alert_record), fontsize=9, color="#4a535e", va="top"
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", facecolor="white", metadata={"Software": None})
    return buffer.getvalue()


def _flow_text(record: Mapping[str, Any]) -> str:
    """One line naming the flow: time, source and destination, protocol, predicted and true class."""
    parts = []
    if record.get("time"):
        parts.append(str(record["time"]).replace("T", " ").removesuffix("Z"))
    src, dst = record.get("src"), record.get("dst")
    if src is not None or dst is not None:
        left = f"{src or '?'}" + (f":{record['spt']}" if record.get("spt") is not None else "")
        right = f"{dst or '?'}" + (f":{record['dpt']}" if record.get("dpt") is not None else "")
        parts.append(f"{left} → {right}")
    if record.get("proto"):
        parts.append(str(record["proto"]) + (f"/{record['app']}" if record.get("app") else ""))
    if record.get("class"):
        parts.append(f"predicted {record['class']}")
    if record.get("label") is not None:
        parts.append(f"true label {record['label']}")
    return "   ·   ".join(parts) if parts else " "


def load_alert(path: str | Path, row: int) -> dict[str, Any]:
    """The alert of input row ``row`` from an alerts file written by ``nadkit detect`` (JSON lines or
    Parquet)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such alerts file")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        needle = f'"row":{int(row)}'
        seen = 0
        with path.open("r", encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                seen += 1
                if needle not in line.replace(" ", ""):
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise SchemaError(f"line {number} is not JSON ({error.msg})", path=path) from None
                if isinstance(record, dict) and record.get("row") == row:
                    return record
        raise ConfigError(f"{path}: no alert for row {row} among its {seen:,} record(s)")
    if suffix in (".parquet", ".pq"):
        try:
            table = pl.scan_parquet(path).filter(pl.col("row") == row).collect()
        except (pl.exceptions.PolarsError, OSError) as error:
            raise SchemaError(f"could not be read ({str(error).splitlines()[0]})", path=path) from None
        if table.height == 0:
            raise ConfigError(f"{path}: no alert for row {row}")
        record = table.row(0, named=True)
        if isinstance(record.get("time"), dt.datetime):
            record["time"] = record["time"].strftime("%Y-%m-%dT%H:%M:%S")
        return record
    raise ConfigError(
        f"{path}: alerts must be JSON lines (.jsonl) or Parquet (.parquet), as `nadkit detect` writes"
    )


# --------------------------------------------------------------------------------------------------
# files


def _load(
    source: str | Path,
    columns: set[str],
    *,
    by: tuple[str, ...],
    format: str | None,
    mapping: str | None,
) -> pl.DataFrame:
    """The columns of ``source`` the picture needs (those present), read and validated; a grouping
    key's column the input lacks is reported before anything is read."""
    from nadkit.schema import validate
    from nadkit.sources import expand, read_flows, source_module
    from nadkit.sources.base import INVALID_PREFIX, SOURCE_ROW, check_invalid, check_last_row

    lazy, fmt = read_flows(source, format=format, mapping=mapping)
    names = lazy.collect_schema().names()
    for key in by:
        _check_key_column(key, _key_column(key), names, source)
    wanted = [c for c in names if c in columns]
    wanted += [c for c in names if c.startswith(INVALID_PREFIX) and c.removeprefix(INVALID_PREFIX) in columns]
    if SOURCE_ROW in names:
        wanted.append(SOURCE_ROW)
    try:
        frame = lazy.select(wanted).collect() if wanted else lazy.collect()
    except (pl.exceptions.PolarsError, OSError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SchemaError(f"could not be read ({message})", path=source) from error
    frame = check_invalid(frame, source)
    separator = getattr(source_module(fmt), "LAST_ROW_SEPARATOR", None)
    if separator is not None and frame.height:
        files = expand(source)
        for file in files:
            check_last_row(file, rows=frame.height if len(files) == 1 else None, separator=separator)
    validate(frame, path=source)
    return frame


def _needed_columns(by: tuple[str, ...]) -> set[str]:
    return {"time", "label", "score", "threshold", "alert", "class", *(_key_column(key) for key in by)}


def plot_groups_file(
    source: str | Path,
    out: str | Path,
    *,
    by: str | Sequence[str] = DEFAULT_BY,
    color: str | Sequence[str] = "label",
    bundle: Any = None,
    format: str | None = None,
    mapping: str | None = None,
    threshold: float | None = None,
    overwrite: bool = False,
    **options: Any,
) -> Path:
    """Draw the flow-groups picture of the flows in ``source`` into ``out`` (``.png`` or ``.html``),
    atomically. With ``bundle`` (a :class:`~nadkit.bundle.ModelBundle`) the flows are scored first,
    which ``prediction`` and ``score`` colourings need (unless the input is already scored)."""
    out = Path(out)
    kind = out.suffix.lower()
    if kind not in (".png", ".html", ".htm"):
        raise ConfigError(f"{out}: the picture must be .png or .html")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out}: already exists (use --force to replace it)")
    keys, colourings = parse_by(by), parse_colourings(color)
    # check the cheap options before reading anything
    for name in ("width", "height"):
        if name in options:
            _check_size(name, options[name])
    parse_duration(options.get("time_bin"))
    parse_time(options.get("start"), "--start")
    parse_time(options.get("end"), "--end")
    if options.get("order", "hash") not in ORDERS:
        raise ConfigError(f"--order {options['order']!r}: use one of {', '.join(ORDERS)}")
    model = None
    started = clock.perf_counter()
    if bundle is not None:
        from nadkit.detect import score_table

        model = bundle.detector.name
        frame = score_table(bundle, source, format=format, mapping=mapping, threshold=threshold).frame
        log.info(
            "scored %s flows with %s in %.1f s", f"{frame.height:,}", model, clock.perf_counter() - started
        )
    else:
        frame = _load(source, _needed_columns(keys), by=keys, format=format, mapping=mapping)
        if any(c != "label" for c in colourings) and "score" not in frame.columns:
            wanted = next(c for c in colourings if c != "label")
            raise ConfigError(f"--color {wanted} needs a model: give --bundle DIR")
    loaded = clock.perf_counter()
    arguments = dict(by=keys, color=colourings, threshold=threshold, source=source, model=model, **options)
    with atomic_path(out, overwrite=overwrite) as temporary:
        if kind == ".png":
            temporary.write_bytes(render_groups(frame, **arguments))
        else:
            temporary.write_text(groups_html(frame, **arguments), encoding="utf-8")
    log.info(
        "%s drawn from %s flows in %.1f s (reading %.1f s)",
        out,
        f"{frame.height:,}",
        clock.perf_counter() - loaded,
        loaded - started,
    )
    return out


def plot_alert_file(alerts: str | Path, row: int, out: str | Path, *, overwrite: bool = False) -> Path:
    """Draw the feature attribution of the alert of input row ``row`` into ``out`` (PNG)."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"{out}: the picture must be .png")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out}: already exists (use --force to replace it)")
    image = plot_alert(load_alert(alerts, row))
    with atomic_path(out, overwrite=overwrite) as temporary:
        temporary.write_bytes(image)
    return out


# --------------------------------------------------------------------------------------------------
# text


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _general(value: float) -> str:
    return f"{value:.4g}"


def _short(text: str, length: int) -> str:
    text = text if len(text) <= length else text[: length - 1] + "…"
    return text.replace("$", r"\$")


def _count_text(value: float) -> str:
    value = float(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            scaled = value / limit
            return f"{scaled:.3g}{suffix}"
    return f"{value:.0f}"


def _duration_text(seconds: float) -> str:
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
        if seconds >= size and abs(seconds / size - round(seconds / size)) < 1e-9:
            return f"{round(seconds / size)} {unit}"
    if seconds >= 60:
        return f"{seconds / 60:.3g} min"
    if seconds >= 1:
        return f"{seconds:.3g} s"
    return f"{seconds * 1000:.3g} ms"


def _utc(seconds: float) -> str:
    return dt.datetime.fromtimestamp(float(seconds), tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


__all__ = [
    "ALERT",
    "COLOURINGS",
    "DEFAULT_BY",
    "KEY_COLUMNS",
    "ORDERS",
    "GroupsPicture",
    "draw_groups",
    "groups_html",
    "load_alert",
    "parse_by",
    "parse_colourings",
    "parse_duration",
    "plot_alert",
    "plot_alert_file",
    "plot_groups_file",
    "predicted_classes",
    "render_groups",
]
