"""What every window detector (LSTM, GRU, CNN-LSTM, Transformer) must do, in each of its modes, on
sequences of known structure: rank planted breaks high, score the last row's squared errors, never
read padding, follow entity and time, hide the scored row when forecasting, export as a graph and
repeat itself with the same seed."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from nadkit.models.cnn_lstm import CNNLSTMDetector
from nadkit.models.neural import NeuralDetector
from nadkit.models.recurrent import GRUDetector, LSTMDetector
from nadkit.models.transformer import TransformerDetector
from tests.models.sequences import (
    MINIMUM_AUC,
    check_exportable,
    check_forecast_ignores_the_scored_row,
    check_padding,
    check_same_seed_same_scores,
    check_scores_and_contributions,
    check_windows_follow_entity_and_time,
    fitted_detector,
    planted_auc,
    sine_sequences,
)

CASES = [
    (LSTMDetector, "forecast"),
    (LSTMDetector, "autoencoder"),
    (GRUDetector, "forecast"),
    (GRUDetector, "autoencoder"),
    (CNNLSTMDetector, "forecast"),
    (CNNLSTMDetector, "autoencoder"),
    (TransformerDetector, "reconstruct"),
    (TransformerDetector, "forecast"),
]
CLASSES = [LSTMDetector, GRUDetector, CNNLSTMDetector, TransformerDetector]


@pytest.fixture(scope="module", params=CASES, ids=[f"{cls.name}-{mode}" for cls, mode in CASES])
def fitted(request: pytest.FixtureRequest) -> NeuralDetector:
    return fitted_detector(*request.param)


def test_every_window_detector_is_covered() -> None:
    from nadkit.models import REGISTRY

    windowed = {cls for cls in REGISTRY.values() if cls.input == "windows"}
    assert windowed == set(CLASSES)


def test_planted_sequence_breaks_rank_high(fitted: NeuralDetector) -> None:
    assert planted_auc(fitted) > MINIMUM_AUC


def test_errors_are_squared_errors_of_the_last_row(fitted: NeuralDetector) -> None:
    check_scores_and_contributions(fitted)


def test_padding_is_never_read(fitted: NeuralDetector) -> None:
    check_padding(fitted)


def test_windows_follow_entity_and_time(fitted: NeuralDetector) -> None:
    check_windows_follow_entity_and_time(fitted)


def test_forecast_does_not_read_the_scored_row(fitted: NeuralDetector) -> None:
    if fitted.config.mode != "forecast":
        pytest.skip("only forecast mode hides the scored row")
    check_forecast_ignores_the_scored_row(fitted)


# nn.LSTM and nn.GRU keep their weights in a list torch.export warns about; the graph is still exact
@pytest.mark.filterwarnings("ignore:The tensor attributes:UserWarning")
def test_network_exports_as_a_graph(fitted: NeuralDetector) -> None:
    check_exportable(fitted)


@pytest.mark.parametrize("cls", CLASSES, ids=[cls.name for cls in CLASSES])
def test_same_seed_same_scores(cls: type[NeuralDetector]) -> None:
    check_same_seed_same_scores(cls, cls.test_config())


@pytest.mark.parametrize("cls", CLASSES, ids=[cls.name for cls in CLASSES])
def test_rows_without_time_or_entity_are_warned_about(
    cls: type[NeuralDetector], caplog: pytest.LogCaptureFixture
) -> None:
    data, _ = sine_sequences(entities=2, steps=40, seed=3)
    config = dataclasses.replace(cls.test_config(), epochs=1)
    with caplog.at_level(logging.WARNING, logger="nadkit.models.neural"):
        cls(config).fit(data)
    assert not caplog.records  # entity and time given: windows follow them
    bare = dataclasses.replace(data, entity=None, time=None)
    with caplog.at_level(logging.WARNING, logger="nadkit.models.neural"):
        cls(config).fit(bare)
    assert [record.getMessage() for record in caplog.records] == [
        f"{cls.name} reads windows of consecutive rows, but these rows have no time or entity column: "
        "the windows follow the file's row order, which may carry no sequence (a row model such as ae "
        "suits tabular records)"
    ]
