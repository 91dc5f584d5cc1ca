"""Alert service load: `nadkit serve` on 127.0.0.1 scored by a few concurrent clients sending
1,000-flow batches to ``POST /v1/score`` (each batch a different slice of a simulated day, so its
alerts are new and written to the store), and the alert store's own write rate.

Reported per run: requests/s, flows/s, p50 and p99 request latency (client side: upload, parsing,
features, model, threshold, storing the alerts, the answer), and alerts written per second. The load
is bounded: ``--requests`` per run, a timeout on every request, loopback only. The service runs in
its own process (`nadkit serve`, the real command line), the clients in this one.

The model is the default autoencoder trained on one simulated day (cached under the results
folder), with its ONNX graph; ``--bundle DIR`` uses another.

Run: ``.venv/bin/python benchmarks/service.py [--clients 1,4] [--requests 60] [--batch 1000]``.
Prints a table and writes ``benchmarks/results/service.json``.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import cache_dir, console, report

TRAIN_FLOWS = 100_000


def inputs(flows: int) -> tuple[Path, Path]:
    """The training day (NAD CSV) and the canonical table whose slices are sent (cached)."""
    from nadkit.simulate import SimulationConfig, simulate_day, write_nad_csv
    from nadkit.sources import load_flows

    folder = cache_dir() / f"service_{flows}"
    train = folder / "train.csv"
    sent = folder / "sent.parquet"
    if not sent.exists():
        folder.mkdir(parents=True, exist_ok=True)
        config = SimulationConfig(days=2, flows_per_day=TRAIN_FLOWS, seed=17, start=date(2021, 3, 1))
        write_nad_csv(simulate_day(config, 0), train)
        later = SimulationConfig(days=2, flows_per_day=flows, seed=17, start=date(2021, 3, 1))
        day = folder / "day.csv"
        write_nad_csv(simulate_day(later, 1), day)
        frame, _ = load_flows(day)
        frame.drop("label_original").write_parquet(sent)
        day.unlink()
    return train, sent


def model(train: Path) -> Path:
    """The default autoencoder trained on the training day, with its ONNX graph (cached)."""
    from nadkit.training.fit import train_model

    path = cache_dir() / "service_ae_bundle"
    if not (path / "manifest.json").exists():
        result = train_model(train, path, model="ae", config={"time_budget_s": 60.0}, overwrite=True)
        result.bundle.export_onnx()
    return path


def start_service(bundle: Path, folder: Path, token: str) -> tuple[subprocess.Popen[str], str]:
    """`nadkit serve` on a free loopback port; the process and its base URL."""
    env = {**os.environ, "NADKIT_TOKEN": token, "COLUMNS": "250", "NO_COLOR": "1"}
    command = [sys.executable, "-m", "nadkit", "serve", "--bundle", str(bundle)]
    command += ["--db", str(folder / "alerts.db"), "--host", "127.0.0.1", "--port", "0"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    for line in process.stdout:
        found = re.search(r"http://127\.0\.0\.1:\d+", line)
        if found:
            return process, found.group(0)
    process.wait()
    raise RuntimeError(f"nadkit serve did not start: {process.stderr.read() if process.stderr else ''}")


def stop_service(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def bodies(sent: Path, batch: int, count: int, kind: str) -> list[bytes]:
    """``count`` request bodies of ``batch`` consecutive flows each, in the chosen format."""
    import polars as pl

    frame = pl.read_parquet(sent)
    if count * batch > frame.height:
        raise SystemExit(f"the day holds {frame.height:,} flows: at most {frame.height // batch} requests")
    out = []
    for index in range(count):
        part = frame.slice(index * batch, batch)
        buffer = io.BytesIO()
        if kind == "csv":
            part.write_csv(buffer)
        elif kind == "arrow":
            part.write_ipc_stream(buffer)
        else:
            part.with_columns(pl.col("time").dt.to_string("%Y-%m-%dT%H:%M:%S%.6fZ")).write_json(buffer)
        out.append(buffer.getvalue())
    return out


CONTENT_TYPES = {
    "csv": "text/csv",
    "arrow": "application/vnd.apache.arrow.stream",
    "json": "application/json",
}


def load(url: str, token: str, payloads: list[bytes], kind: str, clients: int) -> dict[str, Any]:
    """Send every payload once, ``clients`` at a time; latencies and totals."""
    import httpx

    headers = {"Authorization": f"Bearer {token}", "Content-Type": CONTENT_TYPES[kind]}
    latencies: list[float] = []
    stored = alerts = flows = 0
    failures: list[str] = []
    lock = threading.Lock()
    queue = list(enumerate(payloads))

    def client() -> None:
        nonlocal stored, alerts, flows
        with httpx.Client(timeout=120) as session:
            while True:
                with lock:
                    if not queue:
                        return
                    _, body = queue.pop()
                started = time.perf_counter()
                response = session.post(f"{url}/v1/score", content=body, headers=headers)
                elapsed = time.perf_counter() - started
                with lock:
                    if response.status_code != 200:
                        failures.append(f"{response.status_code} {response.text[:200]}")
                        continue
                    answer = response.json()
                    latencies.append(elapsed)
                    stored += answer["stored"]
                    alerts += answer["alerts"]
                    flows += answer["flows"]

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, first: {failures[0]}")
    values = np.asarray(latencies)
    return {
        "requests": len(latencies),
        "wall s": wall,
        "requests/s": len(latencies) / wall,
        "flows/s": flows / wall,
        "p50 ms": float(np.percentile(values, 50) * 1000),
        "p99 ms": float(np.percentile(values, 99) * 1000),
        "alerts": alerts,
        "alerts stored": stored,
        "alerts written/s": stored / wall,
    }


def store_rate(sent: Path, bundle: Path, batches: int = 20, batch: int = 1000) -> dict[str, Any]:
    """The alert store alone: batches of ``batch`` scored flows written as alerts."""
    import polars as pl

    from nadkit.alerts.store import AlertStore
    from nadkit.detection.detect import score_flows
    from nadkit.training.bundle import ModelBundle

    loaded = ModelBundle.load(bundle)
    frame = pl.read_parquet(sent).head(batch * 2)
    scored = score_flows(loaded, frame).with_columns(pl.lit(True).alias("alert"))
    with tempfile.TemporaryDirectory() as folder, AlertStore(Path(folder) / "alerts.db") as store:
        started = time.perf_counter()
        for index in range(batches):
            part = scored.slice((index % 2) * batch, batch)
            store.add_alerts(part, model_version=f"bench{index}")
        wall = time.perf_counter() - started
    return {
        "batches": batches,
        "alerts written/s": batches * batch / wall,
        "ms per batch": wall / batches * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", default="1,4", help="concurrent clients per run (comma-separated)")
    parser.add_argument("--requests", type=int, default=60, help="requests per run")
    parser.add_argument("--batch", type=int, default=1000, help="flows per request")
    parser.add_argument("--formats", default="csv,arrow,json", help="body formats (comma-separated)")
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle (default: a cached one)")
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",") if c.strip()]
    kinds = [k.strip() for k in args.formats.split(",") if k.strip()]
    needed = (args.requests + 1) * args.batch
    train, sent = inputs(max(needed + args.batch, 60_000))
    bundle = args.bundle or model(train)
    token = secrets.token_urlsafe(24)
    rows = []
    for kind in kinds:
        payloads = bodies(sent, args.batch, args.requests + 1, kind)
        warm, measured_payloads = payloads[-1:], payloads[:-1]
        for count in clients:
            with tempfile.TemporaryDirectory() as folder:
                process, url = start_service(bundle, Path(folder), token)
                try:
                    # one warm-up request (model and code paths loaded), not counted
                    load(url, token, warm, kind, 1)
                    console.print(
                        f"{kind}, {count} client(s): {args.requests} requests of {args.batch} flows"
                    )
                    measured = load(url, token, measured_payloads, kind, count)
                finally:
                    stop_service(process)
            rows.append({"run": f"{kind}, {count} client(s)", "format": kind, "clients": count, **measured})
    direct = store_rate(sent, bundle)
    rows.append(
        {"run": "alert store alone (1,000-alert batches)", "alerts written/s": direct["alerts written/s"]}
    )
    report(
        "service",
        f"POST /v1/score, {args.batch:,}-flow batches on 127.0.0.1",
        ["run", "requests", "requests/s", "flows/s", "p50 ms", "p99 ms", "alerts stored", "alerts written/s"],
        rows,
        batch=args.batch,
        requests_per_run=args.requests,
        store=direct,
        note="warm service; latency measured by the client; the first alerts of each flow are new",
    )


if __name__ == "__main__":
    main()
