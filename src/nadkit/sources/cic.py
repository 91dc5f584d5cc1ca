"""CICFlowMeter CSV, as published in CIC-IDS2017 and CSE-CIC-IDS2018 (and written by CICFlowMeter).

One row per bidirectional flow, about 80 statistics columns and a ``Label``. The two public releases
name the same fields differently, and the 2017 day files prefix most headers with a space:

canonical      CIC-IDS2017 name                   CSE-CIC-IDS2018 / CICFlowMeter 4 name
-------------  ---------------------------------  --------------------------------------
time           Timestamp                          Timestamp
src, dst       Source IP, Destination IP          Src IP, Dst IP
spt, dpt       Source Port, Destination Port      Src Port, Dst Port
proto          Protocol (IANA number)             Protocol
duration       Flow Duration (microseconds)       Flow Duration
out_pkts       Total Fwd Packets                  Tot Fwd Pkts
in_pkts        Total Backward Packets             Tot Bwd Pkts
out_bytes      Total Length of Fwd Packets        TotLen Fwd Pkts
in_bytes       Total Length of Bwd Packets        TotLen Bwd Pkts
label          Label (BENIGN -> normal)           Label (Benign -> normal)

Timestamps are day-first (``3/7/2017 8:55``, ``03/07/2017 08:55:58``, ``14/02/2018 08:31:01``) local
wall-clock times, read as UTC (some 2017 day files write afternoon times on a 12-hour clock
without AM/PM; they are read as written). Every other statistic is kept as a float column under its
``snake_case`` name (``flow_bytes_s``, ``fwd_iat_mean``, ...); rates such as ``Flow Bytes/s`` may be
``Infinity`` (kept as inf) or ``NaN`` (null); the second ``Fwd Header Length`` of the 2017 files is
``fwd_header_length_1``. ``Flow ID`` is dropped (it repeats the 5-tuple).

Quirks of the public files handled here: header rows repeated inside the 2018 day files and rows
with every field empty (2017 Thursday file) are skipped; labels with an undecodable dash byte
(``Web Attack \\x96 Brute Force``) read as ``Web Attack - Brute Force``; a negative
``Flow Duration`` (a CICFlowMeter clock artefact) becomes a null duration; ``NeedManualLabel`` and
``No Label`` (unlabelled CICFlowMeter output) become a null label. The columns are read as text and
parsed by nadkit, so a bad value is reported with its column and file row.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import polars as pl

from nadkit.errors import SchemaError
from nadkit.schema import CAPTURE_TIME, label_expr, proto_name_expr
from nadkit.sources.base import (
    SOURCE_ROW,
    Head,
    build,
    column_lookup,
    frame_names,
    numeric,
    pick,
    scan_csv,
    text,
    text_to_time,
)

log = logging.getLogger(__name__)

NAME = "cic"
DESCRIPTION = "CICFlowMeter CSV (CIC-IDS2017/2018: Flow Duration, Total Fwd Packets, ..., Label)"
SUFFIXES = (".csv",)
#: delimited text: `load_flows` checks that the last row is complete
LAST_ROW_SEPARATOR = ","

#: canonical column -> the source names it is read from (``snake_case``), 2017 first
COLUMNS: dict[str, tuple[str, ...]] = {
    "time": ("timestamp",),
    "src": ("source_ip", "src_ip"),
    "dst": ("destination_ip", "dst_ip"),
    "spt": ("source_port", "src_port"),
    "dpt": ("destination_port", "dst_port"),
    "proto": ("protocol",),
    "duration": ("flow_duration",),
    "out_pkts": ("total_fwd_packets", "tot_fwd_pkts", "total_fwd_packet"),
    "in_pkts": ("total_backward_packets", "tot_bwd_pkts", "total_bwd_packets"),
    "out_bytes": ("total_length_of_fwd_packets", "tot_len_fwd_pkts", "total_length_of_fwd_packet"),
    "in_bytes": ("total_length_of_bwd_packets", "tot_len_bwd_pkts", "total_length_of_bwd_packet"),
    "label": ("label",),
    "app": ("app",),
}
#: source text columns that are not statistics and are not kept
DROPPED = ("flow_id",)
#: text columns kept as text: those nadkit writes beside CICFlowMeter's own
#: (:mod:`nadkit.sources.cicflowmeter`), so that it reads its CICFlowMeter-named tables back
KEPT_TEXT = ("app_category", "capture", "application_name", "requested_server_name", "client_fingerprint")
TIME_FORMATS = (
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%d/%m/%Y %I:%M:%S %p",
    "%d/%m/%Y %I:%M %p",
    "%Y-%m-%d %H:%M:%S%.f",
)
_FWD_PACKETS = {"total fwd packets", "tot fwd pkts", "total fwd packet"}
_UNLABELLED = ["needmanuallabel", "no label"]
_DUPLICATED = re.compile(r"(.*)_duplicated_(\d+)")


def detect(head: Head) -> bool:
    """CICFlowMeter headers: ``Flow Duration`` and a forward packet count, in either naming."""
    fields = head.header_set()
    return "flow duration" in fields and bool(fields & _FWD_PACKETS)


def read(path: str | Path, **_: object) -> pl.LazyFrame:
    """Scan a CICFlowMeter CSV lazily into the canonical table (statistics kept as float columns)."""
    frame = scan_csv(
        path,
        infer_schema=False,
        encoding="utf8-lossy",
        null_values=["", "NaN", "nan", "-"],
        row_index_name=SOURCE_ROW,
    )
    names = [n for n in frame_names(frame, path) if n != SOURCE_ROW]
    renamed = _duplicates_renamed(names)
    if renamed:
        frame = frame.rename(renamed)
        names = [renamed.get(n, n) for n in names]
    lookup = column_lookup(names)
    source = {name: pick(lookup, *candidates) for name, candidates in COLUMNS.items()}
    if source["duration"] is None or source["out_pkts"] is None:
        missing = "Flow Duration" if source["duration"] is None else "Total Fwd Packets"
        raise SchemaError("not a valid CICFlowMeter file: column is missing", path=path, column=missing)
    log.debug("%s: CICFlowMeter columns %s", path, {k: v for k, v in source.items() if v})

    duration_column = source["duration"]
    label_column = source["label"]
    # repeated header rows (2018 day files) and all-empty rows (2017 Thursday) carry no flow
    is_header = pl.col(duration_column).str.strip_chars() == duration_column.strip()
    is_empty = pl.col(duration_column).is_null()
    if label_column is not None:
        is_empty = is_empty & pl.col(label_column).is_null()
    frame = frame.filter(~(is_header.fill_null(False) | is_empty))

    canonical: dict[str, pl.Expr | list[pl.Expr]] = {}
    if source["time"] is not None:
        canonical["time"] = text_to_time(source["time"], TIME_FORMATS)
    if CAPTURE_TIME in lookup:  # a mix of captures written with these names (nadkit mix-captures)
        canonical[CAPTURE_TIME] = text_to_time(lookup[CAPTURE_TIME], TIME_FORMATS, name=CAPTURE_TIME)
    for name in ("src", "dst", "app"):
        if source[name] is not None:
            canonical[name] = text(source[name], name)
    for name in ("spt", "dpt"):
        if source[name] is not None:
            canonical[name] = numeric(source[name], pl.Int64(), name)
    if source["proto"] is not None:
        canonical["proto"] = text(proto_name_expr(source["proto"]), "proto")
    micros, invalid = numeric(duration_column, pl.Float64(), "duration")
    seconds = micros / 1e6
    canonical["duration"] = [pl.when(seconds >= 0).then(seconds).alias("duration"), invalid]
    for name in ("out_bytes", "in_bytes", "out_pkts", "in_pkts"):
        if source[name] is not None:
            canonical[name] = numeric(source[name], pl.Int64(), name)
    if label_column is not None:
        raw = pl.col(label_column).str.replace_all("\ufffd", "-").str.replace_all(r"\s+", " ")
        raw = text(raw, "label_original")
        unlabelled = raw.str.to_lowercase().is_in(_UNLABELLED)
        canonical["label"] = pl.when(unlabelled).then(None).otherwise(label_expr(raw)).alias("label")
        canonical["label_original"] = raw
    consumed = {column for column in source.values() if column is not None}
    consumed |= {lookup[CAPTURE_TIME]} if CAPTURE_TIME in lookup else set()
    consumed |= {lookup[name] for name in DROPPED if name in lookup}
    kept = [lookup[name] for name in KEPT_TEXT if name in lookup]
    return build(frame, canonical, consumed=consumed, keep_text=kept)


def _duplicates_renamed(names: list[str]) -> dict[str, str]:
    """Second copies of a header name (``Fwd Header Length``) as ``Fwd Header Length.1``.

    Polars suffixes repeated names with ``_duplicated_0``; the copies of these files that circulate
    (saved by pandas) use ``.1``. One name for both keeps their columns interchangeable.
    """
    renamed: dict[str, str] = {}
    for name in names:
        match = _DUPLICATED.fullmatch(name)
        if match:
            target = f"{match[1]}.{int(match[2]) + 1}"
            if target not in names:
                renamed[name] = target
    return renamed
