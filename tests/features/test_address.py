"""Address features: IPv4/IPv6 parsing against the standard library, regions, flow types, prefix
match, bit counts and invalid text."""

from __future__ import annotations

import ipaddress
import random

import polars as pl
import pytest

from nadkit.features import address
from nadkit.features.address import AREAS, FLOW_TYPES, AddressGroup, ipv4_number, ipv6_words


def features(pairs: list[tuple[str | None, str | None]]) -> pl.DataFrame:
    """The address features of (src, dst) pairs."""
    frame = pl.DataFrame(
        {"src": [s for s, _ in pairs], "dst": [d for _, d in pairs]},
        schema={"src": pl.String, "dst": pl.String},
    )
    return AddressGroup().apply(frame, {})


_cache: dict[tuple[str | None, str | None], dict[str, float]] = {}


def one(src: str | None, dst: str | None) -> dict[str, float]:
    """The features of one pair; every pair of the parametrized cases is computed in a single query."""
    if (src, dst) not in _cache:
        pairs = list(dict.fromkeys([(src, dst), *ALL_PAIRS]))
        _cache.update(zip(pairs, features(pairs).iter_rows(named=True), strict=True))
    return _cache[(src, dst)]


def area(row: dict[str, float], side: str) -> str:
    hot = [a for a in AREAS if row[f"{side}_area={a}"] == 1.0]
    assert len(hot) <= 1
    return hot[0] if hot else "none"


def flow_type(row: dict[str, float]) -> str:
    hot = [t for t in FLOW_TYPES if row[f"ip_flow_type={t}"] == 1.0]
    assert len(hot) <= 1
    return hot[0] if hot else "none"


BINARY_MATCH_CASES = [
    ("192.168.1.1", "192.168.1.129", 24),
    ("192.168.1.1", "192.168.1.1", 32),
    ("10.0.0.1", "138.0.0.1", 0),
    ("10.0.0.0", "10.0.0.1", 31),
    ("2001:db8::1", "2001:db8::8000:0:0:1", 64),
    ("2001:db8::1", "2001:db8::1", 128),
    ("::", "::1", 127),
    ("fe80::1", "ff02::1", 7),
    ("::ffff:10.0.0.1", "10.0.0.255", 24),  # an IPv4-mapped address compares as IPv4
    ("10.0.0.1", "2001:db8::1", 0),  # mixed families
    ("not an address", "10.0.0.1", 0),
]


@pytest.mark.parametrize(("src", "dst", "bits"), BINARY_MATCH_CASES)
def test_binary_match_counts_common_leading_bits(src: str, dst: str, bits: int) -> None:
    assert one(src, dst)["ip_binary_match"] == bits


ONE_BITS_CASES = [
    ("255.255.255.255", 32),
    ("0.0.0.0", 0),
    ("192.168.1.255", 14),
    ("::1", 1),
    ("ff02::1", 10),
    ("bad", 0),
]


@pytest.mark.parametrize(("address", "ones"), ONE_BITS_CASES)
def test_one_bits_is_the_popcount(address: str, ones: int) -> None:
    assert one(address, "1.1.1.1")["src_one_bits"] == ones


