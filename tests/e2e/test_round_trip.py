"""Every column a reader writes passes through every entry point: the flows of each reader on the
shared data files (and of `mix-captures` on shared captures) written as nadkit writes them (canonical
CSV and JSON lines), then scored by `nadkit detect`, by `nadkit stream -` and by the service's
`/v1/score` (CSV and JSON), which keeps every column of an alerted flow in its store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import data_dir

ROWS = 200
TOKEN = "round-trip-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

#: one shared file per reader (captures: through `mix-captures`), and a text column it writes
#: beyond the canonical ones
SOURCES = {
    "unsw": ("unsw_nb15/UNSW_NB15_training-set.csv", "state"),
    "kdd": ("nsl_kdd/KDDTrain+_20Percent.txt", "attack_family"),
    "cic-sample": ("cicids2017/CICIDS2017_sample_km.csv", None),
    "cic-improved": ("cicids2017/CICIDS2017_improved_rnd5000_timesorted.csv", None),
    "zeek": ("iot23/CTU-IoT-Malware-Capture-42-1/conn.log.labeled", "conn_state"),
    "mix-captures": ("pcaps", "app_category"),
}


def _flows(name: str) -> pl.DataFrame:
    relative = SOURCES[name][0]
    path = data_dir() / relative
    if not path.exists():
        pytest.skip(f"real dataset file {path} not found (set NADKIT_DATA_DIR)")
    if name == "mix-captures":
        from nadkit.sources.captures import mix_captures

        benign = [path / "benign" / "ssh.pcap", path / "benign" / "signal.pcap"]
        return mix_captures(benign, [path / "attack" / "icmp-portscan.pcap"]).frame
    from nadkit.sources import load_flows

    frame = load_flows(path)[0]
    if name == "cic-sample":  # its first rows are attacks: half of them normal, to train a model on
        normal = frame["label"] == "normal"
        return pl.concat([frame.filter(normal).head(ROWS // 2), frame.filter(~normal).head(ROWS // 2)])
    return frame.head(ROWS)


@pytest.fixture(scope="module", params=sorted(SOURCES))
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A reader's flows as CSV and JSON lines, and a model trained on them."""
    from nadkit.training.fit import fit

    name = request.param
    folder = tmp_path_factory.mktemp(name)
    frame = _flows(name)
    extra = SOURCES[name][1]
    assert extra is None or frame.schema[extra] == pl.String, "the reader keeps its text column as text"
    frame.write_csv(folder / "flows.csv")
    frame.write_ndjson(folder / "flows.jsonl")
    frame.write_parquet(folder / "flows.parquet")
    fit(frame, model="iforest").save(folder / "model", onnx=False)
    return name, folder


def _nadkit(*args: str | Path, stdin: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    command = [sys.executable, "-m", "nadkit", *map(str, args)]
    if stdin is None:
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    with stdin.open() as handle:
        return subprocess.run(command, stdin=handle, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_detect_scores_every_flow(case: tuple[str, Path], kind: str) -> None:
    _, folder = case
    rows = pl.read_parquet(folder / "flows.parquet").height
    out = folder / f"detect-{kind}.jsonl"
    result = _nadkit(
        "detect", folder / "model", folder / f"flows.{kind}", "-o", out, "--all", "--json", "--force"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["flows"] == rows
    assert len(out.read_text().splitlines()) == rows


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_stream_reads_every_line(case: tuple[str, Path], kind: str) -> None:
    _, folder = case
    rows = pl.read_parquet(folder / "flows.parquet").height
    sink = f"file:{folder / f'stream-{kind}.jsonl'}"
    result = _nadkit(
        "stream", folder / "model", "-", "--all", "--sink", sink, "--json", stdin=folder / f"flows.{kind}"
    )
    assert result.returncode == 0, result.stderr
    counters = json.loads(result.stdout)
    assert counters["flows_scored"] == rows and not counters["source_stats"].get("bad_lines"), counters


def test_service_scores_and_stores_every_column(case: tuple[str, Path], tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from nadkit.lifecycle.registry import ModelRegistry
    from nadkit.service import create_app
    from nadkit.service.settings import Settings

    name, folder = case
    frame = pl.read_parquet(folder / "flows.parquet")
    registry = ModelRegistry(tmp_path / "models")
    registry.activate(registry.register(folder / "model").version)
    settings = Settings(db=tmp_path / "alerts.db", registry=tmp_path / "models", token=TOKEN)
    records = [json.loads(line) for line in (folder / "flows.jsonl").read_text().splitlines()]
    bodies = {
        "text/csv": (folder / "flows.csv").read_bytes(),
        "application/json": json.dumps(records).encode(),
    }
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        for content_type, body in bodies.items():
            answer = client.post("/v1/score", content=body, headers={**AUTH, "Content-Type": content_type})
            assert answer.status_code == 200, (content_type, answer.text)
            assert answer.json()["flows"] == frame.height
        stored = [r for r in answer.json()["results"] if r.get("alert_id")]
        listed = client.get("/v1/alerts", params={"limit": 1}, headers=AUTH).json()
        identifier = stored[0]["alert_id"] if stored else (listed.get("alerts") or [{}])[0].get("id")
        if identifier is None:
            pytest.skip(f"{name}: no flow alerted, so none is stored")
        flow = client.get(f"/v1/alerts/{identifier}", headers=AUTH).json()["flow"]
    kept = set(frame.columns) - {"label_original"}
    assert kept <= set(flow), f"columns not kept by the store: {sorted(kept - set(flow))}"
    extra = SOURCES[name][1]
    if extra is not None:
        assert flow[extra] in set(frame[extra].to_list())
