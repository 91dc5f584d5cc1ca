"""Incidents in the alert store: their summaries, the link from each alert to its incident, the
tracker's state between batches and restarts, and one verdict for all of an incident's alerts.

:class:`IncidentBook` works on the SQLite file of an :class:`~nadkit.alerts.store.AlertStore`
(``store.incidents``): :meth:`IncidentBook.record` writes what :class:`IncidentTracker` made of a
batch of stored alerts (their ``alert_id`` column links them), :meth:`IncidentBook.tracker` gives the
tracker back as it was after the last batch of a model version, so that a restarted service
continues the same incidents. Incidents list most severe first, then most recent.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

import polars as pl

from nadkit.alerts.incident_tracker import IncidentTracker
from nadkit.alerts.incidents import SEVERITIES, IncidentConfig, Incidents
from nadkit.alerts.records import format_time
from nadkit.alerts.values import MAX_NOTE, VERDICTS, StoreError, _check_text, now_text, time_text

if TYPE_CHECKING:
    from contextlib import AbstractContextManager
    from pathlib import Path


class _Store(Protocol):
    """What the book uses of an :class:`~nadkit.alerts.store.AlertStore`."""

    path: Path

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]: ...

    def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def list_alerts(self, **filters: Any) -> list[dict[str, Any]]: ...


log = logging.getLogger(__name__)

#: severity name -> rank (higher is more severe)
SEVERITY_RANK: Final = {name: rank for rank, name in enumerate(SEVERITIES, start=1)}
#: the columns of an incident row, as lists and exports give them
COLUMNS: Final = (
    "id",
    "model_version",
    "kind",
    "key",
    "severity",
    "status",
    "first_seen",
    "last_seen",
    "alerts",
    "peak_score",
    "classes",
    "verdict",
    "attack_class",
    "note",
    "analyst",
    "reviewed",
)


class IncidentNotFoundError(LookupError):
    """No incident has the given id."""


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    return value


class IncidentBook:
    """The incidents of one alert store (see the module docstring)."""

    def __init__(self, store: _Store) -> None:
        self.store = store

    # -- the tracker -------------------------------------------------------------------------------

    def tracker(self, model_version: str, config: IncidentConfig | None = None) -> IncidentTracker:
        """The tracker of ``model_version`` as it was after its last recorded batch (a new one when
        none was recorded, or when its saved state no longer reads)."""
        rows = self.store._read(
            "SELECT state FROM incident_tracker WHERE model_version = ?", (model_version,)
        )
        if not rows:
            return IncidentTracker(config)
        try:
            return IncidentTracker.from_state(json.loads(rows[0]["state"]), config)
        except (ValueError, KeyError, TypeError) as error:
            log.warning(
                "%s: the incident tracker of %s restarts empty (%s)", self.store.path, model_version, error
            )
            return IncidentTracker(config)

    # -- writing ------------------------------------------------------------------------------------

    def record(
        self, incidents: Incidents, *, model_version: str, tracker: IncidentTracker | None = None
    ) -> int:
        """Write the incidents a batch touched (their summaries replace what was stored under their
        ids; incidents that gave their alerts to others are removed), link each alert of the batch
        (by its ``alert_id``) to its incident, and save ``tracker``'s state, all in one transaction.
        Returns how many incidents were written."""
        summary = incidents.summary
        if "alert_id" not in incidents.alerts.columns and summary.height:
            raise ValueError("incidents to store need the alerts' alert_id (store the alerts first)")
        now = format_time(datetime.now().astimezone())
        rows = []
        for item in summary.iter_rows(named=True):
            document = {k: _json_value(v) for k, v in item.items() if k not in ("refs", "status")}
            rows.append(
                (
                    item["incident_id"],
                    model_version,
                    item["kind"],
                    item["key"],
                    item["severity"],
                    SEVERITY_RANK.get(item["severity"], 0),
                    _json_value(item["first_seen"]),
                    _json_value(item["last_seen"]),
                    int(item["alerts"]),
                    _json_value(item["peak_score"]),
                    ",".join(item.get("classes") or []),
                    json.dumps(document, allow_nan=False),
                    now,
                    now,
                )
            )
        links = (
            incidents.alerts.select("incident_id", "alert_id").drop_nulls().rows()
            if "alert_id" in incidents.alerts.columns
            else []
        )
        upsert = (
            "INSERT INTO incidents (id, model_version, kind, key, severity, severity_rank, first_seen, "
            "last_seen, alerts, peak_score, classes, summary, created, updated) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
            "severity = excluded.severity, severity_rank = excluded.severity_rank, "
            "first_seen = excluded.first_seen, last_seen = excluded.last_seen, alerts = excluded.alerts, "
            "peak_score = excluded.peak_score, classes = excluded.classes, summary = excluded.summary, "
            "updated = excluded.updated"
        )
        try:
            with self.store._write() as connection:
                connection.executemany(upsert, rows)
                connection.executemany(
                    "UPDATE alerts SET incident_id = ? WHERE id = ?", [(i, int(a)) for i, a in links]
                )
                for old, new in incidents.replaced.items():
                    connection.execute("UPDATE alerts SET incident_id = ? WHERE incident_id = ?", (new, old))
                    connection.execute("DELETE FROM incidents WHERE id = ? AND id != ?", (old, new))
                if tracker is not None:
                    connection.execute(
                        "INSERT INTO incident_tracker (model_version, state, updated) VALUES (?, ?, ?) "
                        "ON CONFLICT (model_version) DO UPDATE SET state = excluded.state, "
                        "updated = excluded.updated",
                        (model_version, json.dumps(tracker.state(), allow_nan=False), now),
                    )
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{self.store.path}: incidents not stored ({error})") from None
        return len(rows)

    # -- reading ------------------------------------------------------------------------------------

    def _where(self, filters: dict[str, Any]) -> tuple[str, list[Any]]:

        clauses: list[str] = []
        params: list[Any] = []
        for column in ("status", "severity", "kind", "model_version"):
            value = filters.get(column)
            if value:
                values = [value] if isinstance(value, str) else list(value)
                clauses.append(f"{column} IN ({', '.join('?' for _ in values)})")
                params.extend(_check_text(column, v) for v in values)
        if filters.get("attack_class"):
            kind = _check_text("class", filters["attack_class"])
            clauses.append("(attack_class = ? OR ',' || classes || ',' LIKE ?)")
            params.extend([kind, f"%,{kind},%"])
        if filters.get("since") is not None:
            clauses.append("last_seen >= ?")
            params.append(time_text(filters["since"]))
        if filters.get("until") is not None:
            clauses.append("first_seen < ?")
            params.append(time_text(filters["until"]))
        # an address or port filter keeps the incidents with at least one such alert
        inner: list[str] = []
        for column in ("src", "dst"):
            if filters.get(column):
                inner.append(f"{column} = ?")
                params.append(_check_text(column, filters[column]))
        port = filters.get("port")
        if port is not None:
            if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
                raise StoreError(f"port must be a number in 0-65535, got {port!r}")
            inner.append("(dpt = ? OR spt = ?)")
            params.extend([port, port])
        if inner:
            clauses.append(
                "id IN (SELECT incident_id FROM alerts WHERE incident_id IS NOT NULL AND "
                + " AND ".join(inner)
                + ")"
            )
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", params

    def list(self, *, limit: int = 50, offset: int = 0, **filters: Any) -> list[dict[str, Any]]:
        """Incidents matching every filter (``status``, ``severity``, ``kind`` and ``model_version``:
        one value or several; ``attack_class``; ``src``, ``dst``, ``port``: incidents with such an
        alert; ``since``/``until``: incidents active in that time), most severe first, then most
        recent; ``limit`` of them from ``offset``."""

        if not 0 <= int(limit) <= 100_000 or int(offset) < 0:
            raise StoreError("limit must be in 0-100000 and offset at least 0")
        where, params = self._where(filters)
        rows = self.store._read(
            f"SELECT * FROM incidents {where} ORDER BY severity_rank DESC, last_seen DESC, id "
            "LIMIT ? OFFSET ?",
            [*params, int(limit), int(offset)],
        )
        return [_incident(row) for row in rows]

    def count(self, **filters: Any) -> int:
        """How many incidents :meth:`list` would find with these filters and no limit."""
        where, params = self._where(filters)
        return int(self.store._read(f"SELECT count(*) FROM incidents {where}", params)[0][0])

    def get(self, incident_id: str, *, alerts: int = 100) -> dict[str, Any]:
        """One incident with up to ``alerts`` of its alerts (highest scores first) and their count."""
        rows = self.store._read("SELECT * FROM incidents WHERE id = ?", (str(incident_id),))
        if not rows:
            raise IncidentNotFoundError(f"no incident with id {incident_id!r}")
        incident = _incident(rows[0])
        incident["alert_items"] = self.store.list_alerts(
            incident_id=str(incident_id), limit=alerts, order="score_desc"
        )
        return incident

    # -- verdicts -----------------------------------------------------------------------------------

    def give_verdict(
        self,
        incident_id: str,
        verdict: str,
        *,
        analyst: str,
        attack_class: str | None = None,
        note: str = "",
    ) -> int:
        """One verdict for an incident and all of its alerts: the incident records it once (with the
        analyst and the note), each alert takes it as its status and gets its feedback entry (so
        retraining uses them). Returns how many alerts took it."""

        if verdict not in VERDICTS:
            raise StoreError(f"unknown verdict {verdict!r} (known: {', '.join(VERDICTS)})")
        name = _check_text("analyst", analyst, required=True)
        text = _check_text("note", note, limit=MAX_NOTE) or ""
        kind = _check_text("attack_class", attack_class)
        if verdict == "confirmed" and kind is None:
            raise StoreError("a confirmed attack needs its attack class")
        if verdict != "confirmed" and kind is not None:
            raise StoreError(f"verdict {verdict!r} takes no attack class")
        when = now_text()
        try:
            with self.store._write() as connection:
                changed = connection.execute(
                    "UPDATE incidents SET status = ?, verdict = ?, attack_class = ?, note = ?, analyst = ?, "
                    "reviewed = ? WHERE id = ?",
                    (verdict, verdict, kind, text, name, when, str(incident_id)),
                ).rowcount
                if changed == 0:
                    raise IncidentNotFoundError(f"no incident with id {incident_id!r}")
                ids = [
                    int(row[0])
                    for row in connection.execute(
                        "SELECT id FROM alerts WHERE incident_id = ?", (str(incident_id),)
                    ).fetchall()
                ]
                connection.execute(
                    "UPDATE alerts SET status = ?, confirmed_class = ? WHERE incident_id = ?",
                    (verdict, kind, str(incident_id)),
                )
                connection.executemany(
                    "INSERT INTO feedback (alert_id, verdict, attack_class, note, analyst, created, "
                    "incident_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(i, verdict, kind, text, name, when, str(incident_id)) for i in ids],
                )
        except sqlite3.DatabaseError as error:
            raise StoreError(f"{self.store.path}: verdict not stored ({error})") from None
        log.info("incident %s: %s by %s for %d alerts", incident_id, verdict, name, len(ids))
        return len(ids)

    # -- export -------------------------------------------------------------------------------------

    def frame(self, incidents: Sequence[dict[str, Any]]) -> pl.DataFrame:
        """Listed incidents as a flat table (for CSV), the summary's counts and top values as text."""
        flat = []
        for item in incidents:
            summary = item.get("summary") or {}
            row = {name: item.get(name) for name in COLUMNS}
            for part in ("sources", "destinations", "ports", "protocols"):
                row[part] = summary.get(part)
                row[f"top_{part}"] = "; ".join(
                    f"{entry['value']} ({entry['count']})" for entry in summary.get(f"top_{part}") or []
                )
            row["top_feature"] = summary.get("top_feature")
            row["top_feature_label"] = summary.get("top_feature_label")
            flat.append(row)
        return pl.DataFrame(flat, infer_schema_length=None) if flat else pl.DataFrame(schema=list(COLUMNS))


def _incident(row: sqlite3.Row) -> dict[str, Any]:
    summary = json.loads(row["summary"])
    return {
        "id": row["id"],
        "model_version": row["model_version"],
        "kind": row["kind"],
        "key": row["key"],
        "severity": row["severity"],
        "status": row["status"],
        "first_seen": row["first_seen"],
        "last_seen": row["last_seen"],
        "alerts": row["alerts"],
        "peak_score": row["peak_score"],
        "classes": [c for c in (row["classes"] or "").split(",") if c],
        "verdict": row["verdict"],
        "attack_class": row["attack_class"],
        "note": row["note"],
        "analyst": row["analyst"],
        "reviewed": row["reviewed"],
        "summary": summary,
    }
