"""The detector registry: every family module lists its detectors in ``DETECTORS``, and they are
registered here, explicitly and in this order; :func:`create` builds one by name.

A family module is imported the first time one of its detectors is asked for (by name, or by going
over the registry), not before: the neural families import torch, which takes seconds, and scoring
a saved autoencoder on ONNX Runtime needs none of it. :data:`FAMILIES` names each family's
detectors so that a name is found without importing its module; importing the module checks the
names against its ``DETECTORS``."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

from nadkit.errors import ConfigError
from nadkit.models.base import Detector, DetectorConfig

#: the family modules, in registry order, with the names of the detectors each defines
FAMILIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("nadkit.models.autoencoder", ("ae", "vae")),
    ("nadkit.models.recurrent", ("lstm", "gru")),
    ("nadkit.models.transformer", ("transformer",)),
    ("nadkit.models.cnn_lstm", ("cnn_lstm",)),
    ("nadkit.models.multitask", ("multitask",)),
    ("nadkit.models.hybrid", ("multitask_gbt",)),
    ("nadkit.models.baselines", ("iforest", "ecod")),
)
_FAMILY_OF = {name: module for module, names in FAMILIES for name in names}


class Registry(Mapping[str, type[Detector]]):
    """Name -> detector class, in the order of :data:`FAMILIES` and then of :func:`register`
    calls; a family's module is imported when one of its names is looked up, and every one when
    the registry is gone over."""

    def __init__(self) -> None:
        self._classes: dict[str, type[Detector]] = {}
        self._imported: set[str] = set()

    def register(self, cls: type[Detector]) -> type[Detector]:
        known = self._classes.get(cls.name)
        if known is not None and known is not cls:
            raise ConfigError(f"two detectors are named {cls.name!r}")
        family = _FAMILY_OF.get(cls.name)
        if family is not None and family not in self._imported:
            self._import(family)  # the family's own class comes first
            return self.register(cls)
        self._classes[cls.name] = cls
        return cls

    def _import(self, module_name: str) -> None:
        if module_name in self._imported:
            return
        self._imported.add(module_name)
        module = importlib.import_module(module_name)
        declared = {name for module, names in FAMILIES if module == module_name for name in names}
        defined = {cls.name for cls in module.DETECTORS}
        if defined != declared:
            raise ConfigError(
                f"{module_name} defines detectors {sorted(defined)}, the registry lists {sorted(declared)}"
            )
        for cls in module.DETECTORS:
            self.register(cls)

    def _import_all(self) -> None:
        for module_name, _ in FAMILIES:
            self._import(module_name)

    def __getitem__(self, name: str) -> type[Detector]:
        if name not in self._classes and name in _FAMILY_OF:
            self._import(_FAMILY_OF[name])
        return self._classes[name]

    def __contains__(self, name: object) -> bool:
        return name in _FAMILY_OF or name in self._classes

    def __iter__(self) -> Iterator[str]:
        self._import_all()
        ordered = [name for _, names in FAMILIES for name in names]
        return iter(ordered + [name for name in self._classes if name not in _FAMILY_OF])

    def __len__(self) -> int:
        return len(set(_FAMILY_OF) | set(self._classes))


#: name -> detector class, in the order of :data:`FAMILIES`
REGISTRY = Registry()


def register(cls: type[Detector]) -> type[Detector]:
    """Add a detector class to the registry under its ``name``."""
    return REGISTRY.register(cls)


def create(name: str, config: DetectorConfig | Mapping[str, Any] | None = None) -> Detector:
    """A new detector of the registered ``name``; ``config`` may be a dict of overrides."""
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r} (known: {', '.join(sorted(REGISTRY))})") from None
    if isinstance(config, Mapping):
        config = cls.config_class.from_dict(config)
    return cls(config)
