"""Labels: which rows are attacks, and the NAD 2021 classes, cost matrix and the spellings of their
names that nadkit reads. One place for what the thresholds, the metrics and the supervised model
each need to know about labels."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import polars as pl

from nadkit.errors import ConfigError
from nadkit.schema import NORMAL, NORMAL_LABELS

#: NAD 2021 classes as nadkit's NAD reader spells them, in the order of the challenge's cost matrix
NAD_CLASSES: tuple[str, ...] = (
    NORMAL,
    "DDOS-smurf",
    "Probing-IP sweep",
    "Probing-Nmap",
    "Probing-Port sweep",
)

#: the NAD 2021 challenge cost matrix: rows are the true class, columns the predicted class, both in
#: :data:`NAD_CLASSES` order (missing a smurf, or raising a false smurf alarm, costs 2)
NAD_COST: np.ndarray = np.array(
    [
        [0, 2, 1, 1, 1],
        [2, 0, 1, 1, 1],
        [1, 2, 0, 1, 1],
        [1, 2, 1, 0, 1],
        [1, 2, 1, 1, 0],
    ],
    dtype=np.int64,
)
NAD_COST.setflags(write=False)


def attack_mask(labels: Sequence[Any] | np.ndarray, normal: str = NORMAL) -> np.ndarray:
    """Which rows are attacks: booleans are taken as they are, numbers as ``!= 0``, class names as
    ``!= normal`` (a missing label counts as normal, as everywhere in nadkit)."""
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ConfigError("labels must be a 1-D array")
    if array.dtype == bool:
        return array.copy()
    if array.dtype.kind in "iuf":
        return array != 0
    if array.dtype.kind in "US":
        return array != normal
    return np.not_equal(array, normal) & np.not_equal(array, None)


def label_series(values: Any, name: str) -> pl.Series:
    """A label column as a polars Series; missing class names count as normal."""
    if isinstance(values, pl.Series):
        series = values.alias(name)
    else:
        array = np.asarray(values)
        if array.ndim != 1:
            raise ConfigError(f"{name} must be a 1-D array of labels")
        series = pl.Series(name, array)
    if series.dtype in (pl.String, pl.Categorical, pl.Enum):
        series = series.cast(pl.String).fill_null(NORMAL)
    elif series.null_count():
        raise ConfigError(f"{name} has missing labels")
    return series


def nad_key(value: Any) -> str:
    text = str(value).strip().lower()
    if text in NORMAL_LABELS:
        text = NORMAL
    return re.sub(r"[^0-9a-z]", "", text).removeprefix("probing")


def nad_index(classes: Sequence[str]) -> dict[str, int]:
    if len(classes) != len(NAD_CLASSES):
        raise ConfigError(f"the NAD score needs the {len(NAD_CLASSES)} classes of its cost matrix")
    index = {nad_key(name): i for i, name in enumerate(classes)}
    if len(index) != len(classes):
        raise ConfigError(f"NAD class names {list(classes)} are not distinct")
    return index


def nad_lookup(values: Sequence[Any], classes: Sequence[str]) -> dict[Any, int] | None:
    """Each value's position in ``classes``, or None when one is not a NAD class."""
    index = nad_index(classes)
    found = {value: index.get(nad_key(value)) for value in values}
    if any(position is None for position in found.values()):
        return None
    return {value: int(position) for value, position in found.items() if position is not None}


def check_nad_labels(values: Iterable[Any], classes: Sequence[str] = NAD_CLASSES) -> None:
    """Raise ConfigError naming the values that are not NAD 2021 classes in any spelling nadkit reads."""
    index = nad_index(classes)
    unknown = sorted({str(v) for v in values if nad_key(v) not in index})
    if unknown:
        raise ConfigError(f"labels {unknown} are not NAD 2021 classes ({', '.join(classes)})")


def nad_labels(values: Sequence[Any] | np.ndarray, classes: Sequence[str] = NAD_CLASSES) -> np.ndarray:
    """NAD class names in any common spelling (``Normal``, ``DDOS-smurf``, ``ddos_smurf``,
    ``IP sweep``...) turned into the names of ``classes``; an unknown one raises ConfigError."""
    series = label_series(values, "labels").cast(pl.String)
    met = series.unique().to_list()
    check_nad_labels(met, classes)
    lookup = nad_lookup(met, classes) or {}
    names = {value: classes[position] for value, position in lookup.items()}
    return series.replace_strict(names, return_dtype=pl.String).to_numpy()


def is_nad_label_set(labels: Iterable[str]) -> bool:
    """Whether every label is one of the NAD 2021 classes (in any spelling :func:`nad_labels` reads)."""
    values = np.asarray(sorted(set(map(str, labels))), dtype=object)
    if len(values) == 0:
        return False
    try:
        nad_labels(values)
    except ConfigError:
        return False
    return True
