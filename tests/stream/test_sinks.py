"""Stream sinks against real local receivers: JSON lines, the SQLite store, syslog over UDP and TCP,
a webhook that fails before it accepts, and sink texts."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import polars as pl
import pytest

from nadkit.alerts.records import TOP_FEATURE
from nadkit.errors import ConfigError
from nadkit.stream.sinks import JsonLinesSink, SqliteSink, SyslogSink, WebhookSink, open_sink


def records(count: int = 3, *, start: int = 1) -> pl.DataFrame:
    times = [datetime(2024, 5, 1, 12, 0, second, tzinfo=UTC) for second in range(start, start + count)]
    top = [[{"feature": "seg_flows", "contribution": 3.5, "value": "12"}]] * count
    return pl.DataFrame(
        {
            "row": list(range(start, start + count)),
            "time": pl.Series(times, dtype=pl.Datetime("us", "UTC")),
            "src": ["10.0.0.1"] * count,
            "dst": [f"10.0.1.{i}" for i in range(start, start + count)],
            "spt": [40000] * count,
            "dpt": [22] * count,
            "proto": ["tcp"] * count,
            "score": [9.5 + i for i in range(count)],
            "threshold": [5.0] * count,
            "alert": [True] * count,
            "class": [None] * count,
            "top_features": pl.Series(top, dtype=pl.List(TOP_FEATURE)),
            "received": pl.Series([datetime.now(UTC)] * count, dtype=pl.Datetime("us", "UTC")),
        },
        schema_overrides={"class": pl.String},
    )


def test_json_lines_file_is_appended(tmp_path: Path) -> None:
    path = tmp_path / "out" / "alerts.jsonl"
    for start in (1, 4):
        sink = open_sink(f"file:{path}")
        sink.write(records(start=start))
        sink.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["row"] for r in lines] == [1, 2, 3, 4, 5, 6]
    assert lines[0]["time"] == "2024-05-01T12:00:01.000000Z"
    assert lines[0]["top_features"][0]["feature"] == "seg_flows"
    assert isinstance(sink, JsonLinesSink) and sink.stats()["written"] == 3


@pytest.mark.parametrize("keep", [1, 37, -1])
def test_a_line_cut_by_a_kill_is_removed_before_appending(
    tmp_path: Path, keep: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A run killed while writing leaves a last line without its newline (here the file cut a byte,
    37 bytes, and all but one byte into the third record); the next run removes that fragment, warns,
    and its lines follow the whole ones, each readable."""
    path = tmp_path / "alerts.jsonl"
    sink = open_sink(f"file:{path}")
    sink.write(records())
    sink.close()
    whole = path.read_bytes()
    third = whole.rindex(b"\n", 0, len(whole) - 1) + 1
    cut = third + keep if keep > 0 else len(whole) - 2
    path.write_bytes(whole[:cut])
    with caplog.at_level("WARNING"):
        sink = open_sink(f"file:{path}")
    assert "cut short" in caplog.text and str(path) in caplog.text
    sink.write(records(start=3))
    sink.close()
    rows = [json.loads(line)["row"] for line in path.read_text().splitlines()]
    assert rows == [1, 2, 3, 4, 5]


def test_cut_partial_line_edge_cases(tmp_path: Path) -> None:
    from nadkit.fileio import cut_partial_line

    assert cut_partial_line(tmp_path / "absent") == 0
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert cut_partial_line(empty) == 0 and empty.read_bytes() == b""
    whole = tmp_path / "whole"
    whole.write_bytes(b"a\nb\n")
    assert cut_partial_line(whole) == 0 and whole.read_bytes() == b"a\nb\n"
    one = tmp_path / "one"  # a single cut line: nothing whole before it
    one.write_bytes(b"x" * 100)
    assert cut_partial_line(one, block=7) == 100 and one.read_bytes() == b""
    long = tmp_path / "long"  # the cut line longer than a block
    long.write_bytes(b"first\n" + b"y" * 50)
    assert cut_partial_line(long, block=8) == 50 and long.read_bytes() == b"first\n"


def test_sqlite_store_ignores_a_replayed_alert(tmp_path: Path) -> None:
    pytest.importorskip("nadkit.alerts.store", reason="the alert store module is not in this checkout")
    path = tmp_path / "alerts.sqlite"
    sink = open_sink(f"sqlite:{path}", model_version="ae@test")
    assert isinstance(sink, SqliteSink)
    sink.write(records())
    replay = records().with_columns(pl.lit(datetime.now(UTC)).dt.cast_time_unit("us").alias("received"))
    sink.write(replay)  # received later, the same flows: not stored twice
    sink.close()
    from nadkit.alerts.store import AlertStore

    with AlertStore(path) as store:
        assert store.count_alerts() == 3


