"""NetFlow v5, NetFlow v9 (RFC 3954) and IPFIX (RFC 7011) export packets decoded into flow tables.

:class:`FlowDecoder` takes export packets as they come off a UDP socket (``feed``) and hands out the
flows decoded so far as one canonical table (``take``). It is built for throughput: a packet is only
split into sets and the raw records of each template are appended to a buffer; ``take`` then decodes
every buffered record of a template at once with a NumPy record layout (vectorised), so the per-packet
Python work is a few slices.

Templates (v9 and IPFIX) are kept per *session*: exporter address and port, protocol version and
source id / observation domain. A template re-sent unchanged is a refresh; one re-sent with another
layout replaces the old (records already buffered are decoded with the layout they came with); an
IPFIX withdrawal (field count 0) removes it. Data whose template has not arrived yet is held, bounded
in sets and bytes (the oldest is dropped and counted when full), and decoded when the template comes.
Options templates are read but their records are not flows; the one value used from them is IPFIX
``systemInitTimeMilliseconds`` (element 160), the base of the ``flow*SysUpTime`` times. Sequence
numbers are checked per session: a jump forward is a gap (packets, or records for v5 and IPFIX,
counted as lost), a step back a reordering or an exporter restart.

Mapping to the canonical table: ``time`` is the flow start. NetFlow v5/v9 ``FIRST_SWITCHED`` /
``LAST_SWITCHED`` are milliseconds of the exporter's ``sysUptime``: the absolute time is the header's
``unix_secs`` (and v5 ``unix_nsecs``) minus ``sysUptime - FIRST_SWITCHED``, read as a signed 32-bit
difference (so a counter that wrapped still gives the right time). IPFIX times come from
``flowStartSeconds``/``Milliseconds``/``Microseconds``/``Nanoseconds`` (150, 152, 154, 156; the NTP
formats for the last two), or ``flowStartSysUpTime`` (22) plus the exporter's system init time; the
end likewise (151, 153, 155, 157, 21), or start plus ``flowDurationMilliseconds``/``Microseconds``
(161, 162). Without any time the message's export time is used. ``duration`` is end minus start in
seconds (unset when the exporter gives an end before the start). Addresses: IPv4 (8, 12) or IPv6 (27,
28) as text; ports (7, 11); ICMP flows carry ``type * 256 + code`` (32, 139) in ``dpt`` and 0 in
``spt``, as nfdump writes them; ``proto`` the protocol name. Records are unidirectional: the octet
and packet counts (1, 2; or the totals 85, 86) are what ``src`` sent, ``out_bytes``/``out_pkts``,
and ``in_bytes``/``in_pkts`` are 0, except for IPFIX biflows (RFC 5103 reverse elements, enterprise
29305) and NetFlow v9 ``OUT_BYTES``/``OUT_PKTS`` (23, 24; nProbe's reverse direction), which fill
them. TCP flags (6) become the ``tcp_flags`` text as nfdump writes it (``...AP.SF``: CWR ECE URG ACK
PSH RST SYN FIN). The hidden column ``__received_s`` holds the wall-clock time the packet arrived.

A collector listening on UDP takes packets from anyone, so nothing a packet holds may stop it. Every
rejected datagram, template or record is counted by exporter and reason (:data:`REASONS`), logged at a
bounded rate (one line per exporter and reason a minute, with the count of those not logged), and
skipped; the decoder never raises from :meth:`FlowDecoder.feed` or :meth:`FlowDecoder.take`. Checked:

- headers, set and template lengths (``malformed``), the protocol version (``unknown_version``);
- templates: a field the decoder reads must have a length its type allows (IPv4 addresses 4 bytes,
  IPv6 16, ports 1-2, counters 1-8, NTP times 8, ...), no fixed field is 0 bytes long, a record is at
  most a set long (``bad_template``); a template that fails keeps the session's earlier one, if any;
- sequence numbers: a jump forward of more than ``max_sequence_jump``, or back to a number that is not
  near 0 (an exporter restart starts over from 0), drops the packet (``sequence_jump``) without moving
  the expected number; a second packet that continues from the dropped one is taken as a restart;
- records: a start more than ``max_flow_age_s`` before the exporter's clock or more than
  ``max_clock_skew_s`` after it, or a duration over ``max_flow_age_s`` (``implausible_time``); more
  bytes than 65,535 a packet (the largest IP packet), bytes without packets, or counts past 2^63
  (``implausible_counts``);
- at most ``max_sessions`` export sessions are kept (``too_many_sessions``).
"""

