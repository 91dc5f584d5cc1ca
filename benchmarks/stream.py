"""Live detection: sustained flows/s and latency of `nadkit stream` on NetFlow v9 over loopback UDP.

A generator process sends NetFlow v9 export packets (40 records of a 10-field template per packet,
the template re-sent every 100 packets, paced to the offered rate) to the collector, which runs in
this process: the UDP receiver thread, micro-batches of 1 s (``--batch-seconds``), the default
autoencoder bundle (with its ONNX graph, so the default engine scores on ONNX Runtime), alerts written
as JSON lines to a file.
The flows are a simulated day (`nadkit simulate`, 1.16 M flows) as a router exports them:
unidirectional (``in_*`` = 0), no application names, no precomputed counters (the pipeline computes
counters and segment features itself). The bundle is the default ``ae`` config trained on the same
kind of flows, its training stopped after ``--budget`` seconds (cached under
``benchmarks/results/cache``).

Two clocks for the flows' own times:

* ``replay``: the day's own times, so event time runs thousands of times faster than the wall clock
  (a day in about 20 s): the lateness and the counters' look-back cover few flows; segments that stay
  open (a host polling one subnet all day) are still held until shutdown;
* ``realtime``: flows are stamped with the time they are sent (each ends when it is exported), as a
  router's export is. The counters' 60 s look-back and the 60 s segment gap then hold a minute of
  traffic, and a flow's segment closes only after 60 s without a flow of its key, so its record comes
  at least that long after the flow.

Per run: offered rate, flows received, drops (hand-off queue and kernel socket buffer, in packets x
40 flows; late flows), the processing rate (flows received / time from the first packet sent to the
last flow scored), the drain time (from the generator's last packet to the last flow through its
micro-batch: one or two micro-batches when the collector keeps up, growing with the backlog when it
does not), latency from a flow's arrival to its record being written (p50/p99 over the records written
before shutdown; with ``--all`` every flow is a record), most flows held, and the CPU time the
collector used, as cores over the run and as flows per CPU-second (on a machine shared with other work
the collector gets less than its 2 cores, and the wall-clock rates drop with it).

``--no-segments`` uses the same model without segment features (counters kept): no flow then waits for
its segment to close, which shows the latency of the loop itself.

Run: ``.venv/bin/python benchmarks/stream.py [--rates 25000 50000] [--seconds 20] [--clock replay
realtime] [--all] [--no-segments]``; prints a table and writes
``benchmarks/results/stream[-CLOCK][-all][-no-segments].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RECORD = np.dtype(
    [
        ("src", ">u4"),
        ("dst", ">u4"),
        ("spt", ">u2"),
        ("dpt", ">u2"),
        ("proto", "u1"),
        ("flags", "u1"),
        ("octets", ">u4"),
        ("packets", ">u4"),
        ("first", ">u4"),
        ("last", ">u4"),
    ]
)
#: (NetFlow v9 field type, length) of RECORD's fields
TEMPLATE_FIELDS = ((8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (6, 1), (1, 4), (2, 4), (22, 4), (21, 4))
TEMPLATE_ID = 256
RECORDS_PER_PACKET = 40
TEMPLATE_EVERY = 100
MAX_DURATION_MS = 30_000


# ---------------------------------------------------------------------------------------------------
# the generator (a separate process: numpy only)
# ---------------------------------------------------------------------------------------------------


def _template_flowset() -> bytes:
    body = struct.pack(">HH", TEMPLATE_ID, len(TEMPLATE_FIELDS))
    for field_type, length in TEMPLATE_FIELDS:
        body += struct.pack(">HH", field_type, length)
    return struct.pack(">HH", 0, 4 + len(body)) + body


def generate(records_path: Path, port: int, rate: float, clock: str) -> dict[str, Any]:
    """Send the records of ``records_path`` (a .npy of RECORD, ``first``/``last`` in ms since the
    start) to 127.0.0.1:``port`` at ``rate`` flows/s."""
    records = np.load(records_path)
    template = _template_flowset()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    count = len(records)
    packets = (count + RECORDS_PER_PACKET - 1) // RECORDS_PER_PACKET
    bodies = []
    for k in range(packets):
        chunk = records[k * RECORDS_PER_PACKET : (k + 1) * RECORDS_PER_PACKET]
        data = chunk.tobytes()
        bodies.append(
            (struct.pack(">HH", TEMPLATE_ID, 4 + len(data)) + data, len(chunk), int(chunk["last"].max()))
        )
    boot_ms = int(time.time() * 1000)
    started = time.perf_counter()
    lag = 0.0
    for k, (data, rows, last) in enumerate(bodies):
        due = (k * RECORDS_PER_PACKET + rows) / rate
        now = time.perf_counter() - started
        if now < due:
            time.sleep(due - now)
        else:
            lag = max(lag, now - due)
        sets = [template, data] if k % TEMPLATE_EVERY == 0 else [data]
        if clock == "realtime":
            # the header says "now"; the records' times are ms since the start (the exporter's uptime)
            secs = int(time.time())
            uptime = secs * 1000 - boot_ms
        else:
            # the day's own clock: the header at the next whole second after the packet's last flow
            uptime = (last // 1000 + 1) * 1000
            secs = 1_609_459_200 + uptime // 1000
        header = struct.pack(">HHIIII", 9, len(sets), uptime % (1 << 32), secs, k, 0)
        sender.sendto(header + b"".join(sets), ("127.0.0.1", port))
    ended = time.perf_counter()
    return {
        "sent_flows": count,
        "sent_packets": packets,
        "send_seconds": ended - started,
        "max_lag_s": lag,
        "boot_epoch_s": boot_ms / 1000,
    }


# ---------------------------------------------------------------------------------------------------
# inputs: the flows and the bundle
# ---------------------------------------------------------------------------------------------------


def exported_day() -> Any:
    """The simulated day as a router exports it: unidirectional, no application, no counters, IPv4."""
    import polars as pl

    from benchmarks.features import dataset

    day = pl.read_parquet(sorted(dataset(1_000_000).glob("*.parquet"))[0])
    day = day.filter(~pl.col("src").str.contains(":") & ~pl.col("dst").str.contains(":"))
    return day.select(
        "time",
        "src",
        "dst",
        "spt",
        "dpt",
        "proto",
        pl.col("duration").clip(0, MAX_DURATION_MS / 1000),
        "out_bytes",
        pl.lit(0, dtype=pl.Int64).alias("in_bytes"),
        "out_pkts",
        pl.lit(0, dtype=pl.Int64).alias("in_pkts"),
        "label",
    ).sort("time", maintain_order=True)


def default_bundle(console: Any, budget_s: float) -> Path:
    """The default autoencoder (default layers and settings; training stopped after ``budget_s``
    seconds) trained on the first 200,000 exported flows (cached)."""
    from benchmarks.common import cache_dir
    from nadkit.training.fit import train_model

    path = cache_dir() / "stream-ae-bundle"
    if not (path / "manifest.json").exists():
        train = cache_dir() / "stream-train.parquet"
        exported_day().head(200_000).drop("label").write_parquet(train)
        with console.status("training the default autoencoder (cached after the first run)"):
            result = train_model(train, path, model="ae", config={"time_budget_s": budget_s}, overwrite=True)
            # as `nadkit train` users deploy it: with its ONNX graph, scored on ONNX Runtime
            result.bundle.export_onnx()
    return path


def bundle_without_segments(console: Any, budget_s: float) -> Path:
    """The same default autoencoder with the segment features left out (counters kept), so that no
    flow waits for its segment to close (cached)."""
    from benchmarks.common import cache_dir
    from nadkit.evaluation.split import unsupervised_split
    from nadkit.features.data import detector_data
    from nadkit.features.pipeline import GROUP_NAMES, SEGMENT_GROUPS, FeatureConfig, FeaturePipeline
    from nadkit.models import create
    from nadkit.training.bundle import ModelBundle, fingerprint
    from nadkit.training.fit import holdout_threshold

    path = cache_dir() / "stream-ae-bundle-no-segments"
    if not (path / "manifest.json").exists():
        flows = exported_day().head(200_000).drop("label")
        split = unsupervised_split(flows, seed=0)
        groups = tuple(g for g in GROUP_NAMES if g not in SEGMENT_GROUPS)
        pipeline = FeaturePipeline(FeatureConfig(groups=groups)).fit(split.train)
        detector = create("ae", {"time_budget_s": budget_s, "seed": 0})
        train = detector_data(pipeline, split.train)
        with console.status("training the default autoencoder without segment features (cached)"):
            detector.fit(train)
        holdout = detector_data(pipeline, split.holdout)
        threshold, _ = holdout_threshold(detector.score(holdout), holdout.labels)
        bundle = ModelBundle(pipeline=pipeline, detector=detector, threshold=threshold)
        bundle.save(path, overwrite=True, data_fingerprint=fingerprint(train))
        bundle.export_onnx()
    return path


def _ipv4(column: Any) -> np.ndarray:
    import polars as pl

    parts = column.str.split_exact(".", 3).struct.unnest()
    octets = [parts[name].cast(pl.UInt32).to_numpy().astype(np.uint64) for name in parts.columns]
    return ((octets[0] << 24) | (octets[1] << 16) | (octets[2] << 8) | octets[3]).astype(np.uint32)


def records_for(flows: Any, clock: str, rate: float) -> np.ndarray:
    """RECORD rows of ``flows`` with ``first``/``last`` in ms since the generator's start."""
    import polars as pl

    count = flows.height
    records = np.zeros(count, dtype=RECORD)
    records["src"] = _ipv4(flows["src"])
    records["dst"] = _ipv4(flows["dst"])
    records["spt"] = flows["spt"].fill_null(0).to_numpy()
    records["dpt"] = flows["dpt"].fill_null(0).to_numpy()
    numbers = {"tcp": 6, "udp": 17, "icmp": 1}
    records["proto"] = flows["proto"].replace_strict(numbers, default=0, return_dtype=pl.UInt8).to_numpy()
    records["flags"] = np.where(records["proto"] == 6, 0x1B, 0)
    records["octets"] = flows["out_bytes"].fill_null(0).clip(0, 2**32 - 1).to_numpy()
    records["packets"] = flows["out_pkts"].fill_null(1).clip(0, 2**32 - 1).to_numpy()
    duration = (flows["duration"].fill_null(0).to_numpy() * 1000).astype(np.int64)
    if clock == "replay":
        start = (flows["time"].dt.epoch("ms") - flows["time"].dt.epoch("ms").min()).to_numpy() + 1000
        records["first"] = start
        records["last"] = start + duration
    else:
        # each flow ends when it is sent (exported as it ends): its start lies its duration before
        end = 2000 + (np.arange(count) * 1000 / rate).astype(np.int64)
        records["last"] = end
        records["first"] = np.maximum(end - duration, 0)
    return records


