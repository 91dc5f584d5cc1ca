"""The evaluation report: one self-contained HTML page that says what was evaluated, how well the
scores separate attacks from normal traffic, and where the alerts fall.

``write_report`` fills a directory with ``report.html`` (inline CSS, every figure embedded as a PNG,
no external references, no JavaScript), each figure as its own PNG file and ``metrics.json``. The
directory is built beside its destination and renamed into place, so a reader never sees half a
report.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import logging
import math
import time as clock
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from matplotlib import dates as mdates
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from nadkit import __version__
from nadkit.errors import ConfigError
from nadkit.fileio import atomic_directory
from nadkit.schema import NORMAL

log = logging.getLogger(__name__)

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
#: attack classes drawn one by one in the histogram and the timeline; the rest are merged
MAX_DRAWN_CLASSES = 8
#: timeline points kept per group: normal flows without an alert, normal flows with one, each attack
TIMELINE_NORMAL_POINTS = 40_000
TIMELINE_FALSE_ALERT_POINTS = 20_000
TIMELINE_ATTACK_POINTS = 60_000
#: points drawn of the precision-recall curve (the curve has one per distinct score)
CURVE_POINTS = 20_000
#: resolution of the PNG files
DPI = 120
#: longest class name shown on an axis; longer names are shortened with an ellipsis
AXIS_NAME_LENGTH = 26

FIGURES: tuple[str, ...] = (
    "roc",
    "pr",
    "score_histogram",
    "score_timeline",
    "confusion",
    "per_class",
    "training",
)
#: the extra figure of a report whose data carries the scored flows (``ReportData.flows``)
FLOW_GROUPS = "flow_groups"
#: size in pixels of each of its two panels (true labels, predictions)
FLOW_GROUPS_PANEL = (440, 460)


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
    of the evaluated data the model was trained on (see :class:`nadkit.overlap.TrainingOverlap`),
    kept in ``metrics.json``.
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
class _Group:
    """Flows drawn in one colour: one class, or several small attack classes merged."""

    name: str
    colour: str
    codes: tuple[int, ...]
    attack: bool


@dataclass(frozen=True)
class _Prepared:
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
    groups: tuple[_Group, ...]
    log_scores: bool
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return len(self.scores)

    @property
    def attacks(self) -> int:
        return int(self.is_attack.sum())

    def mask(self, group: _Group) -> np.ndarray:
        """Rows of ``group``."""
        if len(group.codes) == 1:
            return self.codes == group.codes[0]
        return np.isin(self.codes, group.codes)


@dataclass(frozen=True)
class _Section:
    """One figure of the report: drawn (PNG bytes) or skipped (with the reason)."""

    key: str
    title: str
    caption: str
    png: bytes | None = None
    skipped: str | None = None


# --------------------------------------------------------------------------------------------------
# entry point


def write_report(directory: str | Path, data: ReportData, *, overwrite: bool = False) -> Path:
    """Write the evaluation report of ``data`` into ``directory`` and return its ``report.html``.

    The directory receives ``report.html``, one PNG per drawn figure (``roc.png``, ``pr.png``,
    ``score_histogram.png``, ``score_timeline.png``, ``confusion.png``, ``per_class.png``,
    ``training.png``, and ``flow_groups.png`` when ``data.flows`` is given) and ``metrics.json``. An
    existing non-empty directory is replaced only with ``overwrite``; otherwise a
    :class:`~nadkit.errors.ConfigError` names it.
    """
    directory = Path(directory)
    if directory.exists() or directory.is_symlink():
        if not directory.is_dir():
            raise ConfigError(f"{directory}: exists and is not a directory; choose another report folder")
        if any(directory.iterdir()) and not overwrite:
            raise ConfigError(f"{directory}: already exists and is not empty (use --force to replace it)")
    started = clock.perf_counter()
    prepared = _prepare(data)
    created = datetime.now(UTC)
    sections = _sections(prepared)
    document = _html(prepared, sections, created)
    summary = _metrics_document(prepared, created)
    with atomic_directory(directory, overwrite=True) as temporary:
        for section in sections:
            if section.png is not None:
                (temporary / f"{section.key}.png").write_bytes(section.png)
        (temporary / "metrics.json").write_text(
            json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8"
        )
        (temporary / "report.html").write_text(document, encoding="utf-8")
    drawn = sum(section.png is not None for section in sections)
    log.info(
        "wrote the report of %s rows to %s (%d figure(s)) in %.1f s",
        f"{prepared.rows:,}",
        directory,
        drawn,
        clock.perf_counter() - started,
    )
    return directory / "report.html"


# --------------------------------------------------------------------------------------------------
# data preparation


def _prepare(data: ReportData) -> _Prepared:
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
    names, codes = _factorize(labels)
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
    colours = _class_colours(names, _other_classes(data))
    groups = _groups(names, colours)
    return _Prepared(
        data=data,
        scores=scores,
        finite=finite,
        is_attack=is_attack,
        alerts=alerts,
        class_names=tuple(names),
        codes=codes,
        counts=counts,
        colours=colours,
        groups=groups,
        log_scores=_spans_decades(scores[finite], float(data.threshold)),
    )


def _factorize(labels: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Class names and one code per row. Flow labels hold few classes, so one comparison per class
    is much faster than sorting the strings."""
    codes = np.full(len(labels), -1, dtype=np.int32)
    names: list[str] = []
    values: list[Any] = []
    while len(names) < 64:
        unassigned = np.flatnonzero(codes < 0)
        if len(unassigned) == 0:
            break
        value = labels[unassigned[0]]
        codes[(labels == value) & (codes < 0)] = len(names)
        codes[unassigned[0]] = len(names)  # a value unequal to itself (NaN) still gets a code
        names.append(str(value))
        values.append(value)
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
        found.extend(_factorize(np.asarray(data.predicted))[0])
    return found


def _class_colours(names: list[str], others: list[str]) -> dict[str, str]:
    """One colour per class name: normal blue-grey, attacks from the palette in order of size."""
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


def class_colours(names: Sequence[str], others: Sequence[str] = ()) -> dict[str, str]:
    """The colour of each class as every report figure draws it: ``names`` are the true classes,
    normal first and then attacks from most to least frequent; ``others`` are further names (a
    model's predicted classes), coloured after them in alphabetical order."""
    return _class_colours(list(names), list(others))


