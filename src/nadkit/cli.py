"""The `nadkit` command line. Thin: parses options, calls the library, prints with rich."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from nadkit import __version__
from nadkit.errors import NadkitError

app = typer.Typer(
    name="nadkit",
    help="Detect anomalies and attacks in network traffic: read flows, train, detect, explain, triage.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)
log = logging.getLogger("nadkit")

_STATE = {"debug": False}

FormatOption = Annotated[
    str | None,
    typer.Option("--format", "-f", help="Input format (skip auto-detection); see `nadkit formats`."),
]
MapOption = Annotated[
    str | None,
    typer.Option(
        "--map",
        help="Column mapping for any CSV/Parquet, e.g. time=StartTime,src=SrcAddr,dst=DstAddr",
    ),
]


def _version(value: bool) -> None:
    if value:
        console.print(f"nadkit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logging.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Informational logging.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """nadkit: network anomaly detection with deep learning."""
    _STATE["debug"] = debug
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=errors, show_path=debug, rich_tracebacks=debug)],
        force=True,
    )


@app.command()
def formats() -> None:
    """List the input formats nadkit reads."""
    from nadkit.sources import SOURCES

    table = Table(title="Input formats (auto-detected in this order)")
    table.add_column("name", style="bold")
    table.add_column("description")
    for name, module in SOURCES.items():
        table.add_row(name, module.DESCRIPTION)
    console.print(table)


@app.command()
def inspect(
    path: Annotated[Path, typer.Argument(help="Flow file, directory or glob.")],
    format: FormatOption = None,
    mapping: MapOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Show a flow file's format, size, columns, time span and label mix."""
    from nadkit.inspection import inspect_path

    summary = inspect_path(path, format=format, mapping=mapping)
    if as_json:
        sys.stdout.write(json.dumps(summary.to_dict(), indent=2) + "\n")
        return
    console.print(
        f"[bold]{summary.path}[/bold]  format [cyan]{summary.format}[/cyan]  "
        f"files {summary.files}  rows [bold]{summary.rows:,}[/bold]"
    )
    if summary.time_start:
        console.print(f"time span {summary.time_start} .. {summary.time_end}")
    if summary.missing_identifying:
        console.print(
            f"[yellow]no {', '.join(summary.missing_identifying)} column(s) in this source[/yellow]"
        )
    columns = Table(title="Columns")
    columns.add_column("column")
    columns.add_column("dtype")
    columns.add_column("nulls", justify="right")
    for column in summary.columns:
        columns.add_row(column.name, column.dtype, f"{column.nulls:,}")
    console.print(columns)
    if summary.labels:
        labels = Table(title="Labels")
        labels.add_column("label")
        labels.add_column("flows", justify="right")
        labels.add_column("share", justify="right")
        for label, count in summary.labels.items():
            labels.add_row(label, f"{count:,}", f"{count / max(summary.rows, 1):.2%}")
        console.print(labels)


@app.command()
def featurize(
    source: Annotated[Path, typer.Argument(help="Flow file, directory or glob.")],
    output: Annotated[Path, typer.Argument(help="Feature file to write (.parquet).")],
    format: FormatOption = None,
    mapping: MapOption = None,
    config: Annotated[Path | None, typer.Option(help="Feature configuration (YAML, TOML or JSON).")] = None,
    pipeline: Annotated[
        Path | None,
        typer.Option(help="Apply this saved, fitted pipeline instead of fitting one on the input."),
    ] = None,
    keep: Annotated[
        str, typer.Option(help="Input columns copied beside the features (comma-separated).")
    ] = ",".join(("time", "src", "dst", "spt", "dpt", "proto", "app", "label")),
    force: Annotated[bool, typer.Option("--force", help="Replace existing output files.")] = False,
) -> None:
    """Compute the feature matrix of a flow file and save it (with the fitted pipeline) as Parquet."""
    from nadkit.features.featurize import featurize_file
    from nadkit.features.pipeline import FeatureConfig

    feature_config = FeatureConfig.from_file(config) if config else None
    started = time.perf_counter()
    with console.status("computing features"):
        result = featurize_file(
            source,
            output,
            format=format,
            mapping=mapping,
            config=feature_config,
            pipeline_path=pipeline,
            keep=[c.strip() for c in keep.split(",") if c.strip()],
            overwrite=force,
        )
    elapsed = time.perf_counter() - started
    console.print(
        f"wrote {result.rows:,} rows x {result.features} features to [bold]{result.output}[/bold] "
        f"in {elapsed:.1f} s ({result.rows / max(elapsed, 1e-9):,.0f} flows/s)"
    )
    if result.pipeline:
        console.print(f"fitted pipeline saved to [bold]{result.pipeline}[/bold]")
    for group, missing in result.skipped_groups.items():
        console.print(f"[yellow]skipped {group}: the data has no {', '.join(missing)}[/yellow]")


