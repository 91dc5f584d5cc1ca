"""Faults in live detection: `nadkit stream` killed outright (``kill -9``) at random points and restarted
from its checkpoint each time, against one run of the same flows that nobody killed.

The flows are a simulated day (JSON lines, the columns a router exports) in a followed file that grows
while the stream runs: a writer appends ``--step`` lines (10) every 0.1 s, so kills land while the stream
starts, reads, scores, writes its sinks or saves its checkpoint. The stream writes every scored flow
(``--all``) as JSON lines to a file, keeps the alerts in the SQLite store, appends incident updates to a
file and checkpoints; micro-batches of 0.2 s. Each run is killed after a random time (uniform between
``--min-s`` and ``--max-s``), then restarted with the same checkpoint and sinks. After the last kill a
final run reads the file to its end and is stopped with SIGTERM. The model is a small autoencoder
trained on the simulated day before (cached under ``benchmarks/results/cache``).

Counted: kills, and those that came after the run had written records; records the sinks held when
each run was killed (acknowledged: a consumer may have read them) and how many of them were gone later
(lost); input flows never written; records written twice (the same input row twice in the JSON-lines
sink); alerts twice in the store (the same flow key);
incidents the killed runs made that the unkilled run did not (a tracker that lost its state starts a
second incident for one attack); incident updates written twice; cut lines in either JSON-lines file;
temporary files left beside the checkpoint and the sinks (``.*.part``); and whether the records (row,
alert) equal the unkilled run's.

Run: ``.venv/bin/python benchmarks/faults.py [--kills 24] [--flows 6000] [--seed 0]``; prints a table and
writes ``benchmarks/results/faults.json``; exits 1 when anything acknowledged was lost or written twice.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, report

COLUMNS = ["time", "src", "dst", "spt", "dpt", "proto", "duration", "out_bytes", "in_bytes"]
CACHE = RESULTS / "cache" / "faults-bundle"
#: the flows a run has taken in, from its status lines
STATUS = re.compile(r"stream ([\d,]+) flows \(")


def flows(count: int) -> tuple[list[str], Any]:
    """The simulated day as JSON lines, and the day before it (the training flows)."""
    from datetime import date

    import polars as pl

    from nadkit.simulate import SimulationConfig, simulate_day

    config = SimulationConfig(days=2, flows_per_day=count, seed=5, start=date(2020, 12, 3))
    days = [simulate_day(config, index).sort("time", maintain_order=True) for index in (0, 1)]
    test = days[1].select(COLUMNS).with_columns(pl.col("time").cast(pl.String))
    return [json.dumps(row) for row in test.iter_rows(named=True)], days[0]


def bundle(train: Any) -> Path:
    """A small autoencoder on the training day's flows (cached)."""
    from nadkit.training.bundle import ModelBundle
    from nadkit.training.fit import fit

    if (CACHE / "manifest.json").is_file():
        ModelBundle.load(CACHE, key="")
        return CACHE
    frame = train.select([*COLUMNS, "label"])
    result = fit(frame, model="ae", config={"epochs": 2, "hidden": [16], "bottleneck": 4})
    return result.bundle.save(CACHE, overwrite=True, key="")


class Run:
    """One `nadkit stream` process over the followed file, its stderr collected."""

    def __init__(self, model: Path, folder: Path) -> None:
        command = [sys.executable, "-m", "nadkit", "stream", str(model), f"follow:{folder / 'flows.jsonl'}"]
        command += ["--sink", f"file:{folder / 'records.jsonl'}", "--sink", f"sqlite:{folder / 'alerts.db'}"]
        command += ["--all", "--checkpoint", str(folder / "stream.checkpoint"), "--lateness-s", "0"]
        command += ["--batch-seconds", "0.2", "--status-seconds", "0.2", "--incidents"]
        command += [str(folder / "incidents.jsonl")]
        env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "NADKIT_BUNDLE_KEY": ""}
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def stop(self, signum: int) -> int:
        self.process.send_signal(signum)
        code = self.process.wait(timeout=120)
        self._reader.join(timeout=10)
        return code


class Feeder:
    """Appends the next lines to the followed file while a run lives."""

    def __init__(self, path: Path, lines: list[str], step: int) -> None:
        self.path, self.lines, self.step, self.done = path, lines, step, 0

    def feed(self, stop: threading.Event) -> None:
        while not stop.is_set() and self.done < len(self.lines):
            chunk = self.lines[self.done : self.done + self.step]
            with self.path.open("a") as handle:
                handle.write("\n".join(chunk) + "\n")
            self.done += len(chunk)
            stop.wait(0.1)

    def rest(self) -> None:
        stop = threading.Event()
        while self.done < len(self.lines):
            self.feed(stop)


