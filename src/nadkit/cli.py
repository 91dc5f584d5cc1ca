"""The `nadkit` command line. Thin: parses options, calls the library, prints with rich."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from nadkit.errors import NadkitError, require
from nadkit.version import __version__

if TYPE_CHECKING:
    import polars as pl

    from nadkit.training.fit import TrainingResult

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
    from nadkit.sources.inspection import inspect_path

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
    from nadkit.evaluation.split import render, split_frame
    from nadkit.fileio import atomic_directory
    from nadkit.sources import load_flows

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


#: train options that set a threshold parameter: option -> (parameter, the methods that take it)
_THRESHOLD_OPTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "--fpr": ("false_positive_rate", ("auto", "quantile")),
    "--beta": ("beta", ("auto", "f_beta")),
    "--risk": ("risk", ("pot",)),
}


@app.command()
def train(
    source: Annotated[Path, typer.Argument(help="Training flows: file, directory or glob.")],
    out: Annotated[Path, typer.Argument(help="Model bundle directory to write.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="Detector name (see `nadkit models available`).")
    ] = "ae",
    config: Annotated[
        Path | None, typer.Option(help="Model settings (YAML, TOML or JSON), e.g. epochs, hidden sizes.")
    ] = None,
    target: Annotated[
        Path | None,
        typer.Option(
            help="Unlabelled flows of the traffic to be scored (e.g. a later day; file, directory or "
            "glob, any format) that a domain-adapting model (multitask) aligns to with CMD.",
        ),
    ] = None,
    label_column: Annotated[
        str,
        typer.Option(
            "--label-column", help="Column holding the class labels, e.g. attack_family for NSL-KDD."
        ),
    ] = "label",
    holdout: Annotated[
        float,
        typer.Option(
            min=0.05,
            max=0.9,
            help="Hold-out share: of the normal rows for unsupervised models (every attack row is held "
            "out too); of all labelled rows for supervised models (their validation part).",
        ),
    ] = 0.3,
    threshold_method: Annotated[
        str,
        typer.Option(
            "--threshold-method",
            help="How the threshold is fitted on the hold-out: auto (F-beta-optimal when it has attacks, "
            "else quantile), quantile, f_beta or pot.",
        ),
    ] = "auto",
    fpr: Annotated[
        float | None,
        typer.Option(
            "--fpr",
            help="quantile (and auto without attacks): share of normal scores above it (default 0.01).",
        ),
    ] = None,
    beta: Annotated[
        float | None,
        typer.Option(help="f_beta (and auto with attacks): beta of the F-beta score (default 1)."),
    ] = None,
    risk: Annotated[
        float | None,
        typer.Option(
            help="pot: probability of a normal score above the threshold, from a tail fit (default 1e-4)."
        ),
    ] = None,
    view: Annotated[
        str,
        typer.Option(
            help="What the detector reads: flows (one row per flow; windowed models read each source's "
            "flow sequence) or buckets (per-bucket traffic metrics; each flow gets its bucket's score).",
        ),
    ] = "flows",
    bucket_seconds: Annotated[
        float | None,
        typer.Option("--bucket-seconds", help="--view buckets: bucket width in seconds (default 60)."),
    ] = None,
    bucket_by: Annotated[
        str | None,
        typer.Option(
            "--bucket-by",
            help="--view buckets: one series per value of this column (e.g. src for each host); "
            "default: one series for the whole network.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    format: FormatOption = None,
    mapping: MapOption = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing bundle.")] = False,
) -> None:
    """Train a detector and save it, with its threshold and ONNX graph, as a model bundle.

    Unsupervised models learn normal traffic; supervised ones (multitask) learn the classes of
    labelled flows, optionally adapting to unlabelled --target traffic. With --view buckets an
    unsupervised model learns per-bucket traffic metrics; the last --holdout of the time range is then
    the hold-out.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from nadkit.config import read_settings
    from nadkit.features.series import BucketConfig
    from nadkit.models.multitask import SeedEpochReport
    from nadkit.training.fit import train_model

    if view not in ("flows", "buckets"):
        raise NadkitError(f"--view must be flows or buckets, got {view!r}")
    if view == "flows" and (bucket_seconds is not None or bucket_by is not None):
        raise NadkitError("--bucket-seconds and --bucket-by apply to --view buckets")
    buckets = None
    if view == "buckets":
        buckets = BucketConfig(bucket_s=60.0 if bucket_seconds is None else bucket_seconds, by=bucket_by)

    given = {"--fpr": fpr, "--beta": beta, "--risk": risk}
    threshold_params: dict[str, float] = {}
    for option, value in given.items():
        if value is None:
            continue
        name, methods = _THRESHOLD_OPTIONS[option]
        if threshold_method not in methods:
            raise NadkitError(f"{option} applies to --threshold-method {' or '.join(methods)}")
        threshold_params[name] = value
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
            description = f"training {model}"
            if isinstance(report, SeedEpochReport) and report.seeds > 1:
                description += f" seed {report.seed_index}/{report.seeds}"
            bar.update(
                task, description=description, completed=report.epoch, total=report.epochs, losses=losses
            )

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
            target=target,
            label_column=label_column,
            threshold_method=threshold_method,
            threshold_params=threshold_params,
            buckets=buckets,
        )
    console.print(_training_summary(model, result, target))
    if result.supervised:
        console.print(_class_table(result))


