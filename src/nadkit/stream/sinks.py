"""Where a live stream's scored flows go: JSON lines (standard output or a file), the SQLite alert
store, syslog (RFC 5424 over UDP or TCP) and a webhook.

Sink texts (:func:`open_sink`):

``-``                      JSON lines on standard output
``file:PATH``              JSON lines appended to a file (flushed after every batch)
``sqlite:PATH``            the alert store (:class:`nadkit.alerts.store.AlertStore`), which ignores duplicates
``syslog+udp://HOST:PORT`` one RFC 5424 message per record; ``syslog+tcp://`` uses octet-counting framing
``http://...``, ``https://...``  a webhook: each batch POSTed as JSON, retried, through a bounded queue

A record is the scored flow as `nadkit detect` writes it (``row``, ``time``, ``src``, ``dst``, ``spt``,
``dpt``, ``proto``, ``score``, ``threshold``, ``alert``, ``class``, ``top_features``...) plus
``received``, when the flow reached nadkit. Times are ISO-8601 text in UTC.

With ``layout="ecs"`` (`nadkit stream --sink-format ecs`) the JSON-lines, syslog and webhook sinks
write each record as an Elastic Common Schema document instead (:mod:`nadkit.alerts.ecs`; ``received``
becomes ``event.created``, the model version ``rule.version``); syslog keeps nadkit's key fields as
structured data. The alert store always keeps nadkit's records.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import polars as pl

from nadkit.alerts.ecs import LAYOUTS, ecs_lines
from nadkit.alerts.records import ID_COLUMNS, json_lines
from nadkit.errors import ConfigError
from nadkit.fileio import cut_partial_line
from nadkit.stream.sources import parse_host_port

if TYPE_CHECKING:
    from nadkit.training.bundle import ModelBundle

log = logging.getLogger(__name__)


def model_version(bundle: ModelBundle) -> str:
    """The bundle's model name and creation time, e.g. ``ae@2024-06-11T10:00:00+00:00`` (the
    ``model_version`` the sinks write)."""
    manifest = bundle.manifest or {}
    name = manifest.get("model") or bundle.detector.name
    created = manifest.get("created") or manifest.get("data_fingerprint") or "unsaved"
    return f"{name}@{created}"


#: the structured-data id of syslog messages (enterprise number 32473 is reserved for examples and
#: private use, RFC 5612)
SD_ID = "nadkit@32473"
SYSLOG_FACILITY = 16  # local0
_SD_FIELDS = ("row", *(c for c in ID_COLUMNS if c != "label"), "score", "threshold", "alert", "class")
_UDP_MAX_BYTES = 65_000


class Sink:
    """Base of the sinks: ``write`` a batch of records, ``close`` at the end, ``stats`` counters.
    ``layout``: what a record is written as, nadkit's record or an ECS document (:meth:`lines`)."""

    name = ""

    def __init__(self, *, layout: str = "nadkit", model_version: str = "") -> None:
        if layout not in LAYOUTS:
            raise ConfigError(f"unknown sink format {layout!r} (use {' or '.join(LAYOUTS)})")
        self.written = 0
        self.failed = 0
        self.layout = layout
        self.model_version = model_version

    def lines(self, records: pl.DataFrame) -> list[bytes]:
        """One JSON text per record, in the sink's layout."""
        if self.layout == "ecs":
            return ecs_lines(records, model=self.model_version or None)
        return json_lines(records)

    def write(self, records: pl.DataFrame) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        return None

    def stats(self) -> dict[str, int]:
        return {"written": self.written, "failed": self.failed}


class JsonLinesSink(Sink):
    """JSON lines to standard output or appended to a file."""

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        stream: BinaryIO | None = None,
        layout: str = "nadkit",
        model_version: str = "",
    ) -> None:
        super().__init__(layout=layout, model_version=model_version)
        self.path = Path(path) if path is not None else None
        self.name = f"file:{path}" if path is not None else "-"
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            cut = cut_partial_line(self.path)
            if cut:
                # a run killed while writing: the cut record was never checkpointed, so it is written
                # again whole; the fragment would make the next line unreadable
                log.warning("%s: removed a last line cut short (%d bytes) by an earlier run", self.path, cut)
            self._handle: BinaryIO = self.path.open("ab")
            self._own = True
        else:
            self._handle = stream if stream is not None else sys.stdout.buffer
            self._own = False

    def write(self, records: pl.DataFrame) -> None:
        lines = self.lines(records)
        if not lines:
            return
        self._handle.write(b"\n".join(lines) + b"\n")
        self._handle.flush()
        self.written += len(lines)

    def close(self) -> None:
        if self._own:
            self._handle.close()
        else:
            self._handle.flush()


