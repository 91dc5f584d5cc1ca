"""The interactive flow-groups page: one self-contained HTML file that zooms (mouse wheel) and pans
(drag) over an image pyramid of the flow-groups picture.

Each zoom level is a grid of PNG tiles aggregated at that level's resolution, so zooming in shows
real detail rather than enlarged pixels. The tiles, the legend and the axes' data travel as JSON
inside the page; the page itself (markup, style and script) is the package's
``templates/page.html``. It references nothing outside itself.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
import logging
import math
import time as clock
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from matplotlib import colors as mcolors

from nadkit.pictures.grouping import SLOT_LENGTHS, Slots
from nadkit.pictures.options import DEFAULT_BY, DEFAULT_HEIGHT, DEFAULT_WIDTH, check_size
from nadkit.pictures.scene import EMPTY_RGB, Layer, Scene, build_scene
from nadkit.pictures.shading import cells, finish, rgb_cells, spread_amount

log = logging.getLogger(__name__)

#: the interactive page knows the key of each group up to this many groups
HTML_KEYED_GROUPS = 50_000
#: deepest zoom level of the interactive page (level k has 4**k tiles)
HTML_MAX_LEVEL = 3


@cache
def page_template() -> str:
    """The page's HTML, with ``__TITLE__`` and ``__DATA__`` where the title and the JSON go."""
    return resources.files("nadkit.pictures").joinpath("templates", "page.html").read_text(encoding="utf-8")


def groups_html(
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
    levels: int = HTML_MAX_LEVEL,
) -> str:
    """A self-contained HTML page showing the flow-groups picture with zoom (mouse wheel) and pan
    (drag): each zoom level is a grid of image tiles aggregated at that level's resolution, so
    zooming in shows real detail. The page holds every tile; it references nothing outside itself.
    Several colourings give one view per colouring, zoomed and panned together. Options as
    :func:`nadkit.pictures.draw_groups`; ``levels``: the deepest zoom level (at most
    :data:`HTML_MAX_LEVEL`)."""
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
    )
    started = clock.perf_counter()
    document = _page(scene, width, height, max(0, min(int(levels), HTML_MAX_LEVEL)))
    log.debug("interactive flow-groups page built in %.2f s", clock.perf_counter() - started)
    return document


def _fine_slots(scene: Scene, height: int, levels: int) -> Slots:
    """The finest time slots of the page: the picture's slots cut further for the zoom levels,
    never finer than the time resolution of the data."""
    slots = scene.slots
    if not slots.by_time or scene.placement.flows < 2:
        return slots
    positions = scene.placement.position
    whole = bool(np.all(positions == np.floor(positions)))
    quantum = 1.0 if whole else 1e-6
    wanted = (slots.end - slots.start) / (height * 2**levels)
    size = max(quantum, wanted)
    if whole:
        size = next((s for s in SLOT_LENGTHS if s >= size), size)
    size = min(size, slots.size)
    count = math.ceil((slots.end - slots.start) / size)
    return Slots(slots.start, size, min(count, 2_000_000_000), by_time=True)


