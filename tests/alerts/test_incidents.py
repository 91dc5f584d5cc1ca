"""Incidents: attack shapes become one incident each, episodes split on the idle gap, the summary's
figures, stable ids, a tracker that gives the incidents of one batch whatever the batches, its JSON
state, the settings' checks, and the speed on a million alerts."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import polars as pl
import pytest

from nadkit.alerts.incident_tracker import IncidentTracker
from nadkit.alerts.incidents import (
    IncidentConfig,
    Incidents,
    group_alerts,
    incident_id,
)
from nadkit.errors import ConfigError, SchemaError

START = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
TOP_FEATURE = pl.Struct({"feature": pl.String, "contribution": pl.Float64, "value": pl.String})


def _listed(value: Any, n: int) -> list[Any]:
    return list(value) if isinstance(value, list | range) else [value] * n


def alerts(
    src: Any,
    dst: Any,
    dpt: Any,
    seconds: Sequence[float],
    *,
    score: Any = 3.0,
    threshold: float = 1.0,
    proto: str = "tcp",
    cls: Any = None,
    feature: Any = "seg_flows",
    alert: Any = True,
) -> pl.DataFrame:
    """Alert records shaped like the scorer's, one per entry of ``seconds`` (after START)."""
    n = len(seconds)
    features = _listed(feature, n)
    return pl.DataFrame(
        {
            "time": [START + timedelta(seconds=s) for s in seconds],
            "src": _listed(src, n),
            "dst": _listed(dst, n),
            "spt": [40_000 + i % 20_000 for i in range(n)],
            "dpt": _listed(dpt, n),
            "proto": [proto] * n,
            "app": [None] * n,
            "score": [float(s) for s in _listed(score, n)],
            "threshold": [threshold] * n,
            "alert": _listed(alert, n),
            "class": _listed(cls, n),
            "top_features": [[{"feature": f, "contribution": 1.0, "value": "1"}] for f in features],
            "out_bytes": [60] * n,
            "in_bytes": [0] * n,
        },
        schema_overrides={
            "app": pl.String,
            "class": pl.String,
            "dpt": pl.Int64,
            "top_features": pl.List(TOP_FEATURE),
        },
    )


def numbered(*parts: pl.DataFrame) -> pl.DataFrame:
    """Parts as one table in time order, with ``row`` and a unique ``alert_id``."""
    frame = pl.concat(parts).sort("time", maintain_order=True)
    return frame.with_columns(
        pl.int_range(1, frame.height + 1).alias("row"),
        pl.format("a{}", pl.int_range(frame.height)).alias("alert_id"),
    )


def flood(
    sources: int = 3000, *, dst: str = "10.0.0.1", begin: float = 0.0, every: float = 0.2
) -> pl.DataFrame:
    """A spoofed SYN flood: every alert from a new source, one destination."""
    spoofed = [f"100.{i // 62_500}.{i // 250 % 250}.{i % 250 + 1}" for i in range(sources)]
    return alerts(spoofed, dst, 80, [begin + i * every for i in range(sources)], score=30.0)


def attack_mix() -> pl.DataFrame:
    """A flood, a port scan, a brute force, a pair in two episodes and three one-off hosts."""
    return numbered(
        flood(),
        alerts(
            "192.0.2.7", "10.0.0.2", list(range(1, 1001)), [100 + i * 0.2 for i in range(1000)], score=5.0
        ),
        alerts("203.0.113.5", "10.0.0.3", 22, [2.0 * i for i in range(500)], score=2.0, cls="brute"),
        alerts(
            "198.51.100.9",
            "10.0.0.4",
            443,
            [i * 5.0 for i in range(20)] + [2000 + i * 5.0 for i in range(20)],
            score=1.2,
            feature="duration",
        ),
        alerts(
            ["172.16.0.1", "172.16.0.2", "172.16.0.2", "172.16.0.3"],
            ["10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.1"],
            [53, 123, 445, 8080],
            [30, 400, 410, 1500],
        ),
    )


def by_kind(found: Incidents) -> dict[str, list[str]]:
    kinds: dict[str, list[str]] = {}
    for kind, key in found.summary.select("kind", "key").iter_rows():
        kinds.setdefault(kind, []).append(key)
    return {kind: sorted(keys) for kind, keys in kinds.items()}