@app.command()
def split(
    source: Annotated[Path, typer.Argument(help="Flow file, directory or glob.")],
    out: Annotated[
        Path | None,
        typer.Option(help="Write train.parquet, validation.parquet and report.json to this directory."),
    ] = None,
    method: Annotated[str, typer.Option(help="group (sessions kept whole), day or time.")] = "group",
    validation: Annotated[
        float, typer.Option(min=0.01, max=0.99, help="Requested validation share of the rows.")
    ] = 0.25,
    seed: Annotated[int, typer.Option(help="Seed of the group assignment.")] = 0,
    validation_days: Annotated[
        str | None, typer.Option(help="Day split: comma-separated validation days (YYYY-MM-DD).")
    ] = None,
    format: FormatOption = None,
    mapping: MapOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output directory.")] = False,
) -> None:
    """Split flows into training and validation sides without leakage, and report the class mix."""
    from nadkit.fileio import atomic_directory
    from nadkit.sources import load_flows
    from nadkit.split import render, split_frame

    if out is not None and out.exists() and not force:
        raise NadkitError(f"{out}: already exists (use --force to replace it)")
    options: dict[str, object] = {}
    if validation_days:
        if method != "day":
            raise NadkitError("--validation-days needs --method day")
        options["validation_days"] = tuple(d.strip() for d in validation_days.split(",") if d.strip())
    frame, _ = load_flows(source, format=format, mapping=mapping)
    result = split_frame(frame, method, validation_fraction=validation, seed=seed, **options)  # type: ignore[arg-type]
    if out is not None:
        train, held_out = result.frames(frame)
        with atomic_directory(out, overwrite=force) as folder:
            train.write_parquet(folder / "train.parquet")
            held_out.write_parquet(folder / "validation.parquet")
            (folder / "report.json").write_text(json.dumps(result.report.to_dict(), indent=2) + "\n")
    if as_json:
        sys.stdout.write(json.dumps(result.report.to_dict(), indent=2) + "\n")
        return
    console.print(render(result.report))
    if out is not None:
        console.print(f"wrote train.parquet, validation.parquet and report.json to [bold]{out}[/bold]")