def _training_summary(model: str, result: TrainingResult, target: Path | None) -> Table:
    """The table `nadkit train` ends with: what was trained on, how, and what was measured."""
    metrics = result.bundle.metrics
    summary = Table(title=f"{model} trained", show_header=False)
    summary.add_row("bundle", f"{result.path} ({'with' if result.onnx else 'without'} model.onnx)")
    features = result.bundle.detector.feature_names_ or ()
    if result.buckets:
        view = result.bundle.view
        assert view is not None
        over = f"per {view.config.by}" if view.config.by else "whole network"
        summary.add_row("view", f"time buckets of {view.config.bucket_s:g} s, {over}")
        summary.add_row("features", f"{len(features)} bucket metrics")
    else:
        summary.add_row("features", str(len(features)))
    if result.supervised:
        summary.add_row("labelled training rows", f"{result.train_rows:,}")
        method = (metrics.get("split") or {}).get("method", "")
        summary.add_row(
            "validation rows (attacks)",
            f"{result.holdout_rows:,} ({result.holdout_attacks:,}); {method} split",
        )
        summary.add_row("classes", ", ".join(result.classes))
        if target is not None:
            summary.add_row("CMD target rows", f"{result.target_rows:,} unlabelled, from {target}")
        else:
            summary.add_row("CMD target rows", "none (no --target: no domain adaptation)")
    elif result.buckets:
        summary.add_row("training buckets", f"{result.train_rows:,} (of normal flows)")
        since = (metrics.get("view") or {}).get("holdout_from", "")
        held = f"{result.holdout_rows:,} ({result.holdout_attacks:,}), from {since}"
        summary.add_row("hold-out flows (attacks)", held)
    else:
        if result.class_counts.get("holdout"):
            summary.add_row("normal training rows", f"{result.train_rows:,}")
            held = f"{result.holdout_rows:,} ({result.holdout_attacks:,})"
            summary.add_row("hold-out rows (attacks)", held)
        else:
            summary.add_row("training rows (unlabelled, taken as normal)", f"{result.train_rows:,}")
            summary.add_row("hold-out rows (unlabelled)", f"{result.holdout_rows:,}")
    summary.add_row("fit time", f"{result.fit_seconds:.1f} s")
    histories = metrics.get("histories") or ([metrics["history"]] if metrics.get("history") else [])
    for index, history in enumerate(histories, start=1):
        label = "epochs" if len(histories) == 1 else f"epochs, seed {index}/{len(histories)}"
        summary.add_row(
            label, f"{history['epochs_run']} (best {history['best_epoch']}, stopped by {history['stopped']})"
        )
    threshold = result.bundle.threshold
    if threshold is not None:
        summary.add_row("threshold", f"{threshold.value:.6g} ({threshold.describe()})")
    where = "validation" if result.supervised else "hold-out"
    measured = metrics.get("holdout")
    if measured:
        figures = f"{measured['roc_auc']:.4f} / {measured['pr_auc']:.4f} / {measured['f1']:.4f}"
        summary.add_row(f"{where} ROC-AUC / PR-AUC / F1", f"{figures} (threshold chosen here)")
    classification = metrics.get("classification")
    if classification:
        summary.add_row(f"{where} macro F1 of the classes", f"{classification['macro_f1']:.4f}")
        if "nad_score" in classification:
            summary.add_row(f"{where} NAD 2021 score", f"{classification['nad_score']:.4f}")
    return summary


