"""How long a command takes on a small input, where the start (imports) is most of the time.

A user's first `nadkit train` or `nadkit evaluate` on a small file, and every command a test or a
script runs, pays for what the command imports before it does any work. This benchmark simulates
one small day (``--flows`` flows), then runs each command ``--runs`` times in a fresh process and
reports the fastest and median wall time. Each run also reports whether the process imported
the heavy modules that a command should import only when it needs them: ``torch`` (training,
scoring on torch), ``torch._dynamo`` (torch's compiler, which building torch's own optimiser
imports), ``sklearn`` (the IsolationForest baseline) and ``onnx`` (writing a graph).

Run: ``.venv/bin/python benchmarks/startup.py [--runs 3] [--flows 3000]``; prints a table and writes
``benchmarks/results/startup.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, report

#: modules whose import each run reports
WATCHED = ("torch", "torch._dynamo", "sklearn", "onnx")

#: runs the command line in this process, writes which watched modules it imported and exits with
#: the command's own status
_RUNNER = """
import json, sys
out, sys.argv = sys.argv[1], ["nadkit", *sys.argv[2:]]
from nadkit.cli.application import main
try:
    main()
except SystemExit as stop:
    code = stop.code
else:
    code = 0
with open(out, "w") as handle:
    json.dump({"modules": [m for m in WATCHED if m in sys.modules]}, handle)
raise SystemExit(code)
""".replace("WATCHED", repr(WATCHED))


def _run(arguments: list[str], work: Path) -> tuple[float, dict[str, Any]]:
    side = work / "imported.json"
    environment = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(side), *arguments],
        cwd=work,
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"nadkit {' '.join(arguments)} failed:\n{result.stderr[-2000:]}")
    return seconds, json.loads(side.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--flows", type=int, default=3000, help="flows of the simulated day")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nadkit-startup-") as folder:
        work = Path(folder)
        _run(["simulate", "day", "--days", "1", "--flows-per-day", str(args.flows), "--seed", "8"], work)
        (work / "ae.yaml").write_text("epochs: 2\nbatch_size: 256\nhidden: [32]\nbottleneck: 4\n")
        commands = {
            "train ae (2 epochs)": ["train", "day", "ae", "--model", "ae", "--config", "ae.yaml", "--force"],
            "train iforest": ["train", "day", "if", "--model", "iforest", "--force"],
            "evaluate ae": ["evaluate", "ae", "day"],
            "detect ae (ONNX Runtime)": ["detect", "ae", "day", "--out", "alerts.jsonl", "--force"],
        }
        rows: list[dict[str, Any]] = []
        times: dict[str, list[float]] = {name: [] for name in commands}
        imported: dict[str, list[str]] = {}
        for _ in range(args.runs):
            for name, arguments in commands.items():
                seconds, seen = _run(arguments, work)
                times[name].append(seconds)
                imported[name] = seen["modules"]
        for name in commands:
            rows.append(
                {
                    "command": f"nadkit {name}",
                    "fastest s": round(min(times[name]), 2),
                    "median s": round(statistics.median(times[name]), 2),
                    "runs": args.runs,
                    "imports": ", ".join(imported[name]) or "-",
                }
            )
    report(
        "startup",
        f"nadkit commands on a simulated day of {args.flows:,} flows (a fresh process each run)",
        ["command", "fastest s", "median s", "runs", "imports"],
        rows,
        settings=vars(args),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