# ---------------------------------------------------------------------------------------------------
# one measurement
# ---------------------------------------------------------------------------------------------------


def measure(
    bundle_path: Path,
    flows: Any,
    *,
    rate: float,
    seconds: float,
    clock: str,
    all_flows: bool,
    batch_seconds: float = 1.0,
) -> dict[str, Any]:
    from nadkit.stream import StreamConfig, StreamRunner
    from nadkit.stream.sinks import JsonLinesSink
    from nadkit.stream.sources import NetflowSource
    from nadkit.training.bundle import ModelBundle

    count = min(flows.height, int(rate * seconds))
    records = records_for(flows.head(count), clock, rate)
    folder = Path(tempfile.mkdtemp(prefix="nadkit-bench-stream-"))
    np.save(folder / "records.npy", records)
    source = NetflowSource("127.0.0.1", 0)
    sink = JsonLinesSink(folder / "records.jsonl")
    lateness = 60.0  # the default of collectors
    config = StreamConfig(
        batch_seconds=batch_seconds,
        batch_rows=50_000,
        lateness_s=lateness,
        all_flows=all_flows,
        status_seconds=5,
    )
    bundle = ModelBundle.load(bundle_path)
    runner = StreamRunner(
        bundle, source, [sink], config, on_status=lambda s: print("   ", s.line(), flush=True)
    )
    thread = threading.Thread(target=runner.run, daemon=True)
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    thread.start()
    command = [
        sys.executable,
        __file__,
        "generate",
        str(folder / "records.npy"),
        str(source.address[1]),
        str(rate),
        clock,
    ]
    generator = subprocess.run(command, capture_output=True, text=True, check=True)
    sent = json.loads(generator.stdout.strip().splitlines()[-1])
    send_started = sent["boot_epoch_s"]
    send_ended = send_started + sent["send_seconds"]
    # wait until every flow that arrived has been through its micro-batch
    progress, progress_at = -1, time.time()
    while True:
        stats = runner.stats
        dropped = runner.handoff.dropped + source.stats().get("kernel_drops", 0)
        if (
            stats.flows_done >= sent["sent_flows"] - RECORDS_PER_PACKET * dropped
            and runner.handoff.qsize() == 0
        ):
            caught_up = stats.last_batch_at
            break
        if stats.flows_done != progress:
            progress, progress_at = stats.flows_done, time.time()
        elif time.time() - progress_at > 60:
            caught_up = stats.last_batch_at
            break
        time.sleep(0.02)
    live = runner.latency.quantiles()
    held_at_end = runner.scorer.held_rows
    runner.stop()
    thread.join(timeout=600)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    stats = runner.stats
    received = stats.flows_in
    window = caught_up - send_started
    drain = caught_up - send_ended
    dropped_queue = stats.queue_dropped * RECORDS_PER_PACKET
    kernel = stats.source_stats.get("kernel_drops", 0) * RECORDS_PER_PACKET
    processed_rate = received / window if window > 0 else float("nan")
    shutil.rmtree(folder, ignore_errors=True)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    wall = time.time() - send_started
    return {
        "clock": clock,
        "segments": bool(bundle.pipeline.segments_computed_),
        "batch_s": batch_seconds,
        "records": "all flows" if all_flows else "alerts",
        "offered_flows_per_s": rate,
        "sent": sent["sent_flows"],
        "generator_lag_s": round(sent["max_lag_s"], 3),
        "received": received,
        "dropped_queue": dropped_queue,
        "dropped_kernel": kernel,
        "late": stats.late_dropped,
        "processed_flows_per_s": processed_rate,
        # the backlog left when the generator stopped: at most two micro-batches when the collector keeps up
        "drain_s": round(drain, 2),
        "kept_up": bool(received == sent["sent_flows"] and drain <= 2.0),
        "engine": bundle.active_engine,
        "alerts": stats.alerts,
        "written": stats.written,
        "latency_p50_s": round(live[0], 3) if live else None,
        "latency_p99_s": round(live[1], 3) if live else None,
        "held_at_end": held_at_end,
        "max_held": stats.max_held_rows,
        "collector_cpu_s": round(cpu, 1),
        # the cores this process got: well under 2 when other work shares the machine
        "collector_cores": round(cpu / wall, 2) if wall > 0 else None,
        "flows_per_cpu_s": round(received / cpu) if cpu > 0 else None,
        "peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "generate":
        _, _, path, port, rate, clock = sys.argv
        print(json.dumps(generate(Path(path), int(port), float(rate), clock)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[25_000, 50_000, 75_000])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clock", nargs="+", choices=["replay", "realtime"], default=["replay", "realtime"])
    parser.add_argument("--all", action="store_true", help="write every scored flow, not only alerts")
    parser.add_argument("--budget", type=float, default=120.0, help="training time budget (s), first run")
    parser.add_argument("--batch-seconds", type=float, default=1.0, help="micro-batch length (s)")
    parser.add_argument(
        "--no-segments", action="store_true", help="the same model without segment features (no segment hold)"
    )
    args = parser.parse_args()

    from benchmarks.common import console, report

    bundle = (
        bundle_without_segments(console, args.budget)
        if args.no_segments
        else default_bundle(console, args.budget)
    )
    with console.status("preparing the exported day"):
        flows = exported_day()
    rows = []
    for clock in args.clock:
        for rate in args.rates:
            console.print(f"[bold]{clock}[/bold] at {rate:,.0f} flows/s for {args.seconds:g} s")
            row = measure(
                bundle,
                flows,
                rate=rate,
                seconds=args.seconds,
                clock=clock,
                all_flows=args.all,
                batch_seconds=args.batch_seconds,
            )
            console.print(row)
            rows.append(row)
    columns = [
        "clock",
        "segments",
        "batch_s",
        "records",
        "offered_flows_per_s",
        "received",
        "dropped_queue",
        "dropped_kernel",
        "late",
        "processed_flows_per_s",
        "drain_s",
        "kept_up",
        "latency_p50_s",
        "latency_p99_s",
        "max_held",
        "collector_cores",
        "flows_per_cpu_s",
    ]
    name = "stream" + (f"-{args.clock[0]}" if len(args.clock) == 1 else "") + ("-all" if args.all else "")
    name += "-no-segments" if args.no_segments else ""
    report(
        name,
        "nadkit stream: NetFlow v9 over loopback UDP, default autoencoder",
        columns,
        rows,
        seconds=args.seconds,
        batch_seconds=args.batch_seconds,
        load_average=os.getloadavg(),
    )


if __name__ == "__main__":
    main()
