"""KDD Cup 1999 and NSL-KDD (Tavallaee et al. 2009) connection records: comma-separated, no header.

Each line holds the 41 KDD features (:data:`FEATURES`), the attack name and, in NSL-KDD only, a
difficulty level (43 fields; KDD'99 has 42 and ends its labels with a dot: ``normal.``,
``smurf.``). There are no addresses, ports or times.

Mapping: ``protocol_type`` -> ``proto``, ``service`` -> ``app`` (lower case), ``duration`` ->
``duration`` (s), ``src_bytes`` -> ``out_bytes``, ``dst_bytes`` -> ``in_bytes``; ``flag`` is kept as
text, the other 36 features as numbers (counts as integers, rates as floats). ``label`` is
``normal`` or the attack name (trailing dot removed); ``label_original`` keeps the name as written;
``attack_family`` groups attack names into the four classes of the KDD task (DoS, Probe, R2L, U2R;
``normal`` for normal rows, ``unknown`` for a name outside :data:`ATTACK_FAMILIES`). The NSL-KDD
difficulty (how many of 21 reference classifiers got the row right) is metadata about the dataset,
not about the traffic; it is dropped unless ``read(..., difficulty=True)`` asks for it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import polars as pl

from nadkit.errors import SchemaError
from nadkit.schema import NORMAL, label_expr, text_lookup
from nadkit.sources.base import Head, build, numeric, scan_csv, text

log = logging.getLogger(__name__)

NAME = "kdd"
DESCRIPTION = "NSL-KDD / KDD Cup 1999 records (41 features, attack name[, difficulty]; no header)"
SUFFIXES = (".txt", ".csv", ".data", ".corrected")
#: delimited text: `load_flows` checks that the last row is complete
LAST_ROW_SEPARATOR = ","

#: the 41 features, in file order
FEATURES = (
    "duration",
    "protocol_type",
    "service",
    "flag",
    "src_bytes",
    "dst_bytes",
    "land",
    "wrong_fragment",
    "urgent",
    "hot",
    "num_failed_logins",
    "logged_in",
    "num_compromised",
    "root_shell",
    "su_attempted",
    "num_root",
    "num_file_creations",
    "num_shells",
    "num_access_files",
    "num_outbound_cmds",
    "is_host_login",
    "is_guest_login",
    "count",
    "srv_count",
    "serror_rate",
    "srv_serror_rate",
    "rerror_rate",
    "srv_rerror_rate",
    "same_srv_rate",
    "diff_srv_rate",
    "srv_diff_host_rate",
    "dst_host_count",
    "dst_host_srv_count",
    "dst_host_same_srv_rate",
    "dst_host_diff_srv_rate",
    "dst_host_same_src_port_rate",
    "dst_host_srv_diff_host_rate",
    "dst_host_serror_rate",
    "dst_host_srv_serror_rate",
    "dst_host_rerror_rate",
    "dst_host_srv_rerror_rate",
)
ATTACK = "attack"
DIFFICULTY = "difficulty"

_DOS = (
    "back",
    "land",
    "neptune",
    "pod",
    "smurf",
    "teardrop",
    "apache2",
    "mailbomb",
    "processtable",
    "udpstorm",
)
_PROBE = ("ipsweep", "nmap", "portsweep", "satan", "mscan", "saint")
_R2L = (
    "ftp_write",
    "guess_passwd",
    "imap",
    "multihop",
    "phf",
    "spy",
    "warezclient",
    "warezmaster",
    "sendmail",
    "named",
    "snmpgetattack",
    "snmpguess",
    "xlock",
    "xsnoop",
    "worm",
)
_U2R = ("buffer_overflow", "loadmodule", "perl", "rootkit", "httptunnel", "ps", "sqlattack", "xterm")
#: attack name -> family, for every attack of the KDD'99 and NSL-KDD training and test sets
#: (``httptunnel`` as U2R, as most NSL-KDD work groups it)
ATTACK_FAMILIES: dict[str, str] = (
    {name: "DoS" for name in _DOS}
    | {name: "Probe" for name in _PROBE}
    | {name: "R2L" for name in _R2L}
    | {name: "U2R" for name in _U2R}
)
UNKNOWN_FAMILY = "unknown"

_TEXT = ("protocol_type", "service", "flag")
_FLOAT = frozenset(name for name in FEATURES if name.endswith("_rate"))
_FLAGS = frozenset(
    {"SF", "S0", "S1", "S2", "S3", "REJ", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR", "OTH"}
)
_SERVICE = re.compile(r"^[A-Za-z0-9_]+$")
_NUMBER = re.compile(r"^\d+(\.\d+)?$")


def _columns(count: int) -> list[str]:
    """Column names for a file of ``count`` fields (42: KDD'99, 43: NSL-KDD)."""
    if count == len(FEATURES) + 1:
        return [*FEATURES, ATTACK]
    if count == len(FEATURES) + 2:
        return [*FEATURES, ATTACK, DIFFICULTY]
    raise ValueError(count)


def detect(head: Head) -> bool:
    """A first line of 42/43 fields: a number, ``tcp``/``udp``/``icmp``, a service name, a TCP flag."""
    fields = head.header_fields()
    if len(fields) not in (len(FEATURES) + 1, len(FEATURES) + 2):
        return False
    duration, proto, service, flag, out_bytes, in_bytes = fields[:6]
    return (
        duration.isdigit()
        and proto.lower() in {"tcp", "udp", "icmp"}
        and bool(_SERVICE.match(service))
        and flag in _FLAGS
        and bool(_NUMBER.match(out_bytes))
        and bool(_NUMBER.match(in_bytes))
    )


def read(path: str | Path, *, difficulty: bool = False, **_: object) -> pl.LazyFrame:
    """Scan a KDD'99 or NSL-KDD file lazily into the canonical table, with ``attack_family``.

    ``difficulty=True`` keeps the NSL-KDD difficulty level as an integer column.
    """
    count = len(Head.of(path).header_fields())
    try:
        names = _columns(count)
    except ValueError:
        raise SchemaError(
            f"not a KDD'99/NSL-KDD file: the first line has {count} fields, expected 42 or 43", path=path
        ) from None
    log.debug("%s: %s layout", path, "NSL-KDD" if DIFFICULTY in names else "KDD'99")
    frame = scan_csv(path, has_header=False, new_columns=names, infer_schema=False)

    canonical: dict[str, pl.Expr | list[pl.Expr]] = {
        "proto": text(pl.col("protocol_type").str.to_lowercase(), "proto"),
        "app": text(pl.col("service").str.to_lowercase(), "app"),
        "duration": numeric("duration", pl.Float64(), "duration"),
        "out_bytes": numeric("src_bytes", pl.Int64(), "out_bytes"),
        "in_bytes": numeric("dst_bytes", pl.Int64(), "in_bytes"),
        "flag": text("flag", "flag"),
    }
    name = text(pl.col(ATTACK).str.strip_chars().str.strip_suffix("."), "label")
    label = label_expr(name).alias("label")
    canonical["label"] = label
    canonical["label_original"] = text(ATTACK, "label_original")
    family = text_lookup(name.str.to_lowercase(), ATTACK_FAMILIES, default=UNKNOWN_FAMILY)
    canonical["attack_family"] = (
        pl.when(label.is_null()).then(None).when(label == NORMAL).then(pl.lit(NORMAL)).otherwise(family)
    ).alias("attack_family")
    consumed = {"duration", "src_bytes", "dst_bytes", *_TEXT, ATTACK, DIFFICULTY}
    for feature in FEATURES:
        if feature not in consumed:
            canonical[feature] = numeric(feature, pl.Float64() if feature in _FLOAT else pl.Int64(), feature)
    if difficulty and DIFFICULTY in names:
        canonical[DIFFICULTY] = numeric(DIFFICULTY, pl.Int64(), DIFFICULTY)
    return build(frame, canonical, consumed=consumed)
