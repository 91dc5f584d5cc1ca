"""`nadkit stream` on standard input as the README shows it: the canonical CSV, gzip-decompressed and
piped; a CSV of other names through --map; and input it cannot read, which ends with status 1 and
names the source."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from nadkit.simulate import SimulationConfig, simulate
from nadkit.training.fit import fit


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stream-inputs")
    days = simulate(SimulationConfig(days=2, flows_per_day=3000, seed=8))
    first = days.filter(pl.col("time").dt.day() == days["time"].dt.day().min())
    fit(first, model="iforest").save(root / "bundle", onnx=False)
    rest = days.filter(pl.col("time").dt.day() != days["time"].dt.day().min()).head(2000)
    rest.write_csv(root / "flows.csv")
    with gzip.open(root / "flows.csv.gz", "wb") as handle:
        handle.write((root / "flows.csv").read_bytes())
    return root


def _stream(folder: Path, data: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    command = [sys.executable, "-m", "nadkit", "stream", "-b", str(folder / "bundle"), "-s", "-", *args]
    return subprocess.run(command, input=data, capture_output=True, timeout=300, env=env)


def test_piped_canonical_csv_is_scored(folder: Path) -> None:
    data = gzip.decompress((folder / "flows.csv.gz").read_bytes())
    result = _stream(folder, data, "--all", "--sink", f"file:{folder / 'records.jsonl'}", "--json")
    assert result.returncode == 0, result.stderr.decode()
    counters = json.loads(result.stdout)
    assert counters["flows_scored"] == 2000
    assert len((folder / "records.jsonl").read_text().splitlines()) == 2000


def test_a_mapped_csv_is_scored(folder: Path) -> None:
    frame = pl.read_csv(folder / "flows.csv").rename({"time": "When", "src": "From", "dst": "To"})
    body = frame.write_csv().encode()
    result = _stream(folder, body, "--map", "time=When,src=From,dst=To", "--json", "--sink", "-")
    assert result.returncode == 0, result.stderr.decode()
    assert b"flows_scored" in result.stderr  # the counters go to stderr when records go to stdout


def test_unreadable_input_fails_and_names_the_source(folder: Path) -> None:
    result = _stream(folder, b"StartTime,SrcAddr,DstAddr\n1,2,3\n4,5,6\n")
    assert result.returncode == 1
    text = result.stderr.decode()
    assert "nothing could be read from standard input" in text
    assert "nadkit-stream-" not in text and "batch.log" not in text


@pytest.mark.slow
def test_a_model_of_time_buckets_streams_as_it_detects(folder: Path) -> None:
    """A per-host bucket model on piped flows: every flow scored with its bucket's score and start,
    the same records `nadkit detect` writes for the file."""
    from nadkit.features.series import BucketConfig

    days = simulate(SimulationConfig(days=2, flows_per_day=3000, seed=8))
    first = days.filter(pl.col("time").dt.day() == days["time"].dt.day().min())
    config = {"epochs": 2, "batch_size": 256, "hidden": [8], "bottleneck": 4, "device": "cpu"}
    fit(first, model="ae", config=config, buckets=BucketConfig(by="src")).save(folder / "buckets", onnx=False)
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    records = folder / "bucket-records.jsonl"
    command = [sys.executable, "-m", "nadkit", "stream", "-b", str(folder / "buckets"), "-s", "-", "--all"]
    command += ["--sink", f"file:{records}", "--json"]
    result = subprocess.run(
        command, input=(folder / "flows.csv").read_bytes(), capture_output=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout)["flows_scored"] == 2000
    streamed = pl.read_ndjson(records, infer_schema_length=None).sort("row")
    detected = folder / "bucket-detect.jsonl"
    command = [sys.executable, "-m", "nadkit", "detect", str(folder / "buckets"), str(folder / "flows.csv")]
    done = subprocess.run([*command, "-o", str(detected), "--all"], capture_output=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr.decode()
    expected = pl.read_ndjson(detected, infer_schema_length=None).sort("row")
    assert streamed["bucket"].to_list() == expected["bucket"].to_list()
    assert streamed["row"].to_list() == expected["row"].to_list()
    np.testing.assert_allclose(streamed["score"].to_numpy(), expected["score"].to_numpy(), rtol=1e-5)
    assert streamed["alert"].to_list() == expected["alert"].to_list()
