"""Peers on the same capture: nadkit beside the detectors a user would pick instead, where installed:
Kitsune (AfterImage + KitNET) and Slips. Packets/s and flows/s from the capture to alerts, and the
detection rate at one false-positive rate for each.

The capture (written once, cached under ``benchmarks/results/cache``) is the shared Ethernet captures
one after another, re-timed into slots with a 600 s gap between them (longer than the meters' idle
timeouts, so no flow runs from one slot into the next; gaps over a minute inside a capture shortened
to a minute): first the training part, two thirds of the
benign captures by name; then the test part, the other benign captures and every attack capture.
Each packet, and each flow by its start time, is labelled by its slot.

* ``nadkit``: ``load_flows`` of the whole capture, a model (``--model``, trained in memory on the
  training part's flows; its training time reported apart) and ``Model.detect`` over every flow:
  the time to alerts covers reading, metering, features, scores and explanations.
* ``Kitsune``: the original's ``Kitsune(path, limit, maxAE, FMgrace, ADgrace)`` and
  ``proc_next_packet()`` loop, where a module named ``Kitsune`` with that class is importable (for
  example its folder on ``PYTHONPATH``); the training part's packets are its grace periods (feature
  mapping, then training). It scores packets, not flows. The package index has no Kitsune detector
  (a package called ``kitsune`` there is a k-mer genome toolkit), so it cannot be installed from it;
  without the module the row says so and is skipped.
* ``Slips``: ``slips.py -f capture -o folder`` where ``--slips PATH`` names its ``slips.py`` and Zeek
  and a Redis server are installed; its alerts counted from ``alerts.json`` (Slips gives alerts,
  not scores, so it has no point at the common false-positive rate). Slips is not on the package
  index on its own (only inside a third-party SDK that pins TensorFlow, pandas and NumPy versions
  this environment does not have) and Zeek is not a Debian package, so here the row is skipped. This
  path has not been run on this machine.

Detection at the same false-positive rate (``--fpr``, 1% by default): the threshold is each
detector's score exceeded by that share of the test part's benign units (flows for nadkit, packets
for Kitsune), the detection rate the share of attack units at or above it, overall and as the mean
over the attack captures (so the SYN flood's many flows do not hide the small scans).

Run: ``.venv/bin/python benchmarks/peers.py [--model ae] [--budget 60] [--fpr 0.01] [--slips
PATH]``. Prints a table and writes ``benchmarks/results/peers.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.captures import _PCAP_HEADER, _records, write_retimed
from benchmarks.common import cache_dir, console, data_dir, peak_rss_mb, report
from nadkit.sources import load_flows

_ETHERNET = 1
_GAP_US = 600 * 1_000_000
_START_US = 1_609_718_400 * 1_000_000  # 2021-01-04 00:00 UTC


@dataclass(frozen=True)
class Slot:
    """One shared capture's place in the peers' capture."""

    capture: str
    attack: bool
    part: str  # "train" or "test"
    start_us: int
    end_us: int
    packets: int


def peers_capture() -> tuple[Path, list[Slot]]:
    """The capture every peer reads and its slots (cached, with the slots beside it as JSON)."""
    path = cache_dir() / "peers-capture.pcap"
    layout = path.with_suffix(".json")
    if path.exists() and layout.exists():
        return path, [Slot(**slot) for slot in json.loads(layout.read_text())]
    benign = sorted((data_dir() / "pcaps" / "benign").glob("*.pcap"))
    attack = sorted((data_dir() / "pcaps" / "attack").glob("*.pcap"))
    train = [capture for index, capture in enumerate(benign) if index % 3 != 2]
    test = [capture for index, capture in enumerate(benign) if index % 3 == 2] + attack
    slots: list[Slot] = []
    clock = _START_US
    partial = path.with_suffix(".partial")
    with partial.open("wb") as out:
        out.write(_PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 262_144, _ETHERNET))
        for part, captures in (("train", train), ("test", test)):
            for capture in captures:
                read = _records(capture)
                if read is None or read[1] != _ETHERNET or not read[0]:
                    continue
                records = read[0]
                last = write_retimed(out, records, clock)
                slots.append(Slot(capture.stem, capture in attack, part, clock, last, len(records)))
                clock = last + _GAP_US
    partial.replace(path)
    layout.write_text(json.dumps([dataclasses.asdict(slot) for slot in slots], indent=1))
    return path, slots


def slot_of(times_us: np.ndarray, slots: list[Slot]) -> np.ndarray:
    """The index of the slot each time falls in (slots are in time order, gaps between them)."""
    starts = np.array([slot.start_us for slot in slots])
    return np.clip(np.searchsorted(starts, times_us, side="right") - 1, 0, len(slots) - 1)


def detection(
    scores: np.ndarray, where: np.ndarray, slots: list[Slot], fpr: float
) -> dict[str, float | int | None]:
    """Detection rate at the score exceeded by ``fpr`` of the test part's benign units."""
    test = np.array([slot.part == "test" for slot in slots])[where]
    attack = np.array([slot.attack for slot in slots])[where]
    benign_scores = scores[test & ~attack]
    if benign_scores.size == 0 or not (test & attack).any():
        return {"threshold": None, "fpr": None, "detection": None, "macro_detection": None}
    threshold = float(np.quantile(benign_scores, 1.0 - fpr))
    alerted = scores >= threshold
    per_capture = [
        float(alerted[where == index].mean())
        for index, slot in enumerate(slots)
        if slot.attack and (where == index).any()
    ]
    return {
        "threshold": threshold,
        "fpr": float(alerted[test & ~attack].mean()),
        "detection": float(alerted[test & attack].mean()),
        "macro_detection": float(np.mean(per_capture)),
    }


