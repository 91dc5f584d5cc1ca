"""ECS documents of alert records and incidents: every field in the type the ECS reference gives it, the
values taken from the record, and Community IDs equal to a computation written from the Community ID
v1 specification, on made-up flows and on a real Zeek conn.log."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import socket
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from nadkit.alerts import ecs
from nadkit.alerts.ecs import (
    EcsWriter,
    community_id,
    community_ids,
    ecs_documents,
    ecs_lines,
    incident_documents,
    incident_lines,
)
from nadkit.alerts.incidents import group_alerts
from nadkit.alerts.records import output_kind
from nadkit.errors import ConfigError
from nadkit.stream.sinks import JsonLinesSink, SyslogSink, open_sink
from tests.conftest import shared_file

#: the ECS fields the documents use, with their types in the ECS field reference (8.x)
ECS_TYPES: dict[str, str] = {
    "@timestamp": "date",
    "message": "match_only_text",
    "ecs.version": "keyword",
    "event.kind": "keyword",
    "event.category": "keyword",
    "event.type": "keyword",
    "event.module": "keyword",
    "event.dataset": "keyword",
    "event.id": "keyword",
    "event.reason": "keyword",
    "event.severity": "long",
    "event.risk_score": "float",
    "event.duration": "long",
    "event.start": "date",
    "event.end": "date",
    "event.created": "date",
    "source.address": "keyword",
    "source.ip": "ip",
    "source.mac": "keyword",
    "source.port": "long",
    "source.bytes": "long",
    "source.packets": "long",
    "destination.address": "keyword",
    "destination.ip": "ip",
    "destination.mac": "keyword",
    "destination.port": "long",
    "destination.bytes": "long",
    "destination.packets": "long",
    "network.transport": "keyword",
    "network.iana_number": "keyword",
    "network.protocol": "keyword",
    "network.type": "keyword",
    "network.bytes": "long",
    "network.packets": "long",
    "network.community_id": "keyword",
    "related.ip": "ip",
    "rule.name": "keyword",
    "rule.description": "keyword",
    "rule.ruleset": "keyword",
    "rule.version": "keyword",
    "observer.vendor": "keyword",
    "observer.product": "keyword",
    "observer.type": "keyword",
    "observer.version": "keyword",
    "observer.hostname": "keyword",
    "labels": "object",
}
#: allowed values of the ECS categorisation fields (those the documents use among them)
EVENT_KINDS = {"alert", "asset", "enrichment", "event", "metric", "state", "pipeline_error", "signal"}
EVENT_CATEGORIES = {"network", "intrusion_detection"}
EVENT_TYPES = {"connection", "info", "allowed", "denied", "start", "end", "protocol", "access", "error"}
ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
ECS_MAC = re.compile(r"^[0-9A-F]{2}(-[0-9A-F]{2}){5}$")
LONG_RANGE = range(-(2**63), 2**63)


def flatten(document: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted leaf fields of a document; ``labels`` and ``nadkit`` kept whole."""
    flat: dict[str, Any] = {}
    for key, value in document.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name not in ("labels", "nadkit"):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def check_value(field: str, kind: str, value: Any) -> None:
    values = value if isinstance(value, list) and kind != "object" else [value]
    assert values, f"{field}: empty list"
    for item in values:
        if kind == "date":
            assert isinstance(item, str) and ISO_Z.match(item), f"{field}: {item!r} is not ISO 8601 with Z"
            datetime.fromisoformat(item.replace("Z", "+00:00"))
        elif kind == "ip":
            assert isinstance(item, str), f"{field}: {item!r} is not text"
            ipaddress.ip_address(item)
        elif kind == "long":
            assert isinstance(item, int) and not isinstance(item, bool), f"{field}: {item!r} is not a long"
            assert item in LONG_RANGE
        elif kind == "float":
            assert isinstance(item, int | float) and not isinstance(item, bool), f"{field}: {item!r}"
        elif kind in ("keyword", "match_only_text"):
            assert isinstance(item, str) and item, f"{field}: {item!r} is not text"
        elif kind == "object":
            assert isinstance(item, dict) and all(isinstance(v, str) for v in item.values()), field
        else:  # pragma: no cover - the table above
            raise AssertionError(kind)