def _class_table(result: TrainingResult) -> Table:
    """Rows of each class in the training and validation parts of a supervised model."""
    table = Table(title="classes")
    table.add_column("class")
    table.add_column("training rows", justify="right")
    table.add_column("validation rows", justify="right")
    train, held = result.class_counts.get("train", {}), result.class_counts.get("holdout", {})
    for name in [*result.classes, *sorted(set(held) - set(result.classes))]:
        table.add_row(name, f"{train.get(name, 0):,}", f"{held.get(name, 0):,}")
    return table


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
    source: Annotated[
        str,
        typer.Argument(
            help="Flows to score: file, directory or glob, any format (--engine spark: Parquet, "
            "also a URI such as hdfs://... or s3a://...)."
        ),
    ],
    out: Annotated[
        str,
        typer.Option(
            "--out",
            "-o",
            help="Alerts file: .jsonl, .parquet or .csv (--engine spark: .parquet is a Parquet dataset "
            "directory; also a URI).",
        ),
    ],
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
        str,
        typer.Option(
            help="auto (ONNX Runtime on CPU when the bundle has model.onnx), torch, onnx, or spark "
            "(a Spark job over a Parquet dataset, scoring as auto on the executors)."
        ),
    ] = "auto",
    master: Annotated[
        str | None,
        typer.Option(
            help="--engine spark: the Spark master, e.g. local[4], yarn, k8s://https://HOST:PORT, "
            "spark://HOST:PORT (default: local[*], or spark-submit's)."
        ),
    ] = None,
    partitions: Annotated[
        int | None,
        typer.Option(min=1, help="--engine spark: partitions the flows are scored in (default: by size)."),
    ] = None,
    spark_conf: Annotated[
        list[str] | None,
        typer.Option(
            "--conf",
            help="--engine spark: a Spark setting KEY=VALUE, repeatable (spark.executor.memory=8g, ...).",
        ),
    ] = None,
    format: FormatOption = None,
    mapping: MapOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output file.")] = False,
) -> None:
    """Score flows with a trained model and write explained alerts."""
    from nadkit.alerts.records import output_kind
    from nadkit.detection.detect import detect_file, summary_line
    from nadkit.training.bundle import ModelBundle

    output_kind(out)
    if "://" not in out and Path(out).exists() and not force:
        raise NadkitError(f"{out}: already exists (use --force to replace it)")
    if engine == "spark":
        from nadkit.detection.spark import detect_spark, parse_conf

        if mapping or format not in (None, "parquet"):
            raise NadkitError("--engine spark reads canonical Parquet datasets: no --format or --map")
        with errors.status("scoring on Spark"):
            result = detect_spark(
                bundle,
                source,
                out,
                master=master,
                partitions=partitions,
                alerts_only=not all_flows,
                threshold=threshold,
                top=top,
                overwrite=force,
                conf=parse_conf(spark_conf),
                chunk_rows=chunk_rows,
            )
    else:
        if master or partitions or spark_conf:
            raise NadkitError("--master, --partitions and --conf go with --engine spark")
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
    console.print(f"{summary_line(result)}; wrote {result.written:,} records to {out}")  # type: ignore[arg-type]


@app.command()
def stream(
    bundle: Annotated[
        Path, typer.Option("--bundle", "-b", help="Model bundle directory (from `nadkit train`).")
    ],
    source: Annotated[
        str,
        typer.Option(
            "--source",
            "-s",
            help="netflow://HOST:PORT (NetFlow v5/v9, IPFIX over UDP), pcap:FILE, iface:NAME, follow:PATH "
            "(a growing CSV, JSON-lines or Zeek log) or - (standard input).",
        ),
    ],
    sink: Annotated[
        list[str] | None,
        typer.Option(
            "--sink",
            help="- (JSON lines on stdout), file:PATH, sqlite:PATH, syslog+udp://HOST:PORT, "
            "syslog+tcp://HOST:PORT or an http(s) webhook URL; repeat for several.",
        ),
    ] = None,
    batch_seconds: Annotated[float, typer.Option(min=0.01, help="Micro-batch length in seconds.")] = 1.0,
    batch_rows: Annotated[
        int, typer.Option(min=1, help="A micro-batch ends early at this many flows.")
    ] = 50_000,
    lateness_s: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Seconds a flow may come after newer ones (flows come when they end: set the exporter's "
            "active timeout); older flows are dropped and counted. Default: the source's.",
        ),
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Alert threshold (default: the bundle's, chosen on validation).")
    ] = None,
    top: Annotated[int, typer.Option(min=1, max=50, help="Contributing features listed per alert.")] = 5,
    all_flows: Annotated[
        bool, typer.Option("--all", help="Write every scored flow, not only alerts.")
    ] = False,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Checkpoint file: a restarted stream writes no record twice."),
    ] = None,
    max_held: Annotated[
        int, typer.Option(min=1, help="Safety valve: flows held for their windows before they are let go.")
    ] = 5_000_000,
    overflow: Annotated[
        str, typer.Option(help="What the valve does with held flows: release (score early) or drop.")
    ] = "release",
    queue_size: Annotated[
        int, typer.Option(min=1, help="Hand-off queue between receiver and scorer (packets or line blocks).")
    ] = 20_000,
    status_seconds: Annotated[float, typer.Option(min=0.1, help="Seconds between status lines.")] = 10.0,
    engine: Annotated[str, typer.Option(help="auto, torch or onnx.")] = "auto",
    format: FormatOption = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the final counters as JSON on stderr.")
    ] = False,
) -> None:
    """Detect live: score flows from a collector, capture, followed file or stdin as they arrive."""
    from nadkit.stream import StreamConfig, open_stream, stop_on_signals

    if overflow not in ("release", "drop"):
        raise NadkitError(f"--overflow must be release or drop, not {overflow!r}")
    config = StreamConfig(
        batch_seconds=batch_seconds,
        batch_rows=batch_rows,
        lateness_s=lateness_s,
        threshold=threshold,
        top=top,
        all_flows=all_flows,
        max_held=max_held,
        overflow=overflow,  # type: ignore[arg-type]
        queue_size=queue_size,
        status_seconds=status_seconds,
        checkpoint=checkpoint,
    )

    def status(stats) -> None:  # type: ignore[no-untyped-def]
        errors.print(f"[dim]stream[/dim] {stats.line()}", highlight=False, soft_wrap=True)

    runner = open_stream(
        bundle,
        source,
        sink or ["-"],
        config,
        format=format,
        engine=engine,
        on_status=status,  # type: ignore[arg-type]
    )
    errors.print(
        f"streaming [bold]{runner.source.name}[/bold] through {runner.bundle.detector.name} "
        f"(threshold {runner.scorer.threshold:.6g}, lateness {runner.lateness_s:g} s) to "
        + ", ".join(s.name for s in runner.sinks),
        highlight=False,
        soft_wrap=True,
    )
    with stop_on_signals(runner):
        result = runner.run()
    if as_json:
        errors.print_json(data=result.to_dict())
        return
    summary = Table(title="stream", show_header=False)
    summary.add_row("flows in / scored", f"{result.flows_in:,} / {result.flows_scored:,}")
    summary.add_row("alerts / records written", f"{result.alerts:,} / {result.written:,}")
    summary.add_row("flows/s", f"{result.rate_flows_per_s:,.0f} over {result.seconds:.1f} s")
    summary.add_row(
        "dropped (queue, late, valve)",
        f"{result.queue_dropped:,}, {result.late_dropped:,}, {result.overflow_dropped:,}",
    )
    if result.overflow_released:
        summary.add_row("released early by the valve", f"{result.overflow_released:,}")
    if result.duplicates_suppressed:
        summary.add_row("duplicates not written again", f"{result.duplicates_suppressed:,}")
    if result.latency_p50_s is not None:
        summary.add_row("latency p50 / p99", f"{result.latency_p50_s:.3f} s / {result.latency_p99_s:.3f} s")
    summary.add_row("most flows held", f"{result.max_held_rows:,}")
    for name, value in result.source_stats.items():
        if value:
            summary.add_row(f"source: {name.replace('_', ' ')}", f"{value:,}")
    errors.print(summary)


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
    """Measure a model on labelled flows: metrics table, and an HTML report with figures. Says so
    first when the flows are (mostly) the model's training data."""
    from nadkit.detection.evaluation import evaluate_bundle
    from nadkit.training.bundle import ModelBundle

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
    warning = outcome.overlap.warning() if outcome.overlap is not None else None
    if warning is not None:
        # first: on standard error beside the JSON, above the table otherwise
        (errors if as_json else console).print(f"[yellow]{escape(warning)}[/yellow]")
    if as_json:
        sys.stdout.write(json.dumps(outcome.to_dict(), indent=2) + "\n")
        return
    console.print(outcome.table())
    if outcome.report is not None:
        console.print(f"report: {outcome.report}")


