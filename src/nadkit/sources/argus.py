"""Argus bidirectional flow CSV (``.binetflow``), as in CTU-13 and the other Stratosphere captures.

Header (``ra -c ,`` output): ``StartTime, Dur, Proto, SrcAddr, Sport, Dir, DstAddr, Dport, State,
sTos, dTos, TotPkts, TotBytes, SrcBytes[, SrcPkts], Label``. ``StartTime`` is text such as
``2011/08/10 09:46:53.047277`` (local time of the capture; read as UTC unless ``timezone`` is given),
``Dur`` seconds, ``Proto`` a lower-case name (``tcp``, ``udp``, ``icmp``, ``arp``, ...), ports decimal or
hexadecimal (``0x0303``: Argus writes ICMP type/code that way) and empty for protocols without ports,
``Dir`` the direction Argus inferred (``->``, ``<->``, ``<?>``, ``who``, ...), ``State`` the
connection state (``CON``, ``FSPA_FSPA``, ``INT``, ...). Labels are ``flow=From-Botnet-V42-TCP-...``,
``flow=Background-UDP-Established``, ``flow=To-Normal-...``.

Mapping: ``SrcAddr``/``Sport`` -> ``src``/``spt`` (the side Argus saw first), ``DstAddr``/``Dport`` ->
``dst``/``dpt`` (ICMP flows as nfdump writes them: ``spt`` 0 and ``dpt`` the ICMP ``type * 256 + code``
from Argus's ``Sport``, which holds the type in its low byte and the code in its high one; Argus's
``Dport`` is then the ICMP identifier, which is no port), ``StartTime`` -> ``time``, ``Dur`` ->
``duration``, ``Proto`` -> ``proto``; ``out_bytes`` = ``SrcBytes`` and ``in_bytes`` = ``TotBytes -
SrcBytes`` (or ``DstBytes`` when present); ``out_pkts`` = ``SrcPkts`` and ``in_pkts`` = ``TotPkts -
SrcPkts`` (or ``DstPkts``) when the file has ``SrcPkts``; without it the packet direction is unknown, so
``out_pkts``/``in_pkts`` are left out and ``TotPkts`` is kept as ``tot_pkts``. ``Dir`` and ``State`` are
kept as text (``dir``, ``state``), ``sTos``/``dTos`` and other numeric columns as numbers. Where
``State`` lists the TCP flags each side sent (``SPA_FSPA``: ``ra -Z b``, as in CTU-13), ``tcp_flags``
holds the letters of both sides, the OR of the flags a NetFlow record carries, spelled as nfdump does
(``...AP.SF``). ``label`` is ``botnet`` for every label naming a botnet and ``normal`` for everything
else (CTU-13's background traffic included, as the dataset's authors treat it for evaluation); the
original text is kept in ``label_original``."""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from nadkit.schema import NORMAL, proto_name_expr
from nadkit.sources.base import (
    Head,
    build,
    column_lookup,
    flexible_time,
    frame_names,
    icmp_ports,
    named_after,
    numeric,
    pick,
    require_columns,
    scan_csv,
    text,
    text_columns,
)

log = logging.getLogger(__name__)

NAME = "argus"
DESCRIPTION = "Argus bidirectional flow CSV (.binetflow; CTU-13 / Stratosphere: StartTime, SrcAddr, Dir, ...)"
SUFFIXES = (".binetflow", ".csv")

REQUIRED = ("StartTime", "Proto", "SrcAddr", "DstAddr", "TotBytes", "SrcBytes")
TIME_FORMATS = (
    "%Y/%m/%d %H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y/%m/%d-%H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
)
BOTNET = "botnet"
#: a TCP state as ``ra -Z b`` prints it: the flags the source sent, ``_``, the flags the destination sent
FLAG_STATE = r"^[FSRPAUEC]*_[FSRPAUEC]*$"
_TEXT = ("StartTime", "SrcAddr", "DstAddr", "Sport", "Dport", "Proto", "Dir", "State", "Label")


def detect(head: Head) -> bool:
    """Argus column names: ``StartTime`` with ``SrcAddr``/``DstAddr`` and ``TotBytes``."""
    if not head.is_text:
        return False
    fields = head.header_set()
    return {"starttime", "srcaddr", "dstaddr", "totbytes"} <= fields


