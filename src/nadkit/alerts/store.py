"""The alert and feedback store: one SQLite file in WAL mode.

Detection raises alerts; analysts review them and give a verdict; verdicts become training data.
The store keeps both sides:

- ``alerts``: one row per alert: the flow (every field of the scored input, canonical and
  source-specific, kept as JSON so the flow can be rebuilt and scored again), its score and
  threshold, the predicted class, the top contributing features, the model version that raised it,
  and its review status (``new`` until an analyst gives a verdict, then the latest verdict).
- ``feedback``: every verdict ever given (``confirmed`` attack with its class, ``false_positive``,
  ``known_benign``), with the analyst's note, name and time. Nothing is overwritten: a second
  verdict on an alert is a new row, and the alert's status follows the latest one.

A flow alerted twice by the same model version is stored once: the pair (model version, flow key)
is unique, the flow key being a digest of the flow's fields (labels excluded). Replaying a stream
after a restart therefore adds no duplicate alerts.

Safety: the schema is versioned (a ``schema_version`` table, migrations applied in order, each in
its own transaction); every write is one short ``BEGIN IMMEDIATE`` transaction; a busy timeout lets
concurrent writers (the service, a stream, a CLI) wait for each other instead of failing; with
``synchronous=FULL`` a committed transaction survives the process being killed, and with WAL a
killed writer leaves no half-written rows behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import polars as pl

from nadkit.alerts.migrations import MIGRATIONS, SCHEMA_VERSION, Migration
from nadkit.alerts.records import ID_COLUMNS, PARSE_FORMAT, SCORE_COLUMNS
from nadkit.alerts.values import (
    MAX_NOTE,
    STATUSES,
    VERDICTS,
    AlertNotFoundError,
    StoreError,
    _check_text,
    now_text,
    time_text,
)
from nadkit.schema import CANONICAL, TIME_DTYPE, canonical_order

if TYPE_CHECKING:
    from nadkit.alerts.incident_book import IncidentBook

log = logging.getLogger(__name__)

#: orders :meth:`AlertStore.list_alerts` knows
ORDERS: Final = {
    "time_desc": "time IS NULL, time DESC, id DESC",
    "time_asc": "time IS NULL, time ASC, id ASC",
    "score_desc": "score DESC, id DESC",
    "score_asc": "score ASC, id ASC",
    "id_desc": "id DESC",
    "id_asc": "id ASC",
}
Order = Literal["time_desc", "time_asc", "score_desc", "score_asc", "id_desc", "id_asc"]

#: flow fields left out of the flow key (a relabelled flow is the same flow)
UNKEYED: Final = frozenset({"label", "label_original"})
#: flow fields copied into their own columns, for filtering and display
INDEXED_FIELDS: Final = ID_COLUMNS
#: flow keys per ``IN (...)`` lookup of stored ids (well under SQLite's limit on bound values)
_LOOKUP_CHUNK: Final = 500

BUSY_TIMEOUT_MS = 30_000


# ---------------------------------------------------------------------------------------------------
# values
# ---------------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A flow value as JSON holds it: times as store text, non-finite floats as null."""
    if isinstance(value, datetime | date):
        return time_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def flow_key(flow: Mapping[str, Any]) -> str:
    """The digest identifying a flow: its fields (labels excluded) in name order."""
    return _plain_flow_key({k: _plain(v) for k, v in flow.items()})


def _plain_flow_key(flow: Mapping[str, Any]) -> str:
    """:func:`flow_key` of a flow whose values are already as :func:`_plain` gives them."""
    fields = {k: v for k, v in flow.items() if k not in UNKEYED}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _lookup(keys: int) -> str:
    """The query of the ids stored for a model version and ``keys`` flow keys."""
    marks = ", ".join("?" * keys)
    return f"SELECT flow_key, id FROM alerts WHERE model_version = ? AND flow_key IN ({marks})"


