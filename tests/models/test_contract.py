"""What every registered detector declares, rather than what callers would find by probing it."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from nadkit.errors import NadkitError
from nadkit.features.data import DetectorData
from nadkit.models import REGISTRY
from nadkit.models.neural import NeuralConfig


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_fit_takes_progress_and_the_tags_agree(name: str) -> None:
    cls = REGISTRY[name]
    assert "progress" in inspect.signature(cls.fit).parameters
    # networks score faster as ONNX graphs; trees and order statistics in NumPy
    assert cls.prefers_onnx == issubclass(cls.config_class, NeuralConfig)
    if not cls.supervised:
        assert cls.classes_ == ()


@pytest.mark.parametrize(
    "name", sorted(n for n, c in REGISTRY.items() if not c.supervised and c.input == "rows")
)
def test_unsupervised_detectors_predict_no_classes(name: str) -> None:
    detector = REGISTRY[name](REGISTRY[name].test_config())
    rng = np.random.default_rng(0)
    data = DetectorData(rng.normal(size=(300, 4)).astype(np.float32), ("a", "b", "c", "d"))
    detector.fit(data)
    scores, predicted = detector.score_and_predict(data)
    assert predicted is None and scores.shape == (300,)
    with pytest.raises(NadkitError, match="predicts no classes"):
        detector.predict(data)
