"""UNSW-NB15 (Moustafa & Slay 2015): Argus and Bro flow features with attack categories.

Two layouts are read:

* the training/testing partitions (``UNSW_NB15_training-set.csv``, ``UNSW_NB15_testing-set.csv``):
  a header ``id,dur,proto,service,state,spkts,dpkts,sbytes,dbytes,rate,...,attack_cat,label``,
  usually behind a UTF-8 byte-order mark, with no addresses, ports or times;
* the full records ``UNSW-NB15_1.csv`` .. ``UNSW-NB15_4.csv``: 49 columns without a header,
  ``srcip, sport, dstip, dsport, proto, state, dur, sbytes, dbytes, ..., Stime, Ltime, ...,
  attack_cat, Label`` (:data:`RAW_COLUMNS`); ``Stime`` is epoch seconds, ports may be hexadecimal
  (``0x000b``) or ``-``.

Mapping: ``srcip``/``dstip`` -> ``src``/``dst``, ``sport``/``dsport`` -> ``spt``/``dpt``, ``Stime`` ->
``time``, ``dur`` -> ``duration`` (s), ``sbytes``/``dbytes`` -> ``out_bytes``/``in_bytes``,
``spkts``/``dpkts`` -> ``out_pkts``/``in_pkts``, ``proto`` -> ``proto`` (already names: ``tcp``, ``udp``,
``unas``, ``arp``, ...), ``service`` -> ``app`` (``-`` = none). ``label`` is ``normal`` where the
binary ``label`` is 0, else the stripped ``attack_cat`` (``label_original`` keeps ``attack_cat``).
``state`` is kept as text; every other feature is kept as a number under the names of the
partition files, so both layouts give the same columns (``smeansz`` -> ``smean``, ``Sintpkt`` ->
``sinpkt``, ``res_bdy_len`` -> ``response_body_len``, ...; see :data:`RENAMED`). Dropped: ``id``
(a row number that follows the class order of the file: a feature made of it would leak the
label) and ``Ltime`` (the end time, redundant with ``time`` and ``duration``). Ports outside
0-65535 in the full records (Argus writes non-port values there for some protocols) become nulls.
The full records spell one class ``Backdoors`` and pad several with spaces; both are normalised to
the partition files' names.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import polars as pl

from nadkit.errors import SchemaError
from nadkit.schema import NORMAL, label_expr
from nadkit.sources.base import (
    Head,
    build,
    epoch_to_time,
    frame_names,
    numeric,
    require_columns,
    scan_csv,
    text,
)

log = logging.getLogger(__name__)

NAME = "unsw"
DESCRIPTION = "UNSW-NB15 CSV (partition files with attack_cat, or the 49-column UNSW-NB15_1..4 records)"
SUFFIXES = (".csv",)
#: delimited text: `load_flows` checks that the last row is complete
LAST_ROW_SEPARATOR = ","

#: the 49 columns of the full records, in file order (names as in ``NUSW-NB15_features.csv``)
RAW_COLUMNS = (
    "srcip",
    "sport",
    "dstip",
    "dsport",
    "proto",
    "state",
    "dur",
    "sbytes",
    "dbytes",
    "sttl",
    "dttl",
    "sloss",
    "dloss",
    "service",
    "Sload",
    "Dload",
    "Spkts",
    "Dpkts",
    "swin",
    "dwin",
    "stcpb",
    "dtcpb",
    "smeansz",
    "dmeansz",
    "trans_depth",
    "res_bdy_len",
    "Sjit",
    "Djit",
    "Stime",
    "Ltime",
    "Sintpkt",
    "Dintpkt",
    "tcprtt",
    "synack",
    "ackdat",
    "is_sm_ips_ports",
    "ct_state_ttl",
    "ct_flw_http_mthd",
    "is_ftp_login",
    "ct_ftp_cmd",
    "ct_srv_src",
    "ct_srv_dst",
    "ct_dst_ltm",
    "ct_src_ltm",
    "ct_src_dport_ltm",
    "ct_dst_sport_ltm",
    "ct_dst_src_ltm",
    "attack_cat",
    "Label",
)
#: full-record names -> partition-file names, for the columns the two layouts name differently
RENAMED = {
    "smeansz": "smean",
    "dmeansz": "dmean",
    "sintpkt": "sinpkt",
    "dintpkt": "dinpkt",
    "res_bdy_len": "response_body_len",
}
#: source columns (lower case) read into canonical columns
CANONICAL_SOURCES = {
    "srcip": "src",
    "dstip": "dst",
    "sport": "spt",
    "dsport": "dpt",
    "stime": "time",
    "proto": "proto",
    "service": "app",
    "dur": "duration",
    "sbytes": "out_bytes",
    "dbytes": "in_bytes",
    "spkts": "out_pkts",
    "dpkts": "in_pkts",
}
#: the features that are integers (counts, TTLs, window sizes, flags); the others are floats
INTEGER_FEATURES = frozenset(
    {
        "sttl",
        "dttl",
        "sloss",
        "dloss",
        "swin",
        "dwin",
        "stcpb",
        "dtcpb",
        "smean",
        "dmean",
        "trans_depth",
        "response_body_len",
        "is_sm_ips_ports",
        "ct_state_ttl",
        "ct_flw_http_mthd",
        "is_ftp_login",
        "ct_ftp_cmd",
        "ct_srv_src",
        "ct_srv_dst",
        "ct_dst_ltm",
        "ct_src_ltm",
        "ct_src_dport_ltm",
        "ct_dst_sport_ltm",
        "ct_dst_src_ltm",
    }
)
DROPPED = ("id", "ltime")
#: columns every partition file has (lower case)
PARTITION_REQUIRED = ("dur", "proto", "service", "state", "spkts", "dpkts", "sbytes", "dbytes")
_CLASS_NAMES = {"backdoors": "Backdoor"}
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_EPOCH = re.compile(r"^\d{9,10}$")


def _is_address(value: str) -> bool:
    """True for dotted IPv4 or colon-separated IPv6 text."""
    return bool(_IPV4.match(value)) or (
        value.count(":") >= 2 and all(c in "0123456789abcdefABCDEF:." for c in value)
    )


def _raw_record(fields: list[str]) -> bool:
    """True for a data line of the 49-column full records."""
    if len(fields) != len(RAW_COLUMNS):
        return False
    srcip, dstip, proto = fields[0], fields[2], fields[4]
    stime, ltime, label = fields[28], fields[29], fields[48]
    return (
        _is_address(srcip)
        and _is_address(dstip)
        and proto.isascii()
        and not proto.isdigit()
        and bool(_EPOCH.match(stime))
        and bool(_EPOCH.match(ltime))
        and label in {"0", "1"}
    )


def _raw_header(fields: list[str]) -> bool:
    """True for a header line naming the full-record columns (some copies have one added)."""
    return {"srcip", "sport", "dstip", "dsport", "sbytes", "dbytes", "stime"} <= {f.lower() for f in fields}


def detect(head: Head) -> bool:
    """A partition-file header (``dur``, ``sbytes``, ``sttl``, ...) or a full-record line of 49 fields."""
    fields = head.header_fields()
    names = {f.lower() for f in fields}
    if {*PARTITION_REQUIRED, "sttl", "dttl"} <= names:
        return True
    return _raw_header(fields) or _raw_record(fields)


def read(path: str | Path, **_: object) -> pl.LazyFrame:
    """Scan a UNSW-NB15 CSV (either layout) lazily into the canonical table."""
    head = Head.of(path)
    fields = head.header_fields()
    settings: dict[str, object] = {"infer_schema": False, "null_values": ["", "-", " "]}
    if _raw_record(fields):
        settings.update(has_header=False, new_columns=list(RAW_COLUMNS))
        layout = "full records"
    else:
        layout = "full records with header" if _raw_header(fields) else "partition"
    frame = scan_csv(path, **settings)
    names = frame_names(frame, path)
    lower = {name.lower().lstrip("\ufeff"): name for name in names}
    log.debug("%s: UNSW-NB15 %s layout", path, layout)
    if "srcip" not in lower:
        require_columns(lower, PARTITION_REQUIRED, path, "UNSW-NB15")
    elif len(names) != len(RAW_COLUMNS):
        raise SchemaError(
            f"expected {len(RAW_COLUMNS)} columns of UNSW-NB15 records, found {len(names)}", path=path
        )

    canonical: dict[str, pl.Expr | list[pl.Expr]] = {}
    for source, target in CANONICAL_SOURCES.items():
        if source not in lower:
            continue
        column = lower[source]
        if target in ("src", "dst"):
            canonical[target] = text(column, target)
        elif target in ("spt", "dpt"):
            port, invalid = numeric(column, pl.Int64(), target)
            canonical[target] = [pl.when(port.is_between(0, 65535)).then(port).alias(target), invalid]
        elif target == "time":
            canonical[target] = epoch_to_time(column, unit="s")
        elif target in ("proto", "app"):
            canonical[target] = text(pl.col(column).str.to_lowercase(), target)
        elif target == "duration":
            canonical[target] = numeric(column, pl.Float64(), target)
        else:
            canonical[target] = numeric(column, pl.Int64(), target)
    if "state" in lower:
        canonical["state"] = text(lower["state"], "state")
    canonical.update(_label(lower))
    consumed = {lower[source] for source in (*CANONICAL_SOURCES, *DROPPED, "state") if source in lower}
    consumed |= {lower[name] for name in ("attack_cat", "label") if name in lower}
    for lowered, column in lower.items():
        if column in consumed:
            continue
        name = RENAMED.get(lowered, lowered)
        dtype = pl.Int64() if name in INTEGER_FEATURES else pl.Float64()
        canonical[name] = numeric(column, dtype, name)
        consumed.add(column)
    return build(frame, canonical, consumed=consumed)


def _label(lower: dict[str, str]) -> dict[str, pl.Expr | list[pl.Expr]]:
    """``label`` from the binary flag and the attack category; ``label_original`` from the category."""
    out: dict[str, pl.Expr | list[pl.Expr]] = {}
    category = None
    if "attack_cat" in lower:
        stripped = text(lower["attack_cat"], "label_original")
        category = _normalise_class(stripped)
        out["label_original"] = stripped
    if "label" in lower:
        flag, invalid = numeric(lower["label"], pl.Int64(), "label")
        attack = pl.lit("attack") if category is None else pl.coalesce(category, pl.lit("attack"))
        value = pl.when(flag == 0).then(pl.lit(NORMAL)).when(flag.is_not_null()).then(attack)
        out["label"] = [value.alias("label"), invalid]
    elif category is not None:
        out["label"] = label_expr(category).alias("label")
    return out


def _normalise_class(category: pl.Expr) -> pl.Expr:
    """Category names as in the partition files (``Backdoors`` -> ``Backdoor``)."""
    lowered = category.str.to_lowercase()
    expr = category
    for variant, name in _CLASS_NAMES.items():
        expr = pl.when(lowered == variant).then(pl.lit(name)).otherwise(expr)
    return expr
