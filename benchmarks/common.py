"""Shared plumbing of the benchmark scripts: timing, peak memory, the result table and JSON."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("NADKIT_BENCH_DIR", ROOT / "benchmarks" / "results"))
console = Console(width=160)


def data_dir() -> Path:
    """The shared real datasets (``$NADKIT_DATA_DIR`` or ``../shared/data``)."""
    return Path(os.environ.get("NADKIT_DATA_DIR", ROOT.parent / "shared" / "data"))


def cache_dir() -> Path:
    """Where generated benchmark inputs are kept between runs."""
    path = RESULTS / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best_of(runs: int, function: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``function`` ``runs`` times; the fastest wall time in seconds and the last result."""
    best = float("inf")
    result = None
    for _ in range(runs):
        started = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - started)
    return best, result


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        # the machine's load when the figures were written (1, 5 and 15 minutes)
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def report(name: str, title: str, columns: Sequence[str], rows: list[dict[str, Any]], **extra: Any) -> Path:
    """Print ``rows`` as a table and write them, with the machine description, to ``RESULTS/name.json``."""
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column == columns[0] else "right")
    for row in rows:
        table.add_row(*[_format(row.get(column)) for column in columns])
    console.print(table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "machine": machine(), "rows": rows, **extra}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    console.print(f"results written to {path}")
    return path


def settings_from(items: Sequence[str], known: Sequence[str], what: str) -> dict[str, Any]:
    """``KEY=VALUE`` items as settings of ``what`` (whose fields are ``known``), each value read as
    YAML (lists become tuples); a malformed item or an unknown key ends the run with one line."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SystemExit(f"error: {what}: settings are KEY=VALUE, got {item!r}")
        if key not in known:
            raise SystemExit(f"error: {what} has no setting {key!r} (known: {', '.join(sorted(known))})")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as problem:
            raise SystemExit(f"error: {what}: {key}={value!r} is not a value") from problem
        out[key] = tuple(parsed) if isinstance(parsed, list) else parsed
    return out


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
