"""The canonical flow table every source reads into.

One row is one flow (a connection, bidirectional where the source knows both directions).
Direction convention: ``src`` is the side that opened the flow; ``out_*`` counts what ``src`` sent,
``in_*`` what it received.

Identifying columns may be absent (UNSW-NB15, NSL-KDD and the CIC-IDS2017 sample carry no addresses or
time); downstream stages check for the columns they need. Source-specific numeric columns are kept under
their own names (normalised to ``snake_case``), a few categorical ones (TCP flags, connection state)
as text.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from nadkit.errors import SchemaError

log = logging.getLogger(__name__)

TIME_DTYPE = pl.Datetime("us", "UTC")

#: IANA's port ranges: system (well-known) ports below ``SYSTEM_PORTS``, registered ones up to
#: ``DYNAMIC_PORTS - 1``, dynamic (ephemeral) ones from ``DYNAMIC_PORTS`` up
SYSTEM_PORTS, DYNAMIC_PORTS = 1024, 49152


def service_port_first(spt: Any, dpt: Any) -> Any:
    """Where the source port is the service and the destination port the client's: a system port
    against a higher one, or a registered port against one of the dynamic range (the lower port is
    the service). NumPy arrays or Polars expressions alike; a meter that could not tell who opened a
    flow turns it round where this holds."""
    system_first = (spt < SYSTEM_PORTS) & (dpt >= SYSTEM_PORTS)
    return system_first | ((spt >= SYSTEM_PORTS) & (spt < DYNAMIC_PORTS) & (dpt >= DYNAMIC_PORTS))


#: The canonical columns and their dtypes, in display order.
CANONICAL: dict[str, pl.DataType] = {
    "time": TIME_DTYPE,
    "src": pl.String(),
    "dst": pl.String(),
    "spt": pl.Int64(),
    "dpt": pl.Int64(),
    "proto": pl.String(),
    "app": pl.String(),
    "duration": pl.Float64(),
    "out_bytes": pl.Int64(),
    "in_bytes": pl.Int64(),
    "out_pkts": pl.Int64(),
    "in_pkts": pl.Int64(),
    "label": pl.String(),
    "label_original": pl.String(),
}

IDENTIFYING = ("time", "src", "dst", "spt", "dpt")
#: the columns that tell one flow from another (a relabelled flow is the same flow)
FLOW_KEY = (*IDENTIFYING, "proto")
#: the flow columns an alert record carries (those present), in record order
RECORD_FLOW_COLUMNS = (*FLOW_KEY, "app", "label")
#: the capture (file) a flow was metered from, where a table of several says (``nadkit mix-captures``)
CAPTURE = "capture"
#: a flow's own time where a table moved it in time (``nadkit mix-captures`` places each capture at a
#: random offset): the same flow then hashes as the capture had it (see nadkit.evaluation.overlap)
CAPTURE_TIME = "capture_time"
NUMERIC_CANONICAL = ("spt", "dpt", "duration", "out_bytes", "in_bytes", "out_pkts", "in_pkts")
NORMAL = "normal"

#: IANA protocol numbers seen in flow data, mapped to the lower-case names nadkit uses.
PROTOCOL_NAMES: dict[int, str] = {
    0: "hopopt",
    1: "icmp",
    2: "igmp",
    4: "ipip",
    6: "tcp",
    17: "udp",
    27: "rdp",
    41: "ipv6",
    43: "ipv6-route",
    44: "ipv6-frag",
    46: "rsvp",
    47: "gre",
    50: "esp",
    51: "ah",
    58: "ipv6-icmp",
    88: "eigrp",
    89: "ospf",
    103: "pim",
    112: "vrrp",
    115: "l2tp",
    132: "sctp",
}
_PROTOCOL_ALIASES = {"icmp6": "ipv6-icmp", "icmpv6": "ipv6-icmp", "ipv6icmp": "ipv6-icmp"}
#: protocol texts as read (IANA numbers, aliases) to their canonical names
_PROTOCOL_TEXTS = {str(number): name for number, name in PROTOCOL_NAMES.items()} | _PROTOCOL_ALIASES

#: Label texts that mean "not an attack" in the datasets nadkit reads (compared lower-case, stripped).
NORMAL_LABELS = frozenset({"normal", "benign", "0", "background", "legitimate", "none", "-", ""})


def snake_case(name: str) -> str:
    """Normalise a source column name (``' Flow Bytes/s'``, ``'out (bytes)'``) to ``flow_bytes_s``."""
    name = name.strip().lstrip("\ufeff")
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    name = re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_").lower()
    return name or "column"


def text_lookup(
    expr: pl.Expr, mapping: Mapping[str, str], *, default: str | None = None, keep: bool = False
) -> pl.Expr:
    """``expr``'s texts looked up in ``mapping``, row by row; a text not in it becomes ``default``, or
    stays as it is with ``keep``.

    ``Expr.replace`` and ``replace_strict`` take the mapping as literal columns, which Polars' streaming
    engine runs in memory: a reader's query with one in it parses the whole input before its first
    chunk, so that nothing downstream starts early and all of it is held at once. This lookup is one
    function of each batch of rows, which the engine streams.
    """
    table = dict(mapping)

    def apply(values: pl.Series) -> pl.Series:
        if keep:
            return values.replace(table)
        return values.replace_strict(table, default=default, return_dtype=pl.String)

    return expr.map_batches(apply, return_dtype=pl.String, is_elementwise=True)


def proto_name_expr(column: str | pl.Expr) -> pl.Expr:
    """Expression turning a protocol column (IANA number or name, any case) into the canonical name."""
    expr = pl.col(column) if isinstance(column, str) else column
    text = expr.cast(pl.String).str.strip_chars().str.to_lowercase()
    return text_lookup(text, _PROTOCOL_TEXTS, keep=True)


def label_expr(column: str | pl.Expr, *, attack_value: str | None = None) -> pl.Expr:
    """Expression normalising a label column: ``normal`` for benign values, else the class text.

    ``attack_value`` replaces a bare binary "attack" marker (``1``) by a class name when the source
    has no class column.
    """
    expr = pl.col(column) if isinstance(column, str) else column
    text = expr.cast(pl.String).str.strip_chars()
    lowered = text.str.to_lowercase()
    out = pl.when(text.is_null()).then(None).when(lowered.is_in(list(NORMAL_LABELS))).then(pl.lit(NORMAL))
    if attack_value is not None:
        out = out.when(lowered == "1").then(pl.lit(attack_value))
    result = out.otherwise(text)
    return result.alias(column) if isinstance(column, str) else result


def canonical_order(columns: Iterable[str]) -> list[str]:
    """Canonical columns first (in schema order), then the source's own, in their original order."""
    columns = list(columns)
    head = [c for c in CANONICAL if c in columns]
    return head + [c for c in columns if c not in CANONICAL]