def check_document(document: dict[str, Any]) -> dict[str, Any]:
    """Every field of ``document`` (outside ``nadkit``) is in ECS_TYPES and of its type."""
    flat = flatten(document)
    for field, value in flat.items():
        assert value is not None, f"{field} written as null"
        if field == "nadkit":
            continue
        assert field in ECS_TYPES, f"{field} is not in the table of ECS fields"
        check_value(field, ECS_TYPES[field], value)
    assert flat["ecs.version"] == ecs.ECS_VERSION
    assert flat["event.kind"] in EVENT_KINDS
    assert set(flat["event.category"]) <= EVENT_CATEGORIES and "network" in flat["event.category"]
    assert set(flat["event.type"]) <= EVENT_TYPES
    for side in ("source", "destination"):
        if f"{side}.mac" in flat:
            assert ECS_MAC.match(flat[f"{side}.mac"])
    for field in ("network.transport", "network.protocol"):
        if isinstance(flat.get(field), str):
            assert flat[field] == flat[field].lower()
    return flat


# -- Community ID v1, written from the specification --------------------------------------------------

#: ICMP types with a counterpart (request and reply), per the specification: they form two-way flows
ICMP4_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
ICMP6_PAIRS = {128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 130: 131, 131: 130}
ICMP6_PAIRS |= {139: 140, 140: 139, 144: 145, 145: 144}
PORT_PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 132: "sctp"}


