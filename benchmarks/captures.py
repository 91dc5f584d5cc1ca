"""Captures to flows: nadkit's pcap reader against plain nfstream with the same settings, in one run.

Inputs: every shared capture (each file on its own), the spoofed SYN flood (one packet per flow,
the meter's worst case) and a large capture of at least ``--large-packets`` packets, written once for
the benchmark and cached under ``benchmarks/results/cache``: re-timed copies, one after another with a
gap longer than the meter's idle timeout between them, of every shared Ethernet capture except the SYN
flood (which is measured on its own); gaps over a minute inside a capture are shortened to a minute.

``cold`` (not run by default) times the first read of a small capture in a new process, imports
not counted: what a command pays once for the meters' start (nadkit's fork server, nfstream's fork).

Paths, each timed ``--runs`` times, interleaved (nadkit and its peer alternate, so a change in the
machine's load falls on both):

* ``nfstream``: ``NFStreamer(source=f, statistical_analysis=True, n_dissections=20).to_pandas()``
  per file, the settings nadkit meters with;
* ``nadkit``: ``nadkit.sources.load_flows(f)`` per file, what the commands call: checked capture,
  flows metered, mapped to the canonical table and validated;
* ``nadkit, one call``: ``load_flows`` given all the files at once (a folder of links to them),
  which meters them in parallel;
* with ``--variants``, on the large capture: nadkit without the statistical fields, and without nDPI
  (``n_dissections=0``; no ``app``), to show what each costs;
* ``softflowd``: ``softflowd -r f`` (Debian's C flow meter) exporting bidirectional IPFIX over
  loopback UDP to nadkit's NetFlow collector (:class:`nadkit.stream.netflow.FlowDecoder`), with
  nfstream's timeouts (idle 120 s, active 1800 s), until its last record is decoded into a table.
  Its ``flows`` column tells whether it made the same flows: reading a file, softflowd 1.1.0 applies
  no idle timeout (its expiry runs on the wall clock), so a capture longer than the timeouts comes
  out as one flow per 5-tuple, ended by ``maxlife`` at the end of the file. It is the same flows
  only for captures shorter than the idle timeout (the SYN flood), not for the large capture.
* ``argus -> ra -> nadkit``: what ``nadkit --meter argus`` runs: Argus (Debian's ``argus-server``;
  ``argus -r f``, a status record every 30 minutes, nfstream's active timeout) writing its records to
  a file, ``ra`` (``argus-client``) printing them as CSV (``-Z b``: a TCP flow's state as the flags
  each side sent), read by nadkit's ``argus`` reader. Argus makes its own flows (its idle timeouts,
  ARP and its status records), so its ``flows`` differ from nfstream's too.

Per row: packets, flows, the minimum and median wall time, packets/s and flows/s at the minimum,
``cpu_s`` (the least CPU time this process itself used in a run: what the reading adds beside the
meters, which run in processes of their own, and for plain nfstream its CSV round trip), the
ratio to plain nfstream on the same input (minimum to minimum and median to median; the target for
``nadkit`` is at most 1.05) and the 1-minute load average when the row started. Before each input
the benchmark waits up to ``--max-wait-s`` for the 1-minute load to fall below ``--quiet-load``.

Run: ``.venv/bin/python benchmarks/captures.py [--runs 3] [--inputs cold shared synflood large]
[--variants] [--no-softflowd] [--no-argus]``. Prints a table and writes ``benchmarks/results/captures.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import cache_dir, console, data_dir, peak_rss_mb, report
from nadkit.sources import load_flows
from nadkit.sources.argus_meter import CTU13_FIELDS, binetflow
from nadkit.sources.pcap import DEFAULT_DISSECTIONS, check_capture

SYN_FLOOD = "pcaps/attack/pkt.TCP.synflood.spoofed.pcap"
#: what nadkit meters with (nadkit.sources.pcap.read's defaults)
SETTINGS: dict[str, Any] = {"statistical_analysis": True, "n_dissections": DEFAULT_DISSECTIONS}
_PCAP_HEADER = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
_ETHERNET = 1
#: seconds between the copies of the large capture: longer than nfstream's idle timeout (120 s), so
#: no flow runs on from one copy into the next
_COPY_GAP_S = 600


def shared_captures() -> list[Path]:
    """Every capture under the shared data folder."""
    return sorted(p for p in data_dir().rglob("*") if p.is_file() and p.suffix in (".pcap", ".pcapng"))


def _records(path: Path) -> tuple[list[tuple[int, bytes]], int] | None:
    """The (time in microseconds, record data) of a little-endian microsecond pcap, and its link type;
    None for any other kind of capture."""
    data = path.read_bytes()
    if data[:4] != bytes.fromhex("d4c3b2a1"):
        return None
    *_, linktype = _PCAP_HEADER.unpack_from(data, 0)
    out: list[tuple[int, bytes]] = []
    offset = _PCAP_HEADER.size
    while offset + _RECORD.size <= len(data):
        seconds, micros, captured, _ = _RECORD.unpack_from(data, offset)
        body = data[offset + _RECORD.size : offset + _RECORD.size + captured]
        if len(body) < captured:
            break
        out.append((seconds * 1_000_000 + micros, body))
        offset += _RECORD.size + captured
    return out, linktype


#: idle gaps inside a capture longer than this are shortened to it when it is re-timed (one shared
#: capture holds sessions recorded years apart)
_MAX_GAP_US = 60 * 1_000_000


def write_retimed(out: BinaryIO, records: list[tuple[int, bytes]], clock: int) -> int:
    """Write ``records`` as pcap records starting at ``clock`` (microseconds), in their order, each
    gap kept but shortened to ``_MAX_GAP_US`` (and a step back in time to none); the last time."""
    previous = records[0][0]
    for stamp, body in records:
        clock += min(max(stamp - previous, 0), _MAX_GAP_US)
        previous = stamp
        out.write(_RECORD.pack(clock // 1_000_000, clock % 1_000_000, len(body), len(body)))
        out.write(body)
    return clock


def large_capture(min_packets: int) -> Path:
    """A pcap of at least ``min_packets`` packets (cached): copies of the shared Ethernet captures but
    the SYN flood, one after another, re-timed so that each copy starts ``_COPY_GAP_S`` after the last."""
    path = cache_dir() / f"captures-large-{min_packets}.pcap"
    if path.exists():
        return path
    flood = (data_dir() / SYN_FLOOD).resolve()
    sources: list[list[tuple[int, bytes]]] = []
    for capture in shared_captures():
        read = _records(capture) if capture.resolve() != flood else None
        if read is not None and read[1] == _ETHERNET and read[0]:
            sources.append(read[0])
    per_copy = sum(len(records) for records in sources)
    if per_copy == 0:
        raise RuntimeError("no shared Ethernet captures to build the large capture from")
    copies = -(-min_packets // per_copy)
    console.print(f"writing {path.name}: {copies} copies of {len(sources)} captures ({per_copy:,} packets)")
    partial = path.with_suffix(".partial")
    clock = 1_609_718_400 * 1_000_000  # 2021-01-04 00:00 UTC, in microseconds
    with partial.open("wb") as out:
        out.write(_PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 262_144, _ETHERNET))
        for _ in range(copies):
            for records in sources:
                clock = write_retimed(out, records, clock) + _COPY_GAP_S * 1_000_000
    partial.replace(path)
    return path


def plain_nfstream(files: Sequence[Path], **settings: Any) -> int:
    """Flows of ``files`` metered by plain nfstream, one file after another."""
    from nfstream import NFStreamer

    flows = 0
    # to_pandas writes a temporary CSV file in the working directory: keep it out of the checkout
    with tempfile.TemporaryDirectory(prefix="nfstream-") as scratch, contextlib.chdir(scratch):
        for file in files:
            frame = NFStreamer(source=str(Path(file).resolve()), **(SETTINGS | settings)).to_pandas()
            flows += 0 if frame is None else len(frame)
    return flows


def nadkit_each(files: Sequence[Path], **options: Any) -> int:
    """Flows of ``files`` read by nadkit (``load_flows``), one file after another."""
    return sum(load_flows(file, format="pcap", **options)[0].height for file in files)


def nadkit_together(files: Sequence[Path], **options: Any) -> int:
    """Flows of ``files`` read by nadkit in one call (a folder of links to them: a glob over them)."""
    with tempfile.TemporaryDirectory(prefix="nadkit-bench-") as folder:
        for index, file in enumerate(files):
            (Path(folder) / f"{index:03d}-{file.name}").symlink_to(file.resolve())
        return load_flows(folder, format="pcap", **options)[0].height


_EXPORTED = re.compile(r"Flows exported: \d+ \((\d+) records\)")


def softflowd_flows(files: Sequence[Path]) -> int:
    """Flows of ``files`` as softflowd meters them and nadkit's collector decodes its IPFIX export."""
    return sum(softflowd_table(file).height for file in files)


