"""ECS output for real: `nadkit detect --out-format ecs` (alerts and incidents) and `nadkit stream
--sink-format ecs` write documents a SIEM reads, with the same flows' Community IDs, while the default
outputs stay nadkit's records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from nadkit.alerts.ecs import community_id
from nadkit.simulate import SimulationConfig, simulate
from nadkit.training.fit import fit
from tests.alerts.test_ecs import check_document, reference_community_id
from tests.e2e.test_cli_inputs import assert_one_line_error, nadkit

NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An isolation-forest bundle fitted on one simulated day, and the flows of the next."""
    root = tmp_path_factory.mktemp("cli-ecs")
    days = simulate(SimulationConfig(days=2, flows_per_day=3000, seed=11))
    first = days["time"].dt.day().min()
    fit(days.filter(pl.col("time").dt.day() == first), model="iforest").save(root / "bundle", onnx=False)
    days.filter(pl.col("time").dt.day() != first).write_csv(root / "flows.csv")
    return root


def read_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_detect_writes_ecs_alerts_and_incidents(folder: Path, tmp_path: Path) -> None:
    out, incidents = tmp_path / "alerts.json", tmp_path / "incidents.json"
    result = nadkit(
        "detect",
        folder / "bundle",
        folder / "flows.csv",
        "--out",
        out,
        "--out-format",
        "ecs",
        "--incidents",
        incidents,
    )
    assert result.returncode == 0, result.stderr
    documents = read_lines(out)
    assert documents, "no alerts written"
    plain = tmp_path / "alerts.jsonl"
    assert nadkit("detect", folder / "bundle", folder / "flows.csv", "--out", plain).returncode == 0
    records = read_lines(plain)
    assert len(records) == len(documents)
    for document, record in zip(documents, records, strict=True):
        flat = check_document(document)
        assert flat["event.kind"] == "alert" and flat["event.module"] == "nadkit"
        assert (flat["source.ip"], flat["destination.ip"]) == (record["src"], record["dst"])
        assert flat["nadkit"]["row"] == record["row"] and flat["nadkit"]["score"] == record["score"]
        assert flat["@timestamp"] == record["time"]
        proto = str(record["proto"])
        if proto in NUMBERS:
            expected = reference_community_id(
                str(record["src"]), str(record["dst"]), NUMBERS[proto], record["spt"], record["dpt"]
            )
            assert flat["network.community_id"] == expected
    assert "score" in records[0] and "event" not in records[0]  # the default is unchanged

    grouped = read_lines(incidents)
    assert grouped
    for document in grouped:
        flat = check_document(document)
        assert flat["event.type"] == ["info"] and flat["event.dataset"] == "nadkit.incidents"
    alerts = sum(int(d["nadkit"]["incident"]["alerts"]) for d in grouped)  # type: ignore[index]
    assert alerts == len(documents)

    assert_one_line_error(
        nadkit(
            "detect",
            folder / "bundle",
            folder / "flows.csv",
            "--out",
            tmp_path / "a.csv",
            "--out-format",
            "ecs",
        ),
        "JSON lines",
    )


@pytest.mark.slow
def test_stream_sinks_write_ecs(folder: Path, tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    data = (folder / "flows.csv").read_bytes()
    out, store = tmp_path / "stream.json", tmp_path / "alerts.db"
    command = [sys.executable, "-m", "nadkit", "stream", "-b", str(folder / "bundle"), "-s", "-", "--all"]
    command += ["--sink-format", "ecs", "--sink", f"file:{out}", "--sink", f"sqlite:{store}", "--json"]
    result = subprocess.run(command, input=data, capture_output=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr.decode()
    flows = pl.read_csv(folder / "flows.csv").height
    assert json.loads(result.stdout)["flows_scored"] == flows
    documents = read_lines(out)
    assert len(documents) == flows
    kinds = {"alert": 0, "event": 0}
    for document in documents:
        flat = check_document(document)
        kinds[str(flat["event.kind"])] += 1
        assert "event.created" in flat  # when the flow reached the stream
        if flat["event.kind"] == "alert":
            assert str(flat["rule.version"]).startswith("iforest@")  # the model that raised it
        nad = flat["nadkit"]
        transport = flat.get("network.transport")
        if transport in NUMBERS and "source.ip" in flat:
            assert flat["network.community_id"] == community_id(
                str(flat["source.ip"]),
                str(flat["destination.ip"]),
                flat["source.port"],  # type: ignore[arg-type]
                flat["destination.port"],  # type: ignore[arg-type]
                str(transport),
            )
        assert isinstance(nad, dict) and "score" in nad
    assert kinds["alert"] and kinds["event"]
    assert store.is_file()  # the store beside them keeps nadkit's records

    bad = subprocess.run([*command[:8], "--sink-format", "cef"], input=b"", capture_output=True, env=env)
    assert bad.returncode == 2 and b"--sink-format" in bad.stderr
