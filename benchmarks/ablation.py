"""Ablations of the multitask detector on simulated traffic, after the experiments of the NAD 2021
article it follows, with the tree and autoencoder baselines on the same features.

Data: the simulator's first ``--days - 1`` days (Monday on) are labelled training data; the last day
is the test day, with a re-drawn address plan and another class mix. Every setting is trained with
``--seeds`` seeds (one network per seed) and scored on the test day; the table gives mean ± standard
deviation over the seeds of the NAD 2021 score, the macro F1 over the five classes, the ROC-AUC of
the anomaly score (attack vs normal), the validation selection score of the epoch kept, and per
seed the epoch kept and the epochs run.

Experiments
  (a) model selection: validation = a group split of every labelled day (25 % of the (src, dst /24)
      sessions, class mix kept) versus a day split (the last labelled day validates, the others train);
      both without CMD.
  (b) CMD (weight 1, 5 moments) against none, on both splits. The unlabelled target is the test day's
      traffic, as `nadkit train --target` would use it (the labels are never shown). Control: without
      CMD but running every epoch (early stopping off; the best validation epoch is still kept), since
      runs with CMD tend to run longer before early stopping ends them.
  (c) CMD weights 0.1 / 10 and 1 / 3 moments (group split; weight 1 with 5 moments is (b)), and CMD on
      the class-weighted classification batch instead of a uniform draw of labelled rows.
  Baselines (group split, same features): scikit-learn's HistGradientBoostingClassifier, multi-class,
  early-stopped on the same validation part (deterministic, so it runs once), unweighted and with
  balanced class weights; the ``ae`` autoencoder trained on the normal training rows, thresholded at
  the F1-optimal validation threshold and predicting the most common training attack class for rows
  above it (so it can only ever get two of the five classes right); and predicting every row normal.

Every network: width 64, latent 16, heads 16, batches of 256, ``--steps`` batches per epoch, at most
``--epochs`` epochs, patience 4 epochs on the validation NAD score, Adam 3e-3, AlphaDropout 0.2.
Runs go to ``--jobs`` worker processes of ``--threads`` torch threads each.

Run: ``.venv/bin/python benchmarks/ablation.py [--flows-per-day 20000] [--seeds 3] [--epochs 12]
[--steps 40] [--simulation-seed 7] [--experiments a b c baselines] [--jobs 2] [--threads 1]``;
prints the table and writes ``benchmarks/results/ablation.json`` (per-seed numbers included).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import console, report
from nadkit.evaluation.metrics import macro_f_beta, nad_score, roc_auc
from nadkit.evaluation.split import DaySplit, supervised_split
from nadkit.evaluation.thresholds import f_beta_optimal_threshold
from nadkit.features.data import detector_data
from nadkit.features.pipeline import FeaturePipeline
from nadkit.models import create
from nadkit.models.base import DetectorData
from nadkit.models.multitask import MultitaskConfig, MultitaskDetector
from nadkit.schema import NORMAL
from nadkit.simulate import SimulationConfig, simulate

#: the simulation's seed unless ``--simulation-seed`` says otherwise
SIMULATION_SEED = 7


@dataclass(frozen=True)
class Prepared:
    """One way of splitting the labelled days, featurized with a pipeline fitted on its training part;
    ``target`` is the test day without labels."""

    train: DetectorData
    validation: DetectorData
    test: DetectorData
    target: DetectorData


@dataclass(frozen=True)
class Outcome:
    """What one trained run measured."""

    nad: float
    macro_f1: float
    roc_auc: float
    validation: float
    fit_s: float
    best_epoch: int = 0
    epochs_run: int = 0


@dataclass(frozen=True)
class Setting:
    """One row of the table: which split, which CMD settings (None: no target, no CMD)."""

    experiment: str
    name: str
    split: str
    cmd_weight: float | None = None
    cmd_moments: int = 5
    cmd_source: str = "natural"
    early_stopping: bool = True


SETTINGS: tuple[Setting, ...] = (
    Setting("a", "group split, no CMD", "group"),
    Setting("a", "day split, no CMD", "day"),
    Setting("b", "group split, CMD w=1 K=5", "group", 1.0, 5),
    Setting("b", "day split, CMD w=1 K=5", "day", 1.0, 5),
    Setting("b", "group split, no CMD, every epoch run (control)", "group", early_stopping=False),
    Setting("c", "group split, CMD w=0.1 K=5", "group", 0.1, 5),
    Setting("c", "group split, CMD w=10 K=5", "group", 10.0, 5),
    Setting("c", "group split, CMD w=1 K=1", "group", 1.0, 1),
    Setting("c", "group split, CMD w=1 K=3", "group", 1.0, 3),
    Setting("c", "group split, CMD w=1 K=5 on the weighted batch", "group", 1.0, 5, "weighted"),
)


def _prepare(train: pl.DataFrame, validation: pl.DataFrame, test: pl.DataFrame) -> Prepared:
    pipeline = FeaturePipeline().fit(train)
    test_data = detector_data(pipeline, test)
    return Prepared(
        train=detector_data(pipeline, train),
        validation=detector_data(pipeline, validation),
        test=test_data,
        target=DetectorData(test_data.features, test_data.feature_names),
    )


def simulated(
    days: int, flows_per_day: int, seed: int = SIMULATION_SEED
) -> tuple[dict[str, Prepared], pl.DataFrame]:
    """The group-split and day-split views of the labelled days, and the per-day class counts."""
    frame = simulate(
        SimulationConfig(days=days, flows_per_day=flows_per_day, seed=seed, start=date(2021, 1, 4))
    )
    present = sorted(frame["day"].unique().to_list())
    labelled = frame.filter(pl.col("day") < present[-1])
    test = frame.filter(pl.col("day") == present[-1])
    group = supervised_split(labelled, validation_fraction=0.25, seed=0)
    by_day = DaySplit(validation_days=(present[-2],)).split(labelled)
    day_train, day_validation = by_day.frames(labelled)
    views = {
        "group": _prepare(group.train, group.validation, test),
        "day": _prepare(day_train, day_validation, test),
    }
    counts = frame.group_by("day", "label").len().pivot("label", index="day", values="len").sort("day")
    return views, counts.fill_null(0)


def _outcome(
    test: DetectorData, predicted: np.ndarray, scores: np.ndarray, validation: float, fit_s: float
) -> Outcome:
    assert test.labels is not None
    return Outcome(
        nad=nad_score(test.labels, predicted),
        macro_f1=macro_f_beta(test.labels, predicted, beta=1.0),
        roc_auc=roc_auc(scores, test.labels != NORMAL),
        validation=validation,
        fit_s=fit_s,
    )


def run_multitask(view: Prepared, setting: Setting, base: MultitaskConfig, seed: int) -> Outcome:
    """Train one network of ``setting`` with ``seed`` and score the test day."""
    use_target = setting.cmd_weight is not None
    config = replace(
        base,
        seed=seed,
        cmd_weight=setting.cmd_weight if use_target else 0.0,
        cmd_moments=setting.cmd_moments,
        cmd_source=setting.cmd_source,
        patience=base.patience if setting.early_stopping else base.epochs,
    )
    started = time.perf_counter()
    detector = MultitaskDetector(config).fit(
        view.train, validation=view.validation, target=view.target if use_target else None
    )
    fit_s = time.perf_counter() - started
    history = detector.history_
    chosen = history.selection[history.best_epoch - 1]
    outcome = _outcome(view.test, detector.predict(view.test), detector.score(view.test), chosen, fit_s)
    return replace(outcome, best_epoch=history.best_epoch, epochs_run=history.epochs_run)


def run_trees(view: Prepared, class_weight: str | None, seed: int) -> Outcome:
    """HistGradientBoostingClassifier early-stopped on the validation part."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    assert view.train.labels is not None and view.validation.labels is not None
    known = np.isin(view.validation.labels, np.unique(view.train.labels))
    model = HistGradientBoostingClassifier(
        max_iter=300, early_stopping=True, class_weight=class_weight, random_state=seed
    )
    started = time.perf_counter()
    model.fit(
        view.train.features,
        view.train.labels,
        X_val=view.validation.features[known],
        y_val=view.validation.labels[known],
    )
    fit_s = time.perf_counter() - started
    classes = list(model.classes_)
    normal = classes.index(NORMAL)
    probabilities = model.predict_proba(view.test.features)
    validation = nad_score(view.validation.labels, model.predict(view.validation.features))
    return _outcome(
        view.test, model.predict(view.test.features), 1.0 - probabilities[:, normal], validation, fit_s
    )