def _groups(names: list[str], colours: dict[str, str]) -> tuple[_Group, ...]:
    groups: list[_Group] = []
    attacks = [k for k, name in enumerate(names) if name != NORMAL]
    if NORMAL in names:
        groups.append(_Group(NORMAL, colours[NORMAL], (names.index(NORMAL),), attack=False))
    if len(attacks) > MAX_DRAWN_CLASSES:
        shown, merged = attacks[: MAX_DRAWN_CLASSES - 1], attacks[MAX_DRAWN_CLASSES - 1 :]
    else:
        shown, merged = attacks, []
    groups.extend(_Group(names[k], colours[names[k]], (k,), attack=True) for k in shown)
    if merged:
        groups.append(_Group(f"other attacks ({len(merged)} classes)", OTHER_COLOUR, tuple(merged), True))
    return tuple(groups)


def _spans_decades(scores: np.ndarray, threshold: float) -> bool:
    """Whether scores are best shown on a log scale: all positive, and the bulk spans more than two
    decades."""
    if len(scores) < 2 or threshold <= 0 or scores.min() <= 0:
        return False
    low, high = np.quantile(scores, [0.001, 0.999])
    return bool(high / low >= 100.0)


# --------------------------------------------------------------------------------------------------
# formatting


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float | np.integer | np.floating)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _fixed(value: Any, digits: int = 4) -> str:
    """A metric value with ``digits`` decimals, or "–" when it is missing or not a number."""
    return f"{float(value):.{digits}f}" if _is_number(value) else "–"


def _general(value: Any, digits: int = 6) -> str:
    return f"{float(value):.{digits}g}" if _is_number(value) else "–"


def _count(value: Any) -> str:
    return f"{int(value):,}" if _is_number(value) else "–"


def _percent(value: Any, digits: int = 2) -> str:
    return f"{100 * float(value):.{digits}f}%" if _is_number(value) else "–"


def _compact(count: float) -> str:
    """A count in at most five characters: 950, 12.3k, 4.56M."""
    count = float(count)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(count) >= limit:
            value = count / limit
            return f"{value:.3g}{suffix}" if value < 100 else f"{value:.0f}{suffix}"
    return f"{count:.0f}"


def _log_tick(value: float, _: Any = None) -> str:
    """A log-axis tick as plain text: 0.01, 1, 100, 1e6 (cheaper to draw than typeset powers)."""
    if value == 0 or 1e-4 <= abs(value) < 1e5:
        return f"{value:g}"
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _percent_tick(value: float, _: Any = None) -> str:
    """A rate on a log axis as a percentage: 0.001%, 0.1%, 10%."""
    return f"{100 * value:g}%"


def _short(name: str, length: int = AXIS_NAME_LENGTH) -> str:
    """A name as figure text: at most ``length`` characters, and dollar signs taken literally
    rather than as the start of a formula."""
    name = name if len(name) <= length else name[: length - 1] + "…"
    return name.replace("$", r"\$")


def _get(mapping: Any, *keys: str) -> Any:
    """``mapping[key1][key2]...`` or None where any level is missing."""
    for key in keys:
        if not isinstance(mapping, Mapping) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


def _jsonable(value: Any) -> Any:
    """``value`` with numpy types made plain and non-finite numbers made null."""
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(item) for item in value.tolist()]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(float(value)) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


# --------------------------------------------------------------------------------------------------
# figures


def _new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="tight")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, facecolor="white", metadata={"Software": None})
    return buffer.getvalue()


def _style(axes: Axes) -> None:
    axes.grid(True, color="#e3e3e3", linewidth=0.8)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)


def _sections(p: _Prepared) -> list[_Section]:
    builders: list[tuple[str, str, Callable[[_Prepared], tuple[Figure | bytes, str] | str]]] = [
        ("roc", "ROC curve", _roc_figure),
        ("pr", "Precision–recall curve", _pr_figure),
        ("score_histogram", "Score distribution per class", _histogram_figure),
        ("score_timeline", "Scores and alerts over time", _timeline_figure),
    ]
    if p.data.flows is not None:
        title = "Flow groups over time: true labels and predictions"
        builders.append((FLOW_GROUPS, title, _flow_groups_figure))
    builders += [
        ("confusion", "Confusion matrix", _confusion_figure),
        ("per_class", "Detection rate per class", _per_class_figure),
        ("training", "Training curves", _training_figure),
    ]
    sections = []
    for key, title, build in builders:
        started = clock.perf_counter()
        result = build(p)
        if isinstance(result, str):
            sections.append(_Section(key, title, "", skipped=result))
            log.debug("figure %s skipped: %s", key, result)
            continue
        figure, caption = result
        png = figure if isinstance(figure, bytes) else _png(figure)
        sections.append(_Section(key, title, caption, png=png))
        log.debug("figure %s drawn in %.2f s", key, clock.perf_counter() - started)
    return sections


def _both_kinds(p: _Prepared) -> str | None:
    """Why a normal-against-attack figure cannot be drawn, or None when it can."""
    finite_attacks = p.is_attack & p.finite
    attacks, normals = int(finite_attacks.sum()), int((~p.is_attack & p.finite).sum())
    if attacks and normals:
        return None
    present = "attack" if attacks else "normal"
    return f"Not drawn: it needs both normal and attack flows, and this input has only {present} flows."


def _operating_point(p: _Prepared) -> tuple[float, float, float | None]:
    """False-positive rate, recall and precision at the threshold (precision None without alerts)."""
    normal, attack = ~p.is_attack & p.finite, p.is_attack & p.finite
    fpr = float(p.alerts[normal].mean())
    recall = float(p.alerts[attack].mean())
    alerted = int((p.alerts & p.finite).sum())
    precision = float((p.alerts & attack).sum() / alerted) if alerted else None
    return fpr, recall, precision


@dataclass(frozen=True)
class _Curves:
    """ROC and precision-recall curves (thinned for drawing) with their areas."""

    fpr: np.ndarray
    tpr: np.ndarray
    recall: np.ndarray
    precision: np.ndarray
    roc_auc: float
    average_precision: float


def _thin(count: int) -> np.ndarray:
    """Indices of at most about ``2 * CURVE_POINTS`` points of a curve of ``count`` points, spaced
    evenly and geometrically so that the steep start of a curve keeps its detail."""
    if count <= 2 * CURVE_POINTS:
        return np.arange(count)
    even = np.linspace(0, count - 1, CURVE_POINTS)
    geometric = np.geomspace(1, count, CURVE_POINTS) - 1
    return np.unique(np.concatenate([even, geometric]).round().astype(np.int64))


