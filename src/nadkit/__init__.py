"""nadkit: detect anomalies and attacks in network traffic with deep learning.

The public API (see :mod:`nadkit.api`): :func:`read_flows`, :func:`train`, :func:`load` and the
:class:`Model` they give. They are imported on first use, so that ``import nadkit`` and the command
line start without loading the models.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from nadkit.version import __version__

if TYPE_CHECKING:
    from nadkit.api import Model, load, read_flows, train

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = ["Model", "__version__", "load", "read_flows", "train"]
_API = frozenset({"Model", "load", "read_flows", "train"})


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module("nadkit.api"), name)
    raise AttributeError(f"module 'nadkit' has no attribute {name!r}")
