"""The `demo` command: the main job end to end on simulated traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nadkit.cli.application import app, console


@app.command(short_help="Simulate, train, detect and evaluate, end to end.")
def demo(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Directory for the demo's data and results.")
    ] = Path("out/demo"),
    days: Annotated[int, typer.Option(min=2, max=14, help="Simulated days (the last one is scored).")] = 4,
    flows_per_day: Annotated[int, typer.Option(min=1000, help="Approximate flows per day.")] = 50_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """The main job on the embedded default: simulate traffic, train, detect, evaluate, report."""
    from nadkit.demo import run_demo

    run_demo(out, days=days, flows_per_day=flows_per_day, seed=seed, console=console)