# -- shapes ----------------------------------------------------------------------------------------


def test_a_spoofed_flood_is_one_flood() -> None:
    found = group_alerts(numbered(flood(5000)))
    assert by_kind(found) == {"flood": ["10.0.0.1"]}
    row = found.summary.row(0, named=True)
    assert (row["alerts"], row["sources"], row["destinations"]) == (5000, 5000, 1)
    assert row["top_destinations"] == [{"value": "10.0.0.1", "count": 5000}]
    assert len(row["top_sources"]) == 5
    assert row["severity"] == "critical"
    assert row["bytes"] == 5000 * 60


def test_a_port_scan_is_one_scan() -> None:
    scan = alerts("192.0.2.7", "10.0.0.2", list(range(1, 1001)), [i * 0.01 for i in range(1000)])
    found = group_alerts(numbered(scan))
    assert by_kind(found) == {"scan": ["192.0.2.7"]}
    row = found.summary.row(0, named=True)
    assert (row["alerts"], row["ports"], row["sources"]) == (1000, 1000, 1)


def test_a_host_sweep_is_a_scan() -> None:
    sweep = alerts("192.0.2.7", [f"10.0.1.{i}" for i in range(1, 255)], 0, [i * 0.1 for i in range(254)])
    found = group_alerts(numbered(sweep.with_columns(proto=pl.lit("icmp"))))
    assert by_kind(found) == {"scan": ["192.0.2.7"]}
    assert found.summary["destinations"][0] == 254


def test_a_brute_force_is_one_pair() -> None:
    found = group_alerts(numbered(alerts("203.0.113.5", "10.0.0.3", 22, [2.0 * i for i in range(500)])))
    assert by_kind(found) == {"pair": ["203.0.113.5->10.0.0.3"]}
    assert found.summary["alerts"][0] == 500


def test_a_pair_idle_longer_than_the_gap_is_two_incidents() -> None:
    seconds = [i * 5.0 for i in range(20)] + [2000 + i * 5.0 for i in range(20)]
    found = group_alerts(numbered(alerts("198.51.100.9", "10.0.0.4", 443, seconds)))
    assert by_kind(found) == {"pair": ["198.51.100.9->10.0.0.4"] * 2}
    assert found.summary["alerts"].to_list() == [20, 20]
    assert found.summary["incident_id"].n_unique() == 2
    # within the gap, the same alerts are one episode
    joined = group_alerts(
        numbered(alerts("198.51.100.9", "10.0.0.4", 443, seconds)), IncidentConfig(gap_s=3600)
    )
    assert joined.summary["alerts"].to_list() == [40]


def test_shapes_take_alerts_in_order_and_every_alert_once() -> None:
    records = attack_mix()
    found = group_alerts(records)
    assert by_kind(found) == {
        "flood": ["10.0.0.1"],
        "scan": ["192.0.2.7"],
        "pair": ["198.51.100.9->10.0.0.4", "198.51.100.9->10.0.0.4", "203.0.113.5->10.0.0.3"],
        "host": ["172.16.0.1", "172.16.0.2", "172.16.0.3"],
    }
    assert found.alerts.height == records.height
    assert found.alerts["incident_id"].null_count() == 0
    assert found.summary["alerts"].sum() == records.height
    for incident in found.summary.iter_rows(named=True):
        rows = found.alerts_of(incident["incident_id"])
        assert rows.height == incident["alerts"]
        assert set(rows["alert_id"]) == set(incident["refs"])
        assert (rows["incident_kind"] == incident["kind"]).all()
    # a source that floods and also scans: the flood takes its alert to the flooded host first
    mixed = numbered(flood(50), alerts("100.0.0.1", "10.0.0.2", list(range(1, 30)), [1.0] * 29))
    kinds = group_alerts(mixed).summary.select("kind", "alerts").rows()
    assert sorted(kinds) == [("flood", 50), ("scan", 29)]


