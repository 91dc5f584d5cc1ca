"""Fuzzing as a standing tool: mutated inputs per family, and what escaped.

Families so far: NetFlow v5, v9 and IPFIX export packets for the collector's decoder (mutations of
well-formed packets of every layout it knows: bit flips, boundary values over bytes and length fields,
truncation, insertion, splicing, rewritten template field lengths; one packet in eight genuine, all fed
to one decoder as a collector would see them). Per family: inputs, clean refusals (datagrams, templates
and records the decoder counted as rejected), untyped exceptions that escaped ``feed``/``take``, inputs
slower than ``--hang-s`` (hangs), and garbage accepted (decoded flows with an invalid address, port,
count, time or duration).

Run: ``.venv/bin/python benchmarks/fuzz.py [--inputs 100000] [--seed 0]``; prints a table and writes
``benchmarks/results/fuzz.json``; exits 1 when anything escaped, hung or was accepted as garbage.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzz.netflow import fuzz_decoder

from benchmarks.common import report

FAMILIES = {"netflow-v5": "v5", "netflow-v9": "v9", "ipfix": "ipfix"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs in all, shared by the families")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hang-s", type=float, default=30.0)
    args = parser.parse_args(argv)
    rows = []
    failed = False
    per_family = max(1, args.inputs // len(FAMILIES))
    for name, family in FAMILIES.items():
        started = time.perf_counter()
        result = fuzz_decoder(family, per_family, seed=args.seed)
        hangs = int(result.slowest_s > args.hang_s)
        rows.append(
            {
                "family": name,
                "inputs": result.inputs,
                "flows decoded": result.flows,
                "clean refusals": result.rejected,
                "untyped exceptions": len(result.exceptions),
                "hangs": hangs,
                "garbage accepted": len(result.garbage),
                "slowest input ms": result.slowest_s * 1000,
                "seconds": time.perf_counter() - started,
                "examples": (result.exceptions + result.garbage)[:5],
            }
        )
        failed |= bool(result.exceptions or result.garbage or hangs)
    columns = [
        "family",
        "inputs",
        "flows decoded",
        "clean refusals",
        "untyped exceptions",
        "hangs",
        "garbage accepted",
        "slowest input ms",
        "seconds",
    ]
    report("fuzz", "Mutation fuzzing", columns, rows, seed=args.seed)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
