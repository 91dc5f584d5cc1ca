"""Detection quality of every unsupervised detector against the IsolationForest and ECOD baselines,
on the same features and split, thresholds chosen on validation data only.

Datasets: (a) the simulator: train on the normal flows of the first days, validate on the next day,
test on the last day (new address plan and class mix); ``sim_week``: the same over nine days at a
quarter of the flows a day, trained on a week (both calendar cycles learnt); (b) UNSW-NB15 and (c) NSL-KDD
``KDDTrain+_20Percent``: train on half of the normal rows, the rest (normal and attacks) split in
half, stratified, into validation and test (fixed seed).

Validation-based selection: a small grid of deep unsupervised configurations (model, learning rate,
feature scaling bound, and with ``--grid large`` architectures) is trained on the same normal
training rows and the same split; each is scored on the labelled validation split only (mean of
ROC-AUC and PR-AUC), and the best one (with ``--seeds N``: the mean score of it and of the same
configuration trained with N - 1 further seeds) is scored once on the test split as the row
``<model> (selected)`` (its fit seconds: the chosen configuration's). Its config and the whole
grid's validation scores are printed and saved in the JSON. Every neural fit, in the grid too,
trains for at most ``--budget`` seconds.

The time-bucket view (datasets with times, the simulator): every model again on per-bucket
metrics (``--bucket-seconds``, network-wide or ``--bucket-by src``), view fitted on the normal
training flows, each flow scored with its bucket's score and measured on its own label; a second
table (``detection-<dataset>-buckets``). ``--bucket-seconds 0`` skips it.

Columns: ROC-AUC, PR-AUC, precision / recall / F1 at the F1-optimal validation threshold, fit
seconds, scoring flows/s. Run: ``.venv/bin/python benchmarks/detection.py [--datasets sim unsw kdd]
[--models ae iforest ...] [--budget 15] [--grid none|small|large] [--seeds 1] [--threads 1]
[--bucket-seconds 60] [--bucket-by src] [--bucket-calendar on|off|both]``;
prints one table per dataset and writes ``benchmarks/results/detection.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import console, data_dir, report
from nadkit.evaluation.metrics import BinaryMetrics, binary_metrics, pr_auc, roc_auc
from nadkit.evaluation.thresholds import f_beta_optimal_threshold
from nadkit.features.buckets import BucketView
from nadkit.features.data import detector_data
from nadkit.features.pipeline import FeatureConfig, FeaturePipeline
from nadkit.features.series import BucketConfig
from nadkit.models import REGISTRY, Detector, DetectorData, create
from nadkit.models.neural import NeuralConfig
from nadkit.schema import NORMAL
from nadkit.sources import load_flows

SEED = 0

#: the feature pipeline's default bound on scaled values, used by every plain row and the baselines
DEFAULT_MAX_SCALED = FeatureConfig().max_scaled

Parts = tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]


@dataclass(frozen=True)
class Split:
    """Features of the training, validation and test parts."""

    train: DetectorData
    validation: DetectorData
    test: DetectorData


@dataclass(frozen=True)
class Candidate:
    """One configuration of the selection grid: a registered model, overrides of its default config,
    and the bound on scaled feature values (:attr:`FeatureConfig.max_scaled`) of its features."""

    model: str
    options: tuple[tuple[str, Any], ...] = ()
    max_scaled: float = DEFAULT_MAX_SCALED

    @property
    def label(self) -> str:
        """Model name and what differs from its defaults, e.g. ``ae learning_rate=0.003 max_scaled=3``."""
        words = [self.model, *(f"{key}={_text(value)}" for key, value in self.options)]
        if self.max_scaled != DEFAULT_MAX_SCALED:
            words.append(f"max_scaled={self.max_scaled:g}")
        return " ".join(words)

    def to_dict(self) -> dict[str, Any]:
        """The model, its overrides and the scaling bound, JSON-ready."""
        return {"model": self.model, **dict(self.options), "max_scaled": self.max_scaled}


def _text(value: Any) -> str:
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


FAST = (("learning_rate", 3e-3),)
#: model family, learning rate and feature scaling bound
SMALL_GRID: tuple[Candidate, ...] = (
    Candidate("ae"),
    Candidate("ae", FAST),
    Candidate("ae", max_scaled=3.0),
    Candidate("ae", FAST, max_scaled=3.0),
    Candidate("vae"),
)
#: the small grid plus architectures, longer training and a third scaling bound
LARGE_GRID: tuple[Candidate, ...] = (
    *SMALL_GRID,
    Candidate("ae", max_scaled=10.0),
    Candidate("ae", FAST, max_scaled=10.0),
    Candidate("ae", (("hidden", (128, 64)),), max_scaled=3.0),
    Candidate("ae", (("bottleneck", 32),), max_scaled=3.0),
    Candidate("ae", (("epochs", 120), ("patience", 10)), max_scaled=3.0),
    Candidate("vae", max_scaled=3.0),
    Candidate("vae", (("learning_rate", 1e-3),)),
)
GRIDS: dict[str, tuple[Candidate, ...]] = {"none": (), "small": SMALL_GRID, "large": LARGE_GRID}


def simulated(flows_per_day: int, train_days: int = 2) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Train = normal flows of the first ``train_days`` days from a Monday, validation = the next
    day, test = the day after (``sim``: days 1-2 / 3 / 4; ``sim_week``: a week / 8 / 9)."""
    from datetime import date

    from nadkit.simulate import SimulationConfig, simulate

    config = SimulationConfig(
        days=train_days + 2, flows_per_day=flows_per_day, seed=7, start=date(2021, 1, 4)
    )
    frame = simulate(config)
    days = sorted(frame["day"].unique().to_list())
    train = frame.filter(pl.col("day").is_in(days[:train_days]) & (pl.col("label") == NORMAL))
    validation = frame.filter(pl.col("day") == days[train_days])
    return train, validation, frame.filter(pl.col("day") == days[train_days + 1])


