"""The supervised multi-task detector: a self-normalising network with shake-shake residual blocks,
one binary head per class and a multi-class head, and Central Moment Discrepancy (CMD) domain
adaptation towards unlabelled traffic of the domain to be scored.

Network (:class:`MultitaskClassifier`, a plain ``nn.Module``):

- inputs sent through a per-feature quantile map (piecewise linear through the training quantiles to
  normal scores, ``input_transform``), then standardised with the training mean and standard
  deviation (clipped to ``+-input_clip``);
- a SELU encoder of ``encoder_layers`` layers: a dense input layer, then shake-shake residual blocks
  ``out = x + a * B1(x) + (1 - a) * B2(x)`` whose two branches are dense SELU layers; ``a ~ U(0, 1)``
  per row in the forward pass and an independent ``b ~ U(0, 1)`` weighs the branches' gradients in
  the backward pass; at evaluation ``a = 0.5``. Every linear layer has LeCun-normal initialisation,
  and AlphaDropout follows every SELU of the encoder;
- a latent layer bounded to ``[0, 1]`` by a sigmoid (CMD needs bounded activations);
- heads on the latent: one binary (one-vs-rest) head per class and a multi-class softmax head,
  trained jointly; the multi-class head makes the prediction.

Training (through the one :class:`~nadkit.models.trainer.Trainer`): cross-entropy of the multi-class
head plus ``binary_weight`` x the mean binary cross-entropy of the binary heads plus ``cmd_weight`` x
CMD between the latent of labelled source rows and of unlabelled target rows. Batches are drawn by a
class-weighted sampler (class ``c`` drawn with probability proportional to ``count_c ** (1 -
class_balance)``). Early stopping watches the validation NAD 2021 challenge score when the labels
are NAD's classes, else the validation macro F-beta. ``seeds`` networks are trained with
consecutive seeds and their class probabilities averaged.

Scores: ``1 - P(normal)`` of the averaged probabilities. Contributions (:class:`IntegratedGradients`):
integrated gradients of that score along the straight path from the mean normal training row to the
row, so each feature's value is signed (positive: the feature moves the row towards the attack
classes). The path integral is a midpoint sum over ``attribution_steps`` points, with the network's
input gradient written out layer by layer (no autograd, so the attribution exports to ONNX); the
score of the reference row and the remainder of the sum are spread evenly over the features, so a
row's contributions add up to its score exactly. They cost about ``2 * attribution_steps`` passes
over the networks per row, against one for the score, so scoring explains only the alerts
(``costly_contributions``, see :mod:`nadkit.detection.detect`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import statistics
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Self

import numpy as np
import torch
import torch.nn.functional as functional
from torch import nn

from nadkit.errors import ConfigError
from nadkit.evaluation.labels import is_nad_label_set
from nadkit.evaluation.metrics import macro_f_beta, nad_score
from nadkit.evaluation.split import stratified_holdout
from nadkit.models.base import Detector, DetectorData, NotFittedError
from nadkit.models.neural import NeuralConfig, build_for_weights
from nadkit.models.trainer import Batch, EpochReport, Trainer, TrainingHistory, resolve_device
from nadkit.schema import NORMAL

log = logging.getLogger(__name__)

#: SELU's constants (Klambauer et al., 2017)
SELU_SCALE = 1.0507009873554805
SELU_ALPHA = 1.6732632423543772
#: SELU's negative saturation value, ``-scale * alpha``, which AlphaDropout drops units to
_SELU_SATURATION = -SELU_SCALE * SELU_ALPHA
#: the state entry holding the class names
CLASSES_KEY = "classes"
#: rows of each class kept at least (when there are that many) by ``max_train_rows``
_MIN_ROWS_PER_CLASS = 1000

# ---------------------------------------------------------------------------------------------------
# model selection
# ---------------------------------------------------------------------------------------------------


def selection_score(true: np.ndarray, predicted: np.ndarray, beta: float = 1.0) -> float:
    """The model-selection metric of predicted class names: the NAD 2021 score when every label is a
    NAD class, else the macro F-beta."""
    if is_nad_label_set([*np.unique(true).tolist(), *np.unique(predicted).tolist()]):
        return nad_score(true, predicted)
    return macro_f_beta(true, predicted, beta)


# ---------------------------------------------------------------------------------------------------
# network parts
# ---------------------------------------------------------------------------------------------------


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


class MultitaskNetwork(nn.Module):
    """Encoder to a latent in ``[0, 1]``, a binary head per class and a multi-class head. Reads
    standardised features."""

    def __init__(self, features: int, classes: int, config: MultitaskConfig) -> None:
        super().__init__()
        self.input_layer = _selu_layer(features, config.width, config.dropout)
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

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The bounded latent of each row."""
        hidden = self.input_layer(x)
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
        input_pre = input_linear(z)
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
        return probabilities, gradient


