"""nProbe / NetFlow v9 field-name CSV, as in the UQ "NF-" datasets (NF-UNSW-NB15, NF-BoT-IoT, ...).

One row per flow, columns named after the NetFlow v9 / IPFIX information elements that nProbe exports:
``IPV4_SRC_ADDR`` (or ``IPV6_SRC_ADDR``), ``L4_SRC_PORT``, ``IPV4_DST_ADDR``, ``L4_DST_PORT``,
``PROTOCOL`` (IANA number), ``L7_PROTO`` (nDPI ``master.application`` id such as ``7.178``),
``IN_BYTES``/``IN_PKTS`` (client to server), ``OUT_BYTES``/``OUT_PKTS`` (server to client),
``TCP_FLAGS`` (cumulative OR of the flags), ``FLOW_DURATION_MILLISECONDS``, and in the v3 datasets
``FLOW_START_MILLISECONDS``/``FLOW_END_MILLISECONDS`` (epoch milliseconds). The datasets add ``Label``
(0 benign, 1 attack) and ``Attack`` (class name, ``Benign`` for normal traffic). nProbe's own dumps
separate fields with ``|`` instead of ``,``; both are read.

Mapping to the canonical table: the client is ``src``, so ``IN_*`` become ``out_*`` (what ``src``
sent) and ``OUT_*`` become ``in_*``; ``FLOW_START_MILLISECONDS`` -> ``time``;
``FLOW_DURATION_MILLISECONDS`` / 1000 -> ``duration`` (s); ``PROTOCOL`` -> ``proto`` name.
``L7_PROTO`` (nDPI's ``master.application`` id, an enumeration) becomes the text ``app`` (``7.178``),
or ``L7_PROTO_NAME`` lower-cased where a dump has it, and every other numeric column is kept under its
``snake_case`` name (``tcp_flags``, ``min_ttl``, ...); the feature pipeline reads the flags and the
codes among them (ICMP type, DNS query type, FTP reply code) as such, not as magnitudes, and leaves the
DNS transaction id out. ``label`` is ``normal`` where ``Label`` is 0,
otherwise the ``Attack`` class (``attack`` when the file has no ``Attack`` column); the source's class
text is kept in ``label_original``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from nadkit.errors import SchemaError
from nadkit.schema import NORMAL, label_expr, proto_name_expr
from nadkit.sources.base import (
    Head,
    build,
    column_lookup,
    epoch_to_time,
    frame_names,
    named_after,
    numeric,
    pick,
    require_columns,
    scan_csv,
    text,
    text_columns,
)

log = logging.getLogger(__name__)

NAME = "netflow"
DESCRIPTION = "nProbe / NetFlow v9 field-name CSV (IPV4_SRC_ADDR, L4_SRC_PORT, IN_BYTES, ...; UQ NF- data)"
SUFFIXES = (".csv", ".txt")

#: Columns every file must have (``snake_case`` name -> name in the file); the address may be IPv4 or IPv6.
REQUIRED = {
    "l4_src_port": "L4_SRC_PORT",
    "l4_dst_port": "L4_DST_PORT",
    "protocol": "PROTOCOL",
    "in_bytes": "IN_BYTES",
    "out_bytes": "OUT_BYTES",
}
_SOURCE_ADDRESS = ("ipv4_src_addr", "ipv6_src_addr")
_DESTINATION_ADDRESS = ("ipv4_dst_addr", "ipv6_dst_addr")
#: Absolute end time: redundant with time + duration and meaningless as a feature.
_DROPPED = ("flow_end_milliseconds",)
_ATTACK_WITHOUT_CLASS = "attack"


def _separator(head: Head) -> str:
    """nProbe dump files use ``|``; the UQ datasets use ``,``."""
    first = head.first_line
    return "|" if first.count("|") > first.count(",") else ","


def detect(head: Head) -> bool:
    """NetFlow field names: ``IPV4_SRC_ADDR`` (or ``IPV6_SRC_ADDR``) beside L4 ports and byte counts."""
    if not head.is_text:
        return False
    fields = head.header_set(_separator(head))
    has_address = any(name in fields for name in _SOURCE_ADDRESS)
    return has_address and {"l4_src_port", "l4_dst_port", "in_bytes"} <= fields


def _address(lookup: dict[str, str], candidates: tuple[str, str], name: str) -> pl.Expr:
    """The IPv4 column, falling back to the IPv6 one where a file carries both (the unused side empty)."""
    v4, v6 = (lookup.get(candidate) for candidate in candidates)
    if v4 is not None and v6 is not None:
        four, six = text(v4, name), text(v6, name)
        empty_four = four.is_null() | (four == "0.0.0.0")
        empty_six = six.is_null() | (six == "::")
        return pl.when(empty_four & ~empty_six).then(six).otherwise(four).alias(name)
    column = v4 if v4 is not None else v6
    if column is None:  # checked by _require before
        raise SchemaError("not a valid NetFlow field-name CSV file: column is missing", column=candidates[0])
    return text(column, name)


def read(path: str | Path, **_: object) -> pl.LazyFrame:
    """Scan a NetFlow field-name CSV lazily into the canonical table."""
    head = Head.of(path)
    separator = _separator(head)
    fields = head.header_fields(separator)
    as_text = {
        name: pl.String
        for name in fields
        if name.upper() in {"IPV4_SRC_ADDR", "IPV4_DST_ADDR", "IPV6_SRC_ADDR", "IPV6_DST_ADDR", "ATTACK"}
        or name.lower() == "label"
    }
    frame = scan_csv(path, separator=separator, schema_overrides=as_text)
    names = frame_names(frame, path)
    lookup = column_lookup(names)
    _require(lookup, path)

    # text columns of nProbe's own dumps (L7_PROTO_NAME, HTTP_URL, ...) are not flow features
    consumed = {name for name in text_columns(head.lines, separator) if name in names}
    consumed |= {lookup[name] for name in (*REQUIRED, *_DROPPED) if name in lookup}
    consumed |= {lookup[name] for name in (*_SOURCE_ADDRESS, *_DESTINATION_ADDRESS) if name in lookup}
    canonical: dict[str, pl.Expr | list[pl.Expr]] = {}

    start = pick(lookup, "flow_start_milliseconds")
    if start is not None:
        canonical["time"] = named_after(epoch_to_time(start, unit="ms"), start)
        consumed.add(start)
    canonical["src"] = _address(lookup, _SOURCE_ADDRESS, "src")
    canonical["dst"] = _address(lookup, _DESTINATION_ADDRESS, "dst")
    canonical["spt"] = _number(lookup["l4_src_port"], pl.Int64(), "spt")
    canonical["dpt"] = _number(lookup["l4_dst_port"], pl.Int64(), "dpt")
    canonical["proto"] = proto_name_expr(lookup["protocol"]).alias("proto")
    duration = pick(lookup, "flow_duration_milliseconds")
    if duration is not None:
        milliseconds, invalid = _number(duration, pl.Float64(), "duration")
        canonical["duration"] = [(milliseconds / 1000.0).alias("duration"), invalid]
        consumed.add(duration)
    canonical["out_bytes"] = _number(lookup["in_bytes"], pl.Int64(), "out_bytes")
    canonical["in_bytes"] = _number(lookup["out_bytes"], pl.Int64(), "in_bytes")
    for source, target in (("in_pkts", "out_pkts"), ("out_pkts", "in_pkts")):
        if source in lookup:
            canonical[target] = _number(lookup[source], pl.Int64(), target)
            consumed.add(lookup[source])
    l7, l7_name = pick(lookup, "l7_proto"), pick(lookup, "l7_proto_name")
    if l7_name is not None:  # nProbe's dumps: the application's name
        canonical["app"] = text(pl.col(l7_name).cast(pl.String).str.to_lowercase(), "app")
        consumed.add(l7_name)
    elif l7 is not None:  # the NF- data sets: nDPI's "master.application" id, a code, not a magnitude
        number, invalid = _number(l7, pl.Float64(), "app")
        canonical["app"] = [number.cast(pl.String).alias("app"), invalid]
    if l7 is not None:
        consumed.add(l7)

    binary, attack = pick(lookup, "label"), pick(lookup, "attack")
    if attack is not None:
        canonical["label"] = _label(attack, binary)
        canonical["label_original"] = text(attack, "label_original")
    elif binary is not None:
        canonical["label"] = label_expr(binary, attack_value=_ATTACK_WITHOUT_CLASS).alias("label")
        canonical["label_original"] = text(binary, "label_original")
    consumed |= {column for column in (binary, attack) if column is not None}
    log.debug("%s: NetFlow CSV with %d columns (separator %r)", path, len(names), separator)
    return build(frame, canonical, consumed=consumed)


def _number(column: str, dtype: pl.DataType, target: str) -> list[pl.Expr]:
    """``column`` parsed as ``dtype`` into ``target``; a bad value is reported under the file's name."""
    return named_after(numeric(column, dtype, target), column)


