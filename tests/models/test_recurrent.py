"""LSTM and GRU detectors: forecast and sequence-autoencoder modes on sequences of known structure."""

from __future__ import annotations

import dataclasses

import pytest

from nadkit.errors import ConfigError
from nadkit.models import REGISTRY
from nadkit.models.base import DetectorData
from nadkit.models.recurrent import GRUDetector, LSTMDetector, RecurrentConfig
from tests.models.sequences import (
    MINIMUM_AUC,
    check_exportable,
    check_forecast_ignores_the_scored_row,
    check_padding,
    check_same_seed_same_scores,
    check_scores_and_contributions,
    check_windows_follow_entity_and_time,
    planted_auc,
    sine_sequences,
)

CASES = [
    (LSTMDetector, "forecast"),
    (LSTMDetector, "autoencoder"),
    (GRUDetector, "forecast"),
    (GRUDetector, "autoencoder"),
]
IDS = [f"{cls.name}-{mode}" for cls, mode in CASES]


@pytest.fixture(scope="module")
def train() -> DetectorData:
    return sine_sequences(seed=1)[0]


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def fitted(request: pytest.FixtureRequest, train: DetectorData) -> LSTMDetector | GRUDetector:
    cls, mode = request.param
    return cls(dataclasses.replace(cls.test_config(), mode=mode)).fit(train)


def test_registered_under_their_names() -> None:
    assert REGISTRY["lstm"] is LSTMDetector and REGISTRY["gru"] is GRUDetector
    assert LSTMDetector.input == GRUDetector.input == "windows"


def test_planted_sequence_breaks_rank_high(fitted: LSTMDetector | GRUDetector) -> None:
    assert planted_auc(fitted) > MINIMUM_AUC


def test_errors_are_squared_errors_of_the_last_row(fitted: LSTMDetector | GRUDetector) -> None:
    check_scores_and_contributions(fitted)


def test_padding_is_never_read(fitted: LSTMDetector | GRUDetector) -> None:
    check_padding(fitted)


def test_windows_follow_entity_and_time(fitted: LSTMDetector | GRUDetector) -> None:
    check_windows_follow_entity_and_time(fitted)


def test_forecast_does_not_read_the_scored_row(fitted: LSTMDetector | GRUDetector) -> None:
    if fitted.config.mode != "forecast":
        pytest.skip("only forecast mode hides the scored row")
    check_forecast_ignores_the_scored_row(fitted)


def test_cells_differ_between_lstm_and_gru(fitted: LSTMDetector | GRUDetector) -> None:
    expected = "LSTM" if isinstance(fitted, LSTMDetector) else "GRU"
    assert type(fitted.module_.encoder).__name__ == expected


# nn.LSTM and nn.GRU keep their weights in a list torch.export warns about; the graph is still exact
@pytest.mark.filterwarnings("ignore:The tensor attributes:UserWarning")
def test_network_exports_as_a_graph(fitted: LSTMDetector | GRUDetector) -> None:
    check_exportable(fitted)


def test_same_seed_same_scores() -> None:
    check_same_seed_same_scores(GRUDetector, GRUDetector.test_config())


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
