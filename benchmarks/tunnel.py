"""A DNS tunnel against the detectors trained on the shared benign captures: none of the shared
attack captures is a tunnel, so this one is written here, as a tunnel tool's traffic looks.

The capture (written once, cached) is :mod:`benchmarks.lowvolume`'s ``dns-tunnel``: one client
sends ``--queries`` TXT queries to its resolver over about ten minutes, each name carrying base32
data under one domain, each answered with a TXT record; one flow per query.

Protocol (:func:`benchmarks.lowvolume.measure`): the quality benchmark's ``pcaps`` split by seed
(benign captures 60 / 20 / 20, the attack captures on the validation side for the threshold by
``nadkit train``'s rule), the tunnel added to the test part. Columns: the share of the tunnel's
flows at or above the threshold, the test part's false-positive rate, and where the tunnel's median
flow ranks among the test part's normal flows (1.0: above all of them), mean over seeds.

Run: ``.venv/bin/python benchmarks/tunnel.py [--models ae ae+names iforest ecod] [--seeds 3]
[--queries 300]``; prints a table and writes ``benchmarks/results/tunnel.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import console, report
from benchmarks.lowvolume import TUNNEL, attack_flows, measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["ae", "ae+names", "iforest", "ecod"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    tunnel = attack_flows(TUNNEL, args.queries)
    by_seed = []
    for seed in range(args.seeds):
        with console.status(f"seed {seed}: {', '.join(args.models)} on the benign captures"):
            by_seed.append(measure(args.models, seed, {TUNNEL: tunnel}))
    rows = []
    for name in args.models:
        runs = [measured[name][TUNNEL] for measured in by_seed]
        rows.append(
            {
                "model": name,
                "tunnel flows": tunnel.height,
                **{key: round(float(np.mean([r[key] for r in runs])), 4) for key in runs[0]},
                "detected per seed": " / ".join(f"{r['detected']:.3f}" for r in runs),
            }
        )
    report(
        "tunnel",
        "A DNS tunnel against detectors trained on the shared benign captures (mean of seeds)",
        ["model", "tunnel flows", "detected", "fpr", "median_rank", "detected per seed"],
        rows,
    )


if __name__ == "__main__":
    main()