def softflowd_table(file: Path) -> pl.DataFrame:
    """The flows of ``file`` as softflowd meters them (nfstream's timeouts) and nadkit's collector
    decodes its IPFIX export: the canonical table of live NetFlow detection."""
    from nadkit.stream.netflow import FlowDecoder

    binary = shutil.which("softflowd")
    if binary is None:
        raise RuntimeError("softflowd is not installed")
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:  # a deep socket buffer, so the burst of an offline export is not dropped
        receiver.setsockopt(socket.SOL_SOCKET, 33, 256 << 20)  # SO_RCVBUFFORCE (needs root)
    except OSError:
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 20)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(0.2)
    decoder = FlowDecoder(max_flow_age_s=10**9, max_clock_skew_s=10**9)
    # softflowd 1.1.0 waits forever on a control socket path longer than 12 characters
    control = f"/tmp/{secrets.token_hex(3)}"
    timeouts = ["-t", "tcp=120", "-t", "udp=120", "-t", "icmp=120", "-t", "general=120"]
    command = [binary, "-r", str(file), "-n", f"127.0.0.1:{receiver.getsockname()[1]}", "-v", "10"]
    command += ["-b", "-a", "-d", "-m", "2000000", *timeouts, "-t", "maxlife=1800"]
    command += ["-p", f"{control}.pid", "-c", control]
    with receiver, tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            while True:
                try:
                    data, exporter = receiver.recvfrom(65535)
                except TimeoutError:
                    if process.poll() is not None:
                        break
                    continue
                decoder.feed(data, exporter, time.time())
        finally:
            process.wait(timeout=600)
            Path(control).unlink(missing_ok=True)
            Path(f"{control}.pid").unlink(missing_ok=True)
        log.seek(0)
        text = log.read().decode(errors="replace")
    table = decoder.take()
    found = _EXPORTED.search(text)
    if found and int(found.group(1)) != table.height:
        sent = int(found.group(1))
        console.print(f"[yellow]{file.name}: softflowd sent {sent:,} records, {table.height:,} decoded")
    return table


