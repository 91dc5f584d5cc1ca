"""Mutated NetFlow v5 / v9 and IPFIX export packets, and what the decoder must do with them.

Seed packets are well-formed exports of every layout the decoder knows (v5 records; v9 templates,
options templates and data; IPFIX templates, options, variable-length fields, IPv6, biflows). A
mutation flips bits, writes boundary values (0, 1, 0x7F, 0x80, 0xFF, 0xFFFF) over bytes and 16-bit
words (which hits the length and count fields), truncates, inserts, duplicates, splices two packets,
or rewrites a template field's length. The oracle: ``feed`` and ``take`` never raise, and every flow
that comes out is well formed (addresses, ports, protocol, times, counts).
"""

from __future__ import annotations

import ipaddress
import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

import polars as pl

from nadkit.stream.netflow import FlowDecoder
from tests.stream.packets import (
    FLOWS,
    SECS,
    UPTIME,
    V4_FIELDS,
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

_LENGTHS = (0, 1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 255, 0xFFFF)


def _ipfix_times() -> list[bytes]:
    return [ipfix_field(152, 8), ipfix_field(153, 8)]


def seed_packets(sequence: int) -> dict[str, list[bytes]]:
    """Well-formed packets of each family (``sequence`` numbers them, so they may be sent in turn)."""
    v9_data = flowset(256, b"".join(v4_record(f) for f in FLOWS))
    v9 = [
        v9_packet(
            [flowset(0, template_record(256, V4_FIELDS)), v9_data],
            uptime=UPTIME,
            secs=SECS,
            sequence=sequence,
        ),
        v9_packet(
            [
                v9_options_template(300, [(1, 4)], [(34, 4), (35, 1)]),
                flowset(300, struct.pack(">IIB", 1, 100, 1)),
            ],
            uptime=UPTIME,
            secs=SECS,
            sequence=sequence,
        ),
    ]
    start_ms = (SECS - 20) * 1000
    v6_fields = [ipfix_field(27, 16), ipfix_field(28, 16), ipfix_field(4, 1), ipfix_field(139, 2)]
    v6_fields += [ipfix_field(1, 8), ipfix_field(2, 8), ipfix_field(1, 8, 29305), ipfix_field(2, 8, 29305)]
    v6_fields += _ipfix_times()
    v6_record = ipaddress.IPv6Address("2001:db8::1").packed + ipaddress.IPv6Address("2001:db8::2").packed
    v6_record += struct.pack(">BHQQQQQQ", 58, 0x8000, 640, 10, 320, 5, start_ms, start_ms + 3000)
    varlen_fields = [
        ipfix_field(8, 4),
        ipfix_field(12, 4),
        ipfix_field(96, 0xFFFF),
        ipfix_field(1, 4),
        ipfix_field(2, 4),
    ]
    varlen_fields += _ipfix_times()
    varlen_record = struct.pack(">II", 0x0A000001, 0x0A000002) + b"\x05hello" + struct.pack(">II", 500, 5)
    varlen_record += struct.pack(">QQ", start_ms, start_ms + 10)
    options = ipfix_options_template(400, [ipfix_field(149, 4)], [ipfix_field(160, 8)])
    ipfix = [
        ipfix_message(
            [ipfix_template(256, v6_fields), flowset(256, v6_record)], export_time=SECS, sequence=sequence
        ),
        ipfix_message(
            [ipfix_template(257, varlen_fields), flowset(257, varlen_record * 3)],
            export_time=SECS,
            sequence=sequence,
        ),
        ipfix_message(
            [options, flowset(400, struct.pack(">IQ", 1, (SECS - UPTIME // 1000) * 1000))],
            export_time=SECS,
            sequence=sequence,
        ),
    ]
    v5 = [v5_packet(FLOWS, uptime=UPTIME, secs=SECS, nsecs=0, sequence=sequence)]
    return {"v5": v5, "v9": v9, "ipfix": ipfix}


def mutate(packet: bytes, rng: random.Random, others: list[bytes]) -> bytes:
    """One to four random mutations of ``packet``."""
    data = bytearray(packet)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(8)
        if not data:
            data = bytearray(rng.randbytes(rng.randint(1, 64)))
            continue
        at = rng.randrange(len(data))
        if kind == 0:
            data[at] ^= 1 << rng.randrange(8)
        elif kind == 1:
            data[at] = rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif kind == 2 and len(data) >= 2:
            at = min(at, len(data) - 2)
            word = rng.choice((0, 1, 4, 0x7FFF, 0x8000, 0xFFFF, rng.randrange(0x10000)))
            data[at : at + 2] = word.to_bytes(2, "big")
        elif kind == 3:
            del data[at:]
        elif kind == 4:
            data[at:at] = rng.randbytes(rng.randint(1, 32))
        elif kind == 5:
            end = rng.randrange(at, len(data) + 1)
            data[at:at] = data[at:end]
        elif kind == 6:
            other = rng.choice(others)
            data = data[:at] + other[rng.randrange(len(other) + 1) :]
        else:
            # a template field's length: the field list starts after the 4-byte set and record headers
            offset = 20 + 4 + 4 + 4 * rng.randrange(8) + 2
            if offset + 2 <= len(data):
                data[offset : offset + 2] = rng.choice(_LENGTHS).to_bytes(2, "big")
    return bytes(data)


@dataclass
class FuzzResult:
    """What one family of mutated packets did to a decoder."""

    family: str
    inputs: int = 0
    flows: int = 0
    rejected: int = 0
    exceptions: list[str] = field(default_factory=list)
    garbage: list[str] = field(default_factory=list)
    slowest_s: float = 0.0


def flow_problems(frame: pl.DataFrame) -> list[str]:
    """What is wrong with decoded flows: each entry names a row and a column."""
    problems: list[str] = []
    for index, row in enumerate(frame.iter_rows(named=True)):
        for column in ("src", "dst"):
            value = row[column]
            if value is not None:
                try:
                    ipaddress.ip_address(value)
                except ValueError:
                    problems.append(f"row {index}: {column} {value!r}")
        for column in ("spt", "dpt"):
            value = row[column]
            if value is not None and not 0 <= value <= 65535:
                problems.append(f"row {index}: {column} {value}")
        for column in ("out_bytes", "in_bytes", "out_pkts", "in_pkts"):
            if row[column] is None or row[column] < 0:
                problems.append(f"row {index}: {column} {row[column]}")
        if row["time"] is None:
            problems.append(f"row {index}: time missing")
        if row["duration"] is not None and not 0 <= row["duration"] <= 8 * 86_400:
            problems.append(f"row {index}: duration {row['duration']}")
        if row["out_pkts"] and row["out_bytes"] > row["out_pkts"] * 65_535:
            problems.append(f"row {index}: {row['out_bytes']} bytes in {row['out_pkts']} packets")
    return problems


def mutated_packets(family: str, count: int, seed: int) -> Iterator[tuple[bytes, bool]]:
    """``count`` packets of ``family``: mostly mutated, one in eight genuine (the collector must go
    on decoding the good ones); the flag says whether the packet is genuine."""
    rng = random.Random(f"{family}:{seed}")
    for number in range(count):
        seeds = seed_packets(number)[family]
        packet = rng.choice(seeds)
        if number % 8 == 0:
            yield packet, True
        else:
            yield mutate(packet, rng, seeds), False


def fuzz_decoder(family: str, count: int, seed: int = 0, *, take_every: int = 16) -> FuzzResult:
    """Feed ``count`` mutated packets of ``family`` to one decoder; catch what escapes."""
    import time

    result = FuzzResult(family)
    decoder = FlowDecoder()
    exporter = ("192.0.2.7", 2055)

    def take() -> None:
        try:
            frame = decoder.take()
        except Exception as error:  # the oracle: nothing may escape
            result.exceptions.append(f"take: {type(error).__name__}: {error}")
            return
        result.flows += frame.height
        result.garbage.extend(flow_problems(frame))

    for number, (packet, _) in enumerate(mutated_packets(family, count, seed)):
        result.inputs += 1
        started = time.perf_counter()
        try:
            decoder.feed(packet, exporter, float(SECS))
        except Exception as error:
            result.exceptions.append(f"feed {packet.hex()}: {type(error).__name__}: {error}")
        if number % take_every == take_every - 1:
            take()
        result.slowest_s = max(result.slowest_s, time.perf_counter() - started)
    take()
    result.rejected = sum(decoder.stats.rejected.values())
    return result
