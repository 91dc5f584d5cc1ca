"""How each feature is scaled: robust centre and spread fitted on the training values, bounds, and
the log compression beyond +-1 (see :mod:`nadkit.features.pipeline`, which fits one
:class:`Scaling` per feature and applies them as Polars expressions)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

#: Largest ``|center| / scale`` for which a feature is scaled in Float32 arithmetic: up to it, Float32
#: rounding moves a scaled value (of order 1) by a few millionths at most; beyond it (a column with a
#: large offset and a small spread), the arithmetic is Float64.
FLOAT32_MAX_OFFSET = 16.0

#: Scale factors (``1 / scale``) Float32 holds with full precision.
_FLOAT32_FACTORS = (1e-30, 1e30)


def _f32(value: float) -> pl.Expr:
    return pl.lit(value, dtype=pl.Float32)


@dataclass(frozen=True)
class Scaling:
    """How one feature is scaled: ``(clip(x, lower, upper) - center) / scale``; an ``indicator``
    (a Boolean feature) is only turned into 0/1."""

    center: float
    scale: float
    lower: float
    upper: float
    indicator: bool = False
    #: the scaled value ``z`` is compressed beyond +-1 (:func:`compress_log`)
    log_compress: bool = False

    def expression(self, expr: pl.Expr) -> pl.Expr:
        """``expr`` scaled, as Float32; NaN and null become 0.

        Computed as ``x * (1 / scale) - center / scale`` clipped to the scaled bounds (the same up to
        rounding), in Float32 unless the feature's offset needs Float64 (see
        :data:`FLOAT32_MAX_OFFSET`).
        """
        if self.indicator:
            return pl.when(expr).then(_f32(1.0)).otherwise(_f32(0.0))
        factor, offset = 1.0 / self.scale, -self.center / self.scale
        low, high = sorted(((self.lower - self.center) * factor, (self.upper - self.center) * factor))
        small_offset = abs(self.center) <= FLOAT32_MAX_OFFSET * abs(self.scale)
        if factor == 1.0 and offset == 0.0:
            scaled = expr.cast(pl.Float32)
        elif small_offset and _FLOAT32_FACTORS[0] < abs(factor) < _FLOAT32_FACTORS[1]:
            scaled = expr.cast(pl.Float32) * _f32(factor) + _f32(offset)
        else:
            scaled = (expr.cast(pl.Float64) * factor + offset).cast(pl.Float32)
        # NaN and null first (max_horizontal and min_horizontal would skip them), then the bounds
        scaled = scaled.fill_nan(_f32(0.0)).fill_null(_f32(0.0))
        clipped = pl.min_horizontal(pl.max_horizontal(scaled, _f32(low)), _f32(high))
        if self.log_compress:
            # z within +-1, sign(z) (1 + log|z|) beyond, without a branch: clip(z) + sign(z) log(max(|z|, 1))
            # (min/max_horizontal: the same values as ``clip`` here, no NaN left, in a third of its time)
            excess = pl.max_horizontal(clipped.abs(), _f32(1.0)).log()
            within = pl.min_horizontal(pl.max_horizontal(clipped, _f32(-1.0)), _f32(1.0))
            return within + clipped.sign().cast(pl.Float32) * excess
        return clipped


def compress_log(z: np.ndarray) -> np.ndarray:
    """``z`` within ``[-1, 1]``, ``sign(z) * (1 + log|z|)`` beyond: continuous, increasing, slope 1 at
    +-1 (what :attr:`Scaling.log_compress` does to scaled values)."""
    z = np.asarray(z, dtype=np.float64)
    magnitude = np.maximum(np.abs(z), 1.0)
    return np.where(np.abs(z) <= 1.0, z, np.sign(z) * (1.0 + np.log(magnitude)))


#: The scaling of every Boolean feature.
INDICATOR = Scaling(center=0.0, scale=1.0, lower=0.0, upper=1.0, indicator=True)


def fit_scaling(
    values: np.ndarray, quantiles: tuple[float, float], max_scaled: float = 100.0, *, compress: bool = False
) -> Scaling:
    """Robust scaling of one feature from its training values (non-finite values ignored).

    Centre: the median (0 for a 0/1 feature, which keeps its values). Scale: the inter-quartile
    range; where that is 0 (most values equal), the range between the ``quantiles``, else the full
    range, else 1; and at least ``1 / max_scaled`` of the range between the ``quantiles``, so the
    central training values always scale into ``[-max_scaled, max_scaled]``. Bounds: the values that
    scale to ``-max_scaled`` and ``max_scaled``. Values beyond the training range, later ones
    included, stay visible up to those bounds (an anomaly is not clipped to the most extreme normal
    value) and ``inf`` becomes a bound. ``compress``: the scaled values are log-compressed beyond +-1.
    """
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return Scaling(0.0, 1.0, -max_scaled, max_scaled, log_compress=compress)
    if np.all((finite == 0.0) | (finite == 1.0)):
        return Scaling(0.0, 1.0, -max_scaled, max_scaled, log_compress=compress)
    low, q25, median, q75, high = (
        float(q) for q in np.quantile(finite, [quantiles[0], 0.25, 0.5, 0.75, quantiles[1]])
    )
    central = high - low
    spread = q75 - q25
    if not spread > 0:
        spread = central if central > 0 else float(finite.max() - finite.min())
    scale = max(spread, central / max_scaled)
    if not scale > 0:
        scale = 1.0
    return Scaling(
        median, scale, median - max_scaled * scale, median + max_scaled * scale, log_compress=compress
    )


__all__ = ["FLOAT32_MAX_OFFSET", "INDICATOR", "Scaling", "compress_log", "fit_scaling"]
