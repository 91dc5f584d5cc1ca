"""Feature speed and memory on simulated flows: flows/s of the per-flow features alone and of the
full pipeline (traffic counters and segments computed from the flows, then per-flow features: every
counter window, as ``nadkit featurize`` and the supervised detectors have them, and ``full, ae``:
what an unsupervised detector is trained with, without the 60 s window), and peak memory, on 1M and
10M flows.

Goals: per-flow features >= 1M flows/s; full pipeline >= 300k flows/s; 10M flows under 8 GB peak.
Each measurement runs in a fresh process so that its peak memory is its own.

Run: ``.venv/bin/python benchmarks/features.py [--sizes 1000000 10000000]``.
Prints a table and writes ``benchmarks/results/features.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import cache_dir, console, peak_rss_mb, report

FIT_ROWS = 200_000
MODES = ("per-flow", "full", "full, ae")


def dataset(rows: int) -> Path:
    """A folder of Parquet day files holding about ``rows`` simulated flows (cached)."""
    from nadkit.simulate import SimulationConfig, simulate_to_directory

    folder = cache_dir() / f"sim_{rows}"
    if not folder.exists():
        days = max(1, rows // 1_000_000) if rows >= 1_000_000 else 1
        # weekday start, so that the days are full working days
        from datetime import date

        config = SimulationConfig(days=days, flows_per_day=rows // days, seed=3, start=date(2021, 1, 4))
        simulate_to_directory(config, folder, output_format="parquet")
    return folder


def worker(rows: int, mode: str) -> dict[str, object]:
    """One measurement, in this process."""
    import polars as pl

    from nadkit.features.counters import COUNTER_COLUMNS
    from nadkit.features.pipeline import GROUP_NAMES, SEGMENT_GROUPS, FeatureConfig, FeaturePipeline

    frame = pl.read_parquet(sorted(dataset(rows).glob("*.parquet"))).drop("day", strict=False)
    if mode == "per-flow":
        config = FeatureConfig(groups=tuple(g for g in GROUP_NAMES if g not in SEGMENT_GROUPS))
    elif mode == "full":
        frame = frame.drop(list(COUNTER_COLUMNS))
        config = FeatureConfig()
    else:
        from nadkit.models import REGISTRY
        from nadkit.training.fit import default_features

        frame = frame.drop(list(COUNTER_COLUMNS))
        config = default_features(REGISTRY["ae"])
    pipeline = FeaturePipeline(config).fit(frame.head(FIT_ROWS))
    loaded_mb = peak_rss_mb()
    started = time.perf_counter()
    produced = 0
    for batch in pipeline.transform_batches(frame):
        produced += batch.height
    seconds = time.perf_counter() - started
    return {
        "mode": mode,
        "flows": produced,
        "features": len(pipeline.feature_names_),
        "seconds": seconds,
        "flows_per_s": produced / seconds,
        "input_mb": round(loaded_mb),
        "peak_mb": round(peak_rss_mb()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--worker", nargs=2, metavar=("ROWS", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(int(args.worker[0]), args.worker[1])))
        return
    rows: list[dict[str, object]] = []
    for size in args.sizes:
        with console.status(f"simulating {size:,} flows (cached after the first run)"):
            dataset(size)
        for mode in MODES:
            with console.status(f"{mode} features on {size:,} flows"):
                result = subprocess.run(
                    [sys.executable, __file__, "--worker", str(size), mode],
                    capture_output=True,
                    text=True,
                    check=True,
                )
            row = json.loads(result.stdout.strip().splitlines()[-1])
            rows.append({"size": f"{size:,}", **row})
    report(
        "features",
        "Feature pipeline throughput (2 cores) and peak memory",
        ["size", "mode", "flows", "features", "seconds", "flows_per_s", "input_mb", "peak_mb"],
        rows,
        goals={"per_flow_flows_per_s": 1_000_000, "full_flows_per_s": 300_000, "peak_mb_10M": 8192},
    )


if __name__ == "__main__":
    main()
