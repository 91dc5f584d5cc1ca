"""Export packets built by hand with struct.pack, for the decoder tests (RFC 3954 / RFC 7011 layouts)."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence

# (element, length) of the v9 / IPFIX data template used in the tests
V4_FIELDS: tuple[tuple[int, int], ...] = (
    (8, 4),  # source IPv4
    (12, 4),  # destination IPv4
    (7, 2),  # source port
    (11, 2),  # destination port
    (4, 1),  # protocol
    (6, 1),  # TCP flags
    (1, 4),  # octets
    (2, 4),  # packets
    (22, 4),  # first switched / flowStartSysUpTime
    (21, 4),  # last switched / flowEndSysUpTime
)


#: the exporter's clock in the packet headers, and ms since it booted
SECS = 1_700_000_000
UPTIME = 3_600_000

Flow = tuple[str, str, int, int, int, int, int, int, int, int]

#: three flows of the V4_FIELDS layout, 5 to 30 s before the header's clock
FLOWS: list[Flow] = [
    ("10.0.0.1", "10.0.0.2", 40001, 443, 6, 0x1B, 5000, 10, UPTIME - 30_000, UPTIME - 10_000),
    ("10.0.0.2", "10.0.0.1", 443, 40001, 6, 0x12, 9000, 8, UPTIME - 29_500, UPTIME - 10_500),
    ("10.0.0.3", "8.8.8.8", 5353, 53, 17, 0, 80, 1, UPTIME - 5_000, UPTIME - 5_000),
]


def ip4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def v4_record(flow: Flow) -> bytes:
    """(src, dst, spt, dpt, proto, flags, octets, packets, first, last) in the V4_FIELDS layout."""
    src, dst, spt, dpt, proto, flags, octets, packets, first, last = flow
    return struct.pack(
        ">IIHHBBIIII", ip4(src), ip4(dst), spt, dpt, proto, flags, octets, packets, first, last
    )


def pad4(body: bytes) -> bytes:
    return body + b"\x00" * (-len(body) % 4)


def flowset(set_id: int, body: bytes, *, pad: bool = True) -> bytes:
    body = pad4(body) if pad else body
    return struct.pack(">HH", set_id, 4 + len(body)) + body


def template_record(template_id: int, fields: Sequence[tuple[int, int]]) -> bytes:
    out = struct.pack(">HH", template_id, len(fields))
    for element, length in fields:
        out += struct.pack(">HH", element, length)
    return out


def v9_packet(sets: Sequence[bytes], *, uptime: int, secs: int, sequence: int, source_id: int = 0) -> bytes:
    return struct.pack(">HHIIII", 9, len(sets), uptime, secs, sequence, source_id) + b"".join(sets)


def v9_options_template(
    template_id: int, scope: Sequence[tuple[int, int]], options: Sequence[tuple[int, int]]
) -> bytes:
    body = struct.pack(">HHH", template_id, 4 * len(scope), 4 * len(options))
    for element, length in (*scope, *options):
        body += struct.pack(">HH", element, length)
    return flowset(1, body)


def ipfix_field(element: int, length: int, enterprise: int | None = None) -> bytes:
    if enterprise is None:
        return struct.pack(">HH", element, length)
    return struct.pack(">HHI", element | 0x8000, length, enterprise)


def ipfix_template(template_id: int, fields: Sequence[bytes]) -> bytes:
    return flowset(2, struct.pack(">HH", template_id, len(fields)) + b"".join(fields), pad=False)


def ipfix_options_template(template_id: int, scope: Sequence[bytes], options: Sequence[bytes]) -> bytes:
    head = struct.pack(">HHH", template_id, len(scope) + len(options), len(scope))
    return flowset(3, head + b"".join(scope) + b"".join(options))


def ipfix_message(sets: Sequence[bytes], *, export_time: int, sequence: int, domain: int = 1) -> bytes:
    body = b"".join(sets)
    return struct.pack(">HHIII", 10, 16 + len(body), export_time, sequence, domain) + body


def v5_packet(records: Sequence[Flow], *, uptime: int, secs: int, nsecs: int, sequence: int) -> bytes:
    head = struct.pack(">HHIIIIBBH", 5, len(records), uptime, secs, nsecs, sequence, 0, 0, 0)
    body = b""
    for src, dst, spt, dpt, proto, flags, octets, packets, first, last in records:
        addresses = struct.pack(">III", ip4(src), ip4(dst), 0)  # next hop 0
        counts = struct.pack(">HHIIII", 1, 2, packets, octets, first, last)  # interfaces 1 -> 2
        ports = struct.pack(">HHBBBB", spt, dpt, 0, flags, proto, 0)
        body += addresses + counts + ports + struct.pack(">HHBBH", 0, 0, 24, 24, 0)
    return head + body
