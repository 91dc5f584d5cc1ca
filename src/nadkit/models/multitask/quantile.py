"""The network's input map (:class:`Standardize`): an optional per-feature quantile map to normal
scores (:func:`quantile_map` fits it), then standardisation with the training statistics, with its
closed-form derivative for the attributions."""

from __future__ import annotations

import statistics

import numpy as np
import torch
from torch import nn


class Standardize(nn.Module):
    """``clamp((q(x) - mean) / scale, -clip, clip)`` with the training statistics as buffers, where
    ``q`` is the identity or, with ``knots`` (at least 2), a per-feature quantile map: piecewise
    linear through the feature's training quantiles, each sent to the standard normal score of its
    quantile level (flat beyond the lowest and highest knot). Written as a sum of clamped ramps, one
    per segment between consecutive knots, so it exports to ONNX and has a closed-form derivative."""

    def __init__(self, features: int, clip: float, knots: int = 0) -> None:
        super().__init__()
        self.clip = float(clip)
        self.knots = int(knots)
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("scale", torch.ones(features))
        if self.knots >= 2:
            segments = self.knots - 1
            self.register_buffer("knot_start", torch.zeros(features, segments))
            self.register_buffer("knot_inverse", torch.ones(features, segments))
            self.register_buffer("knot_rise", torch.zeros(features, segments))
            self.register_buffer("knot_height", torch.zeros(features, segments))

    @property
    def mapped(self) -> bool:
        """Whether the quantile map comes before the standardisation."""
        return self.knots >= 2

    def fit_quantiles(self, x: np.ndarray) -> None:
        """Set the quantile map from training rows ``x`` (rows x features)."""
        if not self.mapped:
            return
        start, width, rise, height = quantile_map(np.asarray(x, dtype=np.float64), self.knots)
        values = {"knot_start": start, "knot_inverse": 1.0 / width, "knot_rise": rise, "knot_height": height}
        for name, value in values.items():
            getattr(self, name).copy_(torch.from_numpy(value))

    def _segment(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """For each value of ``x``: how far it has climbed its segment (in ``[0, 1]``), and that
        segment's rise, height at its start and inverse width. A value's segment is the last one
        starting at or below it (the first for values below every knot), found by counting, so the
        map's arithmetic is the same few element-wise steps wherever it runs (no sums of floats)."""
        count = (x.unsqueeze(2) >= self.knot_start).sum(dim=2, keepdim=True)
        segment = torch.clamp(count - 1, min=0)
        shape = (x.shape[0], *self.knot_start.shape)

        def pick(table: torch.Tensor) -> torch.Tensor:
            return torch.gather(table.unsqueeze(0).expand(shape), 2, segment).squeeze(2)

        inverse = pick(self.knot_inverse)
        climbed = torch.clamp((x - pick(self.knot_start)) * inverse, 0.0, 1.0)
        return climbed, pick(self.knot_rise), pick(self.knot_height), inverse

    def quantile(self, x: torch.Tensor) -> torch.Tensor:
        """The quantile map of ``x`` (``x`` itself without one)."""
        if not self.mapped:
            return x
        climbed, rise, height, _ = self._segment(x)
        return height + climbed * rise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardised ``x``."""
        return torch.clamp((self.quantile(x) - self.mean) / self.scale, -self.clip, self.clip)

    def with_derivative(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Standardised ``x`` and its element-wise derivative (``q'(x) / scale`` inside the clip, else
        0; ``q'`` is the slope of the segment ``x`` lies in, 0 outside the knots)."""
        if self.mapped:
            climbed, rise, height, inverse = self._segment(x)
            inside_segment = ((climbed > 0) & (climbed < 1)).to(x.dtype)
            slope: torch.Tensor | float = inside_segment * rise * inverse
            mapped = height + climbed * rise
        else:
            slope, mapped = 1.0, x
        unclipped = (mapped - self.mean) / self.scale
        inside = (torch.abs(unclipped) < self.clip).to(x.dtype)
        return torch.clamp(unclipped, -self.clip, self.clip), inside * slope / self.scale


def quantile_map(x: np.ndarray, knots: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The per-feature quantile map of :class:`Standardize` fitted on ``x``: segment starts, widths,
    rises and heights at the start (each ``(features, knots - 1)``).

    The knots are the training quantiles at ``knots`` evenly spaced levels; a value several levels
    share (a discrete feature) is one knot, sent to the normal score of the mean of its levels (levels
    kept within ``[0.001, 0.999]``); unused segments (after the last distinct knot) start at the
    largest float32, so no value reaches them, with width 1, rise 0 and the first height (a feature
    with one value maps to its one height)."""
    levels = np.linspace(0.0, 1.0, knots)
    normal = statistics.NormalDist()
    scores = np.asarray([normal.inv_cdf(float(p)) for p in np.clip(levels, 1e-3, 1 - 1e-3)])
    quantiles = np.quantile(x, levels, axis=0) if len(x) else np.zeros((knots, x.shape[1]))
    # the knots are kept as float32: distinct there, so no segment is empty
    quantiles = quantiles.astype(np.float32).astype(np.float64)
    features = x.shape[1]
    start = np.full((features, knots - 1), float(np.finfo(np.float32).max))
    width = np.ones((features, knots - 1))
    rise = np.zeros((features, knots - 1))
    height = np.zeros((features, knots - 1))
    for column in range(features):
        values, inverse = np.unique(quantiles[:, column], return_inverse=True)
        heights = np.bincount(inverse, weights=scores) / np.bincount(inverse)
        height[column, :] = heights[0]
        used = len(values) - 1
        start[column, :used] = values[:-1]
        width[column, :used] = np.diff(values)
        rise[column, :used] = np.diff(heights)
        height[column, :used] = heights[:-1]
    return start, width, rise, height