def run_autoencoder(view: Prepared, seed: int, epochs: int) -> Outcome:
    """The ``ae`` detector on normal rows; above the F1-optimal validation threshold a row is
    predicted as the most common attack class of the training data."""
    assert view.train.labels is not None and view.validation.labels is not None
    normal = view.train.take(view.train.labels == NORMAL)
    attacks = view.train.labels[view.train.labels != NORMAL]
    names, counts = np.unique(attacks, return_counts=True)
    common = str(names[np.argmax(counts)])
    detector = create("ae", {"seed": seed, "epochs": epochs, "device": "cpu"})
    started = time.perf_counter()
    detector.fit(normal)
    fit_s = time.perf_counter() - started
    validation_scores = detector.score(view.validation)
    threshold = f_beta_optimal_threshold(validation_scores, view.validation.labels != NORMAL)

    def predict(scores: np.ndarray) -> np.ndarray:
        return np.where(scores >= threshold, common, NORMAL)

    validation = nad_score(view.validation.labels, predict(validation_scores))
    scores = detector.score(view.test)
    return _outcome(view.test, predict(scores), scores, validation, fit_s)


def _summary(values: list[float]) -> str:
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.3f} ± {spread:.3f}"


def _row(experiment: str, name: str, outcomes: list[Outcome]) -> dict[str, Any]:
    row: dict[str, Any] = {"experiment": experiment, "setting": name}
    for field in ("nad", "macro_f1", "roc_auc", "validation"):
        values = [getattr(o, field) for o in outcomes]
        row[field] = _summary(values)
        row[f"{field}_per_seed"] = [round(v, 4) for v in values]
    row["fit_s"] = round(statistics.fmean(o.fit_s for o in outcomes), 1)
    if any(o.epochs_run for o in outcomes):
        row["best / run epochs"] = ", ".join(f"{o.best_epoch}/{o.epochs_run}" for o in outcomes)
    return row


