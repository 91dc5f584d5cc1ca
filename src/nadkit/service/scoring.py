"""Flows in a request body to a canonical table, and a table to scored rows.

Bodies are JSON (an array of flow objects), CSV (a header line) or Arrow IPC (stream or file), all
with canonical column names (``time``, ``src``, ``dst``, ``spt``, ``dpt``, ``proto``, ``app``,
``duration``, ``out_bytes``, ``in_bytes``, ``out_pkts``, ``in_pkts``, ``label``) and any
source-specific numeric columns the model was trained with. Values are converted the way file
sources convert them (times as ISO-8601 text or epoch numbers, protocols by name or number) and
checked against the canonical schema; the first bad value is reported by row and field.

Each table is scored on its own (:func:`nadkit.detection.detect.score_flows`): features that look across
flows (counters,
segments, windows) see only the flows of that table.
"""

from __future__ import annotations

import io
import json
import logging
import math
import re
from typing import Any, Final

import polars as pl

from nadkit.alerts.records import SCORE_COLUMNS
from nadkit.detection import detect
from nadkit.errors import FormatError, NadkitError, SchemaError
from nadkit.schema import CANONICAL, canonical_order, validate
from nadkit.sources.base import INVALID_PREFIX, check_invalid, convert, numeric
from nadkit.sources.parquet import safe_arrow
from nadkit.training.bundle import ModelBundle

log = logging.getLogger(__name__)

JSON_TYPES: Final = ("application/json",)
CSV_TYPES: Final = ("text/csv", "application/csv")
ARROW_TYPES: Final = (
    "application/vnd.apache.arrow.stream",
    "application/vnd.apache.arrow.file",
    "application/x-arrow",
)
#: columns the scorer adds; an input may not use these names
RESERVED: Final = SCORE_COLUMNS | {"alert_id"}
MAX_COLUMNS = 512
#: field names: canonical names and source-specific snake_case names
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_NAME = 128


class InputError(NadkitError):
    """A request body is not a flow table nadkit can score; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def media_type(content_type: str | None) -> str:
    """The bare media type of a Content-Type header (``text/csv; charset=utf-8`` -> ``text/csv``)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def read_body(body: bytes, content_type: str | None) -> pl.DataFrame:
    """The raw table of a request body, by its Content-Type (415 for other types, 400 when the
    body is not valid data of its type)."""
    kind = media_type(content_type)
    if kind in JSON_TYPES or kind.endswith("+json"):
        return _read_json(body)
    if kind in CSV_TYPES:
        return _read_csv(body)
    if kind in ARROW_TYPES:
        return _read_arrow(body)
    known = ", ".join((*JSON_TYPES, *CSV_TYPES, *ARROW_TYPES))
    raise InputError(f"unsupported Content-Type {kind or '(none)'!r} (send one of {known})", 415)


def _read_json(body: bytes) -> pl.DataFrame:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise InputError(f"body is not valid JSON ({error})", 400) from None
    except RecursionError:
        # flows are an array of flat objects: two levels; a body nested thousands deep is refused
        raise InputError("body is not a JSON array of flow objects (nested too deeply)", 400) from None
    if not isinstance(data, list):
        raise InputError("body must be a JSON array of flow objects", 422)
    names: dict[str, None] = {}
    for index, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            raise InputError(f"row {index}: a flow must be a JSON object", 422)
        for name, value in item.items():
            if value is not None and not isinstance(value, str | int | float | bool):
                raise InputError(f"row {index}, field {name!r}: must be a number, text or null", 422)
            if isinstance(value, float) and not math.isfinite(value):
                raise InputError(f"row {index}, field {name!r}: must be a finite number", 422)
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
                raise InputError(f"row {index}, field {name!r}: integer out of range", 422)
            names.setdefault(name, None)
        if len(names) > MAX_COLUMNS:
            raise InputError(f"too many fields (more than {MAX_COLUMNS})", 422)
    if not data:
        return pl.DataFrame()
    _check_names(list(names))
    columns: dict[str, pl.Series] = {}
    for name in names:
        values = [item.get(name) for item in data]
        columns[name] = _json_column(name, values)
    return pl.DataFrame(columns)


