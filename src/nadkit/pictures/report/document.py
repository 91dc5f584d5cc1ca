"""The evaluation report as files: ``report.html`` (rendered from the package's Jinja templates,
with inline CSS, every figure embedded as a PNG, no external references and no JavaScript), each
figure as its own PNG file, and ``metrics.json``.

The directory is built beside its destination and renamed into place, so a reader never sees half
a report.
"""

from __future__ import annotations

import base64
import json
import logging
import time as clock
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from matplotlib.figure import Figure

from nadkit.errors import ConfigError
from nadkit.fileio import atomic_directory
from nadkit.pictures.palette import OTHER_COLOUR
from nadkit.pictures.report.classes import (
    confusion_figure,
    flow_groups_figure,
    per_class_figure,
    per_class_rows,
    training_figure,
)
from nadkit.pictures.report.data import Prepared, ReportData, prepare
from nadkit.pictures.report.format import count, fixed, general, get, is_number, jsonable, percent, png
from nadkit.pictures.report.scores import histogram_figure, pr_figure, roc_figure
from nadkit.pictures.report.timeline import timeline_figure
from nadkit.schema import NORMAL
from nadkit.version import __version__

log = logging.getLogger(__name__)

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

_Builder = Callable[[Prepared], tuple[Figure | bytes, str] | str]

#: the rows of the metrics table: label, keys into the metrics, number format, meaning
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
_FORMATS: dict[str, Callable[[Any], str]] = {"fixed": fixed, "general": general, "count": count}


@dataclass(frozen=True)
class Section:
    """One figure of the report: drawn (PNG bytes) or skipped (with the reason)."""

    key: str
    title: str
    caption: str
    png: bytes | None = None
    skipped: str | None = None

    @property
    def image(self) -> str | None:
        """The figure as a data URI, for embedding."""
        if self.png is None:
            return None
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


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
    prepared = prepare(data)
    created = datetime.now(UTC)
    sections = draw_sections(prepared)
    document = render_html(prepared, sections, created)
    summary = metrics_document(prepared, created)
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


def draw_sections(p: Prepared) -> list[Section]:
    """Every figure of the report, in page order."""
    builders: list[tuple[str, str, _Builder]] = [
        ("roc", "ROC curve", roc_figure),
        ("pr", "Precision–recall curve", pr_figure),
        ("score_histogram", "Score distribution per class", histogram_figure),
        ("score_timeline", "Scores and alerts over time", timeline_figure),
    ]
    if p.data.flows is not None:
        title = "Flow groups over time: true labels and predictions"
        builders.append((FLOW_GROUPS, title, flow_groups_figure))
    builders += [
        ("confusion", "Confusion matrix", confusion_figure),
        ("per_class", "Detection rate per class", per_class_figure),
        ("training", "Training curves", training_figure),
    ]
    sections = []
    for key, title, build in builders:
        started = clock.perf_counter()
        result = build(p)
        if isinstance(result, str):
            sections.append(Section(key, title, "", skipped=result))
            log.debug("figure %s skipped: %s", key, result)
            continue
        figure, caption = result
        image = figure if isinstance(figure, bytes) else png(figure)
        sections.append(Section(key, title, caption, png=image))
        log.debug("figure %s drawn in %.2f s", key, clock.perf_counter() - started)
    return sections