def _curves(p: _Prepared) -> _Curves:
    """Both curves from one ranking of the scores: precision and recall follow from the ROC's
    true- and false-positive counts at every distinct score."""
    if "curves" in p.cache:
        return p.cache["curves"]
    truth, scores = p.is_attack[p.finite], p.scores[p.finite]
    positives, negatives = int(truth.sum()), int((~truth).sum())
    fpr, tpr, _ = roc_curve(truth, scores, drop_intermediate=False)
    true_positives, false_positives = tpr[1:] * positives, fpr[1:] * negatives
    precision = true_positives / np.maximum(true_positives + false_positives, 1e-300)
    recall = tpr[1:]
    average = float(np.sum(np.diff(tpr) * precision))
    roc_keep, pr_keep = _thin(len(fpr)), _thin(len(recall))
    curves = _Curves(
        fpr=fpr[roc_keep],
        tpr=tpr[roc_keep],
        recall=np.concatenate([[0.0], recall[pr_keep]]),
        precision=np.concatenate([[1.0], precision[pr_keep]]),
        roc_auc=float(np.trapezoid(tpr, fpr)),
        average_precision=average,
    )
    p.cache["curves"] = curves
    return curves


def _roc_figure(p: _Prepared) -> tuple[Figure, str] | str:
    reason = _both_kinds(p)
    if reason:
        return reason
    curves = _curves(p)
    fpr, tpr, area = curves.fpr, curves.tpr, curves.roc_auc
    point_fpr, point_tpr, _ = _operating_point(p)
    normals = int((~p.is_attack & p.finite).sum())
    floor = 10.0 ** math.floor(math.log10(1.0 / normals)) if normals > 1 else 1e-3
    figure = _new_figure(10.5, 4.6)
    linear, logarithmic = figure.subplots(1, 2)
    for axes, log_x in ((linear, False), (logarithmic, True)):
        _style(axes)
        axes.plot(
            fpr, tpr, color=MODEL_COLOUR, linewidth=2, label=f"{_short(p.data.model)} (AUC = {area:.4f})"
        )
        chance = np.geomspace(floor, 1, 200) if log_x else np.array([0.0, 1.0])
        axes.plot(chance, chance, color="#9a9a9a", linestyle="--", linewidth=1, label="chance")
        shown_fpr = max(point_fpr, floor) if log_x else point_fpr
        axes.plot(
            shown_fpr,
            point_tpr,
            marker="o",
            markersize=9,
            markerfacecolor="#ffd23f",
            markeredgecolor="black",
            linestyle="none",
            label=f"threshold {p.data.threshold:.4g}: recall {point_tpr:.3f}, FPR {point_fpr:.4f}",
            zorder=5,
        )
        axes.set_ylim(-0.01, 1.01)
        axes.set_ylabel("true-positive rate (recall)")
        if log_x:
            axes.set_xscale("log")
            axes.set_xlim(floor, 1.0)
            axes.xaxis.set_major_formatter(ticker.FuncFormatter(_percent_tick))
            axes.xaxis.set_minor_formatter(ticker.NullFormatter())
            axes.set_xlabel("false-positive rate (log scale)")
            axes.set_title("Low false-positive rates", fontsize=11)
        else:
            axes.set_xlim(-0.01, 1.01)
            axes.set_xlabel("false-positive rate")
            axes.set_title("Whole curve", fontsize=11)
        axes.legend(loc="lower right", fontsize=8.5, framealpha=0.9)
    caption = (
        "Share of attacks caught (up) against share of normal flows falsely alerted (right) over all "
        "thresholds; the closer the curve hugs the top-left corner the better, the dashed diagonal is "
        "chance, the yellow dot is the chosen threshold. The right panel stretches the rare-false-alarm "
        "region, which is what matters in operation."
    )
    return figure, caption


def _pr_figure(p: _Prepared) -> tuple[Figure, str] | str:
    reason = _both_kinds(p)
    if reason:
        return reason
    curves = _curves(p)
    precision, recall, average = curves.precision, curves.recall, curves.average_precision
    share = float(p.is_attack[p.finite].mean())
    _, point_recall, point_precision = _operating_point(p)
    figure = _new_figure(6.8, 4.8)
    axes = figure.subplots()
    _style(axes)
    axes.plot(
        recall,
        precision,
        color=MODEL_COLOUR,
        linewidth=2,
        drawstyle="steps-pre",
        label=f"{_short(p.data.model)} (AP = {average:.4f})",
    )
    axes.axhline(
        share, color="#9a9a9a", linestyle="--", linewidth=1, label=f"chance: attack share {share:.4f}"
    )
    if point_precision is not None:
        axes.plot(
            point_recall,
            point_precision,
            marker="o",
            markersize=9,
            markerfacecolor="#ffd23f",
            markeredgecolor="black",
            linestyle="none",
            label=(
                f"threshold {p.data.threshold:.4g}: "
                f"recall {point_recall:.3f}, precision {point_precision:.3f}"
            ),
            zorder=5,
        )
    axes.set_xlim(-0.01, 1.01)
    axes.set_ylim(-0.01, 1.03)
    axes.set_xlabel("recall (share of attacks alerted)")
    axes.set_ylabel("precision (share of alerts that are attacks)")
    axes.legend(loc="lower left", fontsize=8.5, framealpha=0.9)
    caption = (
        "Precision against recall over all thresholds; higher is better, and the dashed line is what "
        "random alerting achieves (the share of attacks in the input). The yellow dot is the chosen "
        "threshold. Unlike ROC, this curve shows how many of the alerts an analyst would triage are real."
    )
    return figure, caption


def _score_range(p: _Prepared) -> tuple[float, float]:
    """The score range the histogram spans: the threshold and every score on a log scale; on a linear
    scale each group's bulk (0.05% to 99.95%), so that a few extreme scores do not squash the rest."""
    threshold = float(p.data.threshold)
    lows, highs = [threshold], [threshold]
    for group in p.groups:
        values = p.scores[p.mask(group) & p.finite]
        if len(values) == 0:
            continue
        if len(values) > 2000 and not p.log_scores:
            low, high = np.quantile(values, [0.0005, 0.9995])
        else:
            low, high = values.min(), values.max()
        lows.append(float(low))
        highs.append(float(high))
    low, high = min(lows), max(highs)
    if high <= low:
        if p.log_scores:
            return low / 2, high * 2
        pad = max(abs(low) * 0.1, 0.5)
        return low - pad, high + pad
    return low, high