def reference_community_id(
    src: str, dst: str, proto: int, sport: int | None, dport: int | None, seed: int = 0
) -> str:
    """SHA-1 over the seed (2 bytes), the two addresses (network order), the protocol, one byte of
    padding and the two ports (2 bytes each), the smaller endpoint first; base64; ``1:`` in front.
    ICMP type and code become ports: a type with a counterpart pairs with it (and orders like a
    port), any other keeps its code and is one-way (no reordering)."""
    saddr, daddr = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    one_way = False
    if proto in (1, 58) and sport is not None and dport is not None:
        pairs = ICMP4_PAIRS if proto == 1 else ICMP6_PAIRS
        if sport in pairs:
            dport = pairs[sport]
        else:
            one_way = True
    has_ports = proto in PORT_PROTOCOLS
    if not one_way:
        if has_ports:
            assert sport is not None and dport is not None
            flip = (saddr, sport) > (daddr, dport)
        else:
            flip = saddr > daddr
        if flip:
            saddr, daddr, sport, dport = daddr, saddr, dport, sport
    data = struct.pack("!H", seed) + saddr + daddr + struct.pack("!BB", proto, 0)
    if has_ports:
        data += struct.pack("!HH", sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode()


def test_reference_matches_the_example_of_the_specification() -> None:
    # the specification's worked example, and its 16-bit seed
    assert reference_community_id("128.232.110.120", "66.35.250.204", 6, 34855, 80) == (
        "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
    )
    assert community_id("128.232.110.120", "66.35.250.204", 34855, 80, "tcp") == (
        "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
    )


@pytest.mark.parametrize(
    ("src", "dst", "spt", "dpt", "proto", "number"),
    [
        ("10.0.0.1", "10.0.0.2", 40_000, 443, "tcp", 6),
        ("10.0.0.2", "10.0.0.1", 443, 40_000, "tcp", 6),  # the other direction: the same id
        ("10.0.0.9", "10.0.0.9", 9000, 53, "udp", 17),  # equal addresses: ordered by port
        ("192.168.1.5", "8.8.8.8", 8, 0, "icmp", 1),  # echo request (Zeek: type, code)
        ("8.8.8.8", "192.168.1.5", 0, 0, "icmp", 1),  # its echo reply
        ("192.168.1.5", "10.1.1.1", 3, 3, "icmp", 1),  # port unreachable: one-way
        ("2001:db8::1", "2001:db8::ff", 51_000, 80, "tcp", 6),
        ("fe80::2", "fe80::1", 128, 0, "ipv6-icmp", 58),  # ICMPv6 echo request
        ("2001:db8::1", "2001:db8::2", 135, 0, "ipv6-icmp", 58),  # neighbour solicitation
        ("2001:db8::1", "2001:db8::2", 129, 0, "icmp", 58),  # ICMPv6 as Zeek names it
        ("10.0.0.1", "10.0.0.2", 5000, 6000, "sctp", 132),
        ("10.0.0.1", "10.0.0.2", None, None, "gre", 47),  # no ports
        ("10.0.0.3", "10.0.0.2", None, None, "50", 50),  # a number as the protocol (ESP)
    ],
)
def test_community_id_matches_the_specification(
    src: str, dst: str, spt: int | None, dpt: int | None, proto: str, number: int
) -> None:
    assert community_id(src, dst, spt, dpt, proto) == reference_community_id(src, dst, number, spt, dpt)


def test_both_directions_and_both_icmp_spellings_give_one_id() -> None:
    forward = community_id("192.168.1.5", "8.8.8.8", 8, 0, "icmp")
    assert community_id("8.8.8.8", "192.168.1.5", 0, 0, "icmp") == forward
    # NetFlow and nfdump write ICMP as type * 256 + code in the destination port
    assert community_id("192.168.1.5", "8.8.8.8", 0, 8 * 256, "icmp") == forward
    assert community_id("2001:db8::1", "2001:db8::2", 0, 128 * 256, "ipv6-icmp") == community_id(
        "2001:db8::1", "2001:db8::2", 128, 0, "ipv6-icmp"
    )


def test_flows_without_an_id() -> None:
    assert community_id("00:11:22:33:44:55", "66:77:88:99:aa:bb", 0, 0, "arp") is None
    assert community_id("10.0.0.1", "2001:db8::1", 1, 2, "tcp") is None  # two families
    assert community_id("10.0.0.1", "10.0.0.2", None, None, "tcp") is None  # a port protocol, no ports
    assert community_id("10.0.0.1", "10.0.0.2", 1, 2, None) is None
    assert community_id("10.0.0.1", None, 1, 2, "tcp") is None
    assert community_id("10.0.0.1", "10.0.0.2", 1, 70_000, "udp") is None
    assert community_id("10.0.0.1", "10.0.0.2", 1, 2, "no-such-protocol") is None


def test_ids_are_computed_once_per_distinct_five_tuple() -> None:
    frame = pl.DataFrame(
        {
            "src": ["10.0.0.1", "10.0.0.1", "10.0.0.2", None, "10.0.0.1"] * 200,
            "dst": ["10.0.0.2", "10.0.0.2", "10.0.0.1", "10.0.0.2", "10.0.0.3"] * 200,
            "spt": [1000, 1000, 80, 1, 1000] * 200,
            "dpt": [80, 80, 1000, 2, 80] * 200,
            "proto": ["tcp", "tcp", "tcp", "tcp", "udp"] * 200,
        }
    )
    community_id.cache_clear()
    ids = community_ids(frame)
    assert community_id.cache_info().misses == 4  # distinct 5-tuples, not 1,000 rows
    assert ids.len() == frame.height and ids[0] == ids[1] == ids[2] and ids[3] is None
    expected = [community_id(*row) for row in frame.select("src", "dst", "spt", "dpt", "proto").iter_rows()]
    assert ids.to_list() == expected
    assert community_ids(frame.drop("spt", "dpt")).null_count() == frame.height  # tcp without ports
    assert community_ids(frame.head(0)).len() == 0


def zeek_rows(path: Path) -> list[dict[str, str]]:
    """A Zeek TSV log's records as text, by the names of its ``#fields`` line."""
    names: list[str] = []
    rows: list[dict[str, str]] = []
    for line in path.read_text().splitlines():
        if line.startswith("#fields"):
            names = re.split(r"\s+", line.strip())[1:]
        elif line and not line.startswith("#"):
            rows.append(dict(zip(names, re.split(r"\t|\s{2,}", line), strict=False)))
    return rows


def test_zeek_flows_get_the_id_of_the_specification() -> None:
    from nadkit.sources import load_flows

    path = shared_file("iot23/CTU-IoT-Malware-Capture-42-1/conn.log.labeled")
    flows, _ = load_flows(path)
    key = ("src", "dst", "spt", "dpt", "proto")
    computed = dict(zip(flows.select(key).iter_rows(), community_ids(flows).to_list(), strict=True))
    raw = zeek_rows(path)
    assert len(raw) == flows.height
    numbers = {"tcp": 6, "udp": 17, "icmp": 1}
    checked: dict[str, int] = {}
    for record in raw:
        orig, resp = record["id.orig_h"], record["id.resp_h"]
        proto = record["proto"]
        sport, dport = int(record["id.orig_p"]), int(record["id.resp_p"])
        number = 58 if proto == "icmp" and ":" in orig else numbers[proto]
        expected = reference_community_id(orig, resp, number, sport, dport)
        assert computed[(orig, resp, sport, dport, proto)] == expected, record
        kinds = [proto, "ipv6" if ":" in orig else "ipv4"]
        if (ipaddress.ip_address(orig).packed, sport) > (ipaddress.ip_address(resp).packed, dport):
            kinds.append("reordered")
        for kind in kinds:
            checked[kind] = checked.get(kind, 0) + 1
    # every flow of the log was compared; these kinds among them at least
    assert checked["tcp"] and checked["udp"] and checked["reordered"] and checked["ipv4"]
    # ICMP and IPv6 flows were compared where the log has them; both are covered on made-up flows above


# -- flow documents ------------------------------------------------------------------------------------

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
TOP = [
    {"feature": "out_bytes", "contribution": 0.7, "value": "123456"},
    {"feature": "dpt", "contribution": 0.2, "value": None},
]


def records(**extra: list[Any]) -> pl.DataFrame:
    base = {
        "row": [1, 2, 3, 4],
        "time": [T0 + timedelta(seconds=i) for i in range(4)],
        "src": ["10.0.0.5", "2001:db8::5", "00:11:22:aa:bb:cc", "10.0.0.6"],
        "dst": ["10.0.0.1", "2001:db8::1", "66:77:88:99:aa:bb", "10.0.0.1"],
        "spt": [40_000, 51_000, None, 8],
        "dpt": [22, 443, None, 0],
        "proto": ["tcp", "TCP", "arp", "icmp"],
        "app": ["ssh", None, "-", "other"],
        "label": ["bruteforce", "normal", "normal", None],
        "duration": [1.25, 0.0, None, 0.5],
        "out_bytes": [1000, 10, None, 84],
        "in_bytes": [2000, None, None, 84],
        "out_pkts": [10, 1, None, 1],
        "in_pkts": [12, None, None, 1],
        "score": [12.0, 1.6, 0.5, float("nan")],
        "threshold": [2.0, 1.0, 1.0, 1.0],
        "alert": [True, True, False, True],
        "class": ["bruteforce", None, None, None],
        "top_features": [TOP, TOP[:1], [], TOP],
    }
    return pl.DataFrame(base | extra)


def test_alert_documents_carry_the_record_in_ecs_types() -> None:
    documents = ecs_documents(records(), model="ae@2024-01-01", labels={"site": "lab"})
    assert len(documents) == 4
    flat = [check_document(d) for d in documents]
    first, ipv6, layer2, icmp = flat

    assert first["@timestamp"] == "2024-03-01T12:00:00.000000Z" == first["event.start"]
    assert first["event.end"] == "2024-03-01T12:00:01.250000Z"
    assert first["event.duration"] == 1_250_000_000
    assert first["event.kind"] == "alert" and first["event.category"] == ["network", "intrusion_detection"]
    assert first["event.module"] == "nadkit" and first["event.dataset"] == "nadkit.alerts"
    assert first["event.severity"] == 73  # 6x the threshold: high
    assert (first["source.ip"], first["source.port"], first["source.bytes"], first["source.packets"]) == (
        "10.0.0.5",
        40_000,
        1000,
        10,
    )
    assert (first["destination.ip"], first["destination.port"], first["destination.bytes"]) == (
        "10.0.0.1",
        22,
        2000,
    )
    assert (first["network.bytes"], first["network.packets"]) == (3000, 22)
    assert (first["network.transport"], first["network.iana_number"], first["network.protocol"]) == (
        "tcp",
        "6",
        "ssh",
    )
    assert first["network.type"] == "ipv4" and first["related.ip"] == ["10.0.0.5", "10.0.0.1"]
    assert first["network.community_id"] == reference_community_id("10.0.0.5", "10.0.0.1", 6, 40_000, 22)
    assert first["rule.name"] == "bruteforce" and first["rule.version"] == "ae@2024-01-01"
    assert first["rule.ruleset"] == "nadkit" and "bruteforce" in first["rule.description"]
    assert first["observer.vendor"] == "nadkit" and first["observer.type"] == "ids"
    assert first["labels"] == {"site": "lab"}
    assert "10.0.0.5:40000 -> 10.0.0.1:22" in first["message"] and "out_bytes" in first["message"]
    nadkit = first["nadkit"]
    assert nadkit["score"] == 12.0 and nadkit["threshold"] == 2.0 and nadkit["threshold_multiple"] == 6.0
    assert nadkit["alert"] is True and nadkit["class"] == "bruteforce" and nadkit["label"] == "bruteforce"
    assert nadkit["row"] == 1 and nadkit["severity"] == "high"
    assert nadkit["top_features"][0] == TOP[0]

    assert ipv6["network.type"] == "ipv6" and ipv6["network.transport"] == "tcp"
    zeek_icmp6 = ecs_documents(records(proto=["tcp", "icmp", "arp", "icmp"], spt=[1, 128, None, 8]))[1]
    assert (zeek_icmp6["network"]["transport"], zeek_icmp6["network"]["iana_number"]) == ("ipv6-icmp", "58")
    assert zeek_icmp6["network"]["community_id"] == reference_community_id(
        "2001:db8::5", "2001:db8::1", 58, 128, 443
    )
    assert ipv6["rule.name"] == "anomaly" and ipv6["event.severity"] == 47  # 1.6x: medium
    assert ipv6["event.duration"] == 0 and "destination.bytes" not in ipv6 and ipv6["network.bytes"] == 10
    assert "network.protocol" not in ipv6
    assert "[2001:db8::5]:51000 -> [2001:db8::1]:443" in ipv6["message"]

    # a scored flow below the threshold (written with --all) is an event, not an alert
    assert layer2["event.kind"] == "event" and layer2["event.category"] == ["network"]
    assert layer2["event.type"] == ["connection"]
    assert not any(f.startswith("rule.") for f in layer2) and "event.severity" not in layer2
    assert layer2["source.mac"] == "00-11-22-AA-BB-CC" and layer2["source.address"] == "00:11:22:aa:bb:cc"
    assert "source.ip" not in layer2 and "related.ip" not in layer2 and "network.community_id" not in layer2
    assert "network.protocol" not in layer2 and "event.duration" not in layer2

    # a NaN score is left out, not written as NaN
    assert "score" not in icmp["nadkit"] and icmp["network.iana_number"] == "1"
    assert icmp["network.community_id"] == reference_community_id("10.0.0.6", "10.0.0.1", 1, 8, 0)


def test_the_record_columns_being_added_are_used_when_present() -> None:
    documents = ecs_documents(
        records(
            severity=["high", "LOW", None, "critical"],
            score_percentile=[99.5, 80.0, 10.0, None],
            threshold_multiple=[6.5, 1.6, 0.5, None],
            explanation=["out_bytes far above normal", None, None, None],
            alert_id=["a-1", "a-2", "a-3", "a-4"],
            received=[T0 + timedelta(minutes=1)] * 4,
        )
    )
    flat = [check_document(d) for d in documents]
    assert [f.get("event.severity") for f in flat] == [73, 21, None, 99]
    assert flat[0]["event.risk_score"] == 99.5 and flat[0]["nadkit"]["score_percentile"] == 99.5
    assert flat[0]["nadkit"]["threshold_multiple"] == 6.5 and flat[0]["nadkit"]["severity"] == "high"
    assert flat[0]["event.reason"] == flat[0]["message"] == "out_bytes far above normal"
    assert [f["event.id"] for f in flat] == ["a-1", "a-2", "a-3", "a-4"]
    assert flat[0]["event.created"] == "2024-03-01T12:01:00.000000Z"


def test_records_read_back_from_json_lines_and_without_flow_columns() -> None:
    from nadkit.alerts.records import json_lines

    table = records().head(1)
    back = pl.read_ndjson(b"\n".join(json_lines(table)))  # times as text
    assert ecs_documents(back)[0]["@timestamp"] == ecs_documents(table)[0]["@timestamp"]

    bare = pl.DataFrame({"row": [7], "score": [3.0], "threshold": [1.0], "alert": [True]})
    before = datetime.now(UTC)
    (document,) = ecs_documents(bare)
    flat = check_document(document)
    stamp = datetime.fromisoformat(flat["@timestamp"].replace("Z", "+00:00"))
    assert before - timedelta(seconds=1) <= stamp <= datetime.now(UTC) + timedelta(seconds=1)
    assert not any(f.startswith(("source.", "destination.", "network.")) for f in flat)
    assert ecs_documents(bare.head(0)) == [] and ecs_lines(bare.head(0)) == []


def test_lines_are_compact_json_in_record_order() -> None:
    lines = ecs_lines(records())
    assert len(lines) == 4 and all(b"\n" not in line for line in lines)
    assert [json.loads(line)["nadkit"]["row"] for line in lines] == [1, 2, 3, 4]
    assert b"null" not in lines[1] and b"NaN" not in b"".join(lines)  # a null inside a list stays


# -- incident documents --------------------------------------------------------------------------------


def incident_records() -> pl.DataFrame:
    flood = 30
    return pl.DataFrame(
        {
            "row": list(range(1, flood + 3)),
            "time": [T0 + timedelta(seconds=i) for i in range(flood + 2)],
            "src": [f"198.51.100.{i}" for i in range(flood)] + ["10.0.0.7", "2001:db8::7"],
            "dst": ["10.0.0.1"] * flood + ["10.0.0.8", "2001:db8::8"],
            "spt": list(range(1000, 1000 + flood + 2)),
            "dpt": [80] * (flood + 2),
            "proto": ["tcp"] * (flood + 2),
            "score": [5.0] * (flood + 2),
            "threshold": [1.0] * (flood + 2),
            "alert": [True] * (flood + 2),
            "class": [None] * (flood + 2),
            "top_features": [TOP] * (flood + 2),
            "out_bytes": [100] * (flood + 2),
            "in_bytes": [0] * (flood + 2),
        }
    )


def test_incident_documents() -> None:
    summary = group_alerts(incident_records()).summary
    documents = incident_documents(summary, model="ae@x")
    assert len(documents) == summary.height >= 2
    by_kind: dict[str, dict[str, Any]] = {}
    for document in documents:
        flat = check_document(document)
        assert flat["event.kind"] == "alert" and flat["event.type"] == ["info"]
        assert flat["event.dataset"] == "nadkit.incidents" and flat["rule.version"] == "ae@x"
        incident = flat["nadkit"]["incident"]
        assert flat["event.id"] == incident["id"] and flat["rule.name"] == incident["kind"]
        assert flat["event.start"] == incident["first_seen"] == flat["@timestamp"]
        assert flat["event.end"] == incident["last_seen"]
        by_kind[incident["kind"]] = flat
    flood = by_kind["flood"]
    assert flood["destination.ip"] == "10.0.0.1" and "source.ip" not in flood
    assert flood["event.severity"] == 73  # 5x the threshold: high
    assert flood["event.duration"] == 29 * 10**9
    assert flood["nadkit"]["incident"]["alerts"] == 30 and flood["network.bytes"] == 3000
    top_sources = [entry["value"] for entry in flood["nadkit"]["incident"]["top_sources"]]
    assert set(top_sources) <= set(flood["related.ip"]) and "10.0.0.1" in flood["related.ip"]
    assert flood["network.transport"] == ["tcp"]
    host = [d for d in by_kind.values() if d["rule.name"] == "host"]
    assert host and "source.ip" in host[0]
    lines = incident_lines(summary, model="ae@x")
    assert [json.loads(line) for line in lines] == documents
    assert incident_documents(summary.head(0)) == []


# -- writers and sinks ---------------------------------------------------------------------------------


def test_output_kind_and_writer(tmp_path: Path) -> None:
    assert output_kind("alerts.json", "ecs") == output_kind("a.ndjson", "ecs") == "ecs"
    assert output_kind("alerts.jsonl") == "jsonl"
    with pytest.raises(ConfigError, match="JSON lines"):
        output_kind("alerts.parquet", "ecs")
    with pytest.raises(ConfigError, match="layout"):
        output_kind("alerts.jsonl", "cef")
    writer = EcsWriter(tmp_path / "alerts.json")
    writer.write(records())
    writer.write(records().head(0))
    writer.close()
    lines = (tmp_path / "alerts.json").read_text().splitlines()
    assert writer.rows == len(lines) == 4
    check_document(json.loads(lines[0]))
    empty = EcsWriter(tmp_path / "none.json")
    empty.close()
    assert (tmp_path / "none.json").read_bytes() == b""


def test_sinks_write_ecs_when_asked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sink format"):
        open_sink("-", layout="cef")
    plain = open_sink(f"file:{tmp_path / 'plain.jsonl'}")
    sink = open_sink(f"file:{tmp_path / 'ecs.jsonl'}", layout="ecs", model_version="ae@1")
    assert isinstance(sink, JsonLinesSink) and sink.name == f"file:{tmp_path / 'ecs.jsonl'}"
    for each in (plain, sink):
        each.write(records())
        each.close()
    document = json.loads((tmp_path / "ecs.jsonl").read_text().splitlines()[0])
    assert check_document(document)["rule.version"] == "ae@1"
    assert "score" in json.loads((tmp_path / "plain.jsonl").read_text().splitlines()[0])  # unchanged


def test_syslog_sends_ecs_documents_with_nadkit_structured_data() -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5.0)
    try:
        port = receiver.getsockname()[1]
        sink = open_sink(f"syslog+udp://127.0.0.1:{port}", layout="ecs")
        assert isinstance(sink, SyslogSink)
        sink.write(records().head(1))
        sink.close()
        message = receiver.recv(65_535)
    finally:
        receiver.close()
    head, _, body = message.partition(b"\xef\xbb\xbf")
    assert b'[nadkit@32473 row="1"' in head and b'score="12.0"' in head
    check_document(json.loads(body))
