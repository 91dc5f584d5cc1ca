"""What an evaluation report shows (:class:`ReportData`) and the form its figures use it in
(:class:`Prepared`): scores as floats, one class code per flow (normal first, then attacks from
most to least frequent), the alerts at the threshold, the class colours, and the groups of classes
the figures draw one colour each."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from nadkit.errors import ConfigError
from nadkit.pictures.palette import OTHER_COLOUR, class_colours, spans_decades
from nadkit.schema import NORMAL

log = logging.getLogger(__name__)

#: attack classes drawn one by one in the histogram and the timeline; the rest are merged
MAX_DRAWN_CLASSES = 8


@dataclass(frozen=True, eq=False)
class ReportData:
    """Everything a report shows about one evaluation.

    ``scores`` are one float per flow, higher meaning more anomalous; a flow alerts when its score is
    at least ``threshold``. ``labels`` are the true class names (``"normal"`` is normal traffic).
    ``time`` (datetime64, or integer epoch microseconds) places flows on the timeline; without it the
    timeline runs over row order. ``predicted`` holds a supervised model's predicted classes.
    ``history`` is the training history saved in the bundle, ``extra`` free-form key/values shown in
    the header. ``metrics`` has the keys ``binary``, ``per_class``, ``confusion``, ``nad_score`` and
    ``macro_f_beta``; any may be missing, and missing values are shown as "–". ``flows`` is the scored
    table itself, one row per flow in the order of ``scores`` (at least the grouping columns:
    ``spt``/``dpt``, ``src``/``dst``, or ``proto``/``app``, and ``time`` where known); with it the
    report adds the flow-groups picture of the true labels beside the model's predictions.
    ``warnings`` are sentences the report states first, above everything else (e.g. that the flows
    are the model's training data, so the figures are optimistic); ``training_overlap`` is how much
    of the evaluated data the model was trained on (as
    :meth:`nadkit.evaluation.overlap.TrainingOverlap.to_dict` gives it), kept in ``metrics.json``.
    """

    model: str
    bundle: str
    input: str
    scores: np.ndarray
    labels: np.ndarray
    threshold: float
    threshold_method: str
    metrics: dict
    time: np.ndarray | None = None
    predicted: np.ndarray | None = None
    history: dict | None = None
    extra: dict | None = None
    flows: pl.DataFrame | None = None
    warnings: tuple[str, ...] = ()
    training_overlap: dict | None = None


@dataclass(frozen=True)
class Group:
    """Flows drawn in one colour: one class, or several small attack classes merged."""

    name: str
    colour: str
    codes: tuple[int, ...]
    attack: bool


@dataclass(frozen=True)
class Prepared:
    """The report's data in the form the figures use."""

    data: ReportData
    scores: np.ndarray
    finite: np.ndarray
    is_attack: np.ndarray
    alerts: np.ndarray
    class_names: tuple[str, ...]
    codes: np.ndarray
    counts: np.ndarray
    colours: dict[str, str]
    groups: tuple[Group, ...]
    log_scores: bool
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.scores)

    @property
    def attacks(self) -> int:
        return int(self.is_attack.sum())

    def mask(self, group: Group) -> np.ndarray:
        """Rows of ``group``."""
        if len(group.codes) == 1:
            return self.codes == group.codes[0]
        return np.isin(self.codes, group.codes)


