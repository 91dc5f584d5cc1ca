"""What a flow-groups picture shows, before it is drawn at any size: the flows placed on the grid,
the time slots, one layer per colouring (class codes or scores), the classes' colours, the score
colour scale, and the picture's titles.

:func:`build_scene` reads and checks the options, places the flows and prepares the layers; the
drawing modules (:mod:`nadkit.pictures.groups` for the PNG, :mod:`nadkit.pictures.page` for the
interactive page) take it from there.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib import colors as mcolors

from nadkit.errors import ConfigError
from nadkit.pictures.grouping import Classes, Placement, Slots, class_layers, place, time_slots
from nadkit.pictures.options import ORDER_TEXT, parse_by, parse_colourings, parse_duration, parse_time
from nadkit.pictures.palette import spans_decades, utc_text

#: white: a cell without flows
EMPTY_RGB = np.array([255, 255, 255], dtype=np.uint8)
#: colours of scores below the threshold (light to dark blue-grey) and at or above it (orange to red)
_LOW_SCORES = ("#eef2f6", "#c3cfdc", "#7b95b3")
_HIGH_SCORES = ("#fdb863", "#e6550d", "#7f0000")
_PLAIN_SCORES = "viridis_r"


@dataclass(frozen=True)
class ScoreScale:
    """Maps scores to colours: blue-greys below the threshold, oranges to red at or above it."""

    low: float
    high: float
    threshold: float | None
    log: bool

    def transform(self, values: np.ndarray) -> np.ndarray:
        if not self.log:
            return values
        with np.errstate(all="ignore"):
            return np.log10(np.maximum(values, 1e-300))

    @property
    def colormap(self) -> mcolors.Colormap:
        if self.threshold is None:
            from matplotlib import colormaps

            return colormaps[_PLAIN_SCORES]
        below = mcolors.LinearSegmentedColormap.from_list("below", _LOW_SCORES)(np.linspace(0, 1, 128))
        above = mcolors.LinearSegmentedColormap.from_list("above", _HIGH_SCORES)(np.linspace(0, 1, 128))
        return mcolors.ListedColormap(np.vstack([below, above]), name="nadkit_scores")

    @property
    def norm(self) -> mcolors.Normalize:
        low, high = self.transform(np.array([self.low, self.high]))
        if self.threshold is None:
            return mcolors.Normalize(vmin=float(low), vmax=float(high))
        centre = float(self.transform(np.array([self.threshold]))[0])
        return mcolors.TwoSlopeNorm(vcenter=centre, vmin=float(low), vmax=float(high))

    def rgb(self, values: np.ndarray) -> np.ndarray:
        """The colour of each score (white where NaN: no flows)."""
        empty = np.isnan(values)
        scaled = self.norm(self.transform(np.where(empty, self.low, values)))
        colours = (self.colormap(np.clip(np.ma.filled(scaled, 0.0), 0.0, 1.0))[..., :3] * 255).round()
        out = colours.astype(np.uint8)
        out[empty] = EMPTY_RGB
        return out


def score_scale(cells: np.ndarray, threshold: float | None) -> ScoreScale:
    """The colour scale of scores ``cells``: the bulk of them, and the threshold, on a log scale
    where they span decades."""
    finite = cells[np.isfinite(cells)]
    if len(finite) == 0:
        finite = np.array([0.0 if threshold is None else threshold])
    low, high = (float(v) for v in np.quantile(finite, [0.002, 0.998]))
    if threshold is not None and math.isfinite(threshold):
        log_scale = spans_decades(finite, threshold)
        pad = max(abs(threshold) * 0.05, 1e-6)
        low = min(low, threshold - pad) if not log_scale else min(low, threshold / 1.2)
        high = max(high, threshold + pad) if not log_scale else max(high, threshold * 1.2)
        return ScoreScale(low, high, float(threshold), log_scale)
    if high <= low:
        low, high = low - 0.5, high + 0.5
    return ScoreScale(low, high, None, spans_decades(finite, max(low, 1e-300)) and low > 0)


@dataclass(frozen=True)
class Layer:
    """One colouring, ready to aggregate: class codes (with their count) or scores."""

    name: str
    codes: np.ndarray | None = None
    values: np.ndarray | None = None


@dataclass(frozen=True)
class Scene:
    """Everything a flow-groups picture shows, before it is drawn at some size."""

    placement: Placement
    slots: Slots
    layers: tuple[Layer, ...]
    classes: Classes | None
    scale: ScoreScale | None
    spread: int | None
    title: str | None
    subtitle: str
    panel_titles: dict[str, str]

    @property
    def heading(self) -> str:
        """The picture's title: the one asked for, else what the grid shows."""
        if self.title:
            return self.title
        when = "over time" if self.placement.by_time else "in input order"
        return f"Flows grouped by {', '.join(self.placement.by)} {when}"

    @property
    def x_label(self) -> str:
        placement = self.placement
        noun = "group" if placement.count == 1 else "groups"
        return f"{placement.count:,} {noun} of ({', '.join(placement.by)}), {ORDER_TEXT[placement.order]}"


