"""Packet captures (pcap and pcapng), aggregated into bidirectional flows by nfstream.

A capture is recognised by its magic number: ``d4c3b2a1``/``a1b2c3d4`` (pcap, microsecond time
stamps, little/big endian), ``4d3cb2a1``/``a1b23c4d`` (pcap, nanosecond) and ``0a0d0d0a`` (pcapng);
a gzip-compressed capture is decompressed to a temporary file first. Before nfstream sees the file,
its structure is walked record by record (pcap record headers, pcapng block lengths), so that a
truncated or corrupt capture is reported with the packet and byte offset where it breaks instead of
being read partially or crashing the flow meter.

nfstream (``NFStreamer(source=path, statistical_analysis=True, n_dissections=20)``) meters the
packets into flows and runs nDPI on the first ``n_dissections`` packets of each. Mapping:
``bidirectional_first_seen_ms`` -> ``time``; ``src_ip``/``src_port`` -> ``src``/``spt`` (the side
that sent the first packet; a TCP connection met after its handshake whose first packet came from the
server's port is turned round, :func:`turned_midstream`), ``dst_ip``/``dst_port`` -> ``dst``/``dpt``;
``protocol`` number -> ``proto`` name; ``application_name`` lower-cased -> ``app`` (nDPI names such
as ``tls.google``); ``bidirectional_duration_ms`` / 1000 -> ``duration``;
``src2dst_bytes``/``src2dst_packets`` -> ``out_bytes``/``out_pkts``;
``dst2src_bytes``/``dst2src_packets`` -> ``in_bytes``/``in_pkts``;
``application_category_name`` lower-cased -> ``app_category`` (text); ``requested_server_name`` ->
``server_name`` (the DNS query, TLS server name or HTTP host nDPI found; null where none) and
``user_agent`` (HTTP; null where none), for the name features. The other numeric fields
(``ip_version``, ``vlan_id``, ``tunnel_id``, ``expiration_id``, ``bidirectional_packets``,
``application_confidence``, per-direction durations, ...) are kept; the flow id, absolute
timestamps, MAC addresses and fingerprints are dropped. With the read
option ``statistical_analysis`` (on by default) the payload-free statistics nfstream meters are kept
too: packet sizes (``*_min_ps``, ``*_mean_ps``, ``*_stddev_ps``, ``*_max_ps``), packet inter-arrival
times (``*_piat_ms``) and TCP flag counts (``*_syn_packets``, ``*_rst_packets``, ...), each for both
directions together (``bidirectional_*``) and for each direction (``src2dst_*``, ``dst2src_*``): the
signals that tell a scan probe, a tunnel or a beacon from ordinary traffic of the same size.

Captures are labelled per file: the read option ``label`` (for example ``label="synscan"`` or
``"benign"``) labels every flow of the file; without it there is no label column. Other options:
``n_dissections`` (0-255; 0 turns nDPI off, and with it ``app``), ``idle_timeout`` and
``active_timeout`` (seconds), passed to nfstream, and ``max_flows`` (stop after that many flows).
nfstream is not lazy, so :func:`read` meters the whole capture and returns the table as a lazy frame.

nfstream's metering processes are started from a fork server (:func:`streamer`) rather than forked
from this process: a process that already runs threads (torch's, an HTTP server's, a Spark gateway's)
can fork a child that deadlocks on a lock one of them held, and the meter would never answer. The
fork server imports nfstream alone (not nadkit, nor Polars), so that it starts sooner; its start is
still the one cost nadkit adds, once a process (about 0.7 s on 2 busy cores).

Speed: nadkit adds nothing measurable to nfstream's metering (``benchmarks/captures.py``). Each
flow's fields are read at once and only those the canonical table keeps, and they become a table in
chunks while the meter is still busy; nfstream's pinning of this process to its first CPUs is undone
after metering; a capture of at least :data:`LARGE_CAPTURE_BYTES` gets several meters where there
are CPUs for them (``n_meters``), and several captures given at once are metered in parallel
(:func:`map_captures`).
"""