from __future__ import annotations

import ipaddress
import logging
import struct
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from nadkit.schema import PROTOCOL_NAMES, TIME_DTYPE

log = logging.getLogger(__name__)

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
}
_REVERSE_READ = (OCTETS, PACKETS, OCTETS_TOTAL, PACKETS_TOTAL)
MAX_IP_PACKET_BYTES = 65_535
MAX_RECORD_BYTES = 65_535


class Rejected(ValueError):
    """A datagram (or a part of it) the decoder refuses, with the reason it is counted under."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def check_template(template: Template) -> None:
    """Raise :class:`Rejected` when a field the decoder reads has a length its type does not allow."""
    if template.record_length > MAX_RECORD_BYTES:
        raise Rejected(
            "bad_template", f"template {template.template_id}: records of {template.record_length} bytes"
        )
    for element, length, enterprise in template.fields:
        if length == 0:
            raise Rejected("bad_template", f"template {template.template_id}: element {element} has length 0")
        if enterprise == 0 or (enterprise == REVERSE_PEN and element in _REVERSE_READ):
            allowed = FIELD_LENGTHS.get(element)
            if allowed is not None and length not in allowed:
                raise Rejected(
                    "bad_template",
                    f"template {template.template_id}: element {element} has length {length}"
                    f" (allowed: {', '.join(map(str, allowed))})",
                )


class _Throttle:
    """At most one log line per key and ``interval_s``, with the count of those held back."""

    def __init__(self, interval_s: float = 60.0, max_keys: int = 4096) -> None:
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._last: dict[Any, float] = {}
        self._held: Counter[Any] = Counter()

    def warn(self, key: Any, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] += 1
            log.debug(message, *args)
            return
        if last is None and len(self._last) >= self.max_keys:
            self._last.clear()
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            log.warning(message + " (and %d more like it not logged)", *args, held)
        else:
            log.warning(message, *args)


class Template:
    """A template (or options template) of one session: its fields and, when every field has a fixed
    length, the NumPy record layout that decodes its records in one step."""

    __slots__ = ("dtype", "fields", "index", "record_length", "scope_fields", "template_id")

    def __init__(
        self, template_id: int, fields: Iterable[tuple[int, int, int]], scope_fields: int = 0
    ) -> None:
        self.template_id = template_id
        self.fields: tuple[tuple[int, int, int], ...] = tuple(fields)
        self.scope_fields = scope_fields
        self.index: dict[tuple[int, int], str] = {}
        variable = any(length == VARIABLE_LENGTH for _, length, _ in self.fields)
        self.record_length = sum(length for _, length, _ in self.fields if length != VARIABLE_LENGTH)
        layout: list[tuple[str, str]] = []
        for position, (element, length, enterprise) in enumerate(self.fields):
            name = f"f{position}"
            self.index.setdefault((element, enterprise), name)
            if length == VARIABLE_LENGTH:
                continue
            layout.append((name, _field_format(length)))
        self.dtype: np.dtype | None = None if variable else np.dtype(layout)

    @property
    def options(self) -> bool:
        return self.scope_fields > 0

    def same_as(self, other: Template) -> bool:
        return self.fields == other.fields and self.scope_fields == other.scope_fields

    def __repr__(self) -> str:
        return f"Template({self.template_id}, {len(self.fields)} fields, scope {self.scope_fields})"


def _field_format(length: int) -> str:
    if length == 1:
        return "u1"
    if length in (2, 4, 8):
        return f">u{length}"
    return f"V{length}"


class _Context(NamedTuple):
    """What the times of a packet's records are relative to."""

    base_us: int  # v5/v9: header unix time; IPFIX: export time (epoch microseconds)
    uptime_ms: int  # v5/v9: header sysUptime; IPFIX: -1
    init_ms: int  # IPFIX: the exporter's system init time (epoch ms), -1 when unknown
    received_s: float


