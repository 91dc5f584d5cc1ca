"""The alert store: schema migrations, alerts without duplicates, feedback history, filters,
concurrent writers, and committed alerts surviving a killed writer."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from nadkit.alerts.store import MIGRATIONS, SCHEMA_VERSION, AlertStore, flow_key
from nadkit.alerts.values import AlertNotFoundError, StoreError
from nadkit.schema import TIME_DTYPE

START = datetime(2020, 12, 4, 10, 0, tzinfo=UTC)
#: the scorer's explanation entries (the same struct as nadkit.detection.detect.TOP_FEATURE, without its
#: imports)
TOP_FEATURE = pl.Struct({"feature": pl.String, "contribution": pl.Float64, "value": pl.String})


def scored(rows: int, *, offset: int = 0, alert: bool = True, src: str = "10.0.0.1") -> pl.DataFrame:
    """A frame shaped like the scorer's output, with two more flow fields (duration, cnt_src)."""
    index = range(offset, offset + rows)
    return pl.DataFrame(
        {
            "row": [i + 1 for i in index],
            "time": [START + timedelta(seconds=i) for i in index],
            "src": [src] * rows,
            "dst": [f"10.0.1.{i % 250}" for i in index],
            "spt": [40000 + i for i in index],
            "dpt": [443] * rows,
            "proto": ["tcp"] * rows,
            "app": ["https"] * rows,
            "label": ["normal"] * rows,
            "score": [10.0 + i for i in index],
            "threshold": [5.0] * rows,
            "alert": [alert] * rows,
            "class": [None] * rows,
            "top_features": [
                [{"feature": "out_bytes_log", "contribution": 3.5, "value": str(100 + i)}] for i in index
            ],
            "duration": [0.5 * i for i in index],
            "cnt_src": [i % 7 for i in index],
        },
        schema_overrides={"time": TIME_DTYPE, "class": pl.String, "top_features": pl.List(TOP_FEATURE)},
    )


@pytest.fixture()
def store(tmp_path: Path) -> AlertStore:
    with AlertStore(tmp_path / "alerts.db") as opened:
        yield opened