from __future__ import annotations

import copyreg
import functools
import logging
import mmap
import multiprocessing
import multiprocessing.context
import operator
import os
import struct
import sys
import tempfile
import threading
import types
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

from nadkit.errors import ConfigError, FormatError, require
from nadkit.schema import label_expr, proto_name_expr, service_port_first
from nadkit.sources import argus_meter
from nadkit.sources.base import INVALID_PREFIX, Head, bounded_gunzip, build, epoch_to_time, numeric, text

log = logging.getLogger(__name__)

NAME = "pcap"
DESCRIPTION = "packet capture (pcap / pcapng), metered into flows by nfstream (or Argus: --meter argus)"
SUFFIXES = (".pcap", ".pcapng", ".cap", ".dmp")

#: magic number -> (format, struct byte order) for classic pcap
PCAP_MAGIC: dict[bytes, str] = {
    bytes.fromhex("d4c3b2a1"): "<",
    bytes.fromhex("a1b2c3d4"): ">",
    bytes.fromhex("4d3cb2a1"): "<",
    bytes.fromhex("a1b23c4d"): ">",
}
PCAPNG_MAGIC = bytes.fromhex("0a0d0d0a")
_PCAP_HEADER_BYTES = 24
_PCAP_RECORD_BYTES = 16
_PCAPNG_BYTE_ORDER = {bytes.fromhex("4d3c2b1a"): "<", bytes.fromhex("1a2b3c4d"): ">"}
_PCAPNG_PACKET_BLOCKS = {2, 3, 6}  # obsolete packet, simple packet, enhanced packet
#: libpcap rejects records larger than this (or the snapshot length when larger)
_MAX_RECORD_BYTES = 262_144

