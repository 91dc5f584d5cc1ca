"""The torch module of the neural template (:mod:`nadkit.models.neural`) that export reads: a detector's
per-feature errors around a CPU copy of its fitted network. Apart from the template, which imports
torch only where it trains or scores on torch."""

from __future__ import annotations

import copy
from typing import Protocol

import numpy as np
import torch
from torch import nn

from nadkit.models.trainer import Batch


class FittedNetwork(Protocol):
    """What :class:`ErrorsModule` reads of a fitted neural detector."""

    @property
    def module_(self) -> nn.Module: ...

    error_weights_: np.ndarray | None

    def errors(self, module: nn.Module, batch: Batch) -> torch.Tensor: ...


class ErrorsModule(nn.Module):
    """A neural detector's :meth:`~nadkit.models.neural.NeuralDetector.errors` around a CPU copy of
    its fitted network, in eval mode."""

    def __init__(self, detector: FittedNetwork) -> None:
        super().__init__()
        self.network = copy.deepcopy(detector.module_).cpu().eval()
        self.errors = detector.errors
        weights = detector.error_weights_
        self.weights: torch.Tensor | None
        if weights is None:
            self.weights = None
        else:
            self.register_buffer("weights", torch.from_numpy(np.asarray(weights, dtype=np.float32).copy()))
        self.eval()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``(b, d)`` float32 per-feature errors of rows ``x``, or of windows ``x`` with ``mask``
        (weighed, where the detector weighs them)."""
        errors = self.errors(self.network, Batch(x=x, mask=mask)).to(torch.float32)
        return errors if self.weights is None else errors * self.weights
