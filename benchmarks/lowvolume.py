"""Low-volume attacks against the detectors trained on the shared benign captures: the kinds of attack
that a few flows carry (a brute force, a slow scan, command-and-control beacons, a DNS tunnel), which
none of the shared attack captures is, written here as their tools' traffic looks.

Each attack is a capture of its own (written once with dpkt, cached), metered by nfstream:

* ``ssh-bruteforce``: one host tries passwords on another's SSH server: ``--sessions`` TCP sessions
  a few seconds apart (exponential gaps, 4 s on average), each the handshake, both version strings,
  the key exchange (KEXINIT about 1 kB each way, the ECDH pair, NEWKEYS), three encrypted password
  attempts and their failures, and the close, as hydra against OpenSSH looks.
* ``slow-scan``: one host probes port 80 of every address of its /24 in random order, one SYN every
  2 to 6 s; an open port answers SYN-ACK (and the scanner resets it), a closed one RST, most
  addresses nothing: nmap's ``-sS -p 80 -T2`` in shape.
* ``http-beacon``: an infected host asks its command server for work over HTTP every 60 s (plus or
  minus 10%): a short session each (the handshake, a ``GET`` with an id, a small reply, the close),
  ``--beacons`` of them.
* ``dns-tunnel``: one client sends ``--queries`` TXT queries to its resolver over about ten minutes
  (exponential gaps, 2 s on average), each name carrying 35 random bytes in base32 (56 characters
  in two labels) under one domain (``t.example-cdn.net``), and the resolver answers each with a TXT
  record of 120 random bytes in base64: what iodine or dnscat2 send, in shape. Each query and its
  answer are one flow (a new source port per query). :mod:`benchmarks.tunnel` measures it alone.

Protocol: the quality benchmark's ``pcaps`` split by seed (benign captures 60 / 20 / 20, the shared
attack captures on the validation side for the threshold by ``nadkit train``'s rule), the written
captures added to the test part. Columns per model and attack (mean over seeds): the share of the
attack's flows at or above the threshold, where its median flow ranks among the test part's normal
flows (1.0: above all of them), and the test part's false-positive rate; the last row per model is
the macro mean over the attacks.

Run: ``.venv/bin/python benchmarks/lowvolume.py [--models ae iforest ecod] [--seeds 3]
[--attacks ssh-bruteforce slow-scan http-beacon dns-tunnel]``; prints a table and writes
``benchmarks/results/lowvolume.json``.
"""

from __future__ import annotations

import argparse
import base64
import random
import socket
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import quality
from benchmarks.common import cache_dir, console, report
from nadkit.features.data import detector_data
from nadkit.features.pipeline import FeaturePipeline
from nadkit.sources import load_flows

CLIENT, RESOLVER = "192.168.1.50", "192.168.1.1"
DOMAIN = "t.example-cdn.net"
TUNNEL = "dns-tunnel"
START = 1_600_000_000.0
SYN, RST, PSH, ACK, FIN = 0x02, 0x04, 0x08, 0x10, 0x01


class Writer:
    """TCP sessions into a pcap, one packet at a time, each direction with its own sequence numbers."""

    def __init__(self, handle: Any) -> None:
        import dpkt

        self._writer = dpkt.pcap.Writer(handle)
        self._seq: dict[tuple[str, int, str, int], int] = {}

    def tcp(
        self, moment: float, src: str, sport: int, dst: str, dport: int, flags: int, data: bytes = b""
    ) -> None:
        import dpkt

        key, back = (src, sport, dst, dport), (dst, dport, src, sport)
        seq = self._seq.setdefault(key, zlib.crc32(repr(key).encode()))
        ack = self._seq.get(back, 0)
        segment = dpkt.tcp.TCP(
            sport=sport,
            dport=dport,
            seq=seq,
            ack=ack if flags & ACK else 0,
            flags=flags,
            win=64240,
            data=data,
        )
        self._seq[key] = (seq + len(data) + (1 if flags & (SYN | FIN) else 0)) & 0xFFFFFFFF
        ip = dpkt.ip.IP(
            src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=dpkt.ip.IP_PROTO_TCP, data=segment
        )
        ip.len, ip.ttl = len(ip), 64
        mac = b"\x02\x00\x00\x00\x00"
        self._writer.writepkt(
            bytes(dpkt.ethernet.Ethernet(src=mac + b"\x01", dst=mac + b"\x02", data=ip)), ts=moment
        )

    def exchange(
        self, moment: float, client: tuple[str, int], server: tuple[str, int], turns: list[tuple[bool, bytes]]
    ) -> float:
        """A whole session from ``moment``: the handshake, ``turns`` (client speaks: True, payload),
        each acknowledged, and the client's close; the time after its last packet."""
        rtt = 0.004
        c, s = client, server
        self.tcp(moment, *c, *s, SYN)
        self.tcp(moment + rtt / 2, *s, *c, SYN | ACK)
        moment += rtt
        self.tcp(moment, *c, *s, ACK)
        for from_client, payload in turns:
            moment += 0.002 if from_client else rtt / 2 + 0.001
            a, b = (c, s) if from_client else (s, c)
            self.tcp(moment, *a, *b, PSH | ACK, payload)
        moment += 0.01
        self.tcp(moment, *c, *s, FIN | ACK)
        self.tcp(moment + rtt / 2, *s, *c, FIN | ACK)
        self.tcp(moment + rtt, *c, *s, ACK)
        return moment + rtt


