"""CNN-LSTM detector: causal convolutions then an LSTM, forecast and autoencoder modes, on sequences
of known structure."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nadkit.errors import ConfigError
from nadkit.models import REGISTRY
from nadkit.models.base import DetectorData
from nadkit.models.cnn_lstm import CNNLSTMConfig, CNNLSTMDetector
from tests.models.sequences import (
    MINIMUM_AUC,
    check_exportable,
    check_forecast_ignores_the_scored_row,
    check_padding,
    check_same_seed_same_scores,
    check_scores_and_contributions,
    check_windows_follow_entity_and_time,
    planted_auc,
    random_windows,
    sine_sequences,
)


@pytest.fixture(scope="module")
def train() -> DetectorData:
    return sine_sequences(seed=1)[0]


@pytest.fixture(scope="module", params=["forecast", "autoencoder"])
def fitted(request: pytest.FixtureRequest, train: DetectorData) -> CNNLSTMDetector:
    config = dataclasses.replace(CNNLSTMDetector.test_config(), mode=request.param)
    return CNNLSTMDetector(config).fit(train)


def test_registered_under_its_name() -> None:
    assert REGISTRY["cnn_lstm"] is CNNLSTMDetector
    assert CNNLSTMDetector.input == "windows"
    assert CNNLSTMConfig().mode == "forecast"


def test_planted_sequence_breaks_rank_high(fitted: CNNLSTMDetector) -> None:
    assert planted_auc(fitted) > MINIMUM_AUC


def test_errors_are_squared_errors_of_the_last_row(fitted: CNNLSTMDetector) -> None:
    check_scores_and_contributions(fitted)


def test_padding_is_never_read(fitted: CNNLSTMDetector) -> None:
    check_padding(fitted)


def test_windows_follow_entity_and_time(fitted: CNNLSTMDetector) -> None:
    check_windows_follow_entity_and_time(fitted)


def test_forecast_does_not_read_the_scored_row(fitted: CNNLSTMDetector) -> None:
    if fitted.config.mode != "forecast":
        pytest.skip("only forecast mode hides the scored row")
    check_forecast_ignores_the_scored_row(fitted)


def test_convolutions_are_causal(fitted: CNNLSTMDetector) -> None:
    """The convolved sequence at time t depends on rows up to t only."""
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


# nn.LSTM and nn.GRU keep their weights in a list torch.export warns about; the graph is still exact
@pytest.mark.filterwarnings("ignore:The tensor attributes:UserWarning")
def test_network_exports_as_a_graph(fitted: CNNLSTMDetector) -> None:
    check_exportable(fitted)


def test_same_seed_same_scores() -> None:
    check_same_seed_same_scores(CNNLSTMDetector, CNNLSTMDetector.test_config())


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
