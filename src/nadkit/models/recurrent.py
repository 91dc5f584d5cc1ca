"""Detectors of the recurrent family: LSTM and GRU over the window of rows that ends at the row scored.

Two modes, one network (:class:`RecurrentNetwork`, with a switch between LSTM and GRU cells):

- ``forecast`` (default): the network reads the rows of the window one by one and, before reading
  row ``t``, predicts it from the rows before it. The score of a row is the squared error of the
  prediction of the window's last row (the row scored), which the network never reads. Training
  predicts every real row of a window the same way (next-step prediction with the true earlier rows
  as input).
- ``autoencoder``: an encoder reads the whole window; its last state, squeezed through a ``latent``
  bottleneck, is all a decoder gets to rebuild the window. Training rebuilds every real row; the
  score is the squared error of the rebuilt last row.

Padding rows (on the left of a window, see :mod:`nadkit.features.series`) are never read: the
recurrence runs over the real rows only, from a learned start state, so a row's prediction depends
only on the real rows before it. A window holding only the row scored is predicted from the learned
start state, and training sees such predictions too (the first real row of every padded window), so
this case is trained like any other.

:class:`SequenceDetector`, the base of every window model (also the Transformer and the CNN-LSTM),
turns a network that predicts each row of a window into a loss and per-feature errors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from nadkit.errors import ConfigError
from nadkit.models.base import Detector
from nadkit.models.neural import NeuralConfig, NeuralDetector
from nadkit.models.trainer import Batch

log = logging.getLogger(__name__)

CellType = Literal["lstm", "gru"]
RecurrentMode = Literal["forecast", "autoencoder"]


def window_mask(batch: Batch) -> torch.Tensor:
    """The batch's ``(b, window)`` boolean mask of real rows (all True when the batch has none)."""
    if batch.mask is not None:
        return batch.mask.bool()
    return torch.ones(batch.x.shape[:2], dtype=torch.bool, device=batch.x.device)