@dataclass
class DecoderStats:
    """Counts since the decoder started (``pending_sets`` is the number held now)."""

    packets: int = 0
    bytes: int = 0
    flows: int = 0
    malformed_packets: int = 0
    unknown_version: int = 0
    templates: int = 0
    template_refreshes: int = 0
    template_changes: int = 0
    templates_withdrawn: int = 0
    options_records: int = 0
    pending_sets: int = 0
    pending_decoded_sets: int = 0
    pending_dropped_sets: int = 0
    sequence_gaps: int = 0
    sequence_lost: int = 0
    sequence_reordered: int = 0
    sequence_restarts: int = 0
    records_rejected: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, int]:
        """Flat counts; ``rejected_<reason>`` for each reason seen."""
        out = {k: v for k, v in asdict(self).items() if k != "rejected"}
        out.update({f"rejected_{reason}": count for reason, count in sorted(self.rejected.items())})
        return out


@dataclass
class _Session:
    version: int
    templates: dict[int, Template] = field(default_factory=dict)
    init_ms: int = -1
    expected: int | None = None
    candidate: int | None = None  # the sequence number of a packet dropped for its jump
    refused: set[int] = field(default_factory=set)  # template ids whose only template was rejected


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


class _Held(NamedTuple):
    """A data set whose template has not arrived yet."""

    session: tuple[Any, ...]
    template_id: int
    body: bytes
    context: _Context


