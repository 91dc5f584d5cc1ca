"""The `plot` command group: `plot groups` (flows grouped over time) and `plot alert` (an alert's
contributing features)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nadkit.cli.application import (
    FormatOption,
    JsonOption,
    MapOption,
    Typer,
    app,
    console,
    errors,
    log,
    print_json,
)
from nadkit.errors import require

if TYPE_CHECKING:
    import polars as pl


plot_app = Typer(
    help="Pictures: flows grouped over time (by true label, prediction or score), an alert's features."
)
app.add_typer(plot_app, name="plot", short_help="Pictures: flows grouped over time, an alert's features.")


@plot_app.command("groups", short_help="Draw flows grouped by a key over time, by class or score.")
def plot_groups(
    source: Annotated[
        Path, typer.Argument(metavar="SOURCE", help="Flows: file, directory or glob, any format.")
    ],
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
    as_json: JsonOption = False,
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
    with errors.status(f"drawing {out.name}"):
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
    elapsed = time.perf_counter() - started
    if as_json:
        print_json({"out": str(written), "flows": frame.height, "model": model, "seconds": round(elapsed, 3)})
        return
    console.print(f"wrote [bold]{written}[/bold] in {elapsed:.1f} s")


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


@plot_app.command("alert", short_help="Draw the features behind one alert's score.")
def plot_alert(
    alerts: Annotated[
        Path, typer.Argument(metavar="ALERTS", help="Alerts written by `nadkit detect` (.jsonl or .parquet).")
    ],
    row: Annotated[int, typer.Option("--row", min=1, help="The alert's input row (its `row` field).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Picture to write (.png).")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing picture.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Draw the features that contributed most to one alert's score, with the flow's values."""
    from nadkit.pictures import load_alert, write_alert
    from nadkit.pictures.files import check_out

    check_out(out, suffixes=(".png",), overwrite=force)
    written = write_alert(load_alert(alerts, row), out, overwrite=force)
    if as_json:
        print_json({"out": str(written), "row": row})
        return
    console.print(f"wrote [bold]{written}[/bold]")
