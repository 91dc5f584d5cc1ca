"""NetFlow v5 / v9 and IPFIX decoding on hand-built packets: fields, times, templates (late, refreshed,
changed, withdrawn, per exporter), options, sequence gaps, malformed input."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from nadkit.stream.netflow import RECEIVED, FlowDecoder
from tests.stream.packets import (
    FLOWS,
    SECS,
    UPTIME,
    V4_FIELDS,
    Flow,
    flowset,
    ipfix_field,
    ipfix_message,
    ipfix_options_template,
    ipfix_template,
    template_record,
    v4_record,
    v5_packet,
    v9_options_template,
    v9_packet,
)

EXPORTER = ("192.0.2.1", 40000)


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(SECS, UTC) + timedelta(seconds=seconds)


def v9_data(flows: list[Flow], template_id: int = 256) -> bytes:
    return flowset(template_id, b"".join(v4_record(f) for f in flows))


def v9_template(template_id: int = 256, fields=V4_FIELDS) -> bytes:  # type: ignore[no-untyped-def]
    return flowset(0, template_record(template_id, fields))


def decode(decoder: FlowDecoder, *packets: bytes, exporter=EXPORTER) -> pl.DataFrame:  # type: ignore[no-untyped-def]
    for packet in packets:
        decoder.feed(packet, exporter, 123.5)
    return decoder.take()


def test_v9_template_and_data_in_one_packet() -> None:
    packet = v9_packet([v9_template(), v9_data(FLOWS)], uptime=UPTIME, secs=SECS, sequence=1)
    frame = decode(FlowDecoder(), packet)
    assert frame.height == 3
    assert frame["src"].to_list() == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert frame["dst"].to_list() == ["10.0.0.2", "10.0.0.1", "8.8.8.8"]
    assert frame["spt"].to_list() == [40001, 443, 5353]
    assert frame["dpt"].to_list() == [443, 40001, 53]
    assert frame["proto"].to_list() == ["tcp", "tcp", "udp"]
    # FIRST_SWITCHED is sysUptime-relative: unix_secs - (sysUptime - FIRST_SWITCHED)
    assert frame["time"].to_list() == [at(-30), at(-29.5), at(-5)]
    assert frame["duration"].to_list() == [20.0, 19.0, 0.0]
    assert frame["out_bytes"].to_list() == [5000, 9000, 80]
    assert frame["out_pkts"].to_list() == [10, 8, 1]
    assert frame["in_bytes"].to_list() == [0, 0, 0]
    assert frame["in_pkts"].to_list() == [0, 0, 0]
    assert frame["tcp_flags"].to_list() == ["...AP.SF", "...A..S.", "........"]
    assert frame[RECEIVED].to_list() == [123.5] * 3
    assert frame.schema["time"] == pl.Datetime("us", "UTC")


def test_data_before_its_template_is_held_then_decoded_with_its_own_header() -> None:
    decoder = FlowDecoder()
    early = v9_packet([v9_data(FLOWS[:2])], uptime=UPTIME, secs=SECS, sequence=1)
    assert decode(decoder, early).height == 0
    assert decoder.stats.pending_sets == 1
    # the template comes 100 s later; the held data keeps the header times it came with
    later = v9_packet([v9_template()], uptime=UPTIME + 100_000, secs=SECS + 100, sequence=2)
    frame = decode(decoder, later)
    assert frame.height == 2
    assert frame["time"].to_list() == [at(-30), at(-29.5)]
    assert decoder.stats.pending_sets == 0
    assert decoder.stats.pending_decoded_sets == 1


def test_held_data_is_bounded() -> None:
    decoder = FlowDecoder(max_pending_sets=2)
    for sequence in range(3):
        decoder.feed(v9_packet([v9_data(FLOWS[:1])], uptime=UPTIME, secs=SECS, sequence=sequence), EXPORTER)
    assert decoder.stats.pending_sets == 2
    assert decoder.stats.pending_dropped_sets == 1
    frame = decode(decoder, v9_packet([v9_template()], uptime=UPTIME, secs=SECS, sequence=3))
    assert frame.height == 2


def test_template_refresh_and_change_of_layout() -> None:
    decoder = FlowDecoder()
    decoder.feed(
        v9_packet([v9_template(), v9_data(FLOWS[:1])], uptime=UPTIME, secs=SECS, sequence=1), EXPORTER
    )
    decoder.feed(
        v9_packet([v9_template(), v9_data(FLOWS[1:2])], uptime=UPTIME, secs=SECS, sequence=2), EXPORTER
    )
    assert decoder.stats.template_refreshes == 1
    # the same id now describes another layout: ports first, then addresses (IPv4), no times
    fields = ((7, 2), (11, 2), (8, 4), (12, 4), (4, 1), (1, 4), (2, 4))
    record = struct.pack(">HHIIBII", 1234, 80, 0x0A000009, 0x0A00000A, 6, 77, 1)
    packet = v9_packet(
        [v9_template(fields=fields), flowset(256, record)], uptime=UPTIME, secs=SECS, sequence=3
    )
    frame = decode(decoder, packet)
    assert decoder.stats.template_changes == 1
    assert frame.height == 3
    assert frame.sort("out_bytes")["src"].to_list() == ["10.0.0.9", "10.0.0.1", "10.0.0.2"]
    new = frame.filter(pl.col("src") == "10.0.0.9").row(0, named=True)
    assert (new["spt"], new["dpt"], new["out_bytes"]) == (1234, 80, 77)
    assert new["time"] == at(0)  # no flow times: the export time
    assert new["tcp_flags"] is None


def test_options_records_are_not_flows() -> None:
    options = v9_options_template(300, scope=[(1, 4)], options=[(34, 4), (35, 1)])  # sampling interval/algo
    option_data = flowset(300, struct.pack(">IIB", 0, 100, 2))
    packet = v9_packet(
        [options, option_data, v9_template(), v9_data(FLOWS)], uptime=UPTIME, secs=SECS, sequence=1
    )
    decoder = FlowDecoder()
    assert decode(decoder, packet).height == 3
    assert decoder.stats.options_records == 1


def test_v9_sequence_gaps_and_reordering() -> None:
    decoder = FlowDecoder()
    for sequence in (10, 11, 14, 12):
        decoder.feed(v9_packet([v9_template()], uptime=UPTIME, secs=SECS, sequence=sequence), EXPORTER)
    assert decoder.stats.sequence_gaps == 1
    assert decoder.stats.sequence_lost == 2  # 12 and 13 missing when 14 came
    assert decoder.stats.sequence_reordered == 1


def test_uptime_counter_wrap() -> None:
    # the flow started 6 s before a 32-bit millisecond uptime counter wrapped around to 1000
    flow: Flow = ("10.0.0.1", "10.0.0.2", 1, 2, 17, 0, 10, 1, (1 << 32) - 5000, 500)
    packet = v9_packet([v9_template(), v9_data([flow])], uptime=1000, secs=SECS, sequence=1)
    frame = decode(FlowDecoder(), packet)
    assert frame["time"].to_list() == [at(-6)]
    assert frame["duration"].to_list() == [5.5]


def test_templates_are_per_exporter() -> None:
    decoder = FlowDecoder()
    other = ("192.0.2.2", 40000)
    decoder.feed(v9_packet([v9_template()], uptime=UPTIME, secs=SECS, sequence=1), EXPORTER)
    # the second exporter's data under the same template id waits for its own template
    decoder.feed(v9_packet([v9_data(FLOWS)], uptime=UPTIME, secs=SECS, sequence=1), other)
    assert decoder.take().height == 0
    assert decoder.stats.pending_sets == 1
    assert decode(decoder, v9_packet([v9_data(FLOWS)], uptime=UPTIME, secs=SECS, sequence=2)).height == 3


def test_v5_records() -> None:
    packet = v5_packet(FLOWS, uptime=UPTIME, secs=SECS, nsecs=250_000_000, sequence=100)
    decoder = FlowDecoder()
    frame = decode(decoder, packet)
    assert frame["src"].to_list() == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert frame["dpt"].to_list() == [443, 40001, 53]
    assert frame["out_bytes"].to_list() == [5000, 9000, 80]
    assert frame["time"].to_list() == [at(-29.75), at(-29.25), at(-4.75)]  # unix_nsecs counts too
    # the v5 sequence counts flows: the next packet should say 103
    decoder.feed(v5_packet(FLOWS[:1], uptime=UPTIME, secs=SECS, nsecs=0, sequence=105), EXPORTER)
    assert decoder.stats.sequence_lost == 2


def _ipfix_data_template(template_id: int = 400) -> bytes:
    return ipfix_template(template_id, [ipfix_field(e, n) for e, n in V4_FIELDS])


def test_ipfix_uptime_times_use_the_exporters_init_time_from_options() -> None:
    init_ms = SECS * 1000 - 86_400_000  # booted a day before the export time
    options = ipfix_options_template(500, [ipfix_field(149, 4)], [ipfix_field(160, 8)])
    option_data = flowset(500, struct.pack(">IQ", 1, init_ms), pad=False)
    data = flowset(400, b"".join(v4_record(f) for f in FLOWS), pad=False)
    message = ipfix_message(
        [options, option_data, _ipfix_data_template(), data], export_time=SECS, sequence=0
    )
    decoder = FlowDecoder()
    frame = decode(decoder, message)
    assert frame.height == 3
    start = datetime.fromtimestamp(init_ms / 1000, UTC)
    assert frame["time"].to_list() == [start + timedelta(milliseconds=f[8]) for f in FLOWS]
    assert frame["duration"].to_list() == [20.0, 19.0, 0.0]
    assert decoder.stats.options_records == 1
    # the IPFIX sequence number counts data records (options records included): 4 so far
    decoder.feed(ipfix_message([data], export_time=SECS, sequence=4), EXPORTER)
    decoder.feed(ipfix_message([data], export_time=SECS, sequence=9), EXPORTER)
    assert decoder.stats.sequence_gaps == 1
    assert decoder.stats.sequence_lost == 2


def test_ipfix_absolute_times_ipv6_icmp_and_reverse_counts() -> None:
    fields = [
        ipfix_field(27, 16),
        ipfix_field(28, 16),
        ipfix_field(4, 1),
        ipfix_field(139, 2),  # icmpTypeCodeIPv6
        ipfix_field(152, 8),
        ipfix_field(153, 8),
        ipfix_field(1, 8),
        ipfix_field(2, 8),
        ipfix_field(1, 8, enterprise=29305),  # reverse octets
        ipfix_field(2, 8, enterprise=29305),  # reverse packets
    ]
    start_ms = SECS * 1000 + 250
    src = bytes.fromhex("20010db8000000000000000000000001")
    dst = bytes.fromhex("20010db8000000000000000000000002")
    record = src + dst + struct.pack(">BHQQQQQQ", 58, 128 * 256, start_ms, start_ms + 1500, 640, 5, 640, 5)
    message = ipfix_message(
        [ipfix_template(401, fields), flowset(401, record, pad=False)], export_time=SECS + 10, sequence=0
    )
    frame = decode(FlowDecoder(), message)
    row = frame.row(0, named=True)
    assert (row["src"], row["dst"], row["proto"]) == ("2001:db8::1", "2001:db8::2", "ipv6-icmp")
    assert (row["spt"], row["dpt"]) == (0, 128 * 256)  # echo request: type 128, code 0
    assert row["time"] == at(0.25)
    assert row["duration"] == 1.5
    assert (row["out_bytes"], row["out_pkts"], row["in_bytes"], row["in_pkts"]) == (640, 5, 640, 5)


#: an RFC 5103 biflow template as softflowd's bidirectional export has it: addresses, ports,
#: protocol, both sides' flags, bytes and packets, ICMP type and code, and ``biflowDirection``
_BIFLOW_FIELDS = [
    ipfix_field(8, 4),
    ipfix_field(12, 4),
    ipfix_field(7, 2),
    ipfix_field(11, 2),
    ipfix_field(4, 1),
    ipfix_field(6, 1),
    ipfix_field(6, 1, enterprise=29305),
    ipfix_field(32, 2),
    ipfix_field(32, 2, enterprise=29305),
    ipfix_field(239, 1),
    ipfix_field(1, 8),
    ipfix_field(2, 8),
    ipfix_field(1, 8, enterprise=29305),
    ipfix_field(2, 8, enterprise=29305),
]
_SYN, _RST, _PSH, _ACK, _FIN = 2, 4, 8, 16, 1


def _biflow(
    src: int, dst: int, ports: tuple[int, int], proto: int, flags: tuple[int, int], icmp: tuple[int, int],
    direction: int, forward: tuple[int, int], reverse: tuple[int, int],
) -> bytes:  # fmt: skip
    """One biflow record; ``forward`` and ``reverse``: each side's bytes and packets."""
    layout = ">IIHHBBBHHBQQQQ"
    return struct.pack(layout, src, dst, *ports, proto, *flags, *icmp, direction, *forward, *reverse)


