"""``nfdump -o csv`` exports of NetFlow v5/v9, IPFIX or sFlow records collected by ``nfcapd``.

Two layouts are read, told apart by the header:

* **Classic** (nfdump 1.6 and the 1.7 releases up to at least 1.7.1): a fixed 48-column header
  ``ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,in,out,sas,das,smk,dmk,dtos,dir,nh,nhb,
  svln,dvln,ismc,odmc,idmc,osmc,mpls1,...,mpls10,cl,sl,al,ra,eng,exid,tr``. ``ts``/``te`` are the
  local time of the machine that ran nfdump, ``2024-01-05 10:00:01`` (some builds add ``.123``
  milliseconds); ``td`` seconds; ``pr`` a protocol name (``TCP``, ``UDP``, ``ICMP``, ``ICMP6``, ...);
  ``flg`` the TCP flags as text (``...AP.SF``); ICMP flows carry ``type * 256 + code`` in ``dp``.
  The flows are followed by a summary block (``Summary``, ``flows,bytes,packets,avg_bps,avg_pps,
  avg_bpp``, one line of numbers), which is ignored, as are blank lines.
  Verified against real output of nfdump 1.7.1 (Debian 12 package ``nfdump 1.7.1-2+deb12u1``),
  collecting NetFlow v9 and IPFIX exported by softflowd 1.1.0 from packet captures.
* **Named columns** (later nfdump 1.7 releases, whose ``-o csv`` prints a configurable format, and
  ``-o csv:%ts,%td,...`` / ``-o csv-fast``): headers such as ``firstSeen,duration,proto,srcAddr,
  srcPort,dstAddr,dstPort,packets,bytes,flows`` or ``inPackets,inBytes,outPackets,outBytes,flags``;
  ``proto`` is a number, ``firstSeen`` local text with milliseconds (or epoch milliseconds in
  ``csv-fast``), and an ICMP ``dstPort`` is written ``type.code``. This layout was taken from
  nfdump's source code and has not been checked against a running binary.

Mapping: ``sa``/``srcAddr`` -> ``src``, ``sp`` -> ``spt``, ``da`` -> ``dst``, ``dp`` -> ``dpt``
(``type.code`` becomes ``type * 256 + code`` as in the classic layout), ``ts``/``firstSeen`` ->
``time`` (read as UTC unless ``timezone`` names the zone nfdump ran in), ``td``/``duration`` ->
``duration`` (``te - ts`` when only the end time is given), ``pr`` -> ``proto`` name; the ``in``
counters of nfdump (``ipkt``/``ibyt``, source to destination) -> ``out_pkts``/``out_bytes``, the
``out`` counters (``opkt``/``obyt``, the reverse direction) -> ``in_pkts``/``in_bytes``. NetFlow v5/v9
records are unidirectional (each direction is its own row and ``obyt`` is 0); IPFIX biflows and
``nfdump -b``/``-B`` aggregation fill both. A ``td`` that wrapped around (end before start, about
1.8e16 s) is read as unset. ``flg`` is kept as text ``tcp_flags``; interface, AS,
mask, ToS, VLAN and latency numbers are kept under their own names; addresses of routers and next
hops, MAC addresses, MPLS labels, engine and exporter ids and the received time are dropped.
"""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from nadkit.errors import SchemaError
from nadkit.schema import proto_name_expr, snake_case
from nadkit.sources.base import (
    INVALID_PREFIX,
    SOURCE_ROW,
    Head,
    build,
    column_kinds,
    column_lookup,
    flexible_time,
    frame_names,
    named_after,
    numeric,
    pick,
    scan_csv,
    text,
)

log = logging.getLogger(__name__)

NAME = "nfdump"
DESCRIPTION = "nfdump -o csv export (ts,te,td,sa,da,sp,dp,pr,...; or firstSeen,srcAddr,... headers)"
SUFFIXES = (".csv", ".txt")