@app.command()
def train(
    source: Annotated[Path, typer.Argument(help="Training flows: file, directory or glob.")],
    out: Annotated[Path, typer.Argument(help="Model bundle directory to write.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Detector name (see `nadkit models`).")] = "ae",
    config: Annotated[
        Path | None, typer.Option(help="Model settings (YAML, TOML or JSON), e.g. epochs, hidden sizes.")
    ] = None,
    holdout: Annotated[
        float, typer.Option(min=0.05, max=0.9, help="Share of normal rows held out with the attacks.")
    ] = 0.3,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    format: FormatOption = None,
    mapping: MapOption = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing bundle.")] = False,
) -> None:
    """Train a detector on normal traffic and save it, with its threshold, as a model bundle."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from nadkit.config import read_settings
    from nadkit.training import train_model

    options = read_settings(config, "model settings") if config else {}
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("epoch {task.completed}/{task.total}"),
        TextColumn("{task.fields[losses]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(f"training {model}", total=None, losses="")

        def on_epoch(report) -> None:  # type: ignore[no-untyped-def]
            losses = f"train {report.train_loss:.4g}"
            if report.validation_loss is not None:
                losses += f"  validation {report.validation_loss:.4g}"
            bar.update(task, completed=report.epoch, total=report.epochs, losses=losses)

        result = train_model(
            source,
            out,
            model=model,
            config=options,
            format=format,
            mapping=mapping,
            holdout_fraction=holdout,
            seed=seed,
            overwrite=force,
            progress=on_epoch,
        )
    summary = Table(title=f"{model} trained", show_header=False)
    summary.add_row("bundle", str(result.path))
    summary.add_row("features", str(len(result.bundle.pipeline.feature_names_)))
    summary.add_row("normal training rows", f"{result.train_rows:,}")
    summary.add_row("hold-out rows (attacks)", f"{result.holdout_rows:,} ({result.holdout_attacks:,})")
    summary.add_row("fit time", f"{result.fit_seconds:.1f} s")
    history = result.bundle.metrics.get("history")
    if history:
        summary.add_row(
            "epochs",
            f"{history['epochs_run']} (best {history['best_epoch']}, stopped by {history['stopped']})",
        )
    threshold = result.bundle.threshold or {}
    summary.add_row("threshold", f"{threshold.get('value', float('nan')):.6g} ({threshold.get('method')})")
    measured = result.bundle.metrics.get("holdout")
    if measured:
        figures = f"{measured['roc_auc']:.4f} / {measured['pr_auc']:.4f} / {measured['f1']:.4f}"
        summary.add_row("hold-out ROC-AUC / PR-AUC / F1", f"{figures} (threshold chosen here)")
    console.print(summary)


def _flow_progress(description: str):  # type: ignore[no-untyped-def]
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TextColumn("{task.fields[flows]:,} flows, {task.fields[alerts]:,} alerts"),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
    )


@app.command()
def detect(
    bundle: Annotated[Path, typer.Argument(help="Model bundle directory (from `nadkit train`).")],
    source: Annotated[Path, typer.Argument(help="Flows to score: file, directory or glob, any format.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Alerts file: .jsonl, .parquet or .csv.")],
    all_flows: Annotated[
        bool, typer.Option("--all", help="Write every scored flow, not only alerts.")
    ] = False,
    threshold: Annotated[
        float | None, typer.Option(help="Alert threshold (default: the bundle's, chosen on validation).")
    ] = None,
    top: Annotated[int, typer.Option(min=1, max=50, help="Contributing features listed per alert.")] = 5,
    chunk_rows: Annotated[
        int, typer.Option("--chunk-rows", min=1000, help="Flows read and scored per chunk (bounds memory).")
    ] = 200_000,
    engine: Annotated[
        str, typer.Option(help="auto (ONNX Runtime on CPU when the bundle has model.onnx), torch or onnx.")
    ] = "auto",
    format: FormatOption = None,
    mapping: MapOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output file.")] = False,
) -> None:
    """Score flows with a trained model and write explained alerts."""
    from nadkit.bundle import ModelBundle
    from nadkit.detect import detect_file, output_kind, summary_line

    output_kind(out)
    if out.exists() and not force:
        raise NadkitError(f"{out}: already exists (use --force to replace it)")
    loaded = ModelBundle.load(bundle, engine=engine)
    with _flow_progress("detecting") as bar:
        task = bar.add_task(f"detecting with {loaded.detector.name}", total=None, flows=0, alerts=0)
        result = detect_file(
            loaded,
            source,
            out,
            format=format,
            mapping=mapping,
            alerts_only=not all_flows,
            chunk_rows=chunk_rows,
            threshold=threshold,
            top=top,
            overwrite=force,
            progress=lambda flows, alerts: bar.update(task, flows=flows, alerts=alerts),
        )
    if as_json:
        console.print_json(data=result.to_dict())
        return
    if result.by_class:
        table = Table(title="alerts by class")
        table.add_column("class")
        table.add_column("alerts", justify="right")
        for name, count in sorted(result.by_class.items(), key=lambda item: -item[1]):
            table.add_row(name, f"{count:,}")
        console.print(table)
    console.print(f"{summary_line(result)}; wrote {result.written:,} records to {out}")


@app.command()
def evaluate(
    bundle: Annotated[Path, typer.Argument(help="Model bundle directory.")],
    source: Annotated[Path, typer.Argument(help="Labelled flows: file, directory or glob, any format.")],
    report: Annotated[
        Path | None,
        typer.Option("--report", help="Directory for report.html, its PNG figures and metrics.json."),
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Alert threshold (default: the bundle's, chosen on validation).")
    ] = None,
    chunk_rows: Annotated[int, typer.Option("--chunk-rows", min=1000, help="Flows per chunk.")] = 200_000,
    engine: Annotated[str, typer.Option(help="auto, torch or onnx.")] = "auto",
    format: FormatOption = None,
    mapping: MapOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON only.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing report directory.")] = False,
) -> None:
    """Measure a model on labelled flows: metrics table, and an HTML report with figures."""
    from nadkit.bundle import ModelBundle
    from nadkit.evaluation import evaluate_bundle

    if report is not None and report.exists() and any(report.iterdir()) and not force:
        raise NadkitError(f"{report}: already exists (use --force to replace it)")
    loaded = ModelBundle.load(bundle, engine=engine)
    with _flow_progress("scoring") as bar:
        task = bar.add_task(f"scoring with {loaded.detector.name}", total=None, flows=0, alerts=0)
        outcome = evaluate_bundle(
            loaded,
            source,
            bundle_path=bundle,
            report=report,
            threshold=threshold,
            chunk_rows=chunk_rows,
            format=format,
            mapping=mapping,
            overwrite=force,
            progress=lambda flows, alerts: bar.update(task, flows=flows, alerts=alerts),
        )
    if as_json:
        sys.stdout.write(json.dumps(outcome.metrics, indent=2) + "\n")
        return
    console.print(outcome.table())
    if outcome.report is not None:
        console.print(f"report: {outcome.report}")


@app.command()
def models() -> None:
    """List the detectors nadkit can train."""
    from nadkit.models import REGISTRY

    table = Table(title="Detectors")
    table.add_column("name", style="bold")
    table.add_column("input")
    table.add_column("kind")
    table.add_column("description")
    for name, cls in REGISTRY.items():
        paragraph = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
        doc = paragraph.split(". ")[0].rstrip(".")
        table.add_row(name, cls.input, "supervised" if cls.supervised else "unsupervised", doc)
    console.print(table)


@app.command()
def simulate(
    out: Annotated[Path, typer.Argument(help="Output directory (one file per day).")],
    days: Annotated[int, typer.Option(min=1, max=60, help="Number of days.")] = 3,
    flows_per_day: Annotated[int, typer.Option(min=100, help="Approximate flows per day.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same flows).")] = 0,
    output_format: Annotated[
        str, typer.Option("--output-format", help="csv (NAD 2021 layout) or parquet.")
    ] = "csv",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output directory.")] = False,
) -> None:
    """Simulate a labelled enterprise network over several days (NAD 2021 schema)."""
    from nadkit.synthetic import SimulationConfig, simulate_to_directory

    config = SimulationConfig(days=days, flows_per_day=flows_per_day, seed=seed)
    started = time.perf_counter()
    with console.status(f"simulating {days} day(s) x ~{flows_per_day:,} flows"):
        files = simulate_to_directory(config, out, output_format=output_format, overwrite=force)
    elapsed = time.perf_counter() - started
    console.print(f"wrote {len(files)} file(s) to [bold]{out}[/bold] in {elapsed:.1f} s")
    for file in files:
        console.print(f"  {file}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Directory for the demo's data and results.")] = Path("out/demo"),
    days: Annotated[int, typer.Option(min=2, max=14)] = 4,
    flows_per_day: Annotated[int, typer.Option(min=1000)] = 50_000,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """The main job on the embedded default: simulate traffic, train, detect, evaluate, report."""
    from nadkit.demo import run_demo

    run_demo(out, days=days, flows_per_day=flows_per_day, seed=seed, console=console)


def main() -> None:
    """Entry point: bad input ends as one line on stderr and exit code 2."""
    try:
        app()
    except NadkitError as error:
        if _STATE["debug"]:
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        errors.print(f"[bold red]error:[/bold red] {message}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (OSError, ValueError) as error:
        if _STATE["debug"]:
            raise
        errors.print(f"[bold red]error:[/bold red] {error}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        errors.print("interrupted")
        sys.exit(130)
