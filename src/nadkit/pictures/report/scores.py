"""The report's figures of how the scores separate attacks from normal traffic: the ROC curve (whole
and at low false-positive rates), the precision-recall curve, and the score distribution per class,
each with the threshold marked. :func:`score_figures` draws the distribution and the timeline on
their own, for pages other than the report."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure

from nadkit.evaluation.metrics import ranking_curve
from nadkit.pictures.palette import MODEL_COLOUR
from nadkit.pictures.report.data import Prepared, ReportData, prepare
from nadkit.pictures.report.format import compact, log_tick, name, new_figure, percent_tick, png, style
from nadkit.pictures.report.timeline import timeline_figure

#: points drawn of the precision-recall curve (the curve has one per distinct score)
CURVE_POINTS = 20_000
_THRESHOLD_MARKER = {"marker": "o", "markersize": 9, "markerfacecolor": "#ffd23f", "markeredgecolor": "black"}


def both_kinds(p: Prepared) -> str | None:
    """Why a normal-against-attack figure cannot be drawn, or None when it can."""
    finite_attacks = p.is_attack & p.finite
    attacks, normals = int(finite_attacks.sum()), int((~p.is_attack & p.finite).sum())
    if attacks and normals:
        return None
    present = "attack" if attacks else "normal"
    return f"Not drawn: it needs both normal and attack flows, and this input has only {present} flows."


def _operating_point(p: Prepared) -> tuple[float, float, float | None]:
    """False-positive rate, recall and precision at the threshold (precision None without alerts)."""
    normal, attack = ~p.is_attack & p.finite, p.is_attack & p.finite
    fpr = float(p.alerts[normal].mean())
    recall = float(p.alerts[attack].mean())
    alerted = int((p.alerts & p.finite).sum())
    precision = float((p.alerts & attack).sum() / alerted) if alerted else None
    return fpr, recall, precision


@dataclass(frozen=True)
class Curves:
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


def curves(p: Prepared) -> Curves:
    """Both curves from one ranking of the scores: precision and recall follow from the ROC's
    true- and false-positive counts at every distinct score (every count is at least one row)."""
    if "curves" in p.cache:
        return p.cache["curves"]
    truth, scores = p.is_attack[p.finite], p.scores[p.finite]
    positives, negatives = int(truth.sum()), int((~truth).sum())
    _, hits, false_alarms = ranking_curve(scores, truth)
    fpr = np.concatenate([[0.0], false_alarms / negatives])
    tpr = np.concatenate([[0.0], hits / positives])
    precision = hits / (hits + false_alarms)
    recall = tpr[1:]
    average = float(np.sum(np.diff(tpr) * precision))
    roc_keep, pr_keep = _thin(len(fpr)), _thin(len(recall))
    found = Curves(
        fpr=fpr[roc_keep],
        tpr=tpr[roc_keep],
        recall=np.concatenate([[0.0], recall[pr_keep]]),
        precision=np.concatenate([[1.0], precision[pr_keep]]),
        roc_auc=float(np.trapezoid(tpr, fpr)),
        average_precision=average,
    )
    p.cache["curves"] = found
    return found


def roc_figure(p: Prepared) -> tuple[Figure, str] | str:
    reason = both_kinds(p)
    if reason:
        return reason
    found = curves(p)
    fpr, tpr, area = found.fpr, found.tpr, found.roc_auc
    point_fpr, point_tpr, _ = _operating_point(p)
    normals = int((~p.is_attack & p.finite).sum())
    floor = 10.0 ** math.floor(math.log10(1.0 / normals)) if normals > 1 else 1e-3
    figure = new_figure(10.5, 4.6)
    linear, logarithmic = figure.subplots(1, 2)
    for axes, log_x in ((linear, False), (logarithmic, True)):
        style(axes)
        axes.plot(fpr, tpr, color=MODEL_COLOUR, linewidth=2, label=f"{name(p.data.model)} (AUC = {area:.4f})")
        chance = np.geomspace(floor, 1, 200) if log_x else np.array([0.0, 1.0])
        axes.plot(chance, chance, color="#9a9a9a", linestyle="--", linewidth=1, label="chance")
        shown_fpr = max(point_fpr, floor) if log_x else point_fpr
        axes.plot(
            shown_fpr,
            point_tpr,
            **_THRESHOLD_MARKER,
            linestyle="none",
            label=f"threshold {p.data.threshold:.4g}: recall {point_tpr:.3f}, FPR {point_fpr:.4f}",
            zorder=5,
        )
        axes.set_ylim(-0.01, 1.01)
        axes.set_ylabel("true-positive rate (recall)")
        if log_x:
            axes.set_xscale("log")
            axes.set_xlim(floor, 1.0)
            axes.xaxis.set_major_formatter(ticker.FuncFormatter(percent_tick))
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


def pr_figure(p: Prepared) -> tuple[Figure, str] | str:
    reason = both_kinds(p)
    if reason:
        return reason
    found = curves(p)
    precision, recall, average = found.precision, found.recall, found.average_precision
    share = float(p.is_attack[p.finite].mean())
    _, point_recall, point_precision = _operating_point(p)
    figure = new_figure(6.8, 4.8)
    axes = figure.subplots()
    style(axes)
    axes.plot(
        recall,
        precision,
        color=MODEL_COLOUR,
        linewidth=2,
        drawstyle="steps-pre",
        label=f"{name(p.data.model)} (AP = {average:.4f})",
    )
    axes.axhline(
        share, color="#9a9a9a", linestyle="--", linewidth=1, label=f"chance: attack share {share:.4f}"
    )
    if point_precision is not None:
        axes.plot(
            point_recall,
            point_precision,
            **_THRESHOLD_MARKER,
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


def _score_range(p: Prepared) -> tuple[float, float]:
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


def histogram_figure(p: Prepared) -> tuple[Figure, str] | str:
    if not p.finite.any():
        return "Not drawn: no flow has a finite score."
    low, high = _score_range(p)
    bins = np.geomspace(low, high, 81) if p.log_scores else np.linspace(low, high, 81)
    figure = new_figure(9.5, 4.8)
    axes = figure.subplots()
    style(axes)
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
            counts, bins, color=group.colour, linewidth=1.6, label=f"{name(group.name)} ({len(values):,})"
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
    axes.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: compact(value)))
    axes.yaxis.set_minor_formatter(ticker.NullFormatter())
    axes.set_ylim(0.7, peak * 2.5)
    if p.log_scores:
        axes.set_xscale("log")
        axes.xaxis.set_major_formatter(ticker.FuncFormatter(log_tick))
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
    prepared = prepare(data)
    figures = {}
    for key, build in (("score_histogram", histogram_figure), ("score_timeline", timeline_figure)):
        result = build(prepared)
        if not isinstance(result, str):
            figures[key] = png(result[0])
    return figures


__all__ = ["CURVE_POINTS", "Curves", "curves", "histogram_figure", "pr_figure", "roc_figure", "score_figures"]