CLASSIC_HEADER = ("ts", "te", "td", "sa", "da", "sp", "dp", "pr")
TIME_FORMATS = ("%Y-%m-%d %H:%M:%S%.f", "%Y/%m/%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f")
SUMMARY_MARKER = "Summary"
_ZERO_TIME = "0000-00-00 00:00:00"
#: nfdump computes ``td`` as an unsigned difference: an exporter whose end time precedes its start
#: time (softflowd's IPFIX read by nfdump 1.7.1 does this) yields about 1.8e16 s. Such values are unset.
_WRAPPED_DURATION_S = 1e15

#: canonical (or kept) name -> candidate source names (``snake_case``), classic first.
_COLUMNS: dict[str, tuple[str, ...]] = {
    "time": ("ts", "first_seen"),
    "end": ("te", "last_seen"),
    "duration": ("td", "duration"),
    "src": ("sa", "src_addr"),
    "dst": ("da", "dst_addr"),
    "spt": ("sp", "src_port"),
    "dpt": ("dp", "dst_port"),
    "proto": ("pr", "proto"),
    "out_bytes": ("ibyt", "in_bytes", "bytes"),
    "out_pkts": ("ipkt", "in_packets", "packets"),
    "in_bytes": ("obyt", "out_bytes"),
    "in_pkts": ("opkt", "out_packets"),
    "tcp_flags": ("flg", "flags"),
}
_REQUIRED = ("time", "src", "dst", "proto")
#: numeric columns that identify the exporter or the output line, not the traffic.
_DROPPED = ("exid", "eng", "cnt", "received", "tr", "exporter_id", "engine")


def _is_classic(fields: set[str]) -> bool:
    return set(CLASSIC_HEADER) <= fields


def _is_named(fields: set[str]) -> bool:
    return {"firstseen", "srcaddr", "dstaddr", "proto"} <= fields


def detect(head: Head) -> bool:
    """The classic ``ts,te,td,sa,da,sp,dp,pr`` header, or nfdump's ``firstSeen,...,srcAddr`` names."""
    if not head.is_text:
        return False
    fields = head.header_set()
    return _is_classic(fields) or _is_named(fields)


def read(path: str | Path, *, timezone: str | None = None, **_: object) -> pl.LazyFrame:
    """Scan an nfdump CSV export lazily into the canonical table (the summary block is dropped).

    ``timezone`` (an IANA name) is the zone of the machine that ran ``nfdump``, which writes local
    time; by default the times are read as UTC.
    """
    head = Head.of(path)
    fields = head.header_fields()
    # every column is read as text: the summary block puts words under numeric headers, and the
    # typed casts below remember which row failed to parse
    frame = scan_csv(
        path,
        infer_schema=False,
        # a user-defined layout narrower than the summary lines must not fail on them
        truncate_ragged_lines=len(fields) < 6,
    )
    names = frame_names(frame, path)
    lookup = column_lookup(names)
    found = {target: pick(lookup, *candidates) for target, candidates in _COLUMNS.items()}
    columns = {target: column for target, column in found.items() if column is not None}
    for target in _REQUIRED:
        if target not in columns:
            expected = _COLUMNS[target]
            raise SchemaError(
                f"not an nfdump CSV export: column is missing (also looked for {expected[1]!r})",
                path=path,
                column=expected[0],
            )

    # the row index keeps error reports at the file's row once summary and blank lines are gone
    in_summary = (pl.col(names[0]).str.strip_chars() == SUMMARY_MARKER).fill_null(False)
    blank = pl.all_horizontal([pl.col(name).is_null() for name in names])
    frame = frame.with_row_index(SOURCE_ROW).filter((in_summary.cast(pl.UInt32).cum_sum() == 0) & ~blank)

    canonical = _canonical(columns, timezone)
    # the other columns: numbers are kept (as integers where the sample has no fractions), text such
    # as MAC addresses, MPLS labels and router addresses is dropped
    kinds = column_kinds(_flow_lines(head.lines))
    mapped = set(columns.values())
    dropped = {lookup[name] for name in _DROPPED if name in lookup}
    for name in names:
        kind = kinds.get(name, "text")
        if name in mapped or name in dropped or kind == "text":
            continue
        target = snake_case(name)
        dtype = pl.Float64() if kind == "float" else pl.Int64()
        canonical[target] = named_after(numeric(name, dtype, target), name)
    log.debug(
        "%s: nfdump CSV, %s layout, %d columns",
        path,
        "classic" if _is_classic({f.lower() for f in fields}) else "named",
        len(names),
    )
    return build(frame, canonical, consumed=names)


