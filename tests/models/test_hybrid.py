"""The hybrid ``multitask_gbt``: its flat trees against scikit-learn's, their torch walk, the
averaged probabilities, the contributions and saving."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from sklearn.ensemble import HistGradientBoostingClassifier

from nadkit.errors import ConfigError
from nadkit.models.base import DetectorData
from nadkit.models.hybrid import (
    BoostedTreesModule,
    MultitaskGBTConfig,
    MultitaskGBTDetector,
    flatten_boosting,
    raw_to_probabilities,
    tree_raw_scores,
)
from nadkit.models.multitask import MultitaskDetector

NAMES = tuple(f"f{j}" for j in range(5))
ATTACKS = ("probe", "flood")


def _toy(rows: int, seed: int) -> DetectorData:
    """Normal rows around 0; two attack classes, each raising one feature (one of them a step)."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(rows, len(NAMES))).astype(np.float32)
    labels = np.full(rows, "normal", dtype=object)
    for index, name in enumerate(ATTACKS):
        chosen = (rng.random(rows) < 0.1) & (labels == "normal")
        labels[chosen] = name
        features[chosen, index] += 3.0 + index
    return DetectorData(features, NAMES, labels=labels.astype(str))


def _classes(labels: np.ndarray) -> tuple[str, ...]:
    return ("normal", *sorted(set(labels.tolist()) - {"normal"}))


@pytest.mark.parametrize("two_classes", [False, True])
def test_flat_trees_reproduce_scikit_learn(two_classes: bool) -> None:
    train, test = _toy(1500, seed=0), _toy(400, seed=1)
    labels = np.where(train.labels == "normal", "normal", "attack") if two_classes else train.labels
    model = HistGradientBoostingClassifier(max_iter=25, random_state=0).fit(train.features, labels)
    classes = _classes(labels)
    trees = flatten_boosting(model, classes)
    found = raw_to_probabilities(
        tree_raw_scores(test.features, trees), trees["gbt.class_of_column"], len(classes)
    )
    order = [list(model.classes_).index(name) for name in classes]
    np.testing.assert_allclose(found, model.predict_proba(test.features)[:, order], rtol=1e-9, atol=1e-12)
    with torch.no_grad():
        walked = BoostedTreesModule(trees, len(classes))(torch.from_numpy(test.features)).numpy()
    np.testing.assert_allclose(walked, found, rtol=1e-9, atol=1e-12)


@pytest.fixture(scope="module")
def hybrid() -> MultitaskGBTDetector:
    return MultitaskGBTDetector(MultitaskGBTDetector.test_config()).fit(_toy(2000, seed=2))


def test_probabilities_average_the_network_and_the_trees(hybrid: MultitaskGBTDetector) -> None:
    test = _toy(300, seed=3)
    assert hybrid.classes_ == ("normal", "flood", "probe")
    assert hybrid.network_weight_ in (0.0, 0.25, 0.5, 0.75, 1.0)
    weight = hybrid.network_weight_
    network = hybrid.network_.predict_proba(test)
    expected = weight * network + (1 - weight) * hybrid.tree_probabilities(test)
    np.testing.assert_allclose(hybrid.predict_proba(test), expected, rtol=1e-12)
    np.testing.assert_allclose(hybrid.score(test), expected[:, 1:].sum(axis=1), rtol=1e-12)
    with torch.no_grad():
        module = hybrid.probability_module()(torch.from_numpy(test.features)).numpy()
    np.testing.assert_allclose(module, expected, atol=1e-5)


def test_contributions_sum_to_the_score_and_export(hybrid: MultitaskGBTDetector) -> None:
    test = _toy(200, seed=4)
    contributions = hybrid.contributions(test)
    np.testing.assert_allclose(contributions.sum(axis=1), hybrid.score(test), rtol=1e-9, atol=1e-12)
    with torch.no_grad():
        exported = hybrid.export_module()(torch.from_numpy(test.features)).numpy()
    np.testing.assert_allclose(exported, contributions, atol=1e-4)


def test_a_fixed_network_weight_is_kept() -> None:
    config = dataclasses.replace(MultitaskGBTDetector.test_config(), network_weight=0.0)
    detector = MultitaskGBTDetector(config).fit(_toy(1200, seed=5))
    test = _toy(200, seed=6)
    assert detector.network_weight_ == 0.0
    np.testing.assert_array_equal(detector.predict_proba(test), detector.tree_probabilities(test))


