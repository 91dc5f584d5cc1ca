"""Detectors of the autoencoder family."""

from __future__ import annotations

from nadkit.models.base import Detector

#: the detectors this module defines, in registry order
DETECTORS: tuple[type[Detector], ...] = ()