#: The fields of an nfstream flow (statistical analysis off) and their types.
NFSTREAM_FIELDS: dict[str, pl.DataType] = {
    "id": pl.Int64(),
    "expiration_id": pl.Int64(),
    "src_ip": pl.String(),
    "src_mac": pl.String(),
    "src_oui": pl.String(),
    "src_port": pl.Int64(),
    "dst_ip": pl.String(),
    "dst_mac": pl.String(),
    "dst_oui": pl.String(),
    "dst_port": pl.Int64(),
    "protocol": pl.Int64(),
    "ip_version": pl.Int64(),
    "vlan_id": pl.Int64(),
    "tunnel_id": pl.Int64(),
    "bidirectional_first_seen_ms": pl.Int64(),
    "bidirectional_last_seen_ms": pl.Int64(),
    "bidirectional_duration_ms": pl.Int64(),
    "bidirectional_packets": pl.Int64(),
    "bidirectional_bytes": pl.Int64(),
    "src2dst_first_seen_ms": pl.Int64(),
    "src2dst_last_seen_ms": pl.Int64(),
    "src2dst_duration_ms": pl.Int64(),
    "src2dst_packets": pl.Int64(),
    "src2dst_bytes": pl.Int64(),
    "dst2src_first_seen_ms": pl.Int64(),
    "dst2src_last_seen_ms": pl.Int64(),
    "dst2src_duration_ms": pl.Int64(),
    "dst2src_packets": pl.Int64(),
    "dst2src_bytes": pl.Int64(),
    "application_name": pl.String(),
    "application_category_name": pl.String(),
    "application_is_guessed": pl.Int64(),
    "application_confidence": pl.Int64(),
    "requested_server_name": pl.String(),
    "client_fingerprint": pl.String(),
    "server_fingerprint": pl.String(),
    "user_agent": pl.String(),
    "content_type": pl.String(),
}
#: The fields statistical analysis adds: packet sizes, inter-arrival times and TCP flag counts, for
#: both directions together and for each
STATISTICAL_FIELDS: dict[str, pl.DataType] = {
    f"{side}_{name}": kind
    for side in ("bidirectional", "src2dst", "dst2src")
    for name, kind in (
        ("min_ps", pl.Int64()),
        ("mean_ps", pl.Float64()),
        ("stddev_ps", pl.Float64()),
        ("max_ps", pl.Int64()),
        ("min_piat_ms", pl.Int64()),
        ("mean_piat_ms", pl.Float64()),
        ("stddev_piat_ms", pl.Float64()),
        ("max_piat_ms", pl.Int64()),
        *(
            (f"{flag}_packets", pl.Int64())
            for flag in ("syn", "cwr", "ece", "urg", "ack", "psh", "rst", "fin")
        ),
    )
}
NFSTREAM_FIELDS.update(STATISTICAL_FIELDS)
_MAPPED = {
    "src_ip",
    "dst_ip",
    "src_port",
    "dst_port",
    "protocol",
    "application_name",
    "application_category_name",
    "requested_server_name",
    "user_agent",
    "bidirectional_duration_ms",
    "src2dst_bytes",
    "dst2src_bytes",
    "src2dst_packets",
    "dst2src_packets",
}
_DROPPED = {
    "id",
    "bidirectional_first_seen_ms",
    "bidirectional_last_seen_ms",
    "src2dst_first_seen_ms",
    "src2dst_last_seen_ms",
    "dst2src_first_seen_ms",
    "dst2src_last_seen_ms",
}
#: fields nfstream meters that the canonical table drops: they are never copied out of the flows
_UNUSED = (_DROPPED - {"bidirectional_first_seen_ms"}) | {
    name for name, dtype in NFSTREAM_FIELDS.items() if dtype == pl.String() and name not in _MAPPED
}
DEFAULT_DISSECTIONS = 20
_ORDER = ["bidirectional_first_seen_ms", "src_ip", "src_port", "dst_ip", "dst_port", "protocol"]
#: a capture at least this large is metered by several meters (nfstream's own count for the CPUs);
#: a smaller one by one, as starting a meter (and nDPI in it) costs more than it saves there
LARGE_CAPTURE_BYTES = 64 << 20


def detect(head: Head) -> bool:
    """pcap or pcapng magic number at the start of the (decompressed) file."""
    magic = head.raw[:4]
    return magic in PCAP_MAGIC or magic == PCAPNG_MAGIC


def read(
    path: str | Path,
    *,
    label: str | None = None,
    n_dissections: int = DEFAULT_DISSECTIONS,
    statistical_analysis: bool = True,
    idle_timeout: int | None = None,
    active_timeout: int | None = None,
    max_flows: int | None = None,
    n_meters: int | None = None,
    meter: str | None = None,
    **_: object,
) -> pl.LazyFrame:
    """Meter a capture into flows (eagerly: nfstream is not lazy) and map them to the canonical table.

    ``n_meters``: metering processes (at most the CPUs but one, as nfstream allows); by default one
    for a capture under :data:`LARGE_CAPTURE_BYTES`, nfstream's own count for the CPUs above it.
    ``meter``: ``nfstream`` (the default) or ``argus`` (:mod:`nadkit.sources.argus_meter`: faster,
    less in each flow; the nfstream options do not apply); by default ``NADKIT_METER``'s."""
    settings = _settings(label, n_dissections, idle_timeout, active_timeout, max_flows, n_meters)
    metered_by = argus_meter.chosen_meter(meter)
    if not isinstance(statistical_analysis, bool):
        raise ConfigError(f"statistical_analysis must be true or false, not {statistical_analysis!r}")
    settings["statistical_analysis"] = statistical_analysis
    path = Path(path)
    if not path.is_file():
        raise FormatError(f"{path}: no such capture file")
    if path.stat().st_size == 0:
        raise FormatError(f"{path}: file is empty")
    head = Head.of(path)
    if not detect(head):
        magic = head.raw[:4].hex() or "none"
        raise FormatError(f"{path}: not a pcap or pcapng capture (magic number {magic})")
    if metered_by == "argus":
        with tempfile.TemporaryDirectory(prefix="nadkit-pcap-") as folder:
            plain = path
            if head.compressed:
                plain = Path(folder) / path.name.removesuffix(".gz")
                _decompress(path, plain)
            check_capture(plain, shown_as=path)
            return argus_meter.meter(plain, shown_as=path, label=label)
    if head.compressed:
        with tempfile.TemporaryDirectory(prefix="nadkit-pcap-") as folder:
            plain = Path(folder) / path.name.removesuffix(".gz")
            _decompress(path, plain)
            flows = _meter(plain, settings, shown_as=path)
    else:
        flows = _meter(path, settings, shown_as=path)
    log.info("%s: %d flows", path, flows.height)
    return _canonical(flows, label)


