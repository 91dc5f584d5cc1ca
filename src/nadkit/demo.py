"""The demo behind `make demo`: the whole job on the embedded simulated network.

It simulates several days, summarises them, computes the feature matrix with a pipeline fitted on
the normal flows of the first days, splits the training days without session leakage, trains the
default autoencoder (and the two baselines) on normal flows, chooses thresholds on a labelled
hold-out and measures detection on the unseen last day; then, through the saved model bundle, it
detects on the last day (explained alerts) and evaluates it with an HTML report. Every step writes
its output under one folder.
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

from nadkit.evaluation.metrics import binary_metrics
from nadkit.evaluation.split import render, split_frame, unsupervised_split
from nadkit.features.featurize import KEEP_DEFAULT, featurize_frame
from nadkit.features.pipeline import FeaturePipeline
from nadkit.fileio import atomic_path
from nadkit.schema import NORMAL
from nadkit.simulate import SimulationConfig, simulate_to_directory
from nadkit.sources import load_flows
from nadkit.sources.inspection import inspect_path
from nadkit.training.bundle import ModelBundle
from nadkit.training.fit import fit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote its outputs."""

    data: Path
    features: Path
    pipeline: Path
    split_report: Path
    model: Path
    alerts: Path
    report: Path


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
    split = unsupervised_split(train, holdout_fraction=0.3, seed=seed)
    with console.status("fitting the feature pipeline on the normal flows of the training days"):
        pipeline = FeaturePipeline().fit(split.train)
        features = featurize_frame(test, pipeline, KEEP_DEFAULT)
    pipeline_path = pipeline.save(out / "pipeline.json", overwrite=True)
    features_path = out / f"features-{test_day.stem}.parquet"
    with atomic_path(features_path, overwrite=True) as temporary:
        features.write_parquet(temporary)
    console.print(
        f"{len(pipeline.feature_names_)} features of {test.height:,} test-day flows in "
        f"{time.perf_counter() - step:.1f} s -> {features_path}"
    )

    grouped = split_frame(train, "group", validation_fraction=0.25, seed=seed)
    console.print(render(grouped.report))
    report_path = out / "split-report.json"
    with atomic_path(report_path, overwrite=True) as temporary:
        temporary.write_text(json.dumps(grouped.report.to_dict(), indent=2) + "\n")

    model_path = _train_and_detect(out, train, test, seed=seed, console=console)
    alerts_path, report_dir = _detect_and_report(out, model_path, test_day, console=console)
    console.print(f"inspect a day with: [bold]nadkit inspect {files[0]}[/bold]")
    console.print(f"alerts: [bold]{alerts_path}[/bold]")
    console.print(f"report: [bold]{report_dir / 'report.html'}[/bold]")
    console.print(f"demo finished in {time.perf_counter() - started:.0f} s")
    return DemoResult(
        data=data,
        features=features_path,
        pipeline=pipeline_path,
        split_report=report_path,
        model=model_path,
        alerts=alerts_path,
        report=report_dir,
    )


def _detect_and_report(out: Path, model_path: Path, test_day: Path, *, console: Console) -> tuple[Path, Path]:
    """What a user does next: `nadkit detect` on the last day (explained alerts) and `nadkit evaluate`
    with its report, through the saved bundle."""
    from nadkit.detection.detect import detect_file, summary_line
    from nadkit.detection.evaluation import evaluate_bundle

    bundle = ModelBundle.load(model_path)
    alerts_path = out / f"alerts-{test_day.stem}.jsonl"
    with console.status(f"detecting on {test_day.name} with the saved model"):
        result = detect_file(bundle, test_day, alerts_path, overwrite=True)
    console.print(f"detect: {summary_line(result)} -> {alerts_path}")
    report_dir = out / "report"
    with console.status("evaluating and writing the report"):
        outcome = evaluate_bundle(bundle, test_day, bundle_path=model_path, report=report_dir, overwrite=True)
    for warning in outcome.warnings():
        console.print(warning, style="yellow", markup=False)
    console.print(outcome.table())
    return alerts_path, report_dir


def _train_and_detect(
    out: Path, train: pl.DataFrame, test: pl.DataFrame, *, seed: int, console: Console
) -> Path:
    """Train the default autoencoder (and the two baselines) on the normal flows of the training
    days, each with its threshold chosen on their labelled hold-out, score the unseen last day and
    print the detection quality side by side; the autoencoder's bundle is saved."""
    test_attack = (test["label"].fill_null(NORMAL) != NORMAL).to_numpy()
    table = Table(title=f"Detection on the unseen last day ({test_attack.sum():,} attack flows)")
    for column in ("model", "ROC-AUC", "PR-AUC", "precision", "recall", "F1", "alerts", "fit s"):
        table.add_column(column, justify="left" if column == "model" else "right")
    model_path = out / "model"
    for name, options in (("ae", {"epochs": 15}), ("iforest", {}), ("ecod", {})):
        with console.status(f"training {name} on the normal flows of the training days"):
            result = fit(train, model=name, config=options, seed=seed)
        threshold = result.bundle.threshold
        assert threshold is not None  # training always chooses one
        scores = result.bundle.score(test)
        measured = binary_metrics(scores, test_attack, threshold.value)
        table.add_row(
            name,
            f"{measured.roc_auc:.4f}",
            f"{measured.pr_auc:.4f}",
            f"{measured.precision:.3f}",
            f"{measured.recall:.3f}",
            f"{measured.f1:.3f}",
            f"{int((scores >= threshold.value).sum()):,}",
            f"{result.fit_seconds:.1f}",
        )
        if name == "ae":
            result.bundle.metrics["test"] = measured.to_dict()
            result.save(model_path, overwrite=True, onnx=True)
    console.print(table)
    console.print(f"thresholds chosen on a labelled hold-out of the training days; model -> {model_path}")
    return model_path
