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
that sent the first packet), ``dst_ip``/``dst_port`` -> ``dst``/``dpt``; ``protocol`` number ->
``proto`` name; ``application_name`` lower-cased -> ``app`` (nDPI names such as ``tls.google``);
``bidirectional_duration_ms`` / 1000 -> ``duration``; ``src2dst_bytes``/``src2dst_packets`` ->
``out_bytes``/``out_pkts``; ``dst2src_bytes``/``dst2src_packets`` -> ``in_bytes``/``in_pkts``;
``application_category_name`` lower-cased -> ``app_category`` (text). The other numeric fields
(``ip_version``, ``vlan_id``, ``tunnel_id``, ``expiration_id``, ``bidirectional_packets``,
``application_confidence``, per-direction durations, ...) are kept; the flow id, absolute
timestamps, MAC addresses, server names, fingerprints and user agents are dropped. With the read
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
can fork a child that deadlocks on a lock one of them held, and the meter would never answer.
"""

from __future__ import annotations

import functools
import logging
import mmap
import multiprocessing
import multiprocessing.context
import struct
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import polars as pl

from nadkit.errors import ConfigError, FormatError, require
from nadkit.schema import label_expr, proto_name_expr
from nadkit.sources.base import Head, bounded_gunzip, build, epoch_to_time, numeric, text

log = logging.getLogger(__name__)

NAME = "pcap"
DESCRIPTION = "packet capture (pcap / pcapng), metered into bidirectional flows by nfstream"
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
DEFAULT_DISSECTIONS = 20
_ORDER = ["bidirectional_first_seen_ms", "src_ip", "src_port", "dst_ip", "dst_port", "protocol"]


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
    **_: object,
) -> pl.LazyFrame:
    """Meter a capture into flows (eagerly: nfstream is not lazy) and map them to the canonical table."""
    settings = _settings(label, n_dissections, idle_timeout, active_timeout, max_flows)
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
    label: object, n_dissections: object, idle_timeout: object, active_timeout: object, max_flows: object
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


if "forkserver" in multiprocessing.get_all_start_methods():

    class MeterProcess(multiprocessing.context.ForkServerProcess):  # type: ignore[name-defined,misc]
        """A meter process started without the caller's ``__main__``: it runs nfstream's code alone,
        and a child that imported the main script would run an unguarded script's top level again
        (and pay for its imports)."""

        def start(self) -> None:
            main = sys.modules["__main__"]
            sys.modules["__main__"] = types.ModuleType("__main__")
            try:
                super().start()
            finally:
                sys.modules["__main__"] = main

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
    # the server imports nfstream and this module once; each meter is forked from it with them loaded
    context.set_forkserver_preload(["nfstream", __name__])
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
    keys: list[str] | None = None
    rows: list[list[object]] = []
    try:
        for flow in streamer(str(path), **options):
            if keys is None:
                keys = list(flow.keys())
            rows.append(flow.values())
    except Exception as error:  # nfstream raises bare ValueErrors (and worse) on captures it rejects
        raise FormatError(f"{shown_as}: nfstream could not read the capture ({error})") from error
    rows = rows[:max_flows] if max_flows is not None else rows
    if keys is None:
        log.warning("%s: %d packets but no IP flows", shown_as, packets)
        return pl.DataFrame(schema=NFSTREAM_FIELDS)
    overrides = {key: NFSTREAM_FIELDS[key] for key in keys if key in NFSTREAM_FIELDS}
    try:
        flows = pl.DataFrame(
            rows, schema=keys, schema_overrides=overrides, orient="row", infer_schema_length=None
        )
    except pl.exceptions.PolarsError as error:  # a corrupt capture metered into impossible values
        first = str(error).splitlines()[0]
        raise FormatError(f"{shown_as}: the capture gives flow values out of range ({first})") from None
    # nfstream hands flows over as they expire, from several metering processes: sort for a stable order
    return flows.sort(_ORDER, maintain_order=True)


def _canonical(flows: pl.DataFrame, label: str | None) -> pl.LazyFrame:
    milliseconds, invalid = numeric("bidirectional_duration_ms", pl.Float64(), "duration")
    canonical: dict[str, pl.Expr | list[pl.Expr]] = {
        "time": epoch_to_time("bidirectional_first_seen_ms", unit="ms"),
        "src": text("src_ip", "src"),
        "dst": text("dst_ip", "dst"),
        "spt": numeric("src_port", pl.Int64(), "spt"),
        "dpt": numeric("dst_port", pl.Int64(), "dpt"),
        "proto": proto_name_expr("protocol").alias("proto"),
        "duration": [(milliseconds / 1000.0).alias("duration"), invalid],
        "out_bytes": numeric("src2dst_bytes", pl.Int64(), "out_bytes"),
        "in_bytes": numeric("dst2src_bytes", pl.Int64(), "in_bytes"),
        "out_pkts": numeric("src2dst_packets", pl.Int64(), "out_pkts"),
        "in_pkts": numeric("dst2src_packets", pl.Int64(), "in_pkts"),
    }
    # nfstream leaves the application fields out when nDPI is off (n_dissections=0)
    for source, target in (("application_name", "app"), ("application_category_name", "app_category")):
        if source in flows.columns:
            canonical[target] = text(pl.col(source).str.to_lowercase(), target)
    if label is not None:
        canonical["label"] = label_expr(pl.lit(label, pl.String)).alias("label")
        canonical["label_original"] = pl.lit(label, pl.String).alias("label_original")
    text_fields = {name for name, dtype in flows.schema.items() if dtype == pl.String}
    consumed = _MAPPED | _DROPPED | text_fields
    return build(flows.lazy(), canonical, consumed=consumed)
