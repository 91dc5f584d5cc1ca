"""The feedback loop: which flows a challenger learns from, a retrained model raising fewer
alerts on the flows analysts marked benign, and a comparison that names a better model only when
the held-out feedback supports it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from nadkit.alerts.store import AlertStore
from nadkit.detection.detect import score_flows
from nadkit.errors import ConfigError
from nadkit.evaluation.split import unsupervised_split
from nadkit.lifecycle.feedback import (
    ALL_BENIGN,
    CHALLENGER_BETTER,
    CHAMPION_BETTER,
    HELD_OUT_ATTACKS,
    HELD_OUT_BENIGN,
    NOT_ENOUGH_EVIDENCE,
    TRADE_OFF,
    TRAFFIC_ROW,
    EvidenceRule,
    Measure,
    decide,
    labelled_feedback,
    loop_data,
    match_flows,
    retrain,
    split_feedback,
    wilson_interval,
)
from nadkit.lifecycle.registry import ModelRegistry
from nadkit.schema import NORMAL, TIME_DTYPE
from nadkit.training.bundle import ModelBundle
from tests.e2e.test_cli_plot import run
from tests.service.helpers import Kit, registry_with, session_kit
from tests.test_store import scored

START = datetime(2020, 12, 4, 10, 0, tzinfo=UTC)


def traffic(rows: int = 100) -> pl.DataFrame:
    """Flows matching the rows ``scored()`` builds (the same time, addresses and ports)."""
    return pl.DataFrame(
        {
            "time": [START + timedelta(seconds=i) for i in range(rows)],
            "src": ["10.0.0.1"] * rows,
            "dst": [f"10.0.1.{i % 250}" for i in range(rows)],
            "spt": [40000 + i for i in range(rows)],
            "dpt": [443] * rows,
            "proto": ["tcp"] * rows,
            "app": ["https"] * rows,
            "duration": [0.5 * i for i in range(rows)],
            "cnt_src": [i % 7 for i in range(rows)],
        },
        schema_overrides={"time": TIME_DTYPE},
    )


@pytest.fixture()
def reviewed(tmp_path: Path) -> AlertStore:
    """Alerts on flows 0-39 of ``traffic()``: 0-19 marked benign, 20-29 confirmed, 30-39 unreviewed."""
    store = AlertStore(tmp_path / "alerts.db")
    ids = store.add_alerts(scored(40), model_version="v1")
    for identifier in ids[:10]:
        store.add_feedback(identifier, "false_positive", analyst="ana")
    for identifier in ids[10:20]:
        store.add_feedback(identifier, "known_benign", note="backup", analyst="ana")
    for identifier in ids[20:30]:
        store.add_feedback(identifier, "confirmed", attack_class="Probing-Port sweep", analyst="bo")
    yield store
    store.close()


def test_labels_come_from_verdicts(reviewed: AlertStore) -> None:
    frame = labelled_feedback(reviewed)
    assert frame.height == 30
    assert frame.filter(pl.col("verdict") != "confirmed")["label"].unique().to_list() == [NORMAL]
    assert frame.filter(pl.col("verdict") == "confirmed")["label"].unique().to_list() == [
        "Probing-Port sweep"
    ]


def test_the_feedback_hold_out_is_stable_and_never_empties_a_kind(reviewed: AlertStore) -> None:
    frame = labelled_feedback(reviewed)
    split = split_feedback(frame, fraction=0.3, seed=4)
    assert split.counts() == {
        "train_benign": 14,
        "train_attacks": 7,
        "held_out_benign": 6,
        "held_out_attacks": 3,
    }
    again = split_feedback(frame.reverse(), fraction=0.3, seed=4)
    assert sorted(again.held_out["alert_id"].to_list()) == sorted(split.held_out["alert_id"].to_list())
    one = split_feedback(frame.head(1), fraction=0.5)
    assert one.train.height == 1 and one.held_out.height == 0
    assert split_feedback(frame, fraction=0.0).held_out.height == 0
    with pytest.raises(ConfigError):
        split_feedback(frame, fraction=1.0)


def test_matching_stored_flows_to_new_traffic(reviewed: AlertStore) -> None:
    flows = reviewed.alert_flows()
    rows = match_flows(traffic(), flows)
    assert rows.to_list() == list(range(40))
    assert match_flows(traffic().drop("time", "src"), flows).null_count() == 40


def _keys(frame: pl.DataFrame) -> set[int]:
    return set((frame["spt"] - 40000).to_list())


def test_unsupervised_training_never_sees_confirmed_or_unreviewed_alerts(reviewed: AlertStore) -> None:
    split = split_feedback(labelled_feedback(reviewed), fraction=0.3, seed=0)
    loop = loop_data(traffic(), reviewed.alert_flows(), split, supervised=False, benign_weight=3)
    table = loop.table
    held = _keys(split.held_out)
    benign_train = _keys(split.train.filter(pl.col("verdict") != "confirmed"))
    confirmed_train = _keys(split.train.filter(pl.col("verdict") == "confirmed"))
    counts = dict(zip(*np.unique((table["spt"] - 40000).to_numpy(), return_counts=True), strict=True))
    assert all(counts[k] == 3 for k in benign_train), "benign reviews repeated by the weight"
    assert all(counts[k] == 1 for k in confirmed_train)
    assert not (held | set(range(30, 40))) & set(counts), "held-out reviews and unreviewed alerts left out"
    assert all(counts[k] == 1 for k in range(40, 100)), "the rest of the traffic stays, once"
    assert loop.dropped == 40
    assert table.filter(pl.col("spt") - 40000 < 20)["label"].unique().to_list() == [NORMAL]
    assert table["time"].is_sorted()
    trained_on = unsupervised_split(table.drop(TRAFFIC_ROW), holdout_fraction=0.3, seed=0).train
    assert not _keys(trained_on) & (confirmed_train | set(range(30, 40)) | held)
    # every reviewed flow has its row in the comparison table
    rows = loop.reviewed.sort("alert_id")["evaluation_row"].to_list()
    assert rows == list(range(30)) and loop.evaluation.height == 100


def test_unreviewed_alerts_the_traffic_labels_as_attacks_only_set_the_threshold(reviewed: AlertStore) -> None:
    split = split_feedback(labelled_feedback(reviewed), fraction=0.3, seed=0)
    labels = [("Probing-Nmap" if 30 <= i < 35 else NORMAL) for i in range(100)]
    labelled = traffic().with_columns(pl.Series("label", labels))
    loop = loop_data(labelled, reviewed.alert_flows(), split, supervised=False)
    kept = _keys(loop.table)
    assert set(range(30, 35)) <= kept and not set(range(35, 40)) & kept
    trained_on = unsupervised_split(loop.table.drop(TRAFFIC_ROW), holdout_fraction=0.3, seed=0).train
    assert not _keys(trained_on) & set(range(30, 40))


def test_supervised_training_learns_every_verdict(reviewed: AlertStore) -> None:
    split = split_feedback(labelled_feedback(reviewed), fraction=0.3, seed=0)
    labelled = traffic().with_columns(pl.lit(NORMAL).alias("label"))
    loop = loop_data(labelled, reviewed.alert_flows(), split, supervised=True, benign_weight=2)
    counts = dict(zip(*np.unique((loop.table["spt"] - 40000).to_numpy(), return_counts=True), strict=True))
    confirmed_train = _keys(split.train.filter(pl.col("verdict") == "confirmed"))
    assert all(counts[k] == 2 for k in confirmed_train)
    assert set(
        loop.table.filter(pl.col("spt") - 40000 >= 20).filter(pl.col("spt") - 40000 < 30)["label"]
    ) == {"Probing-Port sweep"}
    assert all(counts[k] == 1 for k in range(30, 40)), "unreviewed alerts keep the traffic's own label"
    unlabelled = loop_data(traffic(), reviewed.alert_flows(), split, supervised=True).table
    assert unlabelled.filter(pl.col("spt") - 40000 >= 30)["label"].null_count() == 70, (
        "flows without a label are left for the supervised split to drop"
    )


def test_reviewed_flows_missing_from_the_traffic_are_added(reviewed: AlertStore) -> None:
    split = split_feedback(labelled_feedback(reviewed), fraction=0.3, seed=0)
    other_day = traffic().with_columns(pl.col("time") + timedelta(days=1))
    loop = loop_data(other_day, reviewed.alert_flows(), split, supervised=False, benign_weight=2)
    assert loop.dropped == 0
    assert loop.evaluation.height == 100 + 30
    assert sorted(loop.reviewed["evaluation_row"].to_list()) == list(range(100, 130))


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return session_kit(tmp_path_factory)


def test_retrained_model_alerts_less_on_flows_marked_benign(kit: Kit, tmp_path: Path) -> None:
    champion = ModelBundle.load(kit.bundle)
    flows = kit.test_flows()
    result = score_flows(champion, flows)
    alerts = result.filter(pl.col("alert"))
    store = AlertStore(tmp_path / "alerts.db")
    ids = store.add_alerts(alerts, model_version="v1")
    # the analysts know the truth of the simulated traffic
    for identifier, label in zip(ids, alerts["label"].to_list(), strict=True):
        if label == NORMAL:
            store.add_feedback(identifier, "false_positive", analyst="ana")
        else:
            store.add_feedback(identifier, "confirmed", attack_class=label, analyst="ana")
    outcome = retrain(
        champion, store, kit.test_day, tmp_path / "challenger", champion_name="v1", benign_weight=10
    )
    comparison = outcome.comparison
    held = comparison.measure(HELD_OUT_BENIGN)
    assert held.rows > 10
    # the reviewed flows are scored again inside the comparison's table (another day's traffic
    # around them), so a feature that counts neighbouring flows may move one across the threshold
    assert held.champion >= 0.99, "nearly every marked flow is still an alert of the champion"
    assert held.challenger < 0.7 * held.champion, comparison.to_dict()
    assert comparison.measure(ALL_BENIGN).improved
    attacks = comparison.measure(HELD_OUT_ATTACKS)
    assert attacks.rows and attacks.challenger >= 0.5, comparison.to_dict()
    # enough held-out feedback, and the intervals of the benign alert rates lie apart
    verdict = comparison.verdict
    assert verdict is not None and verdict.enough_feedback, comparison.to_dict()
    assert verdict.outcome == CHALLENGER_BETTER and held.evidence == "better", comparison.to_dict()
    for measure in (held, attacks):
        for rate, interval in (
            (measure.champion, measure.champion_interval),
            (measure.challenger, measure.challenger_interval),
        ):
            assert interval is not None and interval[0] <= rate <= interval[1]
    saved = ModelBundle.load(tmp_path / "challenger")
    recorded = json.loads((tmp_path / "challenger" / "metrics.json").read_text())["retrain"]
    assert recorded["parent_version"] == "v1" and recorded["feedback"] == outcome.feedback
    assert recorded["comparison"]["verdict"]["outcome"] == CHALLENGER_BETTER
    assert saved.training_rows is not None, "saving the comparison kept the training row hashes"
    assert saved.detector.name == "ae" and saved.threshold.method in ("f_beta", "quantile")
    with pytest.raises(ConfigError, match="already exists"):
        retrain(champion, store, kit.test_day, tmp_path / "challenger")
    store.close()


def test_wilson_intervals() -> None:
    low, high = wilson_interval(10, 10)  # type: ignore[misc]
    assert high == 1.0 and low == pytest.approx(0.7225, abs=1e-4)
    low, high = wilson_interval(0, 10)  # type: ignore[misc]
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)
    low, high = wilson_interval(50, 100)  # type: ignore[misc]
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert wilson_interval(0, 0) is None
    wide, narrow = wilson_interval(5, 10, 0.99), wilson_interval(5, 10, 0.9)
    assert wide[0] < narrow[0] and wide[1] > narrow[1]  # type: ignore[index]
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def _held_out(benign: tuple[int, int, int], attacks: tuple[int, int, int]) -> list[Measure]:
    """Held-out lines from (flows, champion alerts, challenger alerts) of each kind."""
    return [
        Measure(
            HELD_OUT_BENIGN, benign[1] / benign[0], benign[2] / benign[0], benign[0], "lower", *benign[1:]
        ),
        Measure(
            HELD_OUT_ATTACKS,
            attacks[1] / attacks[0],
            attacks[2] / attacks[0],
            attacks[0],
            "higher",
            *attacks[1:],
        ),
    ]


def test_a_better_model_is_named_only_on_enough_separated_feedback() -> None:
    # one flow of each kind: the old point comparison called the challenger better on it
    tiny = decide(_held_out((1, 1, 0), (1, 1, 1)))
    assert tiny.outcome == NOT_ENOUGH_EVIDENCE and not tiny.enough_feedback
    assert "2 held-out reviewed flow(s)" in tiny.reason and "minimum" in tiny.reason
    assert "at least 50 held-out reviewed flows" in tiny.reason
    few_attacks = decide(_held_out((60, 60, 5), (9, 9, 9)))
    assert few_attacks.outcome == NOT_ENOUGH_EVIDENCE and "10 confirmed attacks" in few_attacks.reason
    assert decide(_held_out((60, 60, 5), (9, 9, 9)), EvidenceRule(per_kind=5)).outcome == CHALLENGER_BETTER
    clear = decide(_held_out((40, 40, 8), (20, 20, 19)))
    assert clear.outcome == CHALLENGER_BETTER and clear.challenger_better and clear.enough_feedback
    # fewer alerts on benign flows, but the intervals overlap: no winner
    close = decide(_held_out((40, 40, 33), (20, 20, 20)))
    assert close.outcome == NOT_ENOUGH_EVIDENCE and close.enough_feedback and "overlap" in close.reason
    assert decide(_held_out((40, 40, 40), (20, 20, 5))).outcome == CHAMPION_BETTER
    assert decide(_held_out((40, 40, 2), (20, 20, 5))).outcome == TRADE_OFF
    with pytest.raises(ConfigError):
        EvidenceRule(flows=0)


def _review(store: AlertStore, alerts: pl.DataFrame, ids: list[int], benign: int, attacks: int) -> None:
    """The analysts review ``benign`` false alerts and ``attacks`` true ones (they know the simulated
    truth)."""
    left = {"benign": benign, "attacks": attacks}
    for identifier, label in zip(ids, alerts["label"].to_list(), strict=True):
        kind = "benign" if label == NORMAL else "attacks"
        if left[kind] <= 0:
            continue
        left[kind] -= 1
        if kind == "benign":
            store.add_feedback(identifier, "false_positive", analyst="ana")
        else:
            store.add_feedback(identifier, "confirmed", attack_class=label, analyst="ana")
    assert left == {"benign": 0, "attacks": 0}


def _store_with_reviews(kit: Kit, path: Path, benign: int, attacks: int) -> AlertStore:
    champion = ModelBundle.load(kit.bundle)
    alerts = score_flows(champion, kit.test_flows()).filter(pl.col("alert"))
    store = AlertStore(path)
    ids = store.add_alerts(alerts, model_version="v1")
    _review(store, alerts, ids, benign, attacks)
    return store


def test_retrain_on_tiny_feedback_names_no_winner_and_prints_the_minimum(
    kit: Kit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "alerts.db"
    _store_with_reviews(kit, db, benign=2, attacks=2).close()
    models = tmp_path / "models"
    registry_with(kit, models)
    settings = tmp_path / "quick.yaml"
    settings.write_text("epochs: 3\n")
    args = ("retrain", "--bundle", "v1", "--db", db, "--models", models, "--data", kit.test_day)
    code, out, err = run(capsys, *args, tmp_path / "challenger", "--config", settings)
    assert code == 0, err
    assert "not enough evidence" in out and "2 held-out reviewed flow(s)" in out, out
    text = " ".join(out.split())
    assert "the minimum to name a better model is at least 50 held-out reviewed flows, with 10" in text, out
    assert "--min-held-out (50) and --min-per-kind (10)" in text, out
    assert "v1 stays the active model" in text, out
    registry = ModelRegistry(models)
    assert registry.active_version() == "v1" and [v.version for v in registry.list()] == ["v1", "v2"]

    lowered = ("--min-held-out", "2", "--min-per-kind", "1")
    # the same with the spelling the help shows: BUNDLE DATA --out
    again = ("retrain", "v1", kit.test_day, "--db", db, "--models", models, "--out", tmp_path / "again")
    code, out, err = run(capsys, *again, "--config", settings, "--no-register", "--json", *lowered)
    assert code == 0, err
    result = json.loads(out)
    verdict = result["verdict"]
    assert verdict["held_out"] == {"flows": 2, "benign": 1, "attacks": 1} and verdict["enough_feedback"]
    assert verdict["outcome"] == NOT_ENOUGH_EVIDENCE, "one flow of each kind cannot separate the intervals"
    held = next(m for m in result["measures"] if m["name"] == HELD_OUT_BENIGN)
    assert held["rows"] == 1 and held["champion_interval"][0] < 0.25 and held["evidence"] == "unclear"


def test_retrain_on_enough_feedback_shows_intervals(
    kit: Kit, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "alerts.db"
    _store_with_reviews(kit, db, benign=150, attacks=50).close()
    models = tmp_path / "models"
    registry_with(kit, models)
    args = ("retrain", "--bundle", "v1", "--db", db, "--models", models, "--data", kit.test_day)
    code, out, err = run(capsys, *args, tmp_path / "challenger")
    assert code == 0, err
    assert "v1 [95% interval]" in out and "v2 [95% interval]" in out, out
    assert "100.0% [" in out, "the champion alerted on every reviewed flow; its interval is shown"
    assert "challenger better" in out and "minimum" not in out, out
    assert "activate with: nadkit models activate v2" in " ".join(out.split()), out
    assert ModelRegistry(models).active_version() == "v1", "the comparison never activates"


def test_one_verdict_per_incident_feeds_the_retraining(kit: Kit, tmp_path: Path) -> None:
    """Alerts grouped into incidents, one verdict given per incident (the majority truth of its
    alerts, as an analyst reading it would): every alert is cleared, none is left out of the
    retraining, and the feedback counts are the alerts'."""
    from nadkit.alerts.incident_tracker import IncidentTracker

    champion = ModelBundle.load(kit.bundle)
    alerts = score_flows(champion, kit.test_flows()).filter(pl.col("alert"))
    store = AlertStore(tmp_path / "alerts.db")
    ids = store.add_alerts(alerts, model_version="v1")
    tracker = IncidentTracker()
    found = tracker.update(alerts.with_columns(pl.Series("alert_id", ids, dtype=pl.Int64)))
    store.incidents.record(found, model_version="v1", tracker=tracker)
    incidents = store.incidents.list(limit=10_000)
    assert 0 < len(incidents) < len(ids)
    labels = dict(zip(ids, alerts["label"].to_list(), strict=True))
    for incident in incidents:
        members = [a["id"] for a in store.list_alerts(incident_id=incident["id"], limit=100_000)]
        attacks = [labels[i] for i in members if labels[i] != NORMAL]
        if len(attacks) * 2 > len(members):
            kind = max(set(attacks), key=attacks.count)
            store.incidents.give_verdict(incident["id"], "confirmed", attack_class=kind, analyst="ana")
        else:
            store.incidents.give_verdict(incident["id"], "false_positive", analyst="ana")
    assert store.count_alerts(status="new") == 0
    outcome = retrain(champion, store, kit.test_day, tmp_path / "challenger", champion_name="v1")
    # every alert's verdict is feedback the retraining uses (none left out as unreviewed)
    assert sum(outcome.feedback.values()) == len(set(ids)), outcome.feedback
    store.close()


