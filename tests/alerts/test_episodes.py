"""Incident-level evaluation on labelled, scored flows: episodes detected, false incidents per hour,
alerts per incident."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from nadkit.alerts.episodes import incident_evaluation
from nadkit.alerts.incidents import IncidentConfig

START = datetime(2021, 5, 3, 8, 0, tzinfo=UTC)


def _flows() -> pl.DataFrame:
    rows = []
    # two episodes of a port scan an hour apart, the second missed entirely
    rows += [(i, "10.0.0.66", "10.0.0.7", 1000 + i, "portscan", True) for i in range(30)]
    rows += [(3600 + i, "10.0.0.66", "10.0.0.8", 2000 + i, "portscan", False) for i in range(30)]
    # one flood, alerted
    rows += [(600 + i // 10, f"198.51.100.{i % 200}", "10.0.0.9", 80, "flood", True) for i in range(400)]
    # normal traffic over two hours, two false alerts from different hosts
    rows += [(i * 36, f"10.1.0.{i % 50}", "10.2.0.1", 443, "normal", i in (5, 90)) for i in range(200)]
    return pl.DataFrame(
        {
            "row": list(range(1, len(rows) + 1)),
            "time": [START + timedelta(seconds=r[0]) for r in rows],
            "src": [r[1] for r in rows],
            "dst": [r[2] for r in rows],
            "dpt": [r[3] for r in rows],
            "proto": ["tcp"] * len(rows),
            "label": [r[4] for r in rows],
            "alert": [r[5] for r in rows],
            "score": [5.0 if r[5] else 0.1 for r in rows],
            "threshold": [1.0] * len(rows),
        },
        schema_overrides={"time": pl.Datetime("us", "UTC")},
    )


def test_episodes_false_incidents_and_alerts_per_incident() -> None:
    figures, summary = incident_evaluation(_flows(), IncidentConfig(gap_s=300))
    assert figures["attack_episodes"] == 3 and figures["attack_episodes_detected"] == 2
    assert figures["episodes_by_class"] == {
        "flood": {"episodes": 1, "detected": 1},
        "portscan": {"episodes": 2, "detected": 1},
    }
    assert figures["false_incidents"] == 2
    assert abs(figures["normal_hours"] - 199 * 36 / 3600) < 1e-9
    assert abs(figures["false_incidents_per_hour"] - 2 / figures["normal_hours"]) < 1e-9
    assert figures["incidents"] == summary.height == 4  # a flood, a scan, two one-off hosts
    assert figures["alerts_per_incident"] == (30 + 400 + 2) / 4
    assert figures["top"][0]["kind"] == "flood" and figures["top"][0]["attack_classes"] == ["flood"]


def test_unlabelled_flows_give_the_incident_counts_only() -> None:
    figures, _ = incident_evaluation(_flows().drop("label"))
    assert figures["incidents"] == 4 and "attack_episodes" not in figures
