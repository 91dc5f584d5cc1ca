"""The hold-out `nadkit train` sets its threshold on: single rows against stretches of consecutive flows.

`nadkit train` holds out a share of the normal flows (and every attack) and sets the threshold at the
score a false-positive rate of those normal flows exceed. Flows close in time belong to the same
bursts and sessions: a hold-out of single rows drawn among the training rows holds near-copies of
them, scores lower than traffic the model has not seen, and its threshold flags more than that rate
of later traffic. `nadkit train --holdout-by time` holds out three stretches of consecutive flows
instead (:func:`nadkit.evaluation.split.unsupervised_split`). This benchmark trains each detector
exactly as `nadkit train` does (:func:`nadkit.training.fit.fit`, default settings) with both
hold-outs (``rows``, the default, ``time``, and ``capture`` where the flows name their captures:
whole captures held out) and scores traffic it has not seen:

* ``iot23`` / ``iot23_pcap``: the IoT-23 conn.log and its capture through nfstream, trained on the
  later 60% of the flows (their attacks included, as labelled hold-out rows), tested on the first 40%;
* ``cic``: CIC-IDS2017, trained on Monday and Tuesday, tested on Wednesday to Friday;
* ``pcaps``: the shared captures, trained on the benign captures of the quality benchmark's training
  and validation parts and its 3 validation attack captures, tested on the other captures (other
  networks and devices);
* ``sim``: the simulator, trained on days 1-3 (day 3 with its attacks), tested on day 4;
* ``iot23_argus``: the IoT-23 capture as Argus flows, cut as ``iot23``; ``sim_week``: the week-long
  simulator, trained on its training week and validation day, tested on the day after.

Per data set, detector, seed and hold-out: the test part's false-positive rate at the bundle's
threshold (the rate asked for is 1%), the share of attack flows flagged, the macro mean of the
detection rates per attack class (or capture), ROC-AUC and PR-AUC.

``--train-rows N`` trains on one stretch of N consecutive normal flows of the training side instead
(a user's short benign sample, drawn by the seed; the hold-out then has no attacks), for
the question whether a threshold set on a few hundred rows still works on other hours. Models may
carry settings as in ``benchmarks/quality.py`` (``"ae:weigh_errors=true"``).

Run: ``.venv/bin/python benchmarks/holdout.py [--datasets iot23 iot23_pcap cic pcaps sim] [--models
ae iforest] [--seeds 3] [--train-rows 430]``; prints a table and writes
``benchmarks/results/holdout.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import quality
from benchmarks.common import report
from nadkit.evaluation.metrics import binary_metrics
from nadkit.features.data import detector_data
from nadkit.training.fit import fit
from nadkit.training.holdout import HOLDOUT_BY

#: a data set: its training side, its test part, and the column naming each attack's class
Cut = tuple[pl.DataFrame, pl.DataFrame, str]


def _by_share(name: str) -> Callable[[int], Cut]:
    def cut(seed: int) -> Cut:
        protocol = quality.DATASETS[name](seed)
        whole = pl.concat([protocol.test, protocol.validation, protocol.train], how="diagonal_relaxed")
        whole = whole.sort("time", maintain_order=True)
        edge = int(whole.height * 0.4)
        return whole.slice(edge), whole.slice(0, edge), protocol.classes

    return cut


def _cic(seed: int) -> Cut:
    protocol = quality.cic(seed)
    return protocol.train, pl.concat([protocol.validation, protocol.test]), protocol.classes


def _pcaps(seed: int) -> Cut:
    protocol = quality.pcaps(seed)
    train = pl.concat([protocol.train, protocol.validation], how="diagonal_relaxed").sort("time")
    return train, protocol.test, protocol.classes


def _simulated(name: str) -> Callable[[int], Cut]:
    def cut(seed: int) -> Cut:
        protocol = quality.DATASETS[name](seed)
        train = pl.concat([protocol.train, protocol.validation], how="diagonal_relaxed")
        return train, protocol.test, protocol.classes

    return cut


DATASETS: dict[str, Callable[[int], Cut]] = {
    "iot23": _by_share("iot23"),
    "iot23_pcap": _by_share("iot23_pcap"),
    "iot23_argus": _by_share("iot23_argus"),
    "cic": _cic,
    "pcaps": _pcaps,
    "sim": _simulated("sim"),
    "sim_week": _simulated("sim_week"),
}


def measure(
    dataset: str, models: list[str], seed: int, train_rows: int | None = None
) -> list[dict[str, Any]]:
    train, test, classes = DATASETS[dataset](seed)
    if train_rows is not None:
        normal = train.filter(~pl.Series(quality._attack(train))).sort("time", maintain_order=True)
        train = quality._stretch(normal, train_rows, np.random.default_rng(seed))
    attack = quality._attack(test)
    rows = []
    # whole captures are held out only where the flows name their captures (the shared captures)
    ways = [way for way in HOLDOUT_BY if way != "capture" or "capture" in train.columns]
    for holdout in ways:
        for name in models:
            model, groups, settings = quality.split_name(name)
            if groups:
                raise SystemExit(f"{name}: feature groups are not changed here (settings only)")
            result = fit(train, model=model, config=settings, seed=seed, holdout_by=holdout)
            bundle = result.bundle
            scores = bundle.detector.score(detector_data(bundle.pipeline, test))
            alerts = bundle.threshold.apply(scores)
            rates = quality.per_class(test, classes, alerts)
            row = {
                "dataset": dataset,
                "model": name,
                "seed": seed,
                "holdout": holdout,
                "train_rows": result.train_rows,
                "holdout_rows": result.holdout_rows,
                "threshold": bundle.threshold.method,
                "fpr": float(alerts[~attack].mean()),
                "recall": float(alerts[attack].mean()) if attack.any() else float("nan"),
                "macro_detection": float(np.mean(list(rates.values()))) if rates else float("nan"),
                **_ranking(scores, attack),
            }
            rows.append(row)
            print(row, flush=True)
    return rows


def _ranking(scores: np.ndarray, attack: np.ndarray) -> dict[str, float]:
    """ROC-AUC and PR-AUC of the test scores (NaN where the test part has one class only)."""
    if not attack.any() or attack.all():
        return {"roc_auc": float("nan"), "pr_auc": float("nan")}
    measured = binary_metrics(scores, attack, float(np.max(scores)))
    return {"roc_auc": measured.roc_auc, "pr_auc": measured.pr_auc}


def _positive(text: str) -> int:
    """A row count of at least 10 (``nadkit train``'s fewest training rows), for argparse."""
    value = int(text)
    if value < 10:
        raise argparse.ArgumentTypeError(f"must be at least 10, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--models", nargs="+", default=["ae", "iforest"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", default="holdout", help="name of the result file")
    parser.add_argument(
        "--train-rows",
        type=_positive,
        default=None,
        help="train on one stretch of this many consecutive normal flows",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows = [
        row
        for d in args.datasets
        for seed in range(args.seeds)
        for row in measure(d, args.models, seed, args.train_rows)
    ]
    summary = []
    for dataset in args.datasets:
        for model in args.models:
            for holdout in HOLDOUT_BY:
                mine = [
                    r for r in rows if (r["dataset"], r["model"], r["holdout"]) == (dataset, model, holdout)
                ]
                if not mine:  # whole captures on a set without captures
                    continue
                summary.append(
                    {
                        "dataset": dataset,
                        "model": model,
                        "holdout": holdout,
                        "fpr_mean": float(np.mean([r["fpr"] for r in mine])),
                        "fpr_max": float(np.max([r["fpr"] for r in mine])),
                        "recall_mean": float(np.mean([r["recall"] for r in mine])),
                        **{
                            f"{key}_mean": float(np.mean([r[key] for r in mine]))
                            for key in ("macro_detection", "roc_auc", "pr_auc")
                        },
                        "per_seed_fpr": " / ".join(f"{r['fpr']:.4f}" for r in mine),
                    }
                )
    report(
        args.out,
        "false-positive rate on unseen traffic at the bundle's threshold (1% asked), by hold-out",
        [
            "dataset",
            "model",
            "holdout",
            "fpr_mean",
            "fpr_max",
            "recall_mean",
            "macro_detection_mean",
            "roc_auc_mean",
            "pr_auc_mean",
            "per_seed_fpr",
        ],
        summary,
        runs=rows,
        settings=vars(args),
        seconds=time.perf_counter() - started,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
