"""Commands that read and prepare flows: `formats`, `inspect`, `featurize` and `split`."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from nadkit.cli.application import (
    FileSteps,
    FormatOption,
    JsonOption,
    MapOption,
    app,
    console,
    errors,
    output_path,
    print_json,
)
from nadkit.errors import NadkitError


@app.command()
def formats(as_json: JsonOption = False) -> None:
    """List the input formats nadkit reads."""
    from nadkit.sources import SOURCES

    if as_json:
        print_json([{"name": name, "description": module.DESCRIPTION} for name, module in SOURCES.items()])
        return
    table = Table(title="Input formats (auto-detected in this order)")
    table.add_column("name", style="bold")
    table.add_column("description")
    for name, module in SOURCES.items():
        table.add_row(name, module.DESCRIPTION)
    console.print(table)


@app.command(short_help="Show a flow file's format, size, columns and labels.")
def inspect(
    path: Annotated[Path, typer.Argument(metavar="SOURCE", help="Flow file, directory or glob.")],
    format: FormatOption = None,
    mapping: MapOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Show a flow file's format, size, columns, time span and label mix."""
    from nadkit.sources.inspection import inspect_path

    with FileSteps("reading") as steps:
        summary = inspect_path(path, format=format, mapping=mapping, on_file=steps)
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


@app.command(short_help="Compute and save the feature matrix of flows.")
def featurize(
    source: Annotated[Path, typer.Argument(metavar="SOURCE", help="Flow file, directory or glob.")],
    old_out: Annotated[Path | None, typer.Argument(hidden=True, metavar="OUT")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Feature file to write (.parquet).")] = None,
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
    as_json: JsonOption = False,
) -> None:
    """Compute the feature matrix of a flow file and save it (with the fitted pipeline) as Parquet."""
    from nadkit.features.featurize import featurize_file
    from nadkit.features.pipeline import FeatureConfig

    output = output_path("featurize", out, old_out)

    feature_config = FeatureConfig.from_file(config) if config else None
    started = time.perf_counter()
    with errors.status("computing features"):
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
    if as_json:
        print_json(
            {
                "output": str(result.output),
                "rows": result.rows,
                "features": result.features,
                "pipeline": str(result.pipeline) if result.pipeline else None,
                "skipped_groups": {group: list(missing) for group, missing in result.skipped_groups.items()},
                "seconds": round(elapsed, 3),
            }
        )
        return
    console.print(
        f"wrote {result.rows:,} rows x {result.features} features to [bold]{result.output}[/bold] "
        f"in {elapsed:.1f} s ({result.rows / max(elapsed, 1e-9):,.0f} flows/s)"
    )
    if result.pipeline:
        console.print(f"fitted pipeline saved to [bold]{result.pipeline}[/bold]")
    for group, missing in result.skipped_groups.items():
        console.print(f"[yellow]skipped {group}: the data has no {', '.join(missing)}[/yellow]")


@app.command(short_help="Split flows into training and validation, without leakage.")
def split(
    source: Annotated[Path, typer.Argument(metavar="SOURCE", help="Flow file, directory or glob.")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Write train.parquet, validation.parquet and report.json to this directory."
        ),
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
