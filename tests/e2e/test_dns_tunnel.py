"""A DNS tunnel as a user meets it: `ae` trained with the name features (`nadkit train --names`) on
the shared benign captures, then `nadkit detect --all` on a capture of queries that carry
base32-encoded data in their names (as iodine or dnscat do; written here packet by packet). The
queries' names reach the model and its explanations: the queries rank among the top few percent of
the normal hold-out, and the names explain each alert: their shape, or how many distinct names the
host asked under one domain in the burst (``seg_domain_names``)."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import polars as pl
import pytest

from tests.e2e.test_cli_inputs import nadkit
from tests.sources.test_pcap import BASE_TIME_S, _dns_query, _pcap, _udp_frame

pytestmark = pytest.mark.slow


def _tunnel_capture(path: Path, queries: int = 120) -> Path:
    """``queries`` DNS queries to a public resolver, each naming 35 random bytes in base32, in labels
    of up to 50 characters under one domain, 0.2-1.5 s apart."""
    rng = random.Random(0)
    packets, stamp = [], float(BASE_TIME_S)
    for number in range(queries):
        encoded = base64.b32encode(rng.randbytes(35)).decode().rstrip("=").lower()
        name = ".".join(encoded[i : i + 50] for i in range(0, len(encoded), 50)) + ".t.tunnel-example.net"
        stamp += rng.uniform(0.2, 1.5)
        frame = _udp_frame("192.168.1.50", "8.8.8.8", 30000 + number, 53, _dns_query(name, number + 1))
        packets.append((stamp, frame))
    path.write_bytes(_pcap(packets))
    return path


def test_a_dns_tunnel_is_explained_by_its_query_names(shared_data: Path, tmp_path: Path) -> None:
    tunnel = _tunnel_capture(tmp_path / "tunnel.pcap")
    model = tmp_path / "model"
    trained = nadkit("train", shared_data / "pcaps" / "benign", "-o", model, "--model", "ae", "--names")
    assert trained.returncode == 0, trained.stderr
    pipeline = json.loads((model / "pipeline.json").read_text())
    assert "names" in pipeline["config"]["groups"]
    scored = tmp_path / "scored.jsonl"
    detected = nadkit("detect", model, tunnel, "--out", scored, "--all", "--json")
    assert detected.returncode == 0, detected.stderr
    summary = json.loads(detected.stdout)
    assert summary["flows"] == summary["written"] == 120
    records = pl.read_ndjson(scored)
    percentiles = records["score_percentile"].to_numpy()
    assert (percentiles >= 97).mean() >= 0.9, percentiles  # above 97% of the normal hold-out
    alerts = records.filter(pl.col("alert"))
    assert alerts.height == summary["alerts"]
    assert alerts.height
    for explanation in alerts["explanation"].to_list():
        assert "name asked for" in explanation or "names asked under this domain" in explanation, explanation
