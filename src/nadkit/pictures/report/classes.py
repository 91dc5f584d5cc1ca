"""The report's figures of what the model said per class and how it was trained: the confusion
matrix, the detection rate per class, the training curves, and the flow-groups picture of the
true labels beside the model's predictions (when the report has the scored flows)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from nadkit.pictures.groups import draw_groups
from nadkit.pictures.palette import ALERT, MODEL_COLOUR, OTHER_COLOUR
from nadkit.pictures.report.data import Prepared, factorize
from nadkit.pictures.report.format import compact, count, get, is_number, name, new_figure, percent, style
from nadkit.schema import NORMAL

#: size in pixels of each of the two panels of the flow-groups figure (true labels, predictions)
FLOW_GROUPS_PANEL = (440, 460)


def _confusion_data(p: Prepared) -> tuple[list[str], list[str], np.ndarray, str] | str:
    """Row names (true classes), column names, the matrix and what the columns mean."""
    confusion = get(p.data.metrics, "confusion")
    if (
        isinstance(confusion, Mapping)
        and confusion.get("labels") is not None
        and confusion.get("matrix") is not None
    ):
        names = [str(label) for label in confusion["labels"]]
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
        predicted_names, predicted = factorize(np.asarray(p.data.predicted))
        names = list(dict.fromkeys([*p.class_names, *predicted_names]))
        true_index = np.array([names.index(n) for n in p.class_names], dtype=np.int64)[p.codes]
        predicted_index = np.array([names.index(n) for n in predicted_names], dtype=np.int64)[predicted]
        flat = np.bincount(true_index * len(names) + predicted_index, minlength=len(names) ** 2)
        matrix = flat.reshape(len(names), len(names)).astype(np.float64)
        return names, names, matrix, "predicted class"
    truth = p.is_attack.astype(np.int64)
    flat = np.bincount(truth * 2 + p.alerts.astype(np.int64), minlength=4)
    matrix = flat.reshape(2, 2).astype(np.float64)
    return [NORMAL, "attack"], ["no alert", "alert"], matrix, "outcome at the threshold"


def confusion_figure(p: Prepared) -> tuple[Figure, str] | str:
    result = _confusion_data(p)
    if isinstance(result, str):
        return result
    names, column_names, matrix, columns = result
    n = len(names)
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    side = max(5.2, 0.62 * n + 3.0)
    figure = new_figure(side + 1.8, side)
    axes = figure.subplots()
    image = axes.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, aspect="equal")
    # small matrices carry counts and shares; large ones only counts, in a compact form
    font = 10 if n <= 4 else 8.5 if n <= 7 else 7.5 if n <= 11 else 7
    for i in range(n):
        for j in range(n):
            flows = matrix[i, j]
            if n <= 7:
                text = f"{int(flows):,}" if flows < 100_000 and n <= 4 else compact(flows)
                if totals[i, 0] > 0:
                    text += f"\n{shares[i, j]:.1%}"
            else:
                if flows == 0:
                    continue
                text = compact(flows)
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
        labels=[name(label, 22) for label in column_names],
        rotation=35 if n > 2 else 0,
        ha="right" if n > 2 else "center",
        rotation_mode="anchor",
        fontsize=9 if n <= 10 else 7.5,
    )
    axes.set_yticks(range(n), labels=[name(label, 22) for label in names], fontsize=9 if n <= 10 else 7.5)
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


def per_class_rows(p: Prepared) -> list[tuple[str, float | None, float | None, float | None]]:
    """(class, rows, alerted, rate) per class, from the metrics where given, else from the scores."""
    per_class = get(p.data.metrics, "per_class")
    entries: list[tuple[str, float | None, float | None, float | None]] = []
    if isinstance(per_class, Mapping) and per_class:
        for label, values in per_class.items():
            rows, alerted, rate = (get(values, key) for key in ("rows", "alerted", "rate"))
            numbers = [float(v) if is_number(v) else None for v in (rows, alerted, rate)]
            if numbers[2] is None and numbers[0] and numbers[1] is not None:
                numbers[2] = numbers[1] / numbers[0]
            entries.append((str(label), numbers[0], numbers[1], numbers[2]))
        return entries
    for k, label in enumerate(p.class_names):
        rows = int(p.counts[k])
        alerted = int((p.alerts & (p.codes == k)).sum())
        entries.append((label, float(rows), float(alerted), alerted / rows if rows else None))
    return entries


def per_class_figure(p: Prepared) -> tuple[Figure, str] | str:
    entries = per_class_rows(p)
    if not entries:
        return "Not drawn: there are no per-class results."
    normal = [e for e in entries if e[0] == NORMAL]
    attacks = sorted((e for e in entries if e[0] != NORMAL), key=lambda e: (-(e[3] or 0.0), e[0]))
    ordered = normal + attacks
    n = len(ordered)
    figure = new_figure(9.0, max(2.4, 0.42 * n + 1.4))
    axes = figure.subplots()
    style(axes)
    axes.grid(False, axis="y")
    positions = np.arange(n)[::-1]
    for y, (label, rows, alerted, rate) in zip(positions, ordered, strict=True):
        colour = p.colours.get(label, OTHER_COLOUR)
        value = rate if rate is not None else 0.0
        if label == NORMAL:
            axes.barh(y, value, height=0.66, color="white", edgecolor=colour, hatch="///", linewidth=1.2)
        else:
            axes.barh(y, value, height=0.66, color=colour)
        counts = f"  ({count(alerted)} / {count(rows)})" if rows is not None else ""
        axes.text(value + 0.01, y, f"{percent(rate, 1)}{counts}", va="center", ha="left", fontsize=8.5)
    labels = [f"{name(label)}  (false alarms)" if label == NORMAL else name(label) for label, *_ in ordered]
    axes.set_yticks(positions, labels=labels, fontsize=9)
    for tick, (label, *_) in zip(axes.get_yticklabels(), ordered, strict=True):
        if label == NORMAL:
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
    return np.array([float(v) if is_number(v) else np.nan for v in values], dtype=np.float64)


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


def training_figure(p: Prepared) -> tuple[Figure, str] | str:
    history = p.data.history
    train = _numbers(get(history, "train_loss"))
    validation = _numbers(get(history, "validation_loss"))
    selection = _numbers(get(history, "selection"))
    if not (np.isfinite(train).any() or np.isfinite(validation).any()):
        return "Not drawn: the bundle holds no training history (the model was not trained by epochs)."
    best = get(history, "best_epoch")
    best_epoch = int(best) if is_number(best) and best > 0 else None
    has_selection = bool(np.isfinite(selection).any())
    figure = new_figure(11 if has_selection else 7.5, 4.2)
    panels = figure.subplots(1, 2 if has_selection else 1)
    loss_axes: Axes = panels[0] if has_selection else panels
    style(loss_axes)
    for values, label, colour in (
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
                label=label,
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
        style(selection_axes)
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
    stopped = get(history, "stopped")
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


def flow_groups_figure(p: Prepared) -> tuple[bytes, str] | str:
    """The flows grouped by port pair (or address pair, or protocol and application) over time, once
    coloured by true label and once by the model's prediction, with the report's class colours."""
    flows = p.data.flows
    assert flows is not None
    try:
        import datashader  # noqa: F401
        import pandas  # noqa: F401
    except ImportError:
        return "Not drawn: this picture needs the pictures extra (pip install 'nadkit[pictures]')."

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
        prediction = pl.Series("class", np.where(p.alerts, ALERT, NORMAL), dtype=pl.String)
    columns = [*keys, "time"] if usable("time") else list(keys)
    frame = flows.select(columns).with_columns(
        pl.Series("label", np.asarray(p.data.labels).astype(str), dtype=pl.String), prediction
    )
    if "time" in frame.columns and not isinstance(frame.schema["time"], pl.Datetime):
        frame = frame.drop("time")
    width, height = FLOW_GROUPS_PANEL
    picture = draw_groups(
        frame,
        by=names,
        color=("label", "prediction"),
        width=width,
        height=height,
        order="hash",
        colours=p.colours,
        model=name(p.data.model),
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


__all__ = [
    "FLOW_GROUPS_PANEL",
    "confusion_figure",
    "flow_groups_figure",
    "per_class_figure",
    "per_class_rows",
    "training_figure",
]
