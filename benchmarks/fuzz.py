"""Fuzzing as a standing tool: mutated inputs per family, and what escaped.

Families:

- ``netflow-v5``, ``netflow-v9``, ``ipfix``: export packets for the collector's decoder (mutations of
  well-formed packets of every layout it knows: bit flips, boundary values over bytes and length
  fields, truncation, insertion, splicing, rewritten template field lengths; one packet in eight
  genuine, all fed to one decoder as a collector would see them), ``tests/fuzz/netflow.py``;
- ``reader-FORMAT``: flow files for every reader, mutated from real files of the shared data
  (``tests/fuzz/readers.py``);
- ``bundle``: a small saved model bundle with one to three files changed (``tests/fuzz/bundles.py``);
- ``service``: JSON, CSV and Arrow request bodies for ``POST /v1/score`` (``tests/fuzz/service.py``).

Per family: inputs, accepted (flows decoded or read, bundles loaded, requests answered 200), clean
refusals (what the decoder counted as rejected, a typed nadkit error, a 4xx answer), untyped exceptions
that escaped (a 5xx answer for the service), inputs slower than ``--hang-s`` (hangs), and garbage
accepted (flows with an invalid address, port, count, time or duration; a bundle that scores NaN).
``--inputs`` is shared by weight: the decoder families read a packet in microseconds and take most of
them, a file, a bundle or a request costs milliseconds.

Run: ``.venv/bin/python benchmarks/fuzz.py [--inputs 100000] [--seed 0] [--families reader-cic,bundle]``;
prints a table and writes ``benchmarks/results/fuzz.json``; exits 1 when anything escaped, hung or was
accepted as garbage.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzz.bundles import fuzz_bundles
from tests.fuzz.netflow import FuzzResult, fuzz_decoder
from tests.fuzz.readers import FORMATS, fuzz_reader
from tests.fuzz.service import fuzz_service

from benchmarks.common import report

#: family -> (the fuzzer of ``count`` inputs with ``seed``, its share of the inputs)
FAMILIES: dict[str, tuple[Callable[[int, int], FuzzResult], float]] = {
    "netflow-v5": (lambda count, seed: fuzz_decoder("v5", count, seed=seed), 25.0),
    "netflow-v9": (lambda count, seed: fuzz_decoder("v9", count, seed=seed), 25.0),
    "ipfix": (lambda count, seed: fuzz_decoder("ipfix", count, seed=seed), 25.0),
    **{
        f"reader-{fmt}": ((lambda count, seed, fmt=fmt: fuzz_reader(fmt, count, seed=seed)), 1.6)
        for fmt in FORMATS
    },
    "bundle": (lambda count, seed: fuzz_bundles(count, seed=seed), 1.6),
    "service": (lambda count, seed: fuzz_service(count, seed=seed), 1.6),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs in all, shared by the families")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hang-s", type=float, default=30.0)
    parser.add_argument("--families", default="", help="comma-separated families (default: all)")
    args = parser.parse_args(argv)
    chosen = [f.strip() for f in args.families.split(",") if f.strip()] or list(FAMILIES)
    unknown = [f for f in chosen if f not in FAMILIES]
    if unknown:
        parser.error(f"unknown family {unknown[0]!r} (known: {', '.join(FAMILIES)})")
    rows = []
    failed = False
    weights = sum(FAMILIES[name][1] for name in chosen)
    for name in chosen:
        fuzzer, weight = FAMILIES[name]
        started = time.perf_counter()
        result = fuzzer(max(1, round(args.inputs * weight / weights)), args.seed)
        hangs = int(result.slowest_s > args.hang_s)
        rows.append(
            {
                "family": name,
                "inputs": result.inputs,
                "accepted": result.flows,
                "clean refusals": result.rejected,
                "untyped exceptions": len(result.exceptions),
                "hangs": hangs,
                "garbage accepted": len(result.garbage),
                "slowest input ms": result.slowest_s * 1000,
                "seconds": time.perf_counter() - started,
                "examples": (result.exceptions + result.garbage)[:5],
            }
        )
        escaped = len(result.exceptions)
        print(f"{name}: {result.inputs} inputs, {escaped} escaped", file=sys.stderr, flush=True)
        failed |= bool(result.exceptions or result.garbage or hangs)
    columns = [
        "family",
        "inputs",
        "accepted",
        "clean refusals",
        "untyped exceptions",
        "hangs",
        "garbage accepted",
        "slowest input ms",
        "seconds",
    ]
    totals = {c: sum(r[c] for r in rows) for c in columns[1:-2]}
    rows.append({"family": "all", **totals, "seconds": sum(r["seconds"] for r in rows)})
    report("fuzz", "Mutation fuzzing", columns, rows, seed=args.seed)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
