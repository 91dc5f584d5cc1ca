"""nadkit: detect anomalies and attacks in network traffic with deep learning."""

from __future__ import annotations

import logging

from nadkit.version import __version__

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["__version__"]
