"""Colours and text shared by every picture: the class palette (normal traffic blue-grey, attacks
from a fixed list in order of size), the colour of an unsupervised model's alerts, and the helpers
that format numbers and names for axes and legends.

Every figure of the report and every flow-groups picture colour a class the same way, so one class
keeps its colour from page to page.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib import colors as mcolors

from nadkit.schema import NORMAL

#: colour of normal traffic in every figure
NORMAL_COLOUR = "#5b7ea4"
#: colours of attack classes, most frequent class first (blue and grey are left to normal traffic)
ATTACK_COLOURS: tuple[str, ...] = (
    "#d62728",
    "#ff7f0e",
    "#2ca02c",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
    "#ff9896",
    "#ffbb78",
    "#98df8a",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#dbdb8d",
    "#9edae5",
)
#: colour of the attack classes merged into one group where a figure cannot show them all
OTHER_COLOUR = "#4d4d4d"
#: colour of the model's curves (ROC, PR) and of markers that belong to no class
MODEL_COLOUR = "#1f3b5c"
#: the predicted class of an unsupervised model's alerts, and its colour (where no class has it)
ALERT = "alert"
ALERT_COLOUR = "#c51b7d"
#: normal traffic in the flow-groups picture: the normal colour lightened, so that the attack
#: classes stand out from the mass of normal flows
NORMAL_TINT = "#adbed1"


def class_colours(names: Sequence[str], others: Sequence[str] = ()) -> dict[str, str]:
    """The colour of each class as every figure draws it: ``names`` are the true classes, normal
    first and then attacks from most to least frequent; ``others`` are further names (a model's
    predicted classes), coloured after them in alphabetical order."""
    colours: dict[str, str] = {}
    index = 0
    for name in [*names, *sorted(set(others) - set(names))]:
        if name in colours:
            continue
        if name == NORMAL:
            colours[name] = NORMAL_COLOUR
        else:
            colours[name] = ATTACK_COLOURS[index % len(ATTACK_COLOURS)]
            index += 1
    return colours


def assign_colours(names: Sequence[str], given: Mapping[str, str] | None) -> dict[str, str]:
    """A colour for each of ``names`` (in that order): the ``given`` colours where they name the
    class, :data:`ALERT_COLOUR` for :data:`ALERT`, and for the rest the next colours of the palette
    that are not in use yet (without ``given``: :func:`class_colours`)."""
    if not given:
        colours = class_colours([n for n in names if n != ALERT], [])
        if ALERT in names:
            colours[ALERT] = ALERT_COLOUR
        return {name: colours[name] for name in names}
    result = {name: given[name] for name in names if name in given}
    if ALERT in names and ALERT not in result and ALERT_COLOUR not in given.values():
        result[ALERT] = ALERT_COLOUR
    missing = [name for name in names if name not in result]
    used = {*result.values(), *given.values()}
    spare = [colour for colour in ATTACK_COLOURS if colour not in used]
    for index, name in enumerate(missing):
        if name == NORMAL:
            result[name] = NORMAL_COLOUR
        else:
            result[name] = spare.pop(0) if spare else ATTACK_COLOURS[index % len(ATTACK_COLOURS)]
    return {name: result[name] for name in names}


def rgb(colour: str) -> tuple[int, int, int]:
    """A matplotlib colour as red, green and blue from 0 to 255."""
    red, green, blue = mcolors.to_rgb(colour)
    return round(red * 255), round(green * 255), round(blue * 255)


# --------------------------------------------------------------------------------------------------
# axes and text


def spans_decades(scores: np.ndarray, threshold: float) -> bool:
    """Whether scores are best shown on a log scale: all positive, and the bulk spans more than two
    decades."""
    if len(scores) < 2 or threshold <= 0 or scores.min() <= 0:
        return False
    low, high = np.quantile(scores, [0.001, 0.999])
    return bool(high / low >= 100.0)


def short(text: str, length: int) -> str:
    """A name as figure text: at most ``length`` characters (longer names end in an ellipsis), and
    dollar signs taken literally rather than as the start of a formula."""
    text = text if len(text) <= length else text[: length - 1] + "…"
    return text.replace("$", r"\$")


def count_text(value: float) -> str:
    """A count in a few characters: 950, 12.3k, 4.56M."""
    value = float(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            scaled = value / limit
            return f"{scaled:.3g}{suffix}"
    return f"{value:.0f}"


def duration_text(seconds: float) -> str:
    """A length of time in its largest whole unit: ``5 min``, ``1 h``, ``250 ms``."""
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min"), (1, "s")):
        if seconds >= size and abs(seconds / size - round(seconds / size)) < 1e-9:
            return f"{round(seconds / size)} {unit}"
    if seconds >= 60:
        return f"{seconds / 60:.3g} min"
    if seconds >= 1:
        return f"{seconds:.3g} s"
    return f"{seconds * 1000:.3g} ms"


def utc_text(seconds: float) -> str:
    """Epoch seconds as ``YYYY-MM-DD HH:MM:SS`` in UTC."""
    return dt.datetime.fromtimestamp(float(seconds), tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


__all__ = [
    "ALERT",
    "ALERT_COLOUR",
    "ATTACK_COLOURS",
    "MODEL_COLOUR",
    "NORMAL_COLOUR",
    "NORMAL_TINT",
    "OTHER_COLOUR",
    "assign_colours",
    "class_colours",
    "count_text",
    "duration_text",
    "rgb",
    "short",
    "spans_decades",
    "utc_text",
]