def _histogram_figure(p: _Prepared) -> tuple[Figure, str] | str:
    if not p.finite.any():
        return "Not drawn: no flow has a finite score."
    low, high = _score_range(p)
    bins = np.geomspace(low, high, 81) if p.log_scores else np.linspace(low, high, 81)
    figure = _new_figure(9.5, 4.8)
    axes = figure.subplots()
    _style(axes)
    axes.axvspan(
        float(p.data.threshold), high, color="#d62728", alpha=0.06, linewidth=0, label="alert region"
    )
    peak = 1
    for group in p.groups:
        values = p.scores[p.mask(group) & p.finite]
        if len(values) == 0:
            continue
        counts, _ = np.histogram(np.clip(values, low, high), bins)
        peak = max(peak, int(counts.max()))
        axes.stairs(counts, bins, fill=True, color=group.colour, alpha=0.15, linewidth=0)
        axes.stairs(
            counts, bins, color=group.colour, linewidth=1.6, label=f"{_short(group.name)} ({len(values):,})"
        )
    axes.axvline(float(p.data.threshold), color="black", linestyle="--", linewidth=1.4)
    axes.annotate(
        f"threshold {p.data.threshold:.4g}",
        xy=(float(p.data.threshold), 1.0),
        xycoords=("data", "axes fraction"),
        xytext=(4, -4),
        textcoords="offset points",
        ha="left",
        va="top",
        fontsize=9,
    )
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: _compact(value)))
    axes.yaxis.set_minor_formatter(ticker.NullFormatter())
    axes.set_ylim(0.7, peak * 2.5)
    if p.log_scores:
        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(ticker.FuncFormatter(_log_tick))
        axes.xaxis.set_minor_formatter(ticker.NullFormatter())
    axes.set_xlim(low, high)
    axes.set_xlabel("anomaly score" + (" (log scale)" if p.log_scores else ""))
    axes.set_ylabel("flows per bin (log scale)")
    axes.legend(fontsize=8.5, framealpha=0.9, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    caption = (
        "How many flows of each class receive each score (counts on a log scale so that rare classes stay "
        "visible). Flows right of the dashed threshold raise alerts: normal traffic there is false alarms, "
        "attack classes left of it are missed."
    )
    finite = p.scores[p.finite]
    if finite.min() < low or finite.max() > high:
        caption += " The few scores beyond the plotted range are counted in its edge bins."
    return figure, caption


def _time_axis(p: _Prepared) -> tuple[np.ndarray | None, np.ndarray]:
    """Timeline positions in epoch microseconds (None: row order) and the rows that have one."""
    time = p.data.time
    usable = p.finite.copy()
    if time is None:
        return None, usable
    values = np.asarray(time)
    if values.dtype == object:
        with contextlib.suppress(TypeError, ValueError):
            values = values.astype("datetime64[us]")
    if np.issubdtype(values.dtype, np.datetime64):
        present = ~np.isnat(values)
        micros = values.astype("datetime64[us]").astype(np.int64)
    elif np.issubdtype(values.dtype, np.integer):
        present = np.ones(len(values), dtype=bool)
        micros = values.astype(np.int64)
    else:
        log.warning("flow times of type %s cannot be placed on a timeline; using row order", values.dtype)
        return None, usable
    if not present.any():
        return None, usable
    return micros, usable & present


def _timeline_sample(p: _Prepared, usable: np.ndarray) -> np.ndarray:
    """Row indices to draw: every false alarm and every attack flow up to their caps, and a random
    sample of the quiet normal traffic."""
    rng = np.random.default_rng(0)
    attack_groups = [g for g in p.groups if g.attack]
    per_attack = max(2_000, TIMELINE_ATTACK_POINTS // max(len(attack_groups), 1))
    picks = []

    def take(rows: np.ndarray, cap: int) -> np.ndarray:
        return rows if len(rows) <= cap else rng.choice(rows, cap, replace=False)

    for group in p.groups:
        rows = np.flatnonzero(p.mask(group) & usable)
        if group.attack:
            picks.append(take(rows, per_attack))
        else:
            alerted = p.alerts[rows]
            picks.append(take(rows[alerted], TIMELINE_FALSE_ALERT_POINTS))
            picks.append(take(rows[~alerted], TIMELINE_NORMAL_POINTS))
    return np.sort(np.concatenate(picks)) if picks else np.empty(0, dtype=np.int64)


def _timeline_figure(p: _Prepared) -> tuple[Figure, str] | str:
    micros, usable = _time_axis(p)
    if not usable.any():
        return "Not drawn: no flow has both a finite score and a time."
    sample = _timeline_sample(p, usable)
    by_time = micros is not None

    def position(values: np.ndarray) -> np.ndarray:
        if not by_time:
            return values.astype(np.float64)
        return mdates.date2num(values.astype("datetime64[us]"))

    x_all = micros if by_time else np.arange(p.rows, dtype=np.int64)
    assert x_all is not None
    figure = _new_figure(11, 5.8)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1.1))
    _style(top)
    _style(bottom)
    threshold = float(p.data.threshold)
    dot = 3.2 if len(sample) < 5_000 else 2.4 if len(sample) < 30_000 else 1.8  # fewer dots, bigger
    for group in p.groups:
        rows = sample[p.mask(group)[sample]]
        if len(rows) == 0:
            continue
        top.plot(
            position(x_all[rows]),
            p.scores[rows],
            linestyle="none",
            marker="o",
            markersize=dot + (0.4 if group.attack else 0.0),
            markeredgewidth=0,
            alpha=(0.75 if len(rows) < 10_000 else 0.5) if group.attack else 0.45,
            color=group.colour,
            label=_short(group.name),
            zorder=3 if group.attack else 2,
            rasterized=True,
        )
    top.axhline(
        threshold, color="black", linestyle="--", linewidth=1.3, label=f"threshold {threshold:.4g}", zorder=4
    )
    if p.log_scores:
        top.set_yscale("log")
        top.yaxis.set_major_formatter(ticker.FuncFormatter(_log_tick))
        top.yaxis.set_minor_formatter(ticker.NullFormatter())
    top.set_ylabel("anomaly score" + (" (log)" if p.log_scores else ""))
    legend = top.legend(
        fontsize=8.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, markerscale=4
    )
    for handle in legend.legend_handles:
        if handle is not None:
            handle.set_alpha(1.0)
    # alerts per time bin, stacked by true class
    alerted = p.alerts & usable
    edges = np.linspace(float(x_all[usable].min()), float(x_all[usable].max()) + 1.0, 121)
    drawn_edges = position(edges.astype(np.int64)) if by_time else edges
    stacked = np.zeros(len(edges) - 1)
    for group in p.groups:
        rows = alerted & p.mask(group)
        if not rows.any():
            continue
        counts, _ = np.histogram(x_all[rows], edges)
        bottom.stairs(
            stacked + counts,
            drawn_edges,
            baseline=stacked.copy(),
            fill=True,
            color=group.colour,
            label=_short(group.name if group.attack else "normal (false alarms)"),
        )
        stacked += counts
    total_alerts = int(alerted.sum())
    if total_alerts:
        bottom.legend(fontsize=8.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        bottom.set_ylim(0, stacked.max() * 1.08)
    if total_alerts == 0:
        bottom.text(
            0.5, 0.5, "no alerts at this threshold", ha="center", va="center", transform=bottom.transAxes
        )
        bottom.set_yticks([])
    else:
        bottom.yaxis.set_major_locator(ticker.MaxNLocator(3, integer=True))
        bottom.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: _compact(value)))
    bottom.set_ylabel("alerts")
    if by_time:
        locator = mdates.AutoDateLocator(minticks=4, maxticks=9)
        bottom.xaxis.set_major_locator(locator)
        bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        bottom.set_xlabel("time")
    else:
        bottom.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: _compact(value)))
        bottom.set_xlabel("row (input order)")
    drawn = len(sample)
    shown = (
        f"All {drawn:,} flows are drawn."
        if drawn == int(usable.sum())
        else f"{drawn:,} of {int(usable.sum()):,} flows are drawn: all attacks and false alarms up to a cap, "
        "and a random sample of the quiet normal traffic; the alert counts below cover every flow."
    )
    axis = "time" if by_time else "row order (the input has no time column)"
    caption = (
        f"Each dot is a flow, placed by {axis} and its score and coloured by its true class; dots above "
        "the dashed threshold raise alerts. The lower panel counts the alerts per time slice, coloured by "
        f"true class, so bursts of false alarms stand out. {shown}"
    )
    return figure, caption