# -- model registry, alert service and the feedback loop -------------------------------------------

models_app = typer.Typer(
    help="Registered model versions (list, register, activate) and the detectors nadkit can train.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")

RegistryOption = Annotated[
    Path | None,
    typer.Option("--models", help="Model registry directory (default: models/ beside the --db file)."),
]
StoreOption = Annotated[Path | None, typer.Option("--db", help="Alert store file (SQLite).")]


def _registry(models: Path | None, db: Path | None):  # type: ignore[no-untyped-def]
    from nadkit.lifecycle.registry import ModelRegistry, default_registry

    if models is None and db is None:
        raise NadkitError("name the model registry with --models DIR (or the alert store with --db FILE)")
    return ModelRegistry(models if models is not None else default_registry(db))  # type: ignore[arg-type]


@models_app.command("available")
def models_available() -> None:
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


@models_app.command("list")
def models_list(
    models: RegistryOption = None,
    db: StoreOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the versions as JSON.")] = False,
) -> None:
    """List the model versions of a registry (the active one marked)."""
    registry = _registry(models, db)
    versions = registry.list()
    if as_json:
        sys.stdout.write(json.dumps([v.to_dict() for v in versions], indent=2) + "\n")
        return
    if not versions:
        console.print(f"no model registered in {registry.root}")
        return
    table = Table(title=f"Model versions in {registry.root}")
    for column in ("version", "active", "model", "created", "threshold", "hold-out F1", "source"):
        table.add_column(column, justify="right" if column in ("threshold", "hold-out F1") else "left")
    for version in versions:
        f1 = version.metrics.get("f1")
        table.add_row(
            version.version,
            "[bold green]active[/bold green]" if version.active else "",
            version.model,
            version.created,
            f"{version.threshold:.6g}" if version.threshold is not None else "-",
            f"{f1:.4f}" if isinstance(f1, float) else "-",
            version.source,
        )
    console.print(table)


@models_app.command("register")
def models_register(
    bundle: Annotated[Path, typer.Argument(help="Model bundle directory to copy into the registry.")],
    models: RegistryOption = None,
    db: StoreOption = None,
    note: Annotated[str, typer.Option(help="A note kept with the version.")] = "",
    activate: Annotated[bool, typer.Option("--activate", help="Also make it the active version.")] = False,
) -> None:
    """Copy a model bundle into the registry as a new version (the same bundle twice: one version)."""
    registry = _registry(models, db)
    version = registry.register(bundle, note=note)
    console.print(f"{bundle} registered as [bold]{version.version}[/bold] in {registry.root}")
    if activate:
        registry.activate(version.version)
        console.print(f"[bold]{version.version}[/bold] is now the active model")


