"""Model bundles: save and load give identical scores; missing, corrupt or altered files are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nadkit.bundle import FILES, MANIFEST, ModelBundle
from nadkit.errors import BundleError
from nadkit.synthetic import SimulationConfig, simulate
from nadkit.training import train_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("bundle")
    flows = folder / "flows.parquet"
    simulate(SimulationConfig(days=1, flows_per_day=3000, seed=4)).drop("day").write_parquet(flows)
    out = folder / "model"
    train_model(flows, out, model="ae", config={"epochs": 3, "batch_size": 256})
    return out, flows


def test_load_gives_identical_scores(trained: tuple[Path, Path]) -> None:
    from nadkit.sources import load_flows

    out, flows = trained
    frame, _ = load_flows(flows)
    bundle = ModelBundle.load(out)
    again = ModelBundle.load(out)
    scores = bundle.score(frame)
    assert scores.dtype == np.float64 and len(scores) == frame.height
    np.testing.assert_array_equal(scores, again.score(frame))
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["model"] == "ae"
    assert manifest["features"] == list(bundle.pipeline.feature_names_)
    assert bundle.threshold["method"] in {"f_beta", "quantile"}
    assert len(bundle.metrics["history"]["train_loss"]) == bundle.metrics["history"]["epochs_run"]


def test_existing_bundle_is_not_overwritten(trained: tuple[Path, Path]) -> None:
    from nadkit.errors import ConfigError

    out, flows = trained
    before = (out / MANIFEST).read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        train_model(flows, out, model="ae", config={"epochs": 1})
    assert (out / MANIFEST).read_bytes() == before


@pytest.mark.parametrize("name", FILES)
def test_altered_file_is_refused(trained: tuple[Path, Path], tmp_path: Path, name: str) -> None:
    copy = tmp_path / "model"
    shutil.copytree(trained[0], copy)
    with (copy / name).open("ab") as handle:
        handle.write(b" ")
    with pytest.raises(BundleError, match=name):
        ModelBundle.load(copy)


@pytest.mark.parametrize("name", [MANIFEST, *FILES])
def test_missing_file_is_refused(trained: tuple[Path, Path], tmp_path: Path, name: str) -> None:
    copy = tmp_path / "model"
    shutil.copytree(trained[0], copy)
    (copy / name).unlink()
    with pytest.raises(BundleError, match="missing"):
        ModelBundle.load(copy)


def test_foreign_or_future_manifest_is_refused(trained: tuple[Path, Path], tmp_path: Path) -> None:
    copy = tmp_path / "model"
    shutil.copytree(trained[0], copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    (copy / MANIFEST).write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(BundleError, match="version 99"):
        ModelBundle.load(copy)
    (copy / MANIFEST).write_text("not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        ModelBundle.load(copy)
    with pytest.raises(BundleError, match="not a model bundle"):
        ModelBundle.load(tmp_path / "nothing")
