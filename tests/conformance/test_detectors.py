"""Every registered detector passes the same checks, using its own ``test_config()``.

Checks depend only on a detector's declared attributes (``input``, ``supervised``), never on its
name. Planted anomalies: a share of the features of a few normal rows set far above their training
range (see ``conftest.py``); the simulator's own attacks are not used, they are hard by design.
Unsupervised detectors learn from the normal rows of day 1; supervised ones from every row of day 1,
where planted anomalies are a labelled class (``planted``) beside the simulator's attack classes.
Supervised detectors attribute a class probability, which a feature can lower as well as raise, so
their contributions may be signed; they also expose ``classes_``, ``predict_proba`` and ``predict``,
with the score ``1 - P(normal)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import nadkit.models
from nadkit.errors import ConfigError
from nadkit.models.base import Detector, DetectorData, NotFittedError

from .conftest import ConformanceData

NAMES = sorted(nadkit.models.REGISTRY)
#: planted anomalies every detector must rank above normal rows
MINIMUM_PLANTED_AUC = 0.9


@dataclass
class Fitted:
    """A detector fitted with its test config, what ``fit`` returned and how long it took."""

    detector: Detector
    returned: object
    seconds: float


def _train_of(cls: type[Detector], data: ConformanceData) -> DetectorData:
    return data.train_labelled if cls.supervised else data.train


def _fit(cls: type[Detector], data: ConformanceData) -> Fitted:
    detector = cls(cls.test_config())
    started = time.perf_counter()
    returned = detector.fit(_train_of(cls, data))
    return Fitted(detector, returned, time.perf_counter() - started)


@pytest.fixture(scope="session", params=NAMES)
def detector_class(request: pytest.FixtureRequest) -> type[Detector]:
    """Each registered detector class in turn."""
    return nadkit.models.REGISTRY[request.param]


@pytest.fixture(scope="session")
def fitted(detector_class: type[Detector], conformance_data: ConformanceData) -> Fitted:
    """The detector fitted once per session on the shared training rows."""
    return _fit(detector_class, conformance_data)


@pytest.fixture(scope="session")
def test_scores(fitted: Fitted, conformance_data: ConformanceData) -> np.ndarray:
    """Scores of the day-2 rows."""
    return fitted.detector.score(conformance_data.test)


def test_registry_has_the_core_detectors() -> None:
    assert {"ae", "vae", "iforest", "ecod"} <= set(nadkit.models.REGISTRY)
    for name, cls in nadkit.models.REGISTRY.items():
        assert cls.name == name
        assert cls.input in ("rows", "windows")


def test_constructor_only_stores_config(detector_class: type[Detector]) -> None:
    config = detector_class.test_config()
    assert isinstance(config, detector_class.config_class)
    detector = detector_class(config)
    assert vars(detector) == {"config": config}
    assert not detector.is_fitted
    assert type(config).from_dict(config.to_dict()) == config


def test_unfitted_detector_raises(detector_class: type[Detector], conformance_data: ConformanceData) -> None:
    detector = detector_class(detector_class.test_config())
    rows = conformance_data.test.take(slice(0, 10))
    with pytest.raises(NotFittedError):
        detector.score(rows)
    with pytest.raises(NotFittedError):
        detector.contributions(rows)
    with pytest.raises(NotFittedError):
        detector.explain(rows)


def test_fit_on_empty_table_raises(detector_class: type[Detector], conformance_data: ConformanceData) -> None:
    detector = detector_class(detector_class.test_config())
    with pytest.raises(ConfigError):
        detector.fit(_train_of(detector_class, conformance_data).take(slice(0, 0)))


def test_fit_returns_self(fitted: Fitted) -> None:
    assert fitted.returned is fitted.detector
    assert fitted.detector.is_fitted
    assert fitted.seconds < 60, f"test_config trained for {fitted.seconds:.1f} s"


def test_scores_are_finite_float64_one_per_row(
    test_scores: np.ndarray, conformance_data: ConformanceData
) -> None:
    assert test_scores.dtype == np.float64
    assert test_scores.shape == (len(conformance_data.test),)
    assert np.isfinite(test_scores).all()
    assert np.ptp(test_scores) > 0


def test_contributions_sum_to_the_score(
    fitted: Fitted, test_scores: np.ndarray, conformance_data: ConformanceData
) -> None:
    """One finite contribution per feature and row, summing to the row's score; non-negative for
    unsupervised detectors (signed allowed for supervised ones, see the module docstring)."""
    contributions = fitted.detector.contributions(conformance_data.test)
    assert contributions.dtype == np.float64
    assert contributions.shape == (len(conformance_data.test), conformance_data.test.width)
    assert np.isfinite(contributions).all()
    if not fitted.detector.supervised:
        assert (contributions >= 0).all()
    scale = float(np.median(np.abs(test_scores))) or 1.0
    np.testing.assert_allclose(contributions.sum(axis=1), test_scores, rtol=1e-5, atol=1e-7 * scale)


def test_same_seed_reproduces_scores(
    detector_class: type[Detector], test_scores: np.ndarray, conformance_data: ConformanceData
) -> None:
    again = _fit(detector_class, conformance_data).detector.score(conformance_data.test)
    np.testing.assert_array_equal(again, test_scores)


def _chunks(detector: Detector, data: DetectorData) -> list[np.ndarray]:
    """Row subsets to score on their own: arbitrary for row detectors, whole entities for windows."""
    rng = np.random.default_rng(11)
    if detector.input == "windows":
        assert data.entity is not None
        group = rng.permutation(int(data.entity.max()) + 1)[data.entity] % 3
        return [np.flatnonzero(group == g) for g in range(3)]
    order = rng.permutation(len(data))
    return np.split(order, [1, 257, len(data) // 2])


def test_scoring_in_chunks_equals_scoring_at_once(
    fitted: Fitted, test_scores: np.ndarray, conformance_data: ConformanceData
) -> None:
    data = conformance_data.test
    chunks = _chunks(fitted.detector, data)
    assert sum(len(c) for c in chunks) == len(data)
    pieced = np.empty(len(data))
    for rows in chunks:
        pieced[rows] = fitted.detector.score(data.take(rows))
    scale = float(np.median(np.abs(test_scores))) or 1.0
    np.testing.assert_allclose(pieced, test_scores, rtol=1e-5, atol=1e-6 * scale)


def test_explain_gives_the_top_features(fitted: Fitted, conformance_data: ConformanceData) -> None:
    rows = conformance_data.planted.take(np.flatnonzero(conformance_data.planted_mask)[:20])
    contributions = fitted.detector.contributions(rows)
    explained = fitted.detector.explain(rows, top=3)
    assert len(explained) == len(rows)
    for row, pairs in enumerate(explained):
        assert len(pairs) == 3
        names = [name for name, _ in pairs]
        values = [value for _, value in pairs]
        assert set(names) <= set(rows.feature_names)
        assert values == sorted(values, reverse=True)
        assert values[0] == pytest.approx(contributions[row].max())
        index = [rows.feature_names.index(name) for name in names]
        np.testing.assert_allclose(contributions[row, index], values)


def test_planted_anomalies_rank_high(fitted: Fitted, conformance_data: ConformanceData) -> None:
    """Day-2 planted rows (other rows, other features than the labelled day-1 ones) rank high."""
    scores = fitted.detector.score(conformance_data.planted)
    auc = roc_auc_score(conformance_data.planted_mask, scores)
    print(f"{fitted.detector.name}: planted-anomaly ROC-AUC {auc:.4f}")  # shown with pytest -s
    assert auc > MINIMUM_PLANTED_AUC


def test_wrong_feature_names_raise(fitted: Fitted, conformance_data: ConformanceData) -> None:
    data = conformance_data.test.take(slice(0, 50))
    renamed = DetectorData(
        features=data.features,
        feature_names=(*data.feature_names[:-1], "not_a_feature"),
        entity=data.entity,
        time=data.time,
    )
    with pytest.raises(ConfigError):
        fitted.detector.score(renamed)
    fewer = DetectorData(
        features=data.features[:, :-1],
        feature_names=data.feature_names[:-1],
        entity=data.entity,
        time=data.time,
    )
    with pytest.raises(ConfigError):
        fitted.detector.contributions(fewer)


def test_saved_state_restores_identical_scores(
    fitted: Fitted, test_scores: np.ndarray, conformance_data: ConformanceData, tmp_path_factory
) -> None:
    """What a model bundle stores (config as JSON, state as safetensors) gives back the same scores."""
    import json

    from safetensors.numpy import load_file, save_file

    detector = fitted.detector
    path = tmp_path_factory.mktemp("state") / "weights.safetensors"
    save_file({k: np.ascontiguousarray(v) for k, v in detector.state().items()}, str(path))
    config = type(detector.config).from_dict(json.loads(json.dumps(detector.config.to_dict())))
    restored = type(detector)(config).load_state(load_file(str(path)), detector.feature_names_)
    np.testing.assert_array_equal(restored.score(conformance_data.test), test_scores)


# -- supervised detectors ----------------------------------------------------------------------------


def _supervised(fitted: Fitted) -> Detector:
    if not fitted.detector.supervised:
        pytest.skip("only supervised detectors predict classes")
    return fitted.detector


def test_supervised_fit_needs_labels(
    detector_class: type[Detector], conformance_data: ConformanceData
) -> None:
    if not detector_class.supervised:
        pytest.skip("unsupervised detectors need no labels")
    data = conformance_data.train_labelled.take(slice(0, 500))
    unlabelled = DetectorData(data.features, data.feature_names, entity=data.entity, time=data.time)
    with pytest.raises(ConfigError):
        detector_class(detector_class.test_config()).fit(unlabelled)


def test_supervised_classes_and_probabilities(
    fitted: Fitted, test_scores: np.ndarray, conformance_data: ConformanceData
) -> None:
    detector = _supervised(fitted)
    classes = detector.classes_
    assert classes[0] == "normal"
    assert set(classes) == set(conformance_data.train_labelled.labels.tolist())
    probabilities = detector.predict_proba(conformance_data.test)
    assert probabilities.dtype == np.float64
    assert probabilities.shape == (len(conformance_data.test), len(classes))
    assert (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(test_scores, 1.0 - probabilities[:, 0], atol=1e-6)
    predicted = detector.predict(conformance_data.test)
    assert predicted.shape == (len(conformance_data.test),)
    assert set(predicted.tolist()) <= set(classes)
    np.testing.assert_array_equal(predicted, np.asarray(classes)[probabilities.argmax(axis=1)])


def test_supervised_detector_names_planted_rows(fitted: Fitted, conformance_data: ConformanceData) -> None:
    """Most day-2 planted rows are predicted as the planted class, most normal rows as normal."""
    detector = _supervised(fitted)
    predicted = detector.predict(conformance_data.planted)
    mask = conformance_data.planted_mask
    assert (predicted[mask] == "planted").mean() > 0.8
    assert (predicted[~mask] == "normal").mean() > 0.8


def test_supervised_classes_survive_saving(fitted: Fitted, conformance_data: ConformanceData) -> None:
    import json

    detector = _supervised(fitted)
    config = type(detector.config).from_dict(json.loads(json.dumps(detector.config.to_dict())))
    restored = type(detector)(config).load_state(detector.state(), detector.feature_names_)
    assert restored.classes_ == detector.classes_
    rows = conformance_data.test.take(slice(0, 300))
    np.testing.assert_array_equal(restored.predict(rows), detector.predict(rows))
