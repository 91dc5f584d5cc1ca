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
them. A biflow's source need not be the side that opened the flow (softflowd keys flows by address,
lower address first), so the decoder turns a biflow round where its reverse side is the initiator
(:func:`~nadkit.stream.netflow.decode.initiator_reversed`: ``biflowDirection``, 239, where given; then
one-sided flows, a SYN on one side only, an ICMP reply against its request, the ports); a biflow's
flags and ICMP type are then its initiator's view: ``tcp_flags`` the flags of both sides' packets,
``dpt`` the initiator's ICMP type and code. TCP flags (6) become the ``tcp_flags`` text as nfdump
writes it (``...AP.SF``: CWR ECE URG ACK PSH RST SYN FIN). The hidden column ``__received_s`` holds
the wall-clock time the packet arrived.

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

Modules: :mod:`~nadkit.stream.netflow.fields` (header layouts, information element numbers and the
lengths allowed for them, rejection reasons), :mod:`~nadkit.stream.netflow.templates` (templates,
their checks and the parsing of sets and template sets), :mod:`~nadkit.stream.netflow.decode` (the
vectorised decoding of buffered records into the canonical table) and
:mod:`~nadkit.stream.netflow.collector` (:class:`FlowDecoder`: export sessions, sequence numbers,
held data, rejection counts and their rate-limited logging).
"""

from __future__ import annotations

from nadkit.stream.netflow.collector import DecoderStats, FlowDecoder
from nadkit.stream.netflow.decode import empty_table
from nadkit.stream.netflow.fields import COLUMNS, FIELD_LENGTHS, REASONS, RECEIVED, Rejected
from nadkit.stream.netflow.templates import Template, check_template

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
