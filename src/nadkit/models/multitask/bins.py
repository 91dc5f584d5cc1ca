"""Piecewise-linear bin encoding of the standardised features (:class:`BinEncoding`): each feature is
also given as its position in each of its quantile bins, so the first layer can weigh every part of
a feature's range on its own (a threshold or a band, as a tree would split) instead of only a
monotone multiple of the value; with its closed-form backward pass for the attributions."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class BinEncoding(nn.Module):
    """``[z, 2 * r - 1]`` of standardised rows ``z`` ``(n, d)``, where ``r`` ``(n, d * bins)`` is how
    far each value has climbed each bin of its feature: ``clamp((z - start) / width, 0, 1)``, with
    the bins between the feature's training quantiles. A feature with fewer distinct quantiles than
    ``bins + 1`` (a discrete one) has fewer bins; the unused ones have width 0 and give a constant
    -1. The output has ``d * (bins + 1)`` columns."""

    def __init__(self, features: int, bins: int) -> None:
        super().__init__()
        self.features = int(features)
        self.bins = int(bins)
        self.register_buffer("start", torch.zeros(features, bins))
        self.register_buffer("inverse", torch.zeros(features, bins))

    @property
    def width(self) -> int:
        """Columns of the encoding."""
        return self.features * (self.bins + 1)

    def fit(self, z: np.ndarray) -> None:
        """Set the bins from standardised training rows ``z`` (rows x features): edges at ``bins + 1``
        evenly spaced quantile levels, repeated edges merged."""
        levels = np.linspace(0.0, 1.0, self.bins + 1)
        edges = np.quantile(np.asarray(z, dtype=np.float64), levels, axis=0).astype(np.float32)
        start = np.zeros((self.features, self.bins))
        inverse = np.zeros((self.features, self.bins))
        for column in range(self.features):
            values = np.unique(edges[:, column]).astype(np.float64)
            used = len(values) - 1
            start[column, :used] = values[:-1]
            inverse[column, :used] = 1.0 / np.diff(values)
        self.start.copy_(torch.from_numpy(start))
        self.inverse.copy_(torch.from_numpy(inverse))

    def _climbed(self, z: torch.Tensor) -> torch.Tensor:
        return torch.clamp((z.unsqueeze(2) - self.start) * self.inverse, 0.0, 1.0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The encoding ``(n, d * (bins + 1))`` of ``z``."""
        ramps = 2.0 * self._climbed(z) - 1.0
        return torch.cat([z, ramps.reshape(z.shape[0], self.features * self.bins)], dim=1)

    def backward_gradient(self, z: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        """The gradient ``(n, d)`` with respect to ``z`` of a function whose gradient with respect to
        the encoding of ``z`` is ``gradient`` ``(n, d * (bins + 1))``: a ramp's slope is ``2 /
        width`` inside its bin and 0 outside."""
        climbed = self._climbed(z)
        inside = ((climbed > 0) & (climbed < 1)).to(z.dtype)
        ramps = gradient[:, self.features :].reshape(z.shape[0], self.features, self.bins)
        return gradient[:, : self.features] + (ramps * inside * 2.0 * self.inverse).sum(dim=2)