def test_state_restores_the_hybrid(hybrid: MultitaskGBTDetector) -> None:
    arrays = hybrid.state()
    assert all(not isinstance(v, np.ndarray) or v.dtype != object for v in arrays.values())
    restored = MultitaskGBTDetector(hybrid.config).load_state(arrays, NAMES)
    test = _toy(200, seed=7)
    np.testing.assert_array_equal(restored.predict_proba(test), hybrid.predict_proba(test))
    assert isinstance(restored.network_, MultitaskDetector)
    del arrays["gbt.value"]
    with pytest.raises(ConfigError, match=r"gbt\.value"):
        MultitaskGBTDetector(hybrid.config).load_state(arrays, NAMES)


def test_config_is_checked() -> None:
    for options in (
        {"tree_iterations": 0},
        {"tree_class_weight": "auto"},
        {"network_weight": 1.5},
        {"weight_from": "test"},
    ):
        with pytest.raises(ConfigError):
            MultitaskGBTConfig(**options)


def _spy_on_weight_choice(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, DetectorData, float]]:
    """Record every choice of the network's share: where it was made, on which rows, what it chose."""
    calls: list[tuple[str, DetectorData, float]] = []
    original = MultitaskGBTDetector._best_weight

    def spy(self, probabilities, trees, rows, classes, where):  # type: ignore[no-untyped-def]
        weight = original(self, probabilities, trees, rows, classes, where)
        calls.append((where, rows, weight))
        return weight

    monkeypatch.setattr(MultitaskGBTDetector, "_best_weight", spy)
    return calls


def test_with_times_the_share_is_chosen_on_the_latest_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _spy_on_weight_choice(monkeypatch)
    rows = 1600
    times = np.random.default_rng(9).permutation(rows).astype(np.int64) * 1_000_000
    train = dataclasses.replace(_toy(rows, seed=8), time=times)
    detector = MultitaskGBTDetector(MultitaskGBTDetector.test_config()).fit(train)
    assert [where for where, _, _ in calls] == ["later rows"]
    _, judged, chosen = calls[0]
    latest = rows - round(rows * (1.0 - detector.config.validation_fraction))
    assert judged.time is not None and len(judged) == latest
    # the latest quarter by time, whatever the order the rows came in
    np.testing.assert_array_equal(np.sort(judged.time), np.sort(times)[-latest:])
    assert detector.network_weight_ == chosen
    assert detector.trees_["gbt.network_weight"][0] == chosen
    assert detector.weight_choice_["chosen_on"] == "later rows"
    assert detector.weight_choice_["network_weight"] == chosen


@pytest.mark.parametrize("weight_from, timed", [("validation", True), ("auto", False), ("later", False)])
def test_otherwise_the_share_is_chosen_on_the_validation_part(
    monkeypatch: pytest.MonkeyPatch, weight_from: str, timed: bool
) -> None:
    calls = _spy_on_weight_choice(monkeypatch)
    train = _toy(1200, seed=10)
    if timed:
        train = dataclasses.replace(train, time=np.arange(len(train), dtype=np.int64))
    config = dataclasses.replace(MultitaskGBTDetector.test_config(), weight_from=weight_from)
    detector = MultitaskGBTDetector(config).fit(train)
    assert [where for where, _, _ in calls] == ["validation part"]
    assert detector.network_weight_ == calls[0][2]


def test_a_fixed_share_trains_no_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _spy_on_weight_choice(monkeypatch)
    train = dataclasses.replace(_toy(1200, seed=11), time=np.arange(1200, dtype=np.int64))
    config = dataclasses.replace(MultitaskGBTDetector.test_config(), network_weight=0.75)
    detector = MultitaskGBTDetector(config).fit(train)
    assert detector.network_weight_ == 0.75
    assert detector.weight_choice_ == {"chosen_on": "fixed", "network_weight": 0.75}
    assert calls == []


def test_a_failed_probe_falls_back_to_the_validation_part(monkeypatch: pytest.MonkeyPatch) -> None:
    from nadkit.models import hybrid as module

    original, failed = module._fit_trees, []

    def fit_trees(*args, **kwargs):  # type: ignore[no-untyped-def]
        if not failed:  # the probe's trees come first
            failed.append(True)
            raise ValueError("a class with too few rows")
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "_fit_trees", fit_trees)
    train = dataclasses.replace(_toy(1200, seed=12), time=np.arange(1200, dtype=np.int64))
    detector = MultitaskGBTDetector(MultitaskGBTDetector.test_config()).fit(train)
    assert failed and detector.weight_choice_["chosen_on"] == "validation part"
