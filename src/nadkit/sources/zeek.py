"""Zeek (formerly Bro) ``conn.log``: one line per connection, as tab-separated text or JSON lines.

The TSV form starts with ``#`` directives: ``#separator \\x09`` (escaped), ``#set_separator``,
``#empty_field (empty)``, ``#unset_field -``, ``#path conn``, ``#open``, ``#fields ts uid id.orig_h
id.orig_p id.resp_h id.resp_p proto service duration orig_bytes resp_bytes conn_state local_orig
local_resp missed_bytes history orig_pkts orig_ip_bytes resp_pkts resp_ip_bytes tunnel_parents`` and
``#types``, and ends with a ``#close`` line. ``-`` marks an unset value and ``(empty)`` an empty set.
The IoT-23 ``conn.log.labeled`` files append ``label`` and ``detailed-label``, separated from
``tunnel_parents`` (in the header and in every row) by runs of spaces rather than tabs; both are read.
The JSON form has the same keys on every line (unset fields left out) and writes ``ts`` as an epoch
float or as ISO-8601 text.

Mapping: ``ts`` -> ``time``; ``id.orig_h``/``id.orig_p`` -> ``src``/``spt`` (the originator opened the
connection); ``id.resp_h``/``id.resp_p`` -> ``dst``/``dpt`` (for ICMP Zeek writes the type and the code
there; they become ``spt`` 0 and ``dpt`` ``type * 256 + code``, as nfdump writes ICMP flows); ``proto``;
``service`` -> ``app`` (lower-case; ``ssl,http`` when several analysers matched); ``duration``;
``orig_bytes``/``orig_pkts`` -> ``out_bytes``/``out_pkts``; ``resp_bytes``/``resp_pkts`` ->
``in_bytes``/``in_pkts``. ``conn_state`` and ``history`` are kept as text, ``local_orig``/
``local_resp`` as booleans, the other counters (``missed_bytes``, ``orig_ip_bytes``, ...) as numbers;
``uid``, ``tunnel_parents`` and other text fields are dropped. Labels: ``Benign`` -> ``normal``,
``Malicious`` -> the ``detailed-label`` (``malicious`` where it is unset); the original text (label and
detailed label) is kept in ``label_original``."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from nadkit.errors import FormatError, SchemaError
from nadkit.schema import NORMAL, NORMAL_LABELS, proto_name_expr
from nadkit.sources.base import (
    INVALID_PREFIX,
    Head,
    build,
    flexible_time,
    frame_names,
    icmp_ports,
    named_after,
    numeric,
    require_columns,
    scan_csv,
    text,
)

log = logging.getLogger(__name__)

NAME = "zeek"
DESCRIPTION = "Zeek conn.log, tab-separated with #fields header or JSON lines (IoT-23 labels read)"
SUFFIXES = (".log", ".labeled", ".json", ".ndjson")

REQUIRED = ("ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto")
#: Fields only conn.log has (other Zeek logs also carry the ``id.*`` connection tuple).
_CONN_ONLY = ("conn_state", "orig_bytes", "orig_pkts", "resp_pkts")
_ISO_FORMATS = ("%Y-%m-%dT%H:%M:%S%.fZ", "%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%.f")
_COUNTS = {"count", "int", "port"}
_FLOATS = {"double", "interval"}
_NULLS = ["", "-", "(empty)"]
_UNLABELLED_MALICIOUS = "malicious"

#: conn.log fields and their Zeek types (used for JSON, where the file carries no #types line).
CONN_TYPES: dict[str, str] = {
    "ts": "time",
    "uid": "string",
    "id.orig_h": "addr",
    "id.orig_p": "port",
    "id.resp_h": "addr",
    "id.resp_p": "port",
    "proto": "enum",
    "service": "string",
    "duration": "interval",
    "orig_bytes": "count",
    "resp_bytes": "count",
    "conn_state": "string",
    "local_orig": "bool",
    "local_resp": "bool",
    "missed_bytes": "count",
    "history": "string",
    "orig_pkts": "count",
    "orig_ip_bytes": "count",
    "resp_pkts": "count",
    "resp_ip_bytes": "count",
    "tunnel_parents": "set[string]",
    "label": "string",
    "detailed-label": "string",
}
_CANONICAL_FIELDS = {
    "ts": "time",
    "id.orig_h": "src",
    "id.orig_p": "spt",
    "id.resp_h": "dst",
    "id.resp_p": "dpt",
    "proto": "proto",
    "service": "app",
    "duration": "duration",
    "orig_bytes": "out_bytes",
    "resp_bytes": "in_bytes",
    "orig_pkts": "out_pkts",
    "resp_pkts": "in_pkts",
}
_KEPT_TEXT = ("conn_state", "history")


@dataclass(frozen=True)
class TsvHeader:
    """What the ``#`` directives of a Zeek TSV log say about its layout."""

    separator: str
    columns: tuple[str, ...]
    """The columns as the separator splits them (a space-joined IoT-23 group counts as one)."""
    fields: tuple[str, ...]
    """Every field name, the space-joined group split into its names."""
    types: dict[str, str]
    split_column: str | None
    """The column holding several space-separated fields, when the file has one (IoT-23)."""


