"""Commands that score flows with a trained model: `detect` (files), `stream` (live) and `evaluate`
(labelled flows)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from nadkit.cli.application import (
    BadRowsOption,
    FormatOption,
    MapOption,
    app,
    arguments,
    bad_rows,
    console,
    errors,
    log,
    needs,
    print_json,
)
from nadkit.cli.registry import RegistryOption
from nadkit.errors import NadkitError


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


def _drift_monitor(bundle: Any, window: int) -> Any:
    """A drift monitor for ``bundle`` (None without a reference or with ``window`` 0)."""
    from nadkit.evaluation.drift import DriftLevels, DriftMonitor

    if window <= 0 or bundle.reference is None:
        return None
    return DriftMonitor(bundle.reference, DriftLevels(window=max(10, window), min_rows=min(500, window)))


def _print_drift(drift: dict[str, Any]) -> None:
    """One line on drift: windows, events, the largest score PSI and the features that moved most."""
    moved = ", ".join(f"{m['feature']} {m['psi']:.2f}" for m in drift["most_moved"][:3])
    style = "yellow" if drift["events"] else "dim"
    errors.print(
        f"[{style}]drift: {drift['events']} event(s) in {drift['windows']} window(s) of "
        f"{drift['window_rows']:,}; score PSI up to {drift['max_score_psi']:.3f}; "
        f"moved most: {moved or 'none'}[/{style}]",
        highlight=False,
        soft_wrap=True,
    )


@app.command(short_help="Score flows with a model; write explained alerts.")
def detect(
    bundle: Annotated[
        Path, typer.Argument(metavar="BUNDLE", help="Model bundle directory (from `nadkit train`).")
    ],
    source: Annotated[
        str,
        typer.Argument(
            metavar="SOURCE",
            help="Flows to score: file, directory or glob, any format (--engine spark: Parquet, "
            "also a URI such as hdfs://... or s3a://...).",
        ),
    ],
    out: Annotated[
        str,
        typer.Option(
            "--out",
            "-o",
            help="Alerts file: .jsonl, .parquet or .csv (--engine spark: .parquet is a Parquet dataset "
            "directory; also a URI); with --out-format ecs .json, .jsonl or .ndjson.",
        ),
    ],
    out_format: Annotated[
        str,
        typer.Option(
            "--out-format",
            help="nadkit: nadkit's alert records, file type by the suffix; ecs: Elastic Common Schema "
            "documents as JSON lines (network.community_id included), for Elastic, Splunk or any SIEM "
            "(--incidents too).",
        ),
    ] = "nadkit",
    all_flows: Annotated[
        bool, typer.Option("--all", help="Write every scored flow, not only alerts.")
    ] = False,
    threshold: Annotated[
        float | None, typer.Option(help="Alert threshold (default: the bundle's, chosen on validation).")
    ] = None,
    top: Annotated[
        int,
        typer.Option(
            min=0, max=50, help="Contributing features listed per alert (0: alerts unexplained, faster)."
        ),
    ] = 5,
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
            metavar="KEY=VALUE",
            help="--engine spark: a Spark setting KEY=VALUE, repeatable (spark.executor.memory=8g, ...).",
        ),
    ] = None,
    format: FormatOption = None,
    on_bad_rows: BadRowsOption = "error",
    mapping: MapOption = None,
    incidents: Annotated[
        Path | None,
        typer.Option(
            "--incidents",
            help="Also write the incidents the alerts form (.jsonl, .parquet or .csv): floods, scans, "
            "repeated pairs and one-off hosts, each with its alerts' rows.",
        ),
    ] = None,
    incident_gap: Annotated[
        float, typer.Option(min=1.0, help="Idle seconds that end an incident's episode.")
    ] = 300.0,
    severity: Annotated[
        str | None,
        typer.Option(
            help="Alert severity cut points, LEVEL=PERCENTILE:MULTIPLE for critical, high and medium "
            "(percentile among normal hold-out scores, or multiple of the threshold), e.g. "
            "critical=99.99:10,high=99.9:3,medium=99.5:1.5 (the defaults).",
        ),
    ] = None,
    drift_window: Annotated[
        int,
        typer.Option(
            min=0, help="Scored flows (or buckets) per drift window against the bundle's reference; 0: off."
        ),
    ] = 10_000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output file.")] = False,
) -> None:
    """Score flows with a trained model and write explained alerts, grouped into incidents."""
    from nadkit.alerts.incidents import IncidentConfig
    from nadkit.alerts.records import output_kind
    from nadkit.detection.detect import detect_file, summary_line
    from nadkit.evaluation.calibration import SeverityRules
    from nadkit.training.bundle import ModelBundle

    drift: dict[str, Any] | None = None
    output_kind(out, out_format)
    if incidents is not None:
        output_kind(incidents, out_format)
    if "://" not in out and Path(out).exists() and not force:
        raise NadkitError(f"{out}: already exists (use --force to replace it)")
    if engine == "spark":
        from nadkit.detection.spark import detect_spark, parse_conf

        if out_format != "nadkit":
            raise NadkitError("--engine spark writes nadkit records: --out-format ecs is for local detection")
        if mapping or format not in (None, "parquet"):
            raise NadkitError("--engine spark reads canonical Parquet datasets: no --format or --map")
        if bad_rows(on_bad_rows) == "skip":
            raise NadkitError(
                "--engine spark stops at an invalid row; --on-bad-rows skip is for local detection"
            )
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
                incidents=incidents,
                incident_config=IncidentConfig(gap_s=incident_gap),
                chunk_rows=chunk_rows,
            )
    else:
        if master or partitions or spark_conf:
            raise NadkitError("--master, --partitions and --conf go with --engine spark")
        loaded = ModelBundle.load(bundle, engine=engine)
        monitor = _drift_monitor(loaded, drift_window)
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
                on_bad_rows=bad_rows(on_bad_rows),
                progress=lambda flows, alerts: bar.update(task, flows=flows, alerts=alerts),
                incidents=incidents,
                incident_config=IncidentConfig(gap_s=incident_gap),
                layout=out_format,
                severity=SeverityRules.parse(severity) if severity else None,
                on_scored=None if monitor is None else monitor.add,
            )
        if monitor is not None:
            monitor.close()
            drift = monitor.summary()
    note = None
    if engine != "spark":
        from nadkit.evaluation.transfer import alert_rate_note

        normal = loaded.calibration.normal if loaded.calibration is not None else None
        note = alert_rate_note(result.flows, result.alerts, result.threshold, normal)
    if as_json:
        extra = {"drift": drift, "alert_rate_note": note} if engine != "spark" else {}
        print_json({**result.to_dict(), **extra})
        return
    if drift is not None:
        _print_drift(drift)
    if result.by_class:
        table = Table(title="alerts by class")
        table.add_column("class")
        table.add_column("alerts", justify="right")
        for name, count in sorted(result.by_class.items(), key=lambda item: -item[1]):
            table.add_row(name, f"{count:,}")
        console.print(table)
    by_severity = getattr(result, "by_severity", None)
    if by_severity:
        console.print(
            "alerts by severity: " + ", ".join(f"{name} {count:,}" for name, count in by_severity.items())
        )
    shown = getattr(result, "top_alerts", None)
    if shown is not None and shown.height:
        console.print("\n".join(alert_lines(shown.head(5))))
    found = getattr(result, "incidents", None)
    if found is not None and found.height:
        console.print(incident_table(found))
    console.print(f"{summary_line(result)}; wrote {result.written:,} records to {out}")  # type: ignore[arg-type]
    if note is not None:
        console.print(note, style="yellow", markup=False)
    if found is not None and incidents is not None:
        console.print(f"{found.height:,} incidents -> {incidents}")


def alert_lines(alerts) -> list[str]:  # type: ignore[no-untyped-def]
    """The highest-scoring alerts, two lines each: where, how anomalous on the readable scales (the
    score's percentile among normal scores, its multiple of the threshold, the severity), and why."""
    lines = [f"[bold]top {alerts.height} alerts by score[/bold]"]
    for item in alerts.iter_rows(named=True):
        flow = f"{item.get('src') or ''} -> {item.get('dst') or ''}"
        if item.get("dpt") is not None:
            flow += f":{item['dpt']}"
        if item.get("proto"):
            flow += f" {item['proto']}"
        scale = [f"score {item['score']:.4g}"]
        if item.get("score_percentile") is not None:
            scale.append(f"percentile {item['score_percentile']:.2f}")
        if item.get("threshold_multiple") is not None:
            scale.append(f"{item['threshold_multiple']:.1f}x threshold")
        severity = item.get("severity") or "alert"
        head = f"[bold]{escape(severity)}[/bold] row {item['row']:,}  {escape(flow)}"
        lines.append(f"{head}  {', '.join(scale)}")
        if item.get("explanation"):
            lines.append(f"  why: {escape(item['explanation'])}")
    return lines


def incident_table(summary, shown: int = 15) -> Table:  # type: ignore[no-untyped-def]
    """The most severe incidents (then the largest) as a table."""
    ranks = {"low": 1, "medium": 2, "high": 3, "critical": 4}
    ordered = sorted(
        summary.iter_rows(named=True), key=lambda i: (-ranks.get(i["severity"], 0), -i["alerts"])
    )
    table = Table(title=f"incidents ({summary.height:,}; the {min(shown, summary.height)} most severe)")
    for column in ("severity", "kind", "key", "alerts", "sources", "destinations", "ports", "first seen"):
        numeric = column in ("alerts", "sources", "destinations", "ports")
        table.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for item in ordered[:shown]:
        first = item["first_seen"]
        table.add_row(
            item["severity"],
            item["kind"],
            escape(str(item["key"])),
            f"{item['alerts']:,}",
            f"{item['sources']:,}",
            f"{item['destinations']:,}",
            f"{item['ports']:,}",
            first.strftime("%Y-%m-%dT%H:%M:%SZ") if first is not None else "",
        )
    return table


def _retrain_settings(  # type: ignore[no-untyped-def]
    every: str | None, promote: str, wait: bool, models: Path | None, db: Path | None, sinks, engine: str
):
    """`nadkit stream`'s retraining settings (None without --retrain-every); the registry is --models,
    else models/ beside the alert store (--db, else the sqlite: sink's file)."""
    if every is None:
        return None
    from nadkit.lifecycle.registry import default_registry
    from nadkit.stream.retraining import RetrainSettings, parse_duration

    store = db or next((Path(str(s)[len("sqlite:") :]) for s in sinks if str(s).startswith("sqlite:")), None)
    if models is None and store is None:
        raise NadkitError("--retrain-every needs a model registry: --models DIR (or an alert store, --db)")
    registry = models if models is not None else default_registry(store)  # type: ignore[arg-type]
    return RetrainSettings(
        every_s=parse_duration(every),
        registry=registry,
        store=store,
        promote=promote,  # type: ignore[arg-type]
        background=not wait,
        engine=engine,
    )


@app.command(
    cls=needs("BUNDLE", "SOURCE"), short_help="Score flows live: collector, capture, followed file, stdin."
)
def stream(
    bundle: Annotated[
        str | None,
        typer.Argument(
            metavar="BUNDLE", show_default=False, help="Model bundle directory (from `nadkit train`)."
        ),
    ] = None,
    source: Annotated[
        str | None,
        typer.Argument(
            metavar="SOURCE",
            show_default=False,
            help="netflow://HOST:PORT (NetFlow v5/v9, IPFIX over UDP), pcap:FILE, iface:NAME, follow:PATH "
            "(a growing CSV, JSON-lines or Zeek log) or - (standard input).",
        ),
    ] = None,
    old_bundle: Annotated[str | None, typer.Option("--bundle", "-b", hidden=True)] = None,
    old_source: Annotated[str | None, typer.Option("--source", "-s", hidden=True)] = None,
    sink: Annotated[
        list[str] | None,
        typer.Option(
            "--sink",
            metavar="SINK",
            help="- (JSON lines on stdout), file:PATH, sqlite:PATH, syslog+udp://HOST:PORT, "
            "syslog+tcp://HOST:PORT or an http(s) webhook URL; repeat for several.",
        ),
    ] = None,
    sink_format: Annotated[
        str,
        typer.Option(
            "--sink-format",
            help="What the JSON-lines, syslog and webhook sinks write: nadkit (its alert records) or ecs "
            "(Elastic Common Schema documents, network.community_id included, for Elastic, Splunk or "
            "any SIEM). The sqlite store always keeps nadkit's records.",
        ),
    ] = "nadkit",
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
        str | None,
        typer.Option(
            help="Alert threshold: a number, or spot / dspot (starts at the bundle's and adapts to the "
            "scores of flows not alerted, kept across restarts with --checkpoint). Default: the bundle's."
        ),
    ] = None,
    drift_window: Annotated[
        int,
        typer.Option(
            min=0, help="Scored flows (or buckets) per drift window against the bundle's reference; 0: off."
        ),
    ] = 10_000,
    drift_psi: Annotated[
        float,
        typer.Option(min=0.001, help="PSI of the score or of a feature that makes a window a drift event."),
    ] = 0.25,
    drift_out: Annotated[
        Path | None,
        typer.Option("--drift-out", help="Append every drift window as a JSON line to this file."),
    ] = None,
    top: Annotated[
        int,
        typer.Option(
            min=0, max=50, help="Contributing features listed per alert (0: alerts unexplained, faster)."
        ),
    ] = 5,
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
    mapping: MapOption = None,
    incidents: Annotated[
        Path | None,
        typer.Option(
            "--incidents",
            help="Append incident updates as JSON lines to this file: each time a batch grows or closes "
            "an incident (flood, scan, pair, host), its summary (kept across restarts with --checkpoint).",
        ),
    ] = None,
    incident_gap: Annotated[
        float, typer.Option(min=1.0, help="Idle seconds that end an incident's episode.")
    ] = 300.0,
    retrain_every: Annotated[
        str | None,
        typer.Option(
            "--retrain-every",
            metavar="DURATION",
            help="Retrain a challenger on the recent non-alerted flows every DURATION of stream time "
            "(e.g. 1d, 6h; the flows' own times) and promote it only on evidence (see --promote).",
        ),
    ] = None,
    promote: Annotated[
        str,
        typer.Option(
            help="evidence (promote only on enough held-out analyst feedback, else keep for review), "
            "auto-unlabelled (also promote, without feedback, on a lower alert rate on held-out recent "
            "traffic with the intervals apart and the strong alerts kept) or never.",
        ),
    ] = "evidence",
    retrain_wait: Annotated[
        bool,
        typer.Option(
            "--retrain-wait",
            help="Pause the stream while a challenger trains (replays) instead of training beside it.",
        ),
    ] = False,
    models: RegistryOption = None,
    db: Annotated[
        Path | None,
        typer.Option(
            "--db", help="Alert store with analyst feedback for retraining (default: the sqlite: sink's)."
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the final counters as JSON on standard output (on standard error when the "
            "records go to standard output, the default sink).",
        ),
    ] = False,
) -> None:
    """Detect live: score flows from a collector, capture, followed file or stdin as they arrive.

    Exits with status 1 when the source ended and none of its lines could be read."""
    from nadkit.evaluation.adaptive import ADAPTIVE, AdaptiveSettings
    from nadkit.evaluation.drift import DriftLevels
    from nadkit.stream import StreamConfig, open_stream, stop_on_signals
    from nadkit.stream.continual import ContinualConfig

    given = arguments("stream", {"BUNDLE": old_bundle, "SOURCE": old_source}, [bundle, source])
    if old_bundle is not None or old_source is not None:
        log.info("nadkit stream: --bundle and --source are deprecated; give BUNDLE SOURCE as arguments")
    if overflow not in ("release", "drop"):
        raise NadkitError(f"--overflow must be release or drop, not {overflow!r}")
    if sink_format not in ("nadkit", "ecs"):
        raise NadkitError(f"--sink-format must be nadkit or ecs, not {sink_format!r}")
    adaptive = AdaptiveSettings(method=threshold) if threshold in ADAPTIVE else None
    try:
        fixed = None if threshold is None or adaptive is not None else float(threshold)
    except ValueError:
        raise NadkitError(f"--threshold must be a number, spot or dspot, not {threshold!r}") from None
    drift = DriftLevels(window=max(10, drift_window), psi=drift_psi) if drift_window else None
    retrain = _retrain_settings(retrain_every, promote, retrain_wait, models, db, sink or [], engine)
    config = StreamConfig(
        batch_seconds=batch_seconds,
        batch_rows=batch_rows,
        lateness_s=lateness_s,
        threshold=fixed,
        continual=ContinualConfig(drift=drift, drift_out=drift_out, adaptive=adaptive),
        top=top,
        all_flows=all_flows,
        max_held=max_held,
        overflow=overflow,  # type: ignore[arg-type]
        queue_size=queue_size,
        status_seconds=status_seconds,
        checkpoint=checkpoint,
        incidents=incidents,
        incident_gap_s=incident_gap,
        retrain=retrain,
    )

    def status(stats) -> None:  # type: ignore[no-untyped-def]
        errors.print(f"[dim]stream[/dim] {stats.line()}", highlight=False, soft_wrap=True)

    runner = open_stream(
        Path(given["BUNDLE"]),
        given["SOURCE"],
        sink or ["-"],
        config,
        format=format,
        mapping=mapping,
        engine=engine,
        on_status=status,  # type: ignore[arg-type]
        sink_format=sink_format,
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
    unread = int(result.source_stats.get("bad_lines", 0))
    if as_json:
        if any(s.name == "-" for s in runner.sinks):
            errors.print_json(data=result.to_dict())
        else:
            print_json(result.to_dict())
    if result.flows_in == 0 and unread:
        source_name = "standard input" if runner.source.name == "-" else runner.source.name
        errors.print(
            f"[bold red]error:[/bold red] nothing could be read from {escape(source_name)} "
            f"({unread:,} line(s) skipped; name the format with --format or map the columns with --map)",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)
    if as_json:
        return
    summary = Table(title="stream", show_header=False)
    summary.add_row("flows in / scored", f"{result.flows_in:,} / {result.flows_scored:,}")
    summary.add_row("alerts / records written", f"{result.alerts:,} / {result.written:,}")
    if result.incidents:
        summary.add_row("incidents", f"{result.incidents:,}")
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
    if result.continual.get("model_version"):
        counts = result.continual.get("retrain_counts") or {}
        decided = ", ".join(f"{count} {kind}" for kind, count in counts.items()) or "none yet"
        summary.add_row("model version (retraining)", f"{result.continual['model_version']} ({decided})")
    for name, value in result.source_stats.items():
        if value:
            summary.add_row(f"source: {name.replace('_', ' ')}", f"{value:,}")
    errors.print(summary)


@app.command(short_help="Measure a model on labelled flows, with an HTML report.")
def evaluate(
    bundle: Annotated[Path, typer.Argument(metavar="BUNDLE", help="Model bundle directory.")],
    source: Annotated[
        Path, typer.Argument(metavar="SOURCE", help="Labelled flows: file, directory or glob, any format.")
    ],
    report: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", "--report", help="Directory for report.html, its PNG figures and metrics.json."
        ),
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(help="Alert threshold (default: the bundle's, chosen on validation).")
    ] = None,
    chunk_rows: Annotated[int, typer.Option("--chunk-rows", min=1000, help="Flows per chunk.")] = 200_000,
    engine: Annotated[str, typer.Option(help="auto, torch or onnx.")] = "auto",
    format: FormatOption = None,
    on_bad_rows: BadRowsOption = "error",
    mapping: MapOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON only.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing report directory.")] = False,
    compare: Annotated[
        list[Path] | None,
        typer.Option(
            "--compare",
            metavar="BUNDLE",
            help="Also score the flows with this model bundle (repeatable) and compare them: ROC-AUC, "
            "PR-AUC, each at its own threshold, and all at 1% of these normal flows.",
        ),
    ] = None,
) -> None:
    """Measure a model on labelled flows: metrics table, and an HTML report with figures. Says so
    first when the flows are (mostly) the model's training data, or when their normal flows exceed
    the threshold far more often than the normal hold-out's did (traffic unlike the training's).
    With --compare, other models score the same flows and a table sets them side by side."""
    from nadkit.detection.comparison import comparison_table
    from nadkit.detection.evaluation import evaluate_bundle
    from nadkit.training.bundle import ModelBundle

    if report is not None and report.exists() and any(report.iterdir()) and not force:
        raise NadkitError(f"{report}: already exists (use --force to replace it)")
    loaded = ModelBundle.load(bundle, engine=engine)
    others = [(str(path), ModelBundle.load(path, engine=engine)) for path in compare or ()]
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
            on_bad_rows=bad_rows(on_bad_rows),
            progress=lambda flows, alerts: bar.update(task, flows=flows, alerts=alerts),
            compare=others,
        )
    for warning in outcome.warnings():
        # first: on standard error beside the JSON, above the table otherwise
        (errors if as_json else console).print(f"[yellow]{escape(warning)}[/yellow]")
    if as_json:
        sys.stdout.write(json.dumps(outcome.to_dict(), indent=2) + "\n")
        return
    console.print(outcome.table())
    if outcome.comparison:
        console.print(comparison_table(outcome.comparison))
    if outcome.report is not None:
        console.print(f"report: {outcome.report}")
