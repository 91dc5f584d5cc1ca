"""Packet captures through nfstream: hand-built captures with known flows, the shared real captures, and
broken files (text named .pcap, truncated, corrupt, empty)."""

from __future__ import annotations

import gzip
import struct
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from nadkit.errors import ConfigError, FormatError
from nadkit.sources import detect_format, load_flows, pcap, read_flows
from nadkit.sources.pcap import check_capture
from tests.conftest import shared_file

BASE_TIME_S = 1_700_000_000  # 2023-11-14 22:13:20 UTC


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _udp_frame(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An Ethernet + IPv4 + UDP frame."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    addresses = bytes(int(part) for part in src.split(".")) + bytes(int(part) for part in dst.split("."))
    header = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0) + addresses
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    ethernet = bytes.fromhex("0200000000020200000000010800")
    return ethernet + header + udp


# one UDP conversation (2 requests, 1 answer) and one unanswered packet to another host
PACKETS: list[tuple[float, bytes]] = [
    (BASE_TIME_S + 0.250, _udp_frame("10.0.0.1", "10.0.0.2", 40000, 5000, b"x" * 10)),
    (BASE_TIME_S + 0.500, _udp_frame("10.0.0.2", "10.0.0.1", 5000, 40000, b"y" * 100)),
    (BASE_TIME_S + 1.750, _udp_frame("10.0.0.1", "10.0.0.2", 40000, 5000, b"z" * 20)),
    (BASE_TIME_S + 2.000, _udp_frame("10.0.0.1", "10.0.0.3", 40001, 6000, b"")),
]
FRAME_BYTES = [len(frame) for _, frame in PACKETS]  # 14 + 20 + 8 + payload


