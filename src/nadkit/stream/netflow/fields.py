"""The fixed parts of NetFlow v5/v9 and IPFIX: header and set layouts, the information element
numbers the decoder reads and the lengths each may have, NetFlow v5's record as a template, the
columns of a decoded table, and the reasons data is rejected for (:class:`Rejected`)."""

from __future__ import annotations

import struct

RECEIVED = "__received_s"

V5_HEADER = struct.Struct(">HHIIIIBBH")
V9_HEADER = struct.Struct(">HHIIII")
IPFIX_HEADER = struct.Struct(">HHIII")
SET_HEADER = struct.Struct(">HH")
V5_RECORD_BYTES = 48
V5_MAX_RECORDS = 30
VARIABLE_LENGTH = 65535
REVERSE_PEN = 29305  # RFC 5103 reverse information elements
NTP_EPOCH_OFFSET_S = 2_208_988_800
_MOD32 = 1 << 32

# information element numbers (shared by NetFlow v9 field types and IPFIX)
OCTETS, PACKETS, PROTOCOL, TCP_FLAGS, SRC_PORT, SRC_V4, DST_PORT, DST_V4 = 1, 2, 4, 6, 7, 8, 11, 12
END_UPTIME, START_UPTIME, OUT_OCTETS, OUT_PACKETS, SRC_V6, DST_V6 = 21, 22, 23, 24, 27, 28
ICMP_V4, ICMP_V6, OCTETS_TOTAL, PACKETS_TOTAL = 32, 139, 85, 86
START_S, END_S, START_MS, END_MS, START_US, END_US, START_NS, END_NS = range(150, 158)
SYSTEM_INIT_MS, DURATION_MS, DURATION_US = 160, 161, 162
#: IPFIX biflowDirection (RFC 5103): 0 arbitrary, 1 initiator, 2 reverse initiator, 3 perimeter
BIFLOW_DIRECTION = 239
PADDING = 210

#: NetFlow v5's fixed record, described as a template of information elements
_V5_FIELDS = (
    (SRC_V4, 4),
    (DST_V4, 4),
    (15, 4),  # next hop
    (10, 2),  # input interface
    (14, 2),  # output interface
    (PACKETS, 4),
    (OCTETS, 4),
    (START_UPTIME, 4),
    (END_UPTIME, 4),
    (SRC_PORT, 2),
    (DST_PORT, 2),
    (PADDING, 1),
    (TCP_FLAGS, 1),
    (PROTOCOL, 1),
    (5, 1),  # type of service
    (16, 2),  # source AS
    (17, 2),  # destination AS
    (9, 1),  # source mask
    (13, 1),  # destination mask
    (PADDING, 2),
)

#: canonical columns of a decoded table, in order
COLUMNS = (
    "time",
    "src",
    "dst",
    "spt",
    "dpt",
    "proto",
    "duration",
    "out_bytes",
    "in_bytes",
    "out_pkts",
    "in_pkts",
    "tcp_flags",
    RECEIVED,
)
_FLAG_LETTERS = "CEUAPRSF"

#: why a datagram, template or record was rejected (the keys of :meth:`FlowDecoder.rejections`)
REASONS = (
    "malformed",
    "unknown_version",
    "bad_template",
    "sequence_jump",
    "implausible_time",
    "implausible_counts",
    "too_many_sessions",
    "decode_error",
)

_COUNTER = tuple(range(1, 9))
_SHORT = (1, 2)
#: lengths (bytes) each information element the decoder reads may have; RFC 7011 section 6.2 allows a
#: shorter encoding of an unsigned number, never a longer one, and addresses have exactly their width
FIELD_LENGTHS: dict[int, tuple[int, ...]] = {
    OCTETS: _COUNTER,
    PACKETS: _COUNTER,
    OUT_OCTETS: _COUNTER,
    OUT_PACKETS: _COUNTER,
    OCTETS_TOTAL: _COUNTER,
    PACKETS_TOTAL: _COUNTER,
    PROTOCOL: (1,),
    TCP_FLAGS: _SHORT,
    SRC_PORT: _SHORT,
    DST_PORT: _SHORT,
    ICMP_V4: _SHORT,
    ICMP_V6: _SHORT,
    SRC_V4: (4,),
    DST_V4: (4,),
    SRC_V6: (16,),
    DST_V6: (16,),
    START_UPTIME: (1, 2, 3, 4),
    END_UPTIME: (1, 2, 3, 4),
    START_S: (1, 2, 3, 4),
    END_S: (1, 2, 3, 4),
    START_MS: _COUNTER,
    END_MS: _COUNTER,
    START_US: (8,),
    END_US: (8,),
    START_NS: (8,),
    END_NS: (8,),
    SYSTEM_INIT_MS: _COUNTER,
    DURATION_MS: (1, 2, 3, 4),
    DURATION_US: (1, 2, 3, 4),
    BIFLOW_DIRECTION: (1,),
}
_REVERSE_READ = (OCTETS, PACKETS, OCTETS_TOTAL, PACKETS_TOTAL, TCP_FLAGS, ICMP_V4, ICMP_V6)
MAX_IP_PACKET_BYTES = 65_535
MAX_RECORD_BYTES = 65_535


class Rejected(ValueError):
    """A datagram (or a part of it) the decoder refuses, with the reason it is counted under."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
