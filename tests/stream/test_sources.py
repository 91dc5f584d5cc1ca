"""Stream sources for real: the UDP collector on loopback, a followed file that grows and is truncated,
standard input (CSV, Zeek TSV, JSON lines), a capture file, the bounded hand-off, source texts."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from nadkit.errors import ConfigError, NadkitError
from nadkit.stream import StreamConfig, StreamRunner, StreamStats
from nadkit.stream.sources import (
    END,
    FollowSource,
    Handoff,
    LineParser,
    NetflowSource,
    StdinSource,
    StreamSource,
    open_source,
)
from nadkit.training.bundle import ModelBundle
from tests.conftest import shared_file
from tests.sources.test_nad import HEADER, ROWS
from tests.sources.test_zeek import FIELDS, TYPES
from tests.sources.test_zeek import ROWS as ZEEK_ROWS
from tests.sources.test_zeek import _tsv as zeek_tsv
from tests.stream.conftest import MemorySink
from tests.stream.packets import (
    FLOWS,
    SECS,
    UPTIME,
    V4_FIELDS,
    flowset,
    template_record,
    v4_record,
    v9_packet,
)


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


class Background:
    """A runner in a thread, stopped gracefully at the end of the ``with`` block."""

    def __init__(self, bundle: ModelBundle, source: StreamSource, **options: object) -> None:
        self.sink = MemorySink()
        config = StreamConfig(**{"batch_seconds": 0.1, "all_flows": True, "status_seconds": 60, **options})  # type: ignore[arg-type]
        self.runner = StreamRunner(bundle, source, [self.sink], config)
        self.result: StreamStats | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.result = self.runner.run()

    def __enter__(self) -> Background:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.runner.stop()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive()


def test_handoff_drops_when_full_and_stops_waiting_when_asked() -> None:
    handoff = Handoff(2)
    assert handoff.offer(1) and handoff.offer(2)
    assert not handoff.offer(3)
    assert handoff.dropped == 1
    stop = threading.Event()
    stop.set()
    assert not handoff.put(4, stop)  # full and stopped: gives up instead of blocking
    assert handoff.get(0) == 1 and handoff.get(0) == 2 and handoff.get(0) is None
    handoff.end()
    assert handoff.get(1.0) is END


def test_udp_collector_on_loopback(bundle: ModelBundle) -> None:
    source = NetflowSource("127.0.0.1", 0)
    port = source.address[1]
    template = flowset(0, template_record(256, V4_FIELDS))
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with Background(bundle, source, lateness_s=0.0) as background:
        for sequence in range(1, 21):
            data = flowset(256, b"".join(v4_record(f) for f in FLOWS))
            packet = v9_packet(
                [template, data], uptime=UPTIME + sequence, secs=SECS + sequence, sequence=sequence
            )
            sender.sendto(packet, ("127.0.0.1", port))
        wait_for(lambda: background.runner.stats.flows_in == 60)
    sender.close()
    stats = background.result
    assert stats is not None and stats.flows_scored == 60 and stats.written == 60
    assert stats.source_stats["packets_received"] == 20
    assert stats.source_stats["sequence_lost"] == 0
    records = background.sink.frame()
    assert set(records["src"].to_list()) == {"10.0.0.1", "10.0.0.2", "10.0.0.3"}
    assert records["received"].null_count() == 0
    assert stats.latency_p99_s is not None and stats.latency_p99_s < 60


def _json_lines(frame: pl.DataFrame) -> list[str]:
    text = frame.with_columns(pl.col("time").dt.to_string("%Y-%m-%dT%H:%M:%S%.6fZ"))
    return [json.dumps(row) for row in text.iter_rows(named=True)]


def test_followed_file_grows_is_cut_mid_line_and_truncated(
    bundle: ModelBundle, test_day: tuple[pl.DataFrame, Path], tmp_path: Path
) -> None:
    frame = test_day[0].head(400)
    lines = _json_lines(frame)
    path = tmp_path / "flows.jsonl"
    source = FollowSource(path, poll_s=0.05)
    with Background(bundle, source, lateness_s=0.0) as background:
        time.sleep(0.3)  # the file does not exist yet: the source waits for it
        text = "\n".join(lines[:150]) + "\n" + lines[150][:20]  # the last line is not complete yet
        path.write_text(text)
        wait_for(lambda: background.runner.stats.flows_in == 150)
        with path.open("a") as handle:
            handle.write(lines[150][20:] + "\n" + "\n".join(lines[151:]) + "\n")
        wait_for(lambda: background.runner.stats.flows_in == 400)
        path.write_text("\n".join(lines[:10]) + "\n")  # truncated and rewritten: read again
        wait_for(lambda: background.runner.stats.flows_in == 410)
    stats = background.result
    assert stats is not None and stats.source_stats["reopened"] == 1
    assert stats.source_stats["bad_lines"] == 0
    records = background.sink.frame().sort("row")
    assert records["src"].head(400).to_list() == frame["src"].to_list()


def test_stdin_csv_with_header(bundle: ModelBundle) -> None:
    text = "\n".join([HEADER, *ROWS]) + "\n"
    source = StdinSource(io.BytesIO(text.encode()))
    sink = MemorySink()
    stats = StreamRunner(bundle, source, [sink], StreamConfig(all_flows=True, lateness_s=1e9)).run()
    assert stats.flows_scored == len(ROWS)
    records = sink.frame().sort("row")
    assert records["dst"].to_list() == ["10.0.0.255", "8.8.8.8", "10.1.2.77", "ff02::fb"]
    assert records["label"].to_list() == ["DDOS-smurf", "normal", "Probing-IP sweep", "normal"]


def test_line_parser_reads_zeek_tsv_and_skips_bad_lines() -> None:
    parser = LineParser("test")
    lines = zeek_tsv(FIELDS, TYPES, ZEEK_ROWS).encode().splitlines(keepends=True)
    broken = ZEEK_ROWS[0].replace(" ", "\t").replace("36844", "not-a-port").encode() + b"\n"
    assert parser.feed([*lines[:-1], broken, lines[-1]]) == len(ZEEK_ROWS) + 1
    frame = parser.take()
    parser.close()
    assert frame.height == len(ZEEK_ROWS)
    assert parser.bad_lines == 1
    assert frame["src"].to_list()[:2] == ["192.168.4.76", "192.168.4.76"]


def test_line_parser_reads_canonical_json_lines(test_day: tuple[pl.DataFrame, Path]) -> None:
    frame = test_day[0].head(20)
    parser = LineParser("json")
    parser.feed([line.encode() for line in _json_lines(frame)])
    read = parser.take()
    parser.close()
    assert read["time"].to_list() == frame["time"].to_list()
    assert read["src"].to_list() == frame["src"].to_list()
    assert read["out_bytes"].to_list() == frame["out_bytes"].to_list()
    assert read.schema["dpt"] == pl.Int64


def test_capture_file_through_nfstream(bundle: ModelBundle) -> None:
    from nadkit.sources import load_flows

    path = shared_file("pcaps/attack/icmp-portscan.pcap")
    expected, _ = load_flows(path)
    source = open_source(f"pcap:{path}")
    assert source.default_lateness_s == 120 + 1800
    sink = MemorySink()
    stats = StreamRunner(bundle, source, [sink], StreamConfig(all_flows=True)).run()
    assert stats.flows_scored == expected.height > 0
    records = sink.frame()
    assert sorted(records["src"].to_list()) == sorted(expected["src"].to_list())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kafka://broker", "unknown stream source"),
        ("netflow:2055", "netflow://HOST:PORT"),
        ("netflow://127.0.0.1:99999", "bad port"),
        ("follow:", "name the file"),
        ("pcap:/no/such.pcap", "no such capture file"),
        ("iface:eth0?burst=1", "unknown option"),
    ],
)
def test_bad_source_texts(text: str, message: str) -> None:
    with pytest.raises(NadkitError, match=message):
        open_source(text)


def test_port_in_use_is_a_clear_error() -> None:
    first = NetflowSource("127.0.0.1", 0)
    try:
        with pytest.raises(ConfigError, match="cannot listen on UDP"):
            NetflowSource("127.0.0.1", first.address[1])
    finally:
        first.close()


def test_stdin_reads_the_canonical_table_and_a_mapped_csv(bundle: ModelBundle) -> None:
    """The canonical CSV nadkit documents, and a CSV of other names through --map, stream as they
    are; what cannot be read is named by the user's source, never by a temporary file."""
    frame = pl.read_csv(io.StringIO("\n".join([HEADER, *ROWS]) + "\n"))
    canonical = pl.DataFrame(
        {
            "time": [f"2021-02-01T00:00:0{i}Z" for i in range(len(ROWS))],
            "src": frame["src"],
            "dst": frame["dst"],
            "proto": ["tcp"] * len(ROWS),
            "app_category": ["Web"] * len(ROWS),
        }
    )
    body = io.BytesIO()
    canonical.write_csv(body)
    sink = MemorySink()
    config = StreamConfig(all_flows=True, lateness_s=1e9)
    stats = StreamRunner(bundle, StdinSource(io.BytesIO(body.getvalue())), [sink], config).run()
    assert stats.flows_scored == len(ROWS)
    assert sink.frame()["src"].to_list() == frame["src"].to_list()

    renamed = canonical.rename({"time": "When", "src": "From", "dst": "To"})
    body = io.BytesIO()
    renamed.write_csv(body)
    source = StdinSource(io.BytesIO(body.getvalue()), mapping="time=When,src=From,dst=To")
    sink = MemorySink()
    assert StreamRunner(bundle, source, [sink], config).run().flows_scored == len(ROWS)

    parser = LineParser("follow:flows.csv")
    parser.feed([b"StartTime,SrcAddr,DstAddr\n", b"1,2,3\n"])
    with pytest.raises(NadkitError, match=r"follow:flows\.csv: unrecognised flow format") as caught:
        parser._parse(parser._lines)
    assert "nadkit-stream" not in str(caught.value)
    parser.close()
