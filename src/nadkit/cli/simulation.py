"""Commands that make labelled traffic to train and measure on: `simulate` (a simulated enterprise
network), `mix-captures` (captures labelled per file, interleaved) and `label-flows` (flows labelled
from another meter's labelled flows of the same traffic)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, cast

import polars as pl
import typer
from rich.table import Table

from nadkit.cli.application import (
    FileSteps,
    FormatOption,
    JsonOption,
    app,
    console,
    errors,
    output_path,
    print_json,
)
from nadkit.errors import NadkitError


@app.command(short_help="Simulate a labelled enterprise network over several days.")
def simulate(
    old_out: Annotated[Path | None, typer.Argument(hidden=True, metavar="OUT")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output directory (one file per day).")
    ] = None,
    days: Annotated[int, typer.Option(min=1, max=60, help="Number of days.")] = 3,
    flows_per_day: Annotated[int, typer.Option(min=100, help="Approximate flows per day.")] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same flows).")] = 0,
    output_format: Annotated[
        str, typer.Option("--output-format", help="csv (NAD 2021 layout) or parquet.")
    ] = "csv",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output directory.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Simulate a labelled enterprise network over several days (NAD 2021 schema)."""
    from nadkit.simulate import SimulationConfig, simulate_to_directory

    folder = output_path("simulate", out, old_out)
    config = SimulationConfig(days=days, flows_per_day=flows_per_day, seed=seed)
    started = time.perf_counter()
    with errors.status(f"simulating {days} day(s) x ~{flows_per_day:,} flows"):
        files = simulate_to_directory(config, folder, output_format=output_format, overwrite=force)
    elapsed = time.perf_counter() - started
    if as_json:
        print_json(
            {
                "out": str(folder),
                "days": days,
                "flows_per_day": flows_per_day,
                "seed": seed,
                "files": [str(file) for file in files],
                "seconds": round(elapsed, 3),
            }
        )
        return
    console.print(f"wrote {len(files)} file(s) to [bold]{folder}[/bold] in {elapsed:.1f} s")
    for file in files:
        console.print(f"  {file}")


