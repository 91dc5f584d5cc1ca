"""Periodic encoding of the standardised features (:class:`PeriodicEncoding`): each feature is also
given through sines and cosines of trained frequencies, mixed per feature by a small trained layer,
so the first layer of the encoder can pick out narrow bands and single values of a feature (as a
tree's splits do) where a multiple of the value only draws a slope; with its closed-form backward
pass for the attributions."""

from __future__ import annotations

import math

import torch
from torch import nn


class PeriodicEncoding(nn.Module):
    """``[z, e]`` of standardised rows ``z`` ``(n, d)``, where each feature ``j`` gets its own
    ``e_j = relu(W_j [sin(2 pi c_j z_j), cos(2 pi c_j z_j)] + b_j)`` of ``width`` columns, from
    ``frequencies`` trained frequencies ``c_j`` (drawn from a normal of standard deviation
    ``scale`` at the start) and a trained layer ``W_j``, ``b_j``. The output has ``d * (width + 1)``
    columns."""

    def __init__(self, features: int, frequencies: int, width: int, scale: float) -> None:
        super().__init__()
        self.features = int(features)
        self.out_width = int(width)
        self.scale = float(scale)
        self.frequencies = nn.Parameter(torch.empty(features, frequencies))
        self.weight = nn.Parameter(torch.empty(features, 2 * frequencies, width))
        self.bias = nn.Parameter(torch.empty(features, width))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Fresh frequencies (normal, standard deviation ``scale``) and a fresh uniform layer, from
        torch's current random state."""
        bound = 1.0 / math.sqrt(self.weight.shape[1])
        with torch.no_grad():
            self.frequencies.normal_(0.0, self.scale)
            self.weight.uniform_(-bound, bound)
            self.bias.uniform_(-bound, bound)

    @property
    def width(self) -> int:
        """Columns of the encoding."""
        return self.features * (self.out_width + 1)

    def _angles(self, z: torch.Tensor) -> torch.Tensor:
        return (2.0 * math.pi) * self.frequencies * z.unsqueeze(2)

    def _mixed(self, angles: torch.Tensor) -> torch.Tensor:
        waves = torch.cat([torch.sin(angles), torch.cos(angles)], dim=2)
        return torch.einsum("ndk,dkm->ndm", waves, self.weight) + self.bias

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The encoding ``(n, d * (width + 1))`` of ``z``."""
        mixed = torch.relu(self._mixed(self._angles(z)))
        return torch.cat([z, mixed.reshape(z.shape[0], self.features * self.out_width)], dim=1)

    def backward_gradient(self, z: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
        """The gradient ``(n, d)`` with respect to ``z`` of a function whose gradient with respect to
        the encoding of ``z`` is ``gradient`` ``(n, d * (width + 1))``."""
        angles = self._angles(z)
        active = (self._mixed(angles) > 0).to(z.dtype)
        outer = gradient[:, self.features :].reshape(z.shape[0], self.features, self.out_width) * active
        # d waves / d z: 2 pi c cos(a) for the sines, -2 pi c sin(a) for the cosines
        slope = (2.0 * math.pi) * self.frequencies
        waves_slope = torch.cat([slope * torch.cos(angles), -slope * torch.sin(angles)], dim=2)
        through = torch.einsum("ndm,dkm->ndk", outer, self.weight)
        return gradient[:, : self.features] + (through * waves_slope).sum(dim=2)
