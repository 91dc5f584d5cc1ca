"""`nadkit train` and `nadkit models` run for real."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_cli_inputs import assert_one_line_error, nadkit


def test_models_lists_the_registry() -> None:
    result = nadkit("models", "available")
    assert result.returncode == 0, result.stderr
    for name in ("ae", "vae", "iforest", "ecod"):
        assert name in result.stdout


def test_train_writes_a_bundle_with_a_threshold(tmp_path: Path) -> None:
    data = tmp_path / "days"
    assert nadkit("simulate", data, "--days", "1", "--flows-per-day", "3000", "--seed", "8").returncode == 0
    settings = tmp_path / "ae.yaml"
    settings.write_text("epochs: 2\nbatch_size: 256\nhidden: [32]\nbottleneck: 4\n")
    out = tmp_path / "model"
    result = nadkit("train", data, out, "--model", "ae", "--config", settings)
    assert result.returncode == 0, result.stderr
    assert "ae trained" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == "ae"
    assert manifest["config"]["hidden"] == [32]
    threshold = json.loads((out / "threshold.json").read_text())
    assert threshold["method"] == "f_beta"  # the simulated day has attacks in its hold-out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["history"]["epochs_run"] == 2
    assert 0.5 < metrics["holdout"]["roc_auc"] <= 1.0

    again = nadkit("train", data, out, "--model", "ae", "--config", settings)
    assert_one_line_error(again, "already exists")


def test_train_rejects_unknown_model_and_option(tmp_path: Path) -> None:
    data = tmp_path / "days"
    assert nadkit("simulate", data, "--days", "1", "--flows-per-day", "1000").returncode == 0
    assert_one_line_error(nadkit("train", data, tmp_path / "m", "--model", "nope"), "unknown model 'nope'")
    settings = tmp_path / "bad.toml"
    settings.write_text("epochz = 3\n")
    assert_one_line_error(nadkit("train", data, tmp_path / "m", "--config", settings), "epochz")
    assert not (tmp_path / "m").exists()