class SqliteSink(Sink):
    """The SQLite alert store; it ignores records it already holds."""

    def __init__(self, path: str | Path, *, model_version: str) -> None:
        super().__init__(model_version=model_version)
        try:
            from nadkit.alerts.store import AlertStore
        except ImportError as error:
            raise ConfigError(
                f"the sqlite sink needs the alert store, which is not available ({error})"
            ) from error
        self.name = f"sqlite:{path}"
        self.store = AlertStore(path)

    def write(self, records: pl.DataFrame) -> None:
        if records.height == 0:
            return
        # the arrival time is not part of the flow: a flow received again is the same alert
        flows = records.drop("received", strict=False)
        added = self.store.add_alerts(flows, model_version=self.model_version)
        self.written += len(added)

    def close(self) -> None:
        close = getattr(self.store, "close", None)
        if callable(close):
            close()


def _sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _sd_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def syslog_message(record: dict[str, Any], line: bytes, *, hostname: str, pid: int) -> bytes:
    """One RFC 5424 message: severity warning for alerts (info otherwise), the key fields of ``record``
    as structured data and ``line`` (the whole record as JSON, or its ECS document) as the message."""
    severity = 4 if record.get("alert") else 6
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    params = " ".join(
        f'{key}="{_sd_escape(_sd_value(record[key]))}"' for key in _SD_FIELDS if record.get(key) is not None
    )
    structured = f"[{SD_ID} {params}]" if params else "-"
    msgid = "alert" if record.get("alert") else "flow"
    head = f"<{SYSLOG_FACILITY * 8 + severity}>1 {stamp} {hostname} nadkit {pid} {msgid} {structured} "
    return head.encode() + b"\xef\xbb\xbf" + line


