"""`nadkit stream` for real: softflowd (Debian) reads a capture and exports NetFlow v9 / IPFIX over
loopback to the collector, alerts come out of the sink and match the capture's flows; a stream killed
outright and restarted with its checkpoint writes every record exactly once."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from nadkit.models import REGISTRY
from nadkit.stream.netflow import RECEIVED, FlowDecoder
from nadkit.training.fit import train_model
from tests.conftest import shared_file

SOFTFLOWD = shutil.which("softflowd")
needs_softflowd = pytest.mark.skipif(
    SOFTFLOWD is None, reason="softflowd is not installed (Debian package; `make system-packages`)"
)
BENIGN = ("googledns_android10.pcap", "signal.pcap", "telegram.pcap", "waze.pcap")
ATTACK = "pcaps/attack/nmap_nmap_80_w_service_detection.pcap"
STATUS = re.compile(r"stream ([\d,]+) flows")


def softflowd(capture: Path, port: int, version: int, folder: Path, *, biflows: bool = False) -> int:
    """Export ``capture`` to 127.0.0.1:``port``; the number of flow records softflowd says it sent.
    ``-a`` takes the flow times from the capture (not the wall clock); ``biflows``: ``-b``, both
    directions of a flow in one IPFIX record."""
    assert SOFTFLOWD is not None
    # softflowd 1.1.0 waits forever on its control socket when that path is longer than 12 characters
    control = f"/tmp/{secrets.token_hex(4)[:7]}"
    command = [SOFTFLOWD, "-r", str(capture), "-n", f"127.0.0.1:{port}", "-v", str(version), "-a", "-d"]
    command += ["-b"] if biflows else []
    command += ["-p", str(folder / "softflowd.pid"), "-c", control]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    finally:
        Path(control).unlink(missing_ok=True)
    found = re.search(r"Flows exported: \d+ \((\d+) records\)", result.stdout + result.stderr)
    assert found, result.stdout + result.stderr
    return int(found.group(1))


def collected(capture: Path, version: int, folder: Path, *, biflows: bool = False) -> pl.DataFrame:
    """The flows of ``capture`` as the collector decodes softflowd's export of it."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(1.0)
    records = softflowd(capture, receiver.getsockname()[1], version, folder, biflows=biflows)
    decoder = FlowDecoder()
    with receiver:
        while decoder.stats.flows < records:
            data, exporter = receiver.recvfrom(65535)
            decoder.feed(data, exporter, time.time())
    return decoder.take().drop(RECEIVED)