def _packet(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    import dpkt

    udp = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=dpkt.ip.IP_PROTO_UDP, data=udp)
    ip.len = len(ip)
    mac = b"\x02\x00\x00\x00\x00"
    return bytes(dpkt.ethernet.Ethernet(src=mac + b"\x01", dst=mac + b"\x02", data=ip))


def write_tunnel(path: Path, queries: int, seed: int = 1) -> Path:
    """The capture of the module docstring, written to ``path``."""
    import dpkt

    rng = random.Random(seed)
    with path.open("wb") as handle:
        writer = dpkt.pcap.Writer(handle)
        moment = START
        for _ in range(queries):
            moment += rng.expovariate(0.5)
            data = base64.b32encode(rng.randbytes(35)).decode().rstrip("=").lower()
            name = f"{data[:28]}.{data[28:]}.{DOMAIN}"
            question = dpkt.dns.DNS.Q(name=name, type=dpkt.dns.DNS_TXT)
            query = dpkt.dns.DNS(id=rng.randrange(65536), qd=[question])
            query.op = dpkt.dns.DNS_RD
            port = rng.randrange(20_000, 60_000)
            writer.writepkt(_packet(CLIENT, RESOLVER, port, 53, bytes(query)), ts=moment)
            text = base64.b64encode(rng.randbytes(120))
            record = dpkt.dns.DNS.RR(name=name, type=dpkt.dns.DNS_TXT, cls=dpkt.dns.DNS_IN, ttl=0)
            record.text, record.rdata = [text], bytes([len(text)]) + text
            answer = dpkt.dns.DNS(id=query.id, qd=[question], an=[record])
            answer.op = dpkt.dns.DNS_RA | dpkt.dns.DNS_QR | dpkt.dns.DNS_RD
            answered = moment + rng.uniform(0.01, 0.05)
            writer.writepkt(_packet(RESOLVER, CLIENT, 53, port, bytes(answer)), ts=answered)
    return path


def write_ssh_bruteforce(path: Path, sessions: int, seed: int = 2) -> Path:
    rng = random.Random(seed)
    attacker, server = "192.168.1.66", "192.168.1.10"
    with path.open("wb") as handle:
        writer, moment = Writer(handle), START
        for _ in range(sessions):
            moment += rng.expovariate(0.25)
            turns = [
                (False, b"SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.1\r\n"),
                (True, b"SSH-2.0-libssh_0.9.6\r\n"),
                (True, rng.randbytes(rng.randrange(900, 1100))),  # KEXINIT
                (False, rng.randbytes(rng.randrange(1000, 1200))),
                (True, rng.randbytes(48)),  # ECDH init
                (False, rng.randbytes(rng.randrange(480, 560))),  # ECDH reply, NEWKEYS
                (True, rng.randbytes(16)),  # NEWKEYS
                (True, rng.randbytes(44)),  # service request
                (False, rng.randbytes(44)),
            ]
            for _ in range(3):  # three passwords a session, each refused
                turns += [(True, rng.randbytes(rng.choice((84, 100, 116)))), (False, rng.randbytes(52))]
            moment = writer.exchange(moment, (attacker, rng.randrange(32768, 61000)), (server, 22), turns)
    return path


