"""Detectors of the autoencoder family: a dense autoencoder scored by reconstruction error and a
variational autoencoder scored by its negative evidence lower bound (ELBO) or by its negative
reconstruction probability (the mean log-likelihood of the row under latent samples).

Both read single rows, train on normal traffic only through the one
:class:`~nadkit.models.trainer.Trainer` and are plain ``nn.Module`` networks with no data-dependent
control flow in ``forward`` (exportable to ONNX).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from nadkit.errors import ConfigError
from nadkit.models.base import Detector
from nadkit.models.neural import NeuralConfig, NeuralDetector
from nadkit.models.trainer import Batch

#: activation name -> module class, for the ``activation`` option
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "selu": nn.SELU,
    "tanh": nn.Tanh,
}


def _check_layers(hidden: tuple[int, ...], bottleneck: int, activation: str, dropout: float) -> None:
    if any(size < 1 for size in hidden):
        raise ConfigError(f"hidden layer sizes must be at least 1, got {hidden}")
    if bottleneck < 1:
        raise ConfigError(f"the bottleneck size must be at least 1, got {bottleneck}")
    if activation not in ACTIVATIONS:
        raise ConfigError(f"unknown activation {activation!r} (known: {', '.join(sorted(ACTIVATIONS))})")
    if not 0 <= dropout < 1:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")


def dense_stack(sizes: tuple[int, ...], activation: str, dropout: float) -> nn.Sequential:
    """Linear layers through ``sizes`` (input first), each followed by the activation and dropout."""
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers.append(nn.Linear(fan_in, fan_out))
        layers.append(ACTIVATIONS[activation]())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


# ---------------------------------------------------------------------------------------------------
# autoencoder
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AutoencoderConfig(NeuralConfig):
    """A dense autoencoder: ``hidden`` layer sizes of the encoder (the decoder mirrors them), the
    ``bottleneck`` (code) size, the ``activation`` name and the ``dropout`` after each hidden layer.
    Trains for up to 60 epochs at a learning rate of 3e-3 (early stopping on held-out normal rows
    usually ends it after 20 to 40). The default size, features -> 128 -> 64 -> 16, is the smallest
    on the quality benchmark's frontier within the seeds' spread of the larger 256 -> 128 -> 16 on
    every data set, at about a third of its arithmetic per flow (``benchmarks/quality.py``)."""

    epochs: int = 60
    learning_rate: float = 3e-3
    hidden: tuple[int, ...] = (128, 64)
    bottleneck: int = 16
    activation: str = "relu"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_layers(self.hidden, self.bottleneck, self.activation, self.dropout)


class DenseAutoencoder(nn.Module):
    """Encoder -> linear bottleneck -> decoder -> linear output of the input's width."""

    def __init__(self, features: int, config: AutoencoderConfig) -> None:
        super().__init__()
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


