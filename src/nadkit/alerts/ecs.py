"""Alert records and incidents as Elastic Common Schema (ECS) documents, so that nadkit's alerts sit
beside Zeek's and Suricata's in Elastic, Splunk or any SIEM that reads ECS.

**Flow documents** (:func:`ecs_documents`), one per alert record (:mod:`nadkit.alerts.records`):

* ``@timestamp``: the flow's start (else ``received``, else the time of writing), ISO 8601 UTC with
  ``Z``; ``event.start``/``event.end`` the flow's start and end, ``event.duration`` nanoseconds,
  ``event.created`` when a stream received the flow.
* ``event.kind`` ``alert`` (``event`` for a scored flow below the threshold, written with ``--all``),
  ``event.category`` ``["network", "intrusion_detection"]`` (``["network"]`` for a flow that is no
  alert), ``event.type`` ``["connection", "info"]`` (``["connection"]``), ``event.module``
  ``nadkit``, ``event.dataset`` ``nadkit.alerts``; ``event.id`` the record's ``alert_id`` and
  ``event.reason`` its ``explanation``, where the records have them.
* ``event.severity``: the record's ``severity`` as a number (:data:`SEVERITY_NUMBERS`: low 21,
  medium 47, high 73, critical 99, the upper ends of Elastic Security's severity bands, so a rule
  that maps ``event.severity`` gives the same band); records without a ``severity`` get one from the
  multiple of the threshold their score reached, with the cut points of the incidents
  (:class:`~nadkit.alerts.incidents.IncidentConfig`). ``event.risk_score`` is the
  ``score_percentile`` (0 to 100) where the records have one.
* ``source.*``/``destination.*``: ``address``, ``ip`` (or ``mac`` for a layer-2 flow), ``port``,
  ``bytes`` (``out_bytes``/``in_bytes``: what each side sent), ``packets``; ``related.ip`` both
  addresses.
* ``network.transport`` (the protocol name), ``network.iana_number``, ``network.protocol`` (the
  application, lower case), ``network.type`` (``ipv4``/``ipv6``), ``network.bytes`` and
  ``network.packets`` (both directions), ``network.community_id`` (:func:`community_ids`).
* ``rule.name`` the record's class, or ``anomaly``; ``rule.description``, ``rule.ruleset``
  ``nadkit`` and ``rule.version`` the model version where one is given; ``observer.*`` nadkit on
  this host (``observer.type`` ``ids``); ``labels`` as given; ``message`` one readable line.
* ``nadkit.*``: ``row``, ``score``, ``threshold``, ``alert``, ``class``, ``label``,
  ``threshold_multiple``, ``score_percentile``, ``severity``, ``explanation``, ``alert_id``,
  ``top_features`` (``feature``, ``contribution``, ``value``) and ``incident.id``/``incident.kind``
  for records grouped into incidents: what nadkit knows beyond ECS.

**Incident documents** (:func:`incident_documents`), one per row of an incidents summary
(:func:`nadkit.alerts.incidents.group_alerts`, :class:`~nadkit.alerts.incident_tracker.IncidentTracker`):
``event.kind`` ``alert``, ``event.type`` ``["info"]``, ``event.dataset`` ``nadkit.incidents``,
``event.id`` the incident id, ``event.start``/``event.end`` first and last seen, ``event.severity``
from the incident's severity, ``source.ip``/``destination.ip`` from its key, ``related.ip`` its top
addresses, ``rule.name`` its shape and ``nadkit.incident.*`` the whole summary.

Field types follow the ECS reference: addresses are text (type ``ip``), ports, byte and packet
counts, ``event.severity`` and ``event.duration`` are integers (``long``), times are ISO 8601 text
(``date``). Absent and null fields are left out of a document rather than written as null (a null
inside a list, such as a top feature without a value, stays). Every field and the JSON text itself
are computed by Polars, a batch at a time; only the community ids are computed in Python, once per
distinct 5-tuple (and remembered across batches).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import socket
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

import communityid
import polars as pl

from nadkit.alerts.incidents import SEVERITIES, IncidentConfig
from nadkit.alerts.records import PARSE_FORMAT, TIME_FORMAT
from nadkit.errors import SchemaError
from nadkit.schema import PROTOCOL_NAMES
from nadkit.version import __version__

log = logging.getLogger(__name__)

#: the ECS version the documents follow
ECS_VERSION: Final = "8.11.0"
#: ``event.module``, ``observer.vendor``/``product`` and ``rule.ruleset``
MODULE: Final = "nadkit"
#: ``event.dataset`` of flow alerts and of incidents
ALERTS_DATASET: Final = "nadkit.alerts"
INCIDENTS_DATASET: Final = "nadkit.incidents"
#: ``event.severity`` of each severity name: the upper ends of Elastic Security's bands
SEVERITY_NUMBERS: Final = {"low": 21, "medium": 47, "high": 73, "critical": 99}
#: record layouts a writer or a sink can produce: nadkit's own records, or ECS documents
LAYOUTS: Final = ("nadkit", "ecs")
#: what each incident shape is, for ``rule.description``
INCIDENT_RULES: Final = {
    "flood": "many sources sending anomalous flows to one destination (DDoS, spoofed or reflected flood)",
    "scan": "one source sending anomalous flows to many destinations or ports (port scan, host sweep)",
    "pair": "repeated anomalous flows between one source and one destination (brute force, beaconing, "
    "exfiltration)",
    "host": "anomalous flows of one source that fit no larger shape",
}

_PROTOCOL_NUMBERS: Final = {name: number for number, name in PROTOCOL_NAMES.items()} | {"icmp6": 58}
_IANA_TEXT: Final = {name: str(number) for name, number in _PROTOCOL_NUMBERS.items()}
_MAC: Final = re.compile(r"^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){5}$")
_TIME_FORMATS: Final = (PARSE_FORMAT, "%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f")
_ICMP: Final = (communityid.PROTO_ICMP, communityid.PROTO_ICMP6)
_ALGORITHM: Final = communityid.CommunityID()


# -- community id ------------------------------------------------------------------------------------


def protocol_number(name: str | None) -> int | None:
    """The IANA number of a protocol name as flows carry it (``tcp``, ``ipv6-icmp``, ``47``)."""
    if name is None:
        return None
    text = name.strip().lower()
    if text.isdigit():
        number = int(text)
        return number if number <= 255 else None
    return _PROTOCOL_NUMBERS.get(text)


@lru_cache(maxsize=65_536)
def _packed(address: str) -> bytes | None:
    try:
        return ipaddress.ip_address(address.strip()).packed
    except ValueError:
        return None


@lru_cache(maxsize=262_144)
def community_id(
    src: str | None, dst: str | None, spt: int | None, dpt: int | None, proto: str | None
) -> str | None:
    """The Community ID (v1, seed 0) of one flow, or None where it has none (no IP addresses, no
    protocol, a port protocol without ports, or addresses of two families).

    ICMP type and code are read as Zeek writes them (``spt`` the type, ``dpt`` the code); a flow with
    ``spt`` 0 and ``dpt`` above 255 is read as NetFlow and nfdump write ICMP (``type * 256 + code``
    in ``dpt``), so both give the id Zeek and Suricata give the same flow. ``icmp`` between IPv6
    addresses is ICMPv6, as Zeek writes it."""
    number = protocol_number(proto)
    if number is None or src is None or dst is None:
        return None
    saddr, daddr = _packed(src), _packed(dst)
    if saddr is None or daddr is None or len(saddr) != len(daddr):
        return None
    if number == communityid.PROTO_ICMP and len(saddr) == 16:
        number = communityid.PROTO_ICMP6  # Zeek names ICMPv6 "icmp" too
    try:
        if number in communityid.PORT_PROTOS:
            if spt is None or dpt is None:
                return None
            if number in _ICMP and spt == 0 and dpt > 255:
                spt, dpt = divmod(dpt, 256)
            if not (0 <= spt <= 65_535 and 0 <= dpt <= 65_535):
                return None
            flow = communityid.FlowTuple(number, saddr, daddr, int(spt), int(dpt))
        else:
            flow = communityid.FlowTuple(number, saddr, daddr)
        return _ALGORITHM.calc(flow)
    except (communityid.error.FlowTupleError, ValueError) as error:  # type: ignore[attr-defined]
        log.debug("no community id for %s -> %s (%s): %s", src, dst, proto, error)
        return None


def community_ids(frame: pl.DataFrame) -> pl.Series:
    """``network.community_id`` of every flow of ``frame`` (``src``, ``dst``, ``proto``, and ``spt``,
    ``dpt`` where present), computed once per distinct 5-tuple; null where a flow has none."""
    if frame.height == 0 or not {"src", "dst", "proto"} <= set(frame.columns):
        return pl.Series("community_id", [None] * frame.height, dtype=pl.String)
    names = ("src", "dst", "spt", "dpt", "proto")
    types = {"src": pl.String, "dst": pl.String, "spt": pl.Int64, "dpt": pl.Int64, "proto": pl.String}
    tuples = frame.select(
        [
            pl.col(n).cast(types[n], strict=False) if n in frame.columns else pl.lit(None, types[n]).alias(n)
            for n in names
        ]
    )
    key = pl.concat_str([pl.col(n).cast(pl.String).fill_null("") for n in names], separator="|")
    distinct = tuples.with_columns(key.alias("_key")).unique("_key")
    ids = [community_id(*row) for row in distinct.select(names).iter_rows()]
    mapping = dict(zip(distinct["_key"].to_list(), ids, strict=True))
    return tuples.select(
        key.replace_strict(mapping, default=None, return_dtype=pl.String).alias("community_id")
    ).to_series()


# -- shared pieces -----------------------------------------------------------------------------------


def _time(frame: pl.DataFrame, name: str) -> pl.Expr | None:
    """A time column as UTC datetimes (from datetimes or ISO 8601 text), or None when absent."""
    if name not in frame.columns:
        return None
    dtype = frame.schema[name]
    column = pl.col(name)
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            column = column.dt.replace_time_zone("UTC")
        return column.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    if dtype == pl.String:
        parsed = [
            column.str.to_datetime(f, time_zone="UTC", strict=False, time_unit="us") for f in _TIME_FORMATS
        ]
        return pl.coalesce(parsed)
    if dtype == pl.Null:
        return None
    raise SchemaError(f"{name} must be a datetime or ISO 8601 text, not {dtype}", column=name)


def _text(expr: pl.Expr) -> pl.Expr:
    return expr.dt.to_string(TIME_FORMAT)


def _finite(expr: pl.Expr) -> pl.Expr:
    number = expr.cast(pl.Float64, strict=False)
    return pl.when(number.is_finite()).then(number)


def _addresses(values: pl.Series) -> pl.DataFrame:
    """Per distinct address: its ``ip`` text (valid IP), ``mac`` (ECS spelling) and IP ``version``."""
    rows: list[tuple[str, str | None, str | None, str | None]] = []
    for value in values.drop_nulls().unique().to_list():
        text = value.strip()
        try:
            parsed = ipaddress.ip_address(text)
            rows.append((value, text, None, f"ipv{parsed.version}"))
        except ValueError:
            mac = text.upper().replace(":", "-") if _MAC.match(text) else None
            rows.append((value, None, mac, None))
    schema = {"address": pl.String, "ip": pl.String, "mac": pl.String, "version": pl.String}
    return pl.DataFrame(rows, schema=schema, orient="row")


def _address_fields(frame: pl.DataFrame, column: str, side: str) -> tuple[pl.DataFrame, list[str]]:
    """``frame`` with ``{side}.address``/``.ip``/``.mac`` (and a hidden IP version) from ``column``."""
    if column not in frame.columns:
        return frame, []
    table = _addresses(frame[column].cast(pl.String)).rename(
        {"address": column, "ip": f"{side}.ip", "mac": f"{side}.mac", "version": f"_{side}_version"}
    )
    joined = frame.with_columns(pl.col(column).cast(pl.String)).join(
        table, on=column, how="left", maintain_order="left"
    )
    return joined.with_columns(pl.col(column).alias(f"{side}.address")), [
        f"{side}.address",
        f"{side}.ip",
        f"{side}.mac",
    ]


def _optional(frame: pl.DataFrame, name: str, dtype: pl.DataType) -> pl.Expr:
    return pl.col(name).cast(dtype, strict=False) if name in frame.columns else pl.lit(None, dtype)


def _host(frame: pl.DataFrame, name: str) -> pl.Expr:
    """An address for a readable ``host:port`` (IPv6 in brackets)."""
    address = _optional(frame, name, pl.String)
    return (
        pl.when(address.str.contains(":")).then(pl.format("[{}]", address)).otherwise(address).fill_null("?")
    )


def _severity_number(frame: pl.DataFrame, name: str) -> pl.Expr:
    """A severity column (names or numbers) as ``event.severity``."""
    dtype = frame.schema[name]
    if dtype.is_numeric():
        return pl.col(name).cast(pl.Int64, strict=False)
    lowered = pl.col(name).cast(pl.String).str.strip_chars().str.to_lowercase()
    return lowered.replace_strict(SEVERITY_NUMBERS, default=None, return_dtype=pl.Int64)


def _severity_from_multiple(multiple: pl.Expr, cuts: Sequence[float]) -> pl.Expr:
    low, high, critical = cuts
    return (
        pl.when(multiple >= critical)
        .then(pl.lit(SEVERITIES[3]))
        .when(multiple >= high)
        .then(pl.lit(SEVERITIES[2]))
        .when(multiple >= low)
        .then(pl.lit(SEVERITIES[1]))
        .when(multiple.is_not_null())
        .then(pl.lit(SEVERITIES[0]))
    )


def _observer() -> dict[str, str]:
    hostname = socket.gethostname() or ""
    observer = {"observer.vendor": MODULE, "observer.product": MODULE, "observer.type": "ids"}
    observer["observer.version"] = __version__
    if hostname:
        observer["observer.hostname"] = hostname
    return observer


def _constants(fields: Mapping[str, Any]) -> list[pl.Expr]:
    return [pl.lit(value).alias(name) for name, value in fields.items()]


def _label_fields(labels: Mapping[str, str] | None) -> dict[str, str]:
    return {f"labels.{key}": str(value) for key, value in (labels or {}).items() if value is not None}


def _struct(tree: dict[str, Any]) -> pl.Expr:
    """A struct of a tree of field names (key -> column name or subtree)."""
    return pl.struct(
        [
            pl.col(node).alias(key) if isinstance(node, str) else _struct(node).alias(key)
            for key, node in tree.items()
        ]
    )


def _tree(columns: Sequence[str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name in columns:
        path = [name] if name.startswith("@") else name.split(".")
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = name
    return tree


def json_texts(flat: pl.DataFrame) -> pl.Series:
    """One JSON document per row of a frame whose column names are dotted paths (``event.kind``;
    ``@timestamp`` stays whole); null fields and empty lists are left out, and non-finite numbers are
    written as null. Rows are encoded by Polars in groups of the same missing fields (a batch has few)."""
    if flat.height == 0:
        return pl.Series("json", [], dtype=pl.String)
    missing = [
        pl.col(c).is_null() | (pl.col(c).list.len() == 0)
        if isinstance(flat.schema[c], pl.List)
        else pl.col(c).is_null()
        for c in flat.columns
    ]
    pattern = pl.concat_str([m.fill_null(True).cast(pl.Int8).cast(pl.String) for m in missing])
    marked = flat.with_columns(pattern.alias("_missing")).with_row_index("_i")
    parts: list[pl.DataFrame] = []
    for group in marked.partition_by("_missing", maintain_order=False):
        flags = group["_missing"][0]
        present = [c for c, flag in zip(flat.columns, flags, strict=True) if flag == "0"]
        encoded = _struct(_tree(present)).struct.json_encode() if present else pl.lit("{}")
        parts.append(group.select("_i", encoded.alias("json")))
    return pl.concat(parts).sort("_i")["json"]


def _lines(flat: pl.DataFrame) -> list[bytes]:
    return [text.encode() for text in json_texts(flat).to_list()] if flat.height else []


# -- flow documents ----------------------------------------------------------------------------------


def ecs_frame(
    records: pl.DataFrame,
    *,
    model: str | None = None,
    labels: Mapping[str, str] | None = None,
    severity_cuts: Sequence[float] | None = None,
    now: datetime | None = None,
) -> pl.DataFrame:
    """The flow documents of ``records`` as a flat frame, one column per ECS field (dotted names), in
    ECS types; :func:`ecs_documents` nests it. ``model`` is written as ``rule.version``, ``labels`` as
    ``labels.*``; ``severity_cuts`` (default: the incidents') rate records without ``severity``."""
    if records.height == 0:
        return pl.DataFrame()
    cuts = tuple(severity_cuts or IncidentConfig().severity_cuts)
    now = now or datetime.now(UTC)
    columns = set(records.columns)
    frame = records.with_columns(community_ids(records).alias("network.community_id"))
    frame, source_fields = _address_fields(frame, "src", "source")
    frame, destination_fields = _address_fields(frame, "dst", "destination")

    alert = _optional(records, "alert", pl.Boolean).fill_null(False)
    start = _time(records, "time")
    received = _time(records, "received")
    duration = _finite(pl.col("duration")) if "duration" in columns else pl.lit(None, pl.Float64)
    nanos = pl.when(duration >= 0).then((duration * 1e9).round(0).cast(pl.Int64))
    stamp = pl.coalesce(
        [e for e in (start, received) if e is not None] + [pl.lit(now).dt.cast_time_unit("us")]
    )
    score = _finite(_optional(records, "score", pl.Float64))
    threshold = _finite(_optional(records, "threshold", pl.Float64))
    if "threshold_multiple" in columns:
        multiple = _finite(pl.col("threshold_multiple"))
    else:
        multiple = pl.when(threshold > 0).then(score / threshold)
    if "severity" in columns:
        severity_text = pl.col("severity").cast(pl.String).str.to_lowercase()
        severity_number = _severity_number(records, "severity")
    else:
        severity_text = _severity_from_multiple(multiple, cuts)
        severity_number = severity_text.replace_strict(SEVERITY_NUMBERS, default=None, return_dtype=pl.Int64)
    severity_text = pl.when(alert).then(severity_text)
    severity_number = pl.when(alert).then(severity_number)
    klass = _optional(records, "class", pl.String)
    rule = pl.coalesce(klass, pl.lit("anomaly"))
    out_bytes, in_bytes = _optional(records, "out_bytes", pl.Int64), _optional(records, "in_bytes", pl.Int64)
    out_pkts, in_pkts = _optional(records, "out_pkts", pl.Int64), _optional(records, "in_pkts", pl.Int64)
    proto = _optional(records, "proto", pl.String).str.to_lowercase()
    app = _optional(records, "app", pl.String).str.strip_chars().str.to_lowercase()
    explanation = _optional(records, "explanation", pl.String)
    src_ip, dst_ip = (
        pl.col(f"{side}.ip") if f"{side}.ip" in frame.columns else pl.lit(None, pl.String)
        for side in ("source", "destination")
    )
    ip_version = pl.coalesce(
        [
            pl.col(f"_{side}_version")
            for side in ("source", "destination")
            if f"_{side}_version" in frame.columns
        ]
        + [pl.lit(None, pl.String)]
    )
    # Zeek names ICMPv6 "icmp" too; ECS names it by its IANA keyword
    proto = pl.when((proto == "icmp") & (ip_version == "ipv6")).then(pl.lit("ipv6-icmp")).otherwise(proto)
    endpoint = pl.format(
        "{}:{} -> {}:{} {}",
        _host(records, "src"),
        _optional(records, "spt", pl.String).fill_null("-"),
        _host(records, "dst"),
        _optional(records, "dpt", pl.String).fill_null("-"),
        proto.fill_null("?"),
    )
    heading = (
        pl.col("top_features").list.head(3).list.eval(pl.element().struct.field("feature")).list.join(", ")
        if "top_features" in columns
        else pl.lit(None, pl.String)
    )
    summary = pl.format(
        "{}: {}, score {} ({}x the threshold)",
        pl.when(alert).then(rule).otherwise(pl.lit("flow")),
        endpoint,
        score.round_sig_figs(4).cast(pl.String).fill_null("?"),
        multiple.round(2).cast(pl.String).fill_null("?"),
    )
    message = pl.coalesce(
        explanation,
        pl.when(heading.is_not_null() & (heading != ""))
        .then(pl.format("{}; top features: {}", summary, heading))
        .otherwise(summary),
    )
    description = (
        pl.when(klass.is_not_null())
        .then(
            pl.format("nadkit: a flow the model assigns to class {}, scored above the alert threshold", klass)
        )
        .otherwise(pl.lit("nadkit: a flow whose anomaly score is above the model's alert threshold"))
    )

    fields: list[pl.Expr] = [
        _text(stamp).alias("@timestamp"),
        message.alias("message"),
        pl.lit(ECS_VERSION).alias("ecs.version"),
        pl.when(alert).then(pl.lit("alert")).otherwise(pl.lit("event")).alias("event.kind"),
        pl.when(alert)
        .then(pl.lit(["network", "intrusion_detection"]))
        .otherwise(pl.lit(["network"]))
        .alias("event.category"),
        pl.when(alert)
        .then(pl.lit(["connection", "info"]))
        .otherwise(pl.lit(["connection"]))
        .alias("event.type"),
        pl.lit(MODULE).alias("event.module"),
        pl.lit(ALERTS_DATASET).alias("event.dataset"),
        severity_number.alias("event.severity"),
        (
            _finite(pl.col("score_percentile")).clip(0.0, 100.0)
            if "score_percentile" in columns
            else pl.lit(None, pl.Float64)
        ).alias("event.risk_score"),
        nanos.alias("event.duration"),
        (_text(start) if start is not None else pl.lit(None, pl.String)).alias("event.start"),
        (
            _text(start + pl.duration(microseconds=(duration * 1e6).round(0).cast(pl.Int64)))
            if start is not None
            else pl.lit(None, pl.String)
        ).alias("event.end"),
        (_text(received) if received is not None else pl.lit(None, pl.String)).alias("event.created"),
        _optional(records, "alert_id", pl.String).alias("event.id"),
        explanation.alias("event.reason"),
        *[pl.col(c) for c in source_fields],
        _optional(records, "spt", pl.Int64).alias("source.port"),
        out_bytes.alias("source.bytes"),
        out_pkts.alias("source.packets"),
        *[pl.col(c) for c in destination_fields],
        _optional(records, "dpt", pl.Int64).alias("destination.port"),
        in_bytes.alias("destination.bytes"),
        in_pkts.alias("destination.packets"),
        proto.alias("network.transport"),
        pl.when(proto.str.contains(r"^[0-9]{1,3}$"))
        .then(proto)
        .otherwise(proto.replace_strict(_IANA_TEXT, default=None, return_dtype=pl.String))
        .alias("network.iana_number"),
        pl.when(app.is_in(["", "-", "other", "others", "unknown"]).not_())
        .then(app)
        .alias("network.protocol"),
        ip_version.alias("network.type"),
        pl.when(out_bytes.is_not_null() | in_bytes.is_not_null())
        .then(out_bytes.fill_null(0) + in_bytes.fill_null(0))
        .alias("network.bytes"),
        pl.when(out_pkts.is_not_null() | in_pkts.is_not_null())
        .then(out_pkts.fill_null(0) + in_pkts.fill_null(0))
        .alias("network.packets"),
        pl.col("network.community_id"),
        pl.concat_list([src_ip, dst_ip])
        .list.drop_nulls()
        .list.unique(maintain_order=True)
        .alias("related.ip"),
        pl.when(alert).then(rule).alias("rule.name"),
        pl.when(alert).then(description).alias("rule.description"),
        pl.when(alert).then(pl.lit(MODULE)).alias("rule.ruleset"),
        pl.when(alert).then(pl.lit(model, pl.String)).alias("rule.version"),
        *_constants(_observer()),
        *_constants(_label_fields(labels)),
        _optional(records, "row", pl.Int64).alias("nadkit.row"),
        score.alias("nadkit.score"),
        threshold.alias("nadkit.threshold"),
        alert.alias("nadkit.alert"),
        klass.alias("nadkit.class"),
        _optional(records, "label", pl.String).alias("nadkit.label"),
        multiple.alias("nadkit.threshold_multiple"),
        (
            _finite(pl.col("score_percentile")) if "score_percentile" in columns else pl.lit(None, pl.Float64)
        ).alias("nadkit.score_percentile"),
        severity_text.alias("nadkit.severity"),
        explanation.alias("nadkit.explanation"),
        _optional(records, "alert_id", pl.String).alias("nadkit.alert_id"),
        _optional(records, "incident_id", pl.String).alias("nadkit.incident.id"),
        _optional(records, "incident_kind", pl.String).alias("nadkit.incident.kind"),
    ]
    if "top_features" in columns:
        fields.append(pl.col("top_features").alias("nadkit.top_features"))
    return frame.select(fields)


def ecs_documents(
    records: pl.DataFrame,
    *,
    model: str | None = None,
    labels: Mapping[str, str] | None = None,
    severity_cuts: Sequence[float] | None = None,
) -> list[dict[str, Any]]:
    """One ECS document per alert record (module docstring), nulls left out."""
    flat = ecs_frame(records, model=model, labels=labels, severity_cuts=severity_cuts)
    return [json.loads(line) for line in _lines(flat)]


def ecs_lines(
    records: pl.DataFrame, *, model: str | None = None, labels: Mapping[str, str] | None = None
) -> list[bytes]:
    """One ECS JSON text per alert record, in the records' order."""
    if records.height == 0:
        return []
    return _lines(ecs_frame(records, model=model, labels=labels))


# -- incident documents ------------------------------------------------------------------------------


def _values(frame: pl.DataFrame, name: str) -> pl.Expr:
    """The values of a ``top_...`` list of ``{value, count}`` (an empty list when absent)."""
    if name not in frame.columns:
        return pl.lit([], pl.List(pl.String))
    return pl.col(name).list.eval(pl.element().struct.field("value").cast(pl.String))


def _valid_ips(frame: pl.DataFrame, expr: pl.Expr) -> pl.Expr:
    """The entries of a list of addresses that are IP addresses."""
    addresses = frame.select(expr.alias("a")).explode("a")["a"]
    valid = _addresses(addresses).filter(pl.col("ip").is_not_null())["address"].to_list()
    return expr.list.eval(pl.element().filter(pl.element().is_in(valid)))


def incident_frame(
    summary: pl.DataFrame,
    *,
    model: str | None = None,
    labels: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> pl.DataFrame:
    """The incident documents of an incidents summary as a flat frame (dotted ECS names)."""
    if summary.height == 0:
        return pl.DataFrame()
    now = now or datetime.now(UTC)
    columns = set(summary.columns)
    first, last = _time(summary, "first_seen"), _time(summary, "last_seen")
    start = first if first is not None else pl.lit(None, pl.Datetime("us", "UTC"))
    end = last if last is not None else pl.lit(None, pl.Datetime("us", "UTC"))
    kind = _optional(summary, "kind", pl.String)
    key = _optional(summary, "key", pl.String)
    pair = key.str.split_exact("->", 1)
    source = (
        pl.when(kind.is_in(["scan", "host"]))
        .then(key)
        .when(kind == "pair")
        .then(pair.struct.field("field_0"))
    )
    target = pl.when(kind == "flood").then(key).when(kind == "pair").then(pair.struct.field("field_1"))
    keyed = summary.with_columns(source.alias("_source"), target.alias("_target"))
    valid = _addresses(pl.concat([keyed["_source"], keyed["_target"]]).cast(pl.String))
    valid_ips = valid.filter(pl.col("ip").is_not_null())["address"].to_list()
    related = pl.concat_list(
        [
            pl.concat_list([pl.col("_source"), pl.col("_target")]),
            _values(summary, "top_sources"),
            _values(summary, "top_destinations"),
        ]
    ).list.drop_nulls()
    severity = _severity_number(summary, "severity") if "severity" in columns else pl.lit(None, pl.Int64)
    message = pl.format(
        "{} incident on {}: {} alerts, {} sources, {} destinations, {} ports ({} severity)",
        kind,
        key.fill_null("?"),
        _optional(summary, "alerts", pl.String).fill_null("?"),
        _optional(summary, "sources", pl.String).fill_null("?"),
        _optional(summary, "destinations", pl.String).fill_null("?"),
        _optional(summary, "ports", pl.String).fill_null("?"),
        _optional(summary, "severity", pl.String).fill_null("?"),
    )
    incident: list[pl.Expr] = []
    for name in summary.columns:
        target_name = "id" if name == "incident_id" else name
        column = pl.col(name)
        dtype = summary.schema[name]
        if isinstance(dtype, pl.Datetime) or name in ("first_seen", "last_seen"):
            parsed = _time(summary, name)
            column = _text(parsed) if parsed is not None else pl.lit(None, pl.String)
        incident.append(column.alias(f"nadkit.incident.{target_name}"))
    fields: list[pl.Expr] = [
        _text(pl.coalesce(start, end, pl.lit(now).dt.cast_time_unit("us"))).alias("@timestamp"),
        message.alias("message"),
        pl.lit(ECS_VERSION).alias("ecs.version"),
        pl.lit("alert").alias("event.kind"),
        pl.lit(["network", "intrusion_detection"]).alias("event.category"),
        pl.lit(["info"]).alias("event.type"),
        pl.lit(MODULE).alias("event.module"),
        pl.lit(INCIDENTS_DATASET).alias("event.dataset"),
        _optional(summary, "incident_id", pl.String).alias("event.id"),
        severity.alias("event.severity"),
        _text(start).alias("event.start"),
        _text(end).alias("event.end"),
        pl.when(end >= start)
        .then((end - start).dt.total_nanoseconds())
        .cast(pl.Int64)
        .alias("event.duration"),
        pl.when(pl.col("_source").is_in(valid_ips)).then(pl.col("_source")).alias("source.ip"),
        pl.when(pl.col("_target").is_in(valid_ips)).then(pl.col("_target")).alias("destination.ip"),
        _valid_ips(keyed, related).list.unique(maintain_order=True).alias("related.ip"),
        _values(summary, "top_protocols")
        .list.eval(pl.element().str.to_lowercase())
        .alias("network.transport"),
        _optional(summary, "bytes", pl.Int64).alias("network.bytes"),
        kind.alias("rule.name"),
        kind.replace_strict(INCIDENT_RULES, default=None, return_dtype=pl.String).alias("rule.description"),
        pl.lit(MODULE).alias("rule.ruleset"),
        pl.lit(model, pl.String).alias("rule.version"),
        *_constants(_observer()),
        *_constants(_label_fields(labels)),
        *incident,
    ]
    return keyed.select(fields)


def incident_documents(
    summary: pl.DataFrame, *, model: str | None = None, labels: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """One ECS document per incident of an incidents summary (module docstring), nulls left out."""
    return [json.loads(line) for line in _lines(incident_frame(summary, model=model, labels=labels))]


def incident_lines(
    summary: pl.DataFrame, *, model: str | None = None, labels: Mapping[str, str] | None = None
) -> list[bytes]:
    """One ECS JSON text per incident."""
    if summary.height == 0:
        return []
    return _lines(incident_frame(summary, model=model, labels=labels))


# -- writing -----------------------------------------------------------------------------------------


class EcsWriter:
    """Writes record batches to one file as ECS JSON lines (the same ``write``/``close``/``rows`` as
    :class:`~nadkit.alerts.records.RecordWriter`); an empty file when nothing was written."""

    kind = "ecs"

    def __init__(
        self, path: Path, *, model: str | None = None, labels: Mapping[str, str] | None = None
    ) -> None:
        self.path = path
        self.model = model
        self.labels = dict(labels or {})
        self._handle = path.open("wb")
        self.rows = 0

    def write(self, frame: pl.DataFrame) -> None:
        lines = ecs_lines(frame, model=self.model, labels=self.labels)
        if lines:
            self._handle.write(b"\n".join(lines) + b"\n")
            self.rows += len(lines)

    def close(self) -> None:
        self._handle.close()


__all__ = [
    "ALERTS_DATASET",
    "ECS_VERSION",
    "INCIDENTS_DATASET",
    "LAYOUTS",
    "SEVERITY_NUMBERS",
    "EcsWriter",
    "community_id",
    "community_ids",
    "ecs_documents",
    "ecs_frame",
    "ecs_lines",
    "incident_documents",
    "incident_frame",
    "incident_lines",
    "json_texts",
    "protocol_number",
]