def build_scene(
    frame: pl.DataFrame,
    *,
    by: str | Sequence[str],
    color: str | Sequence[str],
    rows: int,
    time_bin: str | float | None,
    order: str,
    start: str | dt.datetime | None,
    end: str | dt.datetime | None,
    threshold: float | None,
    colours: Mapping[str, str] | None,
    spread: int | None,
    title: str | None,
    source: str | Path | None,
    model: str | None,
    panel_titles: Mapping[str, str] | None = None,
) -> Scene:
    """The scene of ``frame`` with the options of :func:`nadkit.pictures.draw_groups`; ``rows``: the
    number of time slots to aim for when ``time_bin`` is not given."""
    keys = parse_by(by)
    colourings = parse_colourings(color)
    start_s, end_s = parse_time(start, "--start"), parse_time(end, "--end")
    if start_s is not None and end_s is not None and end_s <= start_s:
        raise ConfigError("--end must be later than --start")
    if frame.height == 0:
        raise ConfigError(f"{source or 'the input'}: no flows to draw")
    placement = place(frame, keys, order, start=start_s, end=end_s, source=source)
    slots = time_slots(placement, rows, parse_duration(time_bin))
    class_names = [c for c in colourings if c != "score"]
    classes = None
    layers: list[Layer] = []
    series: dict[str, pl.Series] = {}
    if class_names:
        series, classes = class_layers(frame, tuple(class_names), placement.keep, colours, source)
    scale = None
    for name in colourings:
        if name == "score":
            if "score" not in frame.columns:
                raise ConfigError(
                    f"{source or 'the input'}: --color score needs scored flows: give --bundle DIR"
                )
            values = frame["score"].cast(pl.Float64).to_numpy()
            if placement.keep is not None:
                values = values[placement.keep]
            finite = values[np.isfinite(values)]
            values = np.nan_to_num(
                values,
                nan=np.nan,
                posinf=float(finite.max()) if len(finite) else 0.0,
                neginf=float(finite.min()) if len(finite) else 0.0,
            )
            if threshold is None and "threshold" in frame.columns and frame["threshold"].null_count() == 0:
                threshold = float(frame["threshold"][0])
            scale = score_scale(values, threshold)
            layers.append(Layer(name, values=values))
        else:
            assert classes is not None
            lookup = {n: k for k, n in enumerate(classes.names)}
            codes = series[name].replace_strict(lookup, return_dtype=pl.Int16).to_numpy()
            layers.append(Layer(name, codes=codes))
    titles = {
        "label": "true label",
        "prediction": f"prediction of {model}" if model else "model prediction",
        "score": "highest anomaly score in the cell",
        **(panel_titles or {}),
    }
    return Scene(
        placement=placement,
        slots=slots,
        layers=tuple(layers),
        classes=classes,
        scale=scale,
        spread=spread,
        title=title,
        subtitle=_subtitle(placement, slots, source),
        panel_titles=titles,
    )


def _subtitle(placement: Placement, slots: Slots, source: str | Path | None) -> str:
    parts = []
    if source:
        parts.append(Path(str(source)).name or str(source))
    parts.append(f"{placement.flows:,} flows")
    parts.append(f"{placement.count:,} groups")
    if slots.by_time:
        first, last = utc_text(placement.position.min()), utc_text(placement.position.max())
        same_day = first[:10] == last[:10]
        parts.append(f"{first[:16]} – {last[11:16] if same_day else last[:16]} UTC")
    parts.append(slots.describe())
    return " · ".join(parts)


__all__ = ["EMPTY_RGB", "Layer", "Scene", "ScoreScale", "build_scene", "score_scale"]