def _confusion_data(p: _Prepared) -> tuple[list[str], list[str], np.ndarray, str] | str:
    """Row names (true classes), column names, the matrix and what the columns mean."""
    confusion = _get(p.data.metrics, "confusion")
    if (
        isinstance(confusion, Mapping)
        and confusion.get("labels") is not None
        and confusion.get("matrix") is not None
    ):
        names = [str(name) for name in confusion["labels"]]
        try:
            matrix = np.asarray(confusion["matrix"], dtype=np.float64)
        except (TypeError, ValueError):
            return "Not drawn: the confusion matrix in the metrics is not a table of numbers."
        if matrix.shape != (len(names), len(names)) or len(names) == 0:
            return (
                f"Not drawn: the confusion matrix in the metrics has shape {matrix.shape}, "
                f"which does not match its {len(names)} class names."
            )
        if p.data.predicted is None and len(names) == 2 and names[0] == NORMAL:
            # the normal / attack matrix of the alerts: its columns say whether a flow alerted
            return names, ["no alert", "alert"], np.nan_to_num(matrix), "outcome at the threshold"
        return names, names, np.nan_to_num(matrix), "predicted class"
    if p.data.predicted is not None:
        predicted_names, predicted = _factorize(np.asarray(p.data.predicted))
        names = list(dict.fromkeys([*p.class_names, *predicted_names]))
        true_index = np.array([names.index(name) for name in p.class_names], dtype=np.int64)[p.codes]
        predicted_index = np.array([names.index(name) for name in predicted_names], dtype=np.int64)[predicted]
        flat = np.bincount(true_index * len(names) + predicted_index, minlength=len(names) ** 2)
        matrix = flat.reshape(len(names), len(names)).astype(np.float64)
        return names, names, matrix, "predicted class"
    truth = p.is_attack.astype(np.int64)
    flat = np.bincount(truth * 2 + p.alerts.astype(np.int64), minlength=4)
    matrix = flat.reshape(2, 2).astype(np.float64)
    return [NORMAL, "attack"], ["no alert", "alert"], matrix, "outcome at the threshold"


def score_figures(
    scores: np.ndarray,
    labels: np.ndarray,
    threshold: float,
    *,
    time: np.ndarray | None = None,
    model: str = "model",
) -> dict[str, bytes]:
    """The report's per-class score histogram and score timeline (threshold and alerts marked) as
    PNG bytes, keyed ``score_histogram`` and ``score_timeline``, for pages that show them on their
    own; a figure that cannot be drawn (no finite score) is left out."""
    data = ReportData(
        model=model,
        bundle="",
        input="",
        scores=np.asarray(scores),
        labels=np.asarray(labels),
        threshold=float(threshold),
        threshold_method="",
        metrics={},
        time=time,
    )
    prepared = _prepare(data)
    figures = {}
    for key, build in (("score_histogram", _histogram_figure), ("score_timeline", _timeline_figure)):
        result = build(prepared)
        if not isinstance(result, str):
            figures[key] = _png(result[0])
    return figures


def _flow_groups_figure(p: _Prepared) -> tuple[bytes, str] | str:
    """The flows grouped by port pair (or address pair, or protocol and application) over time, once
    coloured by true label and once by the model's prediction, with the report's class colours."""
    from nadkit import viz

    flows = p.data.flows
    assert flows is not None

    def usable(column: str) -> bool:
        return column in flows.columns and flows[column].null_count() < flows.height

    choices = (
        (("spt", "dpt"), ("src_port", "dst_port"), "source and destination port pair"),
        (("src", "dst"), ("src", "dst"), "source and destination address pair"),
        (("proto", "app"), ("proto", "app"), "protocol and application"),
        (("proto",), ("proto",), "protocol"),
    )
    chosen = next((choice for choice in choices if all(usable(column) for column in choice[0])), None)
    if chosen is None:
        return "Not drawn: the flows have no ports, addresses, protocol or application to group them by."
    keys, names, what = chosen
    if p.data.predicted is not None:
        prediction = pl.Series("class", np.asarray(p.data.predicted).astype(str), dtype=pl.String)
    else:
        prediction = pl.Series("class", np.where(p.alerts, viz.ALERT, NORMAL), dtype=pl.String)
    columns = [*keys, "time"] if usable("time") else list(keys)
    frame = flows.select(columns).with_columns(
        pl.Series("label", np.asarray(p.data.labels).astype(str), dtype=pl.String), prediction
    )
    if "time" in frame.columns and not isinstance(frame.schema["time"], pl.Datetime):
        frame = frame.drop("time")
    width, height = FLOW_GROUPS_PANEL
    picture = viz.draw_groups(
        frame,
        by=names,
        color=("label", "prediction"),
        width=width,
        height=height,
        order="hash",
        colours=p.colours,
        model=_short(p.data.model),
        title=f"Flows grouped by {what}" + (" over time" if "time" in frame.columns else ""),
        source=Path(p.data.input).name if p.data.input else None,
    )
    caption = (
        f"Each column holds the flows of one {what} (columns in an arbitrary, fixed order) and time "
        "runs down; each cell "
        "takes the class most of its flows have. Left the true labels, right the model's predictions"
        + (" (alerts, for a model without classes)" if p.data.predicted is None else "")
        + ". Attacks that come in bursts (sweeps, floods) show as bands or blocks of one colour; a good "
        "model repeats the left picture on the right, a poor one paints noise or misses the bands."
    )
    return picture.png, caption


