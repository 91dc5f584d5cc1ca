"""Incident grouping speed: alert records to incidents in one batch, and through the tracker in batches.

The alerts are an hour of attack shapes in the proportions of a bad day: a spoofed flood (40% of the
alerts, every one from a new source), scanners of 1000 ports each (20%), brute forces of 200 alerts each
(20%) and one-off alerts (20%, each source twice, half an hour apart, so every one is an incident of
its own: the most incidents per alert). ``one batch`` is :func:`~nadkit.alerts.incidents.group_alerts`
on the whole table; ``tracker xN`` feeds the same alerts in time order as N batches to an
:class:`~nadkit.alerts.incident_tracker.IncidentTracker` (time per alert over all batches, and the slowest
batch). Times are the best of ``--runs``.

Goal: a million alerts in a few seconds on 2 cores.

Run: ``.venv/bin/python benchmarks/incidents.py [--alerts 100000 1000000] [--batches 20] [--runs 2]``.
Prints a table and writes ``benchmarks/results/incidents.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import best_of, console, peak_rss_mb, report

START = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def alerts(n: int) -> pl.DataFrame:
    """``n`` alert records over an hour (see the module's description), in time order."""
    i = pl.col("i")
    fifth = n // 5
    scanners, brutes, oneoffs = max(1, fifth // 1000), max(1, fifth // 200), max(1, fifth // 2)
    part = pl.when(i < 2 * fifth).then(0).when(i < 3 * fifth).then(1).when(i < 4 * fifth).then(2).otherwise(3)
    address = pl.format("{}.{}.{}", i // 65_536 % 256, i // 256 % 256, i % 256)
    src = (
        pl.when(part == 0)
        .then(pl.format("100.{}", address))
        .when(part == 1)
        .then(pl.format("192.0.{}.{}", i % scanners // 256, i % scanners % 256))
        .when(part == 2)
        .then(pl.format("203.0.{}.{}", i % brutes // 256, i % brutes % 256))
        .otherwise(pl.format("172.16.{}.{}", i % oneoffs // 256 % 256, i % oneoffs % 256))
    )
    dst = (
        pl.when(part == 0)
        .then(pl.lit("10.0.0.1"))
        .when(part == 1)
        .then(pl.format("10.1.{}.{}", i % scanners // 256, i % scanners % 256))
        .when(part == 2)
        .then(pl.format("10.2.{}.{}", i % brutes // 256, i % brutes % 256))
        .otherwise(pl.format("11.{}", address))
    )
    span = max(1, n // 5)
    seconds = i % span * 3_600_000_000 // span
    records = pl.select(pl.int_range(n, dtype=pl.Int64).alias("i")).select(
        (pl.lit(START) + pl.duration(microseconds=seconds)).alias("time"),
        src.alias("src"),
        dst.alias("dst"),
        pl.lit(40_000, dtype=pl.Int64).alias("spt"),
        pl.when(part == 1).then(i // scanners % 1000 + 1).otherwise(22).alias("dpt"),
        pl.lit("tcp").alias("proto"),
        (2.0 + i % 7).cast(pl.Float64).alias("score"),
        pl.lit(1.0).alias("threshold"),
        pl.lit(True).alias("alert"),
        pl.lit(None, dtype=pl.String).alias("class"),
        pl.concat_list(
            pl.struct(feature=pl.lit("seg_flows"), contribution=pl.lit(1.0), value=pl.lit("1"))
        ).alias("top_features"),
        pl.lit(60, dtype=pl.Int64).alias("out_bytes"),
        pl.lit(0, dtype=pl.Int64).alias("in_bytes"),
        (i + 1).alias("row"),
    )
    return records.sort("time", maintain_order=True)


def tracked(records: pl.DataFrame, batches: int) -> tuple[int, float]:
    """Feed ``records`` to a tracker in ``batches`` time-ordered batches: incidents, slowest batch (s)."""
    from nadkit.alerts.incident_tracker import IncidentTracker

    tracker = IncidentTracker()
    incidents: set[str] = set()
    replaced: set[str] = set()
    slowest = 0.0
    size = -(-records.height // batches)
    for offset in range(0, records.height, size):
        started = time.perf_counter()
        update = tracker.update(records.slice(offset, size))
        slowest = max(slowest, time.perf_counter() - started)
        incidents.update(update.summary["incident_id"])
        replaced.update(update.replaced)
    return len(incidents - replaced), slowest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--batches", type=int, default=20, help="batches of the tracker run")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()

    from nadkit.alerts.incidents import group_alerts

    rows = []
    for n in args.alerts:
        with console.status(f"making {n:,} alerts"):
            records = alerts(n)
        seconds, found = best_of(args.runs, lambda records=records: group_alerts(records))
        kinds = found.kinds()
        rows.append(
            {
                "run": "one batch",
                "alerts": n,
                "incidents": found.summary.height,
                **{kind: kinds.get(kind, 0) for kind in ("flood", "scan", "pair", "host")},
                "seconds": round(seconds, 3),
                "alerts_per_s": round(n / seconds),
                "slowest_batch_s": round(seconds, 3),
                "peak_rss_mb": round(peak_rss_mb()),
            }
        )
        console.print(rows[-1])
        seconds, (incidents, slowest) = best_of(
            args.runs, lambda records=records: tracked(records, args.batches)
        )
        rows.append(
            {
                "run": f"tracker x{args.batches}",
                "alerts": n,
                "incidents": incidents,
                "seconds": round(seconds, 3),
                "alerts_per_s": round(n / seconds),
                "slowest_batch_s": round(slowest, 3),
                "peak_rss_mb": round(peak_rss_mb()),
            }
        )
        console.print(rows[-1])
    report(
        "incidents",
        "Alert records to incidents (Polars, vectorised)",
        [
            "run",
            "alerts",
            "incidents",
            "flood",
            "scan",
            "pair",
            "host",
            "seconds",
            "alerts_per_s",
            "slowest_batch_s",
            "peak_rss_mb",
        ],
        rows,
        batches=args.batches,
        runs=args.runs,
    )


if __name__ == "__main__":
    main()