AREA_CASES = [
    ("8.8.8.8", "global"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.32.0.1", "global"),
    ("192.168.0.1", "private"),
    ("100.64.0.1", "private"),
    ("169.254.10.1", "link_local"),
    ("127.0.0.1", "loopback"),
    ("224.0.0.251", "multicast"),
    ("239.255.255.250", "multicast"),
    ("192.168.1.255", "broadcast"),
    ("8.8.8.255", "broadcast"),
    ("255.255.255.255", "broadcast"),
    ("0.0.0.0", "unspecified"),
    ("2001:4860:4860::8888", "global"),
    ("fd12:3456::1", "private"),
    ("fe80::1%eth0", "link_local"),
    ("::1", "loopback"),
    ("ff02::fb", "multicast"),
    ("::", "unspecified"),
    ("::ffff:192.168.0.1", "private"),
    ("999.1.1.1", "none"),
    (None, "none"),
]


@pytest.mark.parametrize(("address", "expected"), AREA_CASES)
def test_area_is_one_hot(address: str | None, expected: str) -> None:
    row = one(address, address)
    assert area(row, "src") == expected
    assert area(row, "dst") == expected


FLOW_TYPE_CASES = [
    ("8.8.8.8", "1.1.1.1", "internet"),
    ("10.0.0.5", "192.168.3.4", "intranet"),
    ("8.8.8.8", "10.0.0.5", "ingress"),
    ("10.0.0.5", "8.8.8.8", "egress"),
    ("10.0.0.5", "10.0.0.255", "intranet"),  # a broadcast in a private range is internal
    ("8.8.8.8", "255.255.255.255", "ingress"),
    ("2001:db8::1", "fd00::1", "ingress"),
    ("fe80::1", "2001:db8::1", "egress"),
    ("bad", "8.8.8.8", "none"),
]

ALL_PAIRS = (
    [(s, d) for s, d, _ in BINARY_MATCH_CASES]
    + [(a, "1.1.1.1") for a, _ in ONE_BITS_CASES]
    + [(a, a) for a, _ in AREA_CASES]
    + [(s, d) for s, d, _ in FLOW_TYPE_CASES]
)


@pytest.mark.parametrize(("src", "dst", "expected"), FLOW_TYPE_CASES)
def test_flow_type(src: str, dst: str, expected: str) -> None:
    assert flow_type(one(src, dst)) == expected


def test_invalid_text_gives_zero_features_and_a_flag() -> None:
    frame = features([("1.2.3.256", "1.2.3"), ("1::2::3", ""), (None, "10.0.0.1"), ("1.2.3.4", "::1")])
    assert frame["src_invalid"].to_list() == [1.0, 1.0, 1.0, 0.0]
    assert frame["dst_invalid"].to_list() == [1.0, 1.0, 0.0, 0.0]
    assert frame["src_one_bits"][0] == 0.0
    assert frame["dst_ipv6"].to_list() == [0.0, 0.0, 0.0, 1.0]
    assert frame["src_ipv6"].to_list() == [0.0, 0.0, 0.0, 0.0]
    area_columns = [c for c in frame.columns if "_area=" in c or c.startswith("ip_flow_type=")]
    assert len(area_columns) == 2 * len(AREAS) + len(FLOW_TYPES)
    assert all(frame[c][0] == 0.0 for c in area_columns)
    assert frame.select(pl.all().is_null().any()).row(0) == (False,) * frame.width


def _random_ipv6_texts(rng: random.Random, count: int) -> list[str]:
    texts = []
    for _ in range(count):
        groups = [rng.choice([0, 0, 1, rng.randrange(16), rng.randrange(65536)]) for _ in range(8)]
        address = ipaddress.IPv6Address(b"".join(g.to_bytes(2, "big") for g in groups))
        form = rng.randrange(4)
        if form == 0:
            texts.append(address.compressed)
        elif form == 1:
            texts.append(address.exploded.upper())
        elif form == 2:
            texts.append(":".join(f"{g:x}" for g in groups))
        else:
            texts.append(f"{address.compressed}%eth{rng.randrange(3)}")
    return texts


IPV6_EDGE_CASES = [
    "::",
    "::1",
    "1::",
    "1:2:3:4:5:6:7::",
    "::2:3:4:5:6:7:8",
    "::ffff:1.2.3.4",
    "64:ff9b::10.0.0.1",
    "1:2:3:4:5:6:1.2.3.4",
    "1::2::3",
    ":::",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7",
    "12345::",
    "g::1",
    "::1.2.3",
    "::1.2.3.256",
    "1:2:3:4:5:6:7::8",
    ":1:2:3:4:5:6:7",
    "1:2:3:4:5:6:7:",
    "",
]


def test_ipv6_parsing_matches_the_standard_library() -> None:
    texts = _random_ipv6_texts(random.Random(5), 1500) + IPV6_EDGE_CASES
    high, low = ipv6_words(pl.col("a"))
    parsed = pl.DataFrame({"a": texts}).select(high.alias("high"), low.alias("low"))
    for text, got_high, got_low in zip(texts, parsed["high"], parsed["low"], strict=True):
        try:
            value = int(ipaddress.IPv6Address(text.split("%")[0]))
            expected = (value >> 64, value & (2**64 - 1))
        except ValueError:
            expected = (None, None)
        assert (got_high, got_low) == expected, text


def test_ipv4_parsing_matches_the_standard_library() -> None:
    rng = random.Random(11)
    texts = [str(ipaddress.IPv4Address(rng.randrange(2**32))) for _ in range(1000)]
    texts += [
        "0.0.0.0",
        "255.255.255.255",
        "256.0.0.1",
        "1.2.3",
        "1.2.3.4.5",
        "1..2.3",
        "a.b.c.d",
        "-1.2.3.4",
        "",
    ]
    parsed = pl.DataFrame({"a": texts}).select(ipv4_number(pl.col("a")).alias("v"))["v"].to_list()
    for text, got in zip(texts, parsed, strict=True):
        try:
            expected = int(ipaddress.IPv4Address(text))
        except ValueError:
            expected = None
        assert got == expected, text


def test_group_runs_on_a_lazy_frame_and_declares_its_columns() -> None:
    group = AddressGroup()
    assert group.missing(["src", "time"]) == ["dst"]
    lazy = pl.LazyFrame({"src": ["10.0.0.1"], "dst": ["10.0.0.2"]})
    assert group.apply(lazy, {})["ip_binary_match"].to_list() == [30.0]


def test_long_columns_are_parsed_in_parts_with_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    addresses = [a for a, _ in AREA_CASES] + [s for s, _, _ in BINARY_MATCH_CASES]
    rng = random.Random(3)
    pairs = [(rng.choice(addresses), rng.choice(addresses)) for _ in range(500)]
    whole = features(pairs)
    monkeypatch.setattr(address, "_MIN_PART_ROWS", 50)  # several parts, each with its own dictionary
    assert features(pairs).equals(whole)
    # and the same as each pair on its own
    assert [one(s, d) for s, d in pairs[:40]] == whole.head(40).to_dicts()
