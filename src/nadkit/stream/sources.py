"""Where a live stream's flows come from: a NetFlow/IPFIX collector, packet capture (a file or an
interface, metered by nfstream), a growing file followed like ``tail -F``, standard input, or frames
handed over in memory.

Every source has a *producer* thread that receives or reads and hands items to the scoring thread
through a bounded :class:`Handoff`; the scoring thread turns the items into canonical flow tables
(``feed`` then ``take``). A UDP collector must never stall the socket, so when the hand-off is full
it drops the packet and counts it; file and capture readers wait instead (back-pressure).

Source texts (:func:`open_source`):

``netflow://HOST:PORT``   UDP collector for NetFlow v5, v9 and IPFIX (``[::]:2055`` for IPv6)
``pcap:FILE``             a capture file, metered into flows by nfstream
``iface:NAME``            live capture on an interface by nfstream (needs capture rights)
``follow:PATH``           a growing CSV, JSON-lines or Zeek log: read from the start, then followed
``-``                     standard input: CSV (header first) or JSON lines

``pcap:`` and ``iface:`` take nfstream's timeouts as ``?idle=S&active=S``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, urlsplit

import polars as pl

from nadkit.errors import ConfigError, FormatError, NadkitError
from nadkit.schema import CANONICAL, validate
from nadkit.stream.netflow import RECEIVED, FlowDecoder

log = logging.getLogger(__name__)

#: marks the end of a finite source in the hand-off
END = object()
DEFAULT_PORT = 2055
SOCKET_BUFFER_BYTES = 32 << 20
_POLL_S = 0.2


class Handoff:
    """The bounded queue between a producer thread and the scoring thread."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ConfigError("the hand-off queue needs room for at least one item")
        self.maxsize = maxsize
        self.dropped = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize)

    def offer(self, item: Any) -> bool:
        """Hand over without waiting; a full queue drops the item (counted)."""
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            return False
        return True

    def put(self, item: Any, stop: threading.Event) -> bool:
        """Hand over, waiting while the queue is full (back-pressure); False when stopped first."""
        while not stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_S)
            except queue.Full:
                continue
            return True
        return False

    def end(self) -> None:
        """Mark the end of a finite source (never dropped)."""
        self._queue.put(END)

    def get(self, timeout: float | None) -> Any:
        """The next item, or None when none came within ``timeout`` seconds (0: do not wait)."""
        try:
            if timeout is not None and timeout <= 0:
                return self._queue.get_nowait()
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def qsize(self) -> int:
        return self._queue.qsize()


