"""A DNS tunnel against the detectors trained on the shared benign captures: none of the shared
attack captures is a tunnel, so this one is written here, as a tunnel tool's traffic looks.

The capture (written once, cached): one client sends ``--queries`` TXT queries to its resolver over
about ten minutes (exponential gaps, 2 s on average), each name carrying 35 random bytes in base32
(56 characters in two labels) under one domain (``t.example-cdn.net``), and the resolver answers
each with a TXT record of 120 random bytes in base64: what iodine or dnscat2 send, in shape. Each
query and its answer are one flow (a new source port per query).

Protocol: the quality benchmark's ``pcaps`` split by seed (benign captures 60 / 20 / 20, the
attack captures on the validation side for the threshold by ``nadkit train``'s rule), the tunnel
added to the test part. Columns: the share of the tunnel's flows at or above the threshold, the
test part's false-positive rate, and where the tunnel's median flow ranks among the test part's
normal flows (1.0: above all of them), mean over seeds.

Run: ``.venv/bin/python benchmarks/tunnel.py [--models ae ae+names iforest ecod] [--seeds 3]
[--queries 300]``; prints a table and writes ``benchmarks/results/tunnel.json``.
"""

from __future__ import annotations

import argparse
import base64
import random
import socket
import sys
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
    start = 1_600_000_000.0
    with path.open("wb") as handle:
        writer = dpkt.pcap.Writer(handle)
        moment = start
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


def tunnel_flows(queries: int) -> pl.DataFrame:
    """The tunnel capture's flows through nfstream, labelled (capture and flows cached)."""
    folder = cache_dir() / f"tunnel-{queries}"
    folder.mkdir(parents=True, exist_ok=True)
    capture = folder / f"{TUNNEL}.pcap"
    if not capture.exists():
        write_tunnel(capture, queries)
    cached = folder / "flows.parquet"
    if not cached.exists():
        load_flows(capture, format="pcap")[0].write_parquet(cached)
    labels = [pl.lit(TUNNEL).alias("label"), pl.lit(TUNNEL).alias("capture")]
    return pl.read_parquet(cached).with_columns(labels)


def measure(models: list[str], seed: int, tunnel: pl.DataFrame) -> dict[str, dict[str, float]]:
    """Each model on one seed's split (the split read and each feature set computed once)."""
    protocol = quality.pcaps(seed)
    test = pl.concat([protocol.test, tunnel], how="diagonal_relaxed")
    attack = quality._attack(test)
    tunnel_rows = test["capture"].to_numpy().astype(str) == TUNNEL
    featurized: dict[tuple[str, ...], tuple[Any, Any, Any]] = {}
    out = {}
    for name in models:
        model, changes, options = quality.split_name(name)
        detector = quality.configure(model, seed, 60.0, options)
        features = quality.feature_config(detector, changes)
        if features.groups not in featurized:
            pipeline = FeaturePipeline(features).fit(protocol.train)
            parts = (protocol.train, protocol.validation, test)
            featurized[features.groups] = tuple(detector_data(pipeline, part) for part in parts)
        train, validation, scored = featurized[features.groups]
        detector.fit(train)
        value, _ = quality.threshold(detector.score(validation), quality._attack(protocol.validation))
        scores = detector.score(scored)
        normal = np.sort(scores[~attack])
        out[name] = {
            "detected": float(np.mean(scores[tunnel_rows] >= value)),
            "fpr": float(np.mean(normal >= value)),
            "median_rank": float(np.searchsorted(normal, np.median(scores[tunnel_rows])) / len(normal)),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["ae", "ae+names", "iforest", "ecod"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    tunnel = tunnel_flows(args.queries)
    by_seed = []
    for seed in range(args.seeds):
        with console.status(f"seed {seed}: {', '.join(args.models)} on the benign captures"):
            by_seed.append(measure(args.models, seed, tunnel))
    rows = []
    for name in args.models:
        runs = [measured[name] for measured in by_seed]
        rows.append(
            {
                "model": name,
                "tunnel flows": tunnel.height,
                **{key: round(float(np.mean([r[key] for r in runs])), 4) for key in runs[0]},
                "detected per seed": " / ".join(f"{r['detected']:.3f}" for r in runs),
            }
        )
    report(
        "tunnel",
        "A DNS tunnel against detectors trained on the shared benign captures (mean of seeds)",
        ["model", "tunnel flows", "detected", "fpr", "median_rank", "detected per seed"],
        rows,
    )


if __name__ == "__main__":
    main()
