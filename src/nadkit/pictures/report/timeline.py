"""The report's timeline: every flow's score over time (or over row order), coloured by its true
class, with the threshold; below it the alerts per time slice, stacked by true class.

Large inputs are sampled for drawing: every attack and false alarm up to a cap, and a random sample
of the quiet normal traffic; the alert counts always cover every flow.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
from matplotlib import dates as mdates
from matplotlib import ticker
from matplotlib.figure import Figure

from nadkit.pictures.report.data import Prepared
from nadkit.pictures.report.format import compact, log_tick, name, new_figure, style

log = logging.getLogger(__name__)

#: timeline points kept per group: normal flows without an alert, normal flows with one, each attack
TIMELINE_NORMAL_POINTS = 40_000
TIMELINE_FALSE_ALERT_POINTS = 20_000
TIMELINE_ATTACK_POINTS = 60_000


def time_axis(p: Prepared) -> tuple[np.ndarray | None, np.ndarray]:
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


def timeline_sample(p: Prepared, usable: np.ndarray) -> np.ndarray:
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


def timeline_figure(p: Prepared) -> tuple[Figure, str] | str:
    micros, usable = time_axis(p)
    if not usable.any():
        return "Not drawn: no flow has both a finite score and a time."
    sample = timeline_sample(p, usable)
    by_time = micros is not None

    def position(values: np.ndarray) -> np.ndarray:
        if not by_time:
            return values.astype(np.float64)
        return mdates.date2num(values.astype("datetime64[us]"))

    x_all = micros if by_time else np.arange(p.rows, dtype=np.int64)
    assert x_all is not None
    figure = new_figure(11, 5.8)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3, 1.1))
    style(top)
    style(bottom)
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
            label=name(group.name),
            zorder=3 if group.attack else 2,
            rasterized=True,
        )
    top.axhline(
        threshold, color="black", linestyle="--", linewidth=1.3, label=f"threshold {threshold:.4g}", zorder=4
    )
    if p.log_scores:
        top.set_yscale("log")
        top.yaxis.set_major_formatter(ticker.FuncFormatter(log_tick))
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
            label=name(group.name if group.attack else "normal (false alarms)"),
        )
        stacked += counts
    total_alerts = int(alerted.sum())
    if total_alerts:
        bottom.legend(fontsize=8.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        bottom.set_ylim(0, stacked.max() * 1.08)
        bottom.yaxis.set_major_locator(ticker.MaxNLocator(3, integer=True))
        bottom.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: compact(value)))
    else:
        bottom.text(
            0.5, 0.5, "no alerts at this threshold", ha="center", va="center", transform=bottom.transAxes
        )
        bottom.set_yticks([])
    bottom.set_ylabel("alerts")
    if by_time:
        locator = mdates.AutoDateLocator(minticks=4, maxticks=9)
        bottom.xaxis.set_major_locator(locator)
        bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        bottom.set_xlabel("time")
    else:
        bottom.xaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: compact(value)))
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


__all__ = [
    "TIMELINE_ATTACK_POINTS",
    "TIMELINE_FALSE_ALERT_POINTS",
    "TIMELINE_NORMAL_POINTS",
    "time_axis",
    "timeline_figure",
    "timeline_sample",
]
