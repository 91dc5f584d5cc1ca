"""`nadkit train --auto` in memory: candidates trained on one split, the best hold-out PR-AUC kept,
the choice recorded, and what it refuses before training anything."""

from __future__ import annotations

import polars as pl
import pytest

from nadkit.errors import ConfigError
from nadkit.schema import NORMAL
from nadkit.simulate import SimulationConfig, simulate
from nadkit.training.choice import MIN_CHOICE_ATTACKS, check_attacks, check_candidates, choose


@pytest.fixture(scope="module")
def day() -> pl.DataFrame:
    return simulate(SimulationConfig(days=1, flows_per_day=4000, seed=21))


def test_the_best_candidate_by_holdout_pr_auc_is_kept_and_recorded(day: pl.DataFrame) -> None:
    choice = choose(day, ["ecod", "iforest"], seed=3)
    by_name = {row.model: row for row in choice.candidates}
    assert [row.model for row in choice.candidates] == ["ecod", "iforest"]
    best = max(choice.candidates, key=lambda row: row.pr_auc)
    assert choice.chosen == best.model
    assert choice.result.bundle.detector.name == choice.chosen
    recorded = choice.result.bundle.metrics["auto"]
    assert recorded["chosen"] == choice.chosen and recorded["metric"] == "pr_auc"
    assert [c["model"] for c in recorded["candidates"]] == ["ecod", "iforest"]
    assert "optimistic" in recorded["note"]
    # the kept model's hold-out figures are those of its own row, measured on the shared hold-out
    holdout = choice.result.bundle.metrics["holdout"]
    assert holdout["pr_auc"] == pytest.approx(by_name[choice.chosen].pr_auc)
    attacks = int((day["label"] != NORMAL).sum())
    assert choice.result.holdout_attacks == attacks
    for row in choice.candidates:
        assert 0.5 < row.roc_auc <= 1 and 0 < row.pr_auc <= 1


def test_candidates_share_one_split_so_a_second_run_chooses_the_same(day: pl.DataFrame) -> None:
    first = choose(day, ["iforest", "ecod"], seed=5)
    second = choose(day, ["iforest", "ecod"], seed=5)
    assert first.chosen == second.chosen
    assert [r.pr_auc for r in first.candidates] == [r.pr_auc for r in second.candidates]


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["ae", "nope"], "unknown model 'nope'"),
        (["ae", "multitask"], "multitask is supervised"),
        (["ae"], "at least two candidates"),
        (["ae", "ae"], "named twice"),
    ],
)
def test_candidates_are_checked(names: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_candidates(names)


def test_too_few_attacks_are_refused_before_anything_trains(day: pl.DataFrame) -> None:
    normal = day.filter(pl.col("label") == NORMAL)
    few = pl.concat([normal, day.filter(pl.col("label") != NORMAL).head(MIN_CHOICE_ATTACKS - 1)])
    with pytest.raises(
        ConfigError, match=f"needs at least {MIN_CHOICE_ATTACKS} attack rows; the flows have 9"
    ):
        check_attacks(few)
    with pytest.raises(ConfigError, match="the flows have 0"):
        choose(normal.drop("label"), ["iforest", "ecod"])
    assert check_attacks(day) == int((day["label"] != NORMAL).sum())


def test_settings_for_one_model_are_refused(day: pl.DataFrame) -> None:
    with pytest.raises(ConfigError, match="leave --config out"):
        choose(day, ["iforest", "ecod"], config={"epochs": 2})


def test_the_python_api_chooses_as_the_command_does(day: pl.DataFrame) -> None:
    import nadkit

    model = nadkit.train(day, model="auto", candidates=["iforest", "ecod"], seed=3)
    chosen = choose(day, ["iforest", "ecod"], seed=3)
    assert model.name == chosen.chosen
    assert model.training is not None and model.training.bundle.metrics["auto"]["chosen"] == chosen.chosen
    with pytest.raises(ConfigError, match='model="auto"'):
        nadkit.train(day, model="iforest", candidates=["iforest", "ecod"])


def test_the_quality_benchmark_chooses_as_train_auto_does() -> None:
    """`benchmarks/quality.py --models ... auto`: the candidate with the best validation PR-AUC,
    ROC-AUC then the candidates' order breaking ties; nothing where the validation part had no
    attacks; models that are not candidates never chosen."""
    from benchmarks.quality import AUTO, chosen_by_validation

    def row(model: str, pr: float, roc: float = 0.9) -> dict[str, object]:
        return {"model": model, "validation_pr_auc": pr, "validation_roc_auc": roc, "roc_auc": pr / 2}

    rows = [row("iforest", 0.8), row("ae", 0.9), row("ae:weigh_errors=true", 0.99), row("ecod", 0.9, 0.95)]
    (chosen,) = chosen_by_validation(rows)
    assert chosen["model"] == AUTO and chosen["chosen"] == "ecod" and chosen["roc_auc"] == 0.45
    (tied,) = chosen_by_validation([row("vae", 0.9), row("ae", 0.9)])
    assert tied["chosen"] == "ae"
    assert chosen_by_validation([{"model": "ae", "roc_auc": 0.9}]) == []


def test_the_choosing_rule_ranks_a_missing_figure_last_and_keeps_the_earlier_of_equals() -> None:
    from nadkit.training.choice import best_index

    nan = float("nan")
    assert best_index([(0.5, 0.9), (0.7, 0.8), (0.7, 0.85)]) == 2
    assert best_index([(0.7, 0.8), (0.7, 0.8)]) == 0
    assert best_index([(nan, 0.99), (0.1, 0.2)]) == 1
    assert best_index([(0.4, nan), (0.4, 0.5)]) == 1