@dataclass(frozen=True)
class Task:
    """One training run: a multitask setting, a tree baseline (``class_weight``) or the autoencoder."""

    experiment: str
    name: str
    kind: str
    seed: int
    setting: Setting | None = None
    class_weight: str | None = None


@dataclass
class _Worker:
    """What every worker process prepares once: the data views and the base configuration."""

    views: dict[str, Prepared]
    counts: pl.DataFrame
    base: MultitaskConfig
    epochs: int


_WORKER: _Worker | None = None


def _start_worker(
    days: int, flows_per_day: int, simulation_seed: int, threads: int, base: dict[str, Any], epochs: int
) -> None:
    """Prepare a worker (the simulation and features are deterministic: every worker, and the main
    process, gets the same)."""
    global _WORKER
    torch.set_num_threads(threads)
    views, counts = simulated(days, flows_per_day, simulation_seed)
    _WORKER = _Worker(views=views, counts=counts, base=MultitaskConfig.from_dict(base), epochs=epochs)


def _run(task: Task) -> tuple[Task, Outcome]:
    """Run one task in a prepared worker."""
    assert _WORKER is not None
    if task.kind == "multitask":
        assert task.setting is not None
        view = _WORKER.views[task.setting.split]
        return task, run_multitask(view, task.setting, _WORKER.base, task.seed)
    if task.kind == "trees":
        return task, run_trees(_WORKER.views["group"], task.class_weight, task.seed)
    return task, run_autoencoder(_WORKER.views["group"], task.seed, _WORKER.epochs)