def test_only_alerts_are_grouped() -> None:
    records = numbered(
        alerts("203.0.113.5", "10.0.0.3", 22, [float(i) for i in range(10)], alert=[True, False] * 5)
    )
    found = group_alerts(records)
    assert found.summary["alerts"].to_list() == [5]
    assert found.alerts.height == 5


def test_the_summary() -> None:
    records = numbered(
        alerts(
            "203.0.113.5",
            "10.0.0.3",
            [22, 22, 22, 2222],
            [0.0, 1.0, 2.0, 3.0],
            score=[1.2, 2.0, 4.0, 2.0],
            threshold=2.0,
            cls=["brute", None, "brute", "scan"],
            feature=["a", "b", "b", "c"],
        ).with_columns(pl.lit("udp").alias("proto"))
    )
    row = group_alerts(records).summary.row(0, named=True)
    assert row["kind"] == "pair" and row["key"] == "203.0.113.5->10.0.0.3"
    assert row["first_seen"] == START and row["last_seen"] == START + timedelta(seconds=3)
    assert row["alerts"] == 4 and row["bytes"] == 240
    assert row["peak_score"] == 4.0
    assert row["mean_score"] == pytest.approx(9.2 / 4)
    assert row["peak_ratio"] == 2.0 and row["severity"] == "medium"
    assert row["classes"] == ["brute", "scan"]
    assert (row["top_feature"], row["top_feature_count"]) == ("b", 2)
    assert row["top_ports"] == [{"value": 22, "count": 3}, {"value": 2222, "count": 1}]
    assert row["top_protocols"] == [{"value": "udp", "count": 4}]
    assert row["refs"] == ["a0", "a1", "a2", "a3"]
    # without alert ids, the references are the rows; without byte columns, no bytes
    plain = group_alerts(records.drop("alert_id", "out_bytes", "in_bytes")).summary.row(0, named=True)
    assert plain["refs"] == [1, 2, 3, 4]
    assert plain["bytes"] is None


@pytest.mark.parametrize(
    ("ratio", "severity", "cuts"),
    [
        (1.2, "low", (1.5, 3.0, 10.0)),
        (1.5, "medium", (1.5, 3.0, 10.0)),
        (5.0, "high", (1.5, 3.0, 10.0)),
        (10.0, "critical", (1.5, 3.0, 10.0)),
        (5.0, "medium", (2.0, 6.0, 20.0)),
    ],
)
def test_severity_follows_the_peak_multiple_of_the_threshold(
    ratio: float, severity: str, cuts: tuple[float, float, float]
) -> None:
    records = numbered(
        alerts("10.9.9.9", "10.0.0.3", 22, [0.0, 1.0], score=[1.1, 2.0 * ratio], threshold=2.0)
    )
    found = group_alerts(records, IncidentConfig(severity_cuts=cuts))
    assert found.summary["severity"].to_list() == [severity]


def test_times_as_text_and_alerts_without_time() -> None:
    records = attack_mix()
    as_text = records.with_columns(pl.col("time").dt.to_string("%Y-%m-%dT%H:%M:%S%.6fZ"))
    assert group_alerts(as_text).summary.equals(group_alerts(records).summary)
    # without time, each key's alerts are one episode: both episodes of the pair become one
    untimed = group_alerts(records.drop("time"))
    assert sorted(untimed.summary["kind"]) == ["flood", "host", "host", "host", "pair", "pair", "scan"]
    assert untimed.summary["first_seen"].null_count() == untimed.summary.height
    flood_row = untimed.summary.filter(pl.col("kind") == "flood").row(0, named=True)
    assert flood_row["incident_id"] == incident_id("flood", "10.0.0.1", None)
    # alerts with and without time: the untimed ones form an episode of their own
    nulls = records.with_columns(
        pl.when(pl.col("src") == "203.0.113.5").then(None).otherwise(pl.col("time")).alias("time")
    )
    pairs = group_alerts(nulls).summary.filter(pl.col("key") == "203.0.113.5->10.0.0.3")
    assert pairs["alerts"].to_list() == [500] and pairs["first_seen"].to_list() == [None]


def test_missing_columns_are_named() -> None:
    with pytest.raises(SchemaError, match="dst"):
        group_alerts(attack_mix().drop("dst"))
    # no alerts, no incidents
    empty = group_alerts(attack_mix().with_columns(pl.lit(False).alias("alert")))
    assert empty.summary.height == 0 and empty.alerts.height == 0


