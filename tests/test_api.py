"""The Python API as its documentation shows it: every `python` block of docs/api.md and the README's
API example run, in order, in a folder of simulated traffic."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import nadkit
from nadkit.errors import ConfigError
from nadkit.simulate import SimulationConfig, simulate_to_directory

ROOT = Path(__file__).resolve().parents[1]


def _blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("api")
    simulate_to_directory(SimulationConfig(days=2, flows_per_day=5000, seed=3), root / "flows")
    return root


def _run(blocks: list[str], folder: Path) -> dict[str, object]:
    namespace: dict[str, object] = {}
    here = Path.cwd()
    os.chdir(folder)
    try:
        for block in blocks:
            exec(compile(block, "example", "exec"), namespace)
    finally:
        os.chdir(here)
    return namespace


def test_the_api_page_runs(folder: Path, tmp_path: Path) -> None:
    blocks = _blocks(ROOT / "docs" / "api.md")
    assert len(blocks) >= 3
    work = tmp_path / "work"
    work.mkdir()
    (work / "flows").symlink_to(folder / "flows")
    namespace = _run(blocks, work)
    assert (work / "model" / "manifest.json").is_file()
    model = namespace["model"]
    assert isinstance(model, nadkit.Model) and model.name == "ae"
    alerts = namespace["alerts"]
    assert isinstance(alerts, pl.DataFrame) and alerts.height > 0 and alerts["alert"].all()


def test_the_readme_example_runs(folder: Path) -> None:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API") :]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)[:1]
    assert blocks, "the README's Python API section has an example"
    namespace = _run(blocks, folder)
    assert isinstance(namespace["alerts"], pl.DataFrame)


def test_the_public_names() -> None:
    assert set(nadkit.__all__) >= {"read_flows", "train", "load", "Model", "__version__"}
    assert (Path(nadkit.__file__).parent / "py.typed").is_file()
    with pytest.raises(AttributeError):
        _ = nadkit.nothing_here  # type: ignore[attr-defined]


def test_detect_and_train_refuse_what_they_cannot_read(folder: Path) -> None:
    with pytest.raises(ConfigError, match="Polars frame or a file path"):
        nadkit.train(np.zeros((3, 3)))  # type: ignore[arg-type]
    model = nadkit.train(folder / "flows" / "2020-12-03.csv", model="iforest")
    assert model.bundle.pipeline is not None and model.bundle.pipeline.source_format == "nad"
    unlabelled = nadkit.read_flows(folder / "flows" / "2020-12-04.csv").drop("label")
    with pytest.raises(ConfigError, match="labelled flows"):
        model.evaluate(unlabelled)
    records = model.detect(unlabelled)
    assert records.height == unlabelled.height and records["row"].to_list()[:3] == [1, 2, 3]
