"""CNN-LSTM detector: what is its own, the causal convolutions (the shared window-detector checks run
in test_sequence_detectors)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nadkit.errors import ConfigError
from nadkit.models import REGISTRY
from nadkit.models.cnn_lstm import CNNLSTMConfig, CNNLSTMDetector
from tests.models.sequences import (
    check_forecast_ignores_the_scored_row,
    check_padding,
    fitted_detector,
    random_windows,
    sine_sequences,
)


def test_registered_under_its_name() -> None:
    assert REGISTRY["cnn_lstm"] is CNNLSTMDetector
    assert CNNLSTMDetector.input == "windows"
    assert CNNLSTMConfig().mode == "forecast"


@pytest.mark.parametrize("mode", ["forecast", "autoencoder"])
def test_convolutions_are_causal(mode: str) -> None:
    """The convolved sequence at time t depends on rows up to t only."""
    fitted = fitted_detector(CNNLSTMDetector, mode)
    module = fitted.module_
    batch = random_windows(fitted)
    cut = fitted.config.window // 2
    later = batch.x.clone()
    later[:, cut:] += 5.0
    with torch.no_grad():
        before = module.convolve(batch.x, batch.mask)
        after = module.convolve(later, batch.mask)
    torch.testing.assert_close(after[:, :cut], before[:, :cut])
    assert not torch.allclose(after[:, cut:], before[:, cut:])


def test_deeper_convolutions_stay_causal() -> None:
    data, _ = sine_sequences(entities=2, steps=60, seed=2)
    config = dataclasses.replace(CNNLSTMDetector.test_config(), conv_layers=3, kernel=4, epochs=1)
    detector = CNNLSTMDetector(config).fit(data)
    assert len(detector.module_.convolutions) == 3
    check_forecast_ignores_the_scored_row(detector)
    check_padding(detector)


@pytest.mark.parametrize(
    "options", [{"channels": 0}, {"kernel": 0}, {"conv_layers": 0}, {"hidden": 0}, {"mode": "reconstruct"}]
)
def test_bad_config_is_refused(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        CNNLSTMConfig(**options)