# -- identity --------------------------------------------------------------------------------------


def test_ids_are_stable_and_name_kind_key_and_start() -> None:
    records = attack_mix()
    first = group_alerts(records)
    again = group_alerts(records.sample(fraction=1.0, shuffle=True, seed=3))
    assert first.summary.drop("refs").equals(again.summary.drop("refs"))
    row = first.summary.filter(pl.col("kind") == "flood").row(0, named=True)
    assert row["incident_id"] == incident_id("flood", "10.0.0.1", START)
    assert row["incident_id"].startswith("flood-")
    # the same attack an hour later is another incident
    later = group_alerts(records.with_columns(pl.col("time") + timedelta(hours=1)))
    assert set(later.summary["incident_id"]).isdisjoint(first.summary["incident_id"])


# -- the tracker -----------------------------------------------------------------------------------


def tracked(batches: Iterable[pl.DataFrame], tracker: IncidentTracker | None = None) -> dict[str, Any]:
    """Feed ``batches`` to a tracker and close it: the final incidents and each alert's incident."""
    tracker = tracker or IncidentTracker()
    latest: dict[str, dict[str, Any]] = {}
    replaced: dict[str, str] = {}
    assignment: dict[str, str] = {}
    for batch in batches:
        update = tracker.update(batch)
        replaced.update(update.replaced)
        for row in update.summary.iter_rows(named=True):
            replaced.pop(row["incident_id"], None)
            latest[row["incident_id"]] = row
        assignment.update(zip(update.alerts["alert_id"], update.alerts["incident_id"], strict=True))
    for row in tracker.close().iter_rows(named=True):
        latest[row["incident_id"]] = row

    def resolve(incident: str) -> str:
        seen = set()
        while incident in replaced and incident not in seen:
            seen.add(incident)
            incident = replaced[incident]
        return incident

    final = {i: row for i, row in latest.items() if i not in replaced}
    return {"incidents": final, "alerts": {a: resolve(i) for a, i in assignment.items()}}


COMPARED = (
    "kind",
    "key",
    "severity",
    "first_seen",
    "last_seen",
    "alerts",
    "sources",
    "top_sources",
    "destinations",
    "top_destinations",
    "ports",
    "top_ports",
    "protocols",
    "bytes",
    "peak_score",
    "peak_ratio",
    "classes",
    "top_feature",
    "top_feature_count",
)


def assert_same_incidents(got: dict[str, Any], want: Incidents) -> None:
    expected = {row["incident_id"]: row for row in want.summary.iter_rows(named=True)}
    assert sorted(got["incidents"]) == sorted(expected)
    for incident, row in expected.items():
        mine = got["incidents"][incident]
        assert {c: mine[c] for c in COMPARED} == {c: row[c] for c in COMPARED}, incident
        assert mine["mean_score"] == pytest.approx(row["mean_score"])
        assert mine["status"] == "closed"
    assert got["alerts"] == dict(zip(want.alerts["alert_id"], want.alerts["incident_id"], strict=True))


def split(records: pl.DataFrame, cuts: Sequence[float]) -> list[pl.DataFrame]:
    """``records`` cut at fractions ``cuts`` of their rows."""
    edges = [0, *(round(c * records.height) for c in cuts), records.height]
    return [records.slice(a, b - a) for a, b in pairwise(edges)]


@pytest.mark.parametrize(
    "cuts",
    [
        [0.001],
        [0.01],
        [0.2],
        [0.5],
        [0.77],
        [0.999],
        [0.0005, 0.003, 0.3, 0.31, 0.9],
        [i / 40 for i in range(1, 40)],
    ],
)
def test_batches_cut_anywhere_give_the_incidents_of_one_batch(cuts: list[float]) -> None:
    records = attack_mix()
    assert_same_incidents(tracked(split(records, cuts)), group_alerts(records))


def test_batches_cut_at_every_hundredth_alert() -> None:
    records = attack_mix()
    batches = [records.slice(i, 100) for i in range(0, records.height, 100)]
    assert_same_incidents(tracked(batches), group_alerts(records))


