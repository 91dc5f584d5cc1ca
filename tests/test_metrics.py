from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import (
    average_precision_score,
    fbeta_score,
    precision_recall_fscore_support,
    roc_auc_score,
)
from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix

from nadkit.errors import ConfigError
from nadkit.evaluation.labels import NAD_CLASSES, nad_labels
from nadkit.evaluation.metrics import (
    binary_metrics,
    confusion_matrix,
    evaluate,
    f_beta,
    false_positive_rate,
    macro_f_beta,
    macro_f_difference,
    nad_score,
    nad_score_from_confusion,
    per_class_detection,
    pr_auc,
    precision,
    ranking_curve,
    recall,
    roc_auc,
)
from nadkit.evaluation.thresholds import fit_threshold
from nadkit.schema import label_expr

SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
ATTACK = np.array([1, 1, 0, 1, 0, 0], dtype=bool)

#: NAD 2021 training rows per class (REFERENCE.md §1), in NAD_CLASSES order
TRAINING_COUNTS = {
    "normal": 8_920_477,
    "DDOS-smurf": 2_345,
    "Probing-IP sweep": 240_524,
    "Probing-Nmap": 829,
    "Probing-Port sweep": 77_289,
}


# ---------------------------------------------------------------------------------------------
# binary figures


def test_binary_metrics_at_threshold() -> None:
    metrics = binary_metrics(SCORES, ATTACK, threshold=0.6)
    assert metrics.precision == pytest.approx(0.75)
    assert metrics.recall == pytest.approx(1.0)
    assert metrics.f1 == pytest.approx(6 / 7)
    assert metrics.false_positive_rate == pytest.approx(1 / 3)
    assert metrics.roc_auc == pytest.approx(8 / 9)
    assert metrics.pr_auc == pytest.approx((1 + 1 + 3 / 4) / 3)  # precision at each attack's rank
    assert metrics.rows == 6 and metrics.attacks == 3


@pytest.mark.parametrize("seed", range(6))
def test_ranking_and_outcome_figures_equal_scikit_learns(seed: int) -> None:
    """nadkit computes them itself (scikit-learn takes over a second to import): the same numbers,
    tied scores included, on continuous scores and on a few distinct ones."""
    rng = np.random.default_rng(seed)
    for size in (2, 7, 300):
        truth = rng.random(size) < 0.3
        truth[:2] = (True, False)
        continuous = rng.normal(size=size) + truth
        for scores in (continuous, np.round(continuous), rng.integers(0, 3, size).astype(float)):
            assert roc_auc(scores, truth) == pytest.approx(roc_auc_score(truth, scores), abs=1e-12)
            assert pr_auc(scores, truth) == pytest.approx(average_precision_score(truth, scores), abs=1e-12)
            for cut in (-np.inf, float(np.median(scores)), np.inf):
                alerts = scores >= cut
                for beta in (0.5, 1.0, 2.0):
                    expected = precision_recall_fscore_support(
                        truth, alerts, beta=beta, average="binary", zero_division=0.0
                    )[:3]
                    got = (precision(truth, alerts), recall(truth, alerts), f_beta(truth, alerts, beta))
                    assert got == pytest.approx(tuple(float(v) for v in expected), abs=1e-12)
    labels = rng.choice(["normal", "dos", "probe"], 200)
    guessed = rng.choice(["normal", "dos", "probe"], 200)
    ours = confusion_matrix(labels, guessed)
    assert ours.labels == ("normal", "dos", "probe")
    assert (ours.matrix == sklearn_confusion_matrix(labels, guessed, labels=list(ours.labels))).all()


def test_ranking_curve_counts_each_distinct_score_once() -> None:
    thresholds, hits, false_alarms = ranking_curve(np.array([0.2, 0.9, 0.5, 0.9, 0.2]), ATTACK[:5])
    assert thresholds.tolist() == [0.9, 0.5, 0.2]
    assert hits.tolist() == [2, 2, 3] and false_alarms.tolist() == [0, 1, 2]
    assert [len(part) for part in ranking_curve(np.zeros(0), np.zeros(0, dtype=bool))] == [0, 0, 0]


