"""What the fuzz families share: byte mutations, the checks of an accepted flow table, and real flows
from the shared data to seed them with."""

from __future__ import annotations

import ipaddress
import math
import os
import random
from functools import cache
from pathlib import Path

import polars as pl

#: the shared real data (``NADKIT_DATA_DIR`` elsewhere)
DATA = Path(os.environ.get("NADKIT_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "data"))
IOT23 = DATA / "iot23" / "CTU-Honeypot-Capture-4-1" / "conn.log.labeled"
#: a canonical table with exactly these columns is what a client sends the service
CANONICAL_BODY = ["time", "src", "dst", "spt", "dpt", "proto", "app", "duration"]
CANONICAL_BODY += ["out_bytes", "in_bytes", "out_pkts", "in_pkts", "label"]
_BOUNDARY_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF)
_TEXT = (b",", b"\n", b'"', b"\t", b"-1", b"NaN", b"inf", b"999.1.1.1", b"99999", b"1e308", b"\xff\xfe", b"{")


def mutate_bytes(data: bytes, rng: random.Random, others: list[bytes] | None = None) -> bytes:
    """One to four random mutations: bit flips, boundary bytes and words, truncation, insertion of
    random bytes or of text that parsers trip on (separators, quotes, NaN, bad addresses), duplication
    of a slice, and splicing with another input."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not out:
            out = bytearray(rng.randbytes(rng.randint(1, 64)))
            continue
        at = rng.randrange(len(out))
        kind = rng.randrange(8)
        if kind == 0:
            out[at] ^= 1 << rng.randrange(8)
        elif kind == 1:
            out[at] = rng.choice((*_BOUNDARY_BYTES, rng.randrange(256)))
        elif kind == 2 and len(out) >= 4:
            at = min(at, len(out) - 4)
            word = rng.choice((0, 1, 0x7FFFFFFF, 0xFFFFFFFF, rng.randrange(1 << 32)))
            out[at : at + 4] = word.to_bytes(4, "little")
        elif kind == 3:
            del out[at:]
        elif kind == 4:
            out[at:at] = rng.randbytes(rng.randint(1, 16))
        elif kind == 5:
            out[at:at] = rng.choice(_TEXT)
        elif kind == 6:
            end = rng.randrange(at, min(len(out), at + 4096) + 1)
            out[at:at] = out[at:end]
        elif others:
            other = rng.choice(others)
            out = out[:at] + other[rng.randrange(len(other) + 1) :]
    return bytes(out)


def table_problems(frame: pl.DataFrame, limit: int = 5) -> list[str]:
    """What is wrong in a flow table a reader accepted: addresses that are no addresses, ports beyond
    0-65535, negative or non-finite counts and durations (each entry names a row and a column)."""
    problems: list[str] = []
    columns = set(frame.columns)
    for column in ("src", "dst"):
        if column not in columns:
            continue
        for index, value in enumerate(frame[column].to_list()):
            if value is None:
                continue
            try:
                ipaddress.ip_address(value)
            except ValueError:
                problems.append(f"row {index}: {column} {value!r}")
                break
    for column in ("spt", "dpt"):
        if column in columns:
            bad = frame.with_row_index().filter((pl.col(column) < 0) | (pl.col(column) > 65535))
            if bad.height:
                problems.append(f"row {bad['index'][0]}: {column} {bad[column][0]}")
    for column in ("out_bytes", "in_bytes", "out_pkts", "in_pkts", "duration"):
        if column not in columns or not frame.schema[column].is_numeric():
            continue
        values = frame[column].drop_nulls().cast(pl.Float64).to_list()
        bad_values = [v for v in values if v < 0 or not math.isfinite(v)]
        if bad_values:
            problems.append(f"{column} {bad_values[0]}")
    return problems[:limit]


@cache
def real_flows(rows: int = 300) -> pl.DataFrame:
    """Real flows (IoT-23, a Philips Hue bridge, Zeek) as a canonical table of the columns a client
    sends, in time order."""
    from nadkit.sources import load_flows

    frame, _ = load_flows(IOT23)
    keep = [c for c in CANONICAL_BODY if c in frame.columns]
    return frame.select(keep).sort("time").head(rows)


__all__ = ["DATA", "mutate_bytes", "real_flows", "table_problems"]