def _settings(
    label: object,
    n_dissections: object,
    idle_timeout: object,
    active_timeout: object,
    max_flows: object,
    n_meters: object = None,
) -> dict[str, Any]:
    """Validate the read options (clear errors before the capture is opened)."""
    if label is not None and (not isinstance(label, str) or not label.strip()):
        raise ConfigError(f"label must be a non-empty text, not {label!r}")
    if isinstance(n_dissections, bool) or not isinstance(n_dissections, int) or not 0 <= n_dissections <= 255:
        raise ConfigError(f"n_dissections must be an integer from 0 to 255, not {n_dissections!r}")
    settings: dict[str, Any] = {"n_dissections": n_dissections}
    for name, value in (
        ("idle_timeout", idle_timeout),
        ("active_timeout", active_timeout),
        ("max_flows", max_flows),
        ("n_meters", n_meters),
    ):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{name} must be a positive integer, not {value!r}")
        settings[name] = value
    return settings


def _decompress(source: Path, target: Path) -> None:
    """Decompress within the gzip bounds (:func:`~nadkit.sources.base.bounded_gunzip`)."""
    with target.open("wb") as plain:
        bounded_gunzip(source, plain)


def check_capture(path: str | Path, *, shown_as: str | Path | None = None) -> tuple[str, int]:
    """Walk a capture's records and return its format and packet count.

    Raises :class:`FormatError` naming the file, the packet and the byte offset where a record is
    cut off (a truncated capture) or has an impossible length (a corrupt one).
    """
    name = shown_as or path
    with Path(path).open("rb") as handle:
        size = handle.seek(0, 2)
        if size == 0:
            raise FormatError(f"{name}: file is empty")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            magic = bytes(data[:4])
            if magic in PCAP_MAGIC:
                return "pcap", _walk_pcap(data, size, PCAP_MAGIC[magic], name)
            if magic == PCAPNG_MAGIC:
                return "pcapng", _walk_pcapng(data, size, name)
    raise FormatError(f"{name}: not a pcap or pcapng capture (magic number {magic.hex()})")


def _walk_pcap(data: mmap.mmap, size: int, order: str, name: str | Path) -> int:
    if size < _PCAP_HEADER_BYTES:
        raise FormatError(
            f"{name}: truncated capture: the pcap file header needs {_PCAP_HEADER_BYTES} bytes, "
            f"the file has {size}"
        )
    (snaplen,) = struct.unpack_from(order + "I", data, 16)
    limit = max(snaplen, _MAX_RECORD_BYTES)
    record = struct.Struct(order + "I")
    offset, packets = _PCAP_HEADER_BYTES, 0
    while offset < size:
        if size - offset < _PCAP_RECORD_BYTES:
            raise FormatError(
                f"{name}: truncated capture: packet {packets + 1} at byte {offset} has only "
                f"{size - offset} of its {_PCAP_RECORD_BYTES}-byte record header"
            )
        (captured,) = record.unpack_from(data, offset + 8)
        if captured > limit:
            raise FormatError(
                f"{name}: corrupt capture: packet {packets + 1} at byte {offset} claims {captured} bytes "
                f"(snapshot length {snaplen})"
            )
        end = offset + _PCAP_RECORD_BYTES + captured
        if end > size:
            raise FormatError(
                f"{name}: truncated capture: packet {packets + 1} at byte {offset} needs {captured} "
                f"bytes, only {size - offset - _PCAP_RECORD_BYTES} remain"
            )
        offset, packets = end, packets + 1
    return packets


