"""The demo behind `make demo`: the whole job on the embedded simulated network.

Today it simulates several days, summarises them, computes the feature matrix with a pipeline fitted
on the first days, and splits the training days without session leakage; every step writes its
output under one folder.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table

from nadkit.features.featurize import KEEP_DEFAULT, featurize_frame
from nadkit.features.pipeline import FeaturePipeline
from nadkit.fileio import atomic_path
from nadkit.inspection import inspect_path
from nadkit.sources import load_flows
from nadkit.split import render, split_frame
from nadkit.synthetic import SimulationConfig, simulate_to_directory

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote its outputs."""

    data: Path
    features: Path
    pipeline: Path
    split_report: Path


def run_demo(
    out: str | Path,
    *,
    days: int = 4,
    flows_per_day: int = 50_000,
    seed: int = 0,
    console: Console | None = None,
) -> DemoResult:
    """Simulate ``days`` days into ``out/data``, summarise them, featurize the last day with a
    pipeline fitted on the others, and split the training days; returns the output paths."""
    console = console or Console()
    out = Path(out)
    data = out / "data"
    started = time.perf_counter()
    config = SimulationConfig(days=days, flows_per_day=flows_per_day, seed=seed)
    with console.status("simulating traffic"):
        files = simulate_to_directory(config, data, overwrite=True)
    console.print(f"simulated {len(files)} day(s) in {time.perf_counter() - started:.1f} s -> {data}")
    table = Table(title="Simulated traffic per day")
    table.add_column("day")
    table.add_column("flows", justify="right")
    table.add_column("attack share", justify="right")
    table.add_column("classes")
    for file in files:
        summary = inspect_path(file)
        attacks = sum(v for k, v in summary.labels.items() if k != "normal")
        classes = ", ".join(f"{k} {v:,}" for k, v in summary.labels.items() if k != "normal")
        table.add_row(file.stem, f"{summary.rows:,}", f"{attacks / max(summary.rows, 1):.2%}", classes)
    console.print(table)

    training_days, test_day = files[:-1], files[-1]
    train = pl.concat([load_flows(f)[0] for f in training_days], how="diagonal_relaxed")
    test, _ = load_flows(test_day)
    step = time.perf_counter()
    with console.status("fitting the feature pipeline on the training days"):
        pipeline = FeaturePipeline().fit(train)
        features = featurize_frame(test, pipeline, KEEP_DEFAULT)
    pipeline_path = pipeline.save(out / "pipeline.json", overwrite=True)
    features_path = out / f"features-{test_day.stem}.parquet"
    with atomic_path(features_path, overwrite=True) as temporary:
        features.write_parquet(temporary)
    console.print(
        f"{len(pipeline.feature_names_)} features of {test.height:,} test-day flows in "
        f"{time.perf_counter() - step:.1f} s -> {features_path}"
    )

    split = split_frame(train, "group", validation_fraction=0.25, seed=seed)
    console.print(render(split.report))
    report_path = out / "split-report.json"
    with atomic_path(report_path, overwrite=True) as temporary:
        temporary.write_text(json.dumps(split.report.to_dict(), indent=2) + "\n")
    console.print(f"inspect a day with: [bold]nadkit inspect {files[0]}[/bold]")
    return DemoResult(data=data, features=features_path, pipeline=pipeline_path, split_report=report_path)
