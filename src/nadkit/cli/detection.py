"""Commands that score flows with a trained model: `detect` (files), `stream` (live) and `evaluate`
(labelled flows)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from nadkit.cli.application import BadRowsOption, FormatOption, MapOption, app, bad_rows, console, errors
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
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output file.")] = False,
) -> None:
    """Score flows with a trained model and write explained alerts, grouped into incidents."""
    from nadkit.alerts.incidents import IncidentConfig
    from nadkit.alerts.records import output_kind
    from nadkit.detection.detect import detect_file, summary_line
    from nadkit.evaluation.calibration import SeverityRules
    from nadkit.training.bundle import ModelBundle

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
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print the final counters as JSON (on stderr when records go to stdout)."
        ),
    ] = False,
) -> None:
    """Detect live: score flows from a collector, capture, followed file or stdin as they arrive.

    Exits with status 1 when the source ended and none of its lines could be read."""
    from nadkit.stream import StreamConfig, open_stream, stop_on_signals

    if overflow not in ("release", "drop"):
        raise NadkitError(f"--overflow must be release or drop, not {overflow!r}")
    if sink_format not in ("nadkit", "ecs"):
        raise NadkitError(f"--sink-format must be nadkit or ecs, not {sink_format!r}")
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
        incidents=incidents,
        incident_gap_s=incident_gap,
    )

    def status(stats) -> None:  # type: ignore[no-untyped-def]
        errors.print(f"[dim]stream[/dim] {stats.line()}", highlight=False, soft_wrap=True)

    runner = open_stream(
        bundle,
        source,
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
        to_stdout = any(s.name == "-" for s in runner.sinks)
        (errors if to_stdout else console).print_json(data=result.to_dict())
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
    on_bad_rows: BadRowsOption = "error",
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
            on_bad_rows=bad_rows(on_bad_rows),
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
