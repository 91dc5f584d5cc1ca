"""Address features: which region src and dst belong to, the direction of the flow between regions, how
alike the two addresses are, and how many bits each has set.

Raw address values do not generalise (networks renumber, test days use other ranges), so only relational
and regional facts become features. IPv4 and IPv6 text are parsed by Polars expressions alone: an
address becomes a family (4 or 6) and a 128-bit number held as two unsigned 64-bit words (an IPv4
address, or an IPv4-mapped IPv6 one, is family 4 with its 32-bit value in the low word). Text that is
neither (or missing) gives all-zero features and ``<side>_invalid = 1``.

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

from collections.abc import Callable, Mapping
from typing import Any

import polars as pl

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


def _name(side: str, part: str) -> str:
    return f"_address_{side}_{part}"


def _merge(*stage_lists: list[list[pl.Expr]]) -> list[list[pl.Expr]]:
    """Stage-wise union of several stage lists (stage i of each goes into stage i)."""
    merged: list[list[pl.Expr]] = []
    for stages in stage_lists:
        for i, stage in enumerate(stages):
            if i == len(merged):
                merged.append([])
            merged[i].extend(stage)
    return merged


class AddressGroup(FeatureGroup):
    """Regions, flow direction, prefix match and bit counts of ``src`` and ``dst`` (IPv4 and IPv6)."""

    name = "address"
    requires = ("src", "dst")

    def fit(self, frame: pl.DataFrame) -> dict[str, Any]:
        """Stateless: the features depend on the address text alone."""
        return {}

    def helpers(self, state: Mapping[str, Any]) -> list[list[pl.Expr]]:
        """Stages of helper columns: IPv4 parsing; IPv6 parsing of the text that is not IPv4 (so its
        many small steps run on mostly empty columns); family and 64-bit words; regions."""
        v4: list[list[list[pl.Expr]]] = []
        v6: list[list[list[pl.Expr]]] = []
        for side in SIDES:
            text = pl.col(side).cast(pl.String)
            v4.append(_staged(_ipv4_steps(text, ""), _name(side, "v4_")))
            not_v4 = pl.when(pl.col(_name(side, "v4_value")).is_null()).then(text)
            v6.append(_staged(_ipv6_steps(not_v4, ""), _name(side, "v6_")))
        stages = _merge(*v4) + _merge(*v6)
        stages.append([expr for side in SIDES for expr in self._words(side)])
        stages.append([expr for side in SIDES for expr in self._regions(side)])
        return stages

    @staticmethod
    def _words(side: str) -> list[pl.Expr]:
        v4 = pl.col(_name(side, "v4_value"))
        high, low = pl.col(_name(side, "v6_high")), pl.col(_name(side, "v6_low"))
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
            family.alias(_name(side, "family")),
            pl.when(v4.is_not_null() | mapped).then(_u64(0)).otherwise(high).alias(_name(side, "high")),
            pl.when(v4.is_not_null())
            .then(v4)
            .when(mapped)
            .then(low & _u64(_V4_ALL_ONES))
            .otherwise(low)
            .alias(_name(side, "low")),
        ]

    @staticmethod
    def _regions(side: str) -> list[pl.Expr]:
        family = pl.col(_name(side, "family"))
        high, low = pl.col(_name(side, "high")), pl.col(_name(side, "low"))
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
        return [
            area.cast(pl.UInt8).alias(_name(side, "area")),
            internal.alias(_name(side, "internal")),
        ]

    def expressions(self, state: Mapping[str, Any]) -> list[pl.Expr]:
        """Area one-hots, flow type one-hot, prefix match, bit counts, IPv6 and invalid flags."""
        exprs: list[pl.Expr] = []
        for side in SIDES:
            area = pl.col(_name(side, "area"))
            exprs += [flag(area == code).alias(f"{side}_area={value}") for code, value in enumerate(AREAS)]
        src_internal, dst_internal = pl.col(_name("src", "internal")), pl.col(_name("dst", "internal"))
        types = {
            "internet": ~src_internal & ~dst_internal,
            "intranet": src_internal & dst_internal,
            "ingress": ~src_internal & dst_internal,
            "egress": src_internal & ~dst_internal,
        }
        exprs += [flag(types[t]).alias(f"ip_flow_type={t}") for t in FLOW_TYPES]
        exprs.append(_binary_match().alias("ip_binary_match"))
        for side in SIDES:
            family = pl.col(_name(side, "family"))
            high, low = pl.col(_name(side, "high")), pl.col(_name(side, "low"))
            ones = high.bitwise_count_ones() + low.bitwise_count_ones()
            exprs += [
                ones.cast(pl.Float64).fill_null(0.0).alias(f"{side}_one_bits"),
                flag(family == 6).alias(f"{side}_ipv6"),
                flag(family.is_null()).alias(f"{side}_invalid"),
            ]
        return exprs


def _binary_match() -> pl.Expr:
    """Common leading bits of src and dst (0 when the families differ or an address is invalid)."""
    family = pl.col(_name("src", "family"))
    same = family == pl.col(_name("dst", "family"))
    high = (pl.col(_name("src", "high")) ^ pl.col(_name("dst", "high"))).bitwise_leading_zeros()
    low = (pl.col(_name("src", "low")) ^ pl.col(_name("dst", "low"))).bitwise_leading_zeros()
    v6 = pl.when(high == 64).then(64 + low).otherwise(high)
    # an IPv4 value sits in the low word, whose top 32 bits are then always equal
    bits = pl.when(family == 4).then(low.cast(pl.Int64) - 32).otherwise(v6.cast(pl.Int64))
    return pl.when(same).then(bits).otherwise(0).cast(pl.Float64).fill_null(0.0)


__all__ = ["AREAS", "FLOW_TYPES", "SIDES", "AddressGroup", "ipv4_number", "ipv6_words"]
