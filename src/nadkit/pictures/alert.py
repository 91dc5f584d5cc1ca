"""An alert's explanation as a picture: the features that contributed most to its anomaly score,
each with the flow's raw value behind it, and the rest of the score as one grey bar."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nadkit.errors import ConfigError
from nadkit.pictures.palette import NORMAL_COLOUR, short

#: colour of the features that raised the score, and of the rest of the score
RAISING_COLOUR = "#d62728"
REST_COLOUR = "#b0b7bf"


def plot_alert(alert_record: Mapping[str, Any]) -> bytes:
    """A bar chart (PNG bytes) of the features that contributed most to one alert's score, each with
    the flow's raw value behind it, and the rest of the score as one grey bar. ``alert_record`` is
    one alert as ``nadkit detect`` writes it (``top_features``, ``score``, ``threshold`` and the
    flow's fields)."""
    features = alert_record.get("top_features")
    if not isinstance(features, list | tuple) or not features:
        raise ConfigError("the record has no feature contributions (top_features); it is not an alert")
    names, values, contributions = [], [], []
    for entry in features:
        if not isinstance(entry, Mapping) or "feature" not in entry or "contribution" not in entry:
            raise ConfigError("top_features entries need 'feature' and 'contribution'")
        try:
            contribution = float(entry["contribution"])
        except (TypeError, ValueError):
            raise ConfigError(f"feature {entry['feature']!r}: contribution is not a number") from None
        names.append(str(entry["feature"]))
        values.append(entry.get("value"))
        contributions.append(contribution)
    score = _number(alert_record.get("score"))
    threshold = _number(alert_record.get("threshold"))
    rest = score - sum(contributions) if score is not None else None
    labels = [
        short(f"{name} = {value}" if value not in (None, "") else name, 48)
        for name, value in zip(names, values, strict=True)
    ]
    bars = list(contributions)
    colours = [RAISING_COLOUR if c >= 0 else NORMAL_COLOUR for c in contributions]
    if rest is not None and abs(rest) > 1e-12 * max(1.0, abs(score or 0.0)):
        labels.append("all other features")
        bars.append(rest)
        colours.append(REST_COLOUR)
    rows = len(bars)
    width, height = 9.5, 1.75 + 0.42 * rows  # inches
    figure = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(figure)
    label_inches = 0.25 + 0.068 * max(len(label) for label in labels)  # 9-point labels
    figure.subplots_adjust(
        left=min(label_inches, 0.5 * width) / width,
        right=1 - 0.3 / width,
        top=1 - 0.78 / height,
        bottom=0.55 / height,
    )
    axes = figure.subplots()
    positions = np.arange(rows)[::-1]
    axes.barh(positions, bars, color=colours, height=0.62)
    axes.set_yticks(positions, labels, fontsize=9)
    axes.axvline(0, color="#4a535e", linewidth=0.9)
    axes.grid(True, axis="x", color="#e3e3e3", linewidth=0.8)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    span = max(abs(min([*bars, 0.0])), abs(max([*bars, 0.0])), 1e-12)
    for y, value in zip(positions, bars, strict=True):
        axes.annotate(
            f"{value:.4g}",
            xy=(value, y),
            xytext=(4 if value >= 0 else -4, 0),
            textcoords="offset points",
            ha="left" if value >= 0 else "right",
            va="center",
            fontsize=8.5,
        )
    low, high = min([*bars, 0.0]), max([*bars, 0.0])
    axes.set_xlim(low - 0.18 * span if low < 0 else 0, high + 0.22 * span)
    axes.set_xlabel("contribution to the anomaly score")
    headline = "Alert"
    if alert_record.get("row") is not None:
        headline += f" on row {alert_record['row']}"
    if score is not None:
        headline += f": score {score:.4g}"
        if threshold is not None:
            headline += f" (threshold {threshold:.4g})"
    figure.text(0.15 / width, 1 - 0.14 / height, headline, fontsize=12, weight="bold", va="top")
    figure.text(
        0.15 / width, 1 - 0.44 / height, _flow_text(alert_record), fontsize=9, color="#4a535e", va="top"
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", facecolor="white", metadata={"Software": None})
    return buffer.getvalue()


def _flow_text(record: Mapping[str, Any]) -> str:
    """One line naming the flow: time, source and destination, protocol, predicted and true class."""
    parts = []
    if record.get("time"):
        parts.append(str(record["time"]).replace("T", " ").removesuffix("Z"))
    src, dst = record.get("src"), record.get("dst")
    if src is not None or dst is not None:
        left = f"{src or '?'}" + (f":{record['spt']}" if record.get("spt") is not None else "")
        right = f"{dst or '?'}" + (f":{record['dpt']}" if record.get("dpt") is not None else "")
        parts.append(f"{left} → {right}")
    if record.get("proto"):
        parts.append(str(record["proto"]) + (f"/{record['app']}" if record.get("app") else ""))
    if record.get("class"):
        parts.append(f"predicted {record['class']}")
    if record.get("label") is not None:
        parts.append(f"true label {record['label']}")
    return "   ·   ".join(parts) if parts else " "


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


__all__ = ["plot_alert"]
