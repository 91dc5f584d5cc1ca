"""End-to-end scoring speed: `nadkit detect` on 1M simulated flows (read the NAD CSV, features with
segments, the model, the threshold, explained alerts written as JSON lines), with the autoencoder on
torch and on ONNX Runtime (and there with ``--top 0``: alerts without explanations, to show what the
explanations cost), and each run's peak memory; a compact autoencoder shows what a smaller network
buys (and costs: its PR-AUC on the training hold-out).

Goals: at least 200k flows/s end to end with the autoencoder on 2 cores, and at least 0.6x the rate of
a bare ONNX Runtime forward pass of the same graph over the same rows' features (``ratio to bare``:
the bare pass's seconds over detection's; the features are computed beforehand and not timed).

The model is trained on two simulated days (normal flows), its threshold chosen on a labelled hold-out,
and saved with its ONNX graph; the scored day is a third, unseen day of ``--flows`` flows. Every run is
the real command line in a fresh process (start-up and imports included); ``detect s`` is the time the
command itself reports, ``wall s`` the whole process.

Run: ``.venv/bin/python benchmarks/scoring.py [--flows 1000000] [--runs 3]``: the fastest run's figures,
the median run's flows/s and the load average over the runs.
Prints a table and writes ``benchmarks/results/scoring.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, cache_dir, console, report

TRAIN_FLOWS_PER_DAY = 150_000


def inputs(flows: int) -> tuple[Path, Path]:
    """Training days and the day to score (cached): NAD-layout CSV files."""
    from nadkit.simulate import SimulationConfig, simulate_day, write_nad_csv

    folder = cache_dir() / f"scoring_{flows}"
    train = folder / "train"
    scored = folder / "score.csv"
    if not scored.exists():
        train.mkdir(parents=True, exist_ok=True)
        config = SimulationConfig(days=2, flows_per_day=TRAIN_FLOWS_PER_DAY, seed=11, start=date(2021, 1, 4))
        for index in range(2):
            write_nad_csv(simulate_day(config, index), train / f"day{index}.csv")
        later = SimulationConfig(days=3, flows_per_day=flows, seed=11, start=date(2021, 1, 4))
        write_nad_csv(simulate_day(later, 2), scored)
    return train, scored


#: The autoencoders timed: the default one, a compact one (a quarter of the arithmetic per flow) for
#: the speed a smaller network buys, an ensemble of two default ones (``members``) for what it costs,
#: and the earlier default size (256, 128; 16: about three times the arithmetic per flow), for the
#: ratio to the bare pass where the network is a larger share of the work.
MODELS: dict[str, dict[str, object]] = {
    "ae": {},
    "ae compact (64, 32; 8)": {"hidden": [64, 32], "bottleneck": 8},
    "ae, 2 members": {"members": 2},
    "ae large (256, 128; 16)": {"hidden": [256, 128], "bottleneck": 16},
}


def bundle(train: Path, name: str = "ae") -> Path:
    """An autoencoder trained on the training days, with its ONNX graph (cached)."""
    from nadkit.models.autoencoder import AutoencoderConfig
    from nadkit.training.bundle import ModelBundle
    from nadkit.training.fit import train_model

    # the cache is per network size, so a change of the default size trains a new one
    config = AutoencoderConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in MODELS[name].items()})
    size = "-".join(str(n) for n in config.hidden) + f"_{config.bottleneck}"
    if config.members > 1:
        size += f"_x{config.members}"
    path = cache_dir() / f"scoring_ae_{size}_bundle"
    if not (path / "manifest.json").exists():
        config = {"time_budget_s": 60.0, **MODELS[name]}
        train_model(train, path, model="ae", config=config, overwrite=True)
    loaded = ModelBundle.load(path)
    if not loaded.has_onnx:
        loaded.export_onnx()
    return path


def holdout_pr_auc(path: Path) -> float:
    """The model's PR-AUC on its labelled training hold-out (what the smaller network costs)."""
    manifest = json.loads((path / "metrics.json").read_text()) if (path / "metrics.json").exists() else {}
    return round(float(manifest.get("holdout", {}).get("pr_auc", float("nan"))), 4)


def run_cli(model: Path, scored: Path, engine: str, out: Path, top: int = 5) -> dict[str, object]:
    """One `nadkit detect` run in a fresh process (``top``: features explained per alert); its wall
    time, reported result and peak memory."""
    command = [
        str(Path(sys.executable).with_name("nadkit")),
        "detect",
        str(model),
        str(scored),
        "--out",
        str(out),
        "--engine",
        engine,
        "--top",
        str(top),
        "--json",
        "--force",
    ]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    stdout = process.stdout.read().decode() if process.stdout else ""
    stderr = process.stderr.read().decode() if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"nadkit detect failed: {stderr.strip().splitlines()[-1:]}")
    result = json.loads(stdout)
    return {"wall": wall, "result": result, "peak_mb": usage.ru_maxrss / 1024}