@pytest.fixture(scope="module")
def netflow_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An autoencoder trained on what the collector makes of softflowd's export of benign captures."""
    if SOFTFLOWD is None:
        pytest.skip("softflowd is not installed (Debian package; `make system-packages`)")
    folder = tmp_path_factory.mktemp("netflow-bundle")
    frames = [collected(shared_file(f"pcaps/benign/{name}"), 9, folder) for name in BENIGN]
    flows = pl.concat(frames)
    assert flows.height > 100
    flows.write_parquet(folder / "train.parquet")
    config = REGISTRY["ae"].test_config().to_dict()
    train_model(folder / "train.parquet", folder / "bundle", model="ae", config=config)
    return folder / "bundle"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Stream:
    """`nadkit stream` in a subprocess, its stderr collected line by line."""

    def __init__(self, *args: str | Path) -> None:
        env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
        command = [sys.executable, "-m", "nadkit", "stream", *map(str, args), "--status-seconds", "0.2"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, condition: Callable[[], bool], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                time.sleep(0.2)
                raise AssertionError(f"nadkit stream ended early:\n{self.text}")
            if time.monotonic() > deadline:
                self.process.kill()
                raise AssertionError(f"timed out; stderr so far:\n{self.text}")
            time.sleep(0.05)

    def flows(self) -> int:
        counts = [int(m.group(1).replace(",", "")) for m in STATUS.finditer(self.text)]
        return max(counts, default=0)

    def finish(self, signum: int, timeout: float = 120.0) -> int:
        self.process.send_signal(signum)
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code


def final_counters(stream: Stream) -> dict[str, object]:
    """The counters `--json` prints at the end: on stdout, since the records go to a file."""
    assert stream.process.stdout is not None
    return json.loads(stream.process.stdout.read())


@needs_softflowd
@pytest.mark.parametrize(("version", "signum"), [(9, signal.SIGINT), (10, signal.SIGTERM)])
def test_softflowd_export_becomes_alerts_matching_the_capture(
    netflow_bundle: Path, tmp_path: Path, version: int, signum: int
) -> None:
    from nadkit.sources import load_flows

    capture = shared_file(ATTACK)
    port = free_udp_port()
    out = tmp_path / "alerts.jsonl"
    stream = Stream(
        "--bundle", netflow_bundle, "--source", f"netflow://127.0.0.1:{port}", "--sink", f"file:{out}",
        "--threshold", "0", "--lateness-s", "1000000", "--batch-seconds", "0.2", "--json",
    )  # fmt: skip
    stream.wait_for(lambda: "streaming netflow://" in stream.text)
    exported = softflowd(capture, port, version, tmp_path)
    stream.wait_for(lambda: stream.flows() >= exported)
    # everything is held (the lateness is huge): the signal makes the stream flush it
    assert stream.finish(signum) == 0, stream.text
    counters = final_counters(stream)
    assert counters["flows_in"] == counters["flows_scored"] == counters["written"] == exported
    assert counters["queue_dropped"] == counters["late_dropped"] == 0
    alerts = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(alerts) == exported > 10
    # every alert is a flow of the capture (softflowd exports each direction as its own record)
    flows, _ = load_flows(capture)
    pairs = set(flows.select("src", "dst", "proto").iter_rows())
    ports = set(flows.select("src", "spt", "dst", "dpt").iter_rows())
    first, last = flows["time"].min(), flows["time"].max()
    for alert in alerts:
        assert alert["alert"] and alert["score"] >= alert["threshold"] == 0
        key = (alert["src"], alert["dst"], alert["proto"])
        assert key in pairs or (key[1], key[0], key[2]) in pairs, alert
        if alert["proto"] in ("tcp", "udp"):
            quad = (alert["src"], alert["spt"], alert["dst"], alert["dpt"])
            assert quad in ports or (quad[2], quad[3], quad[0], quad[1]) in ports, alert
        seen = pl.Series([alert["time"]]).str.to_datetime(time_zone="UTC").dt.cast_time_unit("us")[0]
        # NetFlow v9 headers carry whole seconds, IPFIX milliseconds
        assert first.timestamp() - 1 <= seen.timestamp() <= last.timestamp() + 1, alert  # type: ignore[union-attr]
        assert alert["top_features"] and alert["received"]


@needs_softflowd
def test_softflowd_biflows_name_the_side_that_opened_the_flow(tmp_path: Path) -> None:
    """softflowd's bidirectional export puts a flow's lower address first; the collector turns each
    such record round, so its ``src`` is the side that sent the SYN, as nfstream meters the same
    capture (here most servers have the lower address)."""
    from ipaddress import ip_address

    from nadkit.sources import load_flows

    capture = shared_file("pcaps/benign/android.pcap")
    flows = collected(capture, 10, tmp_path, biflows=True)
    metered, _ = load_flows(capture)
    # TCP connections nfstream saw open: the side that sent the first SYN is its src
    opened = metered.filter((pl.col("proto") == "tcp") & (pl.col("src2dst_syn_packets") > 0))
    initiator = {
        frozenset([(r["src"], r["spt"]), (r["dst"], r["dpt"])]): (r["src"], r["spt"])
        for r in opened.iter_rows(named=True)
    }
    checked = server_lower = answered = 0
    for row in flows.filter(pl.col("proto") == "tcp").iter_rows(named=True):
        key = frozenset([(row["src"], row["spt"]), (row["dst"], row["dpt"])])
        if key not in initiator:
            continue
        checked += 1
        assert (row["src"], row["spt"]) == initiator[key], row
        server_lower += ip_address(row["dst"]) < ip_address(row["src"])
        # the flags of both sides' packets: an answered handshake carries SYN and ACK
        assert "S" in row["tcp_flags"], row
        answered += row["in_pkts"] > 0 and "A" in row["tcp_flags"]
    assert checked >= 20 and answered >= 10
    # softflowd had named the server first for these: the check would fail without the turning
    assert server_lower >= 10


@needs_softflowd
def test_crafted_datagrams_do_not_stop_the_collector(netflow_bundle: Path, tmp_path: Path) -> None:
    from tests.fuzz.netflow import mutated_packets
    from tests.stream.packets import V4_FIELDS, flowset, template_record, v4_record, v9_packet

    port = free_udp_port()
    out = tmp_path / "alerts.jsonl"
    stream = Stream(
        "--bundle", netflow_bundle, "--source", f"netflow://127.0.0.1:{port}", "--sink", f"file:{out}",
        "--threshold", "0", "--lateness-s", "1000000", "--batch-seconds", "0.2", "--json",
    )  # fmt: skip
    stream.wait_for(lambda: "streaming netflow://" in stream.text)
    # a template whose IPv4 source address is 0 bytes long, then a data set: this used to end the process
    fields = ((8, 0), *V4_FIELDS[1:])
    flow = ("10.0.0.1", "10.0.0.2", 1, 2, 17, 0, 100, 1, 1000, 2000)
    crafted = v9_packet(
        [flowset(0, template_record(256, fields)), flowset(256, v4_record(flow)[4:])],
        uptime=5000,
        secs=1,
        sequence=1,
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(crafted, ("127.0.0.1", port))
        garbage = [packet for packet, genuine in mutated_packets("ipfix", 200, seed=3) if not genuine]
        for packet in garbage:
            sender.sendto(packet, ("127.0.0.1", port))
    stream.wait_for(lambda: "rejected (bad_template)" in stream.text)
    exported = softflowd(shared_file(ATTACK), port, 9, tmp_path)
    stream.wait_for(lambda: stream.flows() >= exported)
    assert stream.finish(signal.SIGTERM) == 0, stream.text
    counters = final_counters(stream)
    source = counters["source_stats"]
    assert isinstance(source, dict)
    assert source["packets_received"] == source["packets_decoded"] > 1 + len(garbage)
    assert source["rejected_bad_template"] >= 2
    # the garbage (one mutated IPFIX exporter on the same address) never becomes more flows than its
    # genuine packets hold; softflowd's flows all come through
    assert counters["written"] >= exported
    assert stream.text.count("rejected (bad_template)") == 1  # logged once a minute, not per datagram


@pytest.mark.slow
@needs_softflowd
def test_killed_stream_restarts_from_its_checkpoint_without_duplicates(
    netflow_bundle: Path, tmp_path: Path
) -> None:
    from tests.stream.conftest import simulated_day

    columns = ["time", "src", "dst", "spt", "dpt", "proto", "duration", "out_bytes", "in_bytes"]
    frame = simulated_day(0, flows=2000).select(columns).head(1600)
    lines = [
        json.dumps(row) for row in frame.with_columns(pl.col("time").cast(pl.String)).iter_rows(named=True)
    ]
    followed = tmp_path / "flows.jsonl"
    followed.write_text("\n".join(lines[:800]) + "\n")
    checkpoint = tmp_path / "stream.checkpoint"

    def start(out: Path) -> Stream:
        return Stream(
            "--bundle", netflow_bundle, "--source", f"follow:{followed}", "--sink", f"file:{out}", "--all",
            "--checkpoint", checkpoint, "--lateness-s", "0", "--batch-seconds", "0.2",
        )  # fmt: skip

    def settled(out: Path, flows: int, stream: Stream) -> Callable[[], bool]:
        sizes: list[int] = []

        def check() -> bool:
            sizes.append(out.stat().st_size if out.exists() else -1)
            return stream.flows() >= flows and len(sizes) > 20 and len(set(sizes[-20:])) == 1

        return check

    first_out = tmp_path / "first.jsonl"
    first = start(first_out)
    first.wait_for(settled(first_out, 800, first))
    first.process.kill()  # no flush, no final checkpoint
    first.process.wait(timeout=30)
    with followed.open("a") as handle:
        handle.write("\n".join(lines[800:]) + "\n")
    second_out = tmp_path / "second.jsonl"
    second = start(second_out)
    second.wait_for(settled(second_out, 1600, second))
    assert second.finish(signal.SIGTERM) == 0, second.text
    rows_first = [json.loads(line)["row"] for line in first_out.read_text().splitlines()]
    rows_second = [json.loads(line)["row"] for line in second_out.read_text().splitlines()]
    assert 0 < len(rows_first) < 800  # flows of open segments were held when it was killed
    assert len(set(rows_first)) == len(rows_first) and len(set(rows_second)) == len(rows_second)
    assert not set(rows_first) & set(rows_second)
    assert set(rows_first) | set(rows_second) == set(range(1, 1601))
    assert "duplicates not written again" in second.text
