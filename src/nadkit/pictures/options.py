"""The options of the flow-groups picture, read and checked: grouping keys (``--by``), colourings
(``--color``), time-slot lengths (``--time-bin``), time windows (``--start``/``--end``), picture
sizes and column orders. Each bad value is a :class:`~nadkit.errors.ConfigError` that names the
option, so a caller can check them all before it reads any flows.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Sequence

import numpy as np

from nadkit.errors import ConfigError

#: what a cell's colour can show
COLOURINGS: tuple[str, ...] = ("label", "prediction", "score")
#: how the group columns are ordered: in an arbitrary but fixed order (a hash of the group key: a
#: burst of many groups, such as a sweep, spreads over the whole width and shows as a band), by the
#: time of their first flow, or by their number of flows (largest first)
ORDERS: tuple[str, ...] = ("hash", "first", "size")
ORDER_TEXT = {"hash": "in arbitrary order", "first": "by first appearance", "size": "largest first"}
DEFAULT_BY: tuple[str, ...] = ("src_port", "dst_port")
DEFAULT_WIDTH = 1000
DEFAULT_HEIGHT = 600
#: limits of the picture area of one panel, in pixels
MIN_SIZE, MAX_SIZE = 100, 8000

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
#: a subnet key: ``src_subnet`` or ``dst_subnet``, optionally with an IPv4 prefix length
SUBNET = re.compile(r"^(src|dst)_subnet(?:/(\d{1,2}))?$")
_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")


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
        match = SUBNET.match(key)
        if match and match.group(2) is not None and not 1 <= int(match.group(2)) <= 32:
            raise ConfigError(f"--by {key}: the IPv4 prefix length must be between 1 and 32")
        if not re.match(r"^[A-Za-z0-9_./-]+$", key):
            raise ConfigError(f"--by {key!r}: not a grouping key or column name")
    return keys


def key_column(key: str) -> str:
    """The input column behind grouping key ``key``."""
    subnet = SUBNET.match(key)
    return subnet.group(1) if subnet else KEY_COLUMNS.get(key, key)


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


def check_size(name: str, value: int) -> int:
    """``value`` as the width or height (``name``) of a panel, in pixels."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or not MIN_SIZE <= value <= MAX_SIZE
    ):
        raise ConfigError(f"--{name} must be a whole number of pixels from {MIN_SIZE} to {MAX_SIZE}")
    return int(value)


def check_order(order: str) -> str:
    """``order`` as a column order (one of :data:`ORDERS`)."""
    if order not in ORDERS:
        raise ConfigError(f"--order {order!r}: use one of {', '.join(ORDERS)}")
    return order


def check_options(
    *,
    by: str | Sequence[str] = DEFAULT_BY,
    color: str | Sequence[str] = "label",
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    time_bin: str | float | None = None,
    order: str = "hash",
    start: str | dt.datetime | None = None,
    end: str | dt.datetime | None = None,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Check the options of a flow-groups picture without drawing anything (before the flows are
    read, say); the grouping keys and colourings they name."""
    keys, colourings = parse_by(by), parse_colourings(color)
    check_size("width", width)
    check_size("height", height)
    parse_duration(time_bin)
    start_s, end_s = parse_time(start, "--start"), parse_time(end, "--end")
    if start_s is not None and end_s is not None and end_s <= start_s:
        raise ConfigError("--end must be later than --start")
    check_order(order)
    return keys, colourings


__all__ = [
    "COLOURINGS",
    "DEFAULT_BY",
    "DEFAULT_HEIGHT",
    "DEFAULT_WIDTH",
    "KEY_COLUMNS",
    "MAX_SIZE",
    "MIN_SIZE",
    "ORDERS",
    "check_options",
    "check_order",
    "check_size",
    "key_column",
    "parse_by",
    "parse_colourings",
    "parse_duration",
    "parse_time",
]