def _pcap(packets: list[tuple[float, bytes]]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for stamp, frame in packets:
        seconds, micros = int(stamp), round((stamp - int(stamp)) * 1e6)
        out += struct.pack("<IIII", seconds, micros, len(frame), len(frame)) + frame
    return out


def _block(kind: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("<II", kind, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


def _pcapng(packets: list[tuple[float, bytes]]) -> bytes:
    section = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    interface = _block(1, struct.pack("<HHI", 1, 0, 65535))
    out = section + interface
    for stamp, frame in packets:
        micros = round(stamp * 1e6)
        header = struct.pack("<IIIII", 0, micros >> 32, micros & 0xFFFFFFFF, len(frame), len(frame))
        out += _block(6, header + frame)
    return out


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _check_known_flows(frame: pl.DataFrame) -> None:
    assert frame.height == 2
    assert frame.schema["time"] == pl.Datetime("us", "UTC")
    first, second = frame.row(0, named=True), frame.row(1, named=True)
    assert first["time"] == datetime(2023, 11, 14, 22, 13, 20, 250000, tzinfo=UTC)
    assert (first["src"], first["spt"], first["dst"], first["dpt"], first["proto"]) == (
        "10.0.0.1",
        40000,
        "10.0.0.2",
        5000,
        "udp",
    )
    assert first["duration"] == 1.5
    assert (first["out_pkts"], first["in_pkts"]) == (2, 1)
    assert (first["out_bytes"], first["in_bytes"]) == (FRAME_BYTES[0] + FRAME_BYTES[2], FRAME_BYTES[1])
    assert (second["dst"], second["dpt"], second["out_pkts"], second["in_pkts"]) == ("10.0.0.3", 6000, 1, 0)
    assert second["duration"] == 0.0
    assert frame["ip_version"].to_list() == [4, 4]
    assert frame["vlan_id"].to_list() == [0, 0]
    for name, dtype in {
        "spt": pl.Int64,
        "out_bytes": pl.Int64,
        "duration": pl.Float64,
        "app": pl.String,
    }.items():
        assert frame.schema[name] == dtype, name
    for dropped in ("id", "src_mac", "bidirectional_first_seen_ms", "requested_server_name", "src_ip"):
        assert dropped not in frame.columns


@pytest.mark.parametrize("layout", ["pcap", "pcapng"])
def test_golden_hand_built_capture(tmp_path: Path, layout: str) -> None:
    data = _pcap(PACKETS) if layout == "pcap" else _pcapng(PACKETS)
    path = _write(tmp_path / f"two-flows.{layout}", data)
    assert check_capture(path) == (layout, 4)
    assert detect_format(path) == "pcap"
    frame, fmt = load_flows(path)
    assert fmt == "pcap"
    _check_known_flows(frame)
    assert "label" not in frame.columns


def test_label_option_and_gzip(tmp_path: Path) -> None:
    path = tmp_path / "scan.pcap.gz"
    path.write_bytes(gzip.compress(_pcap(PACKETS)))
    assert detect_format(path) == "pcap"
    lazy, _ = read_flows(path, label="PortScan")
    assert isinstance(lazy, pl.LazyFrame)
    frame = lazy.collect()
    assert frame["label"].to_list() == ["PortScan", "PortScan"]
    assert frame["label_original"].to_list() == ["PortScan", "PortScan"]
    benign, _ = load_flows(path, label="Benign", n_dissections=0)
    assert benign["label"].to_list() == ["normal", "normal"]
    assert "app" not in benign.columns  # nDPI off: no application names


def test_bad_options() -> None:
    capture = Path("unused.pcap")
    with pytest.raises(ConfigError, match="n_dissections"):
        pcap.read(capture, n_dissections=300)
    with pytest.raises(ConfigError, match="label"):
        pcap.read(capture, label="  ")
    with pytest.raises(ConfigError, match="max_flows"):
        pcap.read(capture, max_flows=0)


def test_text_file_named_pcap(tmp_path: Path) -> None:
    path = _write(tmp_path / "capture.pcap", b"this is not a capture\n")
    with pytest.raises(FormatError, match=str(path)):
        load_flows(path)
    with pytest.raises(FormatError, match="not a pcap"):
        load_flows(path, format="pcap")


@pytest.mark.parametrize("layout", ["pcap", "pcapng"])
def test_truncated_capture(tmp_path: Path, layout: str) -> None:
    data = _pcap(PACKETS) if layout == "pcap" else _pcapng(PACKETS)
    path = _write(tmp_path / f"cut.{layout}", data[:-7])
    with pytest.raises(FormatError, match="truncated") as caught:
        load_flows(path)
    assert str(path) in str(caught.value)
    assert ("packet 4" in str(caught.value)) == (layout == "pcap")


def test_truncated_file_header_and_corrupt_record(tmp_path: Path) -> None:
    data = _pcap(PACKETS)
    with pytest.raises(FormatError, match="file header"):
        load_flows(_write(tmp_path / "tiny.pcap", data[:10]))
    corrupt = bytearray(data)
    struct.pack_into("<I", corrupt, 24 + 8, 10_000_000)  # first record claims 10 MB
    with pytest.raises(FormatError, match="corrupt capture: packet 1"):
        load_flows(_write(tmp_path / "corrupt.pcap", bytes(corrupt)))


def test_empty_file_and_capture_without_packets(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="empty"):
        load_flows(_write(tmp_path / "empty.pcap", b""))
    with pytest.raises(FormatError, match="empty"):
        pcap.read(_write(tmp_path / "empty2.pcap", b""))
    frame, _ = load_flows(_write(tmp_path / "header-only.pcap", _pcap([])))
    assert frame.height == 0
    assert frame.schema["time"] == pl.Datetime("us", "UTC")
    assert {"src", "dst", "spt", "dpt", "proto", "out_bytes", "in_pkts"} <= set(frame.columns)


def test_every_shared_capture(shared_data: Path) -> None:
    captures = sorted((shared_data / "pcaps").rglob("*.pcap"))
    if not captures:
        pytest.skip(f"no captures under {shared_data / 'pcaps'}")
    for capture in captures:
        # quick settings (nDPI off, flows expiring after 1 s idle, at most 200 each); full reads with the
        # defaults run in the golden tests below and for every file in tests/e2e/test_shared_data.py
        frame, fmt = load_flows(capture, n_dissections=0, idle_timeout=1, max_flows=200)
        assert fmt == "pcap", capture
        assert 0 < frame.height <= 200, capture
        identifying = frame.select("time", "src", "dst", "spt", "dpt", "proto")
        assert identifying.null_count().row(0) == (0,) * 6, capture
        assert frame["time"].min() > datetime(2005, 1, 1, tzinfo=UTC), capture
        assert set(frame["proto"].unique()) <= {"tcp", "udp", "icmp", "ipv6-icmp", "igmp", "gre"}, capture
        assert (frame["out_pkts"] + frame["in_pkts"] > 0).all(), capture


def test_synscan_golden() -> None:
    path = shared_file("pcaps/attack/synscan.pcap")
    frame, _ = load_flows(path, label="synscan")
    # verified with tshark: 1994 SYNs from 172.16.0.8 to 1000 distinct ports of 64.13.134.52, 17 answers
    assert frame.height == 1994
    assert frame["src"].unique().to_list() == ["172.16.0.8"]
    assert frame["dst"].unique().to_list() == ["64.13.134.52"]
    assert frame["dpt"].n_unique() == 1000
    assert (frame["out_pkts"].sum(), frame["in_pkts"].sum()) == (1994, 17)
    assert frame["proto"].unique().to_list() == ["tcp"]
    first = frame.row(0, named=True)
    assert first["time"] == datetime(2010, 7, 4, 20, 24, 16, 274000, tzinfo=UTC)
    assert (first["spt"], first["dpt"], first["out_bytes"], first["app"]) == (36050, 443, 58, "tls")
    assert frame["label"].unique().to_list() == ["synscan"]


def test_masscan_and_ssh_golden() -> None:
    masscan, _ = load_flows(shared_file("pcaps/attack/masscan_tcp_0_1000_20190821.pcap"), n_dissections=0)
    # verified with tshark: 1001 SYNs, one to each port 0-1000
    assert masscan.height == 1001
    assert masscan["dpt"].n_unique() == 1001
    assert (masscan["dpt"].min(), masscan["dpt"].max()) == (0, 1000)
    ssh, _ = load_flows(shared_file("pcaps/benign/ssh.pcap"))
    # one TCP connection with a pause longer than nfstream's 120 s idle timeout: two flows whose
    # directions add up to tshark's per-host totals (159 packets / 15615 bytes out, 99 / 19931 in)
    assert ssh.height == 2
    assert ssh["app"].to_list() == ["ssh", "ssh"]
    assert (ssh["out_pkts"].sum(), ssh["out_bytes"].sum()) == (159, 15615)
    assert (ssh["in_pkts"].sum(), ssh["in_bytes"].sum()) == (99, 19931)
    assert ssh["duration"].to_list() == [77.289, 4.965]


def test_meters_start_from_a_fork_server(tmp_path: Path) -> None:
    """Metering forks no child from this process, which runs threads (torch's, servers' in the
    service tests): a thread holding a lock at the moment of a fork would leave the child waiting on
    it for ever. The fork server is one fresh process; it meters capture after capture."""
    import multiprocessing

    path = _write(tmp_path / "two-flows.pcap", _pcap(PACKETS))
    made = pcap.streamer(str(path), statistical_analysis=False)
    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("this platform has no fork server; nfstream's own start method is used")
    assert made._mp_context.get_start_method() == "forkserver"
    for _ in range(2):
        frame, _ = load_flows(path)
        _check_known_flows(frame)


def test_an_unguarded_script_reads_a_capture_once(tmp_path: Path) -> None:
    """A meter starts without the caller's main script: a script with no ``__main__`` guard is not
    run again in the meters (which would meter again, and again)."""
    import subprocess
    import sys

    path = _write(tmp_path / "two-flows.pcap", _pcap(PACKETS))
    script = tmp_path / "count.py"
    script.write_text(
        "from nadkit.sources import load_flows\n"
        f"frame, _ = load_flows({str(path)!r})\n"
        "print('flows', frame.height, flush=True)\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["flows 2"]


def _dns_query(name: str, ident: int) -> bytes:
    """A DNS query (one question, type A, class IN) for ``name``."""
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split(".")) + b"\x00"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + labels + struct.pack("!HH", 1, 1)


def test_dns_query_names_become_name_features(tmp_path: Path) -> None:
    """nDPI's query name is the flow's ``server_name``; a tunnel-like name stands out in the name
    features, a flow without a name has zeros."""
    from nadkit.features.names import NameGroup

    tunnel = "a9f3k2j1x7q0z8m4v6b5n2c1.t.example.net"
    packets = [
        (BASE_TIME_S + 0.1, _udp_frame("10.0.0.1", "10.0.0.53", 41000, 53, _dns_query("www.ntop.org", 1))),
        (BASE_TIME_S + 0.2, _udp_frame("10.0.0.1", "10.0.0.53", 41001, 53, _dns_query(tunnel, 2))),
        (BASE_TIME_S + 0.3, _udp_frame("10.0.0.1", "10.0.0.2", 40000, 5000, b"x" * 10)),
    ]
    frame, _ = load_flows(_write(tmp_path / "dns.pcap", _pcap(packets)))
    assert frame["server_name"].to_list() == ["www.ntop.org", tunnel, None]
    group = NameGroup()
    features = group.apply(frame, group.fit(frame))
    assert features["server_name_chars"].to_list() == [12.0, float(len(tunnel)), 0.0]
    assert features["server_name_labels"].to_list() == [3.0, 4.0, 0.0]
    assert features["server_name_longest"].to_list() == [4.0, 24.0, 0.0]
    entropy = features["server_name_entropy"].to_list()
    assert entropy[1] > entropy[0] > 0 and entropy[2] == 0.0


def _without_first_packets(source: Path, target: Path, skip: int) -> None:
    """A copy of the little-endian pcap ``source`` without its first ``skip`` packets: a capture that
    begins while connections are open."""
    data = source.read_bytes()
    out, offset, index = [data[:24]], 24, 0
    while offset + 16 <= len(data):
        length = struct.unpack("<IIII", data[offset : offset + 16])[2]
        if index >= skip:
            out.append(data[offset : offset + 16 + length])
        offset += 16 + length
        index += 1
    target.write_bytes(b"".join(out))


def test_connections_met_after_their_handshake_name_the_client(tmp_path: Path) -> None:
    """A capture that begins mid-connection: nfstream's first packet of some TLS connections comes
    from the server (port 443). Without a SYN either way the service port names the responder, so
    those flows come out turned round, oriented as the same connections are in the whole capture."""
    whole = shared_file("pcaps/benign/webex.pcap")
    cut = tmp_path / "midstream.pcap"
    _without_first_packets(whole, cut, 100)
    flows, _ = load_flows(cut)
    tcp = flows.filter(pl.col("proto") == "tcp")
    assert tcp.filter(pl.col("spt") == 443).height == 0
    met_late = tcp.filter((pl.col("src2dst_syn_packets") == 0) & (pl.col("dst2src_syn_packets") == 0))
    assert met_late.height >= 5
    full, _ = load_flows(whole)
    key = ["src", "spt", "dst", "dpt"]
    joined = met_late.join(full, on=key, how="left", suffix="_whole")
    # each is a connection of the whole capture, seen from the same side, with fewer of its bytes
    assert joined["out_bytes_whole"].null_count() == 0
    assert (joined["out_bytes"] <= joined["out_bytes_whole"]).all()
    assert (joined["in_bytes"] <= joined["in_bytes_whole"]).all()


def test_turned_midstream_swaps_every_per_direction_field() -> None:
    raw = pl.DataFrame(
        {
            "protocol": [6, 6, 17, 6],
            "src_ip": ["10.0.0.9", "10.0.0.5", "10.0.0.9", "10.0.0.5"],
            "dst_ip": ["10.0.0.1", "10.0.0.6", "10.0.0.1", "10.0.0.6"],
            "src_port": [443, 53, 53, 51000],
            "dst_port": [51000, 40000, 51000, 443],
            "src2dst_bytes": [900, 60, 80, 100],
            "dst2src_bytes": [100, 40, 0, 900],
            "src2dst_syn_packets": [0, 1, 0, 0],
            "dst2src_syn_packets": [0, 0, 0, 0],
            "src2dst_mean_ps": [90.0, 60.0, 80.0, 25.0],
            "dst2src_mean_ps": [25.0, 40.0, 0.0, 90.0],
        }
    )
    out = pcap.turned_midstream(raw)
    # the TLS server's packets first, no SYN: turned; a SYN from port 53 (a scanner's trick) and a
    # UDP answer keep their order; a client first is already right
    assert out["src_ip"].to_list() == ["10.0.0.1", "10.0.0.5", "10.0.0.9", "10.0.0.5"]
    assert out["dst_ip"].to_list() == ["10.0.0.9", "10.0.0.6", "10.0.0.1", "10.0.0.6"]
    assert out["src_port"].to_list() == [51000, 53, 53, 51000]
    assert out["dst_port"].to_list() == [443, 40000, 51000, 443]
    assert out["src2dst_bytes"].to_list() == [100, 60, 80, 100]
    assert out["dst2src_bytes"].to_list() == [900, 40, 0, 900]
    assert out["src2dst_mean_ps"].to_list() == [25.0, 60.0, 80.0, 25.0]
    assert out["dst2src_mean_ps"].to_list() == [90.0, 40.0, 0.0, 90.0]