def _confusion_figure(p: _Prepared) -> tuple[Figure, str] | str:
    result = _confusion_data(p)
    if isinstance(result, str):
        return result
    names, column_names, matrix, columns = result
    n = len(names)
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    side = max(5.2, 0.62 * n + 3.0)
    figure = _new_figure(side + 1.8, side)
    axes = figure.subplots()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, aspect="equal")
    # small matrices carry counts and shares; large ones only counts, in a compact form
    font = 10 if n <= 4 else 8.5 if n <= 7 else 7.5 if n <= 11 else 7
    for i in range(n):
        for j in range(n):
            count = matrix[i, j]
            if n <= 7:
                text = f"{int(count):,}" if count < 100_000 and n <= 4 else _compact(count)
                if totals[i, 0] > 0:
                    text += f"\n{shares[i, j]:.1%}"
            else:
                if count == 0:
                    continue
                text = _compact(count)
            axes.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=font,
                color="white" if shares[i, j] > 0.55 else "#1a1a1a",
            )
    axes.set_xticks(
        range(n),
        labels=[_short(name, 22) for name in column_names],
        rotation=35 if n > 2 else 0,
        ha="right" if n > 2 else "center",
        rotation_mode="anchor",
        fontsize=9 if n <= 10 else 7.5,
    )
    axes.set_yticks(range(n), labels=[_short(name, 22) for name in names], fontsize=9 if n <= 10 else 7.5)
    axes.set_xlabel(columns)
    axes.set_ylabel("true class")
    axes.tick_params(length=0)
    for spine in axes.spines.values():
        spine.set_visible(False)
    colourbar = figure.colorbar(image, ax=axes, shrink=0.8, format=ticker.PercentFormatter(1.0))
    colourbar.set_label("share of the true class's flows")
    caption = (
        "Rows are the true classes, columns what the model said; each cell gives the flow count "
        + (
            "and its share of the row"
            if n <= 7
            else "(empty cells are zero), its colour the share of the row"
        )
        + ". A good model puts the dark cells on the diagonal; dark cells off it are the "
        "mistakes: normal flows alerted or classed as an attack are false alarms, attacks left "
        "unalerted or classed as normal are missed."
    )
    return figure, caption


def _per_class_rows(p: _Prepared) -> list[tuple[str, float | None, float | None, float | None]]:
    """(class, rows, alerted, rate) per class, from the metrics where given, else from the scores."""
    per_class = _get(p.data.metrics, "per_class")
    entries: list[tuple[str, float | None, float | None, float | None]] = []
    if isinstance(per_class, Mapping) and per_class:
        for name, values in per_class.items():
            rows, alerted, rate = (_get(values, key) for key in ("rows", "alerted", "rate"))
            numbers = [float(v) if _is_number(v) else None for v in (rows, alerted, rate)]
            if numbers[2] is None and numbers[0] and numbers[1] is not None:
                numbers[2] = numbers[1] / numbers[0]
            entries.append((str(name), numbers[0], numbers[1], numbers[2]))
        return entries
    for k, name in enumerate(p.class_names):
        rows = int(p.counts[k])
        alerted = int((p.alerts & (p.codes == k)).sum())
        entries.append((name, float(rows), float(alerted), alerted / rows if rows else None))
    return entries


def _per_class_figure(p: _Prepared) -> tuple[Figure, str] | str:
    entries = _per_class_rows(p)
    if not entries:
        return "Not drawn: there are no per-class results."
    normal = [e for e in entries if e[0] == NORMAL]
    attacks = sorted((e for e in entries if e[0] != NORMAL), key=lambda e: (-(e[3] or 0.0), e[0]))
    ordered = normal + attacks
    n = len(ordered)
    figure = _new_figure(9.0, max(2.4, 0.42 * n + 1.4))
    axes = figure.subplots()
    _style(axes)
    axes.grid(False, axis="y")
    positions = np.arange(n)[::-1]
    for y, (name, rows, alerted, rate) in zip(positions, ordered, strict=True):
        colour = p.colours.get(name, OTHER_COLOUR)
        value = rate if rate is not None else 0.0
        if name == NORMAL:
            axes.barh(y, value, height=0.66, color="white", edgecolor=colour, hatch="///", linewidth=1.2)
        else:
            axes.barh(y, value, height=0.66, color=colour)
        counts = f"  ({_count(alerted)} / {_count(rows)})" if rows is not None else ""
        axes.text(value + 0.01, y, f"{_percent(rate, 1)}{counts}", va="center", ha="left", fontsize=8.5)
    labels = [f"{_short(name)}  (false alarms)" if name == NORMAL else _short(name) for name, *_ in ordered]
    axes.set_yticks(positions, labels=labels, fontsize=9)
    for tick, (name, *_) in zip(axes.get_yticklabels(), ordered, strict=True):
        if name == NORMAL:
            tick.set_fontstyle("italic")
    axes.axvline(1.0, color="#bdbdbd", linewidth=0.8)
    axes.set_xlim(0, 1.3)
    axes.set_ylim(-0.6, n - 0.4)
    axes.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    axes.xaxis.set_major_formatter(ticker.PercentFormatter(1.0))
    axes.set_xlabel("share of the class's flows alerted at the threshold")
    caption = (
        "For each attack class, the share of its flows that raised an alert (its detection rate, higher "
        "is better); the hatched bar is normal traffic, whose share is the false-positive rate (lower is "
        "better). Counts give alerted / total flows."
    )
    return figure, caption


def _numbers(values: Any) -> np.ndarray:
    if not isinstance(values, list | tuple | np.ndarray):
        return np.empty(0)
    out = np.array([float(v) if _is_number(v) else np.nan for v in values], dtype=np.float64)
    return out


def _mark_best(axes: Axes, values: np.ndarray, best_epoch: int | None) -> None:
    """Ring the value of the best epoch on a per-epoch curve."""
    if best_epoch is not None and best_epoch <= len(values) and np.isfinite(values[best_epoch - 1]):
        axes.plot(
            best_epoch,
            values[best_epoch - 1],
            marker="o",
            markersize=9,
            markerfacecolor="none",
            markeredgecolor="#d62728",
            markeredgewidth=1.6,
            zorder=5,
        )


