"""How the evaluation report writes numbers and draws figures: metric values with a dash where they
are missing, counts and percentages, tick labels for log axes, class names shortened for axes, and
the figure size, style and PNG encoding every report figure shares."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nadkit.pictures.palette import short

#: resolution of the PNG files
DPI = 120
#: longest class name shown on an axis; longer names are shortened with an ellipsis
AXIS_NAME_LENGTH = 26
#: what a missing or non-numeric value is shown as
MISSING = "–"


def is_number(value: Any) -> bool:
    """Whether ``value`` is a finite number (not a bool)."""
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def fixed(value: Any, digits: int = 4) -> str:
    """A metric value with ``digits`` decimals, or "–" when it is missing or not a number."""
    return f"{float(value):.{digits}f}" if is_number(value) else MISSING


def general(value: Any, digits: int = 6) -> str:
    return f"{float(value):.{digits}g}" if is_number(value) else MISSING


def count(value: Any) -> str:
    return f"{int(value):,}" if is_number(value) else MISSING


def percent(value: Any, digits: int = 2) -> str:
    return f"{100 * float(value):.{digits}f}%" if is_number(value) else MISSING


def compact(value: float) -> str:
    """A count in at most five characters: 950, 12.3k, 4.56M."""
    value = float(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            scaled = value / limit
            return f"{scaled:.3g}{suffix}" if scaled < 100 else f"{scaled:.0f}{suffix}"
    return f"{value:.0f}"


def log_tick(value: float, _: Any = None) -> str:
    """A log-axis tick as plain text: 0.01, 1, 100, 1e6 (cheaper to draw than typeset powers)."""
    if value == 0 or 1e-4 <= abs(value) < 1e5:
        return f"{value:g}"
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def percent_tick(value: float, _: Any = None) -> str:
    """A rate on a log axis as a percentage: 0.001%, 0.1%, 10%."""
    return f"{100 * value:g}%"


def name(text: str, length: int = AXIS_NAME_LENGTH) -> str:
    """A class or model name as figure text (see :func:`nadkit.pictures.palette.short`)."""
    return short(text, length)


def get(mapping: Any, *keys: str) -> Any:
    """``mapping[key1][key2]...`` or None where any level is missing."""
    for key in keys:
        if not isinstance(mapping, Mapping) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


def jsonable(value: Any) -> Any:
    """``value`` with numpy types made plain and non-finite numbers made null."""
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return [jsonable(item) for item in value.tolist()]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(float(value)) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches with a tight layout, drawn without a screen."""
    figure = Figure(figsize=(width, height), layout="tight")
    FigureCanvasAgg(figure)
    return figure


def png(figure: Figure) -> bytes:
    """``figure`` as PNG bytes at :data:`DPI`, on white."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return buffer.getvalue()


def style(axes: Axes) -> None:
    """The report's axes: a light grid behind the data, no top or right spine."""
    axes.grid(True, color="#e3e3e3", linewidth=0.8)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