def read_lines(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The JSON lines of ``path`` and how many lines were cut (not JSON)."""
    if not path.exists():
        return [], 0
    records, cut = [], 0
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            cut += 1
    return records, cut


def store_keys(db: Path) -> list[str]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as connection:
        return [row[0] for row in connection.execute("SELECT flow_key FROM alerts")]


def finish(model: Path, folder: Path, feeder: Feeder, total: int, timeout: float = 600.0) -> int:
    """A run that reads the followed file to its end (its status line counts every flow in) and is
    stopped with SIGTERM once its sink stops growing; its exit code. What it holds for open windows
    is written at the stop."""
    run = Run(model, folder)
    feeder.rest()
    deadline = time.monotonic() + timeout
    sizes: list[int] = []
    while time.monotonic() < deadline and run.process.poll() is None:
        time.sleep(0.2)
        sink = folder / "records.jsonl"
        sizes.append(sink.stat().st_size if sink.exists() else -1)
        counts = [int(m.group(1).replace(",", "")) for m in STATUS.finditer("".join(run.lines))]
        if max(counts, default=0) >= total and len(sizes) >= 10 and len(set(sizes[-10:])) == 1:
            break
    return run.stop(signal.SIGTERM) if run.process.poll() is None else run.process.returncode


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".part"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=24)
    parser.add_argument("--flows", type=int, default=6000, help="flows of the simulated day")
    parser.add_argument("--step", type=int, default=10, help="lines appended every 0.1 s")
    parser.add_argument("--min-s", type=float, default=0.5)
    parser.add_argument("--max-s", type=float, default=12.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "faults-work")
    args = parser.parse_args(argv)
    lines, train = flows(args.flows)
    model = bundle(train)
    total = len(lines)
    rng = random.Random(args.seed)
    # the run nobody kills
    reference = args.out / "reference"
    killed = args.out / "killed"
    for folder in (reference, killed):
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    reference_feeder = Feeder(reference / "flows.jsonl", lines, len(lines))
    code = finish(model, reference, reference_feeder, total)
    expected, _ = read_lines(reference / "records.jsonl")
    expected_incidents = {r.get("incident_id") for r in read_lines(reference / "incidents.jsonl")[0]}
    # the runs killed at random points
    feeder = Feeder(killed / "flows.jsonl", lines, args.step)
    acknowledged_rows: set[int] = set()
    acknowledged_keys: set[str] = set()
    lost = 0
    delays = []
    busy = 0
    for _ in range(args.kills):
        before = len(read_lines(killed / "records.jsonl")[0])
        run = Run(model, killed)
        stop = threading.Event()
        writer = threading.Thread(target=feeder.feed, args=(stop,), daemon=True)
        writer.start()
        delay = rng.uniform(args.min_s, args.max_s)
        time.sleep(delay)
        if run.process.poll() is not None:
            raise SystemExit(f"nadkit stream ended before its kill:\n{''.join(run.lines)[-3000:]}")
        run.stop(signal.SIGKILL)
        stop.set()
        writer.join()
        delays.append(delay)
        written, _ = read_lines(killed / "records.jsonl")
        busy += len(written) > before
        rows = {r["row"] for r in written}
        keys = set(store_keys(killed / "alerts.db"))
        lost += len(acknowledged_rows - rows) + len(acknowledged_keys - keys)
        acknowledged_rows |= rows
        acknowledged_keys |= keys
        print(f"kill {len(delays)} after {delay:.1f} s: {len(rows):,} records", file=sys.stderr, flush=True)
    final_code = finish(model, killed, feeder, total)
    records, cut = read_lines(killed / "records.jsonl")
    updates, cut_updates = read_lines(killed / "incidents.jsonl")
    rows = [r["row"] for r in records]
    keys = store_keys(killed / "alerts.db")
    lost += len(acknowledged_rows - set(rows)) + len(acknowledged_keys - set(keys))
    update_texts = [json.dumps(u, sort_keys=True) for u in updates]
    same = sorted((r["row"], bool(r["alert"])) for r in records) == sorted(
        (r["row"], bool(r["alert"])) for r in expected
    )
    row = {
        "kills": len(delays),
        "kills after writing": busy,
        "flows": total,
        "records written": len(rows),
        "acknowledged at kills": len(acknowledged_rows) + len(acknowledged_keys),
        "acknowledged lost": lost,
        "flows never written": len(set(range(1, total + 1)) - set(rows)),
        "records twice": len(rows) - len(set(rows)),
        "store alerts": len(keys),
        "store alerts twice": len(keys) - len(set(keys)),
        "incidents": len({u.get("incident_id") for u in updates}),
        "extra incidents": len({u.get("incident_id") for u in updates} - expected_incidents),
        "incident updates twice": len(update_texts) - len(set(update_texts)),
        "cut lines": cut + cut_updates,
        "orphan temporary files": len(leftovers(killed)),
        "same as unkilled": same,
    }
    columns = list(row)
    report(
        "faults",
        "nadkit stream killed (kill -9) at random points, restarted from its checkpoint",
        columns,
        [row],
        seed=args.seed,
        reference={"exit": code, "records": len(expected), "incidents": len(expected_incidents)},
        final_exit=final_code,
        delays_s=[round(d, 2) for d in delays],
        orphans=leftovers(killed),
    )
    bad = row["acknowledged lost"] or row["flows never written"] or row["records twice"]
    bad = bad or row["store alerts twice"] or row["extra incidents"] or row["orphan temporary files"]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