def _training_figure(p: _Prepared) -> tuple[Figure, str] | str:
    history = p.data.history
    train = _numbers(_get(history, "train_loss"))
    validation = _numbers(_get(history, "validation_loss"))
    selection = _numbers(_get(history, "selection"))
    if not (np.isfinite(train).any() or np.isfinite(validation).any()):
        return "Not drawn: the bundle holds no training history (the model was not trained by epochs)."
    best = _get(history, "best_epoch")
    best_epoch = int(best) if _is_number(best) and best > 0 else None
    has_selection = bool(np.isfinite(selection).any())
    figure = _new_figure(11 if has_selection else 7.5, 4.2)
    panels = figure.subplots(1, 2 if has_selection else 1)
    loss_axes: Axes = panels[0] if has_selection else panels
    _style(loss_axes)
    for values, name, colour in (
        (train, "training loss", MODEL_COLOUR),
        (validation, "validation loss", "#ff7f0e"),
    ):
        if np.isfinite(values).any():
            epochs = np.arange(1, len(values) + 1)
            loss_axes.plot(
                epochs,
                values,
                color=colour,
                linewidth=1.8,
                marker="o" if len(values) <= 40 else None,
                markersize=3.5,
                label=name,
            )
            _mark_best(loss_axes, values, best_epoch)
    losses = np.concatenate([train, validation])
    losses = losses[np.isfinite(losses)]
    if len(losses) and losses.min() > 0 and losses.max() / losses.min() > 20:
        loss_axes.set_yscale("log")
    loss_axes.set_xlabel("epoch")
    loss_axes.set_ylabel("loss" + (" (log scale)" if loss_axes.get_yscale() == "log" else ""))
    loss_axes.set_title("Loss per epoch", fontsize=11)
    panels_used = [loss_axes]
    if has_selection:
        selection_axes: Axes = panels[1]
        _style(selection_axes)
        epochs = np.arange(1, len(selection) + 1)
        selection_axes.plot(
            epochs,
            selection,
            color="#2ca02c",
            linewidth=1.8,
            marker="o" if len(selection) <= 40 else None,
            markersize=3.5,
            label="selection score",
        )
        _mark_best(selection_axes, selection, best_epoch)
        selection_axes.set_xlabel("epoch")
        selection_axes.set_ylabel("model-selection score")
        selection_axes.set_title("Early-stopping selection score", fontsize=11)
        panels_used.append(selection_axes)
    for axes in panels_used:
        axes.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
        if best_epoch is not None:
            axes.axvline(
                best_epoch, color="#d62728", linestyle="--", linewidth=1.2, label=f"best epoch ({best_epoch})"
            )
        axes.legend(fontsize=8.5, framealpha=0.9)
    stopped = _get(history, "stopped")
    if np.isfinite(validation).any():
        caption = (
            "Loss on the training data and on the validation hold-out after each epoch; the red dashed "
            "line is the best epoch, whose weights the model keeps. Both curves falling and levelling off "
            "is healthy; validation loss rising while training loss falls means over-fitting."
        )
    else:
        caption = (
            "Loss on the training data after each epoch; the red dashed line is the best epoch, whose "
            "weights the model keeps. A curve that falls and levels off shows training converged."
        )
    if has_selection:
        caption += " The right panel is the score early stopping watched to choose the best epoch."
    if stopped:
        caption += f" Training stopped by {stopped}."
    return figure, caption


# --------------------------------------------------------------------------------------------------
# documents


def _metrics_document(p: _Prepared, created: datetime) -> dict[str, Any]:
    data = p.data
    return _jsonable(
        {
            "nadkit_version": __version__,
            "created": created.isoformat(timespec="seconds"),
            "warnings": list(data.warnings),
            "training_overlap": data.training_overlap,
            "model": data.model,
            "bundle": data.bundle,
            "input": data.input,
            "rows": p.rows,
            "attacks": p.attacks,
            "alerts": int(p.alerts.sum()),
            "threshold": float(data.threshold),
            "threshold_method": data.threshold_method,
            "metrics": data.metrics if isinstance(data.metrics, Mapping) else {},
            "training": data.history,
            "extra": data.extra,
        }
    )


_CSS = """
:root { color-scheme: light; }
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1d232b;
  background: #f4f6f8; margin: 0; line-height: 1.45; }
main { max-width: 1080px; margin: 0 auto; padding: 28px 32px 48px; background: #ffffff;
  box-shadow: 0 0 14px rgba(0, 0, 0, 0.06); }
h1 { font-size: 1.65em; margin: 0 0 4px; }
h1 .model { color: #1f3b5c; }
h2 { font-size: 1.2em; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 2px solid #e6e9ee; }
p.lead { font-size: 1.04em; background: #f0f5fb; border-left: 4px solid #5b7ea4; padding: 10px 14px;
  margin: 16px 0 6px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 0.94em; }
th, td { text-align: left; padding: 5px 12px; border-bottom: 1px solid #e6e9ee; vertical-align: top; }
th { background: #f7f8fa; font-weight: 600; }
table.header th { width: 200px; background: none; color: #5a6470; font-weight: 500; }
table.header td { word-break: break-all; }
td.value, th.value { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.note { color: #5a6470; font-size: 0.93em; }
tr.normal td:first-child { font-style: italic; }
span.swatch { display: inline-block; width: 0.8em; height: 0.8em; border-radius: 2px; margin-right: 6px;
  vertical-align: -1px; }
nav { font-size: 0.92em; color: #5a6470; margin: 10px 0 0; }
nav a { color: #1f5f9f; text-decoration: none; margin-right: 12px; }
figure { margin: 8px 0 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #e6e9ee; }
figcaption { color: #4a535e; font-size: 0.93em; margin-top: 6px; max-width: 900px; }
p.warning { font-size: 1.04em; color: #6b2a00; background: #fff1e0; border-left: 4px solid #e07b00;
  padding: 10px 14px; margin: 12px 0 6px; }
p.skipped { color: #7a5a00; background: #fff8e1; border-left: 4px solid #f0c24b; padding: 8px 12px; }
footer { margin-top: 40px; color: #8a939e; font-size: 0.85em; }
"""


def _row(label: str, value: str) -> str:
    return f"<tr><th>{html.escape(label)}</th><td>{value}</td></tr>"


def _extra_value(value: Any) -> str:
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(_jsonable(value), ensure_ascii=False)
    if isinstance(value, float | np.floating):
        return _general(value)
    return str(value)


