"""Buffered records of one template decoded at once into the canonical flow table: the NumPy record
layout is read column by column, times are brought to epoch microseconds, addresses, protocols and
TCP flags to text, and implausible records are left out and counted (see :mod:`nadkit.stream.netflow`
for the mapping)."""

from __future__ import annotations

import ipaddress
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from nadkit.schema import PROTOCOL_NAMES, TIME_DTYPE, service_port_first
from nadkit.stream.netflow.fields import (
    _FLAG_LETTERS,
    _MOD32,
    BIFLOW_DIRECTION,
    DST_PORT,
    DST_V4,
    DST_V6,
    DURATION_MS,
    DURATION_US,
    END_MS,
    END_NS,
    END_S,
    END_UPTIME,
    END_US,
    ICMP_V4,
    ICMP_V6,
    MAX_IP_PACKET_BYTES,
    NTP_EPOCH_OFFSET_S,
    OCTETS,
    OCTETS_TOTAL,
    OUT_OCTETS,
    OUT_PACKETS,
    PACKETS,
    PACKETS_TOTAL,
    PROTOCOL,
    RECEIVED,
    REVERSE_PEN,
    SRC_PORT,
    SRC_V4,
    SRC_V6,
    START_MS,
    START_NS,
    START_S,
    START_UPTIME,
    START_US,
    TCP_FLAGS,
)
from nadkit.stream.netflow.templates import Template


class _Context(NamedTuple):
    """What the times of a packet's records are relative to."""

    base_us: int  # v5/v9: header unix time; IPFIX: export time (epoch microseconds)
    uptime_ms: int  # v5/v9: header sysUptime; IPFIX: -1
    init_ms: int  # IPFIX: the exporter's system init time (epoch ms), -1 when unknown
    received_s: float


class _Group:
    """Raw records of one template waiting for :meth:`FlowDecoder.take`."""

    __slots__ = ("chunks", "contexts", "exporter", "rows", "template", "version")

    def __init__(self, template: Template, version: int, exporter: str = "") -> None:
        self.template = template
        self.version = version
        self.exporter = exporter
        self.chunks: list[bytes] = []
        self.contexts: list[tuple[int, _Context]] = []
        self.rows = 0


def _unsigned(values: np.ndarray) -> np.ndarray:
    """A field's values as int64 (fields of 3, 5, 6 or 7 bytes are read big-endian; longer fields by
    their last 8 bytes)."""
    if values.dtype.kind == "u":
        return values.astype(np.int64)
    width = values.dtype.itemsize
    raw = np.frombuffer(values.tobytes(), dtype=np.uint8).reshape(-1, width)[:, -8:].astype(np.int64)
    out = np.zeros(len(values), dtype=np.int64)
    for column in range(raw.shape[1]):
        out = (out << 8) | raw[:, column]
    return out


def _ntp_to_us(values: np.ndarray) -> np.ndarray:
    seconds = (values >> 32) & 0xFFFFFFFF
    fraction = values & 0xFFFFFFFF
    return (seconds - NTP_EPOCH_OFFSET_S) * 1_000_000 + (fraction * 1_000_000) // _MOD32


def _exporter_name(exporter: tuple[Any, ...]) -> str:
    if len(exporter) >= 2:
        host = str(exporter[0])
        return f"[{host}]:{exporter[1]}" if ":" in host else f"{host}:{exporter[1]}"
    return str(exporter)