def test_binary_metrics_still_refuses_a_single_class() -> None:
    with pytest.raises(ConfigError):
        binary_metrics(SCORES, np.zeros(6, dtype=bool), 0.5)


def test_precision_recall_f_beta_and_false_positive_rate_by_hand() -> None:
    alerts = SCORES >= 0.8  # two alerts, both attacks; one attack missed
    assert precision(ATTACK, alerts) == 1.0
    assert recall(ATTACK, alerts) == pytest.approx(2 / 3)
    assert f_beta(ATTACK, alerts) == pytest.approx(0.8)
    # F2 = 5·P·R / (4·P + R) = 5·(2/3) / (4 + 2/3)
    assert f_beta(ATTACK, alerts, beta=2.0) == pytest.approx((10 / 3) / (14 / 3))
    assert false_positive_rate(ATTACK, alerts) == 0.0
    assert false_positive_rate(ATTACK, SCORES >= 0.5) == pytest.approx(2 / 3)


def test_undefined_binary_figures_are_nan_not_errors() -> None:
    none = np.zeros(6, dtype=bool)
    assert precision(ATTACK, none) == 0.0  # no alerts: no precision credit
    assert math.isnan(recall(none, SCORES > 0.5))
    assert math.isnan(f_beta(none, SCORES > 0.5))
    assert math.isnan(false_positive_rate(np.ones(6, dtype=bool), none))
    assert math.isnan(roc_auc(SCORES, none)) and math.isnan(pr_auc(SCORES, none))
    assert math.isnan(roc_auc(SCORES, ~none)) and math.isnan(pr_auc(SCORES, ~none))
    with pytest.raises(ConfigError):
        f_beta(ATTACK, none, beta=0)
    with pytest.raises(ConfigError):
        roc_auc(np.array([0.1, np.nan]), np.array([True, False]))


# ---------------------------------------------------------------------------------------------
# confusion matrices and macro F-beta


def test_confusion_matrix_for_any_label_set() -> None:
    true = ["a", "a", "b", "c", "c", "c", "b"]
    predicted = ["a", "b", "b", "c", "a", "c", "c"]
    confusion = confusion_matrix(true, predicted)
    assert confusion.labels == ("a", "b", "c")
    assert confusion.matrix.tolist() == [[1, 1, 0], [0, 1, 1], [1, 0, 2]]
    reordered = confusion_matrix(true, predicted, labels=["c", "b", "a", "d"])
    assert reordered.matrix.tolist() == [[2, 0, 1, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]]
    assert reordered.to_dict() == {"labels": ["c", "b", "a", "d"], "matrix": reordered.matrix.tolist()}
    with pytest.raises(ConfigError, match="not among"):
        confusion_matrix(true, predicted, labels=["a", "b"])
    with pytest.raises(ConfigError):
        confusion_matrix(true, predicted[:3])


def test_confusion_matrix_puts_normal_first_and_reads_integer_labels() -> None:
    confusion = confusion_matrix(["x", "normal", None], ["normal", "normal", "x"])
    assert confusion.labels == ("normal", "x")  # a missing label counts as normal
    assert confusion.matrix.tolist() == [[1, 1], [1, 0]]
    numbers = confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]))
    assert numbers.labels == (0, 1, 2)
    assert numbers.matrix.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]


def test_macro_f_beta_by_hand_and_against_scikit_learn() -> None:
    true = ["a", "a", "b", "c", "c", "c", "b"]
    predicted = ["a", "b", "b", "c", "a", "c", "c"]
    # F2 per class: a 5/(5+4+1) = 1/2, b 1/2, c 10/(10+4+1) = 2/3
    assert macro_f_beta(true, predicted) == pytest.approx((0.5 + 0.5 + 2 / 3) / 3)
    assert confusion_matrix(true, predicted).f_beta(2.0) == pytest.approx({"a": 0.5, "b": 0.5, "c": 2 / 3})
    for beta in (0.5, 1.0, 2.0):
        expected = fbeta_score(true, predicted, beta=beta, average="macro")
        assert macro_f_beta(true, predicted, beta=beta) == pytest.approx(expected)
    # a listed class with neither rows nor predictions has no F-beta and is left out
    assert macro_f_beta(true, predicted, labels=["a", "b", "c", "d"]) == pytest.approx(5 / 9)