def tabular(path: Path, fmt: str) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame] | None:
    """Half of the normal rows to train; the rest split in half, stratified by label."""
    if not path.exists():
        console.print(f"[yellow]skipping {path}: not found (set NADKIT_DATA_DIR)")
        return None
    frame, _ = load_flows(path, format=fmt)
    rng = np.random.default_rng(SEED)
    labels = frame["label"].fill_null(NORMAL).to_numpy()
    side = np.empty(frame.height, dtype=np.int8)  # 0 train, 1 validation, 2 test
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == label))
        if label == NORMAL:
            half = len(rows) // 2
            side[rows[:half]] = 0
            rest = rows[half:]
        else:
            rest = rows
        middle = len(rest) // 2
        side[rest[:middle]] = 1
        side[rest[middle:]] = 2
    pick = pl.Series(side)
    return frame.filter(pick == 0), frame.filter(pick == 1), frame.filter(pick == 2)


def configure(
    name: str, budget_s: float, options: Sequence[tuple[str, Any]] = (), seed: int = SEED
) -> Detector:
    """The model's default config with ``options`` applied, and the time budget and seed for neural
    models."""
    cls = REGISTRY[name]
    config = dataclasses.replace(cls.config_class(), **dict(options))
    if isinstance(config, NeuralConfig):
        config = dataclasses.replace(config, time_budget_s=budget_s, seed=seed)
    return create(name, config)


def featurize(parts: Parts, max_scaled: float) -> Split:
    """Features of the three parts from a pipeline fitted on the training part."""
    pipeline = FeaturePipeline(FeatureConfig(max_scaled=max_scaled)).fit(parts[0])
    train, validation, test = (detector_data(pipeline, part) for part in parts)
    return Split(train=train, validation=validation, test=test)


def fit(detector: Detector, train: DetectorData) -> float:
    """Fit ``detector`` on ``train``; the seconds it took."""
    started = time.perf_counter()
    detector.fit(train)
    return time.perf_counter() - started


def ensemble_score(members: Sequence[Detector], data: DetectorData) -> np.ndarray:
    """The mean score of the members (one member: its score)."""
    return np.mean([member.score(data) for member in members], axis=0)


def measure(
    dataset: str, model: str, members: Sequence[Detector], split: Split, fit_s: float
) -> dict[str, object]:
    """The test row of a fitted detector (or seed ensemble): threshold F1-optimal on validation."""
    threshold = f_beta_optimal_threshold(
        ensemble_score(members, split.validation), _attacks(split.validation)
    )
    started = time.perf_counter()
    scores = ensemble_score(members, split.test)
    score_s = time.perf_counter() - started
    metrics = binary_metrics(scores, _attacks(split.test), threshold)
    return table_row(dataset, "flows", model, metrics, fit_s, len(split.test) / score_s)


def table_row(
    dataset: str, view: str, model: str, metrics: BinaryMetrics, fit_s: float, flows_per_s: float
) -> dict[str, object]:
    """One row of a detection table (printed as it is measured)."""
    console.print(f"  {model}: ROC-AUC {metrics.roc_auc:.4f} PR-AUC {metrics.pr_auc:.4f} F1 {metrics.f1:.4f}")
    return {
        "dataset": dataset,
        "view": view,
        "model": model,
        "roc_auc": round(metrics.roc_auc, 4),
        "pr_auc": round(metrics.pr_auc, 4),
        "precision": round(metrics.precision, 4),
        "recall": round(metrics.recall, 4),
        "f1": round(metrics.f1, 4),
        "fit_s": round(fit_s, 1),
        "score_flows_per_s": round(flows_per_s),
    }