def _flow_lines(lines: list[str]) -> list[str]:
    """The header and flow lines of the head (the summary block cut off)."""
    for index, line in enumerate(lines):
        if line.strip() == SUMMARY_MARKER:
            return lines[:index]
    return lines


def _canonical(columns: dict[str, str], timezone: str | None) -> dict[str, pl.Expr | list[pl.Expr]]:
    """Expressions for the canonical columns from the source columns found (target -> source name)."""
    time_column = columns["time"]
    canonical: dict[str, pl.Expr | list[pl.Expr]] = {
        "time": named_after(_time(time_column, "time", timezone), time_column),
        "src": text(columns["src"], "src"),
        "dst": text(columns["dst"], "dst"),
    }
    if "spt" in columns:
        canonical["spt"] = named_after(numeric(columns["spt"], pl.Int64(), "spt"), columns["spt"])
    if "dpt" in columns:
        canonical["dpt"] = named_after(_destination_port(columns["dpt"]), columns["dpt"])
    canonical["proto"] = proto_name_expr(text(columns["proto"], "proto")).alias("proto")
    duration = columns.get("duration")
    if duration is not None:
        seconds, invalid = named_after(numeric(duration, pl.Float64(), "duration"), duration)
        wrapped = seconds > _WRAPPED_DURATION_S
        canonical["duration"] = [pl.when(wrapped).then(None).otherwise(seconds).alias("duration"), invalid]
    elif "end" in columns:
        start, _ = _time(time_column, "start", timezone)
        end, end_invalid = named_after(_time(columns["end"], "duration", timezone), columns["end"])
        seconds = (end - start).dt.total_microseconds() / 1e6
        canonical["duration"] = [seconds.alias("duration"), end_invalid]
    for target in ("out_bytes", "in_bytes", "out_pkts", "in_pkts"):
        if target in columns:
            source = columns[target]
            canonical[target] = named_after(numeric(source, pl.Int64(), target), source)
    if "tcp_flags" in columns:
        canonical["tcp_flags"] = text(columns["tcp_flags"], "tcp_flags")
    return canonical


def _time(column: str, name: str, timezone: str | None) -> list[pl.Expr]:
    """Local text time (nfdump's zero time ``0000-00-00 ...`` as unset) or epoch numbers, as UTC."""
    value = pl.col(column).str.strip_chars()
    unset = value.str.starts_with(_ZERO_TIME)
    cleaned = pl.when(unset).then(None).otherwise(value)
    return flexible_time(cleaned, TIME_FORMATS, timezone=timezone, name=name)


def _destination_port(column: str) -> list[pl.Expr]:
    """``dp``/``dstPort``: a port number, or ICMP ``type.code`` turned into ``type * 256 + code``."""
    value = pl.col(column).str.strip_chars()
    parts = value.str.split_exact(".", 1)
    icmp_type = parts.struct[0].cast(pl.Int64, strict=False)
    icmp_code = parts.struct[1].cast(pl.Int64, strict=False)
    port, _ = numeric(value, pl.Int64(), "dpt")
    dotted = value.str.contains(".", literal=True)
    result = pl.when(dotted).then(icmp_type * 256 + icmp_code).otherwise(port)
    invalid = value.is_not_null() & (value != "") & result.is_null()
    return [result.alias("dpt"), invalid.alias(INVALID_PREFIX + "dpt")]