def test_live_alerts_over_their_cap_are_kept_as_summaries() -> None:
    records = attack_mix()
    tracker = IncidentTracker(IncidentConfig(max_live_alerts=300))
    batches = split(records, [i / 20 for i in range(1, 20)])
    assert_same_incidents(tracked(batches, tracker), group_alerts(records))


def test_a_tracked_flood_counts_beyond_its_kept_values() -> None:
    tracker = IncidentTracker(IncidentConfig(max_values=100))
    found = tracked(split(numbered(flood(3000)), [0.1, 0.5, 0.9]), tracker)
    (row,) = found["incidents"].values()
    assert (row["alerts"], row["sources"], len(row["top_sources"])) == (3000, 3000, 5)


def test_a_batch_continues_an_open_incident() -> None:
    tracker = IncidentTracker()
    first = tracker.update(numbered(flood(100)))
    assert first.summary.select("kind", "alerts", "status").rows() == [("flood", 100, "open")]
    flood_id = first.summary["incident_id"][0]
    # three more sources 30 s later: too few for a flood alone, but they continue the open one
    more = alerts(["9.9.9.1", "9.9.9.2", "100.0.0.1"], "10.0.0.1", 80, [50.0, 51.0, 52.0])
    second = tracker.update(more)
    row = second.summary.row(0, named=True)
    assert second.summary.height == 1
    assert (row["incident_id"], row["alerts"], row["sources"]) == (flood_id, 103, 102)
    assert row["top_sources"][0] == {"value": "100.0.0.1", "count": 2}
    assert row["last_seen"] == START + timedelta(seconds=52)
    assert set(second.alerts["incident_id"]) == {flood_id}
    assert tracker.incidents()["incident_id"].to_list() == [flood_id]
    # after more than the gap: the flood closes, and three sources are three one-off hosts
    third = tracker.update(alerts(["9.9.9.1", "9.9.9.2", "9.9.9.3"], "10.0.0.1", 80, [900.0, 901.0, 902.0]))
    status = dict(third.summary.select("incident_id", "status").iter_rows())
    assert status.pop(flood_id) == "closed"
    assert sorted(third.summary.filter(pl.col("status") == "open")["kind"]) == ["host"] * 3
    assert flood_id not in set(tracker.incidents()["incident_id"])


def test_alerts_that_turn_into_a_flood_move_there() -> None:
    tracker = IncidentTracker()
    early = tracker.update(numbered(flood(4)))
    assert sorted(early.summary["kind"]) == ["host"] * 4
    later = tracker.update(flood(40, begin=1.0).with_columns(pl.col("src") + "0"))
    flood_id = incident_id("flood", "10.0.0.1", START)
    assert later.summary["incident_id"].to_list() == [flood_id]
    assert later.summary["alerts"][0] == 44
    assert later.replaced == dict.fromkeys(early.summary["incident_id"], flood_id)


def test_state_round_trips_through_json() -> None:
    records = attack_mix()
    first, second = split(records, [0.5])
    tracker = IncidentTracker(IncidentConfig(gap_s=240))
    opened = tracker.update(first)
    assert "flood" in set(opened.summary["kind"])
    text = json.dumps(tracker.state())
    restored = IncidentTracker.from_state(json.loads(text))
    assert restored.config == IncidentConfig(gap_s=240)
    assert restored.watermark == tracker.watermark
    assert restored.incidents().equals(tracker.incidents())
    assert json.dumps(restored.state()) == text
    # the restored tracker carries on as the first would have
    carried = restored.update(second)
    direct = tracker.update(second)
    assert carried.summary.equals(direct.summary)
    assert carried.alerts.equals(direct.alerts)
    assert carried.replaced == direct.replaced


@pytest.mark.parametrize(
    "state",
    [{"version": 99}, {"version": 1}, {"version": 1, "config": {"gap": 3}}, [], {"version": 1, "config": {}}],
)
def test_bad_state_is_a_config_error(state: Any) -> None:
    with pytest.raises(ConfigError):
        IncidentTracker.from_state(state)