def _plain_columns(frame: pl.DataFrame, names: Sequence[str]) -> dict[str, list[Any]]:
    """The ``names`` columns of ``frame`` as lists of the values :func:`_plain` gives: non-finite
    floats made null in Polars, times and dates turned to store text one by one, every other column
    as Polars gives it."""
    floats = [n for n in names if frame.schema[n].is_float()]
    if floats:
        frame = frame.with_columns(
            pl.when(pl.col(n).is_finite()).then(pl.col(n)).otherwise(None).alias(n) for n in floats
        )
    columns = frame.select(names).to_dict(as_series=False)
    for name in names:
        if isinstance(frame.schema[name], pl.Datetime | pl.Date):
            columns[name] = [_plain(value) for value in columns[name]]
    return columns


# ---------------------------------------------------------------------------------------------------
# the store
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Added:
    """What :meth:`AlertStore.save_alerts` did: the id of each alert of the frame, in frame order
    (an alert already stored keeps its first id), and how many rows were new."""

    ids: list[int]
    new: int


class AlertStore:
    """The alert and feedback store in the SQLite file ``path`` (created, and migrated to the
    current schema, on first use). Safe to share between threads (one connection per thread) and
    with other processes writing the same file."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = int(busy_timeout_ms)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        if self.path.is_dir():
            raise StoreError(f"{self.path}: is a directory, not an alert store file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._migrate()

    # -- connections -------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection
        try:
            connection = sqlite3.connect(
                self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
            )
            connection.row_factory = sqlite3.Row
            connection.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                log.warning("%s: WAL journal mode not available (got %s)", self.path, mode)
            connection.execute("PRAGMA synchronous = FULL")
            connection.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{self.path}: not a usable alert store ({error})") from None
        self._local.connection = connection
        with self._lock:
            self._connections.append(connection)
        return connection

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction (taken at once, so writers queue on the busy timeout)."""
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            raise StoreError(f"{self.path}: cannot start a write ({error})") from None
        try:
            yield connection
            connection.execute("COMMIT")
        except BaseException:
            # SQLite has already rolled back after some errors (a full disk): roll back only what is open,
            # so the error that happened is the one reported
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            raise

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        try:
            return self._connect().execute(sql, params).fetchall()
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{self.path}: read failed ({error})") from None

    def close(self) -> None:
        """Close every connection this store opened (in any thread)."""
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            with contextlib.suppress(sqlite3.Error):
                connection.close()
        self._local = threading.local()

    def __enter__(self) -> AlertStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def incidents(self) -> IncidentBook:
        """The incidents kept in this store (see :mod:`nadkit.alerts.incident_book`)."""
        from nadkit.alerts.incident_book import IncidentBook

        return IncidentBook(self)

    # -- schema ------------------------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        """The schema version of the file."""
        rows = self._read("SELECT max(version) AS version FROM schema_version")
        return int(rows[0]["version"] or 0)

    def _migrate(self) -> None:
        try:
            with self._write() as connection:
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version "
                    "(version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied TEXT NOT NULL)"
                )
                current = connection.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{self.path}: not a usable alert store ({error})") from None
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: alert store schema version {current} is newer than this nadkit knows "
                f"({SCHEMA_VERSION}); upgrade nadkit"
            )
        for migration in MIGRATIONS:
            if migration.version <= current:
                continue
            self.apply(migration)

    def apply(self, migration: Migration) -> bool:
        """Apply one migration unless another process already did; True when it was applied here."""
        try:
            with self._write() as connection:
                done = connection.execute(
                    "SELECT 1 FROM schema_version WHERE version >= ?", (migration.version,)
                ).fetchone()
                if done:
                    return False
                for statement in migration.statements:
                    connection.execute(statement)
                connection.execute(
                    "INSERT INTO schema_version (version, description, applied) VALUES (?, ?, ?)",
                    (migration.version, migration.description, now_text()),
                )
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{self.path}: migration {migration.version} failed ({error})") from None
        log.info(
            "%s: schema migrated to version %d (%s)", self.path, migration.version, migration.description
        )
        return True

    def integrity_check(self) -> str:
        """SQLite's own check of the file: ``"ok"`` when sound."""
        rows = self._read("PRAGMA integrity_check")
        return "; ".join(str(row[0]) for row in rows)

    # -- alerts ------------------------------------------------------------------------------------

    def add_alerts(self, frame: pl.DataFrame, *, model_version: str) -> list[int]:
        """Store the alerts of a scored frame (as :class:`~nadkit.detection.detect.Scorer` produces it, with
        any further flow columns of the input beside it); returns their ids in frame order. Rows
        whose ``alert`` column is false are not alerts and are skipped (no id). A flow already
        stored for ``model_version`` is not stored again: its row gets the existing id."""
        return self.save_alerts(frame, model_version=model_version).ids

    def save_alerts(self, frame: pl.DataFrame, *, model_version: str) -> Added:
        """:meth:`add_alerts`, also saying how many alerts were new."""
        version = _check_text("model_version", model_version, required=True)
        if frame.height == 0:
            return Added([], 0)
        for needed in ("score", "threshold"):
            if needed not in frame.columns:
                raise StoreError(f"scored frame has no {needed!r} column")
        if "alert" in frame.columns:
            frame = frame.filter(pl.col("alert").fill_null(False))
        if frame.height == 0:
            return Added([], 0)
        flow_columns = [c for c in frame.columns if c not in SCORE_COLUMNS and not c.startswith("__")]
        created = now_text()
        flows = _plain_columns(frame, flow_columns)
        extras = {
            name: frame[name].to_list() if name in frame.columns else [None] * frame.height
            for name in (
                "row",
                "score",
                "threshold",
                "class",
                "top_features",
                "severity",
                "score_percentile",
                "threshold_multiple",
                "explanation",
            )
        }
        records = []
        keys: list[str] = []
        for index in range(frame.height):
            flow = {name: flows[name][index] for name in flow_columns}
            score = extras["score"][index]
            threshold = extras["threshold"][index]
            if score is None or not math.isfinite(score) or threshold is None or not math.isfinite(threshold):
                raise StoreError(f"alert at row {extras['row'][index]}: score and threshold must be finite")
            key = _plain_flow_key(flow)
            keys.append(key)
            records.append(
                (
                    created,
                    version,
                    key,
                    *(flow.get(name) for name in INDEXED_FIELDS),
                    extras["row"][index],
                    float(score),
                    float(threshold),
                    extras["class"][index],
                    json.dumps(top_features_json(extras["top_features"][index]), allow_nan=False),
                    json.dumps(flow, allow_nan=False, default=str),
                    extras["severity"][index],
                    _finite(extras["score_percentile"][index]),
                    _finite(extras["threshold_multiple"][index]),
                    extras["explanation"][index],
                )
            )
        insert = (
            "INSERT OR IGNORE INTO alerts (created, model_version, flow_key, time, src, dst, spt, dpt, "
            "proto, app, label, row, score, threshold, class, top_features, flow, severity, "
            "score_percentile, threshold_multiple, explanation) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        try:
            with self._write() as connection:
                (last,) = connection.execute("SELECT coalesce(max(id), 0) FROM alerts").fetchone()
                connection.executemany(insert, records)
                # every flow's id, new or stored before (also a flow twice in this frame)
                stored: dict[str, int] = {}
                unique = list(dict.fromkeys(keys))
                for start in range(0, len(unique), _LOOKUP_CHUNK):
                    part = unique[start : start + _LOOKUP_CHUNK]
                    stored.update(connection.execute(_lookup(len(part)), (version, *part)).fetchall())
                missing = next((i for i, key in enumerate(keys) if key not in stored), None)
                if missing is not None:
                    raise StoreError(f"alert at row {extras['row'][missing]}: not stored")
                ids = [int(stored[key]) for key in keys]
                new = sum(1 for i in stored.values() if i > last)
        except (sqlite3.DatabaseError, UnicodeEncodeError, OverflowError) as error:
            raise StoreError(f"{self.path}: alerts not stored ({error})") from None
        if new < len(records):
            log.debug("%d of %d alerts were already stored for %s", len(records) - new, len(records), version)
        return Added(ids, new)

    def get_alert(self, alert_id: int) -> dict[str, Any] | None:
        """One alert with its flow and every verdict given on it (oldest first), or None."""
        rows = self._read("SELECT * FROM alerts WHERE id = ?", (_alert_id(alert_id),))
        if not rows:
            return None
        alert = _alert(rows[0])
        alert["feedback"] = [
            _feedback(row)
            for row in self._read("SELECT * FROM feedback WHERE alert_id = ? ORDER BY id", (alert["id"],))
        ]
        return alert

    def list_alerts(
        self,
        *,
        status: str | Sequence[str] | None = None,
        attack_class: str | None = None,
        min_score: float | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        src: str | None = None,
        model_version: str | None = None,
        dst: str | None = None,
        port: int | None = None,
        incident_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
        order: Order | str = "time_desc",
    ) -> list[dict[str, Any]]:
        """Alerts matching every filter given: ``status`` (one or several), ``attack_class``
        (the predicted or the confirmed class), ``min_score``, flow time in ``[since, until)``,
        source and destination address, ``port`` (either side), model version, incident;
        ``limit`` of them from ``offset`` in ``order``."""
        if order not in ORDERS:
            raise StoreError(f"unknown order {order!r} (known: {', '.join(ORDERS)})")
        if not 0 <= int(limit) <= 100_000 or int(offset) < 0:
            raise StoreError("limit must be in 0-100000 and offset at least 0")
        where, params = _filters(
            status,
            attack_class,
            min_score,
            since,
            until,
            src,
            model_version,
            dst=dst,
            port=port,
            incident_id=incident_id,
        )
        rows = self._read(
            f"SELECT * FROM alerts {where} ORDER BY {ORDERS[order]} LIMIT ? OFFSET ?",
            [*params, int(limit), int(offset)],
        )
        return [_alert(row) for row in rows]

    def count_alerts(self, **filters: Any) -> int:
        """How many alerts :meth:`list_alerts` would find with these filters (its keyword filters)
        and no limit."""
        where, params = _filters(**filters)
        return int(self._read(f"SELECT count(*) FROM alerts {where}", params)[0][0])

    def summary(self) -> dict[str, Any]:
        """Counts of alerts by status, by class (confirmed class first, else predicted) and by model
        version, and the total."""

        def counts(expression: str) -> dict[str, int]:
            rows = self._read(
                f"SELECT {expression} AS key, count(*) AS n FROM alerts GROUP BY key ORDER BY n DESC"
            )
            return {str(row["key"]) if row["key"] is not None else "": int(row["n"]) for row in rows}

        by_status = {name: 0 for name in STATUSES} | counts("status")
        return {
            "total": sum(by_status.values()),
            "by_status": by_status,
            "by_class": {k: v for k, v in counts("coalesce(confirmed_class, class)").items() if k},
            "by_model_version": counts("model_version"),
        }

    # -- feedback ----------------------------------------------------------------------------------

    def add_feedback(
        self,
        alert_id: int,
        verdict: str,
        *,
        attack_class: str | None = None,
        note: str = "",
        analyst: str,
    ) -> int:
        """Record an analyst's verdict on an alert (``confirmed`` needs the ``attack_class``; the
        other verdicts take none) and make it the alert's status; returns the feedback id.
        Earlier verdicts are kept."""
        if verdict not in VERDICTS:
            raise StoreError(f"unknown verdict {verdict!r} (known: {', '.join(VERDICTS)})")
        name = _check_text("analyst", analyst, required=True)
        text = _check_text("note", note, limit=MAX_NOTE) or ""
        kind = _check_text("attack_class", attack_class)
        if verdict == "confirmed" and kind is None:
            raise StoreError("a confirmed attack needs its attack class")
        if verdict != "confirmed" and kind is not None:
            raise StoreError(f"verdict {verdict!r} takes no attack class")
        identifier = _alert_id(alert_id)
        try:
            with self._write() as connection:
                changed = connection.execute(
                    "UPDATE alerts SET status = ?, confirmed_class = ? WHERE id = ?",
                    (verdict, kind, identifier),
                ).rowcount
                if changed == 0:
                    raise AlertNotFoundError(f"no alert with id {identifier}")
                cursor = connection.execute(
                    "INSERT INTO feedback (alert_id, verdict, attack_class, note, analyst, created) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (identifier, verdict, kind, text, name, now_text()),
                )
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{self.path}: feedback not stored ({error})") from None
        assert cursor.lastrowid is not None
        return int(cursor.lastrowid)

    def feedback_frame(self) -> pl.DataFrame:
        """Every reviewed alert with its latest verdict, as a flow table ready to train on: the
        stored flow fields (canonical columns in canonical dtypes, source-specific ones as they
        were) and ``alert_id``, ``model_version``, ``score``, ``threshold``, ``verdict``,
        ``attack_class``, ``note``, ``analyst``, ``reviewed``. One row per alert, oldest alert
        first."""
        rows = self._read(
            "SELECT a.id AS alert_id, a.model_version, a.score, a.threshold, a.flow, f.verdict, "
            "f.attack_class, f.note, f.analyst, f.created AS reviewed FROM alerts a "
            "JOIN feedback f ON f.id = (SELECT max(id) FROM feedback WHERE alert_id = a.id) "
            "ORDER BY a.id"
        )
        meta = {
            "alert_id": pl.Int64,
            "model_version": pl.String,
            "score": pl.Float64,
            "threshold": pl.Float64,
            "verdict": pl.String,
            "attack_class": pl.String,
            "note": pl.String,
            "analyst": pl.String,
            "reviewed": TIME_DTYPE,
        }
        return _flow_table(rows, meta)

    def alert_flows(self, *, status: str | Sequence[str] | None = None) -> pl.DataFrame:
        """The flows of the alerts with ``status`` (every alert when None), rebuilt as a flow table
        with ``alert_id``, ``model_version``, ``status``, ``score`` and ``threshold``."""
        where, params = _filters(status)
        rows = self._read(
            f"SELECT id AS alert_id, model_version, status, score, threshold, flow FROM alerts {where} "
            "ORDER BY id",
            params,
        )
        meta = {
            "alert_id": pl.Int64,
            "model_version": pl.String,
            "status": pl.String,
            "score": pl.Float64,
            "threshold": pl.Float64,
        }
        return _flow_table(rows, meta)


# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------


def _alert_id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise StoreError(f"alert id must be an integer, got {value!r}")
    if not 0 < value < 2**63:
        raise AlertNotFoundError(f"no alert with id {value}")
    return value


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def top_features_json(value: Any) -> list[dict[str, Any]]:
    """Top features as JSON-ready dicts (a Polars list of structs arrives as a list of dicts)."""
    if value is None:
        return []
    out = []
    for item in value:
        if not isinstance(item, Mapping):
            continue
        contribution = item.get("contribution")
        if isinstance(contribution, float) and not math.isfinite(contribution):
            contribution = None
        entry = {"feature": item.get("feature"), "contribution": contribution, "value": item.get("value")}
        for name in ("label", "share", "normal"):  # the explained form, where the scorer gave it
            extra = item.get(name)
            if extra is not None and not (isinstance(extra, float) and not math.isfinite(extra)):
                entry[name] = extra
        out.append(entry)
    return out


def _statuses(status: str | Sequence[str] | None) -> list[str]:
    if status is None:
        return []
    chosen = [status] if isinstance(status, str) else list(status)
    for name in chosen:
        if name not in STATUSES:
            raise StoreError(f"unknown status {name!r} (known: {', '.join(STATUSES)})")
    return chosen


def _filters(
    status: str | Sequence[str] | None = None,
    attack_class: str | None = None,
    min_score: float | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    src: str | None = None,
    model_version: str | None = None,
    *,
    dst: str | None = None,
    port: int | None = None,
    incident_id: str | None = None,
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    statuses = _statuses(status)
    if statuses:
        clauses.append(f"status IN ({', '.join('?' for _ in statuses)})")
        params.extend(statuses)
    if attack_class is not None:
        kind = _check_text("class", attack_class)
        clauses.append("(class = ? OR confirmed_class = ?)")
        params.extend([kind, kind])
    if min_score is not None:
        value = float(min_score)
        if not math.isfinite(value):
            raise StoreError("min_score must be a finite number")
        clauses.append("score >= ?")
        params.append(value)
    if since is not None:
        clauses.append("time >= ?")
        params.append(time_text(since))
    if until is not None:
        clauses.append("time < ?")
        params.append(time_text(until))
    for column, value in (
        ("src", src),
        ("dst", dst),
        ("model_version", model_version),
        ("incident_id", incident_id),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(_check_text(column, value))
    if port is not None:
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise StoreError(f"port must be a number in 0-65535, got {port!r}")
        clauses.append("(dpt = ? OR spt = ?)")
        params.extend([port, port])
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def _alert(row: sqlite3.Row) -> dict[str, Any]:
    """An alert row as a JSON-ready dict."""
    return {
        "id": row["id"],
        "created": row["created"],
        "model_version": row["model_version"],
        "status": row["status"],
        "time": row["time"],
        "src": row["src"],
        "dst": row["dst"],
        "spt": row["spt"],
        "dpt": row["dpt"],
        "proto": row["proto"],
        "app": row["app"],
        "label": row["label"],
        "row": row["row"],
        "score": row["score"],
        "threshold": row["threshold"],
        "class": row["class"],
        "confirmed_class": row["confirmed_class"],
        "incident_id": row["incident_id"],
        "severity": row["severity"],
        "score_percentile": row["score_percentile"],
        "threshold_multiple": row["threshold_multiple"],
        "explanation": row["explanation"],
        "top_features": json.loads(row["top_features"]),
        "flow": json.loads(row["flow"]),
    }


def _feedback(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "alert_id": row["alert_id"],
        "verdict": row["verdict"],
        "attack_class": row["attack_class"],
        "note": row["note"],
        "analyst": row["analyst"],
        "created": row["created"],
    }


def _flow_table(rows: Iterable[sqlite3.Row], meta: Mapping[str, pl.DataType]) -> pl.DataFrame:
    """Rows holding a ``flow`` JSON column and ``meta`` columns, as one flow table: canonical
    columns in canonical dtypes first, then the flow's other fields, then ``meta``."""
    flows: list[dict[str, Any]] = []
    extra: dict[str, list[Any]] = {name: [] for name in meta}
    for row in rows:
        flows.append(json.loads(row["flow"]))
        for name in meta:
            extra[name].append(row[name])
    names: list[str] = []
    for flow in flows:
        names.extend(n for n in flow if n not in names and n not in meta)
    table = (
        pl.from_dicts([{n: f.get(n) for n in names} for f in flows], infer_schema_length=None)
        if flows and names
        else pl.DataFrame()
    )
    casts = []
    for name in table.columns:
        if name == "time":
            casts.append(
                pl.col(name)
                .cast(pl.String)
                .str.to_datetime(PARSE_FORMAT, strict=False, time_unit="us")
                .dt.replace_time_zone("UTC")
            )
        elif name in CANONICAL:
            casts.append(pl.col(name).cast(CANONICAL[name], strict=False))
    if casts:
        table = table.with_columns(casts).select(canonical_order(table.columns))
    columns = {}
    for name, dtype in meta.items():
        values = extra[name]
        if dtype == TIME_DTYPE:
            series = (
                pl.Series(name, values, dtype=pl.String)
                .str.to_datetime(PARSE_FORMAT, strict=False, time_unit="us")
                .dt.replace_time_zone("UTC")
            )
        else:
            series = pl.Series(name, values, dtype=dtype)
        columns[name] = series
    info = pl.DataFrame(columns)
    if table.width == 0:
        return info
    return pl.concat([table, info], how="horizontal")
