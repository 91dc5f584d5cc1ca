"""Transformer detector: what is its own, causal forecasting, a reconstruction that reads the scored
row, positions (the shared window-detector checks run in test_sequence_detectors)."""

from __future__ import annotations

import pytest
import torch

from nadkit.errors import ConfigError
from nadkit.models import REGISTRY
from nadkit.models.transformer import TransformerConfig, TransformerDetector, sinusoidal_positions
from tests.models.sequences import fitted_detector, random_windows


def test_registered_under_its_name() -> None:
    assert REGISTRY["transformer"] is TransformerDetector
    assert TransformerDetector.input == "windows"
    assert TransformerConfig().mode == "reconstruct"


def test_forecast_is_causal() -> None:
    """The prediction of row t depends on rows before t only (row t and later can change freely)."""
    fitted = fitted_detector(TransformerDetector, "forecast")
    batch = random_windows(fitted)
    cut = fitted.config.window // 2
    later = batch.x.clone()
    later[:, cut:] += 5.0
    with torch.no_grad():
        before = fitted.module_(batch.x, batch.mask)
        after = fitted.module_(later, batch.mask)
    torch.testing.assert_close(after[:, : cut + 1], before[:, : cut + 1])
    assert not torch.allclose(after[:, cut + 1 :], before[:, cut + 1 :])


def test_reconstruction_reads_the_scored_row() -> None:
    """Reconstruct mode sees the last row (its code must carry it through the bottleneck)."""
    fitted = fitted_detector(TransformerDetector, "reconstruct")
    batch = random_windows(fitted)
    changed = batch.x.clone()
    changed[:, -1] += 3.0
    with torch.no_grad():
        before = fitted.module_(batch.x, batch.mask)[:, -1]
        after = fitted.module_(changed, batch.mask)[:, -1]
    assert not torch.allclose(before, after)


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
