"""Detection quality of every registered detector against the IsolationForest and ECOD baselines,
on the same features and split, thresholds chosen on validation data only.

Datasets: (a) the simulator: train on the normal flows of the first days, validate on the next day,
test on the last day (new address plan and class mix); (b) UNSW-NB15 and (c) NSL-KDD
``KDDTrain+_20Percent``: train on half of the normal rows, the rest (normal and attacks) split in
half, stratified, into validation and test (fixed seed).

Columns: ROC-AUC, PR-AUC, precision / recall / F1 at the F1-optimal validation threshold, fit
seconds, scoring flows/s. Run: ``.venv/bin/python benchmarks/detection.py [--datasets sim unsw kdd]
[--models ae iforest ...] [--budget 120]``; prints one table per dataset and writes
``benchmarks/results/detection.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import console, data_dir, report
from nadkit.features.pipeline import FeaturePipeline
from nadkit.metrics import binary_metrics
from nadkit.models import REGISTRY, create
from nadkit.models.neural import NeuralConfig
from nadkit.schema import NORMAL
from nadkit.sources import load_flows
from nadkit.thresholds import f_beta_optimal_threshold
from nadkit.training import detector_data

SEED = 0


def simulated(flows_per_day: int) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Train = normal flows of days 1-2, validation = day 3, test = day 4 (a weekday each)."""
    from datetime import date

    from nadkit.synthetic import SimulationConfig, simulate

    frame = simulate(SimulationConfig(days=4, flows_per_day=flows_per_day, seed=7, start=date(2021, 1, 4)))
    days = sorted(frame["day"].unique().to_list())
    train = frame.filter(pl.col("day").is_in(days[:2]) & (pl.col("label") == NORMAL))
    return train, frame.filter(pl.col("day") == days[2]), frame.filter(pl.col("day") == days[3])


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


def configure(name: str, budget_s: float):
    """The model's default config, with the time budget for neural models."""
    cls = REGISTRY[name]
    config = cls.config_class()
    if isinstance(config, NeuralConfig):
        config = dataclasses.replace(config, time_budget_s=budget_s, seed=SEED)
    return create(name, config)


def evaluate(dataset: str, parts, models: list[str], budget_s: float) -> list[dict[str, object]]:
    train, validation, test = parts
    pipeline = FeaturePipeline().fit(train)
    train_data = detector_data(pipeline, train)
    validation_data = detector_data(pipeline, validation)
    test_data = detector_data(pipeline, test)
    validation_attack = validation_data.labels != NORMAL
    test_attack = test_data.labels != NORMAL
    console.print(
        f"[bold]{dataset}[/bold]: {len(train_data):,} normal training rows, {len(validation_data):,} "
        f"validation ({validation_attack.sum():,} attacks), {len(test_data):,} test "
        f"({test_attack.sum():,} attacks), {train_data.width} features"
    )
    rows = []
    for name in models:
        detector = configure(name, budget_s)
        started = time.perf_counter()
        detector.fit(train_data)
        fit_s = time.perf_counter() - started
        threshold = f_beta_optimal_threshold(detector.score(validation_data), validation_attack)
        started = time.perf_counter()
        scores = detector.score(test_data)
        score_s = time.perf_counter() - started
        metrics = binary_metrics(scores, test_attack, threshold)
        rows.append(
            {
                "dataset": dataset,
                "model": name,
                "roc_auc": round(metrics.roc_auc, 4),
                "pr_auc": round(metrics.pr_auc, 4),
                "precision": round(metrics.precision, 4),
                "recall": round(metrics.recall, 4),
                "f1": round(metrics.f1, 4),
                "fit_s": round(fit_s, 1),
                "score_flows_per_s": round(len(test_data) / score_s),
            }
        )
        console.print(
            f"  {name}: ROC-AUC {metrics.roc_auc:.4f} PR-AUC {metrics.pr_auc:.4f} F1 {metrics.f1:.4f}"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["sim", "unsw", "kdd"])
    parser.add_argument("--models", nargs="+", default=None, help="default: every registered model")
    parser.add_argument("--budget", type=float, default=120.0, help="training seconds per neural model")
    parser.add_argument("--flows-per-day", type=int, default=40_000)
    args = parser.parse_args()
    models = args.models or sorted(REGISTRY)
    unknown = [m for m in models if m not in REGISTRY]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; registered: {sorted(REGISTRY)}")
    root = data_dir()
    sources = {
        "sim": lambda: simulated(args.flows_per_day),
        "unsw": lambda: tabular(root / "unsw_nb15" / "UNSW_NB15_training-set.csv", "unsw"),
        "kdd": lambda: tabular(root / "nsl_kdd" / "KDDTrain+_20Percent.txt", "kdd"),
    }
    rows: list[dict[str, object]] = []
    for dataset in args.datasets:
        parts = sources[dataset]()
        if parts is None:
            continue
        result = evaluate(dataset, parts, models, args.budget)
        rows.extend(result)
        report(
            f"detection-{dataset}",
            f"Detection on {dataset} (threshold: F1-optimal on validation)",
            ["model", "roc_auc", "pr_auc", "precision", "recall", "f1", "fit_s", "score_flows_per_s"],
            result,
        )
    report(
        "detection",
        "Detection, all datasets",
        ["dataset", "model", "roc_auc", "pr_auc", "precision", "recall", "f1", "fit_s", "score_flows_per_s"],
        rows,
    )


if __name__ == "__main__":
    main()