def read(path: str | Path, *, timezone: str | None = None, **_: object) -> pl.LazyFrame:
    """Scan an Argus CSV lazily into the canonical table.

    ``timezone`` (an IANA name such as ``Europe/Prague``) is where ``StartTime`` was written; by
    default it is read as UTC.
    """
    head = Head.of(path)
    fields = head.header_fields()
    overrides = {name: pl.String for name in fields if name in _TEXT}
    frame = scan_csv(path, schema_overrides=overrides)
    names = frame_names(frame, path)
    require_columns(names, REQUIRED, path, "Argus")
    lookup = column_lookup(names)
    consumed = {name for name in text_columns(head.lines) if name in names}
    consumed |= set(REQUIRED)

    start = flexible_time("StartTime", TIME_FORMATS, unit="s", timezone=timezone)
    canonical: dict[str, pl.Expr | list[pl.Expr]] = {
        "time": named_after(start, "StartTime"),
        "src": text("SrcAddr", "src"),
        "dst": text("DstAddr", "dst"),
    }
    proto = proto_name_expr(text("Proto", "proto"))
    for source, target in (("sport", "spt"), ("dport", "dpt")):
        column = pick(lookup, source)
        if column is not None:
            canonical[target] = _number(column, pl.Int64(), target)
            consumed.add(column)
    if "spt" in canonical and "dpt" in canonical:
        # ICMP: Argus writes the header's type and code bytes as the source "port" (type in the low
        # byte: 0x0008 an echo request, 0x0303 port unreachable) and the identifier as the other
        sport = canonical["spt"][0]  # type: ignore[index]
        canonical["spt"], canonical["dpt"] = icmp_ports(
            canonical["spt"],  # type: ignore[arg-type]
            canonical["dpt"],  # type: ignore[arg-type]
            proto,
            (sport % 256) * 256 + sport // 256,
        )
    canonical["proto"] = proto.alias("proto")
    duration = pick(lookup, "dur")
    if duration is not None:
        canonical["duration"] = _number(duration, pl.Float64(), "duration")
        consumed.add(duration)

    total_bytes, total_bytes_invalid = _number("TotBytes", pl.Int64(), "tot_bytes")
    out_bytes, out_bytes_invalid = _number("SrcBytes", pl.Int64(), "out_bytes")
    canonical["out_bytes"] = [out_bytes, out_bytes_invalid]
    destination_bytes = pick(lookup, "dst_bytes")
    if destination_bytes is not None:
        canonical["in_bytes"] = _number(destination_bytes, pl.Int64(), "in_bytes")
        consumed.add(destination_bytes)
    else:
        canonical["in_bytes"] = [(total_bytes - out_bytes).alias("in_bytes"), total_bytes_invalid]

    total_packets, source_packets = pick(lookup, "tot_pkts"), pick(lookup, "src_pkts")
    if source_packets is not None:
        out_pkts, out_pkts_invalid = _number(source_packets, pl.Int64(), "out_pkts")
        canonical["out_pkts"] = [out_pkts, out_pkts_invalid]
        destination_packets = pick(lookup, "dst_pkts")
        if destination_packets is not None:
            canonical["in_pkts"] = _number(destination_packets, pl.Int64(), "in_pkts")
            consumed.add(destination_packets)
        elif total_packets is not None:
            total, total_invalid = _number(total_packets, pl.Int64(), "tot_pkts")
            canonical["in_pkts"] = [(total - out_pkts).alias("in_pkts"), total_invalid]
            consumed.add(total_packets)
        consumed.add(source_packets)
    elif total_packets is not None:
        canonical["tot_pkts"] = _number(total_packets, pl.Int64(), "tot_pkts")
        consumed.add(total_packets)

    label = pick(lookup, "label")
    if label is not None:
        canonical["label"] = _label(label)
        canonical["label_original"] = text(label, "label_original")
        consumed.add(label)
    for source in ("dir", "state"):
        column = pick(lookup, source)
        if column is not None:
            canonical[source] = text(column, source)
            consumed.add(column)
            if source == "state":
                canonical["tcp_flags"] = _flags(column)
    log.debug("%s: Argus CSV, packets by direction: %s", path, source_packets is not None)
    return build(frame, canonical, consumed=consumed)


def _number(column: str, dtype: pl.DataType, target: str) -> list[pl.Expr]:
    """``column`` parsed as ``dtype`` into ``target``; a bad value is reported under the file's name."""
    return named_after(numeric(column, dtype, target), column)


def _flags(column: str) -> pl.Expr:
    """The TCP flags of a flow whose ``State`` lists the flags each side sent (``SPA_FSPA``, as
    ``ra -Z b`` prints a TCP flow's state, CTU-13 among others): the letters of both sides, the OR of
    the flags as a NetFlow record carries it, spelled as nfdump does (``...AP.SF``); null for a state
    that is a word (``CON``, ``INT``, ``RST``)."""
    value = pl.col(column).cast(pl.String).str.strip_chars()
    # nfdump's layout: a letter where either side sent the flag, a dot where neither did
    spelled = pl.concat_str(
        [
            pl.when(value.str.contains(letter, literal=True)).then(pl.lit(letter)).otherwise(pl.lit("."))
            for letter in "CEUAPRSF"
        ]
    )
    return (
        pl.when(value.str.contains(FLAG_STATE) & (value != "_"))
        .then(spelled)
        .otherwise(None)
        .alias("tcp_flags")
    )


def _label(column: str) -> pl.Expr:
    """``botnet`` for labels naming a botnet, ``normal`` for the rest (null stays null)."""
    value = pl.col(column).cast(pl.String).str.strip_chars()
    is_botnet = value.str.to_lowercase().str.contains("botnet", literal=True)
    return (
        pl.when(value.is_null() | (value == ""))
        .then(None)
        .when(is_botnet)
        .then(pl.lit(BOTNET))
        .otherwise(pl.lit(NORMAL))
        .alias("label")
    )
