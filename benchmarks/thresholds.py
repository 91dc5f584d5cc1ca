"""Thresholds from a few hundred normal rows: the empirical quantile against the exponential tail.

A user with a small benign sample sets the threshold on a hold-out of about a hundred normal rows.
The 1% quantile of 100 scores is the largest score or next to it, so how many new normal rows exceed
it (the false-positive rate) depends on which hundred rows the hold-out happened to hold. ``nadkit
train`` reads such a quantile off an exponential tail fitted to the ten largest scores instead
(:func:`nadkit.evaluation.tails.exponential_tail_quantile`). This benchmark measures what each rule
gives over many hold-outs of the same size:

* per data set and seed, the detector is trained on ``--train-rows`` normal rows of the quality
  benchmark's few-rows protocol (``benchmarks/quality.py --train-rows``) and scores every normal row of
  the validation part and the whole test part once;
* ``--draws`` hold-outs of ``--rows`` normal validation rows are drawn (one stretch of consecutive flows
  where the rows have times, a random sample otherwise); on each, both rules set a threshold for the
  same ``--fpr``;
* for each rule: the test part's false-positive rate at the threshold (mean, 10th, 50th and 90th
  percentile over the draws) and the macro detection rate over the attack classes (mean and 10th
  percentile): a rule whose threshold lands far above the normal scores on one draw in ten leaves
  the attacks undetected on that draw.

Run: ``.venv/bin/python benchmarks/thresholds.py [--datasets kdd unsw cic cic_netflow pcaps sim]
[--models ae] [--seeds 3] [--draws 300]``; prints a table and writes
``benchmarks/results/thresholds.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import quality
from benchmarks.common import report
from nadkit.evaluation.thresholds import fit_threshold, quantile_threshold
from nadkit.features.data import detector_data
from nadkit.features.pipeline import FeaturePipeline

RULES = ("empirical", "tail")


def _thresholds(sample: np.ndarray, fpr: float) -> dict[str, float]:
    return {
        "empirical": quantile_threshold(sample, fpr),
        "tail": fit_threshold("quantile", sample, false_positive_rate=fpr).value,
    }


def measure(dataset: str, model: str, seed: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    protocol = quality.DATASETS[dataset](seed)
    few = quality.few_rows(protocol, args.train_rows, seed)
    detector = quality.configure(model, seed, args.budget)
    pipeline = FeaturePipeline(quality.feature_config(detector, {})).fit(few.train)
    detector.fit(detector_data(pipeline, few.train))
    normal = protocol.validation.filter(~pl.Series(quality._attack(protocol.validation)))
    if quality._timed(normal):
        normal = normal.sort("time", maintain_order=True)
    pool = detector.score(detector_data(pipeline, normal))
    scores = detector.score(detector_data(pipeline, protocol.test))
    attack = quality._attack(protocol.test)
    classes = protocol.test[protocol.classes].fill_null("normal").to_numpy().astype(str)
    members = [attack & (classes == value) for value in sorted(set(classes[attack]))]
    rng = np.random.default_rng(1000 + seed)
    rows = min(args.rows, len(pool))
    found: dict[str, list[tuple[float, float]]] = {rule: [] for rule in RULES}
    for _ in range(args.draws):
        if quality._timed(normal):
            start = int(rng.integers(0, len(pool) - rows + 1))
            sample = pool[start : start + rows]
        else:
            sample = rng.choice(pool, rows, replace=False)
        for rule, value in _thresholds(sample, args.fpr).items():
            alerts = scores >= value
            found[rule].append(
                (float(alerts[~attack].mean()), float(np.mean([alerts[m].mean() for m in members])))
            )
    out = []
    for rule, pairs in found.items():
        fpr, detection = np.array(pairs).T
        out.append(
            {
                "dataset": dataset,
                "model": model,
                "seed": seed,
                "rule": rule,
                "fpr_mean": float(fpr.mean()),
                "fpr_p10": float(np.percentile(fpr, 10)),
                "fpr_p50": float(np.percentile(fpr, 50)),
                "fpr_p90": float(np.percentile(fpr, 90)),
                "macro_detection_mean": float(detection.mean()),
                "macro_detection_p10": float(np.percentile(detection, 10)),
                "holdout_rows": rows,
                "pool_rows": len(pool),
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=["kdd", "unsw", "cic", "cic_netflow", "pcaps", "sim"],
        choices=list(quality.DATASETS),
    )
    parser.add_argument("--models", nargs="+", default=["ae"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--draws", type=int, default=300, help="hold-outs drawn per data set and seed")
    parser.add_argument("--rows", type=int, default=100, help="normal rows in each hold-out")
    parser.add_argument("--train-rows", type=int, default=300, help="normal training rows")
    parser.add_argument("--fpr", type=float, default=0.01, help="the false-positive rate asked for")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per neural fit at most")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", default="thresholds", help="name of the result file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows = []
    for dataset in args.datasets:
        for model in args.models:
            for seed in range(args.seeds):
                rows += measure(dataset, model, seed, args)
    columns = [
        "dataset",
        "model",
        "seed",
        "rule",
        "fpr_mean",
        "fpr_p10",
        "fpr_p50",
        "fpr_p90",
        "macro_detection_mean",
        "macro_detection_p10",
    ]
    report(
        args.out,
        f"thresholds from {args.rows} normal rows at {args.fpr:g} ({args.draws} draws)",
        columns,
        rows,
        settings=vars(args),
        seconds=time.perf_counter() - started,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
