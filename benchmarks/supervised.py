"""The multitask detector on real labelled flow data against a gradient-boosted-trees baseline on the
same features and split.

Datasets (``$NADKIT_DATA_DIR`` or ``../shared/data``): UNSW-NB15 (the 82,332-row partition; normal
and nine attack categories), the CIC-IDS2017 k-means sample (benign and six attack classes) and
NSL-KDD ``KDDTrain+_20Percent`` (the classes are the attack families: normal, DoS, Probe, R2L, U2R).
None has addresses or times, so every split is stratified by class: 60 % train, 20 % validation
(early stopping for both models), 20 % held-out test (fixed seed).

Models: ``multitask`` with ``--seeds`` networks (each network alone, mean ± std over the seeds, and
their ensemble, which averages the class probabilities), no CMD (training and test come from the
same distribution here); scikit-learn's HistGradientBoostingClassifier early-stopped on the
validation part, unweighted and with balanced class weights (deterministic).

Columns: multi-class macro F1 on the test part, binary accuracy (attack = any class but normal), the
ROC-AUC of ``1 - P(normal)`` for attack vs normal, fit seconds. Run: ``.venv/bin/python
benchmarks/supervised.py [--datasets unsw cic kdd] [--seeds 3] [--epochs 30] [--budget 0]``;
writes ``benchmarks/results/supervised.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import console, data_dir, report
from nadkit.features.pipeline import FeaturePipeline
from nadkit.metrics import macro_f_beta, roc_auc
from nadkit.models.base import DetectorData
from nadkit.models.multitask import MultitaskConfig, MultitaskDetector
from nadkit.schema import NORMAL
from nadkit.sources import load_flows
from nadkit.split import stratified_holdout
from nadkit.training import detector_data, use_label_column

SEED = 0
#: dataset -> (file under the data folder, reader, label column)
DATASETS: dict[str, tuple[str, str, str]] = {
    "unsw": ("unsw_nb15/UNSW_NB15_training-set.csv", "unsw", "label"),
    "cic": ("cicids2017/CICIDS2017_sample_km.csv", "cic", "label"),
    "kdd": ("nsl_kdd/KDDTrain+_20Percent.txt", "kdd", "attack_family"),
}


@dataclass(frozen=True)
class Parts:
    """Train, validation and test parts of one dataset, featurized by a pipeline fitted on train."""

    train: DetectorData
    validation: DetectorData
    test: DetectorData


def load(name: str) -> Parts | None:
    """Read a dataset and split it 60/20/20, stratified by class; None when the file is missing."""
    relative, reader, label_column = DATASETS[name]
    path = data_dir() / relative
    if not path.exists():
        console.print(f"[yellow]skipping {name}: {path} not found (set NADKIT_DATA_DIR)")
        return None
    frame, _ = load_flows(path, format=reader)
    frame = use_label_column(frame, label_column).filter(pl.col("label").is_not_null())
    labels = frame["label"].to_numpy().astype(str)
    _, codes = np.unique(labels, return_inverse=True)
    test_mask = stratified_holdout(codes, 0.2, SEED)
    rest = np.flatnonzero(~test_mask)
    validation_mask = np.zeros(frame.height, dtype=bool)
    validation_mask[rest[stratified_holdout(codes[rest], 0.25, SEED + 1)]] = True
    train_mask = ~test_mask & ~validation_mask
    train = frame.filter(pl.Series(train_mask))
    pipeline = FeaturePipeline().fit(train)
    parts = Parts(
        train=detector_data(pipeline, train),
        validation=detector_data(pipeline, frame.filter(pl.Series(validation_mask))),
        test=detector_data(pipeline, frame.filter(pl.Series(test_mask))),
    )
    classes = dict(sorted(frame["label"].value_counts().iter_rows()))
    console.print(
        f"[bold]{name}[/bold]: {len(parts.train):,} / {len(parts.validation):,} / {len(parts.test):,} rows "
        f"(train / validation / test), {parts.train.width} features, classes {classes}"
    )
    return parts


def _measure(test: DetectorData, predicted: np.ndarray, attack_score: np.ndarray) -> dict[str, float]:
    assert test.labels is not None
    truth_attack = test.labels != NORMAL
    return {
        "macro_f1": macro_f_beta(test.labels, predicted, beta=1.0),
        "binary_accuracy": float(np.mean((predicted != NORMAL) == truth_attack)),
        "roc_auc": roc_auc(attack_score, truth_attack),
    }


def run_multitask(parts: Parts, seeds: int, epochs: int, budget_s: float | None) -> list[dict[str, Any]]:
    """One ensemble of ``seeds`` networks; each network measured alone, and the ensemble."""
    config = MultitaskConfig(
        seeds=seeds, epochs=epochs, time_budget_s=budget_s, seed=SEED, cmd_weight=0.0, device="cpu"
    )
    started = time.perf_counter()
    detector = MultitaskDetector(config).fit(parts.train, validation=parts.validation)
    fit_s = time.perf_counter() - started
    classes = np.asarray(detector.classes_)
    classifier = detector.probability_module()
    with torch.no_grad():
        z = classifier.standardize(torch.from_numpy(parts.test.features))
        alone = [torch.softmax(member(z)[1], dim=1).double().numpy() for member in classifier.members]
    singles = [_measure(parts.test, classes[p.argmax(axis=1)], 1.0 - p[:, 0]) for p in alone]
    row: dict[str, Any] = {"model": f"multitask, one network (mean ± std of {seeds})"}
    for key in singles[0]:
        values = [s[key] for s in singles]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        row[key] = f"{statistics.fmean(values):.4f} ± {spread:.4f}"
        row[f"{key}_per_seed"] = [round(v, 4) for v in values]
    row["fit_s"] = round(fit_s / seeds, 1)
    row["epochs"] = [h.epochs_run for h in detector.histories_]
    ensemble = _measure(parts.test, detector.predict(parts.test), detector.score(parts.test))
    ensemble_row = {
        "model": f"multitask, ensemble of {seeds}",
        **{k: f"{v:.4f}" for k, v in ensemble.items()},
        "fit_s": round(fit_s, 1),
    }
    return [row, ensemble_row]


def run_trees(parts: Parts, class_weight: str | None) -> dict[str, Any]:
    """HistGradientBoostingClassifier early-stopped on the validation part."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    assert parts.train.labels is not None and parts.validation.labels is not None
    known = np.isin(parts.validation.labels, np.unique(parts.train.labels))
    model = HistGradientBoostingClassifier(
        max_iter=500, early_stopping=True, class_weight=class_weight, random_state=SEED
    )
    started = time.perf_counter()
    model.fit(
        parts.train.features,
        parts.train.labels,
        X_val=parts.validation.features[known],
        y_val=parts.validation.labels[known],
    )
    fit_s = time.perf_counter() - started
    normal = list(model.classes_).index(NORMAL)
    attack_score = 1.0 - model.predict_proba(parts.test.features)[:, normal]
    measured = _measure(parts.test, model.predict(parts.test.features), attack_score)
    return {
        "model": f"HistGradientBoosting, class_weight={class_weight}",
        **{k: f"{v:.4f}" for k, v in measured.items()},
        "fit_s": round(fit_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--budget", type=float, default=0.0, help="training seconds per multitask ensemble (0: no limit)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 is fastest for these sizes)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    columns = ["dataset", "model", "macro_f1", "binary_accuracy", "roc_auc", "fit_s"]
    for name in args.datasets:
        parts = load(name)
        if parts is None:
            continue
        found = run_multitask(parts, args.seeds, args.epochs, args.budget or None)
        found += [run_trees(parts, None), run_trees(parts, "balanced")]
        for row in found:
            row["dataset"] = name
            console.print(
                f"  {row['model']}: macro-F1 {row['macro_f1']} binary accuracy {row['binary_accuracy']}"
            )
        rows.extend(found)
    report(
        "supervised",
        "multitask vs gradient-boosted trees on real data (stratified 60/20/20 split, test part)",
        columns,
        rows,
        options=vars(args),
    )


if __name__ == "__main__":
    main()