def test_close_before_a_time() -> None:
    tracker = IncidentTracker()
    update = tracker.update(attack_mix().filter(pl.col("time") < START + timedelta(seconds=700)))
    # the watermark is the newest alert (698 s): what ended more than the gap before it is closed
    closed_now = update.summary.filter(pl.col("status") == "closed").sort("key")
    assert closed_now.select("kind", "key").rows() == [
        ("host", "172.16.0.1"),
        ("scan", "192.0.2.7"),
        ("pair", "198.51.100.9->10.0.0.4"),
    ]
    assert tracker.incidents().height == 3
    closed = tracker.close(START + timedelta(seconds=650))
    assert sorted(closed["kind"]) == ["flood", "host"]
    assert set(closed["status"]) == {"closed"}
    assert tracker.incidents()["key"].to_list() == ["203.0.113.5->10.0.0.3"]
    assert tracker.close()["key"].to_list() == ["203.0.113.5->10.0.0.3"]
    assert tracker.incidents().height == 0


# -- settings --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        {"gap_s": 0},
        {"gap_s": -5},
        {"gap_s": math.nan},
        {"gap_s": math.inf},
        {"gap_s": "300"},
        {"gap_s": True},
        {"min_flood_sources": 1},
        {"min_scan_targets": 2.5},
        {"min_pair_alerts": True},
        {"top": 0},
        {"max_live_alerts": -1},
        {"severity_cuts": (3.0, 1.5, 10.0)},
        {"severity_cuts": (1.5, 3.0)},
        {"severity_cuts": (0.0, 3.0, 10.0)},
        {"severity_cuts": (1.5, 3.0, math.inf)},
    ],
)
def test_bad_settings_are_config_errors(settings: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        IncidentConfig(**settings)


def test_settings_as_json() -> None:
    config = IncidentConfig(gap_s=60, min_flood_sources=50, severity_cuts=(2, 4, 8))
    assert config.severity_cuts == (2.0, 4.0, 8.0)
    assert IncidentConfig.from_dict(json.loads(json.dumps(config.as_dict()))) == config
    with pytest.raises(ConfigError, match="unknown settings gap"):
        IncidentConfig.from_dict({"gap": 60})


# -- speed -----------------------------------------------------------------------------------------


def million() -> pl.DataFrame:
    """A million alerts over an hour: a 400k-alert spoofed flood, 200 scanners of 1000 ports each, 1000
    brute forces of 200 alerts each, and 200k one-off alerts (100k sources, twice each, 30 min apart)."""
    i = pl.col("i")
    part = pl.when(i < 400_000).then(0).when(i < 600_000).then(1).when(i < 800_000).then(2).otherwise(3)
    address = pl.format("{}.{}.{}", i // 65_536 % 256, i // 256 % 256, i % 256)
    src = (
        pl.when(part == 0)
        .then(pl.format("100.{}", address))
        .when(part == 1)
        .then(pl.format("192.0.2.{}", i % 200))
        .when(part == 2)
        .then(pl.format("203.0.{}.{}", i % 1000 // 250, i % 250))
        .otherwise(pl.format("172.16.{}.{}", i % 100_000 // 250, i % 250))
    )
    dst = (
        pl.when(part == 0)
        .then(pl.lit("10.0.0.1"))
        .when(part == 1)
        .then(pl.format("10.1.0.{}", i % 200))
        .when(part == 2)
        .then(pl.format("10.2.{}.{}", i % 1000 // 250, i % 250))
        .otherwise(pl.format("11.{}", address))
    )
    seconds = i % 200_000 * 3_600_000_000 // 200_000
    return pl.select(pl.int_range(1_000_000, dtype=pl.Int64).alias("i")).select(
        (pl.lit(START) + pl.duration(microseconds=seconds)).alias("time"),
        src.alias("src"),
        dst.alias("dst"),
        pl.lit(40_000, dtype=pl.Int64).alias("spt"),
        pl.when(part == 1).then(i // 200 % 1000 + 1).otherwise(22).alias("dpt"),
        pl.lit("tcp").alias("proto"),
        (2.0 + i % 7).cast(pl.Float64).alias("score"),
        pl.lit(1.0).alias("threshold"),
        pl.lit(True).alias("alert"),
        pl.lit(None, dtype=pl.String).alias("class"),
        pl.concat_list(
            pl.struct(feature=pl.lit("seg_flows"), contribution=pl.lit(1.0), value=pl.lit("1"))
        ).alias("top_features"),
        (i + 1).alias("row"),
    )


@pytest.mark.slow
def test_a_million_alerts_group_in_seconds() -> None:
    records = million()
    started = time.perf_counter()
    found = group_alerts(records)
    took = time.perf_counter() - started
    kinds = found.kinds()
    assert kinds == {"flood": 1, "scan": 200, "pair": 1000, "host": 200_000}
    assert found.summary["alerts"].sum() == 1_000_000
    assert took < 30, f"{took:.1f} s"


def test_an_incident_is_as_severe_as_its_most_severe_alert() -> None:
    """Where the scorer graded the alerts (percentile and multiple), the incident takes the highest
    grade; without grades it follows its peak multiple of the threshold."""
    from datetime import UTC, datetime, timedelta

    start = datetime(2021, 6, 1, tzinfo=UTC)
    records = pl.DataFrame(
        {
            "row": [1, 2, 3],
            "time": [start + timedelta(seconds=i) for i in range(3)],
            "src": ["10.0.0.1"] * 3,
            "dst": ["10.0.0.2"] * 3,
            "dpt": [22] * 3,
            "score": [1.1, 1.2, 1.3],
            "threshold": [1.0] * 3,
            "alert": [True] * 3,
            "severity": ["low", "high", "medium"],
        }
    )
    assert group_alerts(records).summary["severity"].to_list() == ["high"]
    assert group_alerts(records.drop("severity")).summary["severity"].to_list() == ["low"]


def test_alerts_without_addresses_form_no_incidents() -> None:
    """Sources without addresses (UNSW-NB15, NSL-KDD records) alert but group into no incident; so
    do alerts whose addresses are all empty (the store's rows of such flows), and no alerts at all."""
    alerts = attack_mix().drop("src", "dst")
    grouped = group_alerts(alerts)
    assert grouped.summary.height == 0 and grouped.alerts.height == alerts["alert"].sum()
    assert grouped.alerts["incident_id"].null_count() == grouped.alerts.height
    empty = attack_mix().with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in ("src", "dst"))
    assert IncidentTracker().update(empty).summary.height == 0
    assert group_alerts(pl.DataFrame()).summary.height == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_running_maximum_per_key_matches_one_per_key(seed: int) -> None:
    """The single running maximum that episodes use gives each key's own running maximum, whatever
    the ends (repeated, spanning other items, large)."""
    import random

    from nadkit.alerts.incidents import _key_cum_max

    rng = random.Random(seed)
    rows = [
        (f"k{rng.randrange(40)}", start, start + rng.choice([0, 0, 0, rng.randrange(10**9)]))
        for start in (1_700_000_000_000_000 + rng.randrange(10**8) for _ in range(3_000))
    ]
    timed = pl.DataFrame(rows, schema=["_k", "_start", "_end"], orient="row").sort("_k", "_start")
    timed = timed.with_columns(pl.col("_k").rle_id().alias("_g"))
    want = timed.select(pl.col("_end").cum_max().over("_k")).to_series()
    assert timed.select(_key_cum_max(timed.height)).to_series().to_list() == want.to_list()


def test_value_counts_are_ranked_by_count_then_value() -> None:
    from nadkit.alerts.incidents import _ranked

    counts = pl.Series(
        "ports_counts",
        [
            [{"value": 22, "count": 1}],
            [],
            [{"value": 80, "count": 2}, {"value": 443, "count": 5}, {"value": 53, "count": 2}],
            [{"value": 9, "count": 1}, {"value": 8, "count": 1}],
        ],
    )
    ranked = _ranked(counts, 2)
    assert ranked.name == "ports_counts"
    assert ranked.to_list() == [
        [{"value": 22, "count": 1}],
        [],
        [{"value": 443, "count": 5}, {"value": 53, "count": 2}],
        [{"value": 8, "count": 1}, {"value": 9, "count": 1}],
    ]
    single = counts.gather([0, 1])
    assert _ranked(single, 3).to_list() == single.to_list()
