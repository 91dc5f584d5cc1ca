"""The cells of the flow-groups picture, aggregated with datashader and coloured: the class most
flows of a cell have (ties go to the attack) or the highest score in it, cells of rare classes and
high scores grown by a cell so they stay visible, and the grid stretched to whole pixels.

Millions of flows aggregate in well under a second; the drawing modules call :func:`cells`,
:func:`finish` and :func:`rgb_cells` (or :func:`panel_images` for a whole picture).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nadkit.pictures.scene import EMPTY_RGB, Layer, Scene
from nadkit.schema import NORMAL


def _aggregate(
    x: np.ndarray,
    y: np.ndarray,
    *,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    width: int,
    height: int,
    codes: np.ndarray | None = None,
    categories: int = 0,
    values: np.ndarray | None = None,
) -> np.ndarray:
    """Counts per cell and category (height, width, categories), or the highest value per cell
    (height, width; NaN where empty). Row 0 is the lowest ``y``."""
    import datashader as ds
    import pandas as pd

    data: dict[str, Any] = {"x": x, "y": y}
    canvas = ds.Canvas(plot_width=width, plot_height=height, x_range=x_range, y_range=y_range)
    if codes is not None:
        data["c"] = pd.Categorical.from_codes(codes, categories=list(range(categories)))
        reduction: Any = ds.by("c", ds.count())
    else:
        data["v"] = values
        reduction = ds.max("v")
    result = canvas.points(pd.DataFrame(data, copy=False), "x", "y", agg=reduction)
    return np.asarray(result.values)


def _majority(counts: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """The class most flows of each cell have (ties: earlier in ``priority``); -1 where empty."""
    planes = np.moveaxis(counts, -1, 0)
    best = planes[priority[0]].copy()
    winner = np.full(best.shape, priority[0], dtype=np.int64)
    for code in priority[1:]:
        plane = planes[code]
        better = plane > best
        winner[better] = code
        np.maximum(best, plane, out=best)
    winner[best == 0] = -1
    return winner


def _dilate(mask: np.ndarray, vertical: bool, horizontal: bool) -> np.ndarray:
    """``mask`` grown by one cell up and down (``vertical``) and left and right (``horizontal``)."""
    out = mask.copy()
    if vertical:
        out[1:] |= mask[:-1]
        out[:-1] |= mask[1:]
    if horizontal:
        tall = out.copy()
        out[:, 1:] |= tall[:, :-1]
        out[:, :-1] |= tall[:, 1:]
    return out


def _spread_codes(codes: np.ndarray, normal: int, vertical: bool, horizontal: bool) -> np.ndarray:
    """Grow every attack cell by one cell into its empty or normal neighbours, and normal cells into
    empty neighbours, so that a single cell of a rare class stays visible; attack cells keep their
    own class."""
    out = codes.copy()
    present = np.flatnonzero(np.bincount(codes.ravel() + 1, minlength=1)[1:])
    open_cells = (codes < 0) | (codes == normal)
    for code in present:
        if code == normal:
            continue
        grown = _dilate(codes == code, vertical, horizontal) & open_cells
        out[grown] = code
        open_cells &= ~grown
    if normal in present:
        grown = _dilate(codes == normal, vertical, horizontal) & (out < 0)
        out[grown] = normal
    return out


def _spread_values(
    values: np.ndarray, vertical: bool, horizontal: bool, threshold: float | None
) -> np.ndarray:
    """Scores at or above ``threshold`` grow into lower and empty neighbours, and the rest into empty
    neighbours (the highest neighbour wins), so that a single alerting cell stays visible."""
    from scipy import ndimage

    size = (3 if vertical else 1, 3 if horizontal else 1)
    filled = np.where(np.isnan(values), -np.inf, values)
    best = ndimage.maximum_filter(filled, size=size, mode="constant", cval=-np.inf)
    out = np.where(np.isnan(values) & ~np.isneginf(best), best, values)
    if threshold is not None:
        high = np.where(filled >= threshold, filled, -np.inf)
        grown = ndimage.maximum_filter(high, size=size, mode="constant", cval=-np.inf)
        out = np.where(grown > np.where(np.isnan(out), -np.inf, out), grown, out)
    return out


def _stretch(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """A grid resized to ``height`` x ``width`` pixels by repeating (or picking) whole cells."""
    rows = (np.arange(height) * grid.shape[0]) // height
    columns = (np.arange(width) * grid.shape[1]) // width
    return grid[rows][:, columns]


def cells(
    scene: Scene,
    layer: Layer,
    columns: int,
    x_range: tuple[float, float],
    rows: int,
    y_range: tuple[float, float],
    x: np.ndarray,
    y: np.ndarray,
) -> np.ndarray:
    """The grid of ``layer`` over the flows at ``x``, ``y`` (``columns`` x ``rows`` cells over the
    ranges): class codes (-1 where empty) or the highest score (NaN where empty)."""
    if layer.codes is not None:
        assert scene.classes is not None
        counts = _aggregate(
            x,
            y,
            x_range=x_range,
            y_range=y_range,
            width=columns,
            height=rows,
            codes=layer.codes,
            categories=len(scene.classes.names),
        )
        return _majority(counts, scene.classes.priority)
    return _aggregate(x, y, x_range=x_range, y_range=y_range, width=columns, height=rows, values=layer.values)


def spread_amount(scene: Scene, cell_width: float, cell_height: float) -> tuple[int, int]:
    """How many cells drawn cells grow up and down, and left and right: one along an axis whose
    cells are under 3 pixels, unless the picture was asked for a fixed amount."""
    if scene.spread is not None:
        return scene.spread, scene.spread
    return int(cell_height < 3.0), int(cell_width < 3.0)


def finish(scene: Scene, grid: np.ndarray, spread: tuple[int, int]) -> np.ndarray:
    """The cells after growing them by ``spread`` (attack cells into normal and empty ones, high
    scores into lower and empty ones)."""
    vertical, horizontal = spread
    for step in range(max(vertical, horizontal)):
        if grid.dtype.kind == "i":
            assert scene.classes is not None
            normal = scene.classes.names.index(NORMAL) if NORMAL in scene.classes.names else -2
            grid = _spread_codes(grid, normal, step < vertical, step < horizontal)
        else:
            threshold = scene.scale.threshold if scene.scale is not None else None
            grid = _spread_values(grid, step < vertical, step < horizontal, threshold)
    return grid


def rgb_cells(scene: Scene, grid: np.ndarray) -> np.ndarray:
    """The colour of each cell (white where empty)."""
    if grid.dtype.kind == "i":
        assert scene.classes is not None
        palette = np.vstack([scene.classes.palette, EMPTY_RGB[None, :]])
        return palette[np.where(grid < 0, len(scene.classes.names), grid)]
    assert scene.scale is not None
    return scene.scale.rgb(grid)


def panel_images(scene: Scene, width: int, height: int) -> tuple[list[np.ndarray], bool]:
    """Each layer as an RGB image of ``height`` x ``width`` pixels, earliest time at the top, and
    whether cells were grown to stay visible."""
    placement, slots = scene.placement, scene.slots
    columns = min(placement.count, width)
    x = placement.column.astype(np.float64) + 0.5
    y = slots.centre_of(placement.position)
    images = []
    grown = False
    for layer in scene.layers:
        grid = cells(scene, layer, columns, (0.0, float(placement.count)), slots.rows,
                     (0.0, float(slots.rows)), x, y)  # fmt: skip
        spread = spread_amount(scene, width / columns, height / slots.rows)
        grown = grown or max(spread) > 0
        images.append(_stretch(rgb_cells(scene, finish(scene, grid, spread)), height, width))
    return images, grown


__all__ = ["cells", "finish", "panel_images", "rgb_cells", "spread_amount"]