def test_retraining_keeps_the_champions_feature_groups(kit: Kit, tmp_path: Path) -> None:
    """A champion trained with other feature groups than its model's default (here the calendar
    added, the port group left out) gives a challenger with the same groups."""
    from nadkit.features.pipeline import GROUP_NAMES, FeatureConfig
    from nadkit.models import REGISTRY
    from nadkit.training.fit import fit

    groups = (*(g for g in GROUP_NAMES if g != "port"), "calendar")
    flows = kit.test_flows()
    config = REGISTRY["ae"].test_config().to_dict()
    champion = fit(flows, model="ae", config=config, features=FeatureConfig(groups=groups)).bundle
    champion.save(tmp_path / "champion")
    champion = ModelBundle.load(tmp_path / "champion")
    store = AlertStore(tmp_path / "alerts.db")
    alerts = score_flows(champion, flows).filter(pl.col("alert"))
    for identifier in store.add_alerts(alerts.head(4), model_version="v1"):
        store.add_feedback(identifier, "false_positive", analyst="ana")
    outcome = retrain(champion, store, kit.test_day, tmp_path / "challenger", champion_name="v1")
    challenger = ModelBundle.load(outcome.path)
    assert champion.pipeline is not None and challenger.pipeline is not None
    assert challenger.pipeline.config.groups == champion.pipeline.config.groups == groups
    assert not any(name.startswith(("spt_area", "dpt_area")) for name in challenger.detector.feature_names_)
    store.close()
