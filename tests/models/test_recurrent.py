"""LSTM and GRU detectors: what is their own (the shared window-detector checks run in
test_sequence_detectors)."""

from __future__ import annotations

import dataclasses

import pytest

from nadkit.errors import ConfigError
from nadkit.models import REGISTRY
from nadkit.models.recurrent import GRUDetector, LSTMDetector, RecurrentConfig
from tests.models.sequences import check_forecast_ignores_the_scored_row, fitted_detector, sine_sequences


def test_registered_under_their_names() -> None:
    assert REGISTRY["lstm"] is LSTMDetector and REGISTRY["gru"] is GRUDetector
    assert LSTMDetector.input == GRUDetector.input == "windows"


@pytest.mark.parametrize("cls", [LSTMDetector, GRUDetector])
@pytest.mark.parametrize("mode", ["forecast", "autoencoder"])
def test_cells_differ_between_lstm_and_gru(cls: type[LSTMDetector], mode: str) -> None:
    fitted = fitted_detector(cls, mode)
    expected = "LSTM" if cls is LSTMDetector else "GRU"
    assert type(fitted.module_.encoder).__name__ == expected


def test_stacked_layers_train() -> None:
    data, _ = sine_sequences(entities=2, steps=60, seed=2)
    config = dataclasses.replace(LSTMDetector.test_config(), layers=2, epochs=1)
    detector = LSTMDetector(config).fit(data)
    assert detector.module_.encoder.num_layers == 2
    check_forecast_ignores_the_scored_row(detector)


@pytest.mark.parametrize(
    "options", [{"hidden": 0}, {"layers": 0}, {"latent": 0}, {"mode": "backcast"}, {"window": 1}]
)
def test_bad_config_is_refused(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        RecurrentConfig(**options)