def test_ipfix_biflows_are_turned_so_that_the_source_opened_the_flow() -> None:
    """softflowd keys a flow by its addresses, so a biflow's source is the lower address, not the
    side that opened it: the decoder turns such records round (``src`` opened the flow, as the
    canonical table says)."""
    a, b = 0x0A000001, 0x0A000002  # 10.0.0.1, 10.0.0.2
    both = _SYN | _ACK | _PSH | _FIN
    records = [
        # a server's side first: port 443 against 40001 -> turned round
        _biflow(a, b, (443, 40001), 6, (both, both), (0, 0), 0, (9000, 12), (700, 10)),
        # a SYN only on the reverse side, answered by RST: the reverse side opened it
        _biflow(a, b, (40002, 40003), 6, (_RST | _ACK, _SYN), (0, 0), 0, (40, 1), (60, 1)),
        # only the reverse side sent packets
        _biflow(a, b, (53, 50000), 17, (0, 0), (0, 0), 0, (0, 0), (80, 1)),
        # the exporter says the source is the initiator: kept whatever the ports
        _biflow(a, b, (443, 40004), 6, (both, both), (0, 0), 1, (900, 5), (800, 4)),
        # the exporter says the reverse side is the initiator
        _biflow(a, b, (40005, 40006), 17, (0, 0), (0, 0), 2, (100, 1), (200, 2)),
        # an echo reply one way, its request the other: the requester opened it
        _biflow(a, b, (0, 0), 1, (0, 0), (0 * 256, 8 * 256), 0, (84, 1), (84, 1)),
        # nothing tells: two ports of the same range keep the exporter's order
        _biflow(a, b, (5000, 6000), 17, (0, 0), (0, 0), 0, (300, 3), (100, 1)),
        # a SYN flood without answers: kept
        _biflow(a, b, (40007, 80), 6, (_SYN, 0), (0, 0), 0, (60, 1), (0, 0)),
    ]
    message = ipfix_message(
        [ipfix_template(410, _BIFLOW_FIELDS), flowset(410, b"".join(records), pad=False)],
        export_time=SECS,
        sequence=0,
    )
    frame = decode(FlowDecoder(), message)
    a_text, b_text = "10.0.0.1", "10.0.0.2"
    turned = [src == b_text for src in frame["src"].to_list()]
    assert turned == [True, True, True, False, True, True, False, False]
    assert frame["dst"].to_list() == [a_text if t else b_text for t in turned]
    assert frame.select("spt", "dpt").rows() == [
        (40001, 443), (40003, 40002), (50000, 53), (443, 40004), (40006, 40005), (0, 8 * 256), (5000, 6000),
        (40007, 80),
    ]  # fmt: skip
    assert frame.select("out_bytes", "out_pkts", "in_bytes", "in_pkts").rows()[:3] == [
        (700, 10, 9000, 12),
        (60, 1, 40, 1),
        (80, 1, 0, 0),
    ]
    # the flags of the flow's packets both ways
    assert frame["tcp_flags"].to_list()[:2] == ["...AP.SF", "...A.RS."]
    assert frame["tcp_flags"][7] == "......S."