def _tile_png(scene: Scene, grid: np.ndarray) -> str:
    """One tile as a PNG data URI, one pixel per cell (the page scales it without smoothing); class
    cells as a palette image."""
    from PIL import Image

    buffer = io.BytesIO()
    if grid.dtype.kind == "i":
        assert scene.classes is not None
        indices = np.where(grid < 0, len(scene.classes.names), grid).astype(np.uint8)
        picture = Image.fromarray(indices, mode="L")
        palette = np.vstack([scene.classes.palette, EMPTY_RGB[None, :]])
        picture = picture.convert("P")
        picture.putpalette(palette.ravel().tolist())
    else:
        picture = Image.fromarray(rgb_cells(scene, grid), mode="RGB")
    picture.save(buffer, format="PNG", compress_level=3)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _page(scene: Scene, width: int, height: int, max_level: int) -> str:
    placement, slots = scene.placement, scene.slots
    fine = _fine_slots(scene, height, max_level)
    groups = placement.count
    extent = (slots.end - slots.start) / fine.size  # height of the whole picture in fine slots
    x_all = placement.column.astype(np.float64) + 0.5
    # level 0 is the picture itself: its own time slots, one tile
    columns = min(groups, width)
    y_coarse = slots.centre_of(placement.position)
    first_level: list[list[list[str | None]]] = []
    for layer in scene.layers:
        grid = cells(scene, layer, columns, (0.0, float(groups)), slots.rows, (0.0, float(slots.rows)),
                     x_all, y_coarse)  # fmt: skip
        spread = spread_amount(scene, width / columns, height / slots.rows)
        first_level.append([[_tile_png(scene, finish(scene, grid, spread))]])
    level_info: list[dict[str, Any]] = [{"groups": groups, "rows": extent, "tiles": first_level}]
    if groups <= width and fine.rows <= slots.rows:
        max_level = 0  # the picture already shows every group and every time slot
    row_all = fine.row_of(placement.position).astype(np.int64)
    order = np.argsort(row_all, kind="stable")
    sorted_rows = row_all[order]
    x_sorted = x_all[order]
    y_sorted = sorted_rows.astype(np.float64) + 0.5
    layer_data = [
        (
            layer,
            None if layer.codes is None else layer.codes[order],
            None if layer.values is None else layer.values[order],
        )
        for layer in scene.layers
    ]
    for level in range(1, max_level + 1):
        per_side = 2**level
        group_span = math.ceil(groups / per_side)
        row_span = math.ceil(fine.rows / per_side)
        columns = min(group_span, width)
        cell_rows = min(row_span, height)
        tiles: list[list[list[str | None]]] = [[] for _ in scene.layers]
        for tile_row in range(per_side):
            low_row, high_row = tile_row * row_span, (tile_row + 1) * row_span
            first, last = (int(i) for i in np.searchsorted(sorted_rows, [low_row, high_row]))
            band: list[list[str | None]] = [[None] * per_side for _ in scene.layers]
            x_band = x_sorted[first:last]
            for tile_column in range(per_side):
                low_group, high_group = tile_column * group_span, (tile_column + 1) * group_span
                if first == last or low_group >= groups:
                    continue
                inside = (x_band >= low_group) & (x_band < high_group)
                if not inside.any():
                    continue
                for index, (layer, codes, values) in enumerate(layer_data):
                    sub = Layer(
                        layer.name,
                        codes=None if codes is None else codes[first:last][inside],
                        values=None if values is None else values[first:last][inside],
                    )
                    grid = cells(
                        scene,
                        sub,
                        columns,
                        (float(low_group), float(high_group)),
                        cell_rows,
                        (float(low_row), float(high_row)),
                        x_band[inside],
                        y_sorted[first:last][inside],
                    )
                    spread = spread_amount(scene, width / columns, height / cell_rows)
                    band[index][tile_column] = _tile_png(scene, finish(scene, grid, spread))
            for index in range(len(scene.layers)):
                tiles[index].append(band[index])
        level_info.append({"groups": group_span, "rows": row_span, "tiles": tiles})
        if group_span <= width and row_span <= height:
            break
    payload = _payload(scene, fine, extent, width, height, level_info)
    return (
        page_template()
        .replace("__TITLE__", html.escape(payload["title"]))
        .replace("__DATA__", json.dumps(payload, separators=(",", ":")).replace("</", "<\\/"))
    )


def _payload(
    scene: Scene, fine: Slots, extent: float, width: int, height: int, levels: list[dict[str, Any]]
) -> dict[str, Any]:
    """What the page's script reads: titles, axes, legend, colour scale and the tiles of each level."""
    placement = scene.placement
    keys = placement.key_texts() if placement.count <= HTML_KEYED_GROUPS else None
    legend: list[dict[str, Any]] = []
    if scene.classes is not None:
        shown = [layer.name for layer in scene.layers if layer.codes is not None]
        for name in scene.classes.names:
            legend.append(
                {
                    "name": name,
                    "colour": scene.classes.shown(name),
                    "counts": {layer: scene.classes.counts.get(layer, {}).get(name, 0) for layer in shown},
                }
            )
    scale = None
    if scene.scale is not None:
        stops = np.linspace(0.0, 1.0, 64)
        norm = scene.scale.norm
        low, high = float(norm.vmin), float(norm.vmax)  # type: ignore[arg-type]
        values = norm.inverse(stops) if hasattr(norm, "inverse") else low + stops * (high - low)
        scale = {
            "colours": [mcolors.to_hex(c) for c in scene.scale.colormap(stops)],
            "values": [float(v) for v in np.asarray(values)],
            "log": scene.scale.log,
            "threshold": scene.scale.threshold,
        }
    return {
        "title": scene.heading,
        "subtitle": scene.subtitle,
        "panels": [scene.panel_titles[layer.name] for layer in scene.layers],
        "width": width,
        "height": height,
        "groups": placement.count,
        "xlabel": scene.x_label,
        "rows": extent,
        "time": fine.by_time,
        "start": fine.start,
        "slot": fine.size,
        "keys": keys,
        "legend": legend,
        "scale": scale,
        "levels": levels,
    }


__all__ = ["HTML_MAX_LEVEL", "groups_html", "page_template"]
