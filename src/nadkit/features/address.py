"""Address features: which region src and dst belong to, the direction of the flow between regions, how
alike the two addresses are, and how many bits each has set.

Raw address values do not generalise (networks renumber, test days use other ranges), so only relational
and regional facts become features. IPv4 and IPv6 text are parsed by Polars expressions alone: an
address becomes a family (4 or 6) and a 128-bit number held as two unsigned 64-bit words (an IPv4
address, or an IPv4-mapped IPv6 one, is family 4 with its 32-bit value in the low word). Text that is
neither (or missing) gives all-zero features and ``<side>_invalid = 1``. A flow table repeats its
addresses many times, so each column is dictionary-encoded first and only its distinct texts are
parsed (:func:`address_facts`); the rows then take their address's facts.

=========================  ==================================================================
``<side>_area=<area>``     one-hot, first match of: unspecified (0.0.0.0, ::), loopback,
                           multicast, broadcast (255.255.255.255 and any x.x.x.255), link-local,
                           private (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7), global
``ip_flow_type=<type>``    internet (public to public), intranet (internal to internal), ingress
                           (public to internal), egress (internal to public); internal means a
                           private, link-local, loopback, unspecified or multicast address, the
                           limited broadcast, or a x.x.x.255 in a private range
``ip_binary_match``        common leading bits of src and dst: 0-32 for IPv4, 0-128 for IPv6,
                           0 for mixed families
``<side>_one_bits``        number of set bits of the address (all-ones tails mark broadcasts)
``<side>_ipv6``            1 for an IPv6 address (not IPv4-mapped)
``<side>_invalid``         1 where the text is not an address
=========================  ==================================================================
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from nadkit.features.base import FeatureGroup, flag

SIDES = ("src", "dst")
AREAS = ("global", "private", "link_local", "loopback", "multicast", "broadcast", "unspecified")
FLOW_TYPES = ("internet", "intranet", "ingress", "egress")

_U64 = pl.UInt64
_V4_TAIL = r"(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$"

# IPv4 networks as (network, mask) on the 32-bit value
_V4_PRIVATE = (
    (0x0A000000, 0xFF000000),  # 10.0.0.0/8
    (0xAC100000, 0xFFF00000),  # 172.16.0.0/12
    (0xC0A80000, 0xFFFF0000),  # 192.168.0.0/16
    (0x64400000, 0xFFC00000),  # 100.64.0.0/10 (carrier-grade NAT)
)
_V4_LOOPBACK = (0x7F000000, 0xFF000000)
_V4_LINK_LOCAL = (0xA9FE0000, 0xFFFF0000)
_V4_MULTICAST = (0xE0000000, 0xF0000000)
_V4_ALL_ONES = 0xFFFFFFFF
# IPv6 networks as (network, mask) on the high 64-bit word
_V6_MULTICAST = (0xFF00 << 48, 0xFF00 << 48)
_V6_LINK_LOCAL = (0xFE80 << 48, 0xFFC0 << 48)
_V6_PRIVATE = (0xFC00 << 48, 0xFE00 << 48)
_V4_MAPPED_MARK = 0xFFFF  # ::ffff:a.b.c.d has the low word 0000:ffff:aaaa:bbbb

#: A parsing step: given a way to refer to earlier results by name, the new results by name.
Step = Callable[[Callable[[str], pl.Expr]], dict[str, pl.Expr]]


def _u64(value: int) -> pl.Expr:
    return pl.lit(value, dtype=_U64)


def _in_network(value: pl.Expr, network: tuple[int, int]) -> pl.Expr:
    return (value & _u64(network[1])) == _u64(network[0])


def _ipv4_steps(text: pl.Expr, prefix: str) -> list[Step]:
    """Steps giving ``<prefix>value``: the 32-bit value of dotted IPv4 text, else null.

    Lenient like most flow exporters' parsers: leading zeros in an octet are accepted.
    """
    return [
        lambda ref: {f"{prefix}parts": text.str.split(".").cast(pl.List(pl.UInt32), strict=False)},
        lambda ref: {
            f"{prefix}count": ref(f"{prefix}parts").list.len(),
            **{f"{prefix}octet{i}": ref(f"{prefix}parts").list.get(i, null_on_oob=True) for i in range(4)},
        },
        lambda ref: {f"{prefix}value": _ipv4_value(ref, prefix)},
    ]


def _ipv4_value(ref: Callable[[str], pl.Expr], prefix: str) -> pl.Expr:
    octets = [ref(f"{prefix}octet{i}") for i in range(4)]
    valid = (ref(f"{prefix}count") == 4) & (pl.max_horizontal(octets) <= 255)
    value = _u64(0)
    for octet in octets:
        value = value * _u64(256) + octet.cast(_U64)
    return pl.when(valid).then(value)


def _ipv6_steps(text: pl.Expr, prefix: str) -> list[Step]:
    """Steps giving ``<prefix>high`` and ``<prefix>low``, the 64-bit words of IPv6 text, else null.

    The text is normalised to eight groups: a zone is dropped, an IPv4 tail becomes two zero groups
    (its value is added to the low word at the end), ``::`` is expanded to the missing zero groups.
    """

    def clean(ref: Callable[[str], pl.Expr]) -> dict[str, pl.Expr]:
        no_zone = ref(f"{prefix}text").str.replace(r"%.*$", "")
        return {f"{prefix}no_zone": no_zone}

    def tail(ref: Callable[[str], pl.Expr]) -> dict[str, pl.Expr]:
        no_zone = ref(f"{prefix}no_zone")
        has_dot = no_zone.str.contains(".", literal=True)
        tail_text = no_zone.str.extract(r"(?:^|:)" + _V4_TAIL, 1)
        return {
            f"{prefix}has_dot": has_dot,
            f"{prefix}tail_text": tail_text,
            f"{prefix}body": pl.when(has_dot).then(no_zone.str.replace(_V4_TAIL, "0:0")).otherwise(no_zone),
        }

    def pad(ref: Callable[[str], pl.Expr]) -> dict[str, pl.Expr]:
        body = ref(f"{prefix}body")
        leading, trailing = body.str.starts_with("::"), body.str.ends_with("::")
        # an edge '::' gets an explicit zero group, which then counts as one of the groups it stands for
        padded = pl.when(leading).then(pl.concat_str(pl.lit("0"), body)).otherwise(body)
        padded = pl.when(trailing).then(pl.concat_str(padded, pl.lit("0"))).otherwise(padded)
        return {
            f"{prefix}padded": padded,
            f"{prefix}pads": leading.cast(pl.Int64) + trailing.cast(pl.Int64),
            f"{prefix}written": body.str.count_matches(r"[0-9A-Fa-f]+").cast(pl.Int64),
            f"{prefix}doubles": body.str.count_matches("::", literal=True),
            f"{prefix}colons": body.str.count_matches(":", literal=True),
            f"{prefix}shape_ok": body.str.contains(r"^[0-9A-Fa-f:]+$")
            & ~body.str.contains(":::", literal=True),
        }

    def expand(ref: Callable[[str], pl.Expr]) -> dict[str, pl.Expr]:
        padded, doubles = ref(f"{prefix}padded"), ref(f"{prefix}doubles")
        missing = 8 - ref(f"{prefix}written")
        zeros = missing - ref(f"{prefix}pads")
        fill = pl.when(missing < 1).then(None)
        for k in range(8):
            fill = fill.when(zeros == k).then(pl.lit(":" + "0:" * k))
        expanded = pl.when(doubles == 1).then(padded.str.replace("::", fill, literal=True)).otherwise(padded)
        shape_ok = ref(f"{prefix}shape_ok") & pl.when(doubles == 1).then(fill.is_not_null()).otherwise(
            (doubles == 0) & (ref(f"{prefix}colons") == 7)
        )
        return {f"{prefix}expanded": expanded, f"{prefix}shape_ok2": shape_ok}

    def split(ref: Callable[[str], pl.Expr]) -> dict[str, pl.Expr]:
        return {f"{prefix}groups": ref(f"{prefix}expanded").str.split_exact(":", 8)}

    def numbers(ref: Callable[[str], pl.Expr]) -> dict[str, pl.Expr]:
        groups = ref(f"{prefix}groups")
        out: dict[str, pl.Expr] = {
            f"{prefix}tail_v4": _ipv4_inline(ref(f"{prefix}tail_text")),
            f"{prefix}nine": groups.struct.field("field_8").is_null(),
        }
        for i in range(8):
            text_i = groups.struct.field(f"field_{i}")
            out[f"{prefix}g{i}"] = pl.when(text_i.str.len_bytes().is_between(1, 4)).then(
                text_i.str.to_integer(base=16, strict=False)
            )
        return out

    def words(ref: Callable[[str], pl.Expr]) -> dict[str, pl.Expr]:
        groups = [ref(f"{prefix}g{i}") for i in range(8)]
        has_dot = ref(f"{prefix}has_dot")
        tail_v4 = ref(f"{prefix}tail_v4")
        valid = (
            ref(f"{prefix}shape_ok2")
            & ref(f"{prefix}nine")
            & (pl.min_horizontal(groups) >= 0)
            & pl.all_horizontal([g.is_not_null() for g in groups])
            & (~has_dot | tail_v4.is_not_null())
        )
        high, low = _u64(0), _u64(0)
        for group in groups[:4]:
            high = high * _u64(1 << 16) + group.cast(_U64, strict=False)
        for group in groups[4:]:
            low = low * _u64(1 << 16) + group.cast(_U64, strict=False)
        low = pl.when(has_dot).then(low + tail_v4.fill_null(0)).otherwise(low)
        return {f"{prefix}high": pl.when(valid).then(high), f"{prefix}low": pl.when(valid).then(low)}

    return [lambda ref: {f"{prefix}text": text}, clean, tail, pad, expand, split, numbers, words]


def _ipv4_inline(text: pl.Expr) -> pl.Expr:
    return _inline(_ipv4_steps(text, "v4_"))["v4_value"]


def _inline(steps: list[Step]) -> dict[str, pl.Expr]:
    """Run steps as plain nested expressions (shared parts recomputed: fine on small data)."""
    built: dict[str, pl.Expr] = {}
    for step in steps:
        built.update(step(built.__getitem__))
    return built


def _staged(steps: list[Step], prefix: str) -> list[list[pl.Expr]]:
    """Run steps as stages of helper columns named ``<prefix><name>``, each computed once."""

    def ref(name: str) -> pl.Expr:
        return pl.col(prefix + name)

    return [[expr.alias(prefix + name) for name, expr in step(ref).items()] for step in steps]


def ipv4_number(text: pl.Expr) -> pl.Expr:
    """Dotted IPv4 text as its 32-bit value (in a UInt64), null unless four decimal parts 0-255."""
    return _ipv4_inline(text)


def ipv6_words(text: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """IPv6 text (``::`` shorthand, an IPv4 tail and a ``%zone`` allowed) as its high and low 64-bit
    words; both null unless the text is a valid IPv6 address."""
    built = _inline(_ipv6_steps(text, "v6_"))
    return built["v6_high"], built["v6_low"]


#: The per-address facts each side's text is parsed into: the family (4, 6, or null when the text is not
#: an address), the two 64-bit words, the area code (index in :data:`AREAS`), whether the address is
#: internal (both null for invalid text) and its number of set bits (0 for invalid text).
_FACTS = {
    "family": pl.UInt8,
    "high": _U64,
    "low": _U64,
    "area": pl.UInt8,
    "internal": pl.Boolean,
    "ones": pl.Float32,
}
_FACTS_DTYPE = pl.Struct(_FACTS)
#: Most threads that dictionary-encode parts of a long address column at once (at most as many as
#: Polars uses).
_MAX_THREADS = 4


def address_facts(texts: pl.Series) -> pl.DataFrame:
    """For each address text, in order: its ``family`` (4, 6, null for text that is not an address),
    ``high`` and ``low`` 64-bit words, ``area`` (index in :data:`AREAS`), whether it is ``internal``
    and its number of set bits (``ones``)."""
    texts = texts.cast(pl.String)
    # IPv6 text always has a colon: without one, the IPv6 parsing steps are left out
    stages, facts = _facts_query(ipv6=bool(texts.str.contains(":", literal=True).any()))
    lazy = pl.LazyFrame({"text": texts})
    for stage in stages:
        lazy = lazy.with_columns(stage)
    return lazy.select(facts).collect(engine="in-memory")


@functools.cache
def _facts_query(ipv6: bool) -> tuple[list[list[pl.Expr]], list[pl.Expr]]:
    """The stages and final columns of :func:`address_facts`, built once (read-only)."""
    stages = _parse_stages(pl.col("text"), "_", ipv6=ipv6)
    ones = pl.col("_high").bitwise_count_ones() + pl.col("_low").bitwise_count_ones()
    facts = [pl.col(f"_{name}").alias(name) for name in _FACTS if name != "ones"]
    facts.append(ones.cast(pl.Float32).fill_null(0.0).alias("ones"))
    return stages, facts


def _parse_stages(text: pl.Expr, prefix: str, *, ipv6: bool = True) -> list[list[pl.Expr]]:
    """Stages of columns ``<prefix>family``, ``high``, ``low``, ``area`` and ``internal`` (and their
    intermediate columns) from address text: IPv4 parsing; IPv6 parsing of the text that is not IPv4
    (so its many small steps run on mostly empty columns; left out, all null, unless ``ipv6``);
    family and 64-bit words; regions."""
    stages = _staged(_ipv4_steps(text, ""), prefix + "v4_")
    if ipv6:
        not_v4 = pl.when(pl.col(prefix + "v4_value").is_null()).then(text)
        stages += _staged(_ipv6_steps(not_v4, ""), prefix + "v6_")
    else:
        stages.append([pl.lit(None, dtype=_U64).alias(prefix + f"v6_{word}") for word in ("high", "low")])
    stages.append(_words(prefix))
    stages.append(_regions(prefix))
    return stages


#: Rows per part below which a column is dictionary-encoded in one piece rather than in parallel parts.
_MIN_PART_ROWS = 200_000


def _encode(texts: pl.Series) -> pl.Series:
    """:func:`address_facts` of every row of ``texts``, as a struct column.

    Addresses repeat a lot in flow tables, so each distinct text is parsed once: the column is
    dictionary-encoded (in parts on several threads when it is long), the dictionaries are parsed,
    and their facts are gathered back by row.
    """
    texts = texts.cast(pl.String)
    parts = max(1, min(_MAX_THREADS, pl.thread_pool_size(), len(texts) // _MIN_PART_ROWS))
    size = -(-len(texts) // parts)
    pieces = [texts.slice(i * size, size) for i in range(parts)]
    if parts == 1:
        encoded = [_dictionary_encode(pieces[0])]
    else:
        with ThreadPoolExecutor(max_workers=parts) as pool:
            encoded = list(pool.map(_dictionary_encode, pieces))
    # one table for all parts: each part's codes shifted past the dictionaries before it
    dictionaries = [pl.Series(e.dictionary, dtype=pl.String) for e in encoded]
    facts = address_facts(pl.concat(dictionaries)).to_struct(texts.name)
    gathered, offset = [], 0
    for part, dictionary in zip(encoded, dictionaries, strict=True):
        codes = pl.Series(part.indices)
        gathered.append(facts.gather(codes + offset if offset else codes))
        offset += len(dictionary)
    return pl.concat(gathered, rechunk=False)


def _dictionary_encode(texts: pl.Series) -> pa.DictionaryArray:
    try:
        encoded = pc.dictionary_encode(texts.to_arrow(compat_level=pl.CompatLevel.newest()))
    except pa.ArrowException:  # an older pyarrow without string views
        encoded = pc.dictionary_encode(texts.to_arrow(compat_level=pl.CompatLevel.oldest()))
    if isinstance(encoded, pa.ChunkedArray):  # pragma: no cover - Series.to_arrow gives one chunk
        encoded = encoded.combine_chunks()
    return encoded


def _words(prefix: str) -> list[pl.Expr]:
    v4 = pl.col(prefix + "v4_value")
    high, low = pl.col(prefix + "v6_high"), pl.col(prefix + "v6_low")
    mapped = (high == 0) & ((low // _u64(1 << 32)) == _u64(_V4_MAPPED_MARK))
    family = (
        pl.when(v4.is_not_null())
        .then(pl.lit(4, dtype=pl.UInt8))
        .when(high.is_not_null() & mapped)
        .then(pl.lit(4, dtype=pl.UInt8))
        .when(high.is_not_null())
        .then(pl.lit(6, dtype=pl.UInt8))
    )
    return [
        family.alias(prefix + "family"),
        pl.when(v4.is_not_null() | mapped).then(_u64(0)).otherwise(high).alias(prefix + "high"),
        pl.when(v4.is_not_null())
        .then(v4)
        .when(mapped)
        .then(low & _u64(_V4_ALL_ONES))
        .otherwise(low)
        .alias(prefix + "low"),
    ]


def _regions(prefix: str) -> list[pl.Expr]:
    family = pl.col(prefix + "family")
    high, low = pl.col(prefix + "high"), pl.col(prefix + "low")
    v4, v6 = family == 4, family == 6
    unspecified = (high == 0) & (low == 0)
    loopback = (v4 & _in_network(low, _V4_LOOPBACK)) | (v6 & (high == 0) & (low == 1))
    multicast = (v4 & _in_network(low, _V4_MULTICAST)) | (v6 & _in_network(high, _V6_MULTICAST))
    limited_broadcast = v4 & (low == _u64(_V4_ALL_ONES))
    broadcast = v4 & ((low & _u64(0xFF)) == _u64(0xFF))
    link_local = (v4 & _in_network(low, _V4_LINK_LOCAL)) | (v6 & _in_network(high, _V6_LINK_LOCAL))
    private_v4 = pl.any_horizontal([_in_network(low, network) for network in _V4_PRIVATE])
    private = (v4 & private_v4) | (v6 & _in_network(high, _V6_PRIVATE))
    area = (
        pl.when(family.is_null())
        .then(None)
        .when(unspecified)
        .then(pl.lit(AREAS.index("unspecified")))
        .when(loopback)
        .then(pl.lit(AREAS.index("loopback")))
        .when(multicast)
        .then(pl.lit(AREAS.index("multicast")))
        .when(broadcast)
        .then(pl.lit(AREAS.index("broadcast")))
        .when(link_local)
        .then(pl.lit(AREAS.index("link_local")))
        .when(private)
        .then(pl.lit(AREAS.index("private")))
        .otherwise(pl.lit(AREAS.index("global")))
    )
    internal = pl.when(family.is_not_null()).then(
        private | link_local | loopback | unspecified | multicast | limited_broadcast
    )
    return [area.cast(pl.UInt8).alias(prefix + "area"), internal.alias(prefix + "internal")]


class AddressGroup(FeatureGroup):
    """Regions, flow direction, prefix match and bit counts of ``src`` and ``dst`` (IPv4 and IPv6)."""

    name = "address"
    requires = ("src", "dst")

    def fit(self, frame: pl.DataFrame) -> dict[str, Any]:
        """Stateless: the features depend on the address text alone."""
        return {}

    def helpers(self, state: Mapping[str, Any]) -> list[list[pl.Expr]]:
        """One struct column of :func:`address_facts` per side, each distinct address parsed once."""
        return [
            [
                pl.col(side).map_batches(_encode, return_dtype=_FACTS_DTYPE).alias(_name(side))
                for side in SIDES
            ]
        ]

    def expressions(self, state: Mapping[str, Any]) -> list[pl.Expr]:
        """Area one-hots, flow type one-hot, prefix match, bit counts, IPv6 and invalid flags."""
        exprs: list[pl.Expr] = []
        for side in SIDES:
            area = _fact(side, "area")
            exprs += [flag(area == code).alias(f"{side}_area={value}") for code, value in enumerate(AREAS)]
        src_internal, dst_internal = _fact("src", "internal"), _fact("dst", "internal")
        types = {
            "internet": ~src_internal & ~dst_internal,
            "intranet": src_internal & dst_internal,
            "ingress": ~src_internal & dst_internal,
            "egress": src_internal & ~dst_internal,
        }
        exprs += [flag(types[t]).alias(f"ip_flow_type={t}") for t in FLOW_TYPES]
        exprs.append(_binary_match().alias("ip_binary_match"))
        for side in SIDES:
            family = _fact(side, "family")
            exprs += [
                _fact(side, "ones").fill_null(0.0).alias(f"{side}_one_bits"),
                flag(family == 6).alias(f"{side}_ipv6"),
                flag(family.is_null()).alias(f"{side}_invalid"),
            ]
        return exprs


def _name(side: str) -> str:
    return f"_address_{side}"


def _fact(side: str, fact: str) -> pl.Expr:
    return pl.col(_name(side)).struct.field(fact)


def _binary_match() -> pl.Expr:
    """Common leading bits of src and dst (0 when the families differ or an address is invalid)."""
    family = _fact("src", "family")
    same = family == _fact("dst", "family")
    high = (_fact("src", "high") ^ _fact("dst", "high")).bitwise_leading_zeros()
    low = (_fact("src", "low") ^ _fact("dst", "low")).bitwise_leading_zeros()
    v6 = pl.when(high == 64).then(64 + low).otherwise(high)
    # an IPv4 value sits in the low word, whose top 32 bits are then always equal
    bits = pl.when(family == 4).then(low.cast(pl.Int64) - 32).otherwise(v6.cast(pl.Int64))
    return pl.when(same).then(bits).otherwise(0).cast(pl.Float32).fill_null(0.0)


__all__ = ["AREAS", "FLOW_TYPES", "SIDES", "AddressGroup", "address_facts", "ipv4_number", "ipv6_words"]
