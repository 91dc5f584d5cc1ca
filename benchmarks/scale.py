"""Scale-out speed: `nadkit detect` locally versus on Spark (``local[2]``) over the same simulated
Parquet dataset (5M flows by default), and `nadkit train` in one process versus two under torchrun.

Detection: the autoencoder bundle (trained on two other days of the same simulated network, saved
with its ONNX graph) scores the dataset in a fresh process per run, alerts written as JSON lines;
``detect s`` is the time the command reports, ``wall s`` the whole process (start-up, for Spark the
JVM, included). Both runs must report the same flows and alerts.

Training: the autoencoder trained for a fixed number of epochs (no early stopping) on the two
training days, in one process with one and with two threads, and as two gloo processes of one thread
each under ``torchrun``; ``s/epoch`` is the training loop's time per epoch, from the bundle's history,
and the hold-out ROC-AUC shows they train the same model.

Run: ``.venv/bin/python benchmarks/scale.py [--flows 5000000] [--train-flows 300000] [--epochs 3]``.
Prints a table and writes ``benchmarks/results/scale.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, cache_dir, console, report
from benchmarks.features import dataset

SPARK_MASTER = "local[2]"
#: the first day of the scored dataset (as :func:`benchmarks.features.dataset` simulates it)
SCORED_START = date(2021, 1, 4)


def training_days(flows: int, scored_days: int) -> Path:
    """Two simulated training days as Parquet (cached): the network of the scored data (same seed),
    days that are not among the scored ones (day indices after them, dated a Monday and Tuesday)."""
    from nadkit.simulate import SimulationConfig, simulate_day

    folder = cache_dir() / f"scale_train_{flows}_{scored_days}"
    if not folder.exists():
        start = SCORED_START - timedelta(days=scored_days)
        config = SimulationConfig(days=scored_days + 2, flows_per_day=flows // 2, seed=3, start=start)
        part = folder.with_name(folder.name + ".part")
        part.mkdir(parents=True, exist_ok=True)
        for index in (scored_days, scored_days + 1):
            simulate_day(config, index).write_parquet(part / f"{config.date_of(index).isoformat()}.parquet")
        part.rename(folder)
    return folder


def scored_days(flows: int) -> int:
    """Days in the scored dataset (as :func:`benchmarks.features.dataset` simulates them)."""
    return max(1, flows // 1_000_000) if flows >= 1_000_000 else 1


def bundle(train: Path) -> Path:
    """The default autoencoder trained on the training days, with its ONNX graph (cached)."""
    from nadkit.training.fit import train_model

    path = cache_dir() / f"scale_ae_bundle_{train.name}"
    if not (path / "manifest.json").exists():
        train_model(train, path, model="ae", config={"time_budget_s": 60.0}, overwrite=True)
    return path


def _run(command: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Run a command; its wall time and standard output (SystemExit with its last error line)."""
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise SystemExit(f"{' '.join(command[:4])} ... failed: {lines[-1:]}")
    return wall, result.stdout


def detect(model: Path, data: Path, engine: str, out: Path) -> dict[str, object]:
    """One `nadkit detect` run in a fresh process (local, or on Spark)."""
    command = [sys.executable, "-m", "nadkit", "detect", str(model), str(data), "--out", str(out)]
    command += ["--json", "--force"]
    if engine == "spark":
        command += ["--engine", "spark", "--master", SPARK_MASTER, "--conf", "spark.driver.memory=4g"]
    wall, stdout = _run(command)
    result = json.loads(stdout)
    flows, seconds = int(result["flows"]), float(result["seconds"])
    return {
        "case": f"detect, {'Spark ' + SPARK_MASTER if engine == 'spark' else 'local'}",
        "flows": flows,
        "alerts": int(result["alerts"]),
        "detect s": round(seconds, 1),
        "flows/s": round(flows / seconds),
        "wall s": round(wall, 1),
        "flows/s (wall)": round(flows / wall),
    }


def train(data: Path, processes: int, threads: int, epochs: int, folder: Path) -> dict[str, object]:
    """`nadkit train` for ``epochs`` epochs in one process, or ``processes`` under torchrun, each with
    ``threads`` threads."""
    settings = folder / "settings.json"
    settings.write_text(json.dumps({"epochs": epochs, "patience": epochs + 1, "device": "cpu"}))
    out = folder / f"ae-{processes}x{threads}"
    command = ["-m", "nadkit", "train", str(data), str(out), "--model", "ae", "--config", str(settings)]
    command += ["--force"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if processes > 1:
        launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
        command = launcher + command
    wall, _ = _run([sys.executable, *command], env=env)
    metrics = json.loads((out / "metrics.json").read_text())
    history = metrics["history"]
    return {
        "case": f"train, 1 process, {threads} thread(s)"
        if processes == 1
        else f"train, {processes} processes of {threads} thread(s) (torchrun, gloo)",
        "flows": int(metrics["train_rows"]),
        "epochs": int(history["epochs_run"]),
        "s/epoch": round(float(history["seconds"]) / max(int(history["epochs_run"]), 1), 2),
        "wall s": round(wall, 1),
        "ROC-AUC": round(float(metrics["holdout"]["roc_auc"]), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=5_000_000, help="flows in the scored dataset")
    parser.add_argument("--train-flows", type=int, default=300_000, help="flows in the training days")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs per run")
    args = parser.parse_args()
    with console.status(f"preparing {args.flows:,} flows to score, the training days and the model"):
        data = dataset(args.flows)
        train_data = training_days(args.train_flows, scored_days(args.flows))
        model = bundle(train_data)
    rows: list[dict[str, object]] = []
    for engine in ("local", "spark"):
        with console.status(f"detect on {engine}"):
            rows.append(detect(model, data, engine, cache_dir() / f"scale-alerts-{engine}.jsonl"))
    if (rows[0]["flows"], rows[0]["alerts"]) != (rows[1]["flows"], rows[1]["alerts"]):
        raise SystemExit(f"local and Spark detection differ: {rows[0]} versus {rows[1]}")
    folder = cache_dir() / "scale_training"
    folder.mkdir(exist_ok=True)
    for processes, threads in ((1, 1), (1, 2), (2, 1)):
        with console.status(f"training in {processes} process(es) of {threads} thread(s)"):
            rows.append(train(train_data, processes, threads, args.epochs, folder))
    report(
        "scale",
        f"Scale-out on 2 cores: detect over {args.flows:,} simulated flows (Parquet), local vs Spark "
        f"{SPARK_MASTER}; autoencoder training, 1 vs 2 processes",
        ["case", "flows", "alerts", "detect s", "flows/s", "epochs", "s/epoch", "wall s", "ROC-AUC"],
        rows,
        spark_master=SPARK_MASTER,
        training_epochs=args.epochs,
    )


if __name__ == "__main__":
    main()
