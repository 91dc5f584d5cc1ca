"""The alert store's schema, as migrations applied once each, in version order, each in its own
transaction (see :meth:`nadkit.alerts.store.AlertStore.apply`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Migration:
    """One step of the schema: applied once, in ``version`` order, in its own transaction."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "alerts",
        (
            """
            CREATE TABLE alerts (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                created TEXT NOT NULL,
                model_version TEXT NOT NULL,
                flow_key TEXT NOT NULL,
                time TEXT,
                src TEXT,
                dst TEXT,
                spt INTEGER,
                dpt INTEGER,
                proto TEXT,
                app TEXT,
                label TEXT,
                row INTEGER,
                score REAL NOT NULL,
                threshold REAL NOT NULL,
                class TEXT,
                top_features TEXT NOT NULL DEFAULT '[]',
                flow TEXT NOT NULL,
                status TEXT NOT NULL DEFAULT 'new',
                UNIQUE (model_version, flow_key)
            )
            """,
            "CREATE INDEX alerts_time ON alerts (time)",
            "CREATE INDEX alerts_score ON alerts (score)",
            "CREATE INDEX alerts_src ON alerts (src, time)",
            "CREATE INDEX alerts_status ON alerts (status, time)",
        ),
    ),
    Migration(
        2,
        "feedback, and the class analysts confirmed on alerts",
        (
            """
            CREATE TABLE feedback (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                alert_id INTEGER NOT NULL REFERENCES alerts (id),
                verdict TEXT NOT NULL
                    CHECK (verdict IN ('confirmed', 'false_positive', 'known_benign')),
                attack_class TEXT,
                note TEXT NOT NULL DEFAULT '',
                analyst TEXT NOT NULL,
                created TEXT NOT NULL
            )
            """,
            "CREATE INDEX feedback_alert ON feedback (alert_id, id)",
            "ALTER TABLE alerts ADD COLUMN confirmed_class TEXT",
            "CREATE INDEX alerts_class ON alerts (class)",
            "CREATE INDEX alerts_confirmed_class ON alerts (confirmed_class)",
        ),
    ),
    Migration(
        3,
        "incidents: alerts grouped by attack shape, with one verdict for all their alerts",
        (
            """
            CREATE TABLE incidents (
                id TEXT PRIMARY KEY,
                model_version TEXT NOT NULL,
                kind TEXT NOT NULL,
                key TEXT NOT NULL,
                severity TEXT NOT NULL,
                severity_rank INTEGER NOT NULL,
                status TEXT NOT NULL DEFAULT 'new',
                first_seen TEXT,
                last_seen TEXT,
                alerts INTEGER NOT NULL,
                peak_score REAL,
                classes TEXT NOT NULL DEFAULT '',
                summary TEXT NOT NULL,
                created TEXT NOT NULL,
                updated TEXT NOT NULL,
                verdict TEXT,
                attack_class TEXT,
                note TEXT,
                analyst TEXT,
                reviewed TEXT
            )
            """,
            "CREATE INDEX incidents_rank ON incidents (severity_rank DESC, last_seen DESC)",
            "CREATE INDEX incidents_status ON incidents (status, last_seen)",
            "ALTER TABLE alerts ADD COLUMN incident_id TEXT",
            "CREATE INDEX alerts_incident ON alerts (incident_id, id)",
            "CREATE INDEX alerts_dst ON alerts (dst, time)",
            "ALTER TABLE feedback ADD COLUMN incident_id TEXT",
            """
            CREATE TABLE incident_tracker (
                model_version TEXT PRIMARY KEY,
                state TEXT NOT NULL,
                updated TEXT NOT NULL
            )
            """,
        ),
    ),
    Migration(
        4,
        "alerts keep their severity, score percentile, threshold multiple and explanation",
        (
            "ALTER TABLE alerts ADD COLUMN severity TEXT",
            "ALTER TABLE alerts ADD COLUMN score_percentile REAL",
            "ALTER TABLE alerts ADD COLUMN threshold_multiple REAL",
            "ALTER TABLE alerts ADD COLUMN explanation TEXT",
        ),
    ),
)
SCHEMA_VERSION: Final = MIGRATIONS[-1].version