@models_app.command("activate")
def models_activate(
    version: Annotated[str, typer.Argument(help="Version to activate, e.g. v2 (see `nadkit models list`).")],
    models: RegistryOption = None,
    db: StoreOption = None,
) -> None:
    """Make a registered version the active model (a running service switches to it)."""
    registry = _registry(models, db)
    previous = registry.active_version()
    activated = registry.activate(version)
    console.print(
        f"[bold]{activated.version}[/bold] ({activated.model}) is now the active model"
        + (f" (was {previous})" if previous and previous != activated.version else "")
    )


@app.command()
def serve(
    db: Annotated[Path, typer.Option("--db", help="Alert store file (SQLite; created when missing).")],
    bundle: Annotated[
        Path | None,
        typer.Option(help="Model bundle to register and activate (default: the registry's active version)."),
    ] = None,
    models: RegistryOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on (0: any free port).")] = 8000,
    config: Annotated[
        Path | None,
        typer.Option(
            help="Service settings (YAML, TOML or JSON): token, max_body_mb, max_flows, engine, top."
        ),
    ] = None,
    insecure_localhost: Annotated[
        bool,
        typer.Option("--insecure-localhost", help="Run without a token; forces listening on 127.0.0.1 only."),
    ] = False,
    engine: Annotated[str | None, typer.Option(help="Scoring engine: auto, torch or onnx.")] = None,
) -> None:
    """Run the alert service: scoring API, alert store, triage page at /, metrics (token from
    NADKIT_TOKEN or the settings file)."""
    import socket

    from nadkit.config import read_settings
    from nadkit.service.settings import LOOPBACK, Settings, token_from

    require("fastapi", "the alert service (nadkit serve)", "service")
    require("uvicorn", "the alert service (nadkit serve)", "service")

    options = read_settings(config, "service settings") if config else {}
    known = {"token", "max_body_mb", "max_flows", "engine", "top", "scoring_slots"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise NadkitError(
            f"{config}: unknown service setting {unknown[0]!r} (known: {', '.join(sorted(known))})"
        )
    token = token_from(settings=options)
    if insecure_localhost and host != LOOPBACK:
        errors.print(f"[yellow]--insecure-localhost: listening on {LOOPBACK}, not {host}[/yellow]")
        host = LOOPBACK
    try:
        settings = Settings(
            db=db,
            registry=models,
            token=token,
            insecure_localhost=insecure_localhost,
            max_body_bytes=int(float(options.get("max_body_mb", 32)) * 1024 * 1024),
            max_flows=int(options.get("max_flows", 200_000)),
            engine=engine or str(options.get("engine", "auto")),
            top=int(options.get("top", 5)),
            scoring_slots=int(options.get("scoring_slots", 2)),
        )
    except (TypeError, ValueError) as error:
        raise NadkitError(f"{config}: invalid service setting ({error})") from None
    if bundle is not None and not bundle.is_dir():
        raise NadkitError(f"{bundle}: no such model bundle directory")
    registry = _registry(models, db)
    if bundle is None and registry.active_version() is None:
        raise NadkitError(f"{registry.root}: no active model; start with --bundle DIR")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise NadkitError(f"cannot listen on {host}:{port} ({error.strerror or error})") from None
    listener.listen(256)
    listener.setblocking(False)
    if bundle is not None:
        version = registry.register(bundle)
        if registry.active_version() != version.version:
            registry.activate(version.version, by="serve")
        console.print(f"model {bundle} registered as [bold]{version.version}[/bold] and active")
    _serve(settings, listener, host)


def _serve(settings, listener, host: str) -> None:  # type: ignore[no-untyped-def]
    from nadkit.service import create_app
    from nadkit.service.server import run

    application = create_app(settings)
    bound = listener.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    console.print(
        f"nadkit service on [bold]http://{shown}:{bound}/[/bold] "
        f"(model {application.state.service.models.version}, store {settings.db}, "
        f"registry {settings.registry_dir}"
        + (", [yellow]no token[/yellow]" if not settings.auth_required else ", bearer token required")
        + ")",
        highlight=False,
    )
    sys.stdout.flush()
    run(application, listener)
    console.print("service stopped")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _rate_with_interval(value: float | None, interval: tuple[float, float] | None) -> str:
    if value is None or interval is None:
        return _percent(value)
    return f"{value:.1%} \\[{interval[0]:.1%}, {interval[1]:.1%}]"


@app.command()
def retrain(
    bundle: Annotated[
        str, typer.Option("--bundle", help="The active model: a bundle directory or a registry version (v1).")
    ],
    db: Annotated[Path, typer.Option("--db", help="Alert store holding the analysts' feedback.")],
    data: Annotated[Path, typer.Option("--data", help="New traffic to retrain on: file, directory or glob.")],
    out: Annotated[Path, typer.Argument(help="Challenger bundle directory to write.")],
    models: RegistryOption = None,
    config: Annotated[
        Path | None, typer.Option(help="Model settings overriding the active model's (e.g. epochs).")
    ] = None,
    weight: Annotated[
        int, typer.Option(min=1, max=1000, help="Times each flow marked benign is repeated in training.")
    ] = 10,
    feedback_holdout: Annotated[
        float,
        typer.Option(min=0.0, max=0.9, help="Share of the reviewed alerts kept out for the comparison."),
    ] = 0.3,
    holdout: Annotated[
        float, typer.Option(min=0.05, max=0.9, help="Share of normal traffic held out for the threshold.")
    ] = 0.3,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    min_held_out: Annotated[
        int,
        typer.Option(
            "--min-held-out", min=1, help="Held-out reviewed flows needed before a better model is named."
        ),
    ] = 50,
    min_per_kind: Annotated[
        int,
        typer.Option(
            "--min-per-kind",
            min=1,
            help="Of those, at least this many marked benign and as many confirmed attacks.",
        ),
    ] = 10,
    confidence: Annotated[
        float,
        typer.Option(min=0.5, max=0.999, help="Confidence of the rates' intervals (Wilson score)."),
    ] = 0.95,
    register: Annotated[
        bool, typer.Option("--register/--no-register", help="Register the challenger (never activated).")
    ] = True,
    format: FormatOption = None,
    mapping: MapOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output bundle.")] = False,
) -> None:
    """Retrain on new traffic and analyst feedback; compare the challenger with the active model on
    held-out feedback, naming a better model only when the feedback supports it."""
    from nadkit.alerts.store import AlertStore
    from nadkit.config import read_settings
    from nadkit.lifecycle.feedback import CHALLENGER_BETTER, NOT_ENOUGH_EVIDENCE, EvidenceRule
    from nadkit.lifecycle.feedback import retrain as retrain_model
    from nadkit.lifecycle.registry import resolve_bundle
    from nadkit.training.bundle import ModelBundle

    if not db.is_file():
        raise NadkitError(f"{db}: no such alert store")
    evidence = EvidenceRule(flows=min_held_out, per_kind=min_per_kind, confidence=confidence)
    registry = _registry(models, db)
    champion_path, version = resolve_bundle(bundle, registry)
    options = read_settings(config, "model settings") if config else {}
    champion = ModelBundle.load(champion_path)
    with (
        AlertStore(db) as store,
        console.status(f"retraining {champion.detector.name} on {data} and feedback"),
    ):
        result = retrain_model(
            champion,
            store,
            data,
            out,
            champion_name=version or champion_path.name,
            config=options,
            format=format,
            mapping=mapping,
            feedback_holdout=feedback_holdout,
            benign_weight=weight,
            holdout_fraction=holdout,
            seed=seed,
            overwrite=force,
            evidence=evidence,
        )
    verdict = result.comparison.verdict
    outcome = verdict.outcome if verdict is not None else "not compared"
    registered = (
        registry.register(out, note=f"retrained from {version or champion_path}; {outcome}")
        if register
        else None
    )
    if as_json:
        payload = {
            **result.comparison.to_dict(),
            "feedback": result.feedback,
            "registered": registered.version if registered else None,
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    comparison = result.comparison
    challenger_name = registered.version if registered else comparison.challenger
    table = Table(title=f"{comparison.champion} (active) against the challenger {challenger_name}")
    table.add_column("measure")
    table.add_column("flows", justify="right")
    table.add_column(f"{comparison.champion} [{evidence.confidence:.0%} interval]", justify="right")
    table.add_column(f"{challenger_name} [{evidence.confidence:.0%} interval]", justify="right")
    table.add_column("better", justify="center")
    for measure in comparison.measures:
        if measure.name == "threshold":
            cells = [f"{v:.6g}" if v is not None else "-" for v in (measure.champion, measure.challenger)]
        else:
            cells = [
                _rate_with_interval(measure.champion, measure.champion_interval),
                _rate_with_interval(measure.challenger, measure.challenger_interval),
            ]
        mark = {
            "better": "[green]yes[/green]",
            "worse": "[red]no[/red]",
            "unclear": "[yellow]unclear[/yellow]",
            None: "",
        }[measure.evidence]
        table.add_row(measure.name, f"{measure.rows:,}" if measure.rows else "", *cells, mark)
    console.print(table)
    if verdict is not None:
        colour = {CHALLENGER_BETTER: "green", NOT_ENOUGH_EVIDENCE: "yellow"}.get(verdict.outcome, "red")
        console.print(f"[bold {colour}]{verdict.outcome}[/bold {colour}]: {escape(verdict.reason)}")
        if not verdict.enough_feedback:
            console.print(
                f"the minimum is set by --min-held-out ({evidence.flows}) and --min-per-kind "
                f"({evidence.per_kind}); review more alerts, or hold out more of them (--feedback-holdout)"
            )
    counts = result.feedback
    console.print(
        f"feedback: {counts['train_benign']} benign and {counts['train_attacks']} confirmed reviews "
        f"trained on, {counts['held_out_benign']} and {counts['held_out_attacks']} held out; "
        f"{result.dropped:,} traffic flows left out (alerts not cleared by an analyst)"
    )
    console.print(f"challenger written to [bold]{out}[/bold]")
    better = verdict is not None and verdict.challenger_better
    if registered is not None and better:
        console.print(
            f"registered as [bold]{registered.version}[/bold] (not active); activate with: "
            f"nadkit models activate {registered.version} --models {registry.root}"
        )
    elif registered is not None:
        console.print(
            f"registered as [bold]{registered.version}[/bold] (not active); the comparison gives no "
            f"reason to activate it: {comparison.champion} stays the active model"
        )


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
    from nadkit.simulate import SimulationConfig, simulate_to_directory

    config = SimulationConfig(days=days, flows_per_day=flows_per_day, seed=seed)
    started = time.perf_counter()
    with console.status(f"simulating {days} day(s) x ~{flows_per_day:,} flows"):
        files = simulate_to_directory(config, out, output_format=output_format, overwrite=force)
    elapsed = time.perf_counter() - started
    console.print(f"wrote {len(files)} file(s) to [bold]{out}[/bold] in {elapsed:.1f} s")
    for file in files:
        console.print(f"  {file}")


@app.command("mix-captures")
def mix_captures_command(
    out: Annotated[Path, typer.Argument(help="Labelled flow table to write (.parquet or .csv).")],
    benign: Annotated[
        list[Path] | None, typer.Option("--benign", help="Benign capture file or directory (repeatable).")
    ] = None,
    attack: Annotated[
        list[Path] | None, typer.Option("--attack", help="Attack capture file or directory (repeatable).")
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", help="FILE=NAME: the label of an attack capture (default: its file stem)."),
    ] = None,
    span: Annotated[
        float | None,
        typer.Option(min=0.001, help="Seconds of the shared window (default: the longest capture)."),
    ] = None,
    max_gap: Annotated[
        float, typer.Option(min=0.001, help="Idle gaps inside a capture longer than this (s) are shortened.")
    ] = 60.0,
    start: Annotated[
        str | None, typer.Option(help="Start of the window (ISO time, UTC; default 2021-01-04T09:00).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the captures' places in the window.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output file.")] = False,
) -> None:
    """Mix captures labelled per file into one labelled, interleaved flow table for evaluation."""
    import datetime as dt

    from nadkit.fileio import atomic_path
    from nadkit.sources.captures import DEFAULT_START, mix_captures

    kind = out.suffix.lower()
    if kind not in (".parquet", ".csv"):
        raise NadkitError(f"{out}: write .parquet or .csv")
    if out.exists() and not force:
        raise NadkitError(f"{out}: already exists (use --force to replace it)")
    names: dict[str, str] = {}
    for item in label or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise NadkitError(f"--label {item!r}: write FILE=NAME")
        names[key.strip()] = value.strip()
    begin = DEFAULT_START
    if start:
        try:
            begin = dt.datetime.fromisoformat(start)
        except ValueError:
            raise NadkitError(f"--start {start!r}: not an ISO time such as 2021-01-04T09:00") from None
    with console.status("metering captures into flows"):
        mixed = mix_captures(
            benign or [],
            attack or [],
            attack_labels=names,
            start=begin,
            span_s=span,
            max_gap_s=max_gap,
            seed=seed,
        )
    frame = mixed.frame
    with atomic_path(out, overwrite=force) as temporary:
        if kind == ".parquet":
            frame.write_parquet(temporary)
        else:
            frame.write_csv(temporary)
    table = Table(title=f"{frame.height:,} flows over {mixed.span_s:.1f} s")
    table.add_column("capture")
    table.add_column("label")
    table.add_column("flows", justify="right")
    table.add_column("starts", justify="right")
    for capture in mixed.captures:
        offset = (capture.start - mixed.start).total_seconds()
        table.add_row(capture.path.name, capture.label, f"{capture.flows:,}", f"+{offset:.1f} s")
    console.print(table)
    console.print(f"wrote [bold]{out}[/bold]")


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


# -- pictures of flows and detections ---------------------------------------------------------------

plot_app = typer.Typer(
    help="Pictures: flows grouped over time (by true label, prediction or score), an alert's features.",
    no_args_is_help=True,
)
app.add_typer(plot_app, name="plot")


@plot_app.command("groups")
def plot_groups(
    source: Annotated[Path, typer.Argument(help="Flows: file, directory or glob, any format.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Picture to write: .png, or .html (zoom and pan).")
    ],
    by: Annotated[
        str,
        typer.Option(
            help="Grouping keys, one column per group: src_port,dst_port | src_subnet,dst_subnet | src,dst | "
            "proto,app | src_subnet/16,... | any column."
        ),
    ] = "src_port,dst_port",
    color: Annotated[
        str,
        typer.Option(
            "--color",
            help="label, prediction or score; several (comma-separated) are drawn side by side. "
            "prediction and score need --bundle.",
        ),
    ] = "label",
    bundle: Annotated[
        Path | None, typer.Option("--bundle", "-b", help="Model bundle that scores the flows.")
    ] = None,
    width: Annotated[int, typer.Option(help="Width of each picture, in pixels.")] = 1000,
    height: Annotated[int, typer.Option(help="Height of each picture, in pixels.")] = 600,
    time_bin: Annotated[
        str | None, typer.Option("--time-bin", help="Time slot of one row, e.g. 30s, 5m, 1h (default: fits).")
    ] = None,
    order: Annotated[
        str, typer.Option(help="Column order: hash (arbitrary, fixed), first (appearance) or size.")
    ] = "hash",
    start: Annotated[str | None, typer.Option(help="Only flows from this time on (ISO, UTC).")] = None,
    end: Annotated[str | None, typer.Option(help="Only flows before this time (ISO, UTC).")] = None,
    threshold: Annotated[float | None, typer.Option(help="Alert threshold (default: the bundle's).")] = None,
    engine: Annotated[str, typer.Option(help="auto, torch or onnx.")] = "auto",
    format: FormatOption = None,
    mapping: MapOption = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing picture.")] = False,
) -> None:
    """Draw flows grouped by a key: a column per group, time running down, cells by class or score."""
    from nadkit.pictures import check_options, write_groups
    from nadkit.pictures.files import GROUPS_SUFFIXES, check_out

    require("datashader", "drawing flow pictures (nadkit plot groups)", "pictures")
    require("pandas", "drawing flow pictures (nadkit plot groups)", "pictures")

    # the options are checked before anything is read or scored
    check_out(out, suffixes=GROUPS_SUFFIXES, overwrite=force)
    options = dict(width=width, height=height, time_bin=time_bin, order=order, start=start, end=end)
    keys, colourings = check_options(by=by, color=color, **options)
    started = time.perf_counter()
    with console.status(f"drawing {out.name}"):
        frame, model = _flows_to_draw(
            source, keys, colourings, bundle=bundle, engine=engine, format=format, mapping=mapping,
            threshold=threshold,
        )  # fmt: skip
        written = write_groups(
            frame,
            out,
            overwrite=force,
            by=keys,
            color=colourings,
            threshold=threshold,
            source=source,
            model=model,
            **options,
        )
    console.print(f"wrote [bold]{written}[/bold] in {time.perf_counter() - started:.1f} s")


def _flows_to_draw(
    source: Path,
    keys: tuple[str, ...],
    colourings: tuple[str, ...],
    *,
    bundle: Path | None,
    engine: str,
    format: str | None,
    mapping: str | None,
    threshold: float | None,
) -> tuple[pl.DataFrame, str | None]:
    """The flows of ``source`` a flow-groups picture draws, and the name of the model that scored
    them: scored by ``bundle`` when given, else read as they are (only the columns a picture uses;
    a file that is already scored, such as the alerts `nadkit detect` writes, keeps its scores)."""
    from nadkit.errors import ConfigError
    from nadkit.pictures import key_column

    started = time.perf_counter()
    if bundle is not None:
        from nadkit.detection.detect import score_table
        from nadkit.training.bundle import ModelBundle

        loaded = ModelBundle.load(bundle, engine=engine)
        model = loaded.detector.name
        frame = score_table(loaded, source, format=format, mapping=mapping, threshold=threshold).frame
        log.info(
            "scored %s flows with %s in %.1f s", f"{frame.height:,}", model, time.perf_counter() - started
        )
        return frame, model
    from nadkit.pictures.grouping import check_key_column
    from nadkit.sources import load_flows, read_flows

    columns = {"time", "label", "score", "threshold", "alert", "class", *(key_column(key) for key in keys)}
    frame, _ = load_flows(source, format=format, mapping=mapping, columns=columns)
    log.info("read %s flows in %.1f s", f"{frame.height:,}", time.perf_counter() - started)
    if any(key_column(key) not in frame.columns for key in keys):
        # the error lists every column of the input, not only those read
        names = read_flows(source, format=format, mapping=mapping)[0].collect_schema().names()
        for key in keys:
            check_key_column(key, names, source)
    if any(c != "label" for c in colourings) and "score" not in frame.columns:
        wanted = next(c for c in colourings if c != "label")
        raise ConfigError(f"--color {wanted} needs a model: give --bundle DIR")
    return frame, None


@plot_app.command("alert")
def plot_alert(
    alerts: Annotated[Path, typer.Argument(help="Alerts written by `nadkit detect` (.jsonl or .parquet).")],
    row: Annotated[int, typer.Option("--row", min=1, help="The alert's input row (its `row` field).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Picture to write (.png).")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing picture.")] = False,
) -> None:
    """Draw the features that contributed most to one alert's score, with the flow's values."""
    from nadkit.pictures import load_alert, write_alert
    from nadkit.pictures.files import check_out

    check_out(out, suffixes=(".png",), overwrite=force)
    written = write_alert(load_alert(alerts, row), out, overwrite=force)
    console.print(f"wrote [bold]{written}[/bold]")


def main() -> None:
    """Entry point: bad input ends as one line on stderr and exit code 2."""
    try:
        app()
    except NadkitError as error:
        if _STATE["debug"]:
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        errors.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (OSError, ValueError) as error:
        if _STATE["debug"]:
            raise
        errors.print(f"[bold red]error:[/bold red] {escape(str(error))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        errors.print("interrupted")
        sys.exit(130)