def parse_tsv_header(lines: list[str]) -> TsvHeader | None:
    """Read the ``#`` directives at the top of a Zeek TSV log; ``None`` when there is no ``#fields``."""
    separator = "\t"
    columns: list[str] = []
    types: list[str] = []
    for line in lines:
        if not line.startswith("#"):
            break
        if line.startswith("#separator"):
            value = line[len("#separator") :].strip()
            try:
                separator = value.encode("ascii", "backslashreplace").decode("unicode_escape") or "\t"
            except UnicodeDecodeError:
                raise FormatError(f"#separator {value[:20]!r} is not a valid separator") from None
        elif line.startswith("#fields"):
            columns = line.split(separator)[1:]
        elif line.startswith("#types"):
            types = line.split(separator)[1:]
    if not columns:
        return None
    fields: list[str] = []
    kinds: dict[str, str] = {}
    split_column = None
    for index, column in enumerate(columns):
        names = column.split()
        kind = types[index].split() if index < len(types) else []
        if len(names) > 1:
            split_column = column
        fields.extend(names)
        for position, name in enumerate(names):
            kinds[name] = kind[position] if position < len(kind) else CONN_TYPES.get(name, "string")
    return TsvHeader(separator, tuple(columns), tuple(fields), kinds, split_column)


def _json_keys(lines: list[str]) -> dict[str, object] | None:
    """Keys (with a sample value) of the first JSON-lines records, or ``None`` when it is not JSON.

    The first non-empty line must be a JSON object; a later line that does not parse is left for the
    reader to report (with the file's name) rather than making the file unrecognisable.
    """
    keys: dict[str, object] = {}
    seen = 0
    for line in lines[:200]:
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            if seen == 0:
                return None
            continue
        seen += 1
        for key, value in record.items():
            if keys.get(key) is None:
                keys[key] = value
    return keys or None


def _is_conn(fields: set[str] | dict[str, object]) -> bool:
    return {"id.orig_h", "id.resp_h", "proto"} <= set(fields) and any(f in fields for f in _CONN_ONLY)


def detect(head: Head) -> bool:
    """A Zeek TSV log whose ``#fields`` are those of conn.log, or JSON lines with conn.log keys."""
    if not head.is_text or not head.lines:
        return False
    first = head.first_line
    if first.startswith("#"):
        try:
            header = parse_tsv_header(head.lines)
        except FormatError:
            return False
        return header is not None and _is_conn(set(header.fields))
    if first.lstrip().startswith("{"):
        keys = _json_keys(head.lines[:50])
        return keys is not None and _is_conn(keys)
    return False


def read(path: str | Path, **_: object) -> pl.LazyFrame:
    """Scan a Zeek conn.log (TSV or JSON lines) lazily into the canonical table."""
    head = Head.of(path)
    if head.first_line.startswith("#"):
        frame, types = _scan_tsv(path, head)
    elif head.first_line.lstrip().startswith("{"):
        frame, types = _scan_json(path, head)
    else:
        raise FormatError(f"{path}: not a Zeek log (no #fields header and not JSON lines)")
    names = frame_names(frame, path)
    require_columns(names, REQUIRED, path, "Zeek conn.log")
    return build(frame, _canonical(names, types), consumed=names)


def _scan_tsv(path: str | Path, head: Head) -> tuple[pl.LazyFrame, dict[str, str]]:
    try:
        header = parse_tsv_header(head.lines)
    except FormatError as error:
        raise FormatError(f"{path}: {error}") from None
    if header is None:
        raise SchemaError("not a Zeek TSV log: no #fields line in the header", path=path)
    if len(set(header.columns)) != len(header.columns):
        raise SchemaError("the #fields line names a column twice", path=path)
    frame = scan_csv(
        path,
        separator=header.separator,
        has_header=False,
        schema=dict.fromkeys(header.columns, pl.String),
        comment_prefix="#",
        quote_char=None,
        null_values=_NULLS,
    )
    if header.split_column is not None:
        names = header.split_column.split()
        parts = (
            pl.col(header.split_column)
            .str.strip_chars()
            .str.replace_all(r"\s+", "\t")
            .str.split_exact("\t", len(names) - 1)
        )
        frame = frame.with_columns(
            [parts.struct[index].alias(name) for index, name in enumerate(names)]
        ).drop(header.split_column)
    log.debug("%s: Zeek TSV log with fields %s", path, ", ".join(header.fields))
    return frame, header.types


