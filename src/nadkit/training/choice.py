"""`nadkit train --auto`: the detector chosen by its detection on a labelled hold-out.

Each candidate (:data:`AUTO_CANDIDATES` unless named) is trained by :func:`~nadkit.training.fit.fit`
with the same seed and settings, so they all learn from the same normal rows and are measured on the
same hold-out (its normal rows and every attack row). The one with the highest average precision
(PR-AUC) there is kept, ROC-AUC breaking ties, then the order given. Each candidate's threshold is
chosen on that hold-out as usual; the kept model's hold-out figures are then optimistic twice over
(the threshold and the choice were both made on those rows), which its ``metrics.json`` says. Only
unsupervised detectors compete: they share one split, where a supervised model splits the labelled
flows its own way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import polars as pl

from nadkit.errors import ConfigError
from nadkit.models.registry import REGISTRY
from nadkit.schema import NORMAL
from nadkit.sources import BadRows, FileProgress
from nadkit.training.fit import (
    TrainingResult,
    default_features,
    fit,
    prepare_out,
    save_read_from,
    source_named,
    use_label_column,
)
from nadkit.training.holdout import captures_in, training_flows

log = logging.getLogger(__name__)

#: what `nadkit train --auto` compares unless told otherwise: the row detectors, each with its defaults
AUTO_CANDIDATES: tuple[str, ...] = ("ae", "vae", "iforest", "ecod")

#: fewest attack rows the hold-out must hold for a choice among models (a PR-AUC of a handful of
#: attacks is one draw's luck)
MIN_CHOICE_ATTACKS = 10

#: the figure that chooses
CHOICE_METRIC = "pr_auc"


@dataclass(frozen=True)
class Candidate:
    """One trained candidate's hold-out figures."""

    model: str
    roc_auc: float
    pr_auc: float
    f1: float
    fit_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fit_seconds": round(self.fit_seconds, 3)}


@dataclass(frozen=True)
class Choice:
    """The kept candidate's training result (its bundle's ``metrics.json`` records the choice under
    ``auto``) and every candidate's figures, in the order trained."""

    result: TrainingResult
    chosen: str
    candidates: tuple[Candidate, ...]