@dataclass(frozen=True)
class ValidationReport:
    """What validation found: kept for `nadkit inspect`."""

    rows: int
    columns: tuple[str, ...]
    missing_identifying: tuple[str, ...]


#: an IPv4 address in dotted decimal, each part 0-255 without leading zeros
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"^(?:{_OCTET}\.){{3}}{_OCTET}$"
#: a MAC address (Argus and nfdump write them for ARP and other layer-2 flows)
_MAC = re.compile(r"^[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}$")
#: how far past now a flow time may lie (exporters' clocks drift; a year further is an error)
LATEST_AHEAD = timedelta(days=366)


def _address(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 zone (fe80::1%eth0) is not part of it
    except ValueError:
        return bool(_MAC.match(text))
    return True


def valid_addresses(values: pl.Series) -> pl.Series:
    """Per row, whether the value is an IPv4 or IPv6 address (or a MAC address); null stays null.
    Dotted IPv4 is checked by one vectorised pattern, the few other distinct values one by one."""
    text = values.cast(pl.String)
    fast = text.str.contains(_IPV4)
    rest = text.filter(~fast.fill_null(True)).unique()
    if rest.len() == 0:
        return fast
    good = {value for value in rest.to_list() if _address(value)}
    return fast | text.is_in(list(good))


def row_problems(frame: pl.DataFrame) -> list[tuple[str, str, pl.Series]]:
    """Every check of the canonical values: ``(column, message, bad)`` with ``bad`` a boolean per row:
    a blank row (no time, address or port), negative counts and durations, ports outside 0-65535,
    values of ``src``/``dst`` that are no address, times more than a year ahead. A missing value
    alone is not a problem."""
    columns = frame.columns
    problems: list[tuple[str, str, pl.Series]] = []

    def check(name: str, bad: pl.Series, message: str) -> None:
        problems.append((name, message, bad.fill_null(False)))

    present = [c for c in IDENTIFYING if c in columns]
    if len(present) >= 2:  # a row without time, addresses or ports: a blank or cut-off line
        blank = frame.select(pl.all_horizontal(pl.col(present).is_null())).to_series()
        check(present[0], blank, f"no {', '.join(present)} (a blank or cut-off line?)")
    for name in ("duration", "out_bytes", "in_bytes", "out_pkts", "in_pkts"):
        if name in columns:
            check(name, frame[name] < 0, "negative value")
            if frame.schema[name].is_float():  # a NaN or infinite duration is no duration
                check(name, frame[name].is_nan() | frame[name].is_infinite(), "not a finite number")
    for name in ("spt", "dpt"):
        if name in columns:
            check(name, (frame[name] < 0) | (frame[name] > 65535), "port outside 0-65535")
    for name in ("src", "dst"):
        if name in columns and frame.schema[name] == pl.String:
            check(name, ~valid_addresses(frame[name]), "not an IPv4 or IPv6 address")
    if "time" in columns and isinstance(frame.schema["time"], pl.Datetime):
        latest = datetime.now(UTC) + LATEST_AHEAD
        check("time", frame["time"] > latest, "more than a year ahead")
    return problems


def validate(
    frame: pl.DataFrame,
    *,
    path: str | Path | None = None,
    require: Iterable[str] = (),
    row_offset: int = 0,
) -> ValidationReport:
    """Check a collected flow table against the canonical schema.

    Raises :class:`SchemaError` naming the file, the column and the first offending row for: a missing
    required column, a canonical column of the wrong dtype, or a value :func:`row_problems` finds
    (negative counts or durations, ports outside 0-65535, addresses that are not addresses, missing
    or far-future times). ``row_offset``: rows of the file before this piece of it, so errors name the row
    of the file.
    """
    columns = frame.columns
    for name in require:
        if name not in columns:
            raise SchemaError(
                f"required column is missing (have: {', '.join(columns[:12])}...)", path=path, column=name
            )
    if not columns:
        raise SchemaError("no columns", path=path)
    for name, dtype in CANONICAL.items():
        if name in columns and frame.schema[name] != dtype:
            raise SchemaError(f"has dtype {frame.schema[name]}, expected {dtype}", path=path, column=name)
    found = []
    for name, message, bad in row_problems(frame):
        first = bad.arg_true()
        if first.len():
            found.append((int(first[0]), name, message))
    if found:
        first, name, message = min(found)
        try:
            value = frame[name][first]
        except OverflowError:  # a time beyond what Python's datetime holds
            value = frame[name].to_physical()[first]
        raise SchemaError(f"{message} ({value!r})", path=path, column=name, row=row_offset + first + 1)
    missing = tuple(c for c in IDENTIFYING if c not in columns)
    return ValidationReport(rows=frame.height, columns=tuple(columns), missing_identifying=missing)


def drop_bad_rows(
    frame: pl.DataFrame, *, path: str | Path | None = None
) -> tuple[pl.DataFrame, dict[str, int]]:
    """``frame`` without the rows :func:`row_problems` finds, and how many rows each problem cost
    (``{"src: not an IPv4 or IPv6 address": 3, ...}``); a row with several problems counts once,
    under its first."""
    problems = row_problems(frame)
    if not problems:
        return frame, {}
    counted: dict[str, int] = {}
    taken = pl.Series([False] * frame.height)
    for name, message, bad in problems:
        new = bad & ~taken
        count = int(new.sum())
        if count:
            counted[f"{name}: {message}"] = count
        taken = taken | bad
    if counted:
        where = f"{path}: " if path is not None else ""
        log.warning(
            "%s%d row(s) skipped: %s",
            where,
            sum(counted.values()),
            "; ".join(f"{k} ({v})" for k, v in counted.items()),
        )
    return frame.filter(~taken), counted


def parse_mapping(text: str | Mapping[str, str] | None) -> dict[str, str]:
    """Parse ``time=StartTime,src=SrcAddr`` into ``{"time": "StartTime", "src": "SrcAddr"}``.

    Keys must be canonical column names; raises :class:`SchemaError` otherwise.
    """
    if text is None:
        return {}
    if isinstance(text, Mapping):
        pairs = dict(text)
    else:
        pairs = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            if "=" not in part:
                raise SchemaError(f"mapping entry {part!r} is not of the form canonical=source")
            key, value = (s.strip() for s in part.split("=", 1))
            pairs[key] = value
    for key in pairs:
        if key not in CANONICAL:
            raise SchemaError(
                f"mapping names unknown canonical column {key!r} (known: {', '.join(CANONICAL)})"
            )
    return pairs
