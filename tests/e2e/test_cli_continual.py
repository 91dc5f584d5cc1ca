"""Drift and the adaptive threshold end to end: `nadkit detect` reports drift against the bundle's
normal reference (none for a bundle saved without one), `nadkit stream --threshold spot` moves its
threshold, writes drift windows and resumes both from its checkpoint."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_cli_inputs import nadkit


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A small autoencoder trained on one simulated day, and the two days after it."""
    root = tmp_path_factory.mktemp("cli-continual")
    days = root / "days"
    result = nadkit("simulate", days, "--days", "3", "--flows-per-day", "3000", "--seed", "4")
    assert result.returncode == 0, result.stderr
    files = sorted(days.glob("*.csv"))
    settings = root / "ae.yaml"
    settings.write_text("epochs: 3\nbatch_size: 256\nhidden: [32]\nbottleneck: 6\n")
    model = root / "model"
    result = nadkit("train", files[0], model, "--model", "ae", "--config", settings)
    assert result.returncode == 0, result.stderr
    return model, files[1:]


def test_detect_reports_drift_and_an_older_bundle_none(
    trained: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    model, later = trained
    assert (model / "reference.json").exists()
    result = nadkit("detect", model, later[0], "-o", tmp_path / "a.jsonl", "--drift-window", "500", "--json")
    assert result.returncode == 0, result.stderr
    drift = json.loads(result.stdout)["drift"]
    flows = json.loads(result.stdout)["flows"]
    # full windows only: a last one under 500 rows is not judged
    assert drift["windows"] == flows // 500 >= 2 and drift["rows"] == flows
    last = drift["last"]
    assert last["kind"] == "drift" and 0 <= last["ks_statistic"] <= 1 and last["score_psi"] >= 0
    assert len(last["features"]) == 5 and last["features"][0]["psi"] >= last["features"][-1]["psi"]
    # a later day of the simulator's network moves its address features past the PSI level
    assert drift["events"] >= 1 and drift["most_moved"][0]["psi"] >= 0.25

    # the same bundle as an earlier nadkit saved it: no reference.json, it loads and reports no drift
    old = tmp_path / "old"
    shutil.copytree(model, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["files"]["reference.json"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    (old / "reference.json").unlink()
    result = nadkit("detect", old, later[0], "-o", tmp_path / "b.jsonl", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["drift"] is None


def _stream(model: Path, day: Path, folder: Path, *extra: str) -> dict:
    command = [sys.executable, "-m", "nadkit", "stream", str(model), "-", "--format", "nad"]
    command += ["--sink", f"file:{folder / 'alerts.jsonl'}", "--json", "--status-seconds", "100"]
    command += ["--batch-rows", "300", *extra]
    with day.open("rb") as lines:
        done = subprocess.run(command, stdin=lines, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


@pytest.mark.slow
def test_stream_spot_threshold_and_drift_resume_from_the_checkpoint(
    trained: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    model, later = trained
    start = json.loads((model / "threshold.json").read_text())["value"]
    options = ["--threshold", "spot", "--checkpoint", str(tmp_path / "ck.json")]
    options += ["--drift-window", "1000", "--drift-out", str(tmp_path / "drift.jsonl")]
    first = _stream(model, later[0], tmp_path, *options)
    state = first["continual"]
    assert state["threshold_method"] == "spot" and state["threshold_start"] == pytest.approx(start)
    assert state["threshold_now"] != pytest.approx(start)  # it learnt from the flows not alerted
    assert state["drift_windows"] == len((tmp_path / "drift.jsonl").read_text().splitlines()) >= 3
    saved = json.loads((tmp_path / "ck.json").read_text())["sources"]["-"]["continual"]
    assert saved["threshold"]["value"] == pytest.approx(state["threshold_now"])
    # the alerts written carry the threshold they were judged against, which moved
    records = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert len({r["threshold"] for r in records}) > 1
    assert all(r["score"] >= r["threshold"] for r in records)

    # restarted on the next day: the threshold resumes where it stopped, the drift windows count on
    (tmp_path / "second").mkdir()
    second = _stream(model, later[1], tmp_path / "second", *options)
    assert second["continual"]["threshold_start"] == pytest.approx(start)
    resumed = json.loads((tmp_path / "second" / "alerts.jsonl").read_text().splitlines()[0])
    assert resumed["threshold"] == pytest.approx(saved["threshold"]["value"])
    windows = [json.loads(line) for line in (tmp_path / "drift.jsonl").read_text().splitlines()]
    assert second["continual"]["drift_windows"] == len(windows)
    assert [w["window"] for w in windows] == list(range(len(windows)))

    # a fixed threshold stays put
    (tmp_path / "fixed").mkdir()
    fixed = _stream(model, later[0], tmp_path / "fixed", "--drift-window", "0")
    assert "threshold_now" not in fixed["continual"] and "drift_windows" not in fixed["continual"]


def test_stream_refuses_a_threshold_that_is_no_number(trained: tuple[Path, list[Path]]) -> None:
    model, later = trained
    result = nadkit("stream", model, f"follow:{later[0]}", "--threshold", "sometimes")
    assert result.returncode == 2
    assert "--threshold must be a number, spot or dspot" in result.stderr


def test_stream_retrains_at_midnight_and_keeps_an_unproven_challenger_for_review(
    trained: tuple[Path, list[Path]], tmp_path: Path
) -> None:
    model, later = trained
    # two days in one replay: the stream crosses one midnight of stream time
    lines = (
        later[0].read_text().splitlines(keepends=True) + later[1].read_text().splitlines(keepends=True)[1:]
    )
    (tmp_path / "two-days.csv").write_text("".join(lines))
    models = tmp_path / "models"
    options = ["--retrain-every", "1d", "--retrain-wait", "--models", str(models), "--drift-window", "0"]
    options += ["--checkpoint", str(tmp_path / "ck.json")]
    result = _stream(model, tmp_path / "two-days.csv", tmp_path, *options)
    state = result["continual"]
    # no analyst feedback and the default --promote evidence: registered, not promoted
    assert state["model_version"] == "v1" and state["retrain_counts"] == {"refusal": 1}
    registry = json.loads((models / "active.json").read_text())
    assert registry["version"] == "v1"
    decisions = [json.loads(line) for line in (models / "decisions.jsonl").read_text().splitlines()]
    assert [(d["kind"], d["version"], d["champion"]) for d in decisions] == [("refusal", "v2", "v1")]
    assert "not enough labelled feedback" in decisions[0]["reason"]
    assert decisions[0]["figures"]["recent_traffic"]["challenger"]["rows"] > 0
    assert (models / "versions" / "v2" / "manifest.json").exists()
    saved = json.loads((tmp_path / "ck.json").read_text())["sources"]["-"]["retraining"]
    assert saved["version"] == "v1" and saved["next_due_us"] > 0


def test_stream_retraining_needs_a_registry(trained: tuple[Path, list[Path]]) -> None:
    model, later = trained
    result = nadkit("stream", model, f"follow:{later[0]}", "--retrain-every", "1d")
    assert result.returncode == 2
    assert "--retrain-every needs a model registry" in result.stderr
    result = nadkit("stream", model, f"follow:{later[0]}", "--retrain-every", "soon", "--models", "m")
    assert result.returncode == 2 and "not a duration" in result.stderr
