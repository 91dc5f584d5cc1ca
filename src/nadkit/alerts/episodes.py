"""Incident-level evaluation: what an analyst sees of labelled traffic, beside the flow-level figures.

Flow-level precision and recall weigh a flood of 37,000 flows as 37,000 detections; an analyst sees
one incident. On labelled flows this module measures:

* **attack episodes detected**: the attack flows of each class, cut into episodes by the incident
  gap (an episode ends when its class is idle longer than the gap), and the share of episodes with
  at least one alert (every alert belongs to an incident, so a detected episode is one the analyst
  is shown);
* **false incidents per hour of normal traffic**: incidents whose alerts are all normal flows, over
  the hours the normal flows span;
* **alerts per incident**, and the number of incidents of each kind.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from nadkit.alerts.incidents import IncidentConfig, group_alerts
from nadkit.schema import NORMAL


def _episodes(attacks: pl.DataFrame, gap_us: int) -> pl.DataFrame:
    """One row per (class, episode): its flows and whether any alerted."""
    if "time" not in attacks.columns or attacks["time"].null_count() == attacks.height:
        ordered = attacks.with_columns(pl.lit(0, dtype=pl.Int64).alias("_episode"))
    else:
        ordered = (
            attacks.with_columns(pl.col("time").dt.epoch("us").alias("_t"))
            .sort("label", "_t", nulls_last=True)
            .with_columns(
                (pl.col("_t").diff().over("label").fill_null(0) > gap_us)
                .cum_sum()
                .over("label")
                .alias("_episode")
            )
        )
    return ordered.group_by("label", "_episode").agg(
        pl.len().alias("flows"), pl.col("alert").any().alias("detected")
    )


def incident_evaluation(
    scored: pl.DataFrame, config: IncidentConfig | None = None, *, top: int = 10
) -> tuple[dict[str, Any], pl.DataFrame]:
    """Incident-level figures of a scored, labelled table (``label``, ``alert``, ``score``,
    ``threshold`` and the identifying columns, ``time`` where known), and the incidents' summary
    (the module docstring says what is measured). The figures include the ``top`` incidents, most
    severe and largest first, with the labels of their alerts."""
    config = config or IncidentConfig()
    labels = scored["label"].fill_null(NORMAL) if "label" in scored.columns else None
    frame = scored.with_columns(labels.alias("label")) if labels is not None else scored
    alerts = frame.filter(pl.col("alert").fill_null(False))
    found = group_alerts(alerts, config)
    summary = found.summary
    figures: dict[str, Any] = {
        "incidents": summary.height,
        "by_kind": dict(summary["kind"].value_counts().iter_rows()) if summary.height else {},
        "alerts_per_incident": (alerts.height / summary.height) if summary.height else None,
        "gap_s": config.gap_s,
    }
    if labels is None:
        return figures, summary
    members = found.alerts.select("incident_id", "label")
    mix = members.group_by("incident_id").agg(
        (pl.col("label") != NORMAL).sum().alias("attack_alerts"),
        pl.col("label").filter(pl.col("label") != NORMAL).unique().sort().alias("attack_classes"),
    )
    false_incidents = int((mix["attack_alerts"] == 0).sum()) if mix.height else 0
    normal = frame.filter(pl.col("label") == NORMAL)
    hours = None
    if "time" in frame.columns and normal.height and normal["time"].null_count() < normal.height:
        span = normal["time"].max() - normal["time"].min()  # type: ignore[operator]
        hours = max(span.total_seconds() / 3600.0, 1 / 60)  # type: ignore[union-attr]
    attacks = frame.filter(pl.col("label") != NORMAL)
    episodes = _episodes(attacks, config.gap_us) if attacks.height else pl.DataFrame()
    by_class = {}
    if episodes.height:
        for name, total, detected in (
            episodes.group_by("label")
            .agg(pl.len().alias("episodes"), pl.col("detected").sum().alias("detected"))
            .sort("label")
            .iter_rows()
        ):
            by_class[name] = {"episodes": int(total), "detected": int(detected)}
    total = sum(v["episodes"] for v in by_class.values())
    detected = sum(v["detected"] for v in by_class.values())
    figures.update(
        {
            "false_incidents": false_incidents,
            "normal_hours": hours,
            "false_incidents_per_hour": (false_incidents / hours) if hours else None,
            "attack_episodes": total,
            "attack_episodes_detected": detected,
            "episode_detection_rate": (detected / total) if total else None,
            "episodes_by_class": by_class,
        }
    )
    ranks = {"low": 1, "medium": 2, "high": 3, "critical": 4}
    labelled = summary.join(mix, on="incident_id", how="left")
    ordered = sorted(
        labelled.iter_rows(named=True), key=lambda i: (-ranks.get(i["severity"], 0), -i["alerts"])
    )
    figures["top"] = [
        {
            "incident_id": item["incident_id"],
            "kind": item["kind"],
            "key": item["key"],
            "severity": item["severity"],
            "alerts": item["alerts"],
            "sources": item["sources"],
            "destinations": item["destinations"],
            "ports": item["ports"],
            "first_seen": item["first_seen"].isoformat() if item["first_seen"] is not None else None,
            "last_seen": item["last_seen"].isoformat() if item["last_seen"] is not None else None,
            "top_feature": item["top_feature"],
            "top_feature_label": item["top_feature_label"],
            "attack_classes": list(item["attack_classes"] or []),
        }
        for item in ordered[:top]
    ]
    return figures, summary
