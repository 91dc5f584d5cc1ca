"""Detectors: one contract (:mod:`nadkit.models.base`), one trainer (:mod:`nadkit.models.trainer`),
one module per family, and an explicit registry (:mod:`nadkit.models.registry`)."""

from nadkit.models.base import Detector, DetectorConfig, DetectorData, NotFittedError
from nadkit.models.registry import REGISTRY, create, register

__all__ = ["REGISTRY", "Detector", "DetectorConfig", "DetectorData", "NotFittedError", "create", "register"]
