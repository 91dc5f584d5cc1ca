"""Incidents in the alert store: recorded from stored alerts, listed most severe first and filtered,
one verdict applied to all of an incident's alerts (and feedback for each), the tracker continued
after a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from nadkit.alerts.incident_book import IncidentNotFoundError
from nadkit.alerts.incident_tracker import IncidentTracker
from nadkit.alerts.store import AlertStore
from nadkit.alerts.values import StoreError

START = datetime(2021, 3, 1, 9, 0, tzinfo=UTC)
TOP = pl.List(pl.Struct({"feature": pl.String, "contribution": pl.Float64, "value": pl.String}))


def _records(rows: list[tuple[int, str, str, int, float]]) -> pl.DataFrame:
    """Scored alert records: (seconds after START, src, dst, dpt, score)."""
    return pl.DataFrame(
        {
            "row": list(range(1, len(rows) + 1)),
            "time": [START + timedelta(seconds=s) for s, *_ in rows],
            "src": [r[1] for r in rows],
            "dst": [r[2] for r in rows],
            "spt": [40000 + i for i in range(len(rows))],
            "dpt": [r[3] for r in rows],
            "proto": ["tcp"] * len(rows),
            "score": [r[4] for r in rows],
            "threshold": [1.0] * len(rows),
            "alert": [True] * len(rows),
            "class": [None] * len(rows),
            "top_features": [[{"feature": "bytes", "contribution": r[4], "value": "1"}] for r in rows],
        },
        schema_overrides={"class": pl.String, "top_features": TOP, "time": pl.Datetime("us", "UTC")},
    )


def _flood_and_scan() -> pl.DataFrame:
    flood = [(i, f"198.51.{i // 250}.{i % 250}", "10.0.0.9", 80, 20.0) for i in range(300)]
    scan = [(i, "10.0.0.66", "10.0.0.7", 1000 + i, 2.0) for i in range(40)]
    return _records(flood + scan)


def _store_batch(store: AlertStore, records: pl.DataFrame, tracker: IncidentTracker) -> None:
    added = store.save_alerts(records, model_version="v1")
    with_ids = records.with_columns(pl.Series("alert_id", added.ids, dtype=pl.Int64))
    incidents = tracker.update(with_ids)
    store.incidents.record(incidents, model_version="v1", tracker=tracker)


def test_incidents_are_listed_filtered_and_reviewed(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.db")
    book = store.incidents
    _store_batch(store, _flood_and_scan(), book.tracker("v1"))
    listed = book.list()
    assert [i["kind"] for i in listed] == ["flood", "scan"]  # the flood is the more severe
    flood, scan = listed
    assert flood["alerts"] == 300 and flood["summary"]["sources"] == 300 and flood["severity"] == "critical"
    assert book.count() == 2 and book.count(kind="scan") == 1
    assert [i["id"] for i in book.list(dst="10.0.0.7")] == [scan["id"]]
    assert [i["id"] for i in book.list(port=1005)] == [scan["id"]]
    assert book.list(src="203.0.113.1") == []
    assert [i["id"] for i in book.list(severity=["critical", "high"])] == [flood["id"]]
    one = book.get(flood["id"], alerts=10)
    assert len(one["alert_items"]) == 10 and all(a["incident_id"] == flood["id"] for a in one["alert_items"])
    assert store.count_alerts(incident_id=flood["id"]) == 300

    assert (
        book.give_verdict(flood["id"], "confirmed", attack_class="ddos", analyst="ana", note="SYN flood")
        == 300
    )
    assert store.count_alerts(status="confirmed") == 300 and store.count_alerts(status="new") == 40
    reviewed = book.get(flood["id"])
    assert (reviewed["status"], reviewed["analyst"], reviewed["note"]) == ("confirmed", "ana", "SYN flood")
    feedback = store.feedback_frame()
    assert feedback.height == 300 and set(feedback["attack_class"]) == {"ddos"}
    assert book.count(status="new") == 1
    with pytest.raises(IncidentNotFoundError):
        book.give_verdict("flood-0000", "false_positive", analyst="ana")
    with pytest.raises(StoreError, match="attack class"):
        book.give_verdict(scan["id"], "confirmed", analyst="ana")
    table = book.frame(book.list())
    assert table.height == 2 and "top_sources" in table.columns


def test_a_restart_continues_the_same_incidents(tmp_path: Path) -> None:
    records = _flood_and_scan().sort("time")
    first, second = records.head(150), records.tail(records.height - 150)
    store = AlertStore(tmp_path / "alerts.db")
    _store_batch(store, first, store.incidents.tracker("v1"))
    store.close()
    again = AlertStore(tmp_path / "alerts.db")  # a new process: the tracker comes back from the store
    _store_batch(again, second, again.incidents.tracker("v1"))
    restarted = {(i["kind"], i["id"], i["alerts"]) for i in again.incidents.list()}

    whole = AlertStore(tmp_path / "whole.db")
    _store_batch(whole, records, whole.incidents.tracker("v1"))
    assert restarted == {(i["kind"], i["id"], i["alerts"]) for i in whole.incidents.list()}
    assert again.count_alerts(incident_id=None) == records.height
    assert again.integrity_check() == "ok"