def test_ipfix_ntp_microsecond_times() -> None:
    fields = [ipfix_field(8, 4), ipfix_field(12, 4), ipfix_field(154, 8), ipfix_field(155, 8)]
    ntp_seconds = SECS + 2_208_988_800
    start = (ntp_seconds << 32) | (1 << 31)  # .5 s
    record = struct.pack(">IIQQ", 1, 2, start, start + (2 << 32))
    message = ipfix_message(
        [ipfix_template(402, fields), flowset(402, record, pad=False)], export_time=SECS, sequence=0
    )
    frame = decode(FlowDecoder(), message)
    assert frame["time"].to_list() == [at(0.5)]
    assert frame["duration"].to_list() == [2.0]
    assert frame["src"].to_list() == ["0.0.0.1"]


def test_ipfix_variable_length_fields() -> None:
    fields = [ipfix_field(8, 4), ipfix_field(82, 65535), ipfix_field(12, 4), ipfix_field(1, 4)]
    records = struct.pack(">I", 0x0A000001) + b"\x04eth0" + struct.pack(">II", 0x0A000002, 100)
    long_name = b"x" * 300
    records += struct.pack(">I", 0x0A000003) + b"\xff" + struct.pack(">H", 300) + long_name
    records += struct.pack(">II", 0x0A000004, 200)
    message = ipfix_message(
        [ipfix_template(403, fields), flowset(403, records, pad=False)], export_time=SECS, sequence=0
    )
    frame = decode(FlowDecoder(), message)
    assert frame["src"].to_list() == ["10.0.0.1", "10.0.0.3"]
    assert frame["dst"].to_list() == ["10.0.0.2", "10.0.0.4"]
    assert frame["out_bytes"].to_list() == [100, 200]