def _walk_pcapng(data: mmap.mmap, size: int, name: str | Path) -> int:
    offset, packets, order = 0, 0, "<"
    while offset < size:
        if size - offset < 12:
            raise FormatError(
                f"{name}: truncated capture: block at byte {offset} has only {size - offset} bytes"
            )
        if bytes(data[offset : offset + 4]) == PCAPNG_MAGIC:
            # a section header block sets the byte order of the blocks that follow
            marker = bytes(data[offset + 8 : offset + 12])
            if marker not in _PCAPNG_BYTE_ORDER:
                raise FormatError(f"{name}: corrupt capture: bad pcapng byte-order magic at byte {offset}")
            order = _PCAPNG_BYTE_ORDER[marker]
        kind, length = struct.unpack_from(order + "II", data, offset)
        if length < 12 or length % 4:
            raise FormatError(f"{name}: corrupt capture: pcapng block at byte {offset} has length {length}")
        if offset + length > size:
            raise FormatError(
                f"{name}: truncated capture: pcapng block at byte {offset} needs {length} bytes, "
                f"only {size - offset} remain"
            )
        packets += kind in _PCAPNG_PACKET_BLOCKS
        offset += length
    return packets


_START_LOCK = threading.Lock()

if "forkserver" in multiprocessing.get_all_start_methods():

    class MeterProcess(multiprocessing.context.ForkServerProcess):  # type: ignore[name-defined,misc]
        """A meter process started without the caller's ``__main__``: it runs nfstream's code alone,
        and a child that imported the main script would run an unguarded script's top level again
        (and pay for its imports)."""

        def start(self) -> None:
            # captures metered in parallel start meters from several threads: one swap at a time
            with _START_LOCK:
                main = sys.modules["__main__"]
                sys.modules["__main__"] = types.ModuleType("__main__")
                try:
                    super().start()
                finally:
                    sys.modules["__main__"] = main

        def __reduce_ex__(self, protocol: Any) -> Any:
            # the meter receives a plain fork-server process: the fork server need not import this
            # module (and with it nadkit's sources and Polars) to unpickle it
            plain = multiprocessing.context.ForkServerProcess
            return copyreg._reconstructor, (plain, object, None), dict(self.__dict__)

    class MeterContext(multiprocessing.context.ForkServerContext):  # type: ignore[name-defined,misc]
        """The fork-server context with :class:`MeterProcess` as its process."""

        Process = MeterProcess


@functools.cache
def _meter_context() -> Any:
    """The multiprocessing context nfstream's meters start from (see :func:`streamer`), or None
    where the platform has no fork server."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    context = MeterContext()
    # the server imports nfstream once; each meter is forked from it with it loaded
    context.set_forkserver_preload(["nfstream"])
    return context


def streamer(source: str, **options: Any) -> Any:
    """An ``nfstream.NFStreamer`` of ``source`` (a capture file or an interface) whose metering
    processes start from a fork server: a fresh, single-threaded process, so they cannot inherit a
    lock that one of this process's threads held at the moment of a fork (which hangs the meter).
    Where the platform has no fork server, nfstream's own choice stands."""
    nfstream = require("nfstream", "reading packet captures", "pcap")
    made = nfstream.NFStreamer(source=source, **options)
    context = _meter_context()
    if context is not None and hasattr(made, "_mp_context"):
        made._mp_context = context
    return made