def test_macro_f_difference_and_its_paired_bootstrap_interval() -> None:
    rng = np.random.default_rng(3)
    true = rng.choice(["normal", "dos", "probe", "rare"], size=4000, p=[0.6, 0.25, 0.14, 0.01])
    better, worse = true.copy(), true.copy()
    better[rng.random(4000) < 0.05] = "normal"
    worse[rng.random(4000) < 0.30] = "normal"
    found = macro_f_difference(true, better, worse, resamples=300)
    # the value is the plain difference of the two macro F1
    assert found.value == pytest.approx(macro_f_beta(true, better, 1.0) - macro_f_beta(true, worse, 1.0))
    # a clear gap: the interval holds the value and stays above 0
    assert 0 < found.low < found.value < found.high
    assert found.text().startswith(f"{found.value:+.3f} (")
    # the same predictions: no difference at all
    same = macro_f_difference(true, better, better, resamples=50)
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0)
    # predictions that differ on 3 rows of a rare class: a gap of about 0.01 that draws without
    # those rows do not see, so the interval reaches down to 0 (and never below: ``nearly`` is
    # nowhere better)
    nearly = better.copy()
    nearly[np.flatnonzero(true == "rare")[:3]] = "normal"
    close = macro_f_difference(true, better, nearly, resamples=300)
    assert close.low == 0.0 < 0.005 < close.value < close.high
    # the interval is reproducible from its seed
    assert macro_f_difference(true, better, worse, resamples=300) == found
    with pytest.raises(ConfigError):
        macro_f_difference(true, better[:-1], worse)
    with pytest.raises(ConfigError):
        macro_f_difference(true, better, worse, level=1.0)


def test_per_class_detection_rates() -> None:
    labels = np.array(["normal"] * 4 + ["DDOS-smurf"] * 2 + ["Probing-Nmap"] * 3)
    alerts = np.array([1, 0, 0, 0, 1, 1, 1, 0, 0], dtype=bool)
    rates = per_class_detection(labels, alerts)
    assert list(rates) == ["normal", "DDOS-smurf", "Probing-Nmap"]
    assert rates["normal"].rate == pytest.approx(0.25)  # normal's false-positive rate
    assert rates["DDOS-smurf"].to_dict() == {"rows": 2, "alerted": 2, "rate": 1.0}
    assert rates["Probing-Nmap"].to_dict() == {"rows": 3, "alerted": 1, "rate": pytest.approx(1 / 3)}


# ---------------------------------------------------------------------------------------------
# NAD 2021 score


def _all_normal_confusion() -> np.ndarray:
    matrix = np.zeros((5, 5), dtype=np.int64)
    matrix[:, 0] = [TRAINING_COUNTS[name] for name in NAD_CLASSES]
    return matrix


def test_all_normal_prediction_on_the_training_mix_scores_about_0_21() -> None:
    """Predicting Normal for every training row: C_T = 240,524 + 77,289 + 2·2,345 + 829 = 323,332
    over C_max = 2·9,241,464; Normal's F2 is 5·8,920,477/(5·8,920,477 + 320,987), the others 0."""
    score = nad_score_from_confusion(_all_normal_confusion())
    rows = sum(TRAINING_COUNTS.values())
    cost_term = 1 - math.log(323_332) / math.log(2 * rows)
    normal_f2 = 5 * 8_920_477 / (5 * 8_920_477 + (rows - 8_920_477))
    assert score == pytest.approx(0.3 * cost_term + 0.7 * normal_f2 / 5, rel=1e-12)
    assert score == pytest.approx(0.2115403685, abs=1e-9)


def test_nad_score_from_labels_equals_the_one_from_counts() -> None:
    rng = np.random.default_rng(0)
    true = rng.choice(NAD_CLASSES, size=20_000, p=[0.9, 0.01, 0.05, 0.01, 0.03])
    predicted = np.where(rng.uniform(size=20_000) < 0.8, true, rng.choice(NAD_CLASSES, size=20_000))
    confusion = confusion_matrix(true, predicted, labels=NAD_CLASSES)
    assert nad_score(true, predicted) == pytest.approx(nad_score_from_confusion(confusion.matrix))
    all_normal = np.full(20_000, "normal")
    assert nad_score(true, all_normal) == pytest.approx(
        nad_score_from_confusion(confusion_matrix(true, all_normal, labels=NAD_CLASSES))
    )