def _json_column(name: str, values: list[Any]) -> pl.Series:
    """One column of JSON values: numbers as numbers when all are numbers, else text."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pl.Series(name, values, dtype=pl.Boolean)
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pl.Series(name, values, dtype=pl.Int64)
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pl.Series(name, [None if v is None else float(v) for v in values], dtype=pl.Float64)
    texts = [None if v is None else (json.dumps(v) if isinstance(v, bool) else str(v)) for v in values]
    for index, text in enumerate(texts, start=1):
        if text is not None:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise InputError(f"row {index}, field {name!r}: not valid Unicode text", 422) from None
    return pl.Series(name, texts, dtype=pl.String)


def _read_csv(body: bytes) -> pl.DataFrame:
    if not body.strip():
        return pl.DataFrame()
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("CSV body is not UTF-8 text", 400) from None
    # the header's field count first: a body of millions of columns is refused before it is parsed
    end = body.find(b"\n")
    fields = (body if end < 0 else body[:end]).count(b",") + 1
    if fields > MAX_COLUMNS:
        raise InputError(f"too many fields ({fields}; at most {MAX_COLUMNS})", 422)
    try:
        frame = pl.read_csv(io.BytesIO(body), infer_schema_length=None, truncate_ragged_lines=False)
    except (pl.exceptions.PolarsError, ValueError, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"CSV body cannot be read ({first})", 400) from None
    _check_names(frame.columns)
    return frame


def _read_arrow(body: bytes) -> pl.DataFrame:
    """An Arrow IPC stream or file body as a table. PyArrow reads it and Polars is given checked arrays,
    never the bytes (:func:`nadkit.sources.parquet.safe_arrow`): Polars' own IPC reader trusts buffer
    offsets and views, and a corrupt body could end the process instead of raising."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    if not body:
        return pl.DataFrame()
    errors = []
    for opener in (ipc.open_stream, ipc.open_file):
        try:
            table = opener(pa.BufferReader(body)).read_all()
        except (pa.ArrowException, ValueError, TypeError, OSError, EOFError) as error:
            errors.append(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)
            continue
        try:
            frame = safe_arrow(table, "body")
        except FormatError as error:  # Arrow, but what it holds cannot be used
            raise InputError(str(error), 422) from None
        _check_names(frame.columns)
        return frame
    raise InputError(f"body is not an Arrow IPC stream or file ({errors[0]})", 400)


def _check_names(names: list[str]) -> None:
    if len(names) > MAX_COLUMNS:
        raise InputError(f"too many fields ({len(names)}; at most {MAX_COLUMNS})", 422)
    for name in names:
        if len(name) > MAX_NAME or name.startswith("__") or not FIELD_NAME.fullmatch(name):
            raise InputError(
                f"field {name[:40]!r}: not a valid field name (letters, digits and underscores)", 422
            )
        if name in RESERVED:
            raise InputError(f"field {name!r}: reserved for the scoring output; rename it", 422)


def _numbers(column: pl.Series) -> bool:
    """Whether every value of a text column reads as a number (JSON and CSV bodies carry numbers as
    text)."""
    if column.dtype != pl.String:
        return False
    parsed = column.str.strip_chars().cast(pl.Float64, strict=False)
    return parsed.null_count() == column.null_count()


def canonical_flows(raw: pl.DataFrame) -> pl.DataFrame:
    """The canonical flow table of a raw request table: canonical columns converted and checked;
    other columns kept as numbers where every value is one, else as text (a column the model reads
    as a number is checked when the flows are scored). :class:`InputError` names the first bad row
    and field."""
    if raw.width == 0:
        return pl.DataFrame()
    if raw.height == 0:
        # a header without rows is an empty batch only when it names flow fields; otherwise the
        # body was not a flow table at all (a bare word, a header line missing)
        if not any(name in CANONICAL for name in raw.columns):
            shown = ", ".join(repr(n[:40]) for n in raw.columns[:3])
            raise InputError(
                f"no flows: the header ({shown}) names no flow field such as 'time' or 'src'", 422
            )
        return pl.DataFrame()
    exprs: list[pl.Expr] = []
    for name, dtype in raw.schema.items():
        if name in CANONICAL:
            if dtype == CANONICAL[name] and dtype != pl.String:
                exprs.append(pl.col(name))
            else:
                exprs.extend(convert(name, name, dtype))
        elif dtype.is_numeric():
            exprs.append(pl.col(name).cast(pl.Float64 if dtype.is_float() else pl.Int64))
        elif dtype == pl.Boolean:
            exprs.append(pl.col(name).cast(pl.Int64))
        elif dtype == pl.Null or _numbers(raw[name]):
            exprs.extend(numeric(name, pl.Float64(), name))
        elif dtype == pl.String:
            exprs.append(pl.col(name))  # text stays text (an application category, a note...)
        else:
            raise InputError(f"field {name!r}: unsupported type {dtype}", 422)
    try:
        frame = raw.select(exprs)
        frame = check_invalid(frame, None)
        names = [c for c in frame.columns if not c.startswith(INVALID_PREFIX)]
        frame = frame.select(canonical_order(names))
        validate(frame)
    except SchemaError as error:
        raise InputError(_where(error), 422) from None
    except (pl.exceptions.PolarsError, ValueError, OverflowError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(f"flows cannot be converted ({first})", 422) from None
    return frame


def _where(error: SchemaError) -> str:
    """A schema error as ``row 3, field 'spt': message``."""
    parts = []
    if error.row is not None:
        parts.append(f"row {error.row}")
    if error.column is not None:
        parts.append(f"field {error.column!r}")
    return f"{', '.join(parts)}: {error.message}" if parts else error.message


def score_flows(
    bundle: ModelBundle,
    flows: pl.DataFrame,
    *,
    top: int = 5,
    threshold: float | None = None,
    on_scored: detect.ScoredHook | None = None,
    alerts_only: bool = False,
) -> pl.DataFrame:
    """:func:`nadkit.detection.detect.score_flows` with a bad value answered as a 422 naming its row and
    field; ``threshold``, ``on_scored`` and ``alerts_only``: see :class:`~nadkit.detection.detect.Scorer`."""
    try:
        return detect.score_flows(
            bundle, flows, top=top, threshold=threshold, on_scored=on_scored, alerts_only=alerts_only
        )
    except SchemaError as error:
        raise InputError(_where(error), 422) from None
