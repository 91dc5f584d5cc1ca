"""Weighed errors (``weigh_errors``): each feature's error divided by its typical error on normal
held-out rows, floored at the median feature's, in torch, in the saved state and in the ONNX graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nadkit.errors import ConfigError
from nadkit.models.autoencoder import Autoencoder, AutoencoderConfig
from nadkit.models.base import DetectorData
from nadkit.models.export import export_onnx
from nadkit.models.neural import ERROR_WEIGHTS_KEY, error_weights
from nadkit.models.onnx_runtime import OnnxScorer

NAMES = tuple(f"f{j}" for j in range(8))


def _data(rows: int, seed: int) -> DetectorData:
    """Six features on a low-rank plane and two of pure noise, which no model can reconstruct."""
    rng = np.random.default_rng(seed)
    plane = rng.normal(size=(rows, 2)) @ np.random.default_rng(0).normal(size=(2, 6))
    noise = rng.normal(size=(rows, 2))
    features = np.hstack([plane, noise]).astype(np.float32)
    return DetectorData(features / features.std(axis=0), NAMES)


def _config(weigh: bool) -> AutoencoderConfig:
    return AutoencoderConfig(
        hidden=(16,),
        bottleneck=2,
        epochs=30,
        patience=8,
        learning_rate=5e-3,
        weigh_errors=weigh,
        device="cpu",
    )


def test_weights_are_the_median_over_each_features_mean_error() -> None:
    weights = error_weights(np.array([0.1, 0.2, 0.4, 0.8, 0.0]))
    np.testing.assert_allclose(weights, [1.0, 1.0, 0.5, 0.25, 1.0])  # the median is 0.2
    assert weights.dtype == np.float32
    # no error at all (a perfect fit): every weight 1
    np.testing.assert_array_equal(error_weights(np.zeros(3)), np.ones(3, dtype=np.float32))


def test_noisy_features_count_for_less_and_the_weights_are_saved() -> None:
    train = _data(2000, seed=1)
    weighed = Autoencoder(_config(True)).fit(train)
    plain = Autoencoder(_config(False)).fit(train)
    assert plain.error_weights_ is None and ERROR_WEIGHTS_KEY not in plain.state()
    weights = weighed.error_weights_
    assert weights is not None and weights.shape == (8,)
    assert weights[6:].max() < 0.5 * weights[:6].min()  # the noise features are down-weighted
    # a row off the plane in a plane feature now outscores one as far off in a noise feature
    test = _data(200, seed=3)
    off_plane, off_noise = test.features[:1].copy(), test.features[:1].copy()
    off_plane[0, 0] += 4.0
    off_noise[0, 6] += 4.0
    scores = weighed.score(DetectorData(np.vstack([off_plane, off_noise]), NAMES))
    assert scores[0] > scores[1]
    np.testing.assert_allclose(
        weighed.contributions(test),
        Autoencoder(_config(False))
        .load_state({k: v for k, v in weighed.state().items() if k != ERROR_WEIGHTS_KEY}, NAMES)
        .contributions(test)
        * weights,
        rtol=1e-6,
    )
    again = Autoencoder(_config(True)).load_state(weighed.state(), NAMES)
    np.testing.assert_array_equal(again.error_weights_, weights)
    np.testing.assert_array_equal(again.score(train), weighed.score(train))


def test_onnx_graph_weighs_the_errors(tmp_path: Path) -> None:
    train = _data(1500, seed=4)
    detector = Autoencoder(_config(True)).fit(train)
    path = tmp_path / "ae.onnx"
    export_onnx(detector, path)
    test = _data(300, seed=5)
    scorer = OnnxScorer(path, batch_size=97, threads=1)
    np.testing.assert_allclose(scorer.contributions(test), detector.contributions(test), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bad", [np.ones(3), np.array([1.0, 0.0] * 4), np.array([np.nan] + [1.0] * 7)])
def test_altered_weights_are_refused(bad: np.ndarray) -> None:
    detector = Autoencoder(_config(True)).fit(_data(300, seed=6))
    arrays = detector.state()
    arrays[ERROR_WEIGHTS_KEY] = bad.astype(np.float32)
    with pytest.raises(ConfigError, match="error weights"):
        Autoencoder(_config(True)).load_state(arrays, NAMES)
