"""Detectors of the CNN-LSTM family: causal 1-D convolutions over time (the features as channels)
pick out local shapes in the window, an LSTM reads the convolved sequence.

The convolutions are padded on the left only, so the output at time ``t`` depends on rows up to
``t``; the LSTM part is :class:`~nadkit.models.recurrent.RecurrentNetwork`, which predicts a row
from the convolved rows before it (``forecast``, default: the row scored is never read) or rebuilds
the window from a bottleneck code of all of it (``autoencoder``). Padding rows enter the
convolutions as zeros (as rows before the window would) and are skipped by the LSTM.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional

from nadkit.errors import ConfigError
from nadkit.models.base import Detector
from nadkit.models.neural import NeuralConfig
from nadkit.models.recurrent import RecurrentMode, RecurrentNetwork, SequenceDetector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CNNLSTMConfig(NeuralConfig):
    """CNN-LSTM settings: ``conv_layers`` causal convolutions of ``channels`` channels and
    ``kernel`` rows each, then an LSTM of ``hidden`` units in ``layers`` layers; ``mode`` forecast
    or autoencoder; ``latent``: the bottleneck width of the autoencoder."""

    channels: int = 32
    kernel: int = 3
    conv_layers: int = 2
    hidden: int = 64
    layers: int = 1
    mode: RecurrentMode = "forecast"
    latent: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("channels", "kernel", "conv_layers", "hidden", "layers", "latent"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.mode not in ("forecast", "autoencoder"):
            raise ConfigError(f"mode must be 'forecast' or 'autoencoder', got {self.mode!r}")


class CNNLSTMNetwork(nn.Module):
    """Causal convolutions over time, then a :class:`RecurrentNetwork` with LSTM cells that
    predicts every row of the window."""

    def __init__(
        self,
        features: int,
        *,
        channels: int,
        kernel: int,
        conv_layers: int,
        hidden: int,
        layers: int,
        mode: RecurrentMode,
        latent: int,
    ) -> None:
        super().__init__()
        self.kernel = kernel
        self.convolutions = nn.ModuleList(
            nn.Conv1d(features if layer == 0 else channels, channels, kernel) for layer in range(conv_layers)
        )
        self.recurrent = RecurrentNetwork(
            channels, features, hidden=hidden, layers=layers, cell="lstm", mode=mode, latent=latent
        )

    def convolve(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(b, window, channels)`` convolved sequence of ``(b, window, features)`` windows; zero at
        padding rows."""
        real = mask.to(x.dtype).unsqueeze(1)  # (b, 1, window)
        signal = x.transpose(1, 2) * real
        for convolution in self.convolutions:
            # left padding only: no output sees a later row; padding rows stay zero between layers
            signal = functional.relu(convolution(functional.pad(signal, (self.kernel - 1, 0)))) * real
        return signal.transpose(1, 2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(b, window, features)`` predictions of the rows of ``(b, window, features)`` windows."""
        return self.recurrent(self.convolve(x, mask), mask)


class CNNLSTMDetector(SequenceDetector):
    """Causal convolutions then an LSTM over each row's window: forecast error (default) or
    autoencoder error of the row."""

    name = "cnn_lstm"
    summary = "causal 1-D convolutions over time, then an LSTM: forecast (or autoencoder) error"
    config_class = CNNLSTMConfig
    config: CNNLSTMConfig

    @classmethod
    def test_config(cls) -> CNNLSTMConfig:
        """Small network, short windows, a few epochs: seconds on a few thousand rows."""
        return CNNLSTMConfig(
            channels=16,
            conv_layers=1,
            hidden=24,
            latent=8,
            window=8,
            epochs=10,
            batch_size=256,
            learning_rate=3e-3,
            patience=4,
        )

    def build_module(self, features: int) -> nn.Module:
        """The CNN-LSTM network for ``features`` features."""
        config = self.config
        return CNNLSTMNetwork(
            features,
            channels=config.channels,
            kernel=config.kernel,
            conv_layers=config.conv_layers,
            hidden=config.hidden,
            layers=config.layers,
            mode=config.mode,
            latent=config.latent,
        )


#: the detectors this module defines, in registry order
DETECTORS: tuple[type[Detector], ...] = (CNNLSTMDetector,)