def write_slow_scan(path: Path, probes: int, seed: int = 3) -> Path:
    rng = random.Random(seed)
    scanner = "192.168.1.66"
    targets = [f"192.168.1.{i}" for i in rng.sample(range(1, 255), k=min(probes, 254))]
    listening = set(rng.sample(targets, k=max(1, len(targets) // 20)))
    closed = set(rng.sample(sorted(set(targets) - listening), k=max(1, len(targets) // 10)))
    port = rng.randrange(32768, 61000)  # nmap keeps its source port
    with path.open("wb") as handle:
        writer, moment = Writer(handle), START
        for target in targets:
            moment += rng.uniform(2.0, 6.0)
            writer.tcp(moment, scanner, port, target, 80, SYN)
            if target in listening:
                writer.tcp(moment + 0.002, target, 80, scanner, port, SYN | ACK)
                writer.tcp(moment + 0.003, scanner, port, target, 80, RST)
            elif target in closed:
                writer.tcp(moment + 0.002, target, 80, scanner, port, RST | ACK)
    return path


def write_http_beacon(path: Path, beacons: int, seed: int = 4) -> Path:
    rng = random.Random(seed)
    bot, server = "192.168.1.77", "203.0.113.50"
    bot_id = rng.randbytes(8).hex()
    with path.open("wb") as handle:
        writer, moment = Writer(handle), START
        for _ in range(beacons):
            moment += 60.0 * rng.uniform(0.9, 1.1)
            request = (
                f"GET /api/v2/poll?id={bot_id}&t={int(moment)} HTTP/1.1\r\nHost: cdn-update-check.net\r\n"
                "User-Agent: Mozilla/5.0 (Windows NT 10.0; Win64; x64)\r\nAccept: */*\r\n\r\n"
            ).encode()
            body = rng.randbytes(24).hex().encode()
            reply = (
                b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/plain\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            writer.exchange(
                moment, (bot, rng.randrange(49152, 65535)), (server, 80), [(True, request), (False, reply)]
            )
    return path


#: attack name -> (writer, the option giving its size, the size's default)
ATTACKS: dict[str, tuple[Callable[[Path, int], Path], str, int]] = {
    "ssh-bruteforce": (write_ssh_bruteforce, "sessions", 40),
    "slow-scan": (write_slow_scan, "probes", 60),
    "http-beacon": (write_http_beacon, "beacons", 20),
    TUNNEL: (write_tunnel, "queries", 300),
}


def attack_flows(name: str, size: int) -> pl.DataFrame:
    """The written capture's flows through nfstream, labelled with the attack (capture and flows
    cached)."""
    write, _, _ = ATTACKS[name]
    folder = cache_dir() / f"{name}-{size}"
    folder.mkdir(parents=True, exist_ok=True)
    capture = folder / f"{name}.pcap"
    if not capture.exists():
        write(capture, size)
    cached = folder / "flows.parquet"
    if not cached.exists():
        load_flows(capture, format="pcap")[0].write_parquet(cached)
    labels = [pl.lit(name).alias("label"), pl.lit(name).alias("capture")]
    return pl.read_parquet(cached).with_columns(labels)


def measure(
    models: list[str], seed: int, attacks: dict[str, pl.DataFrame]
) -> dict[str, dict[str, dict[str, float]]]:
    """Each model on one seed's split with the ``attacks`` added to its test part: per attack, the
    share of its flows flagged and its median flow's rank among the normal test flows, and the
    false-positive rate (the split read and each feature set computed once)."""
    protocol = quality.pcaps(seed)
    test = pl.concat([protocol.test, *attacks.values()], how="diagonal_relaxed").sort("time")
    attack = quality._attack(test)
    captures = test["capture"].to_numpy().astype(str)
    featurized: dict[Any, tuple[Any, Any, Any]] = {}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in models:
        model, changes, options = quality.split_name(name)
        detector = quality.configure(model, seed, 60.0, options)
        features = quality.feature_config(detector, changes)
        if features not in featurized:  # one fit per feature setting
            pipeline = FeaturePipeline(features).fit(protocol.train)
            parts = (protocol.train, protocol.validation, test)
            featurized[features] = tuple(detector_data(pipeline, part) for part in parts)
        train, validation, scored = featurized[features]
        detector.fit(train)
        value, _ = quality.threshold(detector.score(validation), quality._attack(protocol.validation))
        scores = detector.score(scored)
        normal = np.sort(scores[~attack])
        fpr = float(np.mean(normal >= value))
        out[name] = {}
        for written in attacks:
            rows = captures == written
            out[name][written] = {
                "detected": float(np.mean(scores[rows] >= value)),
                "median_rank": float(np.searchsorted(normal, np.median(scores[rows])) / len(normal)),
                "fpr": fpr,
            }
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["ae", "iforest", "ecod"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--attacks", nargs="+", default=list(ATTACKS), choices=list(ATTACKS))
    for _, option, default in ATTACKS.values():
        parser.add_argument(f"--{option}", type=int, default=default)
    parser.add_argument("--out", default="lowvolume", help="name of the result file")
    args = parser.parse_args(argv)
    attacks = {name: attack_flows(name, getattr(args, ATTACKS[name][1])) for name in args.attacks}
    by_seed = []
    for seed in range(args.seeds):
        with console.status(f"seed {seed}: {', '.join(args.models)} on the benign captures"):
            by_seed.append(measure(args.models, seed, attacks))
    rows = []
    for name in args.models:
        means = {}
        for written, flows in attacks.items():
            runs = [measured[name][written] for measured in by_seed]
            means[written] = {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}
            rows.append(
                {
                    "model": name,
                    "attack": written,
                    "flows": flows.height,
                    **{key: round(value, 4) for key, value in means[written].items()},
                    "detected per seed": " / ".join(f"{r['detected']:.3f}" for r in runs),
                }
            )
        rows.append(
            {
                "model": name,
                "attack": "macro mean",
                "flows": sum(flows.height for flows in attacks.values()),
                **{
                    key: round(float(np.mean([m[key] for m in means.values()])), 4)
                    for key in ("detected", "median_rank", "fpr")
                },
                "detected per seed": "",
            }
        )
    report(
        args.out,
        "Low-volume attacks written for the purpose against detectors trained on the shared benign "
        "captures (mean of seeds)",
        ["model", "attack", "flows", "detected", "median_rank", "fpr", "detected per seed"],
        rows,
    )


if __name__ == "__main__":
    main()