def _scan_json(path: str | Path, head: Head) -> tuple[pl.LazyFrame, dict[str, str]]:
    keys = _json_keys(head.lines)
    if keys is None:
        raise SchemaError("not Zeek JSON lines: the first lines are not JSON objects", path=path)
    # unset fields are left out of a JSON record, so a key may first appear after the sampled lines:
    # the canonical fields are always read (null where unset), the others when the sample has them
    always = (*REQUIRED, *(field for field in _CANONICAL_FIELDS if field not in REQUIRED))
    fields = [*always, *(key for key in keys if key not in always)]
    types = {key: CONN_TYPES.get(key) or _json_type(keys.get(key)) for key in fields}
    try:
        frame = pl.scan_ndjson(path, schema=dict.fromkeys(fields, pl.String))
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError) as error:
        raise SchemaError(f"could not be read as JSON lines ({error})", path=path) from error
    return frame, types


def _json_type(value: object) -> str:
    """The Zeek type name matching a JSON value (for fields outside conn.log's standard set)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "count"
    if isinstance(value, float):
        return "double"
    return "string"


def _canonical(names: list[str], types: dict[str, str]) -> dict[str, pl.Expr | list[pl.Expr]]:
    proto = proto_name_expr(text("proto", "proto"))
    orig_port = named_after(numeric("id.orig_p", pl.Int64(), "spt"), "id.orig_p")
    resp_port = named_after(numeric("id.resp_p", pl.Int64(), "dpt"), "id.resp_p")
    # ICMP: Zeek writes the type as the originator's port and the code as the responder's
    spt, dpt = icmp_ports(orig_port, resp_port, proto, orig_port[0] * 256 + resp_port[0])
    canonical: dict[str, pl.Expr | list[pl.Expr]] = {
        "time": named_after(flexible_time("ts", _ISO_FORMATS, unit="s"), "ts"),
        "src": text("id.orig_h", "src"),
        "spt": spt,
        "dst": text("id.resp_h", "dst"),
        "dpt": dpt,
        "proto": proto.alias("proto"),
    }
    if "service" in names:
        canonical["app"] = text(pl.col("service").str.to_lowercase(), "app")
    for field in ("duration", "orig_bytes", "resp_bytes", "orig_pkts", "resp_pkts"):
        if field in names:
            target = _CANONICAL_FIELDS[field]
            dtype = pl.Float64() if field == "duration" else pl.Int64()
            canonical[target] = named_after(numeric(field, dtype, target), field)
    if "label" in names:
        detailed = "detailed-label" if "detailed-label" in names else None
        canonical["label"] = _label("label", detailed)
        canonical["label_original"] = _label_original("label", detailed)
    for field in _KEPT_TEXT:
        if field in names:
            canonical[field] = text(field, field)
    for field in names:
        if field in _CANONICAL_FIELDS or field in _KEPT_TEXT or field in ("label", "detailed-label"):
            continue
        kind = types.get(field, "string")
        target = field.replace(".", "_").replace("-", "_")
        if kind in _COUNTS:
            canonical[target] = named_after(numeric(field, pl.Int64(), target), field)
        elif kind in _FLOATS:
            canonical[target] = named_after(numeric(field, pl.Float64(), target), field)
        elif kind == "bool":
            canonical[target] = named_after(_boolean(field, target), field)
    return canonical


def _boolean(field: str, name: str) -> list[pl.Expr]:
    """Zeek's ``T``/``F`` (TSV) or ``true``/``false`` (JSON) as a boolean column."""
    value = pl.col(field).cast(pl.String).str.strip_chars().str.to_lowercase()
    parsed = pl.when(value.is_in(["t", "true"])).then(True).when(value.is_in(["f", "false"])).then(False)
    invalid = value.is_not_null() & ~value.is_in(["t", "true", "f", "false", "", "-"])
    return [parsed.otherwise(None).alias(name), invalid.alias(INVALID_PREFIX + name)]


def _label(label: str, detailed: str | None) -> pl.Expr:
    """``normal`` for benign rows; the detailed label (or ``malicious``) for malicious ones."""
    value = text(label, "label")
    lowered = value.str.to_lowercase()
    malicious = pl.lit(_UNLABELLED_MALICIOUS)
    if detailed is not None:
        malicious = pl.coalesce(text(detailed, "detailed"), malicious)
    return (
        pl.when(value.is_null())
        .then(None)
        .when(lowered.is_in(list(NORMAL_LABELS)))
        .then(pl.lit(NORMAL))
        .when(lowered == "malicious")
        .then(malicious)
        .otherwise(value)
        .alias("label")
    )


def _label_original(label: str, detailed: str | None) -> pl.Expr:
    value = text(label, "label_original")
    if detailed is None:
        return value
    extra = text(detailed, "detailed")
    combined = pl.concat_str([value, extra], separator=" ")
    return pl.when(extra.is_null()).then(value).otherwise(combined).alias("label_original")