def test_nad_score_on_hand_computed_cases() -> None:
    assert nad_score(list(NAD_CLASSES), list(NAD_CLASSES)) == 1.0
    # one normal row called smurf: C_T = 2, C_max = 8, cost term 1 - ln 2 / ln 8 = 2/3;
    # F2: normal 5/(5+4) = 5/9, smurf 5/(5+1) = 5/6, IP sweep 1; Nmap and port sweep absent
    true = ["normal", "normal", "DDOS-smurf", "Probing-IP sweep"]
    predicted = ["normal", "DDOS-smurf", "DDOS-smurf", "Probing-IP sweep"]
    assert nad_score(true, predicted) == pytest.approx(0.3 * 2 / 3 + 0.7 * (5 / 9 + 5 / 6 + 1) / 3)
    # every row wrong at the highest cost: C_T = C_max, cost term 0, every F2 0
    assert nad_score(["normal", "DDOS-smurf"], ["DDOS-smurf", "normal"]) == 0.0


def test_nad_score_accepts_the_spellings_labels_come_in() -> None:
    raw = ["Normal", "DDOS-smurf", "Probing-IP sweep", "Probing-Nmap", "Probing-Port sweep"]
    read = pl.DataFrame({"label": raw}).select(label_expr("label"))["label"]  # as the NAD reader writes
    assert read.to_list() == list(NAD_CLASSES)
    loose = ["normal", "ddos_smurf", "IP sweep", "nmap", "PORT-SWEEP"]
    assert nad_score(read, loose) == 1.0
    assert nad_score(raw, np.array(NAD_CLASSES)) == 1.0
    assert nad_labels(loose).tolist() == list(NAD_CLASSES)
    with pytest.raises(ConfigError, match="teardrop"):
        nad_score(["normal", "teardrop"], ["normal", "normal"])
    with pytest.raises(ConfigError):
        nad_score_from_confusion(np.ones((3, 3)))
    with pytest.raises(ConfigError):
        nad_score_from_confusion(np.zeros((5, 5)))


# ---------------------------------------------------------------------------------------------
# the full evaluation


def _labelled_day() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    labels = rng.choice(NAD_CLASSES, size=4000, p=[0.9, 0.02, 0.04, 0.01, 0.03])
    scores = rng.normal(size=4000) + 3 * (labels != "normal")
    return scores, labels


def test_evaluation_dict_has_the_documented_shape() -> None:
    scores, labels = _labelled_day()
    evaluation = evaluate(scores, labels, 1.5)
    data = json.loads(json.dumps(evaluation.to_dict(), allow_nan=False))
    assert list(data) == ["binary", "per_class", "confusion", "nad_score", "macro_f_beta"]
    assert data["binary"] == binary_metrics(scores, labels != "normal", 1.5).to_dict()
    assert list(data["per_class"]) == list(NAD_CLASSES)
    smurf = data["per_class"]["DDOS-smurf"]
    assert set(smurf) == {"rows", "alerted", "rate"}
    rows = int((labels == "DDOS-smurf").sum())
    assert smurf["rows"] == rows and smurf["rate"] == pytest.approx(smurf["alerted"] / rows)
    assert data["per_class"]["normal"]["rate"] == pytest.approx(data["binary"]["false_positive_rate"])
    # without class predictions: the 2x2 confusion of the alerts, no NAD score
    attack, alerts = labels != "normal", scores >= 1.5
    assert data["confusion"] == {
        "labels": ["normal", "attack"],
        "matrix": [
            [int((~attack & ~alerts).sum()), int((~attack & alerts).sum())],
            [int((attack & ~alerts).sum()), int((attack & alerts).sum())],
        ],
    }
    assert data["nad_score"] is None
    binary_names = np.where(alerts, "attack", "normal")
    expected = macro_f_beta(np.where(attack, "attack", "normal"), binary_names, beta=2.0)
    assert data["macro_f_beta"] == pytest.approx(expected)


