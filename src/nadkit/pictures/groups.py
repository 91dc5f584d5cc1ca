"""The flow-groups picture as a PNG: one panel per colouring side by side, with group and time axes,
titles, the class legend with flow counts and the score colour bar.

Every flow is put on a grid: each *column* is a group of flows (for example one source and
destination port pair, or one source and destination subnet pair), *time runs down* the rows, and
each cell is coloured by the class most of its flows have (the true label, or the model's
prediction), or by the highest anomaly score among them. A port sweep shows as a block or band of
one colour; a model that predicts noise shows as noise.

:func:`draw_groups` gives the picture with its layout (:class:`GroupsPicture` says where each group
and time fall in the image); :func:`render_groups` gives the PNG bytes alone.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import math
import time as clock
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from matplotlib import dates as mdates
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from nadkit.errors import ConfigError
from nadkit.pictures.grouping import Placement, Slots, key_hash
from nadkit.pictures.options import DEFAULT_BY, DEFAULT_HEIGHT, DEFAULT_WIDTH, MAX_SIZE, check_size
from nadkit.pictures.palette import count_text, rgb, short, utc_text
from nadkit.pictures.scene import Scene, build_scene
from nadkit.pictures.shading import panel_images

log = logging.getLogger(__name__)

#: resolution of the PNG images (one figure unit is one pixel at this resolution)
DPI = 100
#: at most this many groups get their key written under their column
LABELLED_GROUPS = 40
_FRAME_COLOUR = "#8a939e"


@dataclass(frozen=True)
class GroupsPicture:
    """A drawn flow-groups picture: the PNG and where things are in it.

    ``panels`` are the picture areas as (left, top, width, height) in image pixels, one per
    colouring in ``colourings``; ``locate`` gives the pixel of a group and time in a panel.
    """

    png: bytes
    colourings: tuple[str, ...]
    panels: tuple[tuple[int, int, int, int], ...]
    groups: pl.DataFrame
    colours: dict[str, str]
    slot_seconds: float
    _placement: Placement = field(repr=False)
    _slots: Slots = field(repr=False)

    def column_of(self, key: Sequence[Any]) -> int:
        """The column (0-based, in picture order) of the group with key values ``key``."""
        by = self._placement.by
        if len(key) != len(by):
            raise ConfigError(f"a group key has {len(by)} value(s) ({', '.join(by)})")
        values = []
        for name, value in zip(by, key, strict=True):
            decoded = self._placement.names.get(name)
            if decoded is None:
                values.append(pl.Series(name, [value], dtype=self.groups.schema[name]))
            elif value in decoded:
                values.append(pl.Series(name, [decoded.index(value)], dtype=pl.UInt32))
            else:
                raise ConfigError(f"no group {tuple(key)} in the picture")
        wanted = key_hash(pl.DataFrame(values))[0]
        found = np.flatnonzero(self._placement.hashes == wanted)
        if len(found) == 0:
            raise ConfigError(f"no group {tuple(key)} in the picture")
        return int(found[0])

    def locate(self, key: Sequence[Any], when: float | dt.datetime, panel: int = 0) -> tuple[int, int]:
        """Image pixel (row, column) of group ``key`` at time ``when`` (epoch seconds, a datetime,
        or a row number without time) in panel ``panel``."""
        left, top, width, height = self.panels[panel]
        groups = self._placement.count
        columns = min(groups, width)
        grid_column = math.floor((self.column_of(key) + 0.5) * columns / groups)
        position = when.timestamp() if isinstance(when, dt.datetime) else float(when)
        grid_row = int(self._slots.row_of(np.array([position]))[0])
        # the first pixel of the cell, then the middle of the cell's pixels
        x_first = math.ceil(grid_column * width / columns)
        x_last = math.ceil((grid_column + 1) * width / columns) - 1
        y_first = math.ceil(grid_row * height / self._slots.rows)
        y_last = math.ceil((grid_row + 1) * height / self._slots.rows) - 1
        return top + (y_first + y_last) // 2, left + (x_first + x_last) // 2


@dataclass(frozen=True)
class _Layout:
    """Pixel layout of the figure."""

    left: int
    top: int
    gap: int
    right: int
    bottom: int
    width: int
    height: int
    panels: int

    @property
    def total_width(self) -> int:
        return self.left + self.panels * self.width + (self.panels - 1) * self.gap + self.right

    @property
    def total_height(self) -> int:
        return self.top + self.height + self.bottom

    def panel(self, index: int) -> tuple[int, int, int, int]:
        return self.left + index * (self.width + self.gap), self.top, self.width, self.height


def _draw(scene: Scene, width: int, height: int) -> GroupsPicture:
    started = clock.perf_counter()
    images, grown = panel_images(scene, width, height)
    placement, slots = scene.placement, scene.slots
    labelled = placement.count <= LABELLED_GROUPS
    key_texts = placement.key_texts() if labelled else []
    longest = max((len(t) for t in key_texts), default=0)
    bottom = 62 if not labelled else 40 + int(min(longest, 40) * 5.4)
    has_classes = any(layer.codes is not None for layer in scene.layers)
    right = (250 if has_classes else 0) + (150 if scene.scale is not None else 0)
    layout = _Layout(
        left=110, top=78, gap=36, right=right, bottom=bottom, width=width, height=height, panels=len(images)
    )
    figure = Figure(figsize=(layout.total_width / DPI, layout.total_height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    total_w, total_h = layout.total_width, layout.total_height
    if slots.by_time:
        t_top = mdates.date2num(np.datetime64(round(slots.start * 1e6), "us"))
        t_bottom = mdates.date2num(np.datetime64(round(slots.end * 1e6), "us"))
    else:
        t_top, t_bottom = slots.start, slots.end
    boxes = []
    for index, layer in enumerate(scene.layers):
        left, top, w, h = layout.panel(index)
        boxes.append((left, top, w, h))
        axes = figure.add_axes((left / total_w, (total_h - top - h) / total_h, w / total_w, h / total_h))
        axes.patch.set_visible(False)
        axes.set_xlim(0, placement.count)
        axes.set_ylim(t_bottom, t_top)
        for spine in axes.spines.values():
            spine.set_visible(False)  # a frame is drawn around the pasted picture instead
        _x_axis(axes, scene, key_texts)
        _y_axis(axes, slots, index == 0)
        axes.set_title(scene.panel_titles[layer.name], fontsize=11, loc="left", pad=6)
    figure.text(layout.left / total_w, 1 - 14 / total_h, scene.heading, fontsize=13, weight="bold", va="top")
    figure.text(
        layout.left / total_w, 1 - 38 / total_h, scene.subtitle, fontsize=9, color="#4a535e", va="top"
    )
    legend_left = layout.left + layout.panels * layout.width + (layout.panels - 1) * layout.gap + 22
    if has_classes:
        _class_legend(figure, scene, legend_left / total_w, 1 - layout.top / total_h, grown)
    if scene.scale is not None:
        bar_left = legend_left + (250 if has_classes else 0)
        _score_bar(figure, scene, layout, bar_left, layout.top + 50.0)
    png = _compose(figure, images, boxes)
    log.debug("flow-groups picture drawn in %.2f s", clock.perf_counter() - started)
    return GroupsPicture(
        png=png,
        colourings=tuple(layer.name for layer in scene.layers),
        panels=tuple(boxes),
        groups=placement.groups,
        colours={name: scene.classes.shown(name) for name in scene.classes.names} if scene.classes else {},
        slot_seconds=slots.size,
        _placement=placement,
        _slots=slots,
    )


def _compose(figure: Figure, images: list[np.ndarray], boxes: list[tuple[int, int, int, int]]) -> bytes:
    """The figure's axes, labels and legend with each panel's picture pasted in pixel for pixel, and
    a thin frame around each panel, as PNG bytes."""
    from PIL import Image

    figure.patch.set_facecolor("white")
    canvas = figure.canvas
    canvas.draw()
    pixels = np.asarray(canvas.buffer_rgba())[..., :3].copy()  # type: ignore[attr-defined]
    frame = np.array(rgb(_FRAME_COLOUR), dtype=np.uint8)
    for image, (left, top, width, height) in zip(images, boxes, strict=True):
        pixels[top : top + height, left : left + width] = image
        pixels[top - 1, left - 1 : left + width + 1] = frame
        pixels[top + height, left - 1 : left + width + 1] = frame
        pixels[top - 1 : top + height + 1, left - 1] = frame
        pixels[top - 1 : top + height + 1, left + width] = frame
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def _x_axis(axes: Axes, scene: Scene, key_texts: list[str]) -> None:
    if key_texts:
        axes.set_xticks(np.arange(scene.placement.count) + 0.5)
        axes.set_xticklabels([short(text, 40) for text in key_texts], rotation=90, fontsize=7.5)
        axes.tick_params(axis="x", length=2)
    else:
        axes.xaxis.set_major_locator(ticker.MaxNLocator(nbins=6, integer=True, min_n_ticks=3))
        axes.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: count_text(v)))
        axes.tick_params(axis="x", labelsize=8.5)
    axes.set_xlabel(scene.x_label, fontsize=9, labelpad=4)


def _y_axis(axes: Axes, slots: Slots, first: bool) -> None:
    axes.tick_params(axis="y", labelsize=8.5, labelleft=first)
    if not slots.by_time:
        axes.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: count_text(v)))
        if first:
            axes.set_ylabel("row of the input (no time column)", fontsize=9)
        return
    span = slots.end - slots.start
    locator = mdates.AutoDateLocator(minticks=4, maxticks=12, tz=dt.UTC)
    axes.yaxis.set_major_locator(locator)
    same_day = utc_text(slots.start)[:10] == utc_text(slots.end - 1e-6)[:10]
    if span < 600:
        pattern = "%H:%M:%S"
    elif same_day or span <= 86400:
        pattern = "%H:%M"
    else:
        pattern = "%m-%d %H:%M"
    axes.yaxis.set_major_formatter(mdates.DateFormatter(pattern, tz=dt.UTC))
    if first:
        label = f"time (UTC) on {utc_text(slots.start)[:10]}" if same_day else "time (UTC)"
        axes.set_ylabel(label, fontsize=9)


def _class_legend(figure: Figure, scene: Scene, x: float, y: float, spread: bool) -> float:
    """The classes with their colours and flow counts, from (``x``, ``y``) down; returns the
    figure height fraction where the legend ends."""
    assert scene.classes is not None
    classes = scene.classes
    shown = [layer.name for layer in scene.layers if layer.codes is not None]
    compact = len(classes.names) > 10
    handles = []
    for name in classes.names:
        numbers = [classes.counts.get(layer, {}).get(name, 0) for layer in shown]
        if len(shown) == 1:
            detail = f"{numbers[0]:,} flows" if not compact else count_text(numbers[0])
        else:
            detail = " / ".join(f"{count_text(n)}" for n in numbers)
        # one line per class when compact: shorter names leave room for several counts
        text = short(name, 24 if not compact or len(shown) == 1 else 15)
        label = f"{text} ({detail})" if compact else f"{text}\n{detail}"
        handles.append(Patch(facecolor=classes.shown(name), edgecolor="none", label=label))
    header = "class (flows)" if len(shown) == 1 else "class (flows: " + " / ".join(shown) + ")"
    legend = figure.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(x, y),
        frameon=False,
        fontsize=8 if compact else 8.5,
        title=header,
        title_fontsize=9,
        alignment="left",
        handlelength=1.4,
        handleheight=1.1 if compact else 1.4,
        labelspacing=0.45 if compact else 0.8,
        borderaxespad=0,
        borderpad=0,
    )
    legend.set_zorder(3)
    box = legend.get_window_extent(figure.canvas.get_renderer())  # type: ignore[attr-defined]
    bottom = box.y0 / figure.bbox.height
    note = "Each cell: the class most of\nits flows have (ties: the attack).\nBlank: no flows."
    if spread:
        note += "\nAttack cells are drawn one cell\nlarger, so single cells show."
    text = figure.text(x, bottom - 0.03, note, fontsize=7.5, color="#5a6470", va="top", linespacing=1.35)
    extent = text.get_window_extent(figure.canvas.get_renderer())  # type: ignore[attr-defined]
    return extent.y0 / figure.bbox.height


def _score_bar(figure: Figure, scene: Scene, layout: _Layout, left: int, top: float) -> None:
    """The score colour scale, from ``top`` (pixels from the figure's top) to the panels' bottom,
    with the threshold marked."""
    from matplotlib.colorbar import ColorbarBase

    scale = scene.scale
    assert scale is not None
    total_w, total_h = layout.total_width, layout.total_height
    bottom = total_h - layout.top - layout.height
    height = max(total_h - top - bottom, 80.0)
    axes = figure.add_axes((left / total_w, bottom / total_h, 16 / total_w, height / total_h))
    bar = ColorbarBase(axes, cmap=scale.colormap, norm=scale.norm, orientation="vertical")
    bar.outline.set_edgecolor(_FRAME_COLOUR)
    axes.tick_params(labelsize=8)
    low, high = (float(v) for v in scale.transform(np.array([scale.low, scale.high])))
    if scale.log:  # 1, 2 and 5 times powers of ten (only the powers when there are many)
        powers = range(math.floor(low), math.ceil(high) + 1)
        ticks = [math.log10(m) + k for k in powers for m in (1, 2, 5) if low <= math.log10(m) + k <= high]
        if len(ticks) > 7:
            ticks = [float(k) for k in powers if low <= k <= high]
    else:
        ticks = [float(t) for t in ticker.MaxNLocator(nbins=6).tick_values(low, high) if low <= t <= high]
    threshold = None
    if scale.threshold is not None:
        threshold = float(scale.transform(np.array([scale.threshold]))[0])
        norm = scale.norm
        ticks = [t for t in ticks if abs(float(norm(t)) - float(norm(threshold))) > 0.07] + [threshold]
        axes.axhline(threshold, color="black", linewidth=1.6)

    def label(value: float, _: Any) -> str:
        shown = 10**value if scale.log else value
        if threshold is not None and abs(value - threshold) < 1e-12 * max(1.0, abs(threshold)):
            return f"threshold {shown:.4g}"
        return f"{shown:.4g}"

    axes.yaxis.set_major_locator(ticker.FixedLocator(sorted(ticks)))
    axes.yaxis.set_major_formatter(ticker.FuncFormatter(label))
    axes.yaxis.set_minor_locator(ticker.NullLocator())
    for text in axes.get_yticklabels():
        if text.get_text().startswith("threshold"):
            text.set_fontweight("bold")
    axes.set_title(
        "highest score\nin the cell" + ("\n(log scale)" if scale.log else ""), fontsize=8.5, loc="left"
    )


def draw_groups(
    frame: pl.DataFrame,
    *,
    by: str | Sequence[str] = DEFAULT_BY,
    color: str | Sequence[str] = "label",
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
    time_bin: str | float | None = None,
    order: str = "hash",
    start: str | dt.datetime | None = None,
    end: str | dt.datetime | None = None,
    threshold: float | None = None,
    colours: Mapping[str, str] | None = None,
    spread: int | None = None,
    title: str | None = None,
    source: str | Path | None = None,
    model: str | None = None,
    panel_titles: Mapping[str, str] | None = None,
) -> GroupsPicture:
    """The flow-groups picture of ``frame`` (canonical flows; for ``prediction``/``score`` a scored
    table, with ``score`` and ``threshold``, and ``class`` or ``alert``), with its layout.

    ``by``: grouping keys (see :func:`~nadkit.pictures.options.parse_by`); ``color``: one or several
    of ``label``, ``prediction``, ``score`` (several: panels side by side). ``width`` x ``height``:
    pixels of each panel's picture area. ``time_bin``: length of a time slot (default: a round
    length that fits ``height`` rows). ``order``: ``hash`` (arbitrary but fixed), ``first`` or
    ``size``. ``start``/``end``: a time window. ``colours``: colours of class names (default: the
    report's). ``spread``: how many cells attack cells (and high scores) grow into their
    neighbours, so that single cells stay visible (default: 1 where cells are smaller than 3 pixels,
    else 0). ``source``: the name of the flows' file, shown in the subtitle and in errors;
    ``model``: the name of the model that scored them. ``panel_titles``: titles of the colourings'
    panels in place of the defaults (``label``: "true label", ...), e.g. when the labels are
    analysts' verdicts.
    """
    width, height = check_size("width", width), check_size("height", height)
    scene = build_scene(
        frame,
        by=by,
        color=color,
        rows=height,
        time_bin=time_bin,
        order=order,
        start=start,
        end=end,
        threshold=threshold,
        colours=colours,
        spread=spread,
        title=title,
        source=source,
        model=model,
        panel_titles=panel_titles,
    )
    height = max(height, min(scene.slots.rows, MAX_SIZE))
    return _draw(scene, width, height)


def render_groups(
    frame: pl.DataFrame,
    *,
    by: str | Sequence[str] = DEFAULT_BY,
    color: str | Sequence[str] = "label",
    **options: Any,
) -> bytes:
    """The flow-groups picture of ``frame`` as PNG bytes (options as :func:`draw_groups`)."""
    return draw_groups(frame, by=by, color=color, **options).png


__all__ = ["GroupsPicture", "draw_groups", "render_groups"]
