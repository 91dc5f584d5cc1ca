"""A collector listening on UDP takes packets from anyone: malformed templates, implausible records,
sequence jumps and mutated packets are counted by exporter and reason, logged at a bounded rate and
skipped, and the decoder goes on with the good packets."""

from __future__ import annotations

import logging
import struct

import pytest

from nadkit.stream.netflow import FlowDecoder
from tests.fuzz.netflow import flow_problems, fuzz_decoder
from tests.stream.packets import (
    V4_FIELDS,
    Flow,
    flowset,
    ipfix_field,
    ipfix_message,
    ipfix_template,
    template_record,
    v4_record,
    v5_packet,
    v9_packet,
)
from tests.stream.test_netflow import EXPORTER, FLOWS, SECS, UPTIME, v9_data, v9_template


def good_v9(sequence: int) -> bytes:
    return v9_packet([v9_template(), v9_data(FLOWS)], uptime=UPTIME, secs=SECS, sequence=sequence)


def test_v9_template_with_a_zero_length_source_address_is_rejected_not_raised() -> None:
    # the datagram that used to end `nadkit stream`: "cannot reshape array of size 0 into shape (0)"
    fields = ((8, 0), *V4_FIELDS[1:])
    record = b"".join(v4_record(f)[4:] for f in FLOWS)
    crafted = v9_packet(
        [flowset(0, template_record(256, fields)), flowset(256, record)], uptime=UPTIME, secs=SECS, sequence=1
    )
    decoder = FlowDecoder()
    decoder.feed(crafted, EXPORTER)
    assert decoder.take().height == 0
    assert decoder.stats.rejected["bad_template"] == 2  # the template, then its data set
    assert decoder.rejections() == {"192.0.2.1:40000": {"bad_template": 2}}
    # the collector goes on: the exporter's next, well-formed packet decodes
    decoder.feed(good_v9(2), EXPORTER)
    assert decoder.take().height == 3


@pytest.mark.parametrize("length", [0, 4, 8, 17])
def test_ipfix_ipv6_address_of_the_wrong_length_is_rejected(length: int) -> None:
    fields = [
        ipfix_field(27, length),
        ipfix_field(28, 16),
        ipfix_field(4, 1),
        ipfix_field(1, 4),
        ipfix_field(2, 4),
    ]
    record = b"\x20" * length + b"\x20" * 16 + struct.pack(">BII", 17, 100, 1)
    message = ipfix_message(
        [ipfix_template(256, fields), flowset(256, record * 4)], export_time=SECS, sequence=0
    )
    decoder = FlowDecoder()
    decoder.feed(message, EXPORTER)
    assert decoder.take().height == 0
    assert decoder.stats.rejected["bad_template"] == 2


def test_a_bad_template_keeps_the_sessions_good_one() -> None:
    decoder = FlowDecoder()
    decoder.feed(good_v9(1), EXPORTER)
    bad = v9_packet(
        [flowset(0, template_record(256, ((12, 16), *V4_FIELDS[1:])))], uptime=UPTIME, secs=SECS, sequence=2
    )
    decoder.feed(bad, EXPORTER)
    decoder.feed(v9_packet([v9_data(FLOWS)], uptime=UPTIME, secs=SECS, sequence=3), EXPORTER)
    assert decoder.take().height == 6
    assert decoder.stats.template_changes == 0


def test_sequence_jumps_drop_the_packet_and_a_restart_is_taken_on_the_second_packet() -> None:
    decoder = FlowDecoder()
    decoder.feed(good_v9(1), EXPORTER)
    decoder.feed(good_v9(3_000_000_000), EXPORTER)  # a spoofed or mangled header
    decoder.feed(good_v9(2), EXPORTER)  # the genuine stream is not disturbed by it
    assert decoder.take().height == 6
    assert decoder.stats.rejected["sequence_jump"] == 1
    assert decoder.stats.sequence_lost == 0
    # an exporter that restarts at a random number: its first packet is dropped, then it is followed
    decoder.feed(good_v9(2_000_000_000), EXPORTER)
    decoder.feed(good_v9(2_000_000_001), EXPORTER)
    decoder.feed(good_v9(2_000_000_002), EXPORTER)
    assert decoder.take().height == 6
    assert decoder.stats.sequence_restarts == 1
    # a restart from 0 is an ordinary step back
    decoder.feed(good_v9(0), EXPORTER)
    assert decoder.take().height == 3


def test_implausible_times_and_counts_are_dropped_and_counted_per_exporter() -> None:
    day_ms = 86_400_000
    records: list[Flow] = [
        ("10.0.0.1", "10.0.0.2", 1, 2, 17, 0, 100, 1, UPTIME - 1000, UPTIME),  # fine
        ("10.0.0.1", "10.0.0.2", 1, 2, 17, 0, 100, 1, UPTIME + 3600_000, UPTIME + 3600_000),  # an hour ahead
        (
            "10.0.0.1",
            "10.0.0.2",
            1,
            2,
            17,
            0,
            100,
            1,
            UPTIME + 4_000_000_000 - 20 * day_ms,
            UPTIME,
        ),  # 20 days old
        ("10.0.0.1", "10.0.0.2", 1, 2, 17, 0, 1_000_000, 2, UPTIME - 10, UPTIME),  # 500 kB packets
        ("10.0.0.1", "10.0.0.2", 1, 2, 17, 0, 100, 0, UPTIME - 10, UPTIME),  # bytes without packets
    ]
    wrapped = [(*r[:8], r[8] % (1 << 32), r[9] % (1 << 32)) for r in records]
    decoder = FlowDecoder()
    decoder.feed(v5_packet(wrapped, uptime=UPTIME, secs=SECS, nsecs=0, sequence=0), ("198.51.100.9", 9995))
    frame = decoder.take()
    assert frame.height == 1 and flow_problems(frame) == []
    assert decoder.rejections() == {"198.51.100.9:9995": {"implausible_time": 2, "implausible_counts": 2}}
    assert decoder.stats.records_rejected == 4
    stats = decoder.stats.to_dict()
    assert stats["rejected_implausible_time"] == 2 and stats["flows"] == 5


def test_rejections_are_logged_at_a_bounded_rate(caplog: pytest.LogCaptureFixture) -> None:
    decoder = FlowDecoder()
    with caplog.at_level(logging.WARNING, logger="nadkit.stream.netflow"):
        for _ in range(500):
            decoder.feed(b"\x00\x09\x00", EXPORTER)
            decoder.feed(b"\x00\x0a" + b"\xff" * 30, ("203.0.113.5", 1))
    assert decoder.stats.rejected["malformed"] == 1000
    lines = [r for r in caplog.records if "rejected" in r.getMessage()]
    assert len(lines) == 2  # one per exporter and reason a minute
    assert {"192.0.2.1:40000", "203.0.113.5:1"} == set(decoder.rejections())


def test_export_sessions_are_bounded() -> None:
    decoder = FlowDecoder(max_sessions=3)
    for port in range(5):
        decoder.feed(good_v9(1), ("192.0.2.1", port))
    assert decoder.take().height == 9
    assert decoder.stats.rejected["too_many_sessions"] == 2


@pytest.mark.parametrize("family", ["v5", "v9", "ipfix"])
def test_mutated_packets_never_escape_and_never_become_malformed_flows(family: str) -> None:
    result = fuzz_decoder(family, 400, seed=0)
    assert result.exceptions == []
    assert result.garbage == []
    assert result.flows > 0 and result.rejected > 0  # the good packets still decode
