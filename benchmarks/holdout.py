"""The hold-out `nadkit train` sets its threshold on: single rows against stretches of consecutive flows.

`nadkit train` holds out a share of the normal flows (and every attack) and sets the threshold at the
score a false-positive rate of those normal flows exceed. Flows close in time belong to the same
bursts and sessions: a hold-out of single rows drawn among the training rows holds near-copies of
them, scores lower than traffic the model has not seen, and its threshold flags more than that rate
of later traffic. `nadkit train --holdout-by time` holds out three stretches of consecutive flows
instead (:func:`nadkit.evaluation.split.unsupervised_split`). This benchmark trains each detector
exactly as `nadkit train` does (:func:`nadkit.training.fit.fit`, default settings) with both
hold-outs (``rows``, the default, and ``time``) and scores traffic it has not seen:

* ``iot23`` / ``iot23_pcap``: the IoT-23 conn.log and its capture through nfstream, trained on the
  later 60% of the flows (their attacks included, as labelled hold-out rows), tested on the first 40%;
* ``cic``: CIC-IDS2017, trained on Monday and Tuesday, tested on Wednesday to Friday;
* ``pcaps``: the shared captures, trained on the benign captures of the quality benchmark's training
  and validation parts and its 3 validation attack captures, tested on the other captures (other
  networks and devices);
* ``sim``: the simulator, trained on days 1-3 (day 3 with its attacks), tested on day 4.

Per data set, detector, seed and hold-out: the test part's false-positive rate at the bundle's
threshold (the rate asked for is 1%) and the share of attack flows flagged.

Run: ``.venv/bin/python benchmarks/holdout.py [--datasets iot23 iot23_pcap cic pcaps sim] [--models
ae iforest] [--seeds 3]``; prints a table and writes ``benchmarks/results/holdout.json``.
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
from nadkit.features.data import detector_data
from nadkit.training.fit import HOLDOUT_BY, fit


def _by_share(name: str) -> Callable[[int], tuple[pl.DataFrame, pl.DataFrame]]:
    def cut(seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
        protocol = quality.DATASETS[name](seed)
        whole = pl.concat([protocol.test, protocol.validation, protocol.train], how="diagonal_relaxed")
        whole = whole.sort("time", maintain_order=True)
        edge = int(whole.height * 0.4)
        return whole.slice(edge), whole.slice(0, edge)

    return cut


def _cic(seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    protocol = quality.cic(seed)
    return protocol.train, pl.concat([protocol.validation, protocol.test])


def _pcaps(seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    protocol = quality.pcaps(seed)
    train = pl.concat([protocol.train, protocol.validation], how="diagonal_relaxed").sort("time")
    return train, protocol.test


def _sim(seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    protocol = quality.sim(seed)
    return pl.concat([protocol.train, protocol.validation], how="diagonal_relaxed"), protocol.test


DATASETS: dict[str, Callable[[int], tuple[pl.DataFrame, pl.DataFrame]]] = {
    "iot23": _by_share("iot23"),
    "iot23_pcap": _by_share("iot23_pcap"),
    "cic": _cic,
    "pcaps": _pcaps,
    "sim": _sim,
}


def measure(dataset: str, models: list[str], seed: int) -> list[dict[str, Any]]:
    train, test = DATASETS[dataset](seed)
    attack = quality._attack(test)
    rows = []
    for holdout in HOLDOUT_BY:
        for model in models:
            result = fit(train, model=model, seed=seed, holdout_by=holdout)
            bundle = result.bundle
            alerts = bundle.threshold.apply(bundle.detector.score(detector_data(bundle.pipeline, test)))
            row = {
                "dataset": dataset,
                "model": model,
                "seed": seed,
                "holdout": holdout,
                "holdout_rows": result.holdout_rows,
                "threshold": bundle.threshold.method,
                "fpr": float(alerts[~attack].mean()),
                "recall": float(alerts[attack].mean()) if attack.any() else float("nan"),
            }
            rows.append(row)
            print(row, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--models", nargs="+", default=["ae", "iforest"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", default="holdout", help="name of the result file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows = [row for d in args.datasets for seed in range(args.seeds) for row in measure(d, args.models, seed)]
    summary = []
    for dataset in args.datasets:
        for model in args.models:
            for holdout in HOLDOUT_BY:
                mine = [
                    r for r in rows if (r["dataset"], r["model"], r["holdout"]) == (dataset, model, holdout)
                ]
                summary.append(
                    {
                        "dataset": dataset,
                        "model": model,
                        "holdout": holdout,
                        "fpr_mean": float(np.mean([r["fpr"] for r in mine])),
                        "fpr_max": float(np.max([r["fpr"] for r in mine])),
                        "recall_mean": float(np.mean([r["recall"] for r in mine])),
                        "per_seed_fpr": " / ".join(f"{r['fpr']:.4f}" for r in mine),
                    }
                )
    report(
        args.out,
        "false-positive rate on unseen traffic at the bundle's threshold (1% asked), by hold-out",
        ["dataset", "model", "holdout", "fpr_mean", "fpr_max", "recall_mean", "per_seed_fpr"],
        summary,
        runs=rows,
        settings=vars(args),
        seconds=time.perf_counter() - started,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
