"""The demo behind `make demo`: the whole job on the embedded simulated network."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from nadkit.inspection import inspect_path
from nadkit.synthetic import SimulationConfig, simulate_to_directory

log = logging.getLogger(__name__)


def run_demo(
    out: str | Path,
    *,
    days: int = 4,
    flows_per_day: int = 50_000,
    seed: int = 0,
    console: Console | None = None,
) -> Path:
    """Simulate ``days`` days of traffic into ``out/data`` and summarise each day; returns ``out``."""
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
    console.print(f"inspect a day with: [bold]nadkit inspect {files[0]}[/bold]")
    return out