class FlowDecoder:
    """Decodes NetFlow v5/v9 and IPFIX packets from any number of exporters (module docstring).

    ``max_pending_sets`` / ``max_pending_bytes`` bound the data held for templates not seen yet; the
    other bounds are the plausibility checks of the module docstring.
    """

    def __init__(
        self,
        *,
        max_pending_sets: int = 512,
        max_pending_bytes: int = 4 << 20,
        max_sessions: int = 4096,
        max_sequence_jump: int = 1 << 24,
        max_flow_age_s: float = 8 * 86_400.0,
        max_clock_skew_s: float = 300.0,
        log_interval_s: float = 60.0,
    ) -> None:
        self.stats = DecoderStats()
        self.max_pending_sets = max_pending_sets
        self.max_pending_bytes = max_pending_bytes
        self.max_sessions = max_sessions
        self.max_sequence_jump = max_sequence_jump
        self.max_flow_age_us = int(max_flow_age_s * 1e6)
        self.max_clock_skew_us = int(max_clock_skew_s * 1e6)
        self._throttle = _Throttle(log_interval_s)
        self._by_exporter: dict[str, Counter[str]] = {}
        self._sessions: dict[tuple[Any, ...], _Session] = {}
        self._groups: dict[tuple[Any, ...], _Group] = {}
        self._held: deque[_Held] = deque()
        self._held_bytes = 0
        self._rows = 0
        self._finished: list[pl.DataFrame] = []

    # -- the interface ------------------------------------------------------------------------------

    @property
    def rows(self) -> int:
        """Flows decoded (or buffered for decoding) and not taken yet."""
        return self._rows

    def feed(self, data: bytes, exporter: tuple[Any, ...] = ("", 0), received_s: float = 0.0) -> int:
        """Take one export packet from ``exporter`` (address, port); returns the flows it added.
        A malformed packet is counted and skipped (what it held before the damage is kept)."""
        self.stats.packets += 1
        self.stats.bytes += len(data)
        before = self._rows
        try:
            if len(data) < 4:
                raise Rejected("malformed", "packet shorter than a header")
            version = (data[0] << 8) | data[1]
            if version == 5:
                self._v5(data, exporter, received_s)
            elif version == 9:
                self._v9(data, exporter, received_s)
            elif version == 10:
                self._ipfix(data, exporter, received_s)
            else:
                self.stats.unknown_version += 1
                raise Rejected("unknown_version", f"unknown version {version}")
        except Rejected as error:
            if error.reason == "malformed":
                self.stats.malformed_packets += 1
            self._reject(exporter, error.reason, str(error))
        except (ValueError, struct.error, IndexError, OverflowError) as error:
            self.stats.malformed_packets += 1
            self._reject(exporter, "malformed", str(error))
        except Exception as error:  # a packet must never stop the collector
            self.stats.malformed_packets += 1
            log.debug("export packet from %s raised", exporter, exc_info=True)
            self._reject(exporter, "decode_error", f"{type(error).__name__}: {error}")
        added = self._rows - before
        self.stats.flows += added
        return added

    def rejections(self) -> dict[str, dict[str, int]]:
        """Datagrams, templates and records rejected so far, by exporter (``address:port``) and reason."""
        return {exporter: dict(counts) for exporter, counts in self._by_exporter.items()}

    def _reject(self, exporter: tuple[Any, ...] | str, reason: str, detail: str, count: int = 1) -> None:
        name = exporter if isinstance(exporter, str) else _exporter_name(exporter)
        self.stats.rejected[reason] += count
        counts = self._by_exporter.get(name)
        if counts is None:
            if len(self._by_exporter) >= self.max_sessions:
                name = "(other exporters)"
            counts = self._by_exporter.setdefault(name, Counter())
        counts[reason] += count
        self._throttle.warn((name, reason), "export data from %s rejected (%s): %s", name, reason, detail)

    def take(self) -> pl.DataFrame:
        """Every flow decoded since the last call, as a canonical table (arrival order per template)."""
        frames = self._finished
        self._finished = []
        for group in self._groups.values():
            if group.rows:
                frames.append(self._decode(group))
        self._groups.clear()
        self._rows = 0
        frames = [f for f in frames if f.height]
        if not frames:
            return empty_table()
        return frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical")

    def templates(self) -> dict[tuple[Any, ...], dict[int, Template]]:
        """The templates known now, by session (exporter address, port, version, domain)."""
        return {key: dict(session.templates) for key, session in self._sessions.items()}

    # -- NetFlow v5 ---------------------------------------------------------------------------------

    def _v5(self, data: bytes, exporter: tuple[Any, ...], received_s: float) -> None:
        (_, count, uptime, secs, nsecs, sequence, engine_type, engine_id, _) = V5_HEADER.unpack_from(data)
        if count > V5_MAX_RECORDS or len(data) < V5_HEADER.size + count * V5_RECORD_BYTES:
            raise ValueError(f"v5 packet of {len(data)} bytes cannot hold {count} records")
        key = (*exporter[:2], 5, (engine_type << 8) | engine_id)
        session = self._session(key, 5)
        self._check_sequence(session, sequence)
        self._sequence(session, sequence, count)
        context = _Context(secs * 1_000_000 + nsecs // 1000, uptime, -1, received_s)
        template = session.templates.get(0)
        if template is None:
            template = session.templates[0] = Template(0, ((e, n, 0) for e, n in _V5_FIELDS))
        body = data[V5_HEADER.size : V5_HEADER.size + count * V5_RECORD_BYTES]
        self._buffer(key, template, 5, body, count, context)

    # -- NetFlow v9 ---------------------------------------------------------------------------------

    def _v9(self, data: bytes, exporter: tuple[Any, ...], received_s: float) -> None:
        (_, _, uptime, secs, sequence, source_id) = V9_HEADER.unpack_from(data)
        key = (*exporter[:2], 9, source_id)
        session = self._session(key, 9)
        self._check_sequence(session, sequence)
        self._sequence(session, sequence, 1)
        context = _Context(secs * 1_000_000, uptime, -1, received_s)
        for set_id, body in _sets(data, V9_HEADER.size, len(data)):
            if set_id == 0:
                self._templates(key, session, _v9_templates(body))
            elif set_id == 1:
                self._templates(key, session, _v9_options_templates(body))
            elif set_id >= 256:
                self._data(key, session, set_id, body, context)

    # -- IPFIX --------------------------------------------------------------------------------------

    def _ipfix(self, data: bytes, exporter: tuple[Any, ...], received_s: float) -> None:
        (_, length, export_time, sequence, domain) = IPFIX_HEADER.unpack_from(data)
        if length > len(data) or length < IPFIX_HEADER.size:
            raise ValueError(f"IPFIX message length {length} does not match the {len(data)} bytes received")
        key = (*exporter[:2], 10, domain)
        session = self._session(key, 10)
        self._check_sequence(session, sequence)
        records = 0
        known = True
        for set_id, body in _sets(data, IPFIX_HEADER.size, length):
            if set_id == 2:
                self._templates(key, session, _ipfix_templates(body, options=False))
            elif set_id == 3:
                self._templates(key, session, _ipfix_templates(body, options=True))
            elif set_id >= 256:
                context = _Context(export_time * 1_000_000, -1, session.init_ms, received_s)
                count = self._data(key, session, set_id, body, context)
                if count is None:
                    known = False
                else:
                    records += count
        # the sequence number counts data records: the next one is only known when every set was read
        self._sequence(session, sequence, records if known else None)

    # -- shared steps -------------------------------------------------------------------------------

    def _session(self, key: tuple[Any, ...], version: int) -> _Session:
        session = self._sessions.get(key)
        if session is None:
            if len(self._sessions) >= self.max_sessions:
                raise Rejected("too_many_sessions", f"already {len(self._sessions)} export sessions")
            session = self._sessions[key] = _Session(version)
            log.info("new export session %s (NetFlow/IPFIX version %d)", key, version)
        return session

    def _check_sequence(self, session: _Session, sequence: int) -> None:
        """Refuse a packet whose sequence number jumps implausibly (module docstring)."""
        expected = session.expected
        if expected is None or sequence == expected:
            return
        ahead = (sequence - expected) % _MOD32
        if ahead < (1 << 31) and ahead <= self.max_sequence_jump:
            return  # a gap: packets were lost
        if ahead >= (1 << 31) and (
            _MOD32 - ahead <= self.max_sequence_jump or sequence <= self.max_sequence_jump
        ):
            return  # reordered, or the exporter restarted from 0
        candidate = session.candidate
        if candidate is not None and 0 < (sequence - candidate) % _MOD32 <= self.max_sequence_jump:
            session.candidate = None
            session.expected = None  # a second packet goes on from the first: the exporter restarted
            self.stats.sequence_restarts += 1
            return
        session.candidate = sequence
        raise Rejected("sequence_jump", f"sequence number {sequence} where {expected} was expected")

    def _sequence(self, session: _Session, sequence: int, advance: int | None) -> None:
        expected = session.expected
        if expected is not None and sequence != expected:
            ahead = (sequence - expected) % _MOD32
            if ahead < (1 << 31):
                self.stats.sequence_gaps += 1
                self.stats.sequence_lost += ahead
            else:
                self.stats.sequence_reordered += 1
        session.expected = None if advance is None else (sequence + advance) % _MOD32

    def _templates(
        self, key: tuple[Any, ...], session: _Session, found: list[tuple[int, Template | None]]
    ) -> None:
        for template_id, template in found:
            if template is None:  # IPFIX withdrawal
                self._withdraw(session, template_id)
                continue
            try:
                check_template(template)
            except Rejected as error:
                self._reject(key, error.reason, str(error))
                self._drop_held(key, template_id)  # data held for it was written with that layout
                if template_id not in session.templates and len(session.refused) < 65_536:
                    session.refused.add(template_id)
                continue
            session.refused.discard(template_id)
            old = session.templates.get(template_id)
            if old is not None and old.same_as(template):
                self.stats.template_refreshes += 1
                continue
            if old is not None:
                self.stats.template_changes += 1
                self._retire(key, template_id)
                log.info("template %d of %s changed layout", template_id, key)
            else:
                self.stats.templates += 1
            session.templates[template_id] = template
            self._release_held(key, session, template_id)

    def _withdraw(self, session: _Session, template_id: int) -> None:
        if template_id in (2, 3):  # every template / every options template
            doomed = [t for t, tpl in session.templates.items() if tpl.options == (template_id == 3)]
        else:
            doomed = [template_id] if template_id in session.templates else []
        for tid in doomed:
            del session.templates[tid]
            self.stats.templates_withdrawn += 1

    def _retire(self, key: tuple[Any, ...], template_id: int) -> None:
        """Decode what was buffered with a template's old layout before the new one is used."""
        group = self._groups.pop((key, template_id), None)
        if group is not None and group.rows:
            self._finished.append(self._decode(group))

    def _data(
        self, key: tuple[Any, ...], session: _Session, template_id: int, body: bytes, context: _Context
    ) -> int | None:
        """Buffer a data set; returns its record count, or None when its template is unknown."""
        template = session.templates.get(template_id)
        if template is None:
            if template_id in session.refused:
                self._reject(key, "bad_template", f"data set of rejected template {template_id}")
                return 0
            self._hold(_Held(key, template_id, body, context))
            return None
        if template.options:
            return self._options(session, template, body)
        if template.dtype is None:
            body, count, template = _repack(template, body)
            return self._buffer(key, template, session.version, body, count, context, variable=True)
        if template.record_length == 0:
            return 0
        count = len(body) // template.record_length
        self._buffer(key, template, session.version, body[: count * template.record_length], count, context)
        return count

    def _buffer(
        self,
        key: tuple[Any, ...],
        template: Template,
        version: int,
        body: bytes,
        count: int,
        context: _Context,
        *,
        variable: bool = False,
    ) -> int:
        if count == 0:
            return 0
        group_key = (key, template.template_id, "repacked") if variable else (key, template.template_id)
        group = self._groups.get(group_key)
        if group is None or (group.template is not template and not group.template.same_as(template)):
            if group is not None and group.rows:
                self._finished.append(self._decode(group))
            group = self._groups[group_key] = _Group(template, version, _exporter_name(key))
        group.chunks.append(body)
        group.contexts.append((count, context))
        group.rows += count
        self._rows += count
        return count

    def _decode(self, group: _Group) -> pl.DataFrame:
        """A group's records as a table, implausible records dropped and counted; never raises."""
        try:
            frame, dropped = _decode_group(group, self.max_flow_age_us, self.max_clock_skew_us)
        except Exception as error:  # a template that passed the checks and still cannot be decoded
            log.debug("records of %s could not be decoded", group.exporter, exc_info=True)
            self.stats.records_rejected += group.rows
            self._reject(group.exporter, "decode_error", f"{type(error).__name__}: {error}", group.rows)
            return empty_table()
        for reason, count in dropped.items():
            if count:
                self.stats.records_rejected += count
                self._reject(group.exporter, reason, f"{count} records", count)
        return frame

    def _options(self, session: _Session, template: Template, body: bytes) -> int:
        count = _count_records(template, body)
        self.stats.options_records += count
        name = template.index.get((SYSTEM_INIT_MS, 0))
        if name is not None and template.dtype is not None and count:
            records = np.frombuffer(body, dtype=template.dtype, count=count)
            values = _unsigned(records[name])
            session.init_ms = int(values[-1])
        return count

    def _hold(self, held: _Held) -> None:
        self._held.append(held)
        self._held_bytes += len(held.body)
        while len(self._held) > self.max_pending_sets or self._held_bytes > self.max_pending_bytes:
            dropped = self._held.popleft()
            self._held_bytes -= len(dropped.body)
            self.stats.pending_dropped_sets += 1
            self._throttle.warn(
                "pending", "data sets without a template are being dropped (the exporter sent no template)"
            )
        self.stats.pending_sets = len(self._held)

    def _drop_held(self, key: tuple[Any, ...], template_id: int) -> None:
        kept = deque(h for h in self._held if h.session != key or h.template_id != template_id)
        dropped = len(self._held) - len(kept)
        if dropped:
            self._held_bytes = sum(len(h.body) for h in kept)
            self._held = kept
            self.stats.pending_dropped_sets += dropped
            self.stats.pending_sets = len(kept)

    def _release_held(self, key: tuple[Any, ...], session: _Session, template_id: int) -> None:
        if not self._held:
            return
        keep: deque[_Held] = deque()
        for held in self._held:
            if held.session == key and held.template_id == template_id:
                self._held_bytes -= len(held.body)
                self.stats.pending_decoded_sets += 1
                context = held.context
                if session.version == 10 and context.init_ms < 0:
                    context = context._replace(init_ms=session.init_ms)
                self._data(key, session, template_id, held.body, context)
            else:
                keep.append(held)
        self._held = keep
        self.stats.pending_sets = len(self._held)


# ---------------------------------------------------------------------------------------------------
# parsing sets and templates
# ---------------------------------------------------------------------------------------------------


def _sets(data: bytes, offset: int, end: int) -> Iterable[tuple[int, bytes]]:
    """(set id, body) of each flowset / set of a packet."""
    while offset + 4 <= end:
        set_id, length = SET_HEADER.unpack_from(data, offset)
        if length < 4 or offset + length > end:
            raise ValueError(f"set {set_id} at byte {offset} has length {length}")
        yield set_id, data[offset + 4 : offset + length]
        offset += length


def _v9_templates(body: bytes) -> list[tuple[int, Template | None]]:
    found: list[tuple[int, Template | None]] = []
    offset = 0
    while offset + 4 <= len(body):
        template_id, count = SET_HEADER.unpack_from(body, offset)
        if template_id < 256:  # padding
            break
        offset += 4
        if offset + 4 * count > len(body):
            raise ValueError(f"template {template_id} is cut short")
        fields = [(*struct.unpack_from(">HH", body, offset + 4 * i), 0) for i in range(count)]
        offset += 4 * count
        found.append((template_id, Template(template_id, fields)))
    return found


def _v9_options_templates(body: bytes) -> list[tuple[int, Template | None]]:
    found: list[tuple[int, Template | None]] = []
    offset = 0
    while offset + 6 <= len(body):
        template_id, scope_bytes, option_bytes = struct.unpack_from(">HHH", body, offset)
        if template_id < 256:
            break
        offset += 6
        if offset + scope_bytes + option_bytes > len(body):
            raise ValueError(f"options template {template_id} is cut short")
        count = (scope_bytes + option_bytes) // 4
        fields = []
        for i in range(count):
            element, length = struct.unpack_from(">HH", body, offset + 4 * i)
            # v9 scope field types (system, interface, ...) overlap element numbers: keep them apart
            fields.append((element, length, -1 if i < scope_bytes // 4 else 0))
        offset += scope_bytes + option_bytes
        found.append((template_id, Template(template_id, fields, scope_fields=max(1, scope_bytes // 4))))
    return found


def _ipfix_templates(body: bytes, *, options: bool) -> list[tuple[int, Template | None]]:
    found: list[tuple[int, Template | None]] = []
    offset = 0
    while offset + 4 <= len(body):
        template_id, count = SET_HEADER.unpack_from(body, offset)
        offset += 4
        if count == 0:
            found.append((template_id, None))
            continue
        if template_id < 256:
            raise ValueError(f"template id {template_id} is reserved")
        scope = 0
        if options:
            (scope,) = struct.unpack_from(">H", body, offset)
            offset += 2
            if scope == 0 or scope > count:
                raise ValueError(f"options template {template_id} has scope field count {scope}")
        fields = []
        for _ in range(count):
            element, length = struct.unpack_from(">HH", body, offset)
            offset += 4
            enterprise = 0
            if element & 0x8000:
                (enterprise,) = struct.unpack_from(">I", body, offset)
                offset += 4
                element &= 0x7FFF
            fields.append((element, length, enterprise))
        found.append((template_id, Template(template_id, fields, scope_fields=scope)))
    return found


def _variable_length(body: bytes, offset: int) -> tuple[int, int]:
    """(length, offset of the value) of an IPFIX variable-length field at ``offset``."""
    length = body[offset]
    if length < 255:
        return length, offset + 1
    return struct.unpack_from(">H", body, offset + 1)[0], offset + 3


def _count_records(template: Template, body: bytes) -> int:
    if template.dtype is not None:
        return len(body) // template.record_length if template.record_length else 0
    return _repack(template, body)[1]


def _repack(template: Template, body: bytes) -> tuple[bytes, int, Template]:
    """Records of a template with variable-length fields rewritten as fixed-length records of its
    fixed-length fields (what the flow mapping reads), with the template that describes them."""
    fixed = [(i, f) for i, f in enumerate(template.fields) if f[1] != VARIABLE_LENGTH]
    out = bytearray()
    count = 0
    offset = 0
    minimum = template.record_length + sum(1 for f in template.fields if f[1] == VARIABLE_LENGTH)
    while offset + max(minimum, 1) <= len(body):
        values: dict[int, bytes] = {}
        for position, (_, length, _) in enumerate(template.fields):
            if length == VARIABLE_LENGTH:
                length, offset = _variable_length(body, offset)
            else:
                values[position] = body[offset : offset + length]
            offset += length
            if offset > len(body):
                raise ValueError(f"record of template {template.template_id} is cut short")
        out += b"".join(values[i] for i, _ in fixed)
        count += 1
    packed = Template(template.template_id, (f for _, f in fixed), template.scope_fields)
    return bytes(out), count, packed


# ---------------------------------------------------------------------------------------------------
# decoding buffered records (vectorised)
# ---------------------------------------------------------------------------------------------------


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
    if icmp is not None:
        is_icmp = np.isin(proto, (1, 58)) if proto is not None else np.ones(rows, dtype=bool)
        dpt = np.where(is_icmp, icmp, dpt if dpt is not None else 0)
        spt = np.where(is_icmp, 0, spt if spt is not None else 0)
    flags = number(TCP_FLAGS)
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
    frame = frame.with_columns(
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
    """Flow start and end, epoch microseconds (module docstring)."""
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


__all__ = [
    "COLUMNS",
    "FIELD_LENGTHS",
    "REASONS",
    "RECEIVED",
    "DecoderStats",
    "FlowDecoder",
    "Rejected",
    "Template",
    "check_template",
    "empty_table",
]