def check_candidates(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` as a tuple, checked: known, unsupervised, each once, at least two."""
    chosen = tuple(name.strip() for name in names if name.strip())
    unknown = [name for name in chosen if name not in REGISTRY]
    if unknown:
        raise ConfigError(f"unknown model {unknown[0]!r} among the candidates (known: {', '.join(REGISTRY)})")
    supervised = [name for name in chosen if REGISTRY[name].supervised]
    if supervised:
        raise ConfigError(
            f"--auto compares unsupervised detectors on one hold-out; {supervised[0]} is supervised "
            "(train it on its own)"
        )
    repeated = sorted({name for name in chosen if chosen.count(name) > 1})
    if repeated:
        raise ConfigError(f"candidate {repeated[0]!r} named twice")
    if len(chosen) < 2:
        raise ConfigError(f"--auto needs at least two candidates to choose from, got {len(chosen)}")
    return chosen


def check_attacks(frame: pl.DataFrame, label_column: str = "label") -> int:
    """The attack rows of ``frame`` (all of them go to an unsupervised model's hold-out); a
    :class:`ConfigError` where there are fewer than :data:`MIN_CHOICE_ATTACKS`."""
    labelled = use_label_column(frame, label_column)
    attacks = 0
    if "label" in labelled.columns:
        attack = pl.col("label").is_not_null() & (pl.col("label") != NORMAL)
        attacks = int(labelled.select(attack.sum()).item())
    if attacks < MIN_CHOICE_ATTACKS:
        raise ConfigError(
            f"--auto chooses a model by how it ranks labelled attacks among normal flows, and needs at least "
            f"{MIN_CHOICE_ATTACKS} attack rows; the flows have {attacks} (column {label_column!r})"
        )
    return attacks


def choose(
    frame: pl.DataFrame,
    candidates: Sequence[str] = AUTO_CANDIDATES,
    *,
    seed: int = 0,
    label_column: str = "label",
    feature_options: Mapping[str, Any] | None = None,
    on_candidate: Callable[[str, int, int], None] | None = None,
    **settings: Any,
) -> Choice:
    """Train every one of ``candidates`` on ``frame`` (:func:`~nadkit.training.fit.fit` with ``seed``,
    ``label_column`` and ``settings``) and keep the best by hold-out PR-AUC. ``feature_options``
    (``calendar``, ``names``, ``cadence``, as `nadkit train` takes them) set each candidate's feature
    groups through :func:`~nadkit.training.fit.default_features`. ``on_candidate(name, index,
    count)`` is called as each starts (1-based index), for progress displays."""
    names = check_candidates(candidates)
    if settings.get("config"):
        raise ConfigError("--auto trains each candidate with its defaults; leave --config out")
    for setting, option in (("target", "--target"), ("buckets", "--view buckets")):
        if settings.get(setting) is not None:
            raise ConfigError(f"--auto compares detectors of single flows; leave {option} out")
    check_attacks(frame, label_column)
    results: list[TrainingResult] = []
    rows: list[Candidate] = []
    for index, name in enumerate(names, 1):
        if on_candidate is not None:
            on_candidate(name, index, len(names))
        features = default_features(REGISTRY[name], **feature_options) if feature_options else None
        result = fit(frame, model=name, seed=seed, label_column=label_column, features=features, **settings)
        measured = result.bundle.metrics.get("holdout")
        if measured is None:  # no attack reached the hold-out (e.g. all of them trained on)
            raise ConfigError("--auto: the hold-out holds no attack rows to compare the models on")
        results.append(result)
        rows.append(
            Candidate(
                model=name,
                roc_auc=float(measured["roc_auc"]),
                pr_auc=float(measured["pr_auc"]),
                f1=float(measured["f1"]),
                fit_seconds=result.fit_seconds,
            )
        )
        log.info("candidate %s: hold-out PR-AUC %.4f, ROC-AUC %.4f", name, rows[-1].pr_auc, rows[-1].roc_auc)
    best = best_index([(row.pr_auc, row.roc_auc) for row in rows])
    kept = results[best]
    kept.bundle.metrics["auto"] = {
        "metric": CHOICE_METRIC,
        "chosen": names[best],
        "candidates": [row.to_dict() for row in rows],
        "note": "chosen on the hold-out its threshold was chosen on: its hold-out figures are optimistic",
    }
    log.info("kept %s (hold-out PR-AUC %.4f)", names[best], rows[best].pr_auc)
    return Choice(result=kept, chosen=names[best], candidates=tuple(rows))


def best_index(figures: Sequence[tuple[float, float]]) -> int:
    """The rule that chooses: the index of the highest ``(PR-AUC, ROC-AUC)`` pair, the earlier one
    among equals, a NaN ranking last."""

    def finite(value: float) -> float:
        return value if value == value else float("-inf")

    return max(range(len(figures)), key=lambda i: (finite(figures[i][0]), finite(figures[i][1]), -i))


def train_chosen(
    source: str | Path,
    out: str | Path,
    *,
    candidates: Sequence[str] = AUTO_CANDIDATES,
    format: str | None = None,
    mapping: str | None = None,
    overwrite: bool = False,
    onnx: bool = True,
    on_bad_rows: BadRows = "error",
    on_file: FileProgress | None = None,
    **settings: Any,
) -> Choice:
    """`nadkit train --auto`: read the flows of ``source``, :func:`choose` among ``candidates`` and
    save the kept model to ``out`` (as :func:`~nadkit.training.fit.train_model` saves one). ``out``,
    the candidates and the attack rows are checked before anything is trained."""
    threshold = settings.get("threshold_method", "auto"), settings.get("threshold_params")
    out = prepare_out(out, overwrite, *threshold)
    check_candidates(candidates)
    frame, source_format, settings = training_flows(
        source, settings, format=format, mapping=mapping, on_bad_rows=on_bad_rows, on_file=on_file
    )
    with source_named(source):
        choice = choose(frame, candidates, **settings)
    result = replace(choice.result, captures=captures_in(source, frame, source_format))
    saved = save_read_from(result, source_format, out, overwrite=overwrite, onnx=onnx)
    return replace(choice, result=saved)


__all__ = [
    "AUTO_CANDIDATES",
    "CHOICE_METRIC",
    "MIN_CHOICE_ATTACKS",
    "Candidate",
    "Choice",
    "best_index",
    "check_attacks",
    "check_candidates",
    "choose",
    "train_chosen",
]