def _attacks(data: DetectorData) -> np.ndarray:
    return data.labels != NORMAL


def bucket_rows(
    dataset: str, parts: Parts, models: list[str], budget_s: float, config: BucketConfig
) -> list[dict[str, object]]:
    """Every model on the time-bucket view: fitted on the buckets of the normal training flows, each
    validation and test flow scored with its bucket's score (threshold F1-optimal on validation
    flows)."""
    train, validation, test = parts
    view = BucketView.fit(train, config)
    train_data = view.data(view.series(train))
    series = {"validation": view.series(validation), "test": view.series(test)}
    flows_attack = {
        name: (part["label"].fill_null(NORMAL) != NORMAL).to_numpy()
        for name, part in (("validation", validation), ("test", test))
    }
    over = f"per {config.by}" if config.by else "network"
    console.print(
        f"[bold]{dataset}, buckets of {config.bucket_s:g} s ({over})[/bold]: {len(train_data):,} training "
        f"buckets, {series['test'].frame.height:,} test buckets, {train_data.width} metrics"
    )
    rows = []
    for name in models:
        detector = configure(name, budget_s)
        fit_s = fit(detector, train_data)
        validation_scores = series["validation"].to_flows(detector.score(view.data(series["validation"])))
        threshold = f_beta_optimal_threshold(validation_scores, flows_attack["validation"])
        started = time.perf_counter()
        scores = series["test"].to_flows(detector.score(view.data(series["test"])))
        score_s = time.perf_counter() - started
        metrics = binary_metrics(scores, flows_attack["test"], threshold)
        view_name = f"buckets {config.bucket_s:g} s {over}"
        if config.calendar:
            view_name += f" calendar ({', '.join(view.cycles) or 'no cycle'})"
        rows.append(table_row(dataset, view_name, name, metrics, fit_s, test.height / score_s))
    return rows