def _meter(path: Path, settings: dict[str, Any], *, shown_as: Path) -> pl.DataFrame:
    """Run nfstream over a checked capture; every failure becomes a :class:`FormatError`."""
    kind, packets = check_capture(path, shown_as=shown_as)
    if packets == 0:
        log.warning("%s: the %s capture holds no packets", shown_as, kind)
        return pl.DataFrame(schema=NFSTREAM_FIELDS)
    options = dict(settings)
    max_flows = options.pop("max_flows", None)
    if max_flows is not None:
        # nfstream stops cleanly after the flow whose 0-based id equals max_nflows (one flow more);
        # leaving its generator early instead would leave its metering processes running
        options["max_nflows"] = max_flows
    options["n_meters"] = _meters(path, options.get("n_meters"))
    with _AffinityKept():
        try:
            flows = _collect(streamer(str(path), **options), shown_as)
        except FormatError:
            raise
        except Exception as error:  # nfstream raises bare ValueErrors (and worse) on captures it rejects
            raise FormatError(f"{shown_as}: nfstream could not read the capture ({error})") from error
    if flows is None:
        log.warning("%s: %d packets but no IP flows", shown_as, packets)
        return pl.DataFrame(schema=NFSTREAM_FIELDS)
    flows = flows.head(max_flows) if max_flows is not None else flows
    # nfstream hands flows over as they expire, from several metering processes: sort for a stable order
    return flows.sort(_ORDER, maintain_order=True)


#: flows turned into a table at a time while the meter runs (the work overlaps the metering)
_CHUNK_FLOWS = 16_384


def _collect(flows: Any, shown_as: Path) -> pl.DataFrame | None:
    """The flows an ``NFStreamer`` yields as one table of the fields the canonical table uses (None
    when it yields none). Each flow's fields are read at once (``attrgetter``), and the rows become a
    table chunk by chunk as they come, while the meter is still busy with the next ones. A chunk that
    cannot become a table stops the conversion but not the reading: the meters run to the end."""
    keys: list[str] = []
    getter: Callable[[Any], tuple[Any, ...]] | None = None
    rows: list[tuple[Any, ...]] = []
    frames: list[pl.DataFrame] = []
    failed: FormatError | None = None
    for flow in flows:
        if getter is None:
            names: list[str] = flow.keys()  # a method of nfstream's flows, not a mapping's
            keys = [key for key in names if key not in _UNUSED]
            getter = operator.attrgetter(*keys)
        try:
            rows.append(getter(flow))
        except AttributeError:  # a flow without one of the first flow's fields
            rows.append(tuple(getattr(flow, key, None) for key in keys))
        if len(rows) >= _CHUNK_FLOWS and failed is None:
            try:
                frames.append(_frame(rows, keys, shown_as))
            except FormatError as error:
                failed = error
            rows = []
    if failed is not None:
        raise failed
    if rows:
        frames.append(_frame(rows, keys, shown_as))
    if not frames:
        return None
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical_relaxed")


def _frame(rows: list[tuple[Any, ...]], keys: list[str], shown_as: Path) -> pl.DataFrame:
    overrides = {key: NFSTREAM_FIELDS[key] for key in keys if key in NFSTREAM_FIELDS}
    try:
        return pl.DataFrame(
            rows, schema=keys, schema_overrides=overrides, orient="row", infer_schema_length=None
        )
    except (pl.exceptions.PolarsError, TypeError, OverflowError) as error:  # a corrupt capture
        first = str(error).splitlines()[0]
        raise FormatError(f"{shown_as}: the capture gives flow values out of range ({first})") from None


def _meters(path: Path, wanted: int | None) -> int:
    """Metering processes for ``path``: ``wanted`` (at most the CPUs but one, nfstream's bound, said
    here rather than printed by nfstream), else one for a capture under :data:`LARGE_CAPTURE_BYTES`
    and 0 (nfstream's count for the CPUs) for a larger one."""
    cpus = _cpus()
    if wanted is None:
        return 0 if path.stat().st_size >= LARGE_CAPTURE_BYTES else 1
    most = max(1, cpus - 1)
    if wanted > most:
        log.info("%s: %d meters asked for, %d used (%d CPUs)", path, wanted, most, cpus)
    return min(wanted, most)


