"""Transformer detector: reconstruction (bottleneck) and causal forecast modes on sequences of known
structure."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nadkit.errors import ConfigError
from nadkit.models import REGISTRY
from nadkit.models.base import DetectorData
from nadkit.models.transformer import TransformerConfig, TransformerDetector, sinusoidal_positions
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


@pytest.fixture(scope="module", params=["reconstruct", "forecast"])
def fitted(request: pytest.FixtureRequest, train: DetectorData) -> TransformerDetector:
    config = dataclasses.replace(TransformerDetector.test_config(), mode=request.param)
    return TransformerDetector(config).fit(train)


def test_registered_under_its_name() -> None:
    assert REGISTRY["transformer"] is TransformerDetector
    assert TransformerDetector.input == "windows"
    assert TransformerConfig().mode == "reconstruct"


def test_planted_sequence_breaks_rank_high(fitted: TransformerDetector) -> None:
    assert planted_auc(fitted) > MINIMUM_AUC


def test_errors_are_squared_errors_of_the_last_row(fitted: TransformerDetector) -> None:
    check_scores_and_contributions(fitted)


def test_padding_is_never_read(fitted: TransformerDetector) -> None:
    check_padding(fitted)


def test_windows_follow_entity_and_time(fitted: TransformerDetector) -> None:
    check_windows_follow_entity_and_time(fitted)


def test_forecast_does_not_read_the_scored_row(fitted: TransformerDetector) -> None:
    if fitted.config.mode != "forecast":
        pytest.skip("only forecast mode hides the scored row")
    check_forecast_ignores_the_scored_row(fitted)


def test_forecast_is_causal(fitted: TransformerDetector) -> None:
    """The prediction of row t depends on rows before t only (row t and later can change freely)."""
    if fitted.config.mode != "forecast":
        pytest.skip("only forecast mode is causal")
    batch = random_windows(fitted)
    cut = fitted.config.window // 2
    later = batch.x.clone()
    later[:, cut:] += 5.0
    with torch.no_grad():
        before = fitted.module_(batch.x, batch.mask)
        after = fitted.module_(later, batch.mask)
    torch.testing.assert_close(after[:, : cut + 1], before[:, : cut + 1])
    assert not torch.allclose(after[:, cut + 1 :], before[:, cut + 1 :])


def test_reconstruction_reads_the_scored_row(fitted: TransformerDetector) -> None:
    """Reconstruct mode sees the last row (its code must carry it through the bottleneck)."""
    if fitted.config.mode != "reconstruct":
        pytest.skip("only reconstruct mode reads the scored row")
    batch = random_windows(fitted)
    changed = batch.x.clone()
    changed[:, -1] += 3.0
    with torch.no_grad():
        before = fitted.module_(batch.x, batch.mask)[:, -1]
        after = fitted.module_(changed, batch.mask)[:, -1]
    assert not torch.allclose(before, after)


def test_network_exports_as_a_graph(fitted: TransformerDetector) -> None:
    check_exportable(fitted)


def test_same_seed_same_scores() -> None:
    check_same_seed_same_scores(TransformerDetector, TransformerDetector.test_config())


def test_positions_are_distinct_and_bounded() -> None:
    positions = sinusoidal_positions(9, 6)
    assert positions.shape == (9, 6) and positions.abs().max() <= 1.0
    assert torch.cdist(positions, positions).add(torch.eye(9)).min() > 0.1


@pytest.mark.parametrize(
    "options",
    [{"d_model": 30, "heads": 4}, {"layers": 0}, {"latent": 0}, {"dropout": 1.0}, {"mode": "autoencoder"}],
)
def test_bad_config_is_refused(options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        TransformerConfig(**options)