#: a status record an hour, as the Stratosphere captures' Argus flows are made
ARGUS_STATUS_S = 3600


def argus_flows(files: Sequence[Path]) -> int:
    """Flows of ``files`` as ``nadkit --meter argus`` reads them: Argus, ``ra``, the argus reader."""
    return sum(load_flows(file, format="pcap", meter="argus")[0].height for file in files)


def argus_table(file: Path) -> pl.DataFrame:
    """The flows of ``file`` as Argus meters them with one status record an hour, printed by ``ra`` in
    CTU-13's binetflow columns (``StartTime`` as ``2011/08/10 09:46:53.047277``, UTC; a TCP flow's
    ``State`` as the flags each side sent, ``SPA_FSPA``, as ``ra -Z b`` prints it; no packets by
    direction) and read back by nadkit's ``argus`` reader: the canonical table a user with the
    Stratosphere captures' Argus flows has."""
    with tempfile.TemporaryDirectory(prefix="nadkit-argus-") as folder:
        table = Path(folder) / "flows.binetflow"
        binetflow(file, table, status_s=ARGUS_STATUS_S, fields=CTU13_FIELDS)
        return load_flows(table, format="argus")[0]


_COLD = {
    "nfstream": "from nfstream import NFStreamer\n"
    "started = time.perf_counter()\n"
    "frame = NFStreamer(source=FILE, statistical_analysis=True, n_dissections=20).to_pandas()\n"
    "flows = 0 if frame is None else len(frame)\n",
    "nadkit": "from nadkit.sources import load_flows\n"
    "started = time.perf_counter()\n"
    "flows = load_flows(FILE, format='pcap')[0].height\n",
}