def _header_rows(p: _Prepared, created: datetime) -> list[str]:
    data = p.data
    escape = html.escape
    attacks_text = f"{p.attacks:,} ({_percent(p.attacks / p.rows)})"
    classes = ", ".join(
        f'<span class="swatch" style="background:{p.colours[name]}"></span>{escape(name)}'
        for name in p.class_names
        if name != NORMAL
    )
    if classes:
        attacks_text += f" — classes: {classes}"
    rows = [
        _row("Model", f"<strong>{escape(data.model)}</strong>"),
        _row("Bundle", f"<code>{escape(data.bundle)}</code>"),
        _row("Input", f"<code>{escape(data.input)}</code>"),
        _row("Flows", f"{p.rows:,}"),
        _row("Attack flows", attacks_text),
        _row("Threshold", f"{_general(data.threshold)} — chosen by {escape(data.threshold_method)}"),
        _row("Alerts", f"{int(p.alerts.sum()):,} ({_percent(p.alerts.mean())} of flows)"),
    ]
    history = data.history
    if isinstance(history, Mapping) and history:
        parts = []
        if _is_number(history.get("epochs_run")):
            parts.append(f"{int(history['epochs_run'])} epoch(s)")
        if _is_number(history.get("best_epoch")):
            parts.append(f"best epoch {int(history['best_epoch'])}")
        if history.get("stopped"):
            parts.append(f"stopped by {escape(str(history['stopped']))}")
        if _is_number(history.get("seconds")):
            parts.append(f"{float(history['seconds']):.1f} s")
        if history.get("device"):
            parts.append(f"on {escape(str(history['device']))}")
        if parts:
            rows.append(_row("Training", ", ".join(parts)))
    if isinstance(data.extra, Mapping):
        rows.extend(_row(str(key), escape(_extra_value(value))) for key, value in data.extra.items())
    skipped = int((~p.finite).sum())
    if skipped:
        rows.append(_row("Non-finite scores", f"{skipped:,} flow(s), left out of the figures"))
    rows.append(_row("Created", escape(created.strftime("%Y-%m-%d %H:%M:%S UTC"))))
    rows.append(_row("nadkit version", escape(__version__)))
    return rows


def _summary_sentence(p: _Prepared) -> str:
    alerts = int(p.alerts.sum())
    attacks = p.attacks
    normals = p.rows - attacks
    caught = int((p.alerts & p.is_attack).sum())
    false = alerts - caught
    text = f"At threshold {_general(p.data.threshold)} the model raised <strong>{alerts:,}</strong> alert(s)"
    if attacks:
        text += (
            f": <strong>{caught:,} of {attacks:,}</strong> attack flows were caught "
            f"({_percent(caught / attacks)})"
        )
    if normals:
        joiner = " and " if attacks else ": "
        text += (
            f"{joiner}<strong>{false:,} of {normals:,}</strong> normal flows were falsely alerted "
            f"({_percent(false / normals, 3)})"
        )
    return text + "."


_METRIC_ROWS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    (
        "ROC-AUC",
        ("binary", "roc_auc"),
        "fixed",
        "Chance that a random attack flow scores above a random normal flow (0.5 is chance, 1 is perfect).",
    ),
    (
        "PR-AUC (average precision)",
        ("binary", "pr_auc"),
        "fixed",
        "Precision averaged over all recall levels; chance equals the attack share.",
    ),
    ("Precision", ("binary", "precision"), "fixed", "Share of alerts that are attacks, at the threshold."),
    (
        "Recall (detection rate)",
        ("binary", "recall"),
        "fixed",
        "Share of attack flows alerted, at the threshold.",
    ),
    ("F1", ("binary", "f1"), "fixed", "Harmonic mean of precision and recall, at the threshold."),
    (
        "False-positive rate",
        ("binary", "false_positive_rate"),
        "fixed",
        "Share of normal flows alerted, at the threshold.",
    ),
    ("Threshold", ("binary", "threshold"), "general", "Score at or above which a flow raises an alert."),
    ("Flows", ("binary", "rows"), "count", "Flows evaluated."),
    ("Attack flows", ("binary", "attacks"), "count", "Flows whose true class is not normal."),
    (
        "NAD score",
        ("nad_score",),
        "fixed",
        "NAD 2021 challenge score, 0.3 × cost term + 0.7 × macro F2 (higher is better; "
        "needs class predictions of the NAD classes).",
    ),
    (
        "Macro F2",
        ("macro_f_beta",),
        "fixed",
        "One-vs-rest F2 averaged over the classes, each counting equally (without class "
        "predictions: over normal and attack).",
    ),
)


def _metrics_table(p: _Prepared) -> str:
    formats: dict[str, Callable[[Any], str]] = {"fixed": _fixed, "general": _general, "count": _count}
    rows = []
    for label, keys, kind, note in _METRIC_ROWS:
        value = formats[kind](_get(p.data.metrics, *keys))
        rows.append(
            f'<tr><td>{html.escape(label)}</td><td class="value">{value}</td>'
            f'<td class="note">{html.escape(note)}</td></tr>'
        )
    return (
        '<table class="metrics"><thead><tr><th>Metric</th><th class="value">Value</th><th>Meaning</th></tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _class_table(p: _Prepared) -> str:
    rows = []
    for name, count, alerted, rate in _per_class_rows(p):
        swatch = f'<span class="swatch" style="background:{p.colours.get(name, OTHER_COLOUR)}"></span>'
        meaning = "false-positive rate" if name == NORMAL else "detection rate"
        css = ' class="normal"' if name == NORMAL else ""
        rows.append(
            f'<tr{css}><td>{swatch}{html.escape(name)}</td><td class="value">{_count(count)}</td>'
            f'<td class="value">{_count(alerted)}</td><td class="value">{_percent(rate)}</td>'
            f'<td class="note">{meaning}</td></tr>'
        )
    return (
        '<table class="classes"><thead><tr><th>Class</th><th class="value">Flows</th>'
        '<th class="value">Alerted</th><th class="value">Rate</th><th></th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _figure_html(section: _Section) -> str:
    heading = f'<h2 id="{section.key}">{html.escape(section.title)}</h2>'
    if section.png is None:
        return f'{heading}<p class="skipped">{html.escape(section.skipped or "Not drawn.")}</p>'
    encoded = base64.b64encode(section.png).decode("ascii")
    return (
        f'{heading}<figure><img src="data:image/png;base64,{encoded}" alt="{html.escape(section.title)}">'
        f"<figcaption>{html.escape(section.caption)}</figcaption></figure>"
    )


def _html(p: _Prepared, sections: list[_Section], created: datetime) -> str:
    title = f"nadkit evaluation — {p.data.model}"
    links = [('<a href="#metrics">Metrics</a>'), '<a href="#classes">Classes</a>']
    links.extend(f'<a href="#{s.key}">{html.escape(s.title)}</a>' for s in sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body><main>",
        f'<h1>Evaluation report: <span class="model">{html.escape(p.data.model)}</span></h1>',
        *(f'<p class="warning"><strong>{html.escape(text)}</strong></p>' for text in p.data.warnings),
        f"<nav>{' '.join(links)}</nav>",
        f'<p class="lead">{_summary_sentence(p)}</p>',
        f'<table class="header"><tbody>{"".join(_header_rows(p, created))}</tbody></table>',
        '<h2 id="metrics">Metrics</h2>',
        _metrics_table(p),
        '<h2 id="classes">Classes</h2>',
        _class_table(p),
        *(_figure_html(section) for section in sections),
        f"<footer>Generated by nadkit {html.escape(__version__)} on "
        f"{html.escape(created.strftime('%Y-%m-%d %H:%M:%S UTC'))}.</footer>",
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"