def test_ipfix_template_withdrawal() -> None:
    decoder = FlowDecoder()
    data = flowset(400, v4_record(FLOWS[0]), pad=False)
    assert (
        decode(decoder, ipfix_message([_ipfix_data_template(), data], export_time=SECS, sequence=0)).height
        == 1
    )
    withdrawal = flowset(2, struct.pack(">HH", 400, 0), pad=False)
    decoder.feed(ipfix_message([withdrawal, data], export_time=SECS, sequence=1), EXPORTER)
    assert decoder.stats.templates_withdrawn == 1
    assert decoder.take().height == 0
    assert decoder.stats.pending_sets == 1


def test_malformed_and_unknown_packets_are_counted_not_raised() -> None:
    decoder = FlowDecoder()
    good = v9_packet([v9_template(), v9_data(FLOWS)], uptime=UPTIME, secs=SECS, sequence=1)
    decoder.feed(good[:-7], EXPORTER)  # a data set cut short
    decoder.feed(b"\x00\x07" + b"\x00" * 30, EXPORTER)
    decoder.feed(b"\x00", EXPORTER)
    cut = ipfix_message([_ipfix_data_template()], export_time=SECS, sequence=0)
    decoder.feed(cut[:20], EXPORTER)
    assert decoder.stats.malformed_packets == 3
    assert decoder.stats.unknown_version == 1
    decoder.feed(good, EXPORTER)
    assert decoder.take().height == 3


@pytest.mark.parametrize("packets", [1, 7])
def test_many_packets_of_one_template_decode_in_one_go(packets: int) -> None:
    decoder = FlowDecoder()
    decoder.feed(v9_packet([v9_template()], uptime=UPTIME, secs=SECS, sequence=0), EXPORTER)
    for sequence in range(1, packets + 1):
        # each packet's header moves on by a second: each record keeps its own packet's time base
        decoder.feed(
            v9_packet(
                [v9_data(FLOWS)], uptime=UPTIME + 1000 * sequence, secs=SECS + sequence, sequence=sequence
            ),
            EXPORTER,
        )
    assert decoder.rows == 3 * packets
    frame = decoder.take()
    assert frame.height == 3 * packets
    assert frame["time"].to_list() == [at(-30), at(-29.5), at(-5)] * packets
    assert decoder.rows == 0
