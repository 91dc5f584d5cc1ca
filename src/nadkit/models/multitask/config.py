"""The settings of the multi-task network and its training (:class:`MultitaskConfig`), checked when
made."""

from __future__ import annotations

from dataclasses import dataclass

from nadkit.errors import ConfigError
from nadkit.models.neural import NeuralConfig


@dataclass(frozen=True)
class MultitaskConfig(NeuralConfig):
    """The multi-task network and its training.

    Architecture: ``width`` of the encoder layers, ``encoder_layers`` (the dense input layer plus
    ``encoder_layers - 1`` shake-shake blocks), ``latent`` size, ``head_width`` (hidden size of each
    head; 0 for linear heads), ``dropout`` (AlphaDropout rate), ``input_clip`` (standardised inputs
    are clipped to this); ``input_transform``: ``"quantile"`` sends each feature through its
    training quantiles (``quantile_knots`` of them) to normal scores before standardising, which
    tames heavy tails and spreads out discrete values; ``"standard"`` standardises the features as
    they come; ``input_bins``: when above 0, each standardised feature is also given to the network
    as its position in each of that many quantile bins of its training values (piecewise-linear
    encoding), so the first layer can weigh parts of a feature's range separately, as a tree's
    splits do; 0 gives the standardised features alone. ``input_periodic``: when above 0, each
    standardised feature is also given through sines and cosines of that many trained frequencies
    (drawn at first from a normal of standard deviation ``periodic_scale``), mixed per feature by a
    trained layer of ``periodic_width`` rectified units, so the first layer can pick out narrow
    bands and single values of a feature; ``input_bins`` above 0 replaces it.

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
    input_bins: int = 0
    input_periodic: int = 0
    periodic_width: int = 16
    periodic_scale: float = 1.0
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
        if not 0 <= self.input_bins <= 256:
            raise ConfigError(f"input_bins must be between 0 and 256, got {self.input_bins}")
        if not 0 <= self.input_periodic <= 64:
            raise ConfigError(f"input_periodic must be between 0 and 64, got {self.input_periodic}")
        if self.periodic_width < 1:
            raise ConfigError(f"periodic_width must be at least 1, got {self.periodic_width}")
        if not self.periodic_scale > 0:
            raise ConfigError(f"periodic_scale must be positive, got {self.periodic_scale}")
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