def run_nadkit(path: Path, slots: list[Slot], model: str, budget_s: float, fpr: float) -> dict[str, Any]:
    """nadkit from the capture to alerts, and its detection at ``fpr``."""
    import nadkit
    from nadkit.models import REGISTRY

    started = time.perf_counter()
    flows, _ = load_flows(path, format="pcap")
    read_s = time.perf_counter() - started
    where = slot_of(flows["time"].dt.epoch("us").to_numpy(), slots)
    train = flows.filter(pl.Series([slots[i].part == "train" for i in where]))
    fields = {field.name for field in dataclasses.fields(REGISTRY[model].config_class)}
    config = {"time_budget_s": budget_s} if "time_budget_s" in fields else None
    started = time.perf_counter()
    trained = nadkit.train(train, model=model, config=config)
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    records = trained.detect(flows)
    detect_s = time.perf_counter() - started
    scores = records["score"].to_numpy().astype(np.float64)
    return {
        "peer": f"nadkit ({model})",
        "unit": "flow",
        "flows": flows.height,
        "alerts": int(records["alert"].sum()),
        "seconds_to_alerts": read_s + detect_s,
        "read_s": read_s,
        "score_s": detect_s,
        "train_s": train_s,
        "flows_per_s": flows.height / (read_s + detect_s),
        **detection(scores, where, slots, fpr),
    }


def kitsune_module() -> Any | None:
    """The original Kitsune's module (``Kitsune.Kitsune`` with ``proc_next_packet``), if importable."""
    try:
        module = importlib.import_module("Kitsune")
    except ImportError:
        return None
    found = getattr(module, "Kitsune", None)
    return module if found is not None and hasattr(found, "proc_next_packet") else None


