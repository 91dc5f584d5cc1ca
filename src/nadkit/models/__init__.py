"""Detectors: one contract (:mod:`nadkit.models.base`), one trainer (:mod:`nadkit.models.trainer`),
one module per family. The registry is explicit: every family module lists its detectors in
``DETECTORS`` and they are registered here, in this order."""

from nadkit.models import autoencoder, baselines, cnn_lstm, hybrid, multitask, recurrent, transformer
from nadkit.models.base import (
    REGISTRY,
    Detector,
    DetectorConfig,
    DetectorData,
    NotFittedError,
    create,
    register,
)

for _module in (autoencoder, recurrent, transformer, cnn_lstm, multitask, hybrid, baselines):
    for _detector in _module.DETECTORS:
        register(_detector)

__all__ = ["REGISTRY", "Detector", "DetectorConfig", "DetectorData", "NotFittedError", "create", "register"]