def _tasks(experiments: list[str], seeds: int) -> list[Task]:
    tasks = [
        Task(setting.experiment, f"multitask, {setting.name}", "multitask", seed, setting=setting)
        for setting in SETTINGS
        if setting.experiment in experiments
        for seed in range(seeds)
    ]
    if "baselines" in experiments:
        # the trees are deterministic (no subsampling, a fixed validation part): one run each
        for weight in (None, "balanced"):
            tasks.append(
                Task(
                    "baseline",
                    f"HistGradientBoosting, class_weight={weight}",
                    "trees",
                    0,
                    class_weight=weight,
                )
            )
        tasks.extend(
            Task("baseline", "ae (normal vs most common attack class)", "ae", seed) for seed in range(seeds)
        )
    return tasks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=4, help="simulated days; the last one is the test day")
    parser.add_argument("--flows-per-day", type=int, default=20_000)
    parser.add_argument("--simulation-seed", type=int, default=SIMULATION_SEED)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=12, help="most epochs per network")
    parser.add_argument("--steps", type=int, default=40, help="batches per epoch")
    parser.add_argument("--width", type=int, default=64, help="encoder width")
    parser.add_argument("--experiments", nargs="+", default=["a", "b", "c", "baselines"])
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (worker processes)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    args = parser.parse_args()
    if args.days < 3:
        parser.error("--days must be at least 3 (two to train on for the day split, one to test)")
    started = time.perf_counter()
    base = MultitaskConfig(
        width=args.width,
        latent=16,
        head_width=16,
        batch_size=256,
        steps_per_epoch=args.steps,
        epochs=args.epochs,
        patience=4,
        seeds=1,
        device="cpu",
    )
    worker_options = (
        args.days,
        args.flows_per_day,
        args.simulation_seed,
        args.threads,
        base.to_dict(),
        args.epochs,
    )
    _start_worker(*worker_options)
    assert _WORKER is not None
    views = _WORKER.views
    console.print("[bold]flows per day and class[/bold] (the last day is the test day)")
    console.print(_WORKER.counts)
    for name, view in views.items():
        console.print(
            f"{name} split: {len(view.train):,} training rows, {len(view.validation):,} validation rows, "
            f"{len(view.test):,} test rows, {view.train.width} features"
        )
    tasks = _tasks(args.experiments, args.seeds)
    console.print(f"{len(tasks)} runs on {args.jobs} worker(s)")
    done: dict[tuple[str, str], dict[int, Outcome]] = {}

    def record(task: Task, outcome: Outcome) -> None:
        done.setdefault((task.experiment, task.name), {})[task.seed] = outcome
        console.print(
            f"  ({task.experiment}) {task.name}, seed {task.seed}: NAD {outcome.nad:.3f} macro-F1 "
            f"{outcome.macro_f1:.3f} ROC-AUC {outcome.roc_auc:.3f} validation {outcome.validation:.3f} "
            f"({outcome.fit_s:.1f} s)"
        )

    if args.jobs > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(
            max_workers=args.jobs, mp_context=context, initializer=_start_worker, initargs=worker_options
        ) as pool:
            for future in as_completed([pool.submit(_run, task) for task in tasks]):
                record(*future.result())
    else:
        for task in tasks:
            record(*_run(task))
    rows: list[dict[str, Any]] = []
    for key in dict.fromkeys((task.experiment, task.name) for task in tasks):
        rows.append(_row(*key, [outcome for _, outcome in sorted(done[key].items())]))
    if "baselines" in args.experiments:
        test = views["group"].test
        assert test.labels is not None
        everything_normal = np.full(len(test), NORMAL)
        anchor = _outcome(test, everything_normal, np.zeros(len(test)), float("nan"), 0.0)
        rows.append(_row("baseline", "predict every row normal", [anchor]))
    total_s = time.perf_counter() - started
    report(
        "ablation",
        f"multitask ablations on simulated traffic: test = last of {args.days} days, "
        f"mean ± std over {args.seeds} seeds ({total_s / 60:.1f} min in all)",
        ["experiment", "setting", "nad", "macro_f1", "roc_auc", "validation", "best / run epochs", "fit_s"],
        rows,
        options=vars(args),
        multitask_config=base.to_dict(),
        seconds=round(total_s, 1),
    )


if __name__ == "__main__":
    main()