def _cpus() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class _AffinityKept:
    """Keeps this process's CPU affinity across metering: nfstream pins the process that reads the
    flows to the first two CPUs (its meters to the next ones), which would leave every later thread
    of this process (Polars', torch's) on two CPUs. The mask is saved when the first of the meterings
    under way starts and put back when the last ends (captures are metered in parallel too)."""

    _lock = threading.Lock()
    _active = 0
    _saved: set[int] | None = None

    def __enter__(self) -> None:
        if not hasattr(os, "sched_getaffinity"):
            return
        with _AffinityKept._lock:
            if _AffinityKept._active == 0:
                _AffinityKept._saved = os.sched_getaffinity(os.getpid())
            _AffinityKept._active += 1

    def __exit__(self, *_: object) -> None:
        if not hasattr(os, "sched_getaffinity"):
            return
        with _AffinityKept._lock:
            _AffinityKept._active -= 1
            saved = _AffinityKept._saved
            if _AffinityKept._active == 0 and saved and os.sched_getaffinity(os.getpid()) != saved:
                try:
                    os.sched_setaffinity(os.getpid(), saved)
                except OSError as error:  # pragma: no cover - a mask this process had before
                    log.debug("could not restore the CPU affinity: %s", error)


Item = TypeVar("Item")
Result = TypeVar("Result")


def capture_workers(count: int) -> int:
    """Captures metered at the same time when ``count`` are read: one per CPU (each meter is a
    process of its own; this process only collects the flows)."""
    return max(1, min(count, _cpus()))


def map_captures(
    function: Callable[[Item], Result],
    items: Sequence[Item],
    *,
    workers: int | None = None,
    on_done: Callable[[int, Item], None] | None = None,
) -> list[Result]:
    """``function`` over ``items`` (captures, or what names them), :func:`capture_workers` at a time,
    in threads: the metering runs in the meters' processes, so the threads overlap it. The results
    come in the order of ``items``; ``on_done(done, item)`` is called for each in that order once it
    has finished. The first error (in that order) is raised once the calls under way have finished;
    those not started are dropped."""
    workers = capture_workers(len(items)) if workers is None else max(1, workers)
    if workers == 1 or len(items) < 2:
        results = []
        for done, item in enumerate(items, start=1):
            results.append(function(item))
            if on_done is not None:
                on_done(done, item)
        return results
    _meter_context()  # the fork server's settings made once, before the threads start meters
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nadkit-capture") as pool:
        futures = [pool.submit(function, item) for item in items]
        for done, (future, item) in enumerate(zip(futures, items, strict=True), start=1):
            error = future.exception()  # waits for it
            if error is not None:
                for later in futures:
                    later.cancel()
                raise error  # leaving the pool waits for the calls under way
            if on_done is not None:
                on_done(done, item)
        return [future.result() for future in futures]


def _time_ms(source: str, dtype: pl.DataType | None) -> list[pl.Expr]:
    """Epoch milliseconds to UTC time with its invalid-value marker; integers without text parsing."""
    if dtype is None or not dtype.is_integer():
        return epoch_to_time(source, unit="ms")
    value = (pl.col(source).cast(pl.Int64) * 1000).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")
    invalid = value.is_null() & pl.col(source).is_not_null()
    return [value.alias("time"), invalid.alias(INVALID_PREFIX + "time")]