def metrics_document(p: Prepared, created: datetime) -> dict[str, Any]:
    """What ``metrics.json`` holds: the header of the report and every metric, as strict JSON."""
    data = p.data
    return jsonable(
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


# --------------------------------------------------------------------------------------------------
# the page


@cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("nadkit.pictures", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


def render_html(p: Prepared, sections: list[Section], created: datetime) -> str:
    """The report page of ``p`` with its figures ``sections``."""
    data = p.data
    when = created.strftime("%Y-%m-%d %H:%M:%S UTC")
    context = {
        "model": data.model,
        "bundle": data.bundle,
        "input": data.input,
        "warnings": list(data.warnings),
        "summary": _summary(p),
        "header": _header(p, when),
        "metrics": [
            {"label": label, "value": _FORMATS[kind](get(data.metrics, *keys)), "note": note}
            for label, keys, kind, note in _METRIC_ROWS
        ],
        "classes": _class_rows(p),
        "incidents": _incidents(data.metrics.get("incidents")),
        "comparison": _comparison(data.metrics.get("comparison")),
        "sections": sections,
        "version": __version__,
        "created": when,
    }
    return _templates().get_template("report.html").render(context)


def _incidents(figures: dict[str, Any] | None) -> dict[str, Any] | None:
    """The incident figures of the metrics (see :mod:`nadkit.alerts.episodes`), as the report shows them."""
    if not figures:
        return None
    per_incident = figures.get("alerts_per_incident")
    rate = figures.get("episode_detection_rate")
    per_hour = figures.get("false_incidents_per_hour")
    return {
        "count": f"{figures.get('incidents', 0):,}",
        "per_incident": f"{per_incident:,.1f}" if per_incident is not None else "–",
        "episodes": figures.get("attack_episodes"),
        "detected": figures.get("attack_episodes_detected"),
        "rate": f"{rate:.0%}" if rate is not None else "–",
        "false": figures.get("false_incidents"),
        "false_per_hour": f"{per_hour:.2g}" if per_hour is not None else None,
        "top": figures.get("top") or [],
    }


def _comparison(rows: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """The models compared on the flows (``nadkit evaluate --compare``), as the report shows them."""
    if not rows:
        return None
    return {
        "same": percent(rows[0].get("target_fpr", 0.01), 0),
        "rows": [
            {
                "name": row["name"],
                "model": row["model"],
                "roc_auc": fixed(row.get("roc_auc")),
                "pr_auc": fixed(row.get("pr_auc")),
                "prf": " / ".join(fixed(row.get(k), 3) for k in ("precision", "recall", "f1")),
                "fpr": percent(row.get("false_positive_rate")),
                "macro": fixed(row.get("macro_detection"), 3),
                "same": " / ".join(
                    fixed(row.get(k), 3) for k in ("recall_same_fpr", "macro_detection_same_fpr")
                ),
            }
            for row in rows
        ],
    }


def _summary(p: Prepared) -> dict[str, Any]:
    """The numbers of the lead sentence: alerts, attacks caught and normal flows falsely alerted."""
    alerts = int(p.alerts.sum())
    attacks = p.attacks
    normals = p.rows - attacks
    caught = int((p.alerts & p.is_attack).sum())
    false = alerts - caught
    return {
        "threshold": general(p.data.threshold),
        "alerts": f"{alerts:,}",
        "attacks": f"{attacks:,}" if attacks else "",
        "caught": f"{caught:,}",
        "caught_share": percent(caught / attacks) if attacks else "",
        "normals": f"{normals:,}" if normals else "",
        "falsely": f"{false:,}",
        "false_share": percent(false / normals, 3) if normals else "",
    }


def _extra_value(value: Any) -> str:
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(jsonable(value), ensure_ascii=False)
    if isinstance(value, float | np.floating):
        return general(value)
    return str(value)


def _header(p: Prepared, created: str) -> dict[str, Any]:
    """The header table: what was evaluated, with what, and the outcome at the threshold."""
    data = p.data
    rows: list[tuple[str, str]] = []
    history = data.history
    if isinstance(history, Mapping) and history:
        parts = []
        if is_number(history.get("epochs_run")):
            parts.append(f"{int(history['epochs_run'])} epoch(s)")
        if is_number(history.get("best_epoch")):
            parts.append(f"best epoch {int(history['best_epoch'])}")
        if history.get("stopped"):
            parts.append(f"stopped by {history['stopped']}")
        if is_number(history.get("seconds")):
            parts.append(f"{float(history['seconds']):.1f} s")
        if history.get("device"):
            parts.append(f"on {history['device']}")
        if parts:
            rows.append(("Training", ", ".join(parts)))
    if isinstance(data.extra, Mapping):
        rows.extend((str(key), _extra_value(value)) for key, value in data.extra.items())
    skipped = int((~p.finite).sum())
    if skipped:
        rows.append(("Non-finite scores", f"{skipped:,} flow(s), left out of the figures"))
    rows.append(("Created", created))
    rows.append(("nadkit version", __version__))
    return {
        "flows": f"{p.rows:,}",
        "attacks": f"{p.attacks:,} ({percent(p.attacks / p.rows)})",
        "attack_classes": [
            {"name": name, "colour": p.colours[name]} for name in p.class_names if name != NORMAL
        ],
        "threshold": general(data.threshold),
        "threshold_method": data.threshold_method,
        "alerts": f"{int(p.alerts.sum()):,} ({percent(p.alerts.mean())} of flows)",
        "rows": rows,
    }


def _class_rows(p: Prepared) -> list[dict[str, Any]]:
    """The classes table: flows, alerted flows and the rate per class."""
    return [
        {
            "name": name,
            "colour": p.colours.get(name, OTHER_COLOUR),
            "flows": count(flows),
            "alerted": count(alerted),
            "rate": percent(rate),
            "meaning": "false-positive rate" if name == NORMAL else "detection rate",
            "normal": name == NORMAL,
        }
        for name, flows, alerted, rate in per_class_rows(p)
    ]


__all__ = [
    "FIGURES",
    "FLOW_GROUPS",
    "Section",
    "draw_sections",
    "metrics_document",
    "render_html",
    "write_report",
]