def select(
    dataset: str,
    parts: Parts,
    base: Split,
    grid: Sequence[Candidate],
    budget_s: float,
    seeds: int,
    fitted: dict[Candidate, tuple[Detector, float]],
) -> dict[str, object]:
    """Fit every grid candidate on the training rows, score it on the validation split only, and
    measure the best one (refitted with ``seeds`` seeds, scores averaged) once on the test split.

    ``fitted``: detectors already fitted in the default config on the default features, reused for
    the candidates they are."""
    started = time.perf_counter()
    splits = {DEFAULT_MAX_SCALED: base}
    trials: list[dict[str, object]] = []
    best: tuple[float, Candidate, Detector, float] | None = None
    for candidate in grid:
        if candidate.max_scaled not in splits:
            splits[candidate.max_scaled] = featurize(parts, candidate.max_scaled)
        split = splits[candidate.max_scaled]
        if candidate in fitted:
            detector, fit_s = fitted[candidate]
        else:
            detector = configure(candidate.model, budget_s, candidate.options)
            fit_s = fit(detector, split.train)
        scores = detector.score(split.validation)
        validation_roc = roc_auc(scores, _attacks(split.validation))
        validation_pr = pr_auc(scores, _attacks(split.validation))
        objective = (validation_roc + validation_pr) / 2
        trials.append(
            {
                "config": candidate.label,
                "validation_roc_auc": round(validation_roc, 4),
                "validation_pr_auc": round(validation_pr, 4),
                "fit_s": round(fit_s, 1),
            }
        )
        console.print(
            f"  grid {candidate.label}: validation ROC-AUC {validation_roc:.4f} PR-AUC {validation_pr:.4f}"
        )
        if best is None or objective > best[0]:
            best = (objective, candidate, detector, fit_s)
    if best is None:
        raise ValueError("the selection grid is empty")
    _, chosen, detector, fit_s = best
    split = splits[chosen.max_scaled]
    members = [detector]
    for seed in range(SEED + 1, SEED + seeds):
        member = configure(chosen.model, budget_s, chosen.options, seed=seed)
        fit_s += fit(member, split.train)
        members.append(member)
    console.print(
        f"  selected on validation: [bold]{chosen.label}[/bold]" + (f" ({seeds} seeds)" if seeds > 1 else "")
    )
    row = measure(dataset, f"{chosen.model} (selected)", members, split, fit_s)
    row["config"] = chosen.label
    row["selection"] = {
        "objective": "mean of validation ROC-AUC and PR-AUC",
        "chosen": chosen.to_dict(),
        "seeds": seeds,
        "grid": trials,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return row


def evaluate(
    dataset: str, parts: Parts, models: list[str], budget_s: float, grid: Sequence[Candidate], seeds: int
) -> list[dict[str, object]]:
    base = featurize(parts, DEFAULT_MAX_SCALED)
    validation_attack = _attacks(base.validation)
    test_attack = _attacks(base.test)
    console.print(
        f"[bold]{dataset}[/bold]: {len(base.train):,} normal training rows, {len(base.validation):,} "
        f"validation ({validation_attack.sum():,} attacks), {len(base.test):,} test "
        f"({test_attack.sum():,} attacks), {base.train.width} features"
    )
    rows = []
    fitted: dict[Candidate, tuple[Detector, float]] = {}
    for name in models:
        detector = configure(name, budget_s)
        fit_s = fit(detector, base.train)
        rows.append(measure(dataset, name, [detector], base, fit_s))
        fitted[Candidate(name)] = (detector, fit_s)
    if grid:
        rows.append(select(dataset, parts, base, grid, budget_s, seeds, fitted))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["sim", "unsw", "kdd"])
    parser.add_argument("--models", nargs="+", default=None, help="default: every unsupervised model")
    parser.add_argument("--budget", type=float, default=15.0, help="training seconds per neural model")
    parser.add_argument("--flows-per-day", type=int, default=40_000)
    parser.add_argument(
        "--grid", choices=sorted(GRIDS), default="small", help="validation-based selection grid (none: skip)"
    )
    parser.add_argument("--seeds", type=int, default=1, help="seeds of the selected configuration, averaged")
    parser.add_argument(
        "--bucket-seconds", type=float, default=60.0, help="bucket width of the time-bucket view (0: skip it)"
    )
    parser.add_argument("--bucket-by", default=None, help="one bucket series per value of this column")
    parser.add_argument(
        "--bucket-calendar",
        choices=("on", "off", "both"),
        default="on",
        help="the bucket view with its calendar features, without them, or both side by side",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1, like the single-threaded baselines; on a shared 2-core machine a second "
        "thread slowed these networks several-fold)",
    )
    args = parser.parse_args()
    unsupervised = sorted(name for name, cls in REGISTRY.items() if not cls.supervised)
    models = args.models or unsupervised
    unknown = [m for m in models if m not in unsupervised]
    if unknown:
        parser.error(f"unknown or supervised model(s) {unknown}; unsupervised ones: {unsupervised}")
    if args.seeds < 1 or args.threads < 1:
        parser.error("--seeds and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    root = data_dir()
    sources = {
        "sim": lambda: simulated(args.flows_per_day),
        "sim_week": lambda: simulated(args.flows_per_day // 4, train_days=7),
        "unsw": lambda: tabular(root / "unsw_nb15" / "UNSW_NB15_training-set.csv", "unsw"),
        "kdd": lambda: tabular(root / "nsl_kdd" / "KDDTrain+_20Percent.txt", "kdd"),
    }
    columns = ["model", "roc_auc", "pr_auc", "precision", "recall", "f1", "fit_s", "score_flows_per_s"]
    rows: list[dict[str, object]] = []
    started = time.perf_counter()
    for dataset in args.datasets:
        parts = sources[dataset]()
        if parts is None:
            continue
        result = evaluate(dataset, parts, models, args.budget, GRIDS[args.grid], args.seeds)
        rows.extend(result)
        console.print(f"{dataset}: {time.perf_counter() - started:.0f} s since the start")
        report(
            f"detection-{dataset}",
            f"Detection on {dataset} (threshold: F1-optimal on validation)",
            columns,
            result,
        )
        if args.bucket_seconds > 0 and "time" in parts[0].columns:
            calendars = {"on": (True,), "off": (False,), "both": (True, False)}[args.bucket_calendar]
            buckets = []
            for calendar in calendars:
                config = BucketConfig(bucket_s=args.bucket_seconds, by=args.bucket_by, calendar=calendar)
                buckets += bucket_rows(dataset, parts, models, args.budget, config)
            rows.extend(buckets)
            report(
                f"detection-{dataset}-buckets",
                f"Detection on {dataset}, time-bucket view, flows scored by their bucket "
                "(threshold: F1-optimal on validation)",
                ["view", *columns],
                buckets,
            )
    settings = {
        "budget_s": args.budget,
        "grid": args.grid,
        "seeds": args.seeds,
        "threads": args.threads,
        "bucket_seconds": args.bucket_seconds,
        "bucket_by": args.bucket_by,
    }
    console.print(f"total {time.perf_counter() - started:.0f} s")
    report("detection", "Detection, all datasets", ["dataset", "view", *columns], rows, settings=settings)


if __name__ == "__main__":
    main()
