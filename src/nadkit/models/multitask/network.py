"""The multi-task network (:class:`MultitaskNetwork`: encoder, bounded latent, binary and
multi-class heads, and its input gradient written out layer by layer), the fitted model as one
exportable module (:class:`MultitaskClassifier`) and its integrated-gradients attribution
(:class:`IntegratedGradients`)."""

from __future__ import annotations

import torch
import torch.nn.functional as functional
from torch import nn

from nadkit.models.multitask.bins import BinEncoding
from nadkit.models.multitask.config import MultitaskConfig
from nadkit.models.multitask.layers import (
    BinaryHeads,
    ShakeShakeBlock,
    _selu_derivative,
    _selu_layer,
    lecun_normal_,
)
from nadkit.models.multitask.periodic import PeriodicEncoding
from nadkit.models.multitask.quantile import Standardize


class MultitaskNetwork(nn.Module):
    """Encoder to a latent in ``[0, 1]``, a binary head per class and a multi-class head. Reads
    standardised features, through a :class:`BinEncoding` first when ``config.input_bins``, else
    through a :class:`PeriodicEncoding` when ``config.input_periodic``."""

    def __init__(self, features: int, classes: int, config: MultitaskConfig) -> None:
        super().__init__()
        self.bins = BinEncoding(features, config.input_bins) if config.input_bins else None
        self.periodic = (
            PeriodicEncoding(features, config.input_periodic, config.periodic_width, config.periodic_scale)
            if config.input_periodic and not config.input_bins
            else None
        )
        encoding = self.encoding
        inputs = encoding.width if encoding is not None else features
        self.input_layer = _selu_layer(inputs, config.width, config.dropout)
        self.blocks = nn.ModuleList(
            ShakeShakeBlock(config.width, config.dropout) for _ in range(config.encoder_layers - 1)
        )
        self.to_latent = lecun_normal_(nn.Linear(config.width, config.latent))
        self.binary_heads = BinaryHeads(config.latent, config.head_width, classes)
        if config.head_width == 0:
            self.class_hidden: nn.Linear | None = None
            self.class_output = lecun_normal_(nn.Linear(config.latent, classes))
        else:
            self.class_hidden = lecun_normal_(nn.Linear(config.latent, config.head_width))
            self.class_output = lecun_normal_(nn.Linear(config.head_width, classes))

    @property
    def encoding(self) -> BinEncoding | PeriodicEncoding | None:
        """The input encoding, if any."""
        return self.bins if self.bins is not None else self.periodic

    def _encoded(self, z: torch.Tensor) -> torch.Tensor:
        encoding = self.encoding
        return encoding(z) if encoding is not None else z

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The bounded latent of each row."""
        hidden = self.input_layer(self._encoded(x))
        for block in self.blocks:
            hidden = block(hidden)
        return torch.sigmoid(self.to_latent(hidden))

    def class_logits(self, latent: torch.Tensor) -> torch.Tensor:
        """The multi-class head's logits."""
        if self.class_hidden is None:
            return self.class_output(latent)
        return self.class_output(functional.selu(self.class_hidden(latent)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Latent ``(n, latent)``, multi-class logits ``(n, k)`` and binary-head logits ``(n, k)``."""
        latent = self.encode(x)
        return latent, self.class_logits(latent), self.binary_heads(latent)

    def attack_gradient(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class probabilities ``(n, k)`` of standardised rows ``z`` in evaluation mode, and the
        gradient of ``1 - P(normal)`` with respect to ``z``, computed layer by layer backwards."""
        input_linear = self.input_layer[0]
        input_pre = input_linear(self._encoded(z))
        hidden = functional.selu(input_pre)
        input_slope = _selu_derivative(input_pre, hidden)
        # each block's SELU slopes of its two branches, for the backward pass
        slopes: list[tuple[torch.Tensor, torch.Tensor]] = []
        for block in self.blocks:
            first_pre, second_pre = block.first[0](hidden), block.second[0](hidden)
            first, second = functional.selu(first_pre), functional.selu(second_pre)
            slopes.append((_selu_derivative(first_pre, first), _selu_derivative(second_pre, second)))
            hidden = hidden + 0.5 * (first + second)
        latent = torch.sigmoid(self.to_latent(hidden))
        if self.class_hidden is not None:
            head_pre = self.class_hidden(latent)
            head = functional.selu(head_pre)
            logits = self.class_output(head)
        else:
            logits = self.class_output(latent)
        probabilities = torch.softmax(logits, dim=1)
        normal = probabilities[:, :1]
        # d(1 - p_0) / d logit_j = p_0 * (p_j - [j == 0])
        gradient = normal * torch.cat([normal - 1.0, probabilities[:, 1:]], dim=1)
        gradient = gradient @ self.class_output.weight
        if self.class_hidden is not None:
            gradient = (gradient * _selu_derivative(head_pre, head)) @ self.class_hidden.weight
        gradient = (gradient * latent * (1.0 - latent)) @ self.to_latent.weight
        for block, (first_slope, second_slope) in zip(
            reversed(list(self.blocks)), reversed(slopes), strict=True
        ):
            through_first = (gradient * first_slope) @ block.first[0].weight
            through_second = (gradient * second_slope) @ block.second[0].weight
            gradient = gradient + 0.5 * (through_first + through_second)
        gradient = (gradient * input_slope) @ input_linear.weight
        encoding = self.encoding
        if encoding is not None:
            gradient = encoding.backward_gradient(z, gradient)
        return probabilities, gradient


class MultitaskClassifier(nn.Module):
    """The fitted model as one exportable module: standardisation, the trained networks (an
    ensemble over seeds) and the reference row of the attributions. ``forward`` maps feature rows
    to class probabilities (the mean of the networks' softmax outputs), deterministic in evaluation
    mode."""

    def __init__(self, features: int, classes: int, config: MultitaskConfig) -> None:
        super().__init__()
        knots = config.quantile_knots if config.input_transform == "quantile" else 0
        self.standardize = Standardize(features, config.input_clip, knots)
        self.members = nn.ModuleList(MultitaskNetwork(features, classes, config) for _ in range(config.seeds))
        self.register_buffer("reference", torch.zeros(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(n, k)`` of feature rows ``x`` (as the pipeline produced them)."""
        z = self.standardize(x)
        probabilities = [
            torch.softmax(member.class_logits(member.encode(z)), dim=1) for member in self.members
        ]
        return torch.stack(probabilities).mean(dim=0)

    def score_gradient(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``1 - P(normal)`` of each row and its gradient with respect to ``x`` (evaluation mode)."""
        z, derivative = self.standardize.with_derivative(x)
        probability_sum = torch.zeros((), dtype=x.dtype, device=x.device)
        gradient_sum = torch.zeros((), dtype=x.dtype, device=x.device)
        for member in self.members:
            probabilities, gradient = member.attack_gradient(z)
            probability_sum = probability_sum + probabilities
            gradient_sum = gradient_sum + gradient
        count = len(self.members)
        score = (probability_sum / count)[:, 1:].sum(dim=1)
        return score, gradient_sum / count * derivative


class IntegratedGradients(nn.Module):
    """``forward(x)``: the ``(n, d)`` contributions of the rows' scores (see :mod:`nadkit.models.multitask`),
    from the classifier's reference row over ``steps`` midpoints."""

    def __init__(self, classifier: MultitaskClassifier, steps: int) -> None:
        super().__init__()
        self.classifier = classifier
        self.register_buffer("midpoints", (torch.arange(steps, dtype=torch.float32) + 0.5) / steps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-feature contributions of each row of ``x``; each row sums to its score."""
        width = x.shape[1]
        steps = self.midpoints.shape[0]
        reference = self.classifier.reference
        delta = x - reference
        path = reference + self.midpoints.view(1, steps, 1) * delta.unsqueeze(1)
        score = self.classifier(x)[:, 1:].sum(dim=1)
        _, gradient = self.classifier.score_gradient(path.reshape(-1, width))
        integrated = gradient.reshape(-1, steps, width).mean(dim=1) * delta
        remainder = score - integrated.sum(dim=1)
        return integrated + (remainder / width).unsqueeze(1)
