"""The supervised detectors on real labelled flow data against gradient-boosted trees on the same
features and split.

Datasets (``$NADKIT_DATA_DIR`` or ``../shared/data``): UNSW-NB15 (the 82,332-row partition; normal
and nine attack categories), the CIC-IDS2017 k-means sample (benign and six attack classes) and
NSL-KDD ``KDDTrain+_20Percent`` (the classes are the attack families: normal, DoS, Probe, R2L, U2R).
None has addresses or times, so every split is stratified by class: 60 % train, 20 % validation
(early stopping, and the hybrid's weight), 20 % held-out test (fixed seed); no CMD (training and test
come from the same distribution). ``--splits N`` runs everything on N such splits, drawn with other
seeds (the first is the fixed one), and adds per model its mean over them and on how many it was
ahead of the balanced trees: one split's test part holds a few rows of the rarest classes, so a
difference there can be the split's luck.

Time-shifted CIC-IDS2017 (``cicshift``, the "improved" per-class sample sorted by time): train on
Monday to Thursday (benign, FTP/SSH-Patator, the DoS family with Heartbleed, web attacks,
infiltration and the infiltration port scan), test on Friday (benign, DDoS, port scan, botnet). Each
day has its own attack families, so the task is binary, attack vs normal: Friday's DDoS and port
scan resemble earlier DoS and infiltration port-scan traffic, its botnet is new. A stratified 20 % of
Monday to Thursday is the validation part. The features leave out the address, segment and
traffic-counter groups: the rows are a per-class sample, so counts of neighbouring flows would
reflect the sampling, not the traffic. ``multitask`` is trained without and with CMD towards the
(unlabelled) Friday rows, the rows it is then tested on.

``kddunseen`` (only when named): NSL-KDD 20 % with a third of its attack types (drawn per split) in
the test part only, the other types and normal traffic split 60 / 20 / 20 by type, the attack
families as classes: how a model trained on some attacks of a family does on that family's others,
as on KDDTest+'s new attacks; ``unseen_detection`` is the share of the unseen types' test rows called
an attack of any class.

``sim`` (only when named, ``--datasets sim``: simulated, not real traffic): the simulator's labelled
days from a Monday, 20,000 flows a day, normal traffic and four attack classes (DDoS smurf, IP
sweep, port sweep, nmap); days 1-4 are training and a stratified 20 % validation part, day 5 the
test part; ``--splits`` simulates other weeks. Its flows have times, so it shows how the hybrid's
share chosen on the latest flows does on the next day.

Models: ``multitask_gbt`` with ``--seeds`` networks, fitted once, reported three ways (on
``cicshift`` and ``sim``, whose rows have times, it chooses the network's share on the latest quarter
of the training and validation rows with a probe pair, its ``weight_from: auto``; ``--set
weight_from=validation`` chooses it on the validation part instead): its networks alone
(``multitask``: each network alone, mean ± std over the seeds, and their ensemble, which averages
the class probabilities; the same networks ``multitask`` itself trains), each network with the
trees, mean ± std, and the whole hybrid. scikit-learn's HistGradientBoostingClassifier
early-stopped on the validation part, unweighted and with balanced class weights: deterministic (the
validation part is given and no row is subsampled), so one fit each.

Columns: multi-class macro F1 on the test part, binary accuracy (attack = any class but normal), the
ROC-AUC of ``1 - P(normal)`` for attack vs normal, fit seconds. Run: ``.venv/bin/python
benchmarks/supervised.py [--datasets unsw cic kdd cicshift (sim kddunseen)] [--seeds 3] [--epochs N]
[--budget 0] [--threads 1] [--set input_bins=16 dropout=0.1] [--splits 1] [--out NAME]``; writes
``benchmarks/results/supervised.json`` (or ``NAME.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import console, data_dir, report, settings_from
from nadkit.evaluation.metrics import confusion_matrix, macro_f_beta, macro_f_difference, roc_auc
from nadkit.evaluation.split import stratified_holdout
from nadkit.features.data import detector_data
from nadkit.features.pipeline import GROUP_NAMES, SEGMENT_GROUPS, FeatureConfig, FeaturePipeline
from nadkit.models.base import DetectorData
from nadkit.models.hybrid import MultitaskGBTConfig, MultitaskGBTDetector
from nadkit.schema import NORMAL
from nadkit.sources import load_flows
from nadkit.training.fit import use_label_column

SEED = 0
#: dataset -> (file under the data folder, reader, label column)
DATASETS: dict[str, tuple[str, str, str]] = {
    "unsw": ("unsw_nb15/UNSW_NB15_training-set.csv", "unsw", "label"),
    "cic": ("cicids2017/CICIDS2017_sample_km.csv", "cic", "label"),
    "kdd": ("nsl_kdd/KDDTrain+_20Percent.txt", "kdd", "attack_family"),
    "cicshift": ("cicids2017/CICIDS2017_improved_rnd5000_timesorted.csv", "cic", "label"),
}
#: data sets run only when named: ``sim``, the simulator's labelled days (not real traffic), a check of
#: how ``multitask_gbt`` chooses the network's share on flows with times
OPT_IN = ("sim", "kddunseen")
#: ``kddunseen``: the share of NSL-KDD's attack types held out of training and validation
UNSEEN_SHARE = 1 / 3
#: the simulated data set: days (the last is the test part) and flows a day
SIM_DAYS, SIM_FLOWS_PER_DAY = 5, 20_000
#: the time-shifted split: rows from this instant on (Friday 2017-07-07, UTC) are the test part
SHIFT_TEST_FROM = datetime(2017, 7, 7, tzinfo=UTC)
#: the label of every attack row in the binary time-shifted task
ATTACK = "attack"
#: the row entry holding a model's test predictions until they are compared (never reported)
PREDICTED = "_predicted"


@dataclass(frozen=True)
class Parts:
    """Train, validation and test parts of one dataset, featurized by a pipeline fitted on train;
    ``target``: unlabelled rows CMD may align to (None: no CMD run); ``unseen``: which test rows are
    of attack types never seen in training (None: no such rows)."""

    train: DetectorData
    validation: DetectorData
    test: DetectorData
    target: DetectorData | None = None
    unseen: np.ndarray | None = None


def _validation_mask(codes: np.ndarray, rows: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    mask = np.zeros(len(codes), dtype=bool)
    mask[rows[stratified_holdout(codes[rows], fraction, seed)]] = True
    return mask


def _read(name: str) -> pl.DataFrame | None:
    relative, reader, label_column = DATASETS[name]
    path = data_dir() / relative
    if not path.exists():
        console.print(f"[yellow]skipping {name}: {path} not found (set NADKIT_DATA_DIR)")
        return None
    frame, _ = load_flows(path, format=reader)
    return use_label_column(frame, label_column).filter(pl.col("label").is_not_null())


def _describe(name: str, parts: Parts, frame: pl.DataFrame, masks: list[np.ndarray]) -> None:
    counts = [dict(sorted(frame.filter(pl.Series(m))["label"].value_counts().iter_rows())) for m in masks]
    console.print(
        f"[bold]{name}[/bold]: {len(parts.train):,} / {len(parts.validation):,} / {len(parts.test):,} rows "
        f"(train / validation / test), {parts.train.width} features; classes by part {counts}"
    )


def _featurized(
    frame: pl.DataFrame, masks: tuple[np.ndarray, np.ndarray, np.ndarray], config: FeatureConfig | None = None
) -> Parts:
    """The train, validation and test parts (``masks``, in that order) of ``frame``, featurized by a
    pipeline fitted on the training part."""
    train_mask, validation_mask, test_mask = masks
    train = frame.filter(pl.Series(train_mask))
    pipeline = FeaturePipeline(config).fit(train)
    return Parts(
        train=detector_data(pipeline, train),
        validation=detector_data(pipeline, frame.filter(pl.Series(validation_mask))),
        test=detector_data(pipeline, frame.filter(pl.Series(test_mask))),
    )


def load(name: str, split: int = 0) -> Parts | None:
    """Read a dataset and split it (see the module docstring); None when the file is missing.
    ``split``: which of the random splits (0 is the one the figures quote; the time-shifted split
    keeps its days and draws only its validation part anew)."""
    if name == "sim":
        return _load_simulated(split)
    if name == "kddunseen":
        return _load_unseen(split)
    frame = _read(name)
    if frame is None:
        return None
    if name == "cicshift":
        return _load_shifted(frame, split)
    labels = frame["label"].to_numpy().astype(str)
    _, codes = np.unique(labels, return_inverse=True)
    test_mask = stratified_holdout(codes, 0.2, SEED + 2 * split)
    validation_mask = _validation_mask(codes, np.flatnonzero(~test_mask), 0.25, SEED + 2 * split + 1)
    train_mask = ~test_mask & ~validation_mask
    parts = _featurized(frame, (train_mask, validation_mask, test_mask))
    classes = dict(sorted(frame["label"].value_counts().iter_rows()))
    console.print(
        f"[bold]{name}[/bold]: {len(parts.train):,} / {len(parts.validation):,} / {len(parts.test):,} rows "
        f"(train / validation / test), {parts.train.width} features, classes {classes}"
    )
    return parts


def _load_shifted(frame: pl.DataFrame, split: int = 0) -> Parts:
    """Monday to Thursday (train and validation, stratified by the original class) against Friday
    (test, and CMD's unlabelled target), labels reduced to normal / attack."""
    test_mask = (frame["time"] >= SHIFT_TEST_FROM).to_numpy()
    _, codes = np.unique(frame["label"].to_numpy().astype(str), return_inverse=True)
    validation_mask = _validation_mask(codes, np.flatnonzero(~test_mask), 0.2, SEED + 2 * split + 1)
    train_mask = ~test_mask & ~validation_mask
    binary = frame.with_columns(
        pl.when(pl.col("label") == NORMAL).then(pl.lit(NORMAL)).otherwise(pl.lit(ATTACK)).alias("label")
    )
    config = FeatureConfig(
        groups=tuple(g for g in GROUP_NAMES if g != "address" and g not in SEGMENT_GROUPS),
        compute_counters=False,
    )
    parts = _featurized(binary, (train_mask, validation_mask, test_mask), config)
    parts = dataclasses.replace(parts, target=DetectorData(parts.test.features, parts.test.feature_names))
    _describe("cicshift", parts, frame, [train_mask, validation_mask, test_mask])
    return parts


def _load_unseen(split: int = 0) -> Parts | None:
    """NSL-KDD 20 % with ``UNSEEN_SHARE`` of its attack types (drawn with seed ``split``) in the test
    part only, the other types and normal traffic 60 / 20 / 20 by type; the classes are the attack
    families, so an unseen type is still a family's member, as KDDTest+'s new attacks are."""
    path = data_dir() / DATASETS["kdd"][0]
    if not path.exists():
        console.print(f"[yellow]skipping kddunseen: {path} not found (set NADKIT_DATA_DIR)")
        return None
    frame, _ = load_flows(path, format="kdd")
    types = frame["label"].fill_null(NORMAL).to_numpy().astype(str)
    rng = np.random.default_rng(SEED + split)
    attacks = sorted(set(types.tolist()) - {NORMAL})
    unseen = set(rng.choice(attacks, max(1, round(len(attacks) * UNSEEN_SHARE)), replace=False).tolist())
    side = np.empty(len(types), dtype=np.int8)  # 0 train, 1 validation, 2 test
    for kind in [NORMAL, *attacks]:
        rows = rng.permutation(np.flatnonzero(types == kind))
        if kind in unseen:
            side[rows] = 2
            continue
        first, second = int(len(rows) * 0.6), int(len(rows) * 0.8)
        side[rows[:first]], side[rows[first:second]], side[rows[second:]] = 0, 1, 2
    frame = use_label_column(frame, "attack_family")
    masks = [side == 0, side == 1, side == 2]
    parts = _featurized(frame, (masks[0], masks[1], masks[2]))
    parts = dataclasses.replace(parts, unseen=np.isin(types[side == 2], sorted(unseen)))
    _describe("kddunseen", parts, frame, masks)
    console.print(f"  unseen attack types: {', '.join(sorted(unseen))}")
    return parts


def _load_simulated(split: int = 0) -> Parts:
    """The simulator from a Monday, ``SIM_DAYS`` days of ``SIM_FLOWS_PER_DAY`` flows with their attack
    classes: the last day is the test part, the days before it training and a stratified 20 %
    validation part; split ``k`` simulates with seed ``7 + k``."""
    from datetime import date

    from nadkit.simulate import SimulationConfig, simulate

    config = SimulationConfig(
        days=SIM_DAYS, flows_per_day=SIM_FLOWS_PER_DAY, seed=7 + split, start=date(2021, 1, 4)
    )
    frame = simulate(config)
    test_mask = (frame["day"] == frame["day"].max()).to_numpy()
    _, codes = np.unique(frame["label"].to_numpy().astype(str), return_inverse=True)
    validation_mask = _validation_mask(codes, np.flatnonzero(~test_mask), 0.2, SEED + 1)
    train_mask = ~test_mask & ~validation_mask
    frame = frame.drop("day")
    parts = _featurized(frame, (train_mask, validation_mask, test_mask))
    _describe("sim", parts, frame, [train_mask, validation_mask, test_mask])
    return parts


def _measure(
    test: DetectorData, predicted: np.ndarray, attack_score: np.ndarray, unseen: np.ndarray | None = None
) -> dict[str, float]:
    """Macro F1, binary accuracy and ROC-AUC on the test part; with ``unseen``, also the share of
    those rows (attacks of types never trained on) called an attack of any class."""
    assert test.labels is not None
    truth_attack = test.labels != NORMAL
    measured = {
        "macro_f1": macro_f_beta(test.labels, predicted, beta=1.0),
        "binary_accuracy": float(np.mean((predicted != NORMAL) == truth_attack)),
        "roc_auc": roc_auc(attack_score, truth_attack),
    }
    if unseen is not None and unseen.any():
        measured["unseen_detection"] = float(np.mean(predicted[unseen] != NORMAL))
    return measured


def _spread_row(model: str, measured: list[dict[str, float]]) -> dict[str, Any]:
    """Mean ± std over the seeds of each figure, and the figures per seed."""
    row: dict[str, Any] = {"model": model}
    for key in measured[0]:
        values = [m[key] for m in measured]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        row[key] = f"{statistics.fmean(values):.4f} ± {spread:.4f}"
        row[f"{key}_per_seed"] = [round(v, 4) for v in values]
    return row


def run_multitask(
    parts: Parts,
    seeds: int,
    epochs: int | None,
    budget_s: float | None,
    cmd: bool = False,
    settings: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One ``multitask_gbt`` fit of ``seeds`` networks (with CMD towards ``parts.target`` when
    ``cmd``; ``settings``: other network settings): the networks alone and with the trees, each
    network alone and their ensemble."""
    config = MultitaskGBTConfig(
        **(settings or {}),
        seeds=seeds,
        time_budget_s=budget_s,
        seed=SEED,
        cmd_weight=1.0 if cmd else 0.0,
        device="cpu",
    )
    if epochs is not None:
        config = dataclasses.replace(config, epochs=epochs)
    started = time.perf_counter()
    detector = MultitaskGBTDetector(config).fit(
        parts.train, validation=parts.validation, target=parts.target if cmd else None
    )
    fit_s = time.perf_counter() - started
    classes = np.asarray(detector.classes_)
    classifier = detector.network_.probability_module()
    with torch.no_grad():
        z = classifier.standardize(torch.from_numpy(parts.test.features))
        alone = [
            torch.softmax(m.class_logits(m.encode(z)), dim=1).double().numpy() for m in classifier.members
        ]
    trees = detector.tree_probabilities(parts.test)
    weight = detector.network_weight_
    with_trees = [weight * p + (1.0 - weight) * trees for p in alone]

    def measure(p: np.ndarray) -> dict[str, float]:
        return _measure(parts.test, classes[p.argmax(axis=1)], p[:, 1:].sum(axis=1), parts.unseen)

    suffix = ", CMD to the test days" if cmd else (", no CMD" if parts.target is not None else "")
    network_s = sum(h.seconds for h in detector.histories_)
    single = _spread_row(
        f"multitask, one network (mean ± std of {seeds}){suffix}", [measure(p) for p in alone]
    )
    single["fit_s"] = round(network_s / seeds, 1)
    single["epochs"] = [(h.best_epoch, h.epochs_run) for h in detector.histories_]
    network = detector.network_
    network_predicted = network.predict(parts.test)
    ensemble = {
        "model": f"multitask, ensemble of {seeds}{suffix}",
        **{
            k: f"{v:.4f}"
            for k, v in _measure(
                parts.test, network_predicted, network.score(parts.test), parts.unseen
            ).items()
        },
        "fit_s": round(network_s, 1),
        PREDICTED: network_predicted,
    }
    hybrid_single = _spread_row(
        f"multitask_gbt, one network + trees (mean ± std of {seeds}){suffix}",
        [measure(p) for p in with_trees],
    )
    hybrid_single["network_weight"] = weight
    hybrid_predicted = detector.predict(parts.test)
    hybrid = {
        "model": f"multitask_gbt, ensemble of {seeds} + trees{suffix}",
        **{
            k: f"{v:.4f}"
            for k, v in _measure(
                parts.test, hybrid_predicted, detector.score(parts.test), parts.unseen
            ).items()
        },
        "fit_s": round(fit_s, 1),
        "network_weight": weight,
        "weight_chosen_on": detector.weight_choice_.get("chosen_on"),
        PREDICTED: hybrid_predicted,
    }
    return [single, ensemble, hybrid_single, hybrid]


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
    predicted = model.predict(parts.test.features)
    measured = _measure(parts.test, predicted, attack_score, parts.unseen)
    return {
        "model": trees_name(class_weight),
        **{k: f"{v:.4f}" for k, v in measured.items()},
        "fit_s": round(fit_s, 1),
        PREDICTED: predicted,
    }


def trees_name(class_weight: str | None) -> str:
    """The row name of the trees with ``class_weight``."""
    return f"HistGradientBoosting, class_weight={class_weight} (deterministic)"


def _leading_number(figure: Any) -> float:
    """The number a reported figure starts with (``"0.5478 ± 0.0067"`` -> 0.5478)."""
    return float(str(figure).split()[0])


def over_splits(name: str, by_split: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per model of every split: its macro F1 over the splits (mean ± std, and each), the
    mean of its difference from the balanced trees with the splits on which it was ahead, and the
    mean of its binary accuracy (and unseen types' detection, where measured)."""
    reference = trees_name("balanced")
    out = []
    for model in [row["model"] for row in by_split[0]]:
        scores, gaps = [], []
        for found in by_split:
            row = next(r for r in found if r["model"] == model)
            trees = next(r for r in found if r["model"] == reference)
            scores.append(_leading_number(row["macro_f1"]))
            gaps.append(scores[-1] - _leading_number(trees["macro_f1"]))
        spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
        summary: dict[str, Any] = {
            "dataset": name,
            "split": f"mean of {len(by_split)}",
            "model": model,
            "macro_f1": f"{statistics.fmean(scores):.4f} ± {spread:.4f}",
            "macro_f1_per_split": [round(v, 4) for v in scores],
        }
        rows = [next(r for r in found if r["model"] == model) for found in by_split]
        for key in ("binary_accuracy", "unseen_detection"):
            if all(key in row for row in rows):
                summary[key] = f"{statistics.fmean(_leading_number(row[key]) for row in rows):.4f}"
        if model != reference:
            ahead = sum(gap > 0 for gap in gaps)
            summary["vs balanced trees"] = f"{statistics.fmean(gaps):+.3f} (ahead on {ahead} of {len(gaps)})"
        out.append(summary)
    return out


def compare_with_trees(test: DetectorData, rows: list[dict[str, Any]]) -> None:
    """For each row with test predictions: its F1 per class and, but for the balanced trees' own
    row, its macro F1 minus the balanced trees' with a paired bootstrap 95 % interval over the test
    rows (``vs balanced trees``: how far apart the two are, given how few rows the small classes
    have); the predictions are then dropped from the row."""
    assert test.labels is not None
    truth = np.asarray(test.labels).astype(str)
    classes = sorted(set(truth.tolist()))
    reference_model = trees_name("balanced")
    reference = next(np.asarray(r[PREDICTED]).astype(str) for r in rows if r["model"] == reference_model)
    for row in rows:
        predicted = row.pop(PREDICTED, None)
        if predicted is None:
            continue
        predicted = np.asarray(predicted).astype(str)
        matrix = confusion_matrix(truth, predicted, labels=sorted(set(classes) | set(predicted.tolist())))
        per_class = matrix.f_beta(1.0)
        row["f1_per_class"] = {label: round(per_class[label], 4) for label in classes}
        if row["model"] != reference_model:
            row["vs balanced trees"] = macro_f_difference(truth, predicted, reference, seed=SEED).text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=[*DATASETS, *OPT_IN])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument(
        "--epochs", type=int, default=None, help="most epochs per network (default: the config's)"
    )
    parser.add_argument(
        "--budget", type=float, default=0.0, help="training seconds per multitask ensemble (0: no limit)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 is fastest for these sizes)"
    )
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="network settings other than the defaults (values read as YAML), e.g. input_bins=16",
    )
    parser.add_argument(
        "--splits",
        type=int,
        default=1,
        help="random splits of each data set (train / validation / test drawn anew), each run in full",
    )
    parser.add_argument("--out", default="supervised", help="name of the result file")
    args = parser.parse_args()
    if args.splits < 1:
        parser.error(f"--splits must be at least 1, got {args.splits}")
    known = [f.name for f in dataclasses.fields(MultitaskGBTConfig)]
    settings = settings_from(args.set, known, "multitask_gbt")
    torch.set_num_threads(args.threads)
    rows: list[dict[str, Any]] = []
    columns = [
        "dataset",
        "split",
        "model",
        "macro_f1",
        "vs balanced trees",
        "binary_accuracy",
        "roc_auc",
        "fit_s",
    ]
    if "kddunseen" in args.datasets:
        columns.insert(-1, "unseen_detection")
    for name in args.datasets:
        by_split: list[list[dict[str, Any]]] = []
        for split in range(args.splits):
            parts = load(name, split)
            if parts is None:
                break
            found = run_multitask(parts, args.seeds, args.epochs, args.budget or None, settings=settings)
            if parts.target is not None:
                found += run_multitask(
                    parts, args.seeds, args.epochs, args.budget or None, cmd=True, settings=settings
                )
            found += [run_trees(parts, None), run_trees(parts, "balanced")]
            compare_with_trees(parts.test, found)
            for row in found:
                row["dataset"], row["split"] = name, split
                console.print(
                    f"  split {split}, {row['model']}: macro-F1 {row['macro_f1']} binary accuracy "
                    f"{row['binary_accuracy']} ROC-AUC {row['roc_auc']} {row.get('vs balanced trees', '')}"
                )
            by_split.append(found)
            rows.extend(found)
        if len(by_split) > 1:
            rows.extend(over_splits(name, by_split))
    report(
        args.out,
        "multitask, multitask_gbt and gradient-boosted trees on real data (test parts)",
        columns,
        rows,
        options=vars(args),
    )


if __name__ == "__main__":
    main()