def bare_onnx(model: Path, scored: Path) -> dict[str, float]:
    """A bare ONNX Runtime forward pass of the bundle's graph over the same rows' features (computed
    beforehand, not timed): seconds for the graph as exported (``contributions`` out) and with the
    row sums (``score`` out), the same session settings and batch size as detection uses."""
    from nadkit.models.onnx_runtime import OUTPUT_NAME, SCORE_NAME, OnnxScorer
    from nadkit.sources import load_flows
    from nadkit.training.bundle import ONNX, ModelBundle

    loaded = ModelBundle.load(model, engine="onnx")
    flows, _ = load_flows(scored)
    features = loaded.data(flows).features.astype("float32", copy=False)
    scorer = OnnxScorer(model / ONNX, batch_size=loaded._onnx_scorer().batch_size)  # type: ignore[union-attr]
    out: dict[str, float] = {"rows": float(len(features))}
    for name in (OUTPUT_NAME, SCORE_NAME):
        best = float("inf")
        for _ in range(2):
            started = time.perf_counter()
            for start in range(0, len(features), scorer.batch_size):
                scorer.session.run([name], {"x": features[start : start + scorer.batch_size]})
            best = min(best, time.perf_counter() - started)
        out[name] = best
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=1_000_000, help="flows in the scored day")
    parser.add_argument(
        "--runs", type=int, default=3, help="runs per engine (the fastest is kept, the median reported too)"
    )
    args = parser.parse_args()
    with console.status("preparing inputs and the models"):
        train, scored = inputs(args.flows)
        models = {name: bundle(train, name) for name in MODELS}
    rows = []
    # the default model on torch, on ONNX Runtime, and on ONNX Runtime without explanations
    runs = [("ae", "torch", 5), ("ae", "onnx", 5), ("ae", "onnx", 0)]
    runs += [(name, "onnx", 5) for name in MODELS if name != "ae"]
    for name, engine, top in runs:
        model = models[name]
        best: dict[str, object] | None = None
        seconds: list[float] = []
        loads = [os.getloadavg()[0]]
        for _ in range(args.runs):
            measured = run_cli(model, scored, engine, cache_dir() / f"alerts-{engine}.jsonl", top=top)
            seconds.append(float(measured["result"]["seconds"]))  # type: ignore[index]
            loads.append(os.getloadavg()[0])
            if best is None or measured["wall"] < best["wall"]:  # type: ignore[operator]
                best = measured
        assert best is not None
        result = best["result"]
        flows = int(result["flows"])  # type: ignore[index]
        detect_s = float(result["seconds"])  # type: ignore[index]
        wall = float(best["wall"])  # type: ignore[arg-type]
        rows.append(
            {
                "model": name,
                "engine": engine if top else f"{engine}, --top 0",
                "flows": flows,
                "alerts": int(result["alerts"]),  # type: ignore[index]
                "detect s": round(detect_s, 2),
                "flows/s (detect)": round(flows / detect_s),
                "flows/s (detect, median)": round(flows / float(np.median(seconds))),
                "runs": len(seconds),
                "load (1 min)": f"{min(loads):.1f}-{max(loads):.1f}",
                "wall s": round(wall, 2),
                "flows/s (wall)": round(flows / wall),
                "peak MB": round(float(best["peak_mb"]), 0),  # type: ignore[arg-type]
                "max held rows": int(result["max_held_rows"]),  # type: ignore[index]
                "hold-out PR-AUC": holdout_pr_auc(model),
            }
        )
    bare_runs: dict[str, dict[str, float]] = {}
    for row in rows:
        if not str(row["engine"]).startswith("onnx"):
            continue
        if str(row["model"]) not in bare_runs:
            bare_runs[str(row["model"])] = bare_onnx(models[str(row["model"])], scored)
        bare = bare_runs[str(row["model"])]
        fastest = min(bare["contributions"], bare["score"])
        row["bare ONNX s"] = round(fastest, 2)
        row["bare flows/s"] = round(bare["rows"] / fastest)
        row["ratio to bare"] = round(fastest / float(row["detect s"]), 2)  # type: ignore[arg-type]
    for row in rows:
        row.setdefault("bare ONNX s", None)
        row.setdefault("bare flows/s", None)
        row.setdefault("ratio to bare", None)
    report(
        "scoring",
        f"nadkit detect end to end, autoencoders, {args.flows:,} simulated flows (NAD CSV -> alerts JSONL)",
        list(rows[0]),
        rows,
        goal_flows_per_s=200_000,
    )


if __name__ == "__main__":
    main()