class Autoencoder(NeuralDetector):
    """Dense autoencoder trained on normal rows with mean squared error; a row's score is its summed
    squared reconstruction error, each feature's square its contribution."""

    name = "ae"
    summary = "dense autoencoder; score: squared reconstruction error"
    input = "rows"
    config_class = AutoencoderConfig
    config: AutoencoderConfig

    @classmethod
    def test_config(cls) -> AutoencoderConfig:
        """Small and quick: trains in about a second on a few thousand rows."""
        return AutoencoderConfig(
            hidden=(32,),
            bottleneck=8,
            epochs=10,
            batch_size=256,
            patience=3,
            max_train_rows=3000,
            device="cpu",
        )

    def build_module(self, features: int) -> nn.Module:
        """The :class:`DenseAutoencoder` for ``features`` inputs."""
        return DenseAutoencoder(features, self.config)

    def loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        """Mean squared reconstruction error."""
        return torch.mean((module(batch.x) - batch.x) ** 2)

    def errors(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        """Squared reconstruction error per feature."""
        return (module(batch.x) - batch.x) ** 2


# ---------------------------------------------------------------------------------------------------
# variational autoencoder
# ---------------------------------------------------------------------------------------------------

#: how a VAE scores a row: negative ELBO, or negative reconstruction probability
VaeScore = Literal["elbo", "reconstruction_probability"]
VAE_SCORES: tuple[str, ...] = ("elbo", "reconstruction_probability")

#: bounds of the learned log-variance of the decoder's Gaussian output (keeps the likelihood finite
#: on features that are constant in training)
LOG_VARIANCE_BOUNDS = (-6.0, 6.0)


@dataclass(frozen=True)
class VariationalAutoencoderConfig(NeuralConfig):
    """A variational autoencoder: encoder ``hidden`` sizes (the decoder mirrors them), ``latent``
    size, ``activation``, ``dropout``; ``beta`` weighs the KL term of the ELBO; ``output_variance``:
    the fixed variance of the Gaussian output on every feature, or None to learn one variance per
    feature; ``score``: ``"elbo"`` (negative ELBO with the latent mean) or
    ``"reconstruction_probability"`` (negative mean log-likelihood of the row under ``samples``
    latent draws from its posterior). Trains for up to 60 epochs at a learning rate of 3e-3."""

    epochs: int = 60
    learning_rate: float = 3e-3
    hidden: tuple[int, ...] = (256, 128)
    latent: int = 16
    activation: str = "relu"
    dropout: float = 0.0
    beta: float = 1.0
    output_variance: float | None = None
    score: VaeScore = "elbo"
    samples: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_layers(self.hidden, self.latent, self.activation, self.dropout)
        if self.beta < 0:
            raise ConfigError(f"beta must be non-negative, got {self.beta}")
        if self.output_variance is not None and not self.output_variance > 0:
            raise ConfigError(f"output_variance must be positive, got {self.output_variance}")
        if self.score not in VAE_SCORES:
            raise ConfigError(f"score must be one of {', '.join(VAE_SCORES)}; got {self.score!r}")
        if self.samples < 1:
            raise ConfigError(f"samples must be at least 1, got {self.samples}")


class GaussianAutoencoder(nn.Module):
    """Gaussian encoder (``mu``, ``log_variance`` of the latent) and a decoder giving the mean of a
    Gaussian output whose per-feature log-variance is ``output_log_variance`` (learned or fixed).

    ``forward`` is deterministic: it decodes the latent mean. For the reconstruction-probability
    score it holds ``score_noise``, fixed standard-normal draws ``(samples, latent)`` made once from
    the seed and saved with the weights, so a row's score does not depend on its batch.
    """

    def __init__(self, features: int, config: VariationalAutoencoderConfig) -> None:
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


def _kl_divergence(mean: torch.Tensor, log_variance: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) of each row."""
    return 0.5 * torch.sum(mean**2 + torch.exp(log_variance) - 1.0 - log_variance, dim=1)


class VariationalAutoencoder(NeuralDetector):
    """Variational autoencoder trained by minimising the negative ELBO (Gaussian reconstruction
    negative log-likelihood + ``beta`` x KL) on normal rows.

    Score ``"elbo"`` (default): the negative ELBO of the row computed deterministically with the
    latent mean, less the constant ``0.5 * sum(log(2 pi) + log variance)`` that is the same for every
    row. Contribution of feature ``j``: ``0.5 * (x_j - mean_j)^2 / variance_j`` plus ``beta * KL / d``,
    so every term is non-negative and a row's terms sum to its score.

    Score ``"reconstruction_probability"``: latents ``z_l = mu + sigma * e_l`` for the fixed draws
    ``e_l`` (``l = 1..samples``), and the negative mean Gaussian log-likelihood of the row under the
    decoder's output for each, less the same constant. Contribution of feature ``j``: the mean over
    the draws of ``0.5 * (x_j - mean_lj)^2 / variance_j``. A row whose posterior is wide (the encoder
    is unsure where it belongs) is scored over a wide set of reconstructions.
    """

    name = "vae"
    summary = "variational autoencoder; score: negative ELBO, or the reconstruction probability"
    input = "rows"
    config_class = VariationalAutoencoderConfig
    config: VariationalAutoencoderConfig

    @classmethod
    def test_config(cls) -> VariationalAutoencoderConfig:
        """Small and quick: trains in one to two seconds on a few thousand rows."""
        return VariationalAutoencoderConfig(
            hidden=(32,),
            latent=8,
            epochs=12,
            batch_size=256,
            patience=4,
            learning_rate=3e-3,
            max_train_rows=3000,
            device="cpu",
        )

    def build_module(self, features: int) -> nn.Module:
        """The :class:`GaussianAutoencoder` for ``features`` inputs."""
        return GaussianAutoencoder(features, self.config)

    def loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        """Mean negative ELBO; the latent is sampled (reparameterisation) in training mode only, so
        validation losses are deterministic."""
        mean, log_variance = module.encode(batch.x)
        z = mean
        if module.training:
            z = mean + torch.exp(0.5 * log_variance) * torch.randn_like(mean)
        output_log_variance = module.output_log_variance()
        squared = (batch.x - module.decode(z)) ** 2
        nll = 0.5 * torch.sum(
            math.log(2 * math.pi) + output_log_variance + squared * torch.exp(-output_log_variance), dim=1
        )
        return torch.mean(nll + self.config.beta * _kl_divergence(mean, log_variance))

    def errors(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        """Per-feature scaled squared error plus the row's KL term spread evenly over the features
        (``"elbo"``), or the per-feature negative log-likelihood averaged over the fixed latent draws
        (``"reconstruction_probability"``)."""
        if self.config.score == "reconstruction_probability":
            mean, log_variance = module.encode(batch.x)
            spread = torch.exp(0.5 * log_variance).unsqueeze(0)
            z = mean.unsqueeze(0) + spread * module.score_noise.unsqueeze(1)
            squared = (batch.x.unsqueeze(0) - module.decode(z)) ** 2  # (samples, rows, features)
            return 0.5 * torch.mean(squared, dim=0) * torch.exp(-module.output_log_variance())
        reconstruction, mean, log_variance = module(batch.x)
        squared = 0.5 * (batch.x - reconstruction) ** 2 * torch.exp(-module.output_log_variance())
        kl = self.config.beta * torch.clamp(_kl_divergence(mean, log_variance), min=0.0)
        return squared + (kl / batch.x.shape[1]).unsqueeze(1)


#: the detectors this module defines, in registry order
DETECTORS: tuple[type[Detector], ...] = (Autoencoder, VariationalAutoencoder)