def masked_squared_error(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the real rows (``mask``) of ``(b, window, d)`` predictions."""
    weight = mask.to(prediction.dtype).unsqueeze(-1)
    squared = (prediction - target).square() * weight
    return squared.sum() / (weight.sum() * prediction.shape[-1]).clamp(min=1.0)


class SequenceDetector(NeuralDetector):
    """Base of the window detectors whose network maps ``(x, mask)`` windows of shape
    ``(b, window, d)`` to a prediction of every row of the window, ``(b, window, d)``: the loss is
    the squared error over the real rows, the score the squared error of the last row."""

    input = "windows"
    wants_calendar = True

    def loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        """Mean squared error of the predictions of the real rows of each window."""
        mask = window_mask(batch)
        return masked_squared_error(module(batch.x, mask), batch.x, mask)

    def errors(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        """Squared error per feature of the prediction of each window's last row."""
        prediction = module(batch.x, window_mask(batch))
        return (prediction[:, -1] - batch.x[:, -1]).square()


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, got {value}")


def _check_mode(mode: str, modes: tuple[str, ...]) -> None:
    if mode not in modes:
        raise ConfigError(f"mode must be one of {', '.join(modes)}; got {mode!r}")


@dataclass(frozen=True)
class RecurrentConfig(NeuralConfig):
    """LSTM/GRU settings: ``hidden`` units in each of ``layers`` stacked cells; ``mode`` forecast
    or autoencoder; ``latent``: the bottleneck width of the autoencoder."""

    hidden: int = 64
    layers: int = 1
    mode: RecurrentMode = "forecast"
    latent: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive(hidden=self.hidden, layers=self.layers, latent=self.latent)
        _check_mode(self.mode, ("forecast", "autoencoder"))


class RecurrentNetwork(nn.Module):
    """Stacked LSTM or GRU over a window that skips padding rows; predicts every row of the window
    (``forecast``: from the rows before it; ``autoencoder``: from a bottleneck code of the whole
    window). ``inputs`` is the width of what the network reads, ``features`` of what it predicts
    (they differ when a front end, e.g. convolutions, feeds it).

    Padding is on the left of a window; the network moves each window's real rows to the front,
    runs the recurrence from the learned start state (later padding cannot affect earlier steps)
    and moves the predictions back, all with tensor gathers so the module exports as it is."""

    def __init__(
        self,
        inputs: int,
        features: int,
        *,
        hidden: int,
        layers: int,
        cell: CellType,
        mode: RecurrentMode,
        latent: int,
    ) -> None:
        super().__init__()
        if cell not in ("lstm", "gru"):
            raise ConfigError(f"cell must be 'lstm' or 'gru', got {cell!r}")
        _check_mode(mode, ("forecast", "autoencoder"))
        self.is_lstm = cell == "lstm"
        self.mode = mode
        recurrent_class = nn.LSTM if self.is_lstm else nn.GRU
        self.encoder = recurrent_class(inputs, hidden, num_layers=layers, batch_first=True)
        self.start_hidden = nn.Parameter(torch.zeros(layers, 1, hidden))
        self.start_cell = nn.Parameter(torch.zeros(layers, 1, hidden)) if self.is_lstm else None
        if mode == "autoencoder":
            self.to_latent = nn.Linear(hidden, latent)
            self.from_latent = nn.Linear(latent, hidden)
            self.decoder = recurrent_class(hidden, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, features)

    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-layer states of the recurrence over each window's real rows, moved to the front:
        ``(b, window, hidden)`` (position ``j`` has read ``j + 1`` real rows; positions past the
        real rows hold nothing useful), and the number of real rows ``(b,)``."""
        batch, steps = x.shape[0], x.shape[1]
        real = mask.long().sum(dim=1)
        shift = (steps - real).unsqueeze(1)
        source = (torch.arange(steps, device=x.device).unsqueeze(0) + shift).clamp(max=steps - 1)
        aligned = x.gather(1, source.unsqueeze(-1).expand(-1, -1, x.shape[2]))
        start = self.start_hidden.expand(-1, batch, -1).contiguous()
        if self.start_cell is not None:
            states, _ = self.encoder(aligned, (start, self.start_cell.expand(-1, batch, -1).contiguous()))
        else:
            states, _ = self.encoder(aligned, start)
        return states, real

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(b, window, features)`` predictions of the rows of ``(b, window, inputs)`` windows."""
        steps = x.shape[1]
        states, real = self.encode(x, mask)
        if self.mode == "forecast":
            # the real row at front position j is predicted from the state after the j rows before it
            start = self.start_hidden[-1].unsqueeze(0).expand(x.shape[0], -1, -1)
            before = torch.cat([start, states[:, :-1]], dim=1)
            # back to the window's layout: position p holds front position p - (window - real)
            shift = (steps - real).unsqueeze(1)
            target = (torch.arange(steps, device=x.device).unsqueeze(0) - shift).clamp(min=0)
            return self.head(before.gather(1, target.unsqueeze(-1).expand(-1, -1, before.shape[2])))
        last = (real - 1).view(-1, 1, 1).expand(-1, 1, states.shape[2])
        code = self.from_latent(self.to_latent(states.gather(1, last).squeeze(1)))
        decoded, _ = self.decoder(code.unsqueeze(1).expand(-1, steps, -1).contiguous())
        return self.head(decoded)


class _RecurrentDetector(SequenceDetector):
    """A recurrent detector; subclasses pick the cell type."""

    config_class = RecurrentConfig
    config: RecurrentConfig
    cell: ClassVar[CellType] = "lstm"

    @classmethod
    def test_config(cls) -> RecurrentConfig:
        """Small network, short windows, a few epochs: seconds on a few thousand rows."""
        return RecurrentConfig(
            hidden=24, latent=8, window=8, epochs=10, batch_size=256, learning_rate=3e-3, patience=4
        )

    def build_module(self, features: int) -> nn.Module:
        """The recurrent network for ``features`` features."""
        config = self.config
        return RecurrentNetwork(
            features,
            features,
            hidden=config.hidden,
            layers=config.layers,
            cell=self.cell,
            mode=config.mode,
            latent=config.latent,
        )


class LSTMDetector(_RecurrentDetector):
    """LSTM over each row's window: forecast error (default) or sequence-autoencoder error of the row."""

    name = "lstm"
    summary = "LSTM over each source's flow window: forecast (or sequence autoencoder) error"
    cell = "lstm"


class GRUDetector(_RecurrentDetector):
    """GRU over each row's window: forecast error (default) or sequence-autoencoder error of the row."""

    name = "gru"
    summary = "GRU over each source's flow window: forecast (or sequence autoencoder) error"
    cell = "gru"


#: the detectors this module defines, in registry order
DETECTORS: tuple[type[Detector], ...] = (LSTMDetector, GRUDetector)
