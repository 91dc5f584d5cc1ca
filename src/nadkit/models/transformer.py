"""Detectors of the transformer family: self-attention over the window of rows that ends at the row
scored.

Rows are projected to ``d_model`` and given sinusoidal position encodings; padding rows are hidden
from attention with a key padding mask. Two modes:

- ``reconstruct`` (default): a summary token, always present, attends to the whole window; its
  output is squeezed through a ``latent`` bottleneck, and every row of the window is rebuilt from
  that code and the row's position alone. The score is the squared error of the rebuilt last row.
  The bottleneck (rather than hiding the last row) keeps this mode different from ``forecast``:
  it sees the row scored and flags rows, or windows, unlike the normal ones even when the history
  says little about the next row, while it cannot copy the row through since one short code must
  rebuild the whole window.
- ``forecast``: a learned start token followed by the window's rows except the last, under a causal
  mask: the output at position ``t`` predicts row ``t`` from the start token and the rows before it.
  Padding rows read as the start token too and are hidden from attention, so every position has the
  start token to attend to and the first real row of a window, or a window holding only the row
  scored, is predicted from the start token alone; the last row is never an input.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from nadkit.errors import ConfigError
from nadkit.models.base import Detector
from nadkit.models.neural import NeuralConfig
from nadkit.models.recurrent import SequenceDetector

log = logging.getLogger(__name__)

TransformerMode = Literal["reconstruct", "forecast"]


@dataclass(frozen=True)
class TransformerConfig(NeuralConfig):
    """Transformer settings: ``d_model`` width, ``heads`` attention heads, ``layers`` encoder
    layers with ``feedforward`` hidden units, ``dropout``; ``mode`` reconstruct or forecast;
    ``latent``: the bottleneck width of reconstruct mode."""

    d_model: int = 64
    heads: int = 4
    layers: int = 2
    feedforward: int = 128
    dropout: float = 0.0
    mode: TransformerMode = "reconstruct"
    latent: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("d_model", "heads", "layers", "feedforward", "latent"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.d_model % self.heads:
            raise ConfigError(f"d_model ({self.d_model}) must be a multiple of heads ({self.heads})")
        if not 0 <= self.dropout < 1:
            raise ConfigError("dropout must be in [0, 1)")
        if self.mode not in ("reconstruct", "forecast"):
            raise ConfigError(f"mode must be 'reconstruct' or 'forecast', got {self.mode!r}")


def sinusoidal_positions(length: int, width: int) -> torch.Tensor:
    """``(length, width)`` fixed sine/cosine position encodings."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    rate = torch.exp(torch.arange(0, width, 2, dtype=torch.float32) * (-math.log(10000.0) / width))
    encoding = torch.zeros(length, width)
    encoding[:, 0::2] = torch.sin(position * rate)
    encoding[:, 1::2] = torch.cos(position * rate)[:, : width // 2]
    return encoding


class TransformerNetwork(nn.Module):
    """Transformer encoder over a window of ``window`` rows of ``features`` features; predicts every
    row of the window (see the module docstring for the two modes)."""

    def __init__(
        self,
        features: int,
        window: int,
        *,
        d_model: int,
        heads: int,
        layers: int,
        feedforward: int,
        dropout: float,
        mode: TransformerMode,
        latent: int,
    ) -> None:
        super().__init__()
        self.mode = mode
        self.project = nn.Linear(features, d_model)
        # the start token (forecast) or summary token (reconstruct), at position 0
        self.token = nn.Parameter(torch.zeros(1, 1, d_model))
        nn.init.normal_(self.token, std=0.02)
        self.register_buffer("positions", sinusoidal_positions(window + 1, d_model), persistent=False)
        causal = torch.triu(torch.ones(window, window, dtype=torch.bool), diagonal=1)
        self.register_buffer("causal", causal, persistent=False)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, feedforward, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(
            layer, layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False
        )
        if mode == "reconstruct":
            self.to_latent = nn.Linear(d_model, latent)
            self.from_latent = nn.Linear(latent, d_model)
            self.decoder = nn.Sequential(nn.GELU(), nn.Linear(d_model, d_model), nn.GELU())
        self.head = nn.Linear(d_model, features)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``(b, window, features)`` predictions of the rows of ``(b, window, features)`` windows."""
        batch, steps = x.shape[0], x.shape[1]
        token = self.token.expand(batch, -1, -1)
        present = torch.ones(batch, 1, dtype=torch.bool, device=x.device)
        if self.mode == "forecast":
            # shift right: position t reads the start token and rows < t, and predicts row t
            hidden = torch.cat([present, mask[:, :-1].bool()], dim=1)
            # a padding row reads as the start token, so the first real row is predicted from it
            rows = torch.where(
                hidden.unsqueeze(-1), torch.cat([token, self.project(x[:, :-1])], dim=1), token
            )
            tokens = rows + self.positions[:steps]
            encoded = self.encoder(
                tokens, mask=self.causal[:steps, :steps], src_key_padding_mask=~hidden, is_causal=True
            )
            return self.head(encoded)
        tokens = torch.cat([token, self.project(x)], dim=1) + self.positions[: steps + 1]
        hidden = torch.cat([present, mask.bool()], dim=1)
        encoded = self.encoder(tokens, src_key_padding_mask=~hidden)
        code = self.from_latent(self.to_latent(encoded[:, 0]))
        rows = code.unsqueeze(1) + self.positions[1 : steps + 1]
        return self.head(self.decoder(rows))


class TransformerDetector(SequenceDetector):
    """Transformer over each row's window: reconstruction error (default) or forecast error of the row."""

    name = "transformer"
    summary = "self-attention over the window: reconstruction through a bottleneck, or causal forecast"
    config_class = TransformerConfig
    config: TransformerConfig

    @classmethod
    def test_config(cls) -> TransformerConfig:
        """Small network, short windows, a few epochs: seconds on a few thousand rows."""
        return TransformerConfig(
            d_model=32,
            heads=2,
            layers=1,
            feedforward=64,
            latent=8,
            window=8,
            epochs=10,
            batch_size=256,
            learning_rate=5e-3,
        )

    def build_module(self, features: int) -> nn.Module:
        """The transformer network for ``features`` features."""
        config = self.config
        return TransformerNetwork(
            features,
            config.window,
            d_model=config.d_model,
            heads=config.heads,
            layers=config.layers,
            feedforward=config.feedforward,
            dropout=config.dropout,
            mode=config.mode,
            latent=config.latent,
        )


#: the detectors this module defines, in registry order
DETECTORS: tuple[type[Detector], ...] = (TransformerDetector,)