def _udp_server() -> tuple[socket.socket, int]:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(10)
    return server, server.getsockname()[1]


def _check_rfc5424(message: bytes, row: int) -> None:
    head, _, body = message.partition(b"\xef\xbb\xbf")
    text = head.decode()
    assert text.startswith("<132>1 ")  # facility local0 (16), severity warning (4)
    parts = text.split(" ", 6)
    assert parts[3] == "nadkit" and parts[5] == "alert"
    assert datetime.fromisoformat(parts[1].replace("Z", "+00:00"))
    assert f'[nadkit@32473 row="{row}" ' in text
    assert 'src="10.0.0.1"' in text and 'alert="true"' in text and 'proto="tcp"' in text
    assert json.loads(body)["row"] == row


def test_syslog_over_udp() -> None:
    server, port = _udp_server()
    sink = open_sink(f"syslog+udp://127.0.0.1:{port}")
    assert isinstance(sink, SyslogSink)
    sink.write(records(2))
    messages = [server.recv(65535) for _ in range(2)]
    sink.close()
    server.close()
    for row, message in enumerate(messages, start=1):
        _check_rfc5424(message, row)


def _read_octet_counted(data: bytes) -> list[bytes]:
    messages = []
    while data:
        length, _, rest = data.partition(b" ")
        size = int(length)
        messages.append(rest[:size])
        data = rest[size:]
    return messages


def test_syslog_over_tcp_with_octet_counting_and_reconnection() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)
    port = server.getsockname()[1]
    received: list[bytes] = []

    def serve() -> None:
        for _ in range(2):  # the first connection is closed after one batch: the sink reconnects
            connection, _ = server.accept()
            with connection:
                connection.settimeout(10)
                chunks = b""
                while chunks.count(b"\xef\xbb\xbf") < 3:
                    block = connection.recv(65535)
                    if not block:
                        break
                    chunks += block
                received.append(chunks)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    sink = open_sink(f"syslog+tcp://127.0.0.1:{port}")
    sink.write(records(3))
    deadline = time.monotonic() + 10
    while len(received) < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    for _ in range(3):  # the first send after the peer closed may still be accepted by the kernel
        sink.write(records(3, start=4))
        if len(received) == 2:
            break
        time.sleep(0.2)
    thread.join(timeout=10)
    sink.close()
    server.close()
    first = _read_octet_counted(received[0])
    assert len(first) == 3
    for row, message in enumerate(first, start=1):
        _check_rfc5424(message, row)
    second = _read_octet_counted(received[1])
    assert [json.loads(m.partition(b"\xef\xbb\xbf")[2])["row"] for m in second] == [4, 5, 6]


class _Hook(BaseHTTPRequestHandler):
    bodies: ClassVar[list[dict[str, Any]]] = []
    failures = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if type(self).failures > 0:
            type(self).failures -= 1
            self.send_response(503)
            self.end_headers()
            return
        type(self).bodies.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        return


def test_webhook_retries_until_delivered() -> None:
    _Hook.bodies = []
    _Hook.failures = 2
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    sink = WebhookSink(url, source="netflow://0.0.0.0:2055", model_version="ae@x", backoff_s=0.05)
    sink.write(records(3))
    sink.write(records(2, start=4))
    sink.close(timeout_s=20)
    server.shutdown()
    assert [len(body["records"]) for body in _Hook.bodies] == [3, 2]
    assert _Hook.bodies[0]["source"] == "netflow://0.0.0.0:2055" and _Hook.bodies[0]["model"] == "ae@x"
    assert _Hook.bodies[1]["records"][0]["row"] == 4
    assert sink.stats()["written"] == 5 and sink.stats()["failed"] == 0


def test_webhook_queue_is_bounded_and_failures_are_counted() -> None:
    # nothing listens on this port: every post fails; the queue holds one batch
    placeholder = socket.socket()
    placeholder.bind(("127.0.0.1", 0))
    port = placeholder.getsockname()[1]
    placeholder.close()
    sink = WebhookSink(f"http://127.0.0.1:{port}/", max_queue=1, retries=1, backoff_s=0.3, timeout_s=1)
    for start in range(1, 30, 3):
        sink.write(records(3, start=start))
    sink.close(timeout_s=20)
    stats = sink.stats()
    assert stats["dropped"] > 0
    assert stats["dropped"] + stats["failed"] == 30 and stats["written"] == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kafka://x", "unknown stream sink"),
        ("file:", "name the file"),
        ("syslog+udp:host", "syslog\\+udp://HOST:PORT"),
    ],
)
def test_bad_sink_texts(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_sink(text)