def _decode_group(
    group: _Group, max_age_us: int = 1 << 62, max_skew_us: int = 1 << 62
) -> tuple[pl.DataFrame, dict[str, int]]:
    """The group's records as a table, and the counts of implausible records left out, by reason."""
    template = group.template
    assert template.dtype is not None
    data = b"".join(group.chunks)
    records = np.frombuffer(data, dtype=template.dtype, count=group.rows)
    counts = np.fromiter((c for c, _ in group.contexts), dtype=np.int64, count=len(group.contexts))

    def per_record(position: int) -> np.ndarray:
        values = np.fromiter(
            (ctx[position] for _, ctx in group.contexts), dtype=np.float64 if position == 3 else np.int64
        )
        return np.repeat(values, counts)

    def get(element: int, enterprise: int = 0) -> np.ndarray | None:
        name = template.index.get((element, enterprise))
        return None if name is None else records[name]

    def number(element: int, enterprise: int = 0) -> np.ndarray | None:
        values = get(element, enterprise)
        return None if values is None else _unsigned(values)

    rows = group.rows
    base_us = per_record(0)
    start, end = _times(group.version, number, base_us, per_record)
    octets = _first(number(OCTETS), number(OCTETS_TOTAL))
    packets = _first(number(PACKETS), number(PACKETS_TOTAL))
    if group.version == 9:
        reverse_octets, reverse_packets = number(OUT_OCTETS), number(OUT_PACKETS)
    else:
        reverse_octets = _first(number(OCTETS, REVERSE_PEN), number(OCTETS_TOTAL, REVERSE_PEN))
        reverse_packets = _first(number(PACKETS, REVERSE_PEN), number(PACKETS_TOTAL, REVERSE_PEN))
    zeros = np.zeros(rows, dtype=np.int64)
    proto = number(PROTOCOL)
    spt = number(SRC_PORT)
    dpt = number(DST_PORT)
    icmp = _first(number(ICMP_V4), number(ICMP_V6))
    flags = number(TCP_FLAGS)
    swap = np.zeros(rows, dtype=bool)
    if group.version == 10 and (reverse_octets is not None or reverse_packets is not None):
        # an RFC 5103 biflow: its two directions in one record, the source not always the initiator
        reverse_icmp = _first(number(ICMP_V4, REVERSE_PEN), number(ICMP_V6, REVERSE_PEN))
        reverse_flags = number(TCP_FLAGS, REVERSE_PEN)
        swap = initiator_reversed(
            rows,
            direction=number(BIFLOW_DIRECTION),
            proto=proto,
            ports=(spt, dpt),
            flags=(flags, reverse_flags),
            icmp=(icmp, reverse_icmp),
            packets=packets,
            reverse_packets=reverse_packets,
        )
        if reverse_flags is not None:  # the flags of all the flow's packets, both ways
            flags = reverse_flags if flags is None else flags | reverse_flags
        if icmp is not None and reverse_icmp is not None:  # the type and code the initiator sent
            icmp = np.where(swap, reverse_icmp, icmp)
        if swap.any():
            octets, reverse_octets = _swapped(swap, octets, reverse_octets, rows)
            packets, reverse_packets = _swapped(swap, packets, reverse_packets, rows)
            if spt is not None and dpt is not None:
                spt, dpt = _swapped(swap, spt, dpt, rows)
    if icmp is not None:
        is_icmp = np.isin(proto, (1, 58)) if proto is not None else np.ones(rows, dtype=bool)
        dpt = np.where(is_icmp, icmp, dpt if dpt is not None else 0)
        spt = np.where(is_icmp, 0, spt if spt is not None else 0)
    columns: dict[str, pl.Series | np.ndarray] = {
        "time": pl.Series("time", start, dtype=pl.Int64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
        "src": _addresses("src", get(SRC_V4), get(SRC_V6), rows),
        "dst": _addresses("dst", get(DST_V4), get(DST_V6), rows),
        "spt": pl.Series("spt", spt if spt is not None else [None] * rows, dtype=pl.Int64),
        "dpt": pl.Series("dpt", dpt if dpt is not None else [None] * rows, dtype=pl.Int64),
        "proto": _protocols(proto, rows),
        "duration": pl.Series("duration", (end - start) / 1e6, dtype=pl.Float64),
        "out_bytes": pl.Series("out_bytes", octets if octets is not None else zeros, dtype=pl.Int64),
        "in_bytes": pl.Series("in_bytes", reverse_octets if reverse_octets is not None else zeros),
        "out_pkts": pl.Series("out_pkts", packets if packets is not None else zeros, dtype=pl.Int64),
        "in_pkts": pl.Series("in_pkts", reverse_packets if reverse_packets is not None else zeros),
        "tcp_flags": _flags(flags, rows),
        RECEIVED: pl.Series(RECEIVED, per_record(3), dtype=pl.Float64),
    }
    frame = pl.DataFrame(columns)
    turned = pl.lit(pl.Series("swap", swap))
    frame = frame.with_columns(
        pl.when(turned).then(pl.col("dst")).otherwise(pl.col("src")).alias("src"),
        pl.when(turned).then(pl.col("src")).otherwise(pl.col("dst")).alias("dst"),
        pl.when(pl.col("duration") < 0).then(None).otherwise(pl.col("duration")).alias("duration"),
        pl.col("in_bytes").cast(pl.Int64),
        pl.col("in_pkts").cast(pl.Int64),
    )
    bad_time = (start < base_us - max_age_us) | (start > base_us + max_skew_us) | (end - start > max_age_us)
    bad_counts = _implausible_counts(octets, packets) | _implausible_counts(reverse_octets, reverse_packets)
    bad_counts &= ~bad_time
    if not (bad_time.any() or bad_counts.any()):
        return frame, {}
    dropped = {"implausible_time": int(bad_time.sum()), "implausible_counts": int(bad_counts.sum())}
    return frame.filter(pl.Series(~(bad_time | bad_counts))), dropped


#: ICMP and ICMPv6 types that answer a request (echo, timestamp, information, address mask replies;
#: ICMPv6 echo reply), and the requests
_ICMP_REPLIES = (0, 14, 16, 18, 129)
_ICMP_REQUESTS = (8, 13, 15, 17, 128)
#: protocols with ports: TCP, UDP, DCCP, SCTP
_PORTED = (6, 17, 33, 132)


def initiator_reversed(
    rows: int,
    *,
    direction: np.ndarray | None,
    proto: np.ndarray | None,
    ports: tuple[np.ndarray | None, np.ndarray | None],
    flags: tuple[np.ndarray | None, np.ndarray | None],
    icmp: tuple[np.ndarray | None, np.ndarray | None],
    packets: np.ndarray | None,
    reverse_packets: np.ndarray | None,
) -> np.ndarray:
    """Per biflow record, whether its reverse side opened the flow, so that the record is turned
    round (the canonical ``src`` is the initiator). An exporter that keys a flow by its addresses
    (softflowd puts the lower address first) leaves the source arbitrary; in order:

    1. the exporter's ``biflowDirection`` where it says (1 initiator: kept; 2 reverse initiator:
       turned);
    2. a flow only one side sent packets in: that side opened it, as far as the exporter saw;
    3. TCP: where only one side's packets carried SYN, that side opened the connection (a SYN
       answered by RST, a flood without answers);
    4. ICMP: a reply type one way and its request the other: the requester opened it;
    5. ports (TCP, UDP, DCCP, SCTP): :func:`nadkit.schema.service_port_first`, the lower port is
       the service, and its side the responder.

    Anything else keeps the exporter's order."""
    swap = np.zeros(rows, dtype=bool)
    open_ = np.ones(rows, dtype=bool)
    if direction is not None:
        swap |= direction == 2
        open_ &= ~np.isin(direction, (1, 2))
    if reverse_packets is not None:
        forward_packets = packets if packets is not None else np.ones(rows, dtype=np.int64)
        only_reverse = open_ & (forward_packets == 0) & (reverse_packets > 0)
        swap |= only_reverse
        open_ &= (forward_packets > 0) & (reverse_packets > 0)
    if proto is None:
        return swap
    forward_flags, reverse_flags = flags
    if forward_flags is not None and reverse_flags is not None:
        syn, reverse_syn = (forward_flags & 2) != 0, (reverse_flags & 2) != 0
        one_sided = open_ & (proto == 6) & (syn != reverse_syn)
        swap |= one_sided & reverse_syn
        open_ &= ~one_sided
    forward_icmp, reverse_icmp = icmp
    is_icmp = np.isin(proto, (1, 58))
    if forward_icmp is not None and reverse_icmp is not None:
        answered = np.isin(forward_icmp >> 8, _ICMP_REPLIES) & np.isin(reverse_icmp >> 8, _ICMP_REQUESTS)
        swap |= open_ & is_icmp & answered
    open_ &= ~is_icmp
    spt, dpt = ports
    if spt is not None and dpt is not None:
        swap |= open_ & np.isin(proto, _PORTED) & service_port_first(spt, dpt)
    return swap


def _swapped(
    swap: np.ndarray, forward: np.ndarray | None, reverse: np.ndarray | None, rows: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The two sides' values exchanged where ``swap`` (a side without the field counts as 0)."""
    if forward is None and reverse is None:
        return None, None
    a = forward if forward is not None else np.zeros(rows, dtype=np.int64)
    b = reverse if reverse is not None else np.zeros(rows, dtype=np.int64)
    return np.where(swap, b, a), np.where(swap, a, b)


def _implausible_counts(octets: np.ndarray | None, packets: np.ndarray | None) -> np.ndarray | bool:
    """Counts past 2^63, or bytes that no number of IP packets of that count can carry."""
    bad: np.ndarray | bool = False
    for values in (octets, packets):
        if values is not None:
            bad = bad | (values < 0)
    if octets is None or packets is None:
        return bad
    # no lower bound: some firewalls export layer-4 payload bytes, 0 for a flow of bare ACKs
    return bad | ((packets == 0) & (octets > 0)) | (octets > packets * MAX_IP_PACKET_BYTES)


def _first(*candidates: np.ndarray | None) -> np.ndarray | None:
    return next((c for c in candidates if c is not None), None)


def _times(version: int, number: Any, base_us: np.ndarray, per_record: Any) -> tuple[np.ndarray, np.ndarray]:
    """Flow start and end, epoch microseconds (see :mod:`nadkit.stream.netflow`)."""
    start: np.ndarray | None = None
    end: np.ndarray | None = None
    for (s_el, e_el), convert in (
        ((START_NS, END_NS), _ntp_to_us),
        ((START_US, END_US), _ntp_to_us),
        ((START_MS, END_MS), lambda v: v * 1000),
        ((START_S, END_S), lambda v: v * 1_000_000),
    ):
        s_val, e_val = number(s_el), number(e_el)
        if start is None and s_val is not None:
            start = convert(s_val)
        if end is None and e_val is not None:
            end = convert(e_val)
    first, last = number(START_UPTIME), number(END_UPTIME)
    if (start is None or end is None) and (first is not None or last is not None):
        if version in (5, 9):
            uptime = per_record(1)

            def since_boot(value: np.ndarray) -> np.ndarray:
                # the signed 32-bit distance to sysUptime: a wrapped counter still gives the right time
                back = ((uptime - value + (1 << 31)) % _MOD32) - (1 << 31)
                return base_us - back * 1000

            if start is None and first is not None:
                start = since_boot(first)
            if end is None and last is not None:
                end = since_boot(last)
        else:
            init = per_record(2)
            known = init >= 0
            if start is None and first is not None:
                fallback = base_us - ((last - first) * 1000 if last is not None else 0)
                start = np.where(known, (init + first) * 1000, fallback)
            if end is None and last is not None:
                end = np.where(known, (init + last) * 1000, base_us)
    if end is None and start is not None:
        duration = number(DURATION_US)
        if duration is None:
            duration_ms = number(DURATION_MS)
            duration = duration_ms * 1000 if duration_ms is not None else None
        end = start + duration if duration is not None else start
    if start is None:
        start = end if end is not None else base_us
    if end is None:
        end = start
    return start.astype(np.int64), end.astype(np.int64)


def _addresses(name: str, v4: np.ndarray | None, v6: np.ndarray | None, rows: int) -> pl.Series:
    text: pl.Series | None = None
    if v4 is not None:
        numbers = pl.Series(name, _unsigned(v4), dtype=pl.Int64)
        text = pl.select(
            pl.concat_str(
                [((pl.lit(numbers) // (1 << shift)) % 256).cast(pl.String) for shift in (24, 16, 8, 0)],
                separator=".",
            ).alias(name)
        ).to_series()
    if v6 is not None:
        raw = v6.tobytes()
        width = v6.dtype.itemsize
        six = pl.Series(
            name,
            [ipaddress.IPv6Address(raw[i * width : i * width + 16]).compressed for i in range(rows)],
            dtype=pl.String,
        )
        if text is None:
            return six
        # a template holding both families: the IPv4 field is used where it is not 0.0.0.0
        return (
            pl.select(pl.when(pl.lit(text) == "0.0.0.0").then(pl.lit(six)).otherwise(pl.lit(text)))
            .to_series()
            .alias(name)
        )
    if text is None:
        return pl.Series(name, [None] * rows, dtype=pl.String)
    return text


_PROTOCOL_TEXT = {str(number): label for number, label in PROTOCOL_NAMES.items()}


def _protocols(proto: np.ndarray | None, rows: int) -> pl.Series:
    if proto is None:
        return pl.Series("proto", [None] * rows, dtype=pl.String)
    return pl.Series("proto", proto, dtype=pl.Int64).cast(pl.String).replace(_PROTOCOL_TEXT)


def _flags(flags: np.ndarray | None, rows: int) -> pl.Series:
    if flags is None:
        return pl.Series("tcp_flags", [None] * rows, dtype=pl.String)
    series = pl.Series("f", flags, dtype=pl.Int64)
    letters = [
        pl.when((pl.lit(series) // (1 << (7 - i))) % 2 == 1).then(pl.lit(letter)).otherwise(pl.lit("."))
        for i, letter in enumerate(_FLAG_LETTERS)
    ]
    return pl.select(pl.concat_str(letters).alias("tcp_flags")).to_series()


def empty_table() -> pl.DataFrame:
    """A decoded table with no flows."""
    schema: dict[str, pl.DataType] = {
        "time": TIME_DTYPE,
        "src": pl.String(),
        "dst": pl.String(),
        "spt": pl.Int64(),
        "dpt": pl.Int64(),
        "proto": pl.String(),
        "duration": pl.Float64(),
        "out_bytes": pl.Int64(),
        "in_bytes": pl.Int64(),
        "out_pkts": pl.Int64(),
        "in_pkts": pl.Int64(),
        "tcp_flags": pl.String(),
        RECEIVED: pl.Float64(),
    }
    return pl.DataFrame(schema=schema)
