"""The detector registry: every family module lists its detectors in ``DETECTORS``, and they are
registered here, explicitly and in this order; :func:`create` builds one by name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nadkit.errors import ConfigError
from nadkit.models import autoencoder, baselines, cnn_lstm, hybrid, multitask, recurrent, transformer
from nadkit.models.base import Detector, DetectorConfig

#: the family modules, in registry order
FAMILIES = (autoencoder, recurrent, transformer, cnn_lstm, multitask, hybrid, baselines)

#: name -> detector class, in the order of :data:`FAMILIES`
REGISTRY: dict[str, type[Detector]] = {}


def register(cls: type[Detector]) -> type[Detector]:
    """Add a detector class to the registry under its ``name``."""
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ConfigError(f"two detectors are named {cls.name!r}")
    REGISTRY[cls.name] = cls
    return cls


def create(name: str, config: DetectorConfig | Mapping[str, Any] | None = None) -> Detector:
    """A new detector of the registered ``name``; ``config`` may be a dict of overrides."""
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r} (known: {', '.join(sorted(REGISTRY))})") from None
    if isinstance(config, Mapping):
        config = cls.config_class.from_dict(config)
    return cls(config)


for _family in FAMILIES:
    for _detector in _family.DETECTORS:
        register(_detector)
