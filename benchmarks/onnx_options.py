"""ONNX Runtime session options for the default autoencoder, measured: a bare forward pass of the
bundle's graph (its ``score`` output) over the same feature rows with 1 and 2 threads, basic and
full graph optimisation, and the graph quantised to int8 (ONNX Runtime's dynamic quantisation),
with how far the int8 scores keep the float ranking and alert decisions.

The rows are the first ``--rows`` flows of the scoring benchmark's simulated day
(``benchmarks/scoring.py``'s cached inputs and default bundle, trained if missing), featurised once
and not timed. Each setting runs ``--runs`` times over all rows in the scorer's batches; the fastest
and median are kept. For int8: the Spearman rank correlation of its scores with the float graph's,
the share of the float graph's top 1% of rows that are also its top 1%, and the share of rows whose
alert decision (score at or above the bundle's threshold) changes.

float16 is not measured: converting the graph needs ``onnxconverter-common``, which is not a
dependency, and ONNX Runtime's CPU kernels compute float16 matrix products through float32.

Run: ``.venv/bin/python benchmarks/onnx_options.py [--rows 300000] [--runs 5]``; prints a table and
writes ``benchmarks/results/onnx_options.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import console, report
from benchmarks.scoring import bundle, inputs


def _session(path: Path, threads: int, level: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _scores(session: Any, features: np.ndarray, batch: int) -> np.ndarray:
    out = [session.run(["score"], {"x": features[i : i + batch]})[0] for i in range(0, len(features), batch)]
    return np.concatenate(out).astype(np.float64)


def _timed(session: Any, features: np.ndarray, batch: int, runs: int) -> tuple[float, float]:
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        _scores(session, features, batch)
        seconds.append(time.perf_counter() - started)
    return min(seconds), statistics.median(seconds)


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    return ranks


def agreement(reference: np.ndarray, other: np.ndarray, threshold: float) -> dict[str, float]:
    """Spearman correlation, overlap of the top 1% and the share of changed alert decisions."""
    spearman = float(np.corrcoef(_ranks(reference), _ranks(other))[0, 1])
    top = max(1, len(reference) // 100)
    best = set(np.argsort(-reference)[:top].tolist())
    overlap = len(best & set(np.argsort(-other)[:top].tolist())) / top
    changed = float(np.mean((reference >= threshold) != (other >= threshold)))
    return {"spearman": spearman, "top 1% overlap": overlap, "alert decisions changed": changed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from nadkit.sources import load_flows
    from nadkit.training.bundle import ONNX, ModelBundle

    with console.status("preparing the rows and the model"):
        train, scored = inputs(1_000_000)
        model = bundle(train, "ae")
        loaded = ModelBundle.load(model, engine="onnx")
        flows, _ = load_flows(scored)
        features = loaded.data(flows.head(args.rows)).features.astype("float32", copy=False)
        batch = loaded._onnx_scorer().batch_size  # type: ignore[union-attr]
        threshold = float(loaded.threshold.value)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        quantized = Path(folder) / "int8.onnx"
        quantize_dynamic(str(model / ONNX), str(quantized), weight_type=QuantType.QInt8)
        reference = _scores(_session(model / ONNX, 1, "all"), features, batch)
        settings = [
            ("float32", model / ONNX, threads, level) for threads in (1, 2) for level in ("basic", "all")
        ] + [("int8 (dynamic)", quantized, threads, "all") for threads in (1, 2)]
        loads = [os.getloadavg()[0]]
        for name, path, threads, level in settings:
            session = _session(path, threads, level)
            fastest, median = _timed(session, features, batch, args.runs)
            loads.append(os.getloadavg()[0])
            row: dict[str, Any] = {
                "graph": name,
                "threads": threads,
                "optimisation": level,
                "rows": len(features),
                "fastest s": round(fastest, 3),
                "rows/s fastest": round(len(features) / fastest),
                "rows/s median": round(len(features) / median),
            }
            if path == quantized:
                row.update(
                    {
                        k: round(v, 4)
                        for k, v in agreement(reference, _scores(session, features, batch), threshold).items()
                    }
                )
            rows.append(row)
    report(
        "onnx_options",
        f"ONNX Runtime options, default autoencoder, {len(features):,} rows "
        f"(1-minute load {min(loads):.1f}-{max(loads):.1f})",
        list(dict.fromkeys(k for r in rows for k in r)),
        rows,
        load=[min(loads), max(loads)],
    )


if __name__ == "__main__":
    main()