def run_kitsune(path: Path, slots: list[Slot], fpr: float) -> dict[str, Any]:
    """Kitsune (AfterImage + KitNET) over the capture's packets, and its detection at ``fpr``."""
    module = kitsune_module()
    if module is None:
        return {
            "peer": "Kitsune",
            "skipped": "not installed: no Kitsune detector on the package index (the `kitsune` package "
            "there is a genome k-mer toolkit); put the original's folder on PYTHONPATH to include it",
        }
    grace = sum(slot.packets for slot in slots if slot.part == "train")
    feature_grace = max(1, grace // 10)
    detector = module.Kitsune(str(path), np.inf, 10, feature_grace, grace - feature_grace)
    scores: list[float] = []
    started = time.perf_counter()
    while True:
        score = detector.proc_next_packet()
        if score == -1:
            break
        scores.append(float(score))
    seconds = time.perf_counter() - started
    packets = len(scores)
    # the packets in file order are in time order: slot i holds slots[i].packets of them
    where = np.repeat(np.arange(len(slots)), [slot.packets for slot in slots])[:packets]
    return {
        "peer": "Kitsune",
        "unit": "packet",
        "packets": packets,
        "seconds_to_alerts": seconds,
        "packets_per_s": packets / seconds,
        **detection(np.asarray(scores), where, slots, fpr),
    }


def run_slips(path: Path, slips: str | None) -> dict[str, Any]:
    """Slips over the capture: time to its alerts and how many (it gives no scores)."""
    missing = [name for name in ("zeek", "redis-server") if shutil.which(name) is None]
    if slips is None or not Path(slips).is_file() or missing:
        why = "no --slips PATH to slips.py" if slips is None or not Path(slips).is_file() else ""
        why = ", ".join(filter(None, [why, *(f"{name} not installed" for name in missing)]))
        return {
            "peer": "Slips",
            "skipped": f"not installed ({why}); Slips is on the package index only inside a third-party "
            "SDK whose pinned TensorFlow, pandas and NumPy conflict with this environment",
        }
    with tempfile.TemporaryDirectory(prefix="nadkit-slips-") as folder:
        started = time.perf_counter()
        command = [sys.executable, slips, "-f", str(path), "-o", folder]
        subprocess.run(command, check=True, capture_output=True, timeout=3600)
        seconds = time.perf_counter() - started
        alerts = Path(folder) / "alerts.json"
        count = sum(1 for line in alerts.read_text().splitlines() if line.strip()) if alerts.exists() else 0
    return {"peer": "Slips", "unit": "alert", "alerts": count, "seconds_to_alerts": seconds}


COLUMNS = (
    "peer",
    "unit",
    "packets",
    "flows",
    "seconds_to_alerts",
    "packets_per_s",
    "flows_per_s",
    "train_s",
    "fpr",
    "detection",
    "macro_detection",
    "skipped",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ae")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds of training for neural models")
    parser.add_argument("--fpr", type=float, default=0.01)
    parser.add_argument("--slips", default=os.environ.get("NADKIT_SLIPS"), help="path to Slips' slips.py")
    args = parser.parse_args()
    path, slots = peers_capture()
    packets = sum(slot.packets for slot in slots)
    load = round(os.getloadavg()[0], 2)
    console.print(f"{path.name}: {packets:,} packets in {len(slots)} slots, load {load}")
    rows = [run_nadkit(path, slots, args.model, args.budget, args.fpr)]
    rows.append(run_kitsune(path, slots, args.fpr))
    rows.append(run_slips(path, args.slips))
    for row in rows:
        row.setdefault("packets", packets)
        if "seconds_to_alerts" in row:
            row.setdefault("packets_per_s", row["packets"] / row["seconds_to_alerts"])
        if "skipped" in row:
            console.print(f"[yellow]{row['peer']}: {row['skipped']}")
    report(
        "peers",
        f"Peers on one capture: to alerts, and detection at {args.fpr:.0%} false positives",
        [*COLUMNS],
        rows,
        fpr=args.fpr,
        model=args.model,
        load_1m_at_start=load,
        slots=[dataclasses.asdict(slot) for slot in slots],
        peak_rss_mb=peak_rss_mb(),
    )


if __name__ == "__main__":
    main()