def turned_midstream(flows: pl.DataFrame) -> pl.DataFrame:
    """``flows`` with each TCP connection nfstream met after its handshake turned round where its
    first packet came from the server. nfstream's ``src`` is the side that sent the first packet seen,
    which for a connection already open when the capture began can be the server. Such a flow has no
    SYN either way; where its source port is the service's (:func:`nadkit.schema.service_port_first`),
    the flow is turned round: addresses, ports and every per-direction field (``src2dst_*`` with
    ``dst2src_*``). A flow with any SYN keeps nfstream's order (a scanner sending SYNs from port 53
    is still the source)."""
    needed = {"protocol", "src_port", "dst_port", "src2dst_syn_packets", "dst2src_syn_packets"}
    if flows.height == 0 or not needed <= set(flows.columns):
        return flows
    service_first = service_port_first(pl.col("src_port"), pl.col("dst_port"))
    no_handshake = (pl.col("src2dst_syn_packets") == 0) & (pl.col("dst2src_syn_packets") == 0)
    turn = flows.select(
        ((pl.col("protocol") == 6) & no_handshake & service_first).fill_null(False)
    ).to_series()
    if not turn.any():
        return flows
    columns = set(flows.columns)
    pairs = [(name, "dst" + name[3:]) for name in flows.columns if name.startswith("src_")]
    pairs += [(name, "dst2src" + name[7:]) for name in flows.columns if name.startswith("src2dst_")]
    swaps: list[pl.Expr] = []
    for first, second in pairs:
        if second in columns:
            swaps += [
                pl.when(turn).then(pl.col(second)).otherwise(pl.col(first)).alias(first),
                pl.when(turn).then(pl.col(first)).otherwise(pl.col(second)).alias(second),
            ]
    log.debug("%d TCP flows met after their handshake turned round", int(turn.sum()))
    return flows.with_columns(swaps)


def _canonical(flows: pl.DataFrame, label: str | None) -> pl.LazyFrame:
    flows = turned_midstream(flows)
    schema = flows.schema

    def number(source: str, dtype: pl.DataType, name: str) -> list[pl.Expr]:
        # nfstream's counters are numbers already: no text parsing (which cost more than the rest)
        return numeric(source, dtype, name, source_dtype=schema.get(source))

    milliseconds, invalid = number("bidirectional_duration_ms", pl.Float64(), "duration")
    canonical: dict[str, pl.Expr | list[pl.Expr]] = {
        "time": _time_ms("bidirectional_first_seen_ms", schema.get("bidirectional_first_seen_ms")),
        "src": text("src_ip", "src"),
        "dst": text("dst_ip", "dst"),
        "spt": number("src_port", pl.Int64(), "spt"),
        "dpt": number("dst_port", pl.Int64(), "dpt"),
        "proto": proto_name_expr("protocol").alias("proto"),
        "duration": [(milliseconds / 1000.0).alias("duration"), invalid],
        "out_bytes": number("src2dst_bytes", pl.Int64(), "out_bytes"),
        "in_bytes": number("dst2src_bytes", pl.Int64(), "in_bytes"),
        "out_pkts": number("src2dst_packets", pl.Int64(), "out_pkts"),
        "in_pkts": number("dst2src_packets", pl.Int64(), "in_pkts"),
    }
    # nfstream leaves the application fields out when nDPI is off (n_dissections=0)
    for source, target in (("application_name", "app"), ("application_category_name", "app_category")):
        if source in flows.columns:
            canonical[target] = text(pl.col(source).str.to_lowercase(), target)
    # the name asked for (DNS query, TLS server name, HTTP host) and the HTTP user agent, where nDPI
    # dissected them (nfstream's empty text where there is none becomes null)
    for source, target in (("requested_server_name", "server_name"), ("user_agent", "user_agent")):
        if source in flows.columns:
            canonical[target] = text(source, target)
    if label is not None:
        canonical["label"] = label_expr(pl.lit(label, pl.String)).alias("label")
        canonical["label_original"] = pl.lit(label, pl.String).alias("label_original")
    text_fields = {name for name, dtype in flows.schema.items() if dtype == pl.String}
    consumed = _MAPPED | _DROPPED | text_fields
    return build(flows.lazy(), canonical, consumed=consumed)