def prepare(data: ReportData) -> Prepared:
    """``data`` checked (one score, label, time and prediction per flow; a finite threshold) and
    prepared for the figures."""
    scores = np.asarray(data.scores, dtype=np.float64)
    labels = np.asarray(data.labels)
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise ConfigError(
            f"scores and labels must be 1-D arrays of the same length (got {scores.shape} and {labels.shape})"
        )
    if len(scores) == 0:
        raise ConfigError("there are no flows to report on")
    for name, values in (("time", data.time), ("predicted", data.predicted)):
        if values is not None and np.shape(values) != scores.shape:
            raise ConfigError(f"{name} must have one value per flow ({len(scores)}), got {np.shape(values)}")
    if data.flows is not None and data.flows.height != len(scores):
        raise ConfigError(f"flows must have one row per flow ({len(scores)}), got {data.flows.height}")
    if not math.isfinite(float(data.threshold)):
        raise ConfigError(f"the threshold must be a finite number, got {data.threshold}")
    finite = np.isfinite(scores)
    if not finite.all():
        log.warning("%d flow(s) have non-finite scores; the figures leave them out", int((~finite).sum()))
    names, codes = factorize(labels)
    counts = np.bincount(codes, minlength=len(names))
    order = sorted(range(len(names)), key=lambda k: (names[k] != NORMAL, -counts[k], names[k]))
    remap = np.empty(len(names), dtype=np.int32)
    remap[order] = np.arange(len(names), dtype=np.int32)
    names = [names[k] for k in order]
    codes = remap[codes]
    counts = counts[order]
    normal_code = names.index(NORMAL) if NORMAL in names else -1
    is_attack = codes != normal_code
    alerts = scores >= float(data.threshold)
    colours = class_colours(names, _other_classes(data))
    return Prepared(
        data=data,
        scores=scores,
        finite=finite,
        is_attack=is_attack,
        alerts=alerts,
        class_names=tuple(names),
        codes=codes,
        counts=counts,
        colours=colours,
        groups=_groups(names, colours),
        log_scores=spans_decades(scores[finite], float(data.threshold)),
    )


def factorize(labels: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Class names and one code per row. Flow labels hold few classes, so one comparison per class
    is much faster than sorting the strings."""
    codes = np.full(len(labels), -1, dtype=np.int32)
    names: list[str] = []
    while len(names) < 64:
        unassigned = np.flatnonzero(codes < 0)
        if len(unassigned) == 0:
            break
        value = labels[unassigned[0]]
        codes[(labels == value) & (codes < 0)] = len(names)
        codes[unassigned[0]] = len(names)  # a value unequal to itself (NaN) still gets a code
        names.append(str(value))
    rest = np.flatnonzero(codes < 0)
    if len(rest):
        extra, inverse = np.unique(labels[rest].astype(str), return_inverse=True)
        codes[rest] = len(names) + inverse.astype(np.int32)
        names.extend(str(v) for v in extra)
    # distinct values may print alike (e.g. 1 and "1"): merge them under one name
    unique_names = list(dict.fromkeys(names))
    if len(unique_names) != len(names):
        lookup = np.array([unique_names.index(name) for name in names], dtype=np.int32)
        codes = lookup[codes]
        names = unique_names
    return names, codes


def _other_classes(data: ReportData) -> list[str]:
    """Class names the figures show that may not occur among the true labels."""
    found: list[str] = []
    per_class = data.metrics.get("per_class") if isinstance(data.metrics, Mapping) else None
    if isinstance(per_class, Mapping):
        found.extend(str(name) for name in per_class)
    confusion = data.metrics.get("confusion") if isinstance(data.metrics, Mapping) else None
    if isinstance(confusion, Mapping) and isinstance(confusion.get("labels"), list | tuple):
        found.extend(str(name) for name in confusion["labels"])
    if data.predicted is not None:
        found.extend(factorize(np.asarray(data.predicted))[0])
    return found


def _groups(names: list[str], colours: dict[str, str]) -> tuple[Group, ...]:
    groups: list[Group] = []
    attacks = [k for k, name in enumerate(names) if name != NORMAL]
    if NORMAL in names:
        groups.append(Group(NORMAL, colours[NORMAL], (names.index(NORMAL),), attack=False))
    if len(attacks) > MAX_DRAWN_CLASSES:
        shown, merged = attacks[: MAX_DRAWN_CLASSES - 1], attacks[MAX_DRAWN_CLASSES - 1 :]
    else:
        shown, merged = attacks, []
    groups.extend(Group(names[k], colours[names[k]], (k,), attack=True) for k in shown)
    if merged:
        groups.append(Group(f"other attacks ({len(merged)} classes)", OTHER_COLOUR, tuple(merged), True))
    return tuple(groups)


__all__ = ["MAX_DRAWN_CLASSES", "Group", "Prepared", "ReportData", "factorize", "prepare"]
