"""Detectors of the autoencoder family: a dense autoencoder scored by reconstruction error and a
variational autoencoder scored by its negative evidence lower bound (ELBO) or by its negative
reconstruction probability (the mean log-likelihood of the row under latent samples).

Both read single rows and train on normal traffic only through the one
:class:`~nadkit.models.trainer.Trainer`; their networks (:mod:`nadkit.models.autoencoder_networks`,
imported when a network is built, so this module does not import torch) are plain ``nn.Module``
networks with no data-dependent control flow in ``forward`` (exportable to ONNX).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from nadkit.errors import ConfigError
from nadkit.models.base import Detector
from nadkit.models.neural import NeuralConfig, NeuralDetector
from nadkit.models.trainer import Batch

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from nadkit.models.neural import _View


#: the activations the ``activation`` option names
ACTIVATION_NAMES: tuple[str, ...] = ("relu", "leaky_relu", "elu", "gelu", "selu", "tanh")


def _check_layers(hidden: tuple[int, ...], bottleneck: int, activation: str, dropout: float) -> None:
    if any(size < 1 for size in hidden):
        raise ConfigError(f"hidden layer sizes must be at least 1, got {hidden}")
    if bottleneck < 1:
        raise ConfigError(f"the bottleneck size must be at least 1, got {bottleneck}")
    if activation not in ACTIVATION_NAMES:
        raise ConfigError(f"unknown activation {activation!r} (known: {', '.join(sorted(ACTIVATION_NAMES))})")
    if not 0 <= dropout < 1:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout}")


# ---------------------------------------------------------------------------------------------------
# autoencoder
# ---------------------------------------------------------------------------------------------------

#: the most networks an autoencoder ensemble (``members``) holds
MAX_MEMBERS = 16
#: the most neighbours (``latent_neighbours``) and reference codes (``latent_references``)
MAX_NEIGHBOURS, MAX_REFERENCES = 64, 65536


@dataclass(frozen=True)
class AutoencoderConfig(NeuralConfig):
    """A dense autoencoder: ``hidden`` layer sizes of the encoder (the decoder mirrors them), the
    ``bottleneck`` (code) size, the ``activation`` name and the ``dropout`` after each hidden layer.
    ``input_noise`` and ``input_mask`` make it a denoising autoencoder: each training row reaches the
    network with Gaussian noise of that standard deviation added (in scaled feature units) and that
    share of its features set to 0 (the training median), and is reconstructed to its clean self;
    validation and scoring see the rows as they are. ``members`` above 1 trains that many networks of
    this size side by side from their own initial weights (one optimiser, the same batches, early
    stopping on their summed loss) and scores a row by their mean squared error, feature by feature:
    an ensemble whose members disagree where normal traffic gave them little to learn from, at
    ``members`` times the arithmetic per row. ``latent_neighbours`` k above 0 adds to a row's error its
    distance, in the bottleneck's code space, to the normal training rows: the mean distance to the k
    nearest of up to ``latent_references`` training codes (drawn at random after training), weighed
    so that it spreads as much as the reconstruction error on held-out normal rows, and explained by
    how the row differs from those k training rows. A network that has all but memorised a small
    training set reconstructs a row near one odd training flow well; the distance still says that
    few normal flows lie there (at ``latent_references`` times the bottleneck's arithmetic per row
    more). Trains for up to 60 epochs at a learning rate
    of 3e-3 (early stopping on held-out normal rows usually ends it after 20 to 40). The default size,
    features -> 128 -> 64 -> 16, is the smallest on the quality benchmark's frontier within the
    seeds' spread of the larger 256 -> 128 -> 16 on every data set, at about a third of its
    arithmetic per flow (``benchmarks/quality.py``)."""

    epochs: int = 60
    learning_rate: float = 3e-3
    hidden: tuple[int, ...] = (128, 64)
    bottleneck: int = 16
    activation: str = "relu"
    dropout: float = 0.0
    input_noise: float = 0.0
    input_mask: float = 0.0
    members: int = 1
    latent_neighbours: int = 0
    latent_references: int = 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_layers(self.hidden, self.bottleneck, self.activation, self.dropout)
        if not 1 <= self.members <= MAX_MEMBERS:
            raise ConfigError(f"members must be between 1 and {MAX_MEMBERS}, got {self.members}")
        if not 0 <= self.latent_neighbours <= MAX_NEIGHBOURS:
            raise ConfigError(
                f"latent_neighbours must be between 0 and {MAX_NEIGHBOURS}, got {self.latent_neighbours}"
            )
        if self.latent_neighbours and not self.latent_neighbours <= self.latent_references <= MAX_REFERENCES:
            raise ConfigError(
                f"latent_references must be between latent_neighbours ({self.latent_neighbours}) and "
                f"{MAX_REFERENCES}, got {self.latent_references}"
            )
        if self.latent_neighbours and self.members > 1:
            raise ConfigError("latent_neighbours needs a single network (members 1)")
        if not (math.isfinite(self.input_noise) and self.input_noise >= 0):
            raise ConfigError(f"input_noise must be 0 or more, got {self.input_noise}")
        if not 0 <= self.input_mask < 1:
            raise ConfigError(f"input_mask must be in [0, 1), got {self.input_mask}")


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
        """The :class:`~nadkit.models.autoencoder_networks.DenseAutoencoder` for ``features`` inputs
        (:class:`~nadkit.models.autoencoder_networks.DenseAutoencoders` with ``members`` above 1)."""
        from nadkit.models.autoencoder_networks import DenseAutoencoder, DenseAutoencoders

        if self.config.members > 1:
            return DenseAutoencoders(features, self.config, self.config.members)
        return DenseAutoencoder(features, self.config)

    def loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        """Mean squared reconstruction error (of the corrupted rows while training a denoising one),
        averaged over the members of an ensemble."""
        import torch

        return torch.mean((module(self._corrupted(batch.x) if module.training else batch.x) - batch.x) ** 2)

    def _corrupted(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with the configured noise added and share of features masked (``x`` itself without)."""
        import torch

        noise, mask = self.config.input_noise, self.config.input_mask
        if noise > 0:
            x = x + noise * torch.randn_like(x)
        if mask > 0:
            x = x * (torch.rand_like(x) >= mask).to(x.dtype)
        return x

    def errors(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        """Squared reconstruction error per feature (its mean over the members of an ensemble), plus
        the weighed distance to the training codes with ``latent_neighbours``."""
        if self.config.members > 1:
            return ((module(batch.x) - batch.x) ** 2).mean(dim=0)
        code = module.encoder(batch.x)
        squared = (module.decoder(code) - batch.x) ** 2
        if self.config.latent_neighbours:
            squared = squared + module.neighbour_errors(code, batch.x)
        return squared

    def _after_training(self, train: _View, held: _View) -> None:
        """With ``latent_neighbours``: keep codes of training rows as references, and weigh their
        distance by the spread of held-out normal rows' reconstruction errors over their distances'
        (each spread the 99th percentile less the median)."""
        import numpy as np
        import torch

        config = self.config
        if not config.latent_neighbours:
            return
        module = self.module_.to(self.device_).eval()
        rng = np.random.default_rng(config.seed)
        rows = train.rows
        if len(rows) > config.latent_references:
            rows = np.sort(rng.choice(rows, config.latent_references, replace=False))
        if len(rows) < config.latent_neighbours:
            raise ConfigError(
                f"latent_neighbours ({config.latent_neighbours}) needs at least as many training rows, "
                f"got {len(rows)}"
            )
        x = torch.from_numpy(train.data.features[rows]).to(self.device_)
        with torch.no_grad():
            module.set_references(module.encoder(x), x)
            errors, distances = [], []
            for batch in held.batches(config.score_batch_size):
                held_x = batch.x.to(self.device_)
                code = module.encoder(held_x)
                errors.append(((module.decoder(code) - held_x) ** 2).sum(dim=1).double().cpu().numpy())
                distances.append(module.neighbour_distance(code)[0].double().cpu().numpy())
        weight = _spread(np.concatenate(errors)) / _spread(np.concatenate(distances))
        module.neighbour_weight.fill_(float(weight) if np.isfinite(weight) and weight > 0 else 1.0)


def _spread(values: np.ndarray) -> float:
    """The 99th percentile less the median (the range where that is 0; 1 where both are)."""
    import numpy as np

    spread = float(np.quantile(values, 0.99) - np.median(values)) if len(values) else 0.0
    if not spread > 0 and len(values):
        spread = float(values.max() - values.min())
    return spread if spread > 0 else 1.0


# ---------------------------------------------------------------------------------------------------
# variational autoencoder
# ---------------------------------------------------------------------------------------------------

#: how a VAE scores a row: negative ELBO, or negative reconstruction probability
VaeScore = Literal["elbo", "reconstruction_probability"]
VAE_SCORES: tuple[str, ...] = ("elbo", "reconstruction_probability")


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
        """The :class:`~nadkit.models.autoencoder_networks.GaussianAutoencoder` for ``features``
        inputs."""
        from nadkit.models.autoencoder_networks import GaussianAutoencoder

        return GaussianAutoencoder(features, self.config)

    def loss(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        """Mean negative ELBO; the latent is sampled (reparameterisation) in training mode only, so
        validation losses are deterministic."""
        import torch

        from nadkit.models.autoencoder_networks import kl_divergence

        mean, log_variance = module.encode(batch.x)
        z = mean
        if module.training:
            z = mean + torch.exp(0.5 * log_variance) * torch.randn_like(mean)
        output_log_variance = module.output_log_variance()
        squared = (batch.x - module.decode(z)) ** 2
        nll = 0.5 * torch.sum(
            math.log(2 * math.pi) + output_log_variance + squared * torch.exp(-output_log_variance), dim=1
        )
        return torch.mean(nll + self.config.beta * kl_divergence(mean, log_variance))

    def errors(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        """Per-feature scaled squared error plus the row's KL term spread evenly over the features
        (``"elbo"``), or the per-feature negative log-likelihood averaged over the fixed latent draws
        (``"reconstruction_probability"``)."""
        import torch

        from nadkit.models.autoencoder_networks import kl_divergence

        if self.config.score == "reconstruction_probability":
            mean, log_variance = module.encode(batch.x)
            spread = torch.exp(0.5 * log_variance).unsqueeze(0)
            z = mean.unsqueeze(0) + spread * module.score_noise.unsqueeze(1)
            squared = (batch.x.unsqueeze(0) - module.decode(z)) ** 2  # (samples, rows, features)
            return 0.5 * torch.mean(squared, dim=0) * torch.exp(-module.output_log_variance())
        reconstruction, mean, log_variance = module(batch.x)
        squared = 0.5 * (batch.x - reconstruction) ** 2 * torch.exp(-module.output_log_variance())
        kl = self.config.beta * torch.clamp(kl_divergence(mean, log_variance), min=0.0)
        return squared + (kl / batch.x.shape[1]).unsqueeze(1)


#: the detectors this module defines, in registry order
DETECTORS: tuple[type[Detector], ...] = (Autoencoder, VariationalAutoencoder)