@app.command("mix-captures", short_help="Mix captures labelled per file into one flow table.")
def mix_captures_command(
    old_out: Annotated[Path | None, typer.Argument(hidden=True, metavar="OUT")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Labelled flow table to write (.parquet or .csv).")
    ] = None,
    benign: Annotated[
        list[Path] | None,
        typer.Option("--benign", metavar="PATH", help="Benign capture file or directory (repeatable)."),
    ] = None,
    attack: Annotated[
        list[Path] | None,
        typer.Option("--attack", metavar="PATH", help="Attack capture file or directory (repeatable)."),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(
            "--label",
            metavar="FILE=NAME",
            help="FILE=NAME: the label of an attack capture (default: its file stem).",
        ),
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
    columns: Annotated[
        str,
        typer.Option(
            "--columns",
            help="Column names: nadkit (the canonical table) or cicflowmeter (CICFlowMeter's names and "
            "units, as in the CIC-IDS2017 files, to compare with CIC data; read back as format cic).",
        ),
    ] = "nadkit",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output file.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Mix captures labelled per file into one labelled, interleaved flow table for evaluation."""
    import datetime as dt

    from nadkit.sources.captures import DEFAULT_START, mix_captures

    out = output_path("mix-captures", out, old_out)
    if columns not in ("nadkit", "cicflowmeter"):
        raise NadkitError(f"--columns must be nadkit or cicflowmeter, not {columns!r}")
    if columns == "cicflowmeter" and out.suffix.lower() != ".csv":
        raise NadkitError(f"{out}: --columns cicflowmeter writes CSV, as CICFlowMeter does (name it .csv)")
    kind = _table_kind(out, force)
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
    with FileSteps("metering captures into flows") as steps:
        mixed = mix_captures(
            benign or [],
            attack or [],
            attack_labels=names,
            start=begin,
            span_s=span,
            max_gap_s=max_gap,
            seed=seed,
            on_file=steps,
        )
    frame = mixed.frame
    if columns == "cicflowmeter":
        from nadkit.sources.cicflowmeter import to_cicflowmeter

        frame = to_cicflowmeter(frame)
    _write_table(frame, out, kind, force)
    if as_json:
        print_json(
            {
                "out": str(out),
                "flows": frame.height,
                "columns": columns,
                "span_s": mixed.span_s,
                "start": mixed.start.isoformat(),
                "captures": [
                    {
                        "path": str(capture.path),
                        "label": capture.label,
                        "flows": capture.flows,
                        "offset_s": (capture.start - mixed.start).total_seconds(),
                    }
                    for capture in mixed.captures
                ],
            }
        )
        return
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


@app.command("label-flows", short_help="Label flows from labelled flows of the same traffic.")
def label_flows_command(
    source: Annotated[
        Path,
        typer.Argument(metavar="SOURCE", help="Flows to label: a capture, flow file, directory or glob."),
    ],
    labels: Annotated[
        Path,
        typer.Option(
            "--labels",
            metavar="PATH",
            help="Labelled flows another meter made of the same traffic (a labelled Zeek conn.log, "
            "Argus or CICFlowMeter file, ...).",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Labelled flow table to write (.parquet or .csv).")
    ],
    format: FormatOption = None,
    labels_format: Annotated[
        str | None, typer.Option("--labels-format", help="Format of the labelled flows (default: detected).")
    ] = None,
    tolerance: Annotated[
        float, typer.Option(min=0.0, help="Seconds apart two flows' starts may be and still match.")
    ] = 2.0,
    shift: Annotated[
        float,
        typer.Option(
            help="Seconds added to the labelled flows' times where their clock differs (10800 for "
            "times written in UTC-3 against a capture's UTC)."
        ),
    ] = 0.0,
    unmatched: Annotated[
        str,
        typer.Option(
            help="Flows no labelled flow matches: drop them, call them normal, or keep them unlabelled."
        ),
    ] = "drop",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output file.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Give flows the labels of the labelled flows another meter made of the same traffic: the same
    addresses, ports and protocol (either direction), the nearest start within --tolerance."""
    from nadkit.sources import load_flows
    from nadkit.sources.labelling import UNMATCHED, Unmatched, carry_labels

    if unmatched not in UNMATCHED:
        raise NadkitError(f"--unmatched must be one of {', '.join(UNMATCHED)}, not {unmatched!r}")
    kind = _table_kind(out, force)
    with FileSteps("reading the flows to label") as steps:
        flows, _ = load_flows(source, format=format, on_file=steps)
    with FileSteps("reading the labelled flows") as steps:
        labelled, _ = load_flows(labels, format=labels_format, on_file=steps)
    if "label" not in labelled.columns:
        raise NadkitError(f"{labels}: has no label column; give labelled flows to take the labels from")
    how = cast(Unmatched, unmatched)
    carried = carry_labels(flows, labelled, tolerance_s=tolerance, shift_s=shift, unmatched=how)
    if carried.matched == 0:
        raise NadkitError(
            f"{labels}: no flow of {source} matches one of its flows (same addresses, ports and protocol "
            f"within {tolerance:g} s); are they of the same traffic, on the same clock (--shift)?"
        )
    _write_table(carried.frame, out, kind, force)
    fate = {"drop": "dropped", "normal": "called normal", "keep": "kept without a label"}[unmatched]
    if as_json:
        print_json(
            {
                "out": str(out),
                "flows": carried.flows,
                "matched": carried.matched,
                "unmatched": carried.unmatched,
                "unmatched_flows": fate,
                "written": carried.frame.height,
                "labels": carried.counts(),
            }
        )
        return
    table = Table(title=f"{carried.matched:,} of {carried.flows:,} flows matched")
    table.add_column("label")
    table.add_column("flows", justify="right")
    for label, count in carried.counts().items():
        table.add_row(label, f"{count:,}")
    console.print(table)
    if carried.unmatched:
        console.print(f"{carried.unmatched:,} flows matched no labelled flow: {fate}")
    console.print(f"wrote [bold]{out}[/bold] ({carried.frame.height:,} flows)")


def _table_kind(out: Path, force: bool) -> str:
    """The kind of flow table ``out`` names (``.parquet`` or ``.csv``), checked before any work:
    another suffix, or an existing file without ``force``, is refused in one line."""
    kind = out.suffix.lower()
    if kind not in (".parquet", ".csv"):
        raise NadkitError(f"{out}: write .parquet or .csv")
    if out.exists() and not force:
        raise NadkitError(f"{out}: already exists (use --force to replace it)")
    return kind


def _write_table(frame: pl.DataFrame, out: Path, kind: str, force: bool) -> None:
    """Write ``frame`` to ``out`` whole or not at all (a temporary file renamed into place)."""
    from nadkit.fileio import atomic_path

    with atomic_path(out, overwrite=force) as temporary:
        if kind == ".parquet":
            frame.write_parquet(temporary)
        else:
            frame.write_csv(temporary)