def cold_read(path: str, file: Path) -> tuple[float, int]:
    """Seconds and flows of the first read of ``file`` in a new process (its imports not counted):
    what a command pays for the first capture it reads, the meters' start included."""
    where = str(file.resolve())
    script = f"import time\nFILE = {where!r}\n{_COLD[path]}print(time.perf_counter() - started, flows)\n"
    with tempfile.TemporaryDirectory(prefix="nfstream-") as scratch:  # where to_pandas writes its CSV
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=scratch
        )
    seconds, flows = done.stdout.split()[-2:]
    return float(seconds), int(flows)


def measure_cold(file: Path, runs: int) -> list[dict[str, Any]]:
    """The first capture read in a new process, nadkit and plain nfstream alternating."""
    times: dict[str, list[float]] = {"nfstream": [], "nadkit": []}
    flows: dict[str, int] = {}
    loads = []
    for run in range(runs):
        loads.append(round(os.getloadavg()[0], 2))
        for label in list(times)[run % 2 :] + list(times)[: run % 2]:
            seconds, flows[label] = cold_read(label, file)
            times[label].append(seconds)
            console.print(f"  cold / {label}: {seconds:.2f} s")
    packets = check_capture(file)[1]
    peer = times["nfstream"]
    return [
        {
            "input": f"cold: {file.name}, first read in a new process",
            "path": label,
            "files": 1,
            "packets": packets,
            "flows": flows[label],
            "min_s": round(min(spent), 3),
            "median_s": round(statistics.median(spent), 3),
            "packets_per_s": packets / min(spent),
            "flows_per_s": flows[label] / min(spent),
            "ratio_min": round(min(spent) / min(peer), 3),
            "ratio_median": round(statistics.median(spent) / statistics.median(peer), 3),
            "load_1m": f"{min(loads):.2f}-{max(loads):.2f}",
            "times_s": [round(t, 3) for t in spent],
        }
        for label, spent in times.items()
    ]


def wait_quiet(quiet: float, max_wait_s: float) -> float:
    """Wait (at most ``max_wait_s``) for the 1-minute load to fall below ``quiet``; the load then."""
    deadline = time.monotonic() + max_wait_s
    while os.getloadavg()[0] >= quiet and time.monotonic() < deadline:
        time.sleep(5)
    return round(os.getloadavg()[0], 2)


