"""The building blocks of the multi-task network: SELU layers with LeCun-normal initialisation and
alpha dropout, shake-shake residual blocks, the one-vs-rest binary heads, and the Central Moment
Discrepancy between two batches of bounded activations."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as functional
from torch import nn

from nadkit.errors import ConfigError

#: SELU's constants (Klambauer et al., 2017)
SELU_SCALE = 1.0507009873554805
SELU_ALPHA = 1.6732632423543772
#: SELU's negative saturation value, ``-scale * alpha``, which AlphaDropout drops units to
_SELU_SATURATION = -SELU_SCALE * SELU_ALPHA


def central_moment_discrepancy(
    source: torch.Tensor, target: torch.Tensor, moments: int = 5, span: float = 1.0
) -> torch.Tensor:
    """CMD (Zellinger et al., ICLR 2017) between two batches of activations bounded in an interval
    of width ``span``: ``||E[X] - E[Y]|| / span + sum_{k=2..K} ||c_k(X) - c_k(Y)|| / span**k``, with
    ``c_k`` the per-dimension k-th central moment and ``||.||`` the Euclidean norm over dimensions."""
    if moments < 1:
        raise ConfigError(f"CMD needs at least one moment, got {moments}")
    source_mean = source.mean(dim=0)
    target_mean = target.mean(dim=0)
    total = torch.linalg.vector_norm(source_mean - target_mean) / span
    source_centred = source - source_mean
    target_centred = target - target_mean
    for order in range(2, moments + 1):
        difference = (source_centred**order).mean(dim=0) - (target_centred**order).mean(dim=0)
        total = total + torch.linalg.vector_norm(difference) / span**order
    return total


def shake_shake(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """``a * first + (1 - a) * second`` with ``a ~ U(0, 1)`` per row, whose gradient reaches the two
    branches weighted by an independent ``b ~ U(0, 1)`` and ``1 - b`` (per row)."""
    shape = (first.shape[0],) + (1,) * (first.dim() - 1)
    forward_mix = torch.rand(shape, dtype=first.dtype, device=first.device)
    backward_mix = torch.rand(shape, dtype=first.dtype, device=first.device)
    mixed_forward = forward_mix * first + (1 - forward_mix) * second
    mixed_backward = backward_mix * first + (1 - backward_mix) * second
    # the value of the forward mix, the gradient of the backward one
    return mixed_backward + (mixed_forward - mixed_backward).detach()


def lecun_normal_(layer: nn.Linear) -> nn.Linear:
    """LeCun-normal initialisation (weights ~ N(0, 1 / fan_in), zero bias), which SELU needs to keep
    activations normalised."""
    nn.init.normal_(layer.weight, mean=0.0, std=1.0 / math.sqrt(layer.in_features))
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def _selu_derivative(pre_activation: torch.Tensor, activation: torch.Tensor) -> torch.Tensor:
    """SELU's derivative at ``pre_activation`` from its value there, ``activation``: ``scale`` where
    positive, else ``scale * alpha * exp(x) = activation + scale * alpha`` (no second exponential)."""
    return torch.where(pre_activation > 0, SELU_SCALE, activation + SELU_SCALE * SELU_ALPHA)


class AlphaDropout(nn.Module):
    """Alpha dropout (Klambauer et al., 2017) for SELU networks: in training, units are set to SELU's
    saturation value with probability ``rate`` and the result is scaled and shifted so that zero-mean
    unit-variance inputs keep mean 0 and variance 1; the identity in evaluation mode. (The
    transformation of ``torch.nn.AlphaDropout``, drawn from a uniform sample, which is much faster on
    CPU.)"""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = float(rate)
        self.scale = ((1.0 - self.rate) * (1.0 + self.rate * _SELU_SATURATION**2)) ** -0.5
        self.shift = -self.scale * _SELU_SATURATION * self.rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with alpha dropout applied (training) or unchanged (evaluation)."""
        if not self.training or self.rate == 0:
            return x
        kept = (torch.rand_like(x) >= self.rate).to(x.dtype)
        # scale * (x where kept, else the saturation value) + shift, in two element-wise steps
        saturated = self.scale * _SELU_SATURATION
        return (self.scale * x - saturated) * kept + (saturated + self.shift)


def _selu_layer(fan_in: int, fan_out: int, dropout: float) -> nn.Sequential:
    """Linear (LeCun normal) -> SELU -> AlphaDropout (none at rate 0)."""
    layers: list[nn.Module] = [lecun_normal_(nn.Linear(fan_in, fan_out)), nn.SELU()]
    if dropout > 0:
        layers.append(AlphaDropout(dropout))
    return nn.Sequential(*layers)


class ShakeShakeBlock(nn.Module):
    """Residual block ``x + a * B1(x) + (1 - a) * B2(x)`` with two dense SELU branches; shake-shake
    mixing while training, ``a = 0.5`` in evaluation mode (deterministic)."""

    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.first = _selu_layer(width, width, dropout)
        self.second = _selu_layer(width, width, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output for ``x`` (rows x width)."""
        first, second = self.first(x), self.second(x)
        if self.training:
            return x + shake_shake(first, second)
        return x + 0.5 * (first + second)


class BinaryHeads(nn.Module):
    """``heads`` independent one-vs-rest heads on the latent, each a SELU hidden layer of ``width``
    (none when 0) and one logit, computed together: head ``h`` owns units ``h * width`` to
    ``(h + 1) * width - 1`` of the hidden layer and row ``h`` of ``output_weight``, and reads nothing
    of the other heads."""

    def __init__(self, latent: int, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.width = width
        if width == 0:
            self.hidden = None
            self.output = lecun_normal_(nn.Linear(latent, heads))
            return
        self.hidden = lecun_normal_(nn.Linear(latent, heads * width))
        self.output_weight = nn.Parameter(torch.randn(heads, width) / math.sqrt(width))
        self.output_bias = nn.Parameter(torch.zeros(heads))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        """``(n, heads)`` logits."""
        if self.hidden is None:
            return self.output(latent)
        hidden = functional.selu(self.hidden(latent)).view(-1, self.heads, self.width)
        return (hidden * self.output_weight).sum(dim=2) + self.output_bias