class StreamSource:
    """Base of the sources: a producer thread started by :meth:`start`, items turned into flows by
    :meth:`feed` / :meth:`take` in the scoring thread."""

    #: the source text, which names the source in checkpoints and logs
    name: str = ""
    #: seconds of disorder the source's flows usually have (flows come when they end)
    default_lateness_s: float = 60.0

    def __init__(self) -> None:
        self.handoff: Handoff | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, handoff: Handoff) -> None:
        self.handoff = handoff
        self._thread = threading.Thread(target=self._guarded, name=f"nadkit-source {self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the producer to stop; what it already handed over is still processed."""
        self._stop.set()

    def close(self) -> None:
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def _guarded(self) -> None:
        assert self.handoff is not None
        try:
            self.produce(self.handoff)
        except Exception as error:  # reported by the scoring thread, which ends the stream
            self.error = error
            log.debug("source %s failed", self.name, exc_info=True)
            self.handoff.end()

    def produce(self, handoff: Handoff) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def feed(self, item: Any) -> int:  # pragma: no cover - abstract
        """Take one handed-over item; returns the flows it adds (an estimate for text lines)."""
        raise NotImplementedError

    def take(self) -> pl.DataFrame:  # pragma: no cover - abstract
        """The flows fed since the last call as a canonical table."""
        raise NotImplementedError

    def stats(self) -> dict[str, int]:
        return {}


# ---------------------------------------------------------------------------------------------------
# NetFlow / IPFIX over UDP
# ---------------------------------------------------------------------------------------------------


def parse_host_port(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or ``HOST`` to (host, port)."""
    parts = urlsplit("//" + text)
    try:
        port = parts.port
    except ValueError as error:
        raise ConfigError(f"{text!r}: bad port ({error})") from None
    host = parts.hostname or ""
    return host, default_port if port is None else port


class NetflowSource(StreamSource):
    """A UDP collector of NetFlow v5/v9 and IPFIX (:mod:`nadkit.stream.netflow`). The socket is bound
    when the source is made, so :attr:`address` holds the real port when 0 was asked for."""

    default_lateness_s = 60.0

    def __init__(
        self, host: str, port: int, *, name: str | None = None, buffer_bytes: int = SOCKET_BUFFER_BYTES
    ) -> None:
        super().__init__()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer_bytes)
        try:
            self.socket.bind((host or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
        except OSError as error:
            self.socket.close()
            raise ConfigError(f"cannot listen on UDP {host}:{port} ({error.strerror or error})") from error
        self.socket.settimeout(_POLL_S)
        self.address: tuple[str, int] = self.socket.getsockname()[:2]
        self.name = name or f"netflow://{host}:{port}"
        self.decoder = FlowDecoder()
        self.packets = 0
        self._inode = os.fstat(self.socket.fileno()).st_ino
        granted = self.socket.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        log.info(
            "collecting NetFlow/IPFIX on UDP %s:%d (receive buffer %d KiB)", *self.address, granted // 1024
        )

    def produce(self, handoff: Handoff) -> None:
        receive = self.socket.recvfrom
        clock = time.time
        while not self._stop.is_set():
            try:
                data, exporter = receive(65535)
            except TimeoutError:
                continue
            except OSError:
                if self._stop.is_set():
                    break
                raise
            self.packets += 1
            handoff.offer((data, exporter, clock()))

    def feed(self, item: Any) -> int:
        data, exporter, received = item
        return self.decoder.feed(data, exporter, received)

    def take(self) -> pl.DataFrame:
        return self.decoder.take()

    def close(self) -> None:
        super().close()
        self.socket.close()

    def stats(self) -> dict[str, int]:
        decoded = self.decoder.stats.to_dict()
        decoded["packets_decoded"] = decoded.pop("packets")
        out = {"packets_received": self.packets, **decoded}
        drops = _kernel_drops(self._inode)
        if drops is not None:
            out["kernel_drops"] = drops
        return out


def _kernel_drops(inode: int) -> int | None:
    """Datagrams the kernel dropped on this socket (its receive buffer was full), from /proc."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as handle:
                next(handle, None)
                for line in handle:
                    fields = line.split()
                    if len(fields) >= 13 and fields[9] == str(inode):
                        return int(fields[-1])
        except OSError:
            continue
    return None


# ---------------------------------------------------------------------------------------------------
# text lines: followed files and standard input
# ---------------------------------------------------------------------------------------------------


class LineParser:
    """Complete text lines of a CSV (header first), Zeek log or JSON-lines stream into canonical tables.

    The format is decided once from the first lines (``format`` forces it): JSON lines are read as a
    Zeek JSON conn log when they look like one, else as records keyed by canonical column names; other
    text goes through format detection with its header. A batch with a bad line is re-read line by line
    and the bad lines are skipped and counted."""

    def __init__(self, origin: str, *, format: str | None = None, mapping: str | None = None) -> None:
        self.origin = origin
        self.format = format
        self.mapping = mapping or None
        self.header: list[bytes] = []
        self.kind: str | None = None  # "json" or "text" once the header is complete
        self.bad_lines = 0
        self._lines: list[bytes] = []
        self._folder = tempfile.TemporaryDirectory(prefix="nadkit-stream-")
        self._module: Any = None

    def close(self) -> None:
        self._folder.cleanup()

    def feed(self, lines: Sequence[bytes]) -> int:
        added = 0
        for line in lines:
            stripped = line.strip()
            if not stripped:
                continue
            if self.kind is None:
                if stripped.startswith(b"{"):
                    self.kind = "json"
                elif stripped.startswith(b"#"):
                    self.header.append(line)
                    continue
                elif any(h.startswith(b"#fields") for h in self.header):
                    self.kind = "text"  # a Zeek log: its header was the # lines, this is data
                else:
                    self.header.append(line)  # the CSV header
                    self.kind = "text"
                    continue
            if self.kind == "text" and (stripped.startswith(b"#") or stripped == self.header[-1].strip()):
                continue  # Zeek's #close and repeated directives; a header read again after truncation
            self._lines.append(line)
            added += 1
        return added

    def take(self) -> pl.DataFrame:
        lines, self._lines = self._lines, []
        if not lines:
            return pl.DataFrame()
        try:
            return self._parse(lines)
        except (NadkitError, pl.exceptions.PolarsError, OSError) as error:
            log.debug("%s: batch failed to parse (%s); retrying line by line", self.origin, error)
        parts = []
        for line in lines:
            try:
                parts.append(self._parse([line]))
            except (NadkitError, pl.exceptions.PolarsError, OSError) as error:
                self.bad_lines += 1
                if self.bad_lines <= 5:
                    log.warning("%s: line skipped: %s", self.origin, str(error).splitlines()[0])
        parts = [p for p in parts if p.height]
        return pl.concat(parts, how="diagonal_relaxed") if parts else pl.DataFrame()

    def _parse(self, lines: list[bytes]) -> pl.DataFrame:
        from nadkit.sources import detect_format, source_module
        from nadkit.sources.base import check_invalid

        path = Path(self._folder.name) / ("batch.json" if self.kind == "json" else "batch.log")
        with path.open("wb") as handle:
            for line in [*self.header, *lines]:
                handle.write(line if line.endswith(b"\n") else line + b"\n")
        if self._module is None:
            fmt = self.format or ("generic" if self.mapping else None)
            if fmt is None:
                try:
                    fmt = detect_format(path)
                except FormatError as error:
                    if self.kind != "json":
                        # name the user's source, not the batch file it was copied to
                        raise FormatError(str(error).replace(str(path), self.origin)) from None
                    fmt = "json"
            self._module = _CanonicalJson if fmt == "json" else source_module(fmt)
            log.info("%s: read as %s", self.origin, fmt)
        options = {"mapping": self.mapping} if self.mapping else {}
        try:
            frame = self._module.read(path, **options).collect()
        except NadkitError as error:
            raise type(error)(str(error).replace(str(path), self.origin)) from None
        frame = check_invalid(frame, self.origin)
        validate(frame, path=self.origin)
        return frame


class _CanonicalJson:
    """JSON lines keyed by canonical column names (``time``, ``src``, ...), any value encodings."""

    @staticmethod
    def read(path: Path, **_: object) -> pl.LazyFrame:
        from nadkit.sources.base import build, convert

        frame = pl.read_ndjson(path, infer_schema_length=None)
        # keys that were null on every line have no type: text
        frame = frame.with_columns(pl.col(pl.Null).cast(pl.String))
        known = [c for c in frame.columns if c in CANONICAL]
        if not {"src", "dst"} & set(known):
            raise FormatError(f"JSON lines without flow fields (keys: {', '.join(frame.columns[:8])})")
        canonical = {name: convert(name, name, frame.schema[name]) for name in known}
        return build(frame.lazy(), canonical, consumed=known)  # type: ignore[arg-type]


class _LineSource(StreamSource):
    """Shared by the followed file and standard input: producers hand over lists of complete lines."""

    def __init__(self, origin: str, format: str | None, mapping: str | None = None) -> None:
        super().__init__()
        self.parser = LineParser(origin, format=format, mapping=mapping)
        self.lines = 0

    def feed(self, item: Any) -> int:
        self.lines += len(item)
        return self.parser.feed(item)

    def take(self) -> pl.DataFrame:
        frame = self.parser.take()
        if frame.height and RECEIVED not in frame.columns:
            frame = frame.with_columns(pl.lit(time.time(), dtype=pl.Float64).alias(RECEIVED))
        return frame

    def close(self) -> None:
        super().close()
        self.parser.close()

    def stats(self) -> dict[str, int]:
        return {"lines": self.lines, "bad_lines": self.parser.bad_lines}


class FollowSource(_LineSource):
    """A growing file read from its start and then followed: appended complete lines are parsed with
    the file's reader. A file replaced (new inode) or truncated is read again from its start."""

    default_lateness_s = 60.0

    def __init__(
        self,
        path: str | Path,
        *,
        format: str | None = None,
        mapping: str | None = None,
        poll_s: float = _POLL_S,
    ) -> None:
        super().__init__(str(path), format, mapping)
        self.path = Path(path)
        self.name = f"follow:{path}"
        self.poll_s = poll_s
        self.reopened = 0

    def produce(self, handoff: Handoff) -> None:
        handle: BinaryIO | None = None
        inode = None
        rest = b""
        waited = False
        try:
            while not self._stop.is_set():
                if handle is None:
                    try:
                        handle = self.path.open("rb")
                    except FileNotFoundError:
                        if not waited:
                            log.warning("%s: waiting for the file to appear", self.path)
                            waited = True
                        self._stop.wait(self.poll_s)
                        continue
                    inode = os.fstat(handle.fileno()).st_ino
                    rest = b""
                block = handle.read(1 << 20)
                if block:
                    lines = (rest + block).split(b"\n")
                    rest = lines.pop()
                    if lines and not handoff.put(lines, self._stop):
                        return
                    continue
                # at the end: replaced or truncated?
                try:
                    status = self.path.stat()
                except FileNotFoundError:
                    status = None
                replaced = status is not None and (status.st_ino != inode or status.st_size < handle.tell())
                if replaced:
                    log.info("%s: file replaced or truncated; reading it from the start", self.path)
                    self.reopened += 1
                    handle.close()
                    handle = None
                    continue
                self._stop.wait(self.poll_s)
        finally:
            if handle is not None:
                handle.close()

    def stats(self) -> dict[str, int]:
        return {**super().stats(), "reopened": self.reopened}


class StdinSource(_LineSource):
    """Standard input (or any binary stream): CSV with its header first, or JSON lines."""

    default_lateness_s = 60.0

    def __init__(
        self,
        stream: BinaryIO | None = None,
        *,
        format: str | None = None,
        mapping: str | None = None,
        lines_per_item: int = 2000,
    ) -> None:
        super().__init__("stdin", format, mapping)
        self.stream = stream
        self.name = "-"
        self.lines_per_item = lines_per_item

    def produce(self, handoff: Handoff) -> None:
        stream = self.stream if self.stream is not None else sys.stdin.buffer
        pending: list[bytes] = []
        last = time.monotonic()
        for line in _lines(stream):
            pending.append(line)
            now = time.monotonic()
            if len(pending) >= self.lines_per_item or now - last > _POLL_S:
                if not handoff.put(pending, self._stop):
                    return
                pending = []
                last = now
        if pending:
            handoff.put(pending, self._stop)
        handoff.end()


def _lines(stream: BinaryIO) -> Iterable[bytes]:
    """Complete lines as they arrive (a pipe's lines are handed on without waiting for a full block)."""
    readline = stream.readline
    while True:
        line = readline()
        if not line:
            return
        yield line


# ---------------------------------------------------------------------------------------------------
# packet capture through nfstream
# ---------------------------------------------------------------------------------------------------


class CaptureSource(StreamSource):
    """Flows metered by nfstream from a capture file (``pcap:``) or a live interface (``iface:``), as
    nfstream expires them (idle and active timeouts; flows come out when they end, so the lateness
    must cover the active timeout)."""

    def __init__(
        self,
        target: str,
        *,
        live: bool,
        idle_timeout: int | None = None,
        active_timeout: int | None = None,
        n_dissections: int = 20,
    ) -> None:
        from nadkit.errors import require
        from nadkit.sources import pcap

        super().__init__()
        require("nfstream", "capturing flows", "pcap")
        self.target = target
        self.live = live
        self.name = f"{'iface' if live else 'pcap'}:{target}"
        # a live interface: short timeouts, so flows (and alerts) come out soon
        self.idle_timeout = idle_timeout if idle_timeout is not None else (15 if live else 120)
        self.active_timeout = active_timeout if active_timeout is not None else (60 if live else 1800)
        self.default_lateness_s = float(self.idle_timeout + self.active_timeout)
        self.n_dissections = n_dissections
        if not live:
            if not Path(target).is_file():
                raise FormatError(f"{target}: no such capture file")
            pcap.check_capture(target)
        self._keys: list[str] | None = None
        self._rows: list[list[object]] = []
        self.flows = 0

    def produce(self, handoff: Handoff) -> None:
        from nadkit.sources import pcap

        streamer = pcap.streamer(
            self.target,
            statistical_analysis=True,
            n_dissections=self.n_dissections,
            idle_timeout=self.idle_timeout,
            active_timeout=self.active_timeout,
        )
        for flow in streamer:
            if self._keys is None:
                self._keys = list(flow.keys())
            if not handoff.put((flow.values(), time.time()), self._stop):
                return
        handoff.end()

    def feed(self, item: Any) -> int:
        self._rows.append([*item[0], item[1]])
        self.flows += 1
        return 1

    def take(self) -> pl.DataFrame:
        from nadkit.sources import pcap
        from nadkit.sources.base import check_invalid

        rows, self._rows = self._rows, []
        if not rows or self._keys is None:
            return pl.DataFrame()
        keys = [*self._keys, RECEIVED]
        overrides = {k: pcap.NFSTREAM_FIELDS[k] for k in keys if k in pcap.NFSTREAM_FIELDS}
        overrides[RECEIVED] = pl.Float64()
        flows = pl.DataFrame(
            rows, schema=keys, schema_overrides=overrides, orient="row", infer_schema_length=None
        )
        frame = pcap._canonical(flows.drop(RECEIVED), None).collect()
        frame = check_invalid(frame, self.name).with_columns(flows[RECEIVED])
        return frame

    def stats(self) -> dict[str, int]:
        return {"flows_metered": self.flows}


# ---------------------------------------------------------------------------------------------------
# in memory
# ---------------------------------------------------------------------------------------------------


class FrameSource(StreamSource):
    """Canonical tables handed over one by one (for embedding the stream, and for tests)."""

    default_lateness_s = 0.0

    def __init__(self, frames: Iterable[pl.DataFrame], *, name: str = "frames") -> None:
        super().__init__()
        self.frames = frames
        self.name = name
        self._pending: list[pl.DataFrame] = []

    def produce(self, handoff: Handoff) -> None:
        for frame in self.frames:
            if not handoff.put(frame, self._stop):
                return
        handoff.end()

    def feed(self, item: Any) -> int:
        self._pending.append(item)
        return int(item.height)

    def take(self) -> pl.DataFrame:
        parts, self._pending = self._pending, []
        parts = [p for p in parts if p.height]
        if not parts:
            return pl.DataFrame()
        frame = parts[0] if len(parts) == 1 else pl.concat(parts, how="diagonal_relaxed")
        if RECEIVED not in frame.columns:
            frame = frame.with_columns(pl.lit(time.time(), dtype=pl.Float64).alias(RECEIVED))
        return frame


# ---------------------------------------------------------------------------------------------------
# source texts
# ---------------------------------------------------------------------------------------------------


def open_source(
    text: str, *, format: str | None = None, mapping: str | None = None, stdin: BinaryIO | None = None
) -> StreamSource:
    """The source a source text names (module docstring); ConfigError for anything else. ``format``
    and ``mapping`` (``--map``) say how the lines of a followed file or of standard input read."""
    text = text.strip()
    if text == "-":
        return StdinSource(stdin, format=format, mapping=mapping)
    scheme, _, rest = text.partition(":")
    scheme = scheme.lower()
    if scheme == "netflow":
        if not rest.startswith("//"):
            raise ConfigError(f"{text!r}: write the collector address as netflow://HOST:PORT")
        host, port = parse_host_port(rest[2:].rstrip("/"))
        return NetflowSource(host, port, name=text)
    if scheme in ("pcap", "iface"):
        target, _, query = rest.partition("?")
        if not target:
            raise ConfigError(f"{text!r}: name the {'capture file' if scheme == 'pcap' else 'interface'}")
        options = _capture_options(query, text)
        return CaptureSource(target, live=scheme == "iface", **options)
    if scheme == "follow":
        if not rest:
            raise ConfigError(f"{text!r}: name the file to follow")
        return FollowSource(rest, format=format, mapping=mapping)
    raise ConfigError(
        f"unknown stream source {text!r} (use netflow://HOST:PORT, pcap:FILE, iface:NAME, follow:PATH or -)"
    )


def _capture_options(query: str, text: str) -> dict[str, int]:
    names = {"idle": "idle_timeout", "active": "active_timeout", "dissections": "n_dissections"}
    options: dict[str, int] = {}
    for key, values in parse_qs(query, keep_blank_values=True).items():
        if key not in names:
            raise ConfigError(f"{text!r}: unknown option {key!r} (known: {', '.join(names)})")
        try:
            options[names[key]] = int(values[-1])
        except ValueError:
            raise ConfigError(f"{text!r}: {key} must be a whole number of seconds") from None
    return options


__all__ = [
    "END",
    "CaptureSource",
    "FollowSource",
    "FrameSource",
    "Handoff",
    "LineParser",
    "NetflowSource",
    "StdinSource",
    "StreamSource",
    "open_source",
    "parse_host_port",
]
