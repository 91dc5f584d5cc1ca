"""Suricata EVE JSON (``eve.json``): one JSON object per line, of many event types; the ``flow`` and
``netflow`` events are flows, every other event (``alert``, ``dns``, ``http``, ``tls``, ``stats``...)
is left out (counted in the log).

A ``flow`` event describes both directions of a finished flow: ``flow.pkts_toserver`` /
``flow.bytes_toserver`` (from the side that opened it) and ``..._toclient``, with ``flow.start``,
``flow.end``, ``flow.state``, ``flow.reason`` and ``flow.alerted``. A ``netflow`` event (Suricata's
``netflow`` output) describes one direction: ``netflow.pkts`` / ``netflow.bytes`` with the same
times.

Mapping: ``flow.start`` (else ``netflow.start``, else the event's ``timestamp``) -> ``time``;
``src_ip``/``src_port`` -> ``src``/``spt`` (the side that opened the flow); ``dest_ip``/``dest_port``
-> ``dst``/``dpt`` (ICMP flows have no ports: ``icmp_type``/``icmp_code`` are kept as numbers);
``proto`` (lower-case); ``app_proto`` -> ``app`` (``failed`` and ``unknown``, where no parser took
the flow, become null); ``end - start`` -> ``duration`` (seconds); ``*_toserver`` -> ``out_*`` and
``*_toclient`` -> ``in_*`` (a ``netflow`` event's counts are ``out_*``, with ``in_*`` 0);
``flow.state`` and ``flow.reason`` are kept as text (``flow_state``, ``flow_reason``) and
``flow.alerted`` as ``suricata_alerted`` (whether a signature fired on the flow). EVE has no labels.
Times are ISO 8601 with an offset (``2024-03-01T10:00:05.123456+0000``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import polars as pl

from nadkit.errors import SchemaError
from nadkit.schema import proto_name_expr
from nadkit.sources.base import SOURCE_ROW, Head, build, flexible_time, named_after, numeric, text

log = logging.getLogger(__name__)

NAME = "eve"
DESCRIPTION = "Suricata EVE JSON lines (flow and netflow events; other events are left out)"
SUFFIXES = (".json", ".jsonl", ".ndjson")

#: the event types that are flows
FLOW_EVENTS = ("flow", "netflow")
_TIME_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S%.f")
_S = pl.String
_SCHEMA: dict[str, pl.DataType] = {
    "timestamp": _S(),
    "event_type": _S(),
    "src_ip": _S(),
    "src_port": _S(),
    "dest_ip": _S(),
    "dest_port": _S(),
    "proto": _S(),
    "app_proto": _S(),
    "icmp_type": _S(),
    "icmp_code": _S(),
    "flow": pl.Struct(
        {
            name: _S()
            for name in (
                "pkts_toserver",
                "pkts_toclient",
                "bytes_toserver",
                "bytes_toclient",
                "start",
                "end",
                "state",
                "reason",
                "alerted",
            )
        }
    ),
    "netflow": pl.Struct({name: _S() for name in ("pkts", "bytes", "start", "end")}),
}
#: keys every EVE event carries (``flow_id`` on flow-related ones)
_EVE_KEYS = {"timestamp", "event_type"}


def detect(head: Head) -> bool:
    """JSON lines whose objects carry EVE's ``timestamp`` and ``event_type`` and the flow's addresses
    (``src_ip``, ``dest_ip``) or an ``event_type`` EVE writes."""
    if not head.is_text or not head.first_line.lstrip().startswith("{"):
        return False
    seen = 0
    for line in head.lines[:50]:
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            return seen > 0  # a line cut by the head's end
        if not isinstance(record, dict) or not set(record) >= _EVE_KEYS:
            return False
        seen += 1
        if "src_ip" in record and "dest_ip" in record:
            return True
    return False


def read(path: str | Path, **_: object) -> pl.LazyFrame:
    """Scan the flow and netflow events of an EVE file lazily into the canonical table."""
    try:
        # each event's position in the file, so that an error names the line it is on
        frame = pl.scan_ndjson(path, schema=_SCHEMA, row_index_name=SOURCE_ROW)
        counts = frame.group_by("event_type").len().collect()
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError) as error:
        raise SchemaError(
            f"could not be read as EVE JSON lines ({str(error).splitlines()[0]})", path=path
        ) from None
    by_type = dict(zip(counts["event_type"].to_list(), counts["len"].to_list(), strict=True))
    flows = sum(by_type.get(kind, 0) for kind in FLOW_EVENTS)
    if flows == 0:
        found = ", ".join(f"{kind} {count:,}" for kind, count in sorted(by_type.items(), key=str)) or "none"
        raise SchemaError(
            f"no flow or netflow events (events found: {found}); enable the flow output in suricata.yaml",
            path=path,
        )
    others = sum(by_type.values()) - flows
    if others:
        log.info("%s: %d flow events read, %d other events left out", path, flows, others)
    events = frame.filter(pl.col("event_type").is_in(FLOW_EVENTS))
    return build(events, _canonical(), consumed=list(_SCHEMA))


def _field(struct: str, name: str) -> pl.Expr:
    return pl.col(struct).struct.field(name)


def _count(toserver: str, toclient: str, netflow: str, target: str) -> tuple[list[pl.Expr], list[pl.Expr]]:
    """The ``out_*`` and ``in_*`` counts of flow and netflow events."""
    is_netflow = pl.col("event_type") == "netflow"
    out = pl.when(is_netflow).then(_field("netflow", netflow)).otherwise(_field("flow", toserver))
    back = pl.when(is_netflow).then(pl.lit("0")).otherwise(_field("flow", toclient))
    return (
        named_after(numeric(out, pl.Int64(), f"out_{target}"), f"flow.{toserver}"),
        named_after(numeric(back, pl.Int64(), f"in_{target}"), f"flow.{toclient}"),
    )


def _canonical() -> dict[str, pl.Expr | list[pl.Expr]]:
    start = pl.coalesce(_field("flow", "start"), _field("netflow", "start"), pl.col("timestamp"))
    end = pl.coalesce(_field("flow", "end"), _field("netflow", "end"))
    start_time, *_ = flexible_time(start, _TIME_FORMATS, name="_start")
    end_time, *_ = flexible_time(end, _TIME_FORMATS, name="_end")
    seconds = (end_time - start_time).dt.total_microseconds().cast(pl.Float64) / 1e6
    out_bytes, in_bytes = _count("bytes_toserver", "bytes_toclient", "bytes", "bytes")
    out_pkts, in_pkts = _count("pkts_toserver", "pkts_toclient", "pkts", "pkts")
    app = pl.col("app_proto").str.to_lowercase()
    alerted = _field("flow", "alerted").str.to_lowercase()
    return {
        "time": named_after(flexible_time(start, _TIME_FORMATS), "flow.start"),
        "src": text("src_ip", "src"),
        "spt": named_after(numeric("src_port", pl.Int64(), "spt"), "src_port"),
        "dst": text("dest_ip", "dst"),
        "dpt": named_after(numeric("dest_port", pl.Int64(), "dpt"), "dest_port"),
        "proto": proto_name_expr(text(pl.col("proto").str.to_lowercase(), "proto")).alias("proto"),
        "app": text(pl.when(app.is_in(["failed", "unknown"])).then(None).otherwise(app), "app"),
        "duration": pl.when(seconds >= 0).then(seconds).otherwise(None).alias("duration"),
        "out_bytes": out_bytes,
        "in_bytes": in_bytes,
        "out_pkts": out_pkts,
        "in_pkts": in_pkts,
        "icmp_type": named_after(numeric("icmp_type", pl.Int64(), "icmp_type"), "icmp_type"),
        "icmp_code": named_after(numeric("icmp_code", pl.Int64(), "icmp_code"), "icmp_code"),
        "flow_state": text(_field("flow", "state"), "flow_state"),
        "flow_reason": text(_field("flow", "reason"), "flow_reason"),
        "suricata_alerted": pl.when(alerted == "true")
        .then(True)
        .when(alerted == "false")
        .then(False)
        .otherwise(None)
        .alias("suricata_alerted"),
    }


__all__ = ["DESCRIPTION", "FLOW_EVENTS", "NAME", "SUFFIXES", "detect", "read"]