def test_evaluation_with_nad_class_predictions() -> None:
    scores, labels = _labelled_day()
    rng = np.random.default_rng(4)
    predicted = np.where(rng.uniform(size=len(labels)) < 0.9, labels, "normal")
    threshold = fit_threshold("quantile", scores, labels)
    evaluation = evaluate(scores, labels, threshold, predicted=predicted)
    assert evaluation.binary.threshold == threshold.value
    assert evaluation.nad_score == pytest.approx(nad_score(labels, predicted))
    assert evaluation.macro_f_beta == pytest.approx(fbeta_score(labels, predicted, beta=2, average="macro"))
    assert evaluation.confusion.labels == NAD_CLASSES
    assert evaluation.confusion.matrix.sum() == len(labels)
    assert evaluate(scores, labels, threshold.to_dict(), predicted).to_dict() == evaluation.to_dict()


def test_evaluation_with_other_label_sets_has_no_nad_score() -> None:
    labels = np.array(["normal", "normal", "dos", "scan"])
    predicted = np.array(["normal", "dos", "dos", "normal"])
    evaluation = evaluate(np.array([0.1, 0.7, 0.9, 0.2]), labels, 0.5, predicted=predicted)
    assert evaluation.nad_score is None
    assert evaluation.confusion.labels == ("normal", "dos", "scan")
    assert evaluation.confusion.matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    # F2: normal 5/(5+4+1) = 1/2, dos 5/(5+1) = 5/6, scan 0
    assert evaluation.macro_f_beta == pytest.approx((0.5 + 5 / 6 + 0) / 3)
    assert evaluation.per_class["scan"].to_dict() == {"rows": 1, "alerted": 0, "rate": 0.0}


def test_an_all_normal_day_evaluates_with_undefined_figures_as_none() -> None:
    scores = np.random.default_rng(5).normal(size=1000)
    labels = np.full(1000, "normal")
    data = evaluate(scores, labels, 2.0).to_dict()
    text = json.dumps(data, allow_nan=False)  # JSON-safe: no NaN
    assert json.loads(text) == data
    binary = data["binary"]
    assert binary["roc_auc"] is None and binary["pr_auc"] is None
    assert binary["recall"] is None and binary["f1"] is None
    assert binary["false_positive_rate"] == pytest.approx((scores >= 2.0).mean())
    assert binary["attacks"] == 0
    assert list(data["per_class"]) == ["normal"]
    # predicting normal throughout on an all-normal day is perfect
    perfect = evaluate(scores, labels, 100.0, predicted=labels).to_dict()
    assert perfect["nad_score"] == 1.0 and perfect["macro_f_beta"] == 1.0


def test_evaluation_errors() -> None:
    with pytest.raises(ConfigError):
        evaluate(np.ones(3), np.array(["normal"] * 2), 0.5)
    with pytest.raises(ConfigError):
        evaluate(np.array([1.0, np.nan]), np.array(["normal"] * 2), 0.5)
    with pytest.raises(ConfigError, match="method"):
        evaluate(np.ones(2), np.array(["normal"] * 2), {"value": 0.5})


def test_false_positive_rate_at_a_recall() -> None:
    """The ROC point where a share of the attacks is flagged: the normal rows at or above the score
    that many attacks reach."""
    from nadkit.evaluation.metrics import fpr_at_recall

    attacks = np.arange(1.0, 1001.0)  # scores 1..1000
    normal = np.linspace(0.0, 10.0, 101)  # 0, 0.1, ..., 10
    scores = np.concatenate([attacks, normal])
    truth = np.concatenate([np.ones(1000, bool), np.zeros(101, bool)])
    # 99.7% of 1000 attacks: the 997 highest, down to score 4; normal rows at or above 4: 4.0..10.0
    assert fpr_at_recall(scores, truth, 0.997) == pytest.approx(61 / 101)
    assert fpr_at_recall(scores, truth, 1.0) == pytest.approx(91 / 101)  # down to score 1
    assert fpr_at_recall(scores, truth, 0.5) == 0.0
    assert np.isnan(fpr_at_recall(scores[:1000], truth[:1000], 0.9))
    with pytest.raises(ConfigError):
        fpr_at_recall(scores, truth, 0.0)
