"""The networks of the autoencoder family (:mod:`nadkit.models.autoencoder`), apart from the detectors
so that loading a saved autoencoder to score it on ONNX Runtime does not import torch: plain
``nn.Module`` networks with no data-dependent control flow in ``forward`` (exportable to ONNX)."""

from __future__ import annotations

import itertools
import math
from typing import Protocol

import torch
from torch import nn

#: activation name -> module class, for the ``activation`` option
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "selu": nn.SELU,
    "tanh": nn.Tanh,
}


class DenseSettings(Protocol):
    """The settings a :class:`DenseAutoencoder` reads (an ``AutoencoderConfig``)."""

    hidden: tuple[int, ...]
    bottleneck: int
    activation: str
    dropout: float
    latent_neighbours: int
    latent_references: int


class GaussianSettings(Protocol):
    """The settings a :class:`GaussianAutoencoder` reads (a ``VariationalAutoencoderConfig``)."""

    hidden: tuple[int, ...]
    latent: int
    activation: str
    dropout: float
    output_variance: float | None
    score: str
    samples: int
    seed: int


def dense_stack(sizes: tuple[int, ...], activation: str, dropout: float) -> nn.Sequential:
    """Linear layers through ``sizes`` (input first), each followed by the activation and dropout."""
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers.append(nn.Linear(fan_in, fan_out))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


#: the code of an empty reference slot: so far from any row's code that it is never among the nearest
FAR_CODE = 1e4


class DenseAutoencoder(nn.Module):
    """Encoder -> linear bottleneck -> decoder -> linear output of the input's width.

    With ``latent_neighbours`` k above 0 it also holds up to ``latent_references`` codes of normal
    training rows (``references``, unused slots at :data:`FAR_CODE`), those rows themselves
    (``reference_rows``) and the weight of the distance term (``neighbour_weight``), all set after
    training and saved with the weights: :meth:`neighbour_errors` is a row's mean distance to its k
    nearest reference codes, spread over the features by how the row differs from those reference
    rows.
    """

    def __init__(self, features: int, config: DenseSettings) -> None:
        super().__init__()
        self.neighbours = int(getattr(config, "latent_neighbours", 0))
        if self.neighbours:
            slots = int(config.latent_references)
            self.register_buffer("references", torch.full((slots, config.bottleneck), FAR_CODE))
            self.register_buffer("reference_rows", torch.zeros(slots, features))
            self.register_buffer("neighbour_weight", torch.ones(()))
        self.encoder = nn.Sequential(
            dense_stack((features, *config.hidden), config.activation, config.dropout),
            nn.Linear(config.hidden[-1] if config.hidden else features, config.bottleneck),
        )
        mirrored = tuple(reversed(config.hidden))
        self.decoder = nn.Sequential(
            dense_stack((config.bottleneck, *mirrored), config.activation, config.dropout),
            nn.Linear(mirrored[-1] if mirrored else config.bottleneck, features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction of ``x`` (rows x features)."""
        return self.decoder(self.encoder(x))

    def set_references(self, codes: torch.Tensor, rows: torch.Tensor) -> None:
        """Hold ``codes`` and the ``rows`` they are the codes of as the references (the other slots
        empty), with the distance unweighed until :attr:`neighbour_weight` is set."""
        with torch.no_grad():
            self.references.fill_(FAR_CODE)
            self.reference_rows.zero_()
            self.references[: len(codes)] = codes
            self.reference_rows[: len(rows)] = rows
            self.neighbour_weight.fill_(1.0)

    def neighbour_distance(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's mean Euclidean distance from its ``code`` to its k nearest reference codes
        ``(b,)``, and the indices of those references ``(b, k)``."""
        references = self.references
        squared = (
            (code * code).sum(dim=1, keepdim=True)
            - 2.0 * code @ references.T
            + (references * references).sum(dim=1).unsqueeze(0)
        )
        nearest, index = torch.topk(torch.clamp(squared, min=0.0), self.neighbours, dim=1, largest=False)
        return torch.sqrt(nearest).mean(dim=1), index

    def neighbour_errors(self, code: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``(b, d)``: the weighed neighbour distance of each row, spread over its features in
        proportion to their mean squared differences from the k nearest reference rows."""
        distance, nearest = self.neighbour_distance(code)
        difference = ((x.unsqueeze(1) - self.reference_rows[nearest]) ** 2).mean(dim=1)
        share = difference / torch.clamp(difference.sum(dim=1, keepdim=True), min=1e-12)
        return (self.neighbour_weight * distance).unsqueeze(1) * share


class DenseAutoencoders(nn.Module):
    """``members`` dense autoencoders of the same size side by side, each from its own initial
    weights; ``forward`` stacks their reconstructions ``(members, rows, features)``."""

    def __init__(self, features: int, config: DenseSettings, members: int) -> None:
        super().__init__()
        self.members = nn.ModuleList(DenseAutoencoder(features, config) for _ in range(members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's reconstruction of ``x``, stacked on a new first axis."""
        return torch.stack([member(x) for member in self.members])


#: bounds of the learned log-variance of the decoder's Gaussian output (keeps the likelihood finite
#: on features that are constant in training)
LOG_VARIANCE_BOUNDS = (-6.0, 6.0)


class GaussianAutoencoder(nn.Module):
    """Gaussian encoder (``mu``, ``log_variance`` of the latent) and a decoder giving the mean of a
    Gaussian output whose per-feature log-variance is ``output_log_variance`` (learned or fixed).

    ``forward`` is deterministic: it decodes the latent mean. For the reconstruction-probability
    score it holds ``score_noise``, fixed standard-normal draws ``(samples, latent)`` made once from
    the seed and saved with the weights, so a row's score does not depend on its batch.
    """

    def __init__(self, features: int, config: GaussianSettings) -> None:
        super().__init__()
        width = config.hidden[-1] if config.hidden else features
        self.encoder = dense_stack((features, *config.hidden), config.activation, config.dropout)
        self.latent_mean = nn.Linear(width, config.latent)
        self.latent_log_variance = nn.Linear(width, config.latent)
        mirrored = tuple(reversed(config.hidden))
        self.decoder = nn.Sequential(
            dense_stack((config.latent, *mirrored), config.activation, config.dropout),
            nn.Linear(mirrored[-1] if mirrored else config.latent, features),
        )
        if config.output_variance is None:
            self.log_variance = nn.Parameter(torch.zeros(features))
        else:
            self.register_buffer("log_variance", torch.full((features,), math.log(config.output_variance)))
        if config.score == "reconstruction_probability":
            generator = torch.Generator().manual_seed(config.seed)
            noise = torch.randn(config.samples, config.latent, generator=generator)
            self.register_buffer("score_noise", noise)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of the latent Gaussian of each row."""
        hidden = self.encoder(x)
        return self.latent_mean(hidden), self.latent_log_variance(hidden)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Mean of the output Gaussian for latent ``z``."""
        return self.decoder(z)

    def output_log_variance(self) -> torch.Tensor:
        """Per-feature log-variance of the output Gaussian, within :data:`LOG_VARIANCE_BOUNDS`."""
        return torch.clamp(self.log_variance, *LOG_VARIANCE_BOUNDS)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction mean (from the latent mean), latent mean and latent log-variance."""
        mean, log_variance = self.encode(x)
        return self.decode(mean), mean, log_variance


def kl_divergence(mean: torch.Tensor, log_variance: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) of each row."""
    return 0.5 * torch.sum(mean**2 + torch.exp(log_variance) - 1.0 - log_variance, dim=1)