class SyslogSink(Sink):
    """RFC 5424 syslog over UDP (one datagram per record) or TCP (octet-counting framing, RFC 6587),
    reconnecting with a few retries; records that cannot be sent are counted and dropped."""

    def __init__(
        self,
        transport: str,
        host: str,
        port: int,
        *,
        retries: int = 3,
        layout: str = "nadkit",
        model_version: str = "",
    ) -> None:
        super().__init__(layout=layout, model_version=model_version)
        if transport not in ("udp", "tcp"):
            raise ConfigError(f"syslog transport must be udp or tcp, not {transport!r}")
        self.transport = transport
        self.address = (host, port)
        self.name = f"syslog+{transport}://{host}:{port}"
        self.retries = retries
        self.hostname = (socket.gethostname() or "-").replace(" ", "_")[:255]
        self.pid = os.getpid()
        self._socket: socket.socket | None = None
        if transport == "udp":
            info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
            self._socket = socket.socket(info[0], socket.SOCK_DGRAM)
            self._target = info[4]

    def _connect(self) -> socket.socket:
        if self._socket is None:
            self._socket = socket.create_connection(self.address, timeout=5.0)
        return self._socket

    def write(self, records: pl.DataFrame) -> None:
        lines = json_lines(records)
        if not lines:
            return
        bodies = self.lines(records) if self.layout != "nadkit" else lines
        messages = [
            syslog_message(json.loads(line), body, hostname=self.hostname, pid=self.pid)
            for line, body in zip(lines, bodies, strict=True)
        ]
        if self.transport == "udp":
            assert self._socket is not None
            for message in messages:
                try:
                    self._socket.sendto(message[:_UDP_MAX_BYTES], self._target)
                    self.written += 1
                except OSError as error:
                    self.failed += 1
                    log.warning("syslog %s: %s", self.name, error)
            return
        payload = b"".join(str(len(m)).encode() + b" " + m for m in messages)
        for attempt in range(self.retries + 1):
            try:
                self._connect().sendall(payload)
                self.written += len(messages)
                return
            except OSError as error:
                self._drop_connection()
                if attempt == self.retries:
                    self.failed += len(messages)
                    log.warning("syslog %s: %d record(s) not sent (%s)", self.name, len(messages), error)
                    return
                time.sleep(0.2 * 2**attempt)

    def _drop_connection(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class WebhookSink(Sink):
    """POSTs each batch as ``{"source": ..., "model": ..., "records": [...]}`` from a worker thread.
    A full queue drops the batch (counted); failed posts are retried with back-off on connection
    errors, 429 and 5xx answers."""

    def __init__(
        self,
        url: str,
        *,
        source: str = "",
        model_version: str = "",
        max_queue: int = 64,
        retries: int = 4,
        timeout_s: float = 5.0,
        backoff_s: float = 0.5,
        layout: str = "nadkit",
    ) -> None:
        super().__init__(layout=layout, model_version=model_version)
        self.url = url
        self.name = url
        self.source = source
        self.retries = retries
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.dropped = 0
        self.posts = 0
        self._queue: queue.Queue[tuple[bytes, int] | None] = queue.Queue(max_queue)
        self._worker = threading.Thread(target=self._run, name="nadkit-webhook", daemon=True)
        self._worker.start()

    def write(self, records: pl.DataFrame) -> None:
        lines = self.lines(records)
        if not lines:
            return
        head = json.dumps({"source": self.source, "model": self.model_version})[:-1].encode()
        body = head + b', "records": [' + b",".join(lines) + b"]}"
        try:
            self._queue.put_nowait((body, len(lines)))
        except queue.Full:
            self.dropped += len(lines)
            log.warning("webhook %s: queue full, %d record(s) dropped", self.url, len(lines))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            body, count = item
            if self._post(body):
                self.written += count
            else:
                self.failed += count

    def _post(self, body: bytes) -> bool:
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(
                self.url, data=body, method="POST", headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:
                    answer.read()
                self.posts += 1
                return True
            except urllib.error.HTTPError as error:
                if error.code != 429 and error.code < 500:
                    log.warning("webhook %s refused a batch (HTTP %d)", self.url, error.code)
                    return False
                reason = f"HTTP {error.code}"
            except (urllib.error.URLError, OSError) as error:
                reason = str(getattr(error, "reason", error))
            if attempt < self.retries:
                time.sleep(self.backoff_s * 2**attempt)
        log.warning(
            "webhook %s: batch not delivered after %d attempts (%s)", self.url, self.retries + 1, reason
        )
        return False

    def close(self, timeout_s: float = 30.0) -> None:
        """Deliver what is queued (waiting up to ``timeout_s``), then stop the worker."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._queue.put(None, timeout=max(0.01, deadline - time.monotonic()))
                break
            except queue.Full:
                if time.monotonic() >= deadline:
                    break
        self._worker.join(timeout=max(0.0, deadline - time.monotonic()))
        if self._worker.is_alive():
            log.warning("webhook %s: gave up waiting for queued batches", self.url)

    def stats(self) -> dict[str, int]:
        return {
            **super().stats(),
            "dropped": self.dropped,
            "posts": self.posts,
            "queued": self._queue.qsize(),
        }


def open_sink(
    text: str,
    *,
    model_version: str = "",
    source: str = "",
    stdout: BinaryIO | None = None,
    layout: str = "nadkit",
) -> Sink:
    """The sink a sink text names (module docstring), writing records in ``layout`` (``nadkit`` or
    ``ecs``; the alert store keeps nadkit's records); ConfigError for anything else."""
    text = text.strip()
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown sink format {layout!r} (use {' or '.join(LAYOUTS)})")
    written = {"layout": layout, "model_version": model_version}
    if text in ("-", "stdout"):
        return JsonLinesSink(stream=stdout, **written)
    scheme, _, rest = text.partition(":")
    scheme = scheme.lower()
    if scheme == "file":
        if not rest:
            raise ConfigError(f"{text!r}: name the file")
        return JsonLinesSink(rest, **written)
    if scheme == "sqlite":
        if not rest:
            raise ConfigError(f"{text!r}: name the database file")
        return SqliteSink(rest, model_version=model_version)
    if scheme in ("syslog+udp", "syslog+tcp", "syslog"):
        if not rest.startswith("//"):
            raise ConfigError(f"{text!r}: write the syslog address as syslog+udp://HOST:PORT")
        host, port = parse_host_port(rest[2:].rstrip("/"), default_port=514)
        return SyslogSink("tcp" if scheme == "syslog+tcp" else "udp", host, port, **written)
    if scheme in ("http", "https"):
        return WebhookSink(text, source=source, **written)
    raise ConfigError(
        f"unknown stream sink {text!r} (use -, file:PATH, sqlite:PATH, syslog+udp://HOST:PORT, "
        "syslog+tcp://HOST:PORT or an http(s) URL)"
    )


__all__ = [
    "JsonLinesSink",
    "Sink",
    "SqliteSink",
    "SyslogSink",
    "WebhookSink",
    "json_lines",
    "open_sink",
    "syslog_message",
]
