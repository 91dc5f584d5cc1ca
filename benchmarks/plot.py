"""Drawing speed of the flow-groups picture: 10M flows to a PNG.

Goal: a 10M-flow table drawn to a PNG in under 30 s on 2 cores.

The input is simulated once (whole days of the embedded enterprise simulation, cut to ``--flows``
flows) and cached as Parquet holding the columns a picture can use. Timed, each the best of
``--runs``:

* ``compile``: the first picture of a process (a 100k-flow sample), which includes compiling the
  aggregation kernels; every later picture reuses them.
* ``render …``: :func:`nadkit.pictures.render_groups` from a table already in memory, by port pair, by
  address pair and by subnet pair, and two panels side by side (true label and a prediction column).
* ``parquet → png``: :func:`nadkit.sources.load_flows` reading the Parquet file (only the columns
  the picture needs) and :func:`nadkit.pictures.write_groups` writing the PNG.
* ``cli``: ``nadkit plot groups FILE --out x.png`` in a fresh process (start-up, imports, compile,
  reading and drawing).
* ``html`` (with ``--html``): the interactive page with its zoom levels.

Run: ``.venv/bin/python benchmarks/plot.py [--flows 10000000] [--runs 1] [--html]``.
Prints a table and writes ``benchmarks/results/plot.json``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, best_of, cache_dir, console, peak_rss_mb, report

COLUMNS = ("time", "src", "dst", "spt", "dpt", "proto", "app", "label")
GOAL_SECONDS = 30.0


def flows_file(flows: int) -> Path:
    """About ``flows`` simulated flows (whole days, cut to size) as Parquet (cached)."""
    import pyarrow.parquet as pq

    from nadkit.simulate import SimulationConfig, simulate_day

    path = cache_dir() / f"plot_{flows}.parquet"
    if path.exists():
        return path
    per_day = 1_000_000 if flows >= 2_000_000 else max(flows // 2, 1000)
    config = SimulationConfig(days=60, flows_per_day=per_day, seed=21, start=date(2021, 2, 1))
    partial = path.with_suffix(".part")
    writer = None
    written = 0
    started = time.perf_counter()
    try:
        for day in range(config.days):
            frame = simulate_day(config, day).select(COLUMNS).head(flows - written)
            table = frame.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(partial, table.schema)
            writer.write_table(table)
            written += frame.height
            console.print(f"simulated {config.date_of(day)}: {written:,} of {flows:,} flows")
            if written >= flows:
                break
    finally:
        if writer is not None:
            writer.close()
    partial.replace(path)
    console.print(f"cached {written:,} flows in {path} ({time.perf_counter() - started:.0f} s)")
    return path


def timed(name: str, runs: int, function: Any, flows: int) -> dict[str, Any]:
    seconds, _ = best_of(runs, function)
    row = {
        "case": name,
        "flows": flows,
        "seconds": round(seconds, 2),
        "flows_per_s": flows / seconds,
        "peak_mb": round(peak_rss_mb()),
        "goal": "yes" if seconds < GOAL_SECONDS else "no",
    }
    console.print(f"{name}: {seconds:.2f} s")
    return row


def cli_run(source: Path, out: Path) -> tuple[float, float]:
    """Wall seconds and peak memory (MiB, sampled every 20 ms) of `nadkit plot groups` in a fresh
    process."""
    import psutil

    command = [
        str(Path(sys.executable).with_name("nadkit")),
        "plot",
        "groups",
        str(source),
        "--out",
        str(out),
    ]
    started = time.perf_counter()
    process = psutil.Popen(
        [*command, "--force"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    peak = 0
    while process.poll() is None:
        try:
            peak = max(peak, process.memory_info().rss)
        except psutil.Error:
            break
        time.sleep(0.02)
    _, errors = process.communicate()
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(errors)
    return seconds, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--html", action="store_true", help="also time the interactive page")
    options = parser.parse_args()

    from nadkit.pictures import groups_html, render_groups, write_groups
    from nadkit.sources import load_flows

    def parquet_to_png(out: Path) -> Path:
        frame, _ = load_flows(source, columns=("time", "label", "spt", "dpt"))  # the default picture's
        return write_groups(frame, out, overwrite=True, source=source)

    source = flows_file(options.flows)
    started = time.perf_counter()
    frame = pl.read_parquet(source)
    load_seconds = time.perf_counter() - started
    flows = frame.height
    console.print(f"{flows:,} flows loaded from {source.name} in {load_seconds:.1f} s")
    rows: list[dict[str, Any]] = [
        {"case": "read parquet (all columns)", "flows": flows, "seconds": round(load_seconds, 2),
         "flows_per_s": flows / load_seconds, "peak_mb": round(peak_rss_mb()), "goal": ""},
    ]  # fmt: skip
    # every 100th flow: all classes present, so that later pictures need no further compiling
    sample = frame.gather_every(max(1, flows // 100_000))
    rows.append(timed("compile: first picture (sample)", 1, lambda: render_groups(sample), sample.height))
    for by in ("src_port,dst_port", "src,dst", "src_subnet,dst_subnet"):
        rows.append(
            timed(f"render png by {by}", options.runs, lambda by=by: render_groups(frame, by=by), flows)
        )
    two = frame.with_columns(pl.col("label").alias("class"))
    rows.append(
        timed("render png label + prediction", options.runs,
              lambda two=two: render_groups(two, color="label,prediction", width=800), flows)
    )  # fmt: skip
    del two
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "groups.png"
        rows.append(
            timed("parquet → png (library)", options.runs,
                  lambda: parquet_to_png(out), flows)
        )  # fmt: skip
        best = min(cli_run(source, Path(folder) / "cli.png") for _ in range(options.runs))
        rows.append(
            {"case": "parquet → png (nadkit plot groups, fresh process)", "flows": flows,
             "seconds": round(best[0], 2), "flows_per_s": flows / best[0], "peak_mb": round(best[1]),
             "goal": "yes" if best[0] < GOAL_SECONDS else "no"}
        )  # fmt: skip
        if options.html:
            rows.append(timed("html page (zoom levels)", 1, lambda: groups_html(frame), flows))
    report(
        "plot",
        f"Flow-groups picture of {flows:,} flows (best of {options.runs})",
        ["case", "flows", "seconds", "flows_per_s", "peak_mb", "goal"],
        rows,
        goal_seconds=GOAL_SECONDS,
        source=str(source),
    )


if __name__ == "__main__":
    main()