def measure(
    name: str, files: Sequence[Path], paths: dict[str, Callable[[Sequence[Path]], int]], runs: int
) -> list[dict[str, Any]]:
    """Time every path over ``files`` ``runs`` times, the paths interleaved and their order rotated."""
    packets = sum(check_capture(file)[1] for file in files)
    times: dict[str, list[float]] = {label: [] for label in paths}
    cpu: dict[str, list[float]] = {label: [] for label in paths}
    flows: dict[str, int] = {}
    loads: list[float] = []
    labels = list(paths)
    for run in range(runs):
        loads.append(round(os.getloadavg()[0], 2))
        order = labels[run % len(labels) :] + labels[: run % len(labels)]
        for label in order:
            started, used = time.perf_counter(), time.process_time()
            flows[label] = paths[label](files)
            times[label].append(time.perf_counter() - started)
            cpu[label].append(time.process_time() - used)
            console.print(f"  {name} / {label}: {times[label][-1]:.2f} s, {flows[label]:,} flows")
    rows = []
    peer = times.get("nfstream")
    for label in labels:
        low, middle = min(times[label]), statistics.median(times[label])
        rows.append(
            {
                "input": name,
                "path": label,
                "files": len(files),
                "packets": packets,
                "flows": flows[label],
                "min_s": round(low, 3),
                "median_s": round(middle, 3),
                "packets_per_s": packets / low,
                "flows_per_s": flows[label] / low,
                "cpu_s": round(min(cpu[label]), 3),
                "ratio_min": round(low / min(peer), 3) if peer else None,
                "ratio_median": round(middle / statistics.median(peer), 3) if peer else None,
                "load_1m": f"{min(loads):.2f}-{max(loads):.2f}",
                "times_s": [round(t, 3) for t in times[label]],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--inputs", nargs="+", default=["shared", "synflood", "large"])
    parser.add_argument("--large-packets", type=int, default=1_000_000)
    parser.add_argument("--variants", action="store_true", help="nadkit without statistics / nDPI too")
    parser.add_argument("--no-softflowd", action="store_true")
    parser.add_argument("--no-argus", action="store_true")
    parser.add_argument("--quiet-load", type=float, default=2.5)
    parser.add_argument("--max-wait-s", type=float, default=60.0)
    parser.add_argument("--name", default="captures")
    args = parser.parse_args()
    shared = shared_captures()
    if not shared:
        console.print("[yellow]no shared captures (set NADKIT_DATA_DIR); nothing to measure")
        return
    started_load = [round(v, 2) for v in os.getloadavg()]
    rows: list[dict[str, Any]] = []
    for name in args.inputs:
        if name == "cold":
            wait_quiet(args.quiet_load, args.max_wait_s)
            rows.extend(measure_cold(data_dir() / "pcaps" / "benign" / "ssh.pcap", args.runs))
            continue
        files = {
            "shared": shared,
            "synflood": [data_dir() / SYN_FLOOD],
            "large": [large_capture(args.large_packets)] if name == "large" else [],
        }[name]
        paths: dict[str, Callable[[Sequence[Path]], int]] = {
            "nfstream": plain_nfstream,
            "nadkit": nadkit_each,
        }
        if len(files) > 1:
            paths["nadkit, one call"] = nadkit_together
        if name == "large" and args.variants:
            paths["nadkit, no statistics"] = lambda f: nadkit_each(f, statistical_analysis=False)
            paths["nadkit, no nDPI"] = lambda f: nadkit_each(f, n_dissections=0)
        if not args.no_softflowd and shutil.which("softflowd") and name != "shared":
            paths["softflowd -> collector"] = softflowd_flows
        if not args.no_argus and shutil.which("argus") and shutil.which("ra") and name != "shared":
            paths["argus -> ra -> nadkit"] = argus_flows
        load = wait_quiet(args.quiet_load, args.max_wait_s)
        console.print(f"{name}: {len(files)} file(s), load {load}")
        rows.extend(measure(name, files, paths, args.runs))
    columns = ["input", "path", "packets", "flows", "min_s", "median_s", "packets_per_s", "flows_per_s"]
    report(
        args.name,
        f"Captures to flows, min and median of {args.runs} interleaved runs",
        [*columns, "cpu_s", "ratio_min", "ratio_median", "load_1m"],
        rows,
        runs=args.runs,
        settings=SETTINGS,
        load_at_start=started_load,
        peak_rss_mb=peak_rss_mb(),
    )


if __name__ == "__main__":
    main()
