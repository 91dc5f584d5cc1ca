"""`nadkit demo` runs the whole job end to end and leaves its outputs where it says."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from tests.e2e.test_cli_inputs import nadkit


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = nadkit("demo", "--out", out, "--days", "3", "--flows-per-day", "4000", "--seed", "2")
    assert result.returncode == 0, result.stderr
    days = sorted((out / "data").glob("*.csv"))
    assert [d.name for d in days] == ["2020-12-03.csv", "2020-12-04.csv", "2020-12-05.csv"]
    assert "Simulated traffic per day" in result.stdout

    features = pl.read_parquet(out / "features-2020-12-05.parquet")
    pipeline = json.loads((out / "pipeline.json").read_text())
    feature_columns = [c for c in features.columns if c not in {"time", "src", "dst", "spt", "dpt"}]
    assert len(feature_columns) >= 100
    assert features.height == pl.read_csv(days[-1]).height
    assert set(features["label"].unique()) >= {"normal", "Probing-IP sweep"}
    assert pipeline  # a JSON document, not a pickle

    report = json.loads((out / "split-report.json").read_text())
    assert report["groups_on_both_sides"] == 0
    assert abs(report["validation_share"] - 0.25) < 0.05

    assert "Detection on the unseen last day" in result.stdout
    for model in ("ae", "iforest", "ecod"):
        assert f"│ {model}" in result.stdout
    from nadkit.training.bundle import ModelBundle

    bundle = ModelBundle.load(out / "model")
    assert bundle.detector.name == "ae"
    assert 0.5 < bundle.metrics["test"]["roc_auc"] <= 1.0

    # running it again replaces its own outputs rather than failing
    again = nadkit("demo", "--out", out, "--days", "3", "--flows-per-day", "4000", "--seed", "2")
    assert again.returncode == 0, again.stderr