def test_a_new_store_has_the_latest_schema_in_wal_mode(store: AlertStore) -> None:
    assert store.schema_version == SCHEMA_VERSION == MIGRATIONS[-1].version
    with sqlite3.connect(store.path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        versions = [row[0] for row in raw.execute("SELECT version FROM schema_version ORDER BY version")]
    assert versions == [m.version for m in MIGRATIONS]
    again = AlertStore(store.path)
    assert again.schema_version == SCHEMA_VERSION
    again.close()


def test_an_old_store_is_migrated_and_keeps_its_alerts(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as raw:
        raw.execute(
            "CREATE TABLE schema_version "
            "(version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied TEXT NOT NULL)"
        )
        for statement in MIGRATIONS[0].statements:
            raw.execute(statement)
        raw.execute("INSERT INTO schema_version VALUES (1, 'alerts', '2020-01-01T00:00:00Z')")
        raw.execute(
            "INSERT INTO alerts (created, model_version, flow_key, src, score, threshold, flow) "
            "VALUES ('2020-01-01T00:00:00Z', 'v1', 'k', '10.9.9.9', 7.5, 5.0, '{\"src\": \"10.9.9.9\"}')"
        )
    with AlertStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        (alert,) = store.list_alerts()
        assert alert["src"] == "10.9.9.9" and alert["status"] == "new" and alert["confirmed_class"] is None
        store.add_feedback(alert["id"], "known_benign", analyst="ana")
        assert store.get_alert(alert["id"])["status"] == "known_benign"


def test_a_newer_or_foreign_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    AlertStore(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute("INSERT INTO schema_version VALUES (99, 'future', '2030-01-01T00:00:00Z')")
    with pytest.raises(StoreError, match="newer than this nadkit"):
        AlertStore(path)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a usable alert store"):
        AlertStore(junk)
    with pytest.raises(StoreError, match="directory"):
        AlertStore(tmp_path)


def test_alerts_are_stored_once_per_flow_and_model_version(store: AlertStore) -> None:
    frame = scored(5)
    added = store.save_alerts(frame, model_version="v1")
    assert added.new == 5 and len(set(added.ids)) == 5
    again = store.save_alerts(frame.reverse(), model_version="v1")
    assert again.new == 0 and again.ids == list(reversed(added.ids))
    relabelled = frame.with_columns(pl.lit("DDOS-smurf").alias("label"), (pl.col("score") + 1).alias("score"))
    assert store.save_alerts(relabelled, model_version="v1").new == 0, "a relabelled flow is the same flow"
    other = store.add_alerts(frame, model_version="v2")
    assert not set(other) & set(added.ids)
    assert store.count_alerts() == 10
    mixed = pl.concat([scored(3, offset=100), scored(2, offset=200, alert=False)])
    assert len(store.add_alerts(mixed, model_version="v1")) == 3, "rows that are not alerts are skipped"
    assert store.add_alerts(scored(0), model_version="v1") == []
    with pytest.raises(StoreError, match="model_version"):
        store.add_alerts(frame, model_version=" ")
    with pytest.raises(StoreError, match="'score'"):
        store.add_alerts(frame.drop("score"), model_version="v1")


def test_ids_of_a_frame_with_repeats_stored_flows_and_more_flows_than_one_lookup(store: AlertStore) -> None:
    first = store.save_alerts(scored(4), model_version="v1")
    # a flow twice in one frame, two flows stored before, and enough new ones for several id lookups
    frame = pl.concat(
        [scored(1, offset=900), scored(2, offset=2), scored(1200, offset=1000), scored(1, offset=900)]
    )
    added = store.save_alerts(frame, model_version="v1")
    assert added.new == 1201
    assert added.ids[0] == added.ids[-1], "a flow twice in a frame is one alert"
    assert added.ids[1:3] == first.ids[2:4], "flows stored before keep their ids"
    assert len(set(added.ids)) == 1203 and min(added.ids[3:-1]) > max(first.ids)
    assert added.ids[3:-1] == sorted(added.ids[3:-1]), "new alerts are numbered in frame order"
    assert store.count_alerts() == 1205
    for identifier, spt in ((added.ids[0], 40900), (added.ids[3], 41000), (added.ids[-2], 42199)):
        alert = store.get_alert(identifier)
        assert alert is not None and alert["spt"] == spt


def test_non_finite_flow_values_are_stored_as_null(store: AlertStore) -> None:
    frame = scored(3).with_columns(pl.Series("duration", [float("nan"), float("inf"), 2.5]))
    ids = store.add_alerts(frame, model_version="v1")
    durations = [store.get_alert(i)["flow"]["duration"] for i in ids]  # type: ignore[index]
    assert durations == [None, None, 2.5]
    expected = flow_key(
        frame.drop("score", "threshold", "alert", "class", "top_features", "row").row(0, named=True)
    )
    assert expected == flow_key(store.get_alert(ids[0])["flow"])  # type: ignore[index]
    with pytest.raises(StoreError, match="row 2: score and threshold must be finite"):
        store.add_alerts(
            scored(3).with_columns(pl.Series("score", [1.0, float("nan"), 2.0])), model_version="v2"
        )
    assert store.count_alerts(model_version="v2") == 0


def test_an_alert_keeps_its_whole_flow(store: AlertStore) -> None:
    (identifier,) = store.add_alerts(scored(1, offset=3), model_version="v1")
    alert = store.get_alert(identifier)
    assert alert is not None
    assert alert["time"] == "2020-12-04T10:00:03.000000Z"
    assert alert["top_features"] == [{"feature": "out_bytes_log", "contribution": 3.5, "value": "103"}]
    assert alert["flow"] == {
        "time": "2020-12-04T10:00:03.000000Z",
        "src": "10.0.0.1",
        "dst": "10.0.1.3",
        "spt": 40003,
        "dpt": 443,
        "proto": "tcp",
        "app": "https",
        "label": "normal",
        "duration": 1.5,
        "cnt_src": 3,
    }
    assert alert["feedback"] == [] and store.get_alert(identifier + 1000) is None
    flows = store.alert_flows()
    assert flows["time"].dtype == TIME_DTYPE and flows["spt"].dtype == pl.Int64
    assert flows.select("src", "spt", "duration", "cnt_src", "alert_id").row(0) == (
        "10.0.0.1",
        40003,
        1.5,
        3,
        identifier,
    )
    key = flow_key({k: v for k, v in scored(1, offset=3).row(0, named=True).items() if k in alert["flow"]})
    assert key == flow_key(alert["flow"])


def test_filters_orders_and_pages(store: AlertStore) -> None:
    store.add_alerts(scored(30), model_version="v1")
    store.add_alerts(scored(10, offset=50, src="10.0.0.2"), model_version="v2")
    assert store.count_alerts() == 40
    assert store.count_alerts(src="10.0.0.2") == 10
    assert store.count_alerts(model_version="v1") == 30
    assert store.count_alerts(min_score=35.0) == 5 + 10
    assert store.count_alerts(since=START + timedelta(seconds=10), until="2020-12-04T10:00:20Z") == 10
    by_score = store.list_alerts(order="score_desc", limit=5)
    assert [a["score"] for a in by_score] == [69.0, 68.0, 67.0, 66.0, 65.0]
    oldest = store.list_alerts(order="time_asc", limit=3, offset=2)
    assert [a["spt"] for a in oldest] == [40002, 40003, 40004]
    first = store.list_alerts(limit=1)[0]
    store.add_feedback(first["id"], "confirmed", attack_class="Probing-Port sweep", analyst="ana")
    assert store.count_alerts(status="confirmed") == 1
    assert store.count_alerts(status=["new", "confirmed"]) == 40
    assert store.count_alerts(attack_class="Probing-Port sweep") == 1
    for bad in ({"status": "done"}, {"order": "random"}, {"min_score": float("nan")}, {"since": "someday"}):
        with pytest.raises(StoreError):
            store.list_alerts(**bad)  # type: ignore[arg-type]
    summary = store.summary()
    assert summary["total"] == 40 and summary["by_status"]["confirmed"] == 1
    assert summary["by_model_version"] == {"v1": 30, "v2": 10}


def test_feedback_history_and_rules(store: AlertStore) -> None:
    first, second = store.add_alerts(scored(2), model_version="v1")
    store.add_feedback(first, "false_positive", note="backup window", analyst="ana")
    store.add_feedback(first, "confirmed", attack_class="DDOS-smurf", analyst="bo")
    alert = store.get_alert(first)
    assert alert["status"] == "confirmed" and alert["confirmed_class"] == "DDOS-smurf"
    assert [(f["verdict"], f["analyst"], f["note"]) for f in alert["feedback"]] == [
        ("false_positive", "ana", "backup window"),
        ("confirmed", "bo", ""),
    ]
    store.add_feedback(second, "known_benign", analyst="ana")
    frame = store.feedback_frame()
    assert frame["alert_id"].to_list() == [first, second]
    assert frame["verdict"].to_list() == ["confirmed", "known_benign"], "the latest verdict counts"
    assert frame["attack_class"].to_list() == ["DDOS-smurf", None]
    assert frame["reviewed"].dtype == TIME_DTYPE and frame["time"].dtype == TIME_DTYPE
    assert {"src", "dst", "spt", "duration", "cnt_src"} <= set(frame.columns)
    with pytest.raises(StoreError, match="attack class"):
        store.add_feedback(second, "confirmed", analyst="ana")
    with pytest.raises(StoreError, match="takes no attack class"):
        store.add_feedback(second, "false_positive", attack_class="x", analyst="ana")
    with pytest.raises(StoreError, match="unknown verdict"):
        store.add_feedback(second, "maybe", analyst="ana")
    with pytest.raises(StoreError, match="analyst"):
        store.add_feedback(second, "known_benign", analyst="")
    with pytest.raises(AlertNotFoundError):
        store.add_feedback(999, "known_benign", analyst="ana")
    with pytest.raises(StoreError, match="Unicode"):
        store.add_feedback(second, "known_benign", analyst="ana", note="\ud800")
    assert len(store.get_alert(second)["feedback"]) == 1, "a refused verdict leaves nothing behind"
    empty = AlertStore(store.path.with_name("empty.db"))
    assert empty.feedback_frame().height == 0
    empty.close()


def test_concurrent_writers_in_threads(store: AlertStore) -> None:
    failures: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            for batch in range(15):
                ids = store.add_alerts(scored(20, offset=worker * 10_000 + batch * 20), model_version="v1")
                store.add_feedback(ids[0], "known_benign", analyst=f"w{worker}")
                store.list_alerts(limit=5)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert store.count_alerts() == 4 * 15 * 20
    assert store.count_alerts(status="known_benign") == 4 * 15
    assert store.integrity_check() == "ok"


WRITER = """
import sys
from datetime import timedelta
sys.path.insert(0, {root!r})
from tests.test_store import scored
from nadkit.alerts.store import AlertStore

store = AlertStore({db!r})
worker = int(sys.argv[1])
for batch in range(int(sys.argv[2])):
    ids = store.add_alerts(scored(25, offset=worker * 100_000 + batch * 25), model_version="v1")
    print(batch, ids[0], ids[-1], flush=True)
"""


def _writer(tmp_path: Path, db: Path, worker: int, batches: int) -> subprocess.Popen[str]:
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(root=str(Path(__file__).resolve().parents[1]), db=str(db)))
    return subprocess.Popen(
        [sys.executable, str(script), str(worker), str(batches)], stdout=subprocess.PIPE, text=True
    )


def test_concurrent_writer_processes(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    AlertStore(db).close()
    writers = [_writer(tmp_path, db, worker, 40) for worker in range(3)]
    with AlertStore(db) as reader:
        while any(w.poll() is None for w in writers):
            reader.list_alerts(limit=10)
            reader.count_alerts()
            time.sleep(0.02)
        for writer in writers:
            assert writer.wait() == 0
        assert reader.count_alerts() == 3 * 40 * 25
        assert reader.integrity_check() == "ok"


def test_committed_alerts_survive_a_killed_writer(tmp_path: Path) -> None:
    db = tmp_path / "killed.db"
    AlertStore(db).close()
    writer = _writer(tmp_path, db, 1, 100_000)
    committed: list[tuple[int, int]] = []
    assert writer.stdout is not None
    for line in writer.stdout:
        _, first, last = map(int, line.split())
        committed.append((first, last))
        if len(committed) == 30:
            break
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    assert writer.returncode == -signal.SIGKILL
    with AlertStore(db) as store:
        assert store.integrity_check() == "ok"
        count = store.count_alerts()
        assert count >= 30 * 25 and count % 25 == 0, "a batch is stored whole or not at all"
        for first, last in committed:
            assert last - first == 24
            for identifier in (first, last):
                alert = store.get_alert(identifier)
                assert alert is not None and alert["flow"]["src"] == "10.0.0.1"
        ids = [a["id"] for a in store.list_alerts(limit=100_000, order="id_asc")]
        assert ids == list(range(1, count + 1))
        assert json.loads(json.dumps(store.list_alerts(limit=1)))  # readable as JSON
        # the store is still writable after the crash
        assert len(store.add_alerts(scored(3, offset=999_999), model_version="v1")) == 3


def test_alerts_keep_their_severity_and_explanation(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.db")
    top = pl.List(
        pl.Struct(
            {
                "feature": pl.String,
                "contribution": pl.Float64,
                "value": pl.String,
                "label": pl.String,
                "share": pl.Float64,
                "normal": pl.String,
            }
        )
    )
    frame = pl.DataFrame(
        {
            "row": [1],
            "time": [START],
            "src": ["10.0.0.1"],
            "dst": ["10.0.0.2"],
            "score": [12.0],
            "threshold": [2.0],
            "score_percentile": [99.995],
            "threshold_multiple": [6.0],
            "severity": ["high"],
            "alert": [True],
            "class": [None],
            "top_features": [
                [
                    {
                        "feature": "out_bytes",
                        "contribution": 9.0,
                        "value": "812",
                        "label": "bytes sent",
                        "share": 75.0,
                        "normal": "40-600",
                    }
                ]
            ],
            "explanation": ["bytes sent: 812 (normal: 40-600), 75% of the score"],
        },
        schema_overrides={"class": pl.String, "top_features": top},
    )
    (alert_id,) = store.add_alerts(frame, model_version="v1")
    alert = store.get_alert(alert_id)
    assert alert is not None
    assert (alert["severity"], alert["score_percentile"], alert["threshold_multiple"]) == (
        "high",
        99.995,
        6.0,
    )
    assert alert["explanation"].startswith("bytes sent: 812")
    assert alert["top_features"][0] == {
        "feature": "out_bytes",
        "contribution": 9.0,
        "value": "812",
        "label": "bytes sent",
        "share": 75.0,
        "normal": "40-600",
    }
    assert store.schema_version == 4