class Standardize(nn.Module):
    """``clamp((q(x) - mean) / scale, -clip, clip)`` with the training statistics as buffers, where
    ``q`` is the identity or, with ``knots`` (at least 2), a per-feature quantile map: piecewise
    linear through the feature's training quantiles, each sent to the standard normal score of its
    quantile level (flat beyond the lowest and highest knot). Written as a sum of clamped ramps, one
    per segment between consecutive knots, so it exports to ONNX and has a closed-form derivative."""

    def __init__(self, features: int, clip: float, knots: int = 0) -> None:
        super().__init__()
        self.clip = float(clip)
        self.knots = int(knots)
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("scale", torch.ones(features))
        if self.knots >= 2:
            segments = self.knots - 1
            self.register_buffer("knot_start", torch.zeros(features, segments))
            self.register_buffer("knot_inverse", torch.ones(features, segments))
            self.register_buffer("knot_rise", torch.zeros(features, segments))
            self.register_buffer("knot_height", torch.zeros(features, segments))

    @property
    def mapped(self) -> bool:
        """Whether the quantile map comes before the standardisation."""
        return self.knots >= 2

    def fit_quantiles(self, x: np.ndarray) -> None:
        """Set the quantile map from training rows ``x`` (rows x features)."""
        if not self.mapped:
            return
        start, width, rise, height = quantile_map(np.asarray(x, dtype=np.float64), self.knots)
        values = {"knot_start": start, "knot_inverse": 1.0 / width, "knot_rise": rise, "knot_height": height}
        for name, value in values.items():
            getattr(self, name).copy_(torch.from_numpy(value))

    def _segment(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """For each value of ``x``: how far it has climbed its segment (in ``[0, 1]``), and that
        segment's rise, height at its start and inverse width. A value's segment is the last one
        starting at or below it (the first for values below every knot), found by counting, so the
        map's arithmetic is the same few element-wise steps wherever it runs (no sums of floats)."""
        count = (x.unsqueeze(2) >= self.knot_start).sum(dim=2, keepdim=True)
        segment = torch.clamp(count - 1, min=0)
        shape = (x.shape[0], *self.knot_start.shape)

        def pick(table: torch.Tensor) -> torch.Tensor:
            return torch.gather(table.unsqueeze(0).expand(shape), 2, segment).squeeze(2)

        inverse = pick(self.knot_inverse)
        climbed = torch.clamp((x - pick(self.knot_start)) * inverse, 0.0, 1.0)
        return climbed, pick(self.knot_rise), pick(self.knot_height), inverse

    def quantile(self, x: torch.Tensor) -> torch.Tensor:
        """The quantile map of ``x`` (``x`` itself without one)."""
        if not self.mapped:
            return x
        climbed, rise, height, _ = self._segment(x)
        return height + climbed * rise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised ``x``."""
        return torch.clamp((self.quantile(x) - self.mean) / self.scale, -self.clip, self.clip)

    def with_derivative(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised ``x`` and its element-wise derivative (``q'(x) / scale`` inside the clip, else
        0; ``q'`` is the slope of the segment ``x`` lies in, 0 outside the knots)."""
        if self.mapped:
            climbed, rise, height, inverse = self._segment(x)
            inside_segment = ((climbed > 0) & (climbed < 1)).to(x.dtype)
            slope: torch.Tensor | float = inside_segment * rise * inverse
            mapped = height + climbed * rise
        else:
            slope, mapped = 1.0, x
        unclipped = (mapped - self.mean) / self.scale
        inside = (torch.abs(unclipped) < self.clip).to(x.dtype)
        return torch.clamp(unclipped, -self.clip, self.clip), inside * slope / self.scale


def quantile_map(x: np.ndarray, knots: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The per-feature quantile map of :class:`Standardize` fitted on ``x``: segment starts, widths,
    rises and heights at the start (each ``(features, knots - 1)``).

    The knots are the training quantiles at ``knots`` evenly spaced levels; a value several levels
    share (a discrete feature) is one knot, sent to the normal score of the mean of its levels (levels
    kept within ``[0.001, 0.999]``); unused segments (after the last distinct knot) start at the
    largest float32, so no value reaches them, with width 1, rise 0 and the first height (a feature
    with one value maps to its one height)."""
    levels = np.linspace(0.0, 1.0, knots)
    normal = statistics.NormalDist()
    scores = np.asarray([normal.inv_cdf(float(p)) for p in np.clip(levels, 1e-3, 1 - 1e-3)])
    quantiles = np.quantile(x, levels, axis=0) if len(x) else np.zeros((knots, x.shape[1]))
    # the knots are kept as float32: distinct there, so no segment is empty
    quantiles = quantiles.astype(np.float32).astype(np.float64)
    features = x.shape[1]
    start = np.full((features, knots - 1), float(np.finfo(np.float32).max))
    width = np.ones((features, knots - 1))
    rise = np.zeros((features, knots - 1))
    height = np.zeros((features, knots - 1))
    for column in range(features):
        values, inverse = np.unique(quantiles[:, column], return_inverse=True)
        heights = np.bincount(inverse, weights=scores) / np.bincount(inverse)
        height[column, :] = heights[0]
        used = len(values) - 1
        start[column, :used] = values[:-1]
        width[column, :used] = np.diff(values)
        rise[column, :used] = np.diff(heights)
        height[column, :used] = heights[:-1]
    return start, width, rise, height


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
    """``forward(x)``: the ``(n, d)`` contributions of the rows' scores (see the module docstring),
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


# ---------------------------------------------------------------------------------------------------
# the detector
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MultitaskConfig(NeuralConfig):
    """The multi-task network and its training.

    Architecture: ``width`` of the encoder layers, ``encoder_layers`` (the dense input layer plus
    ``encoder_layers - 1`` shake-shake blocks), ``latent`` size, ``head_width`` (hidden size of each
    head; 0 for linear heads), ``dropout`` (AlphaDropout rate), ``input_clip`` (standardised inputs
    are clipped to this); ``input_transform``: ``"quantile"`` sends each feature through its
    training quantiles (``quantile_knots`` of them) to normal scores before standardising, which
    tames heavy tails and spreads out discrete values; ``"standard"`` standardises the features as
    they come.

    Training: ``binary_weight`` of the binary heads' loss; ``cmd_weight`` and ``cmd_moments`` of the
    CMD term (used when ``fit`` is given ``target`` rows; 0 turns it off); ``cmd_source``: which
    labelled rows CMD compares with the target: ``"natural"`` (a uniform draw, at the training
    data's own class mix) or ``"weighted"`` (the class-weighted classification batch itself);
    ``class_balance``: 1 draws every class equally often, 0 at its natural frequency;
    ``steps_per_epoch``: batches per epoch (None: as many as one pass over the training rows);
    ``seeds``: networks trained with seeds ``seed, seed + 1, ...`` and averaged (the time budget is
    shared among them); ``selection_beta``: the beta of the macro F-beta that selects the best epoch
    for label sets other than NAD's; ``attribution_steps``: points of the integrated-gradients sum
    (an explained row costs about twice that many passes over the networks; fewer is cruder).
    ``max_train_rows`` keeps at most that many training rows, every class in proportion but with at
    least ``min(count, 1000)`` rows. The other fields are :class:`NeuralConfig`'s.
    """

    epochs: int = 100
    learning_rate: float = 1e-3
    patience: int = 15
    validation_fraction: float = 0.25
    width: int = 128
    encoder_layers: int = 4
    latent: int = 32
    head_width: int = 32
    dropout: float = 0.0
    input_clip: float = 10.0
    input_transform: str = "quantile"
    quantile_knots: int = 32
    binary_weight: float = 1.0
    cmd_weight: float = 1.0
    cmd_moments: int = 5
    cmd_source: str = "natural"
    class_balance: float = 0.5
    steps_per_epoch: int | None = None
    seeds: int = 3
    selection_beta: float = 1.0
    attribution_steps: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        positive = {
            "width": self.width,
            "encoder_layers": self.encoder_layers,
            "latent": self.latent,
            "cmd_moments": self.cmd_moments,
            "seeds": self.seeds,
            "attribution_steps": self.attribution_steps,
        }
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        if self.head_width < 0:
            raise ConfigError(f"head_width must be 0 or more, got {self.head_width}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.input_clip > 0:
            raise ConfigError(f"input_clip must be positive, got {self.input_clip}")
        if self.input_transform not in ("quantile", "standard"):
            raise ConfigError(
                f"input_transform must be 'quantile' or 'standard', got {self.input_transform!r}"
            )
        if self.quantile_knots < 2:
            raise ConfigError(f"quantile_knots must be at least 2, got {self.quantile_knots}")
        if self.binary_weight < 0 or self.cmd_weight < 0:
            raise ConfigError("binary_weight and cmd_weight must be non-negative")
        if self.cmd_source not in ("natural", "weighted"):
            raise ConfigError(f"cmd_source must be 'natural' or 'weighted', got {self.cmd_source!r}")
        if not 0 <= self.class_balance <= 1:
            raise ConfigError(f"class_balance must be in [0, 1], got {self.class_balance}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            raise ConfigError(f"steps_per_epoch must be at least 1, got {self.steps_per_epoch}")
        if not self.selection_beta > 0:
            raise ConfigError(f"selection_beta must be positive, got {self.selection_beta}")
        if self.max_train_rows is not None and self.max_train_rows < 2:
            raise ConfigError("max_train_rows must be at least 2")


@dataclass
class SeedEpochReport(EpochReport):
    """An epoch of one of the ``seeds`` networks: ``seed_index`` (1-based) of ``seeds``, whose epochs
    count from 1 again."""

    seed_index: int = 1
    seeds: int = 1


@dataclass
class _Rows:
    """Standardised features of labelled (``codes``) or unlabelled rows, as float32 arrays."""

    x: np.ndarray
    codes: np.ndarray | None = None

    def batches(self, size: int) -> Iterator[Batch]:
        for start in range(0, len(self.x), size):
            x = torch.from_numpy(self.x[start : start + size])
            y = None if self.codes is None else torch.from_numpy(self.codes[start : start + size])
            yield Batch(x=x, y=y)


class MultitaskDetector(Detector):
    """Supervised multi-class detector (see the module docstring): learns the classes of
    ``train.labels`` (which must include ``normal``); scores ``1 - P(normal)``; ``predict`` names the
    most probable class."""

    name = "multitask"
    input = "rows"
    supervised = True
    adapts_to_target = True
    costly_contributions = True
    config_class = MultitaskConfig
    config: MultitaskConfig

    @classmethod
    def test_config(cls) -> MultitaskConfig:
        """Small and quick: trains in a few seconds on a few thousand rows."""
        return MultitaskConfig(
            width=32,
            latent=8,
            head_width=16,
            epochs=12,
            patience=4,
            batch_size=256,
            steps_per_epoch=25,
            seeds=1,
            attribution_steps=16,
            device="cpu",
        )

    # -- fitting ------------------------------------------------------------------------------------

    def fit(
        self,
        train: DetectorData,
        *,
        validation: DetectorData | None = None,
        target: DetectorData | None = None,
        progress: Callable[[EpochReport], None] | None = None,
    ) -> Self:
        """Learn the classes of ``train.labels``. ``validation`` (labelled) selects the best epoch,
        else a stratified random ``validation_fraction`` of ``train`` is held out for it (the caller
        should split by sessions where it can, see :func:`nadkit.training.fit.train_model`).
        ``target``: unlabelled rows of the domain to be scored, aligned to by CMD. ``progress`` is
        called after every epoch of each of the ``seeds`` networks with a :class:`SeedEpochReport`."""
        self._start_fit(train)
        config = self.config
        if train.labels is None:
            raise ConfigError(f"{self.name} is supervised: the training data needs labels")
        rng = np.random.default_rng(config.seed)
        labels = np.asarray(train.labels).astype(str)
        others = sorted(set(labels.tolist()) - {NORMAL})
        if len(others) == len(set(labels.tolist())):
            raise ConfigError(f"{self.name}: the training labels need {NORMAL!r} rows")
        if not others:
            raise ConfigError(f"{self.name}: the training labels need at least one class besides {NORMAL!r}")
        classes = (NORMAL, *others)
        codes = _encode(labels, classes)
        rows = np.arange(len(train))
        if validation is None and config.validation_fraction > 0:
            held = stratified_holdout(codes, config.validation_fraction, config.seed)
            rows = np.flatnonzero(~held)
            validation = train.take(np.flatnonzero(held))
        if config.max_train_rows is not None and len(rows) > config.max_train_rows:
            rows = rows[_class_sample(codes[rows], config.max_train_rows, rng)]
        train_codes = codes[rows]
        train_x = train.features[rows]
        validation_codes: np.ndarray | None = None
        if validation is not None:
            if validation.labels is None:
                raise ConfigError(f"{self.name}: the validation data needs labels")
            validation_labels = np.asarray(validation.labels).astype(str)
            unknown = sorted(set(validation_labels.tolist()) - set(classes))
            if unknown:
                log.warning("validation classes not in the training data (never predicted): %s", unknown)
            validation_codes = _encode(validation_labels, classes, unknown=-1)

        classifier = MultitaskClassifier(train.width, len(classes), config)
        classifier.standardize.fit_quantiles(_quantile_sample(train_x, rng))
        mapped = _mapped(classifier.standardize, train_x)
        mean = mapped.mean(axis=0)
        std = mapped.std(axis=0)
        classifier.standardize.mean.copy_(torch.from_numpy(mean))
        classifier.standardize.scale.copy_(torch.from_numpy(np.where(std > 1e-6, std, 1.0)))
        normal_rows = train_x[train_codes == 0]
        classifier.reference.copy_(torch.from_numpy(normal_rows.astype(np.float64).mean(axis=0)))

        def standardised(x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return classifier.standardize(torch.from_numpy(x)).numpy()

        source = _Rows(standardised(train_x), train_codes.astype(np.int64))
        held_out = (
            _Rows(standardised(validation.features), validation_codes.astype(np.int64))
            if validation is not None and validation_codes is not None
            else None
        )
        target_rows = _Rows(standardised(target.features)) if target is not None and len(target) else None
        if target_rows is not None and config.cmd_weight == 0:
            log.warning("%s: target rows given but cmd_weight is 0; they are not used", self.name)
            target_rows = None
        log.info(
            "%s: %d training rows, %d validation rows, %d target rows, classes %s",
            self.name,
            len(source.x),
            0 if held_out is None else len(held_out.x),
            0 if target_rows is None else len(target_rows.x),
            list(classes),
        )
        self.histories_: list[TrainingHistory] = []
        trainer_config = config.trainer_config()
        budget = None if config.time_budget_s is None else config.time_budget_s / config.seeds
        for member_index, member in enumerate(classifier.members):
            member_seed = config.seed + member_index
            torch.manual_seed(member_seed)
            # each member starts from its own seed's initialisation
            _initialise(member)
            member_config = dataclasses.replace(trainer_config, seed=member_seed, time_budget_s=budget)
            history = Trainer(member_config).fit(
                member,
                self._loss,
                self._batch_factory(source, target_rows, member_seed),
                (lambda: held_out.batches(config.score_batch_size)) if held_out is not None else None,
                selection=self._selection(held_out, classes) if held_out is not None else None,
                progress=_seed_progress(progress, member_index + 1, config.seeds),
            )
            self.histories_.append(history)
        classifier.eval()
        self.device_ = resolve_device(config.device)
        self.module_ = classifier.to(self.device_)
        self.classes_: tuple[str, ...] = classes
        self.history_ = self.histories_[0]
        self._finish_fit(train)
        return self

    def _batch_factory(
        self, source: _Rows, target: _Rows | None, seed: int
    ) -> Callable[[int], Iterator[Batch]]:
        """Each epoch's batches: class-weighted labelled rows, plus (with a target) a target batch
        and, for ``cmd_source="natural"``, a uniform draw of labelled rows."""
        config = self.config
        assert source.codes is not None
        codes = source.codes
        counts = np.bincount(codes)
        members = [np.flatnonzero(codes == c) for c in range(len(counts))]
        class_weights = class_draw_probabilities(counts, config.class_balance)
        size = min(config.batch_size, max(len(codes), 1))
        steps = config.steps_per_epoch or max(1, math.ceil(len(codes) / config.batch_size))

        def batches(epoch: int) -> Iterator[Batch]:
            rng = np.random.default_rng([seed, epoch])
            drawn_classes = rng.choice(len(counts), size=(steps, size), p=class_weights)
            for step in range(steps):
                chosen = drawn_classes[step]
                rows = np.empty(size, dtype=np.int64)
                for cls in np.unique(chosen):
                    where = chosen == cls
                    rows[where] = members[cls][rng.integers(0, len(members[cls]), int(where.sum()))]
                extra: dict[str, torch.Tensor] = {}
                if target is not None:
                    extra["target"] = torch.from_numpy(target.x[rng.integers(0, len(target.x), size)])
                    if config.cmd_source == "natural":
                        extra["natural"] = torch.from_numpy(source.x[rng.integers(0, len(source.x), size)])
                yield Batch(x=torch.from_numpy(source.x[rows]), y=torch.from_numpy(codes[rows]), extra=extra)

        return batches

    def _loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        """Multi-class cross-entropy + binary heads' cross-entropy + CMD (with a target batch)."""
        config = self.config
        assert batch.y is not None
        latent, class_logits, binary_logits = module(batch.x)
        known = batch.y >= 0
        if not bool(known.all()):  # validation rows of classes the training data lacks
            latent, class_logits, binary_logits = latent[known], class_logits[known], binary_logits[known]
        y = batch.y[known]
        if len(y) == 0:
            return class_logits.sum() * 0.0
        loss = functional.cross_entropy(class_logits, y)
        if config.binary_weight > 0:
            one_hot = functional.one_hot(y, class_logits.shape[1]).to(binary_logits.dtype)
            loss = loss + config.binary_weight * functional.binary_cross_entropy_with_logits(
                binary_logits, one_hot
            )
        target = batch.extra.get("target")
        if target is not None and config.cmd_weight > 0:
            natural = batch.extra.get("natural")
            source_latent = module.encode(natural) if natural is not None else latent
            target_latent = module.encode(target)
            loss = loss + config.cmd_weight * central_moment_discrepancy(
                source_latent, target_latent, config.cmd_moments
            )
        return loss

    def _selection(self, validation: _Rows, classes: tuple[str, ...]) -> Callable[[nn.Module], float]:
        """The validation selection score of a member network's multi-class predictions."""
        assert validation.codes is not None
        names = np.asarray([*classes, "(unknown class)"], dtype=object)
        truth = names[validation.codes]  # code -1 (a class unseen in training) is the last name
        beta = self.config.selection_beta
        size = self.config.score_batch_size

        def score(module: nn.Module) -> float:
            device = next(module.parameters()).device
            guesses = []
            for batch in validation.batches(size):
                guesses.append(module(batch.x.to(device))[1].argmax(dim=1).cpu().numpy())
            return selection_score(truth, names[np.concatenate(guesses)], beta)

        return score

    # -- the contract ------------------------------------------------------------------------------

    def predict_proba(self, data: DetectorData) -> np.ndarray:
        """Class probabilities ``(rows, classes)`` in the order of ``classes_``, float64."""
        self._check_fitted(data)
        out = np.zeros((len(data), len(self.classes_)), dtype=np.float64)
        module = self.module_.eval()
        size = self.config.score_batch_size
        with torch.no_grad():
            for start in range(0, len(data), size):
                x = torch.from_numpy(data.features[start : start + size]).to(self.device_)
                out[start : start + size] = module(x).double().cpu().numpy()
        return out

    def predict(self, data: DetectorData) -> np.ndarray:
        """The most probable class name of each row."""
        return np.asarray(self.classes_)[self.predict_proba(data).argmax(axis=1)]

    def score(self, data: DetectorData) -> np.ndarray:
        """``1 - P(normal)`` of each row (summed over the attack classes, precise near 0), float64."""
        return self.predict_proba(data)[:, 1:].sum(axis=1)

    def score_and_predict(self, data: DetectorData) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`score` and :meth:`predict` of each row from one pass over the networks."""
        probabilities = self.predict_proba(data)
        return probabilities[:, 1:].sum(axis=1), np.asarray(self.classes_)[probabilities.argmax(axis=1)]

    def contribution_batch_rows(self) -> int:
        """Rows per batch of the attribution: ``score_batch_size`` path points in all."""
        return max(1, self.config.score_batch_size // self.config.attribution_steps)

    def contributions(self, data: DetectorData) -> np.ndarray:
        """Integrated-gradients attribution of the score from the mean normal training row: signed,
        each row summing to its score (see the module docstring)."""
        self._check_fitted(data)
        out = np.zeros((len(data), data.width), dtype=np.float64)
        if len(data) == 0:
            return out
        attribution = IntegratedGradients(self.module_.eval(), self.config.attribution_steps)
        attribution.to(self.device_)
        chunk = self.contribution_batch_rows()
        with torch.no_grad():
            for start in range(0, len(data), chunk):
                x = torch.from_numpy(data.features[start : start + chunk]).to(self.device_)
                out[start : start + chunk] = attribution(x).double().cpu().numpy()
        # the float32 rows sum to the score up to rounding; make the float64 sums exact
        out += ((self.score(data) - out.sum(axis=1)) / data.width)[:, None]
        return out

    def export_module(self) -> nn.Module:
        """The contributions as a CPU module in evaluation mode: ``forward(x)`` gives the ``(b, d)``
        float32 integrated-gradients contributions, whose row sums are the scores."""
        if not self.is_fitted:
            raise NotFittedError(f"{self.name} is not fitted yet (call fit first)")
        classifier = copy.deepcopy(self.module_).cpu().eval()
        return IntegratedGradients(classifier, self.config.attribution_steps).eval()

    def probability_module(self) -> nn.Module:
        """The class probabilities as a CPU module in evaluation mode: ``forward(x)`` gives the
        ``(b, k)`` probabilities of feature rows, in the order of ``classes_``."""
        if not self.is_fitted:
            raise NotFittedError(f"{self.name} is not fitted yet (call fit first)")
        return copy.deepcopy(self.module_).cpu().eval()

    def to(self, device: str | torch.device) -> Self:
        """Move the fitted network to ``device`` for scoring."""
        self.device_ = resolve_device(str(device))
        self.module_.to(self.device_)
        return self

    # -- saving -------------------------------------------------------------------------------------

    def state(self) -> dict[str, np.ndarray]:
        """The network's parameters and buffers, and the class names (``classes``: JSON as bytes)."""
        if not self.is_fitted:
            raise NotFittedError(f"{self.name} is not fitted yet (call fit first)")
        arrays = {k: v.detach().cpu().numpy().copy() for k, v in self.module_.state_dict().items()}
        arrays[CLASSES_KEY] = np.frombuffer(json.dumps(list(self.classes_)).encode(), dtype=np.uint8).copy()
        return arrays

    def load_state(self, arrays: Mapping[str, np.ndarray], feature_names: tuple[str, ...]) -> Self:
        """Rebuild the network for ``feature_names`` and the saved classes, and load its weights."""
        arrays = dict(arrays)
        try:
            classes = tuple(json.loads(np.asarray(arrays.pop(CLASSES_KEY), dtype=np.uint8).tobytes()))
        except (KeyError, ValueError) as error:
            raise ConfigError(f"saved state of {self.name} has no readable class names") from error
        if len(classes) < 2 or classes[0] != NORMAL or not all(isinstance(c, str) for c in classes):
            raise ConfigError(f"saved classes of {self.name} are not valid: {classes}")
        if self.config.input_transform == "quantile" and "standardize.knot_start" not in arrays:
            # saved before inputs could be quantile-mapped: the plain standardisation
            self.config = dataclasses.replace(self.config, input_transform="standard")
        module = build_for_weights(
            lambda: MultitaskClassifier(len(feature_names), len(classes), self.config), arrays, self.name
        )
        tensors = {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}
        try:
            module.load_state_dict(tensors, strict=True)
        except RuntimeError as error:
            first = str(error).strip().splitlines()[0]
            raise ConfigError(f"saved weights do not fit {self.name}'s network: {first}") from error
        self.device_ = resolve_device(self.config.device)
        self.module_ = module.eval().to(self.device_)
        self.classes_ = classes
        self.feature_names_ = tuple(feature_names)
        return self


def _seed_progress(
    progress: Callable[[EpochReport], None] | None, seed_index: int, seeds: int
) -> Callable[[EpochReport], None] | None:
    """``progress`` told which of the ``seeds`` networks each epoch belongs to."""
    if progress is None:
        return None

    def report(epoch: EpochReport) -> None:
        fields = {f.name: getattr(epoch, f.name) for f in dataclasses.fields(EpochReport)}
        progress(SeedEpochReport(**fields, seed_index=seed_index, seeds=seeds))

    return report


def _initialise(network: nn.Module) -> None:
    """Fresh LeCun-normal weights and zero biases for every layer of ``network``."""
    for module in network.modules():
        if isinstance(module, nn.Linear):
            lecun_normal_(module)
        elif isinstance(module, BinaryHeads) and module.hidden is not None:
            nn.init.normal_(module.output_weight, std=1.0 / math.sqrt(module.width))
            nn.init.zeros_(module.output_bias)


#: training rows the quantile map is estimated from, at most
_QUANTILE_SAMPLE_ROWS = 100_000


def _quantile_sample(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``x``, or a seeded random ``_QUANTILE_SAMPLE_ROWS`` of its rows."""
    if len(x) <= _QUANTILE_SAMPLE_ROWS:
        return x
    return x[np.sort(rng.choice(len(x), _QUANTILE_SAMPLE_ROWS, replace=False))]


def _mapped(standardize: Standardize, x: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """The quantile map of rows ``x`` (float64; ``x`` itself without one), in chunks of rows."""
    if not standardize.mapped:
        return x.astype(np.float64)
    out = np.empty(x.shape, dtype=np.float64)
    with torch.no_grad():
        for start in range(0, len(x), chunk):
            out[start : start + chunk] = standardize.quantile(
                torch.from_numpy(x[start : start + chunk])
            ).numpy()
    return out


def _encode(labels: np.ndarray, classes: tuple[str, ...], unknown: int | None = None) -> np.ndarray:
    """Class code of each label (``unknown`` for a label not in ``classes``; None: an error)."""
    lookup = {name: code for code, name in enumerate(classes)}
    names, inverse = np.unique(labels, return_inverse=True)
    table = []
    for name in names.tolist():
        if name not in lookup and unknown is None:
            raise ConfigError(f"unknown class {name!r}")
        table.append(lookup.get(name, unknown))
    return np.asarray(table, dtype=np.int64)[inverse]


def class_draw_probabilities(counts: np.ndarray, balance: float) -> np.ndarray:
    """Probability of drawing each class for a batch row: proportional to ``count ** (1 - balance)``
    (``balance`` 1: every present class equally often; 0: at its natural frequency)."""
    counts = np.asarray(counts, dtype=np.float64)
    weights = np.where(counts > 0, counts ** (1.0 - balance), 0.0)
    return weights / weights.sum()


def _class_sample(codes: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of at most about ``limit`` rows: each class in proportion, with at least
    ``min(count, 1000)`` rows."""
    counts = np.bincount(codes)
    floor = np.minimum(counts, _MIN_ROWS_PER_CLASS)
    quota = np.maximum(floor, np.floor(counts * limit / len(codes)).astype(np.int64))
    chosen = [
        rng.choice(np.flatnonzero(codes == c), int(quota[c]), replace=False) for c in np.flatnonzero(counts)
    ]
    return np.sort(np.concatenate(chosen))


#: the detectors this module defines, in registry order
DETECTORS: tuple[type[Detector], ...] = (MultitaskDetector,)