def _require(lookup: dict[str, str], path: str | Path) -> None:
    """Raise a :class:`SchemaError` naming the first NetFlow column the file lacks."""
    missing = []
    if not any(name in lookup for name in _SOURCE_ADDRESS):
        missing.append("IPV4_SRC_ADDR")
    if not any(name in lookup for name in _DESTINATION_ADDRESS):
        missing.append("IPV4_DST_ADDR")
    missing += [display for name, display in REQUIRED.items() if name not in lookup]
    if missing:
        require_columns(lookup.values(), missing[:1], path, "NetFlow field-name CSV")


def _label(attack: str, binary: str | None) -> pl.Expr:
    """``normal`` where the binary label is 0; otherwise the attack class (or ``attack`` when unset)."""
    by_class = label_expr(attack)
    if binary is None:
        return by_class.alias("label")
    flag = pl.col(binary).cast(pl.String).str.strip_chars()
    benign = flag.cast(pl.Float64, strict=False) == 0
    return (
        pl.when(flag.is_null() & by_class.is_null())
        .then(None)
        .when(benign)
        .then(pl.lit(NORMAL))
        .when(by_class.is_null())
        .then(pl.lit(_ATTACK_WITHOUT_CLASS))
        .otherwise(by_class)
        .alias("label")
    )
