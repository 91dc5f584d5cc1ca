"""Scheduled retraining in the stream: the sample, the decisions the registry keeps, the swap, the
checkpointed version, the rollback, and the measured property on the simulator's day shift (the
fixed model's false-positive rate rises; the retraining stream's stays within a bound)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from benchmarks.continual import per_day, replay, simulated_days

from nadkit.detection.detect import score_flows
from nadkit.errors import ConfigError
from nadkit.lifecycle.feedback import Feedback, split_feedback
from nadkit.lifecycle.registry import ModelRegistry, RegistryError
from nadkit.models import REGISTRY
from nadkit.schema import NORMAL
from nadkit.sources import ROW
from nadkit.stream import FrameSource, StreamConfig, StreamRunner
from nadkit.stream.retraining import (
    ALERT,
    BLOCK,
    SCORE,
    THRESHOLD,
    FlowSample,
    RetrainSettings,
    _decide,
    challenge,
    parse_duration,
)
from nadkit.training.bundle import ModelBundle
from nadkit.training.fit import default_features, fit
from tests.stream.conftest import MemorySink

DAY_US = 86_400_000_000


def test_durations_and_settings() -> None:
    assert parse_duration("1d") == 86_400 and parse_duration("6h") == 21_600 and parse_duration("90") == 90
    assert parse_duration("1.5h") == 5_400
    for bad in ("", "soon", "0d", "-1h", "3y"):
        with pytest.raises(ConfigError):
            parse_duration(bad)
    with pytest.raises(ConfigError, match="--promote"):
        RetrainSettings(every_s=86_400, registry=Path("r"), promote="always")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="at least a minute"):
        RetrainSettings(every_s=5, registry=Path("r"))


def _flows(start_us: int, count: int, step_us: int, first_row: int) -> pl.DataFrame:
    times = start_us + np.arange(count, dtype=np.int64) * step_us
    return pl.DataFrame(
        {
            ROW: np.arange(first_row, first_row + count, dtype=np.int64),
            "time": pl.Series(times).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
            "src": ["10.0.0.1"] * count,
            "label": ["normal"] * count,
        }
    )


def _records(flows: pl.DataFrame, alerts: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame(
        {"row": flows[ROW] + 1, "score": np.where(alerts, 9.0, 1.0), "threshold": 5.0, "alert": alerts}
    )


def test_the_sample_settles_scored_flows_in_blocks_within_its_budget() -> None:
    sample = FlowSample(block_us=DAY_US // 144, max_rows=1_000, seed=0)
    flows = _flows(0, 600, 60_000_000, 0)  # ten hours, one flow a minute
    sample.add(flows)
    assert sample.rows == 0  # nothing is kept before it is scored
    sample.scored(_records(flows.head(400), np.arange(400) % 10 == 0))
    assert sample.rows == 400 and "label" not in sample.blocks[0][0].columns  # the answers are never kept
    sample.scored(_records(flows.tail(200), np.zeros(200, dtype=bool)))
    more = _flows(600 * 60_000_000, 900, 60_000_000, 600)
    sample.add(more)
    sample.scored(_records(more, np.zeros(900, dtype=bool)))
    assert sample.rows <= 1_000 and sample.dropped == 1_500 - sample.rows
    assert all(len({int(b) for p in parts for b in p[BLOCK]}) == 1 for parts in sample.blocks.values())
    bound = 10 * 3_600_000_000
    before = sample.rows_before(bound)
    taken = sample.take(bound)
    assert taken.height == before and taken["time"].is_sorted() and ROW not in taken.columns
    assert sample.rows_before(bound) == 0 and sample.rows == sum(
        p.height for parts in sample.blocks.values() for p in parts
    )


def test_the_registry_keeps_every_decision(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models")
    assert registry.decisions() == []
    registry.record("refusal", "v2", champion="v1", reason="no evidence", figures={"rate": 0.1}, by="test")
    registry.record("promotion", "v3", champion="v1", reason="better", figures={}, by="test")
    kinds = [(d["kind"], d["version"], d["champion"]) for d in registry.decisions()]
    assert kinds == [("refusal", "v2", "v1"), ("promotion", "v3", "v1")]
    assert registry.decisions()[0]["figures"] == {"rate": 0.1}
    with pytest.raises(RegistryError):
        registry.record("shrug", "v2", champion=None, reason="", figures={}, by="test")


def test_a_rollback_swaps_the_previous_version_back(
    bundle: ModelBundle, test_day: tuple[pl.DataFrame, Path], tmp_path: Path
) -> None:
    settings = RetrainSettings(every_s=86_400, registry=tmp_path / "models", probation_rows=1_000)
    runner = StreamRunner(bundle, FrameSource([]), [MemorySink()], StreamConfig(retrain=settings))
    retrainer = runner.retrainer
    assert retrainer is not None and retrainer.version == "v1"
    registry = ModelRegistry(tmp_path / "models")
    assert registry.active_version() == "v1"
    # a promoted model that alerts on every flow, on probation against v1 (which alerts on a few)
    flows = test_day[0].head(1_500).with_row_index(ROW).with_columns(pl.col(ROW).cast(pl.Int64))
    retrainer.probation = {"version": "v1", "rows": 0, "replaced": "v1", "from_row": 0}
    retrainer.add(flows.head(600))
    retrainer.scored(_records(flows.head(600), np.ones(600, dtype=bool)))
    retrainer.step(runner)
    assert retrainer.probation is not None and registry.decisions() == []  # 600 rows: still on probation
    retrainer.add(flows.tail(900))
    retrainer.scored(_records(flows.tail(900), np.ones(900, dtype=bool)))
    old_scorer = runner.scorer
    retrainer.step(runner)
    decisions = registry.decisions()
    assert [d["kind"] for d in decisions] == ["rollback"]
    figures = decisions[0]["figures"]
    assert figures["promoted"]["rate"] == 1.0 and figures["promoted"]["rows"] == 1_500
    assert figures["replaced"]["rate"] < 0.2
    assert (
        runner.scorer is not old_scorer and retrainer.counts["rollback"] == 1 and retrainer.probation is None
    )


def test_a_promoted_model_that_alerts_no_more_passes_its_probation(
    bundle: ModelBundle, test_day: tuple[pl.DataFrame, Path], tmp_path: Path
) -> None:
    settings = RetrainSettings(every_s=86_400, registry=tmp_path / "models", probation_rows=1_000)
    runner = StreamRunner(bundle, FrameSource([]), [MemorySink()], StreamConfig(retrain=settings))
    retrainer = runner.retrainer
    assert retrainer is not None
    flows = test_day[0].head(1_500).with_row_index(ROW).with_columns(pl.col(ROW).cast(pl.Int64))
    retrainer.probation = {"version": "v1", "rows": 0, "replaced": "v1", "from_row": 0}
    retrainer.add(flows)
    retrainer.scored(_records(flows, np.zeros(1_500, dtype=bool)))
    retrainer.step(runner)
    assert ModelRegistry(tmp_path / "models").decisions() == [] and retrainer.probation is None


BOUND = 0.09
FLOWS = 10_000


def test_retraining_keeps_the_false_positive_rate_within_a_bound_as_the_fixed_model_drifts(
    tmp_path: Path,
) -> None:
    """The issue's measurement, small (benchmarks/continual.py has the full table): the simulator's
    days 0-3 at 10,000 flows a day, the first model trained on day 0, days 1-3 replayed as a stream.
    The fixed model's false-positive rate rises past the bound on the later days; the stream that
    retrains every day (promotion on unlabelled evidence: no analyst feedback in a replay) keeps
    each day after its first promotion within it, at no loss of attack detection, and every decision
    is in the registry with its figures. The models read the minute's counters too (what
    `nadkit train --slow-counters` gives, the retrainer keeping the champion's features): without
    them this small replay's challengers keep 10-11 of the champion's 16-17 strong alerts, under the
    90% the promotion asks for, and none is promoted."""
    days = simulated_days(4, FLOWS, 5)
    features = default_features(REGISTRY["ae"], slow_counters=True)
    config = REGISTRY["ae"].test_config().to_dict()
    bundle = fit(days[0], model="ae", config=config, seed=0, features=features).bundle
    replayed = pl.concat(days[1:], how="vertical_relaxed")
    fixed, _ = replay(bundle, replayed, batch=1000, spot=False, retrain=None)
    settings = RetrainSettings(
        every_s=86_400, registry=tmp_path / "models", promote="auto-unlabelled", background=False
    )
    checkpoint = tmp_path / "ck.json"
    retrained, stats = replay(
        bundle, replayed, batch=1000, spot=False, retrain=settings, checkpoint=checkpoint
    )
    fixed_days, retrained_days = per_day(fixed), per_day(retrained)
    print("fixed", [(round(d["fpr"], 4), d["detection"]) for d in fixed_days])
    print("retrained", [(round(d["fpr"], 4), d["detection"]) for d in retrained_days])
    registry = ModelRegistry(tmp_path / "models")
    decisions = registry.decisions()
    print([(d["kind"], d["version"], d["reason"]) for d in decisions])
    assert len(decisions) == 2  # one per midnight replayed
    for decision in decisions:
        figures = decision["figures"]
        assert figures["recent_traffic"]["champion"]["rows"] > 0 and figures["threshold"]["challenger"] > 0
        assert registry.info(decision["version"]).active == (decision["version"] == registry.active_version())
    promoted = [i for i, d in enumerate(decisions) if d["kind"] == "promotion"]
    assert promoted, "no challenger was promoted"
    after = slice(promoted[0] + 1, None)  # the days after the midnight of the first promotion
    assert all(d["fpr"] > BOUND for d in fixed_days[after])
    assert all(d["fpr"] <= BOUND for d in retrained_days[after])
    for mine, theirs in zip(retrained_days[after], fixed_days[after], strict=True):
        assert mine["detection"] >= theirs["detection"] - 0.02
    assert stats["continual"]["retrain_pause_s"] > 0
    # the checkpoint names the active version: a restart continues with it, not with the first bundle
    active = registry.active_version()
    config = StreamConfig(retrain=settings, checkpoint=checkpoint)
    restarted = StreamRunner(bundle, FrameSource([]), [MemorySink()], config)
    assert restarted.retrainer is not None and restarted.retrainer.version == active != "v1"
    assert restarted.bundle.path == registry.path(active)  # type: ignore[arg-type]


def _sample_of(champion: ModelBundle, day: pl.DataFrame, block_us: int) -> pl.DataFrame:
    """What FlowSample.take gives: the day's flows (no label) with the champion's live verdicts."""
    scored = score_flows(champion, day.drop("label"))
    return day.drop("label").with_columns(
        scored["score"].alias(SCORE),
        scored["threshold"].alias(THRESHOLD),
        scored["alert"].alias(ALERT),
        (pl.col("time").dt.epoch("us") // block_us).alias(BLOCK),
    )


def test_labelled_feedback_decides_and_never_means_never(bundle: ModelBundle) -> None:
    days = simulated_days(3, 3000, 5)
    normal = days[2].filter(pl.col("label") == NORMAL).head(100)
    attacks = days[2].filter(pl.col("label") != NORMAL).head(60)
    reviewed = pl.concat(
        [
            normal.with_columns(
                pl.lit("false_positive").alias("verdict"), pl.lit(None).alias("attack_class")
            ),
            attacks.with_columns(pl.lit("confirmed").alias("verdict"), pl.col("label").alias("attack_class")),
        ],
        how="diagonal_relaxed",
    ).with_columns(pl.int_range(1, 161).alias("alert_id"))
    feedback = split_feedback(reviewed, fraction=0.5)
    assert feedback.counts()["held_out_benign"] == 50 and feedback.counts()["held_out_attacks"] == 30
    settings = RetrainSettings(every_s=86_400, registry=Path("unused"), promote="auto-unlabelled")
    sample = _sample_of(bundle, days[1], settings.block_us)
    challenger, decision = challenge(bundle, sample, settings, feedback=feedback)
    comparison = decision.figures["comparison"]
    print(decision.kind, decision.reason)
    assert comparison["verdict"]["enough_feedback"]
    assert decision.figures["confirmed_attacks"]["rows"] == 60
    # the labelled evidence decides, not the unlabelled rule
    if comparison["verdict"]["outcome"] == "challenger better":
        assert decision.kind == "promotion" and decision.reason.startswith("labelled feedback")
    else:
        assert decision.kind == "refusal" and "labelled feedback" in decision.reason
    assert challenger.threshold is not None and challenger.threshold.value == pytest.approx(
        decision.figures["threshold"]["challenger"]
    )
    never = RetrainSettings(every_s=86_400, registry=Path("unused"), promote="never")
    _, decision = challenge(bundle, sample, never, feedback=feedback)
    assert decision.kind == "refusal" and "--promote never" in decision.reason


def test_the_strong_alerts_rule_weighs_the_evidence_of_a_loss(bundle: ModelBundle) -> None:
    """Unlabelled promotion: a challenger is refused for dropping the champion's strong alerts only
    when the interval of the share it keeps lies below ``keep_strong`` (a handful of strong alerts
    is weak evidence either way)."""
    settings = RetrainSettings(every_s=86_400, registry=Path("unused"), promote="auto-unlabelled")
    empty = Feedback(pl.DataFrame(), pl.DataFrame())

    def decided(kept: int, champion: int) -> tuple[str, str]:
        figures = {
            # the challenger's alert rate clearly lower: only the strong alerts can refuse it
            "recent_traffic": {
                "champion": {"rate": 0.2, "interval": [0.18, 0.22]},
                "challenger": {"rate": 0.05, "interval": [0.04, 0.06]},
            },
            "strong_alerts": {"champion": champion, "kept": kept},
        }
        return _decide(bundle, bundle, pl.DataFrame(), empty, figures, settings)

    for kept, champion in ((4, 5), (19, 23), (90, 100), (0, 0)):
        assert decided(kept, champion)[0] == "promotion", (kept, champion)
    for kept, champion in ((3, 5), (70, 100), (0, 4)):
        kind, reason = decided(kept, champion)
        assert kind == "refusal" and f"keeps {kept} of the champion's {champion} strong alerts" in reason


def test_a_background_retraining_lets_the_batches_go_on(bundle: ModelBundle, tmp_path: Path) -> None:
    days = simulated_days(3, 3000, 5)
    replayed = pl.concat(days[1:], how="vertical_relaxed")
    settings = RetrainSettings(every_s=86_400, registry=tmp_path / "models", promote="never")
    scored, stats = replay(bundle, replayed, batch=500, spot=False, retrain=settings)
    assert scored.height == replayed.height  # every flow scored, by one model or the other
    state = stats["continual"]
    assert state["retrain_counts"] == {"refusal": 1} and not state["retrain_running"]
    assert state["retrain_pause_s"] == 0  # the stream never waited for the training
    assert [d["kind"] for d in ModelRegistry(tmp_path / "models").decisions()] == ["refusal"]
