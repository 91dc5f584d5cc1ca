"""The capture path's speed work keeps its results: chunked flow collection, several captures metered
in parallel (same table, same order as one by one), the meters' count, and the CPU affinity that
nfstream changes put back."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from nadkit.errors import ConfigError, FormatError
from nadkit.sources import load_flows, pcap
from tests.sources.test_pcap import BASE_TIME_S, PACKETS, _check_known_flows, _pcap, _udp_frame, _write

pytest.importorskip("nfstream")


def _many_flows(count: int) -> bytes:
    """``count`` one-packet UDP flows, each to another port."""
    packets = [
        (BASE_TIME_S + index * 0.001, _udp_frame("10.0.0.1", "10.0.0.2", 40000, 1000 + index, b"q"))
        for index in range(count)
    ]
    return _pcap(packets)


def test_flows_collected_in_chunks_make_one_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "many.pcap", _many_flows(50))
    whole, _ = load_flows(path)
    monkeypatch.setattr(pcap, "_CHUNK_FLOWS", 7)
    chunked, _ = load_flows(path)
    assert chunked.height == 50
    assert chunked.equals(whole)
    assert chunked["dpt"].to_list() == list(range(1000, 1050))
    limited, _ = load_flows(path, max_flows=10)
    assert limited.height == 10


def test_unused_fields_are_never_copied() -> None:
    assert {"id", "src_mac", "dst_oui", "client_fingerprint", "src2dst_last_seen_ms"} <= pcap._UNUSED
    kept = {"bidirectional_first_seen_ms", "src_ip", "dst_ip", "application_name", "requested_server_name"}
    assert not (kept | {"user_agent"}) & pcap._UNUSED


def test_captures_read_in_parallel_match_one_by_one(tmp_path: Path) -> None:
    folder = tmp_path / "captures"
    folder.mkdir()
    _write(folder / "a.pcap", _pcap(PACKETS))
    _write(folder / "b.pcap", _many_flows(30))
    _write(folder / "c.pcap", _pcap(PACKETS[:1]))
    seen: list[tuple[int, int, str]] = []
    together, fmt = load_flows(folder, on_file=lambda done, total, f: seen.append((done, total, f.name)))
    assert fmt == "pcap"
    one_by_one = pl.concat(
        [load_flows(folder / name)[0] for name in ("a.pcap", "b.pcap", "c.pcap")], how="diagonal_relaxed"
    )
    assert together.equals(one_by_one)
    assert seen == [(1, 3, "a.pcap"), (2, 3, "b.pcap"), (3, 3, "c.pcap")]
    _check_known_flows(together.head(2))


def test_a_bad_capture_among_several_names_its_file(tmp_path: Path) -> None:
    folder = tmp_path / "captures"
    folder.mkdir()
    _write(folder / "a.pcap", _pcap(PACKETS))
    _write(folder / "b.pcap", _pcap(PACKETS)[:-5])  # cut inside its last packet
    with pytest.raises(FormatError, match=r"b\.pcap: truncated capture"):
        load_flows(folder)


def test_map_captures_keeps_order_and_raises_the_first_error() -> None:
    def slow_square(value: int) -> int:
        time.sleep(0.02 * (5 - value))
        if value == 3:
            raise ValueError("three")
        return value * value

    assert pcap.map_captures(lambda v: v * v, [1, 2, 3, 4], workers=2) == [1, 4, 9, 16]
    with pytest.raises(ValueError, match="three"):
        pcap.map_captures(slow_square, [1, 2, 3, 4], workers=2)
    started: list[int] = []

    def fail_early(value: int) -> int:
        started.append(value)
        if value == 0:
            raise ValueError("zero")
        time.sleep(0.05)
        return value

    with pytest.raises(ValueError, match="zero"):  # not the cancelled calls' CancelledError
        pcap.map_captures(fail_early, list(range(20)), workers=2)
    assert len(started) < 20
    assert pcap.capture_workers(1) == 1
    assert 1 <= pcap.capture_workers(100) <= (os.cpu_count() or 1)


def test_meters(tmp_path: Path) -> None:
    small = _write(tmp_path / "small.pcap", _pcap(PACKETS))
    assert pcap._meters(small, None) == 1
    assert pcap._meters(small, 1) == 1
    assert pcap._meters(small, 10_000) == max(1, pcap._cpus() - 1)
    frame, _ = load_flows(small, n_meters=1)
    _check_known_flows(frame)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ConfigError, match="n_meters"):
            pcap.read(small, n_meters=bad)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="no CPU affinity on this platform")
def test_cpu_affinity_is_put_back(tmp_path: Path) -> None:
    """nfstream pins the process that reads its flows to its first CPUs; the reader undoes that."""
    path = _write(tmp_path / "two-flows.pcap", _pcap(PACKETS))
    before = os.sched_getaffinity(os.getpid())
    load_flows(path)
    assert os.sched_getaffinity(os.getpid()) == before
    # also from a worker thread (captures metered in parallel): the main thread's mask is kept
    worker = threading.Thread(target=load_flows, args=(path,))
    worker.start()
    worker.join()
    assert os.sched_getaffinity(os.getpid()) == before
