"""`nadkit evaluate` says so first when the evaluated flows are the model's training data: a warning
in the log and on the terminal, the headline of the report and a field of the JSON output; later
traffic gets no warning, and a bundle saved without training row hashes still evaluates."""

from __future__ import annotations

import html
import json
import logging
import shutil
from pathlib import Path

import pytest

from nadkit.detection.evaluation import evaluate_bundle
from nadkit.evaluation.split import unsupervised_split
from nadkit.features.labels import feature_label
from nadkit.models import REGISTRY
from nadkit.simulate import SimulationConfig, simulate_to_directory
from nadkit.sources import load_flows
from nadkit.training.bundle import MANIFEST, TRAINING_ROWS, ModelBundle
from nadkit.training.fit import train_model
from tests.e2e.test_cli_plot import run

WARNING = "Measured on training data"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A small isolation forest trained on one simulated day; the bundle, that day and the next."""
    folder = tmp_path_factory.mktemp("evaluation")
    days = simulate_to_directory(SimulationConfig(days=2, flows_per_day=2000, seed=3), folder / "days")
    model = folder / "model"
    config = REGISTRY["iforest"].test_config().to_dict()
    train_model(days[0], model, model="iforest", config=config, onnx=False)
    return model, days[0], days[1]


def test_evaluating_the_training_file_warns_and_the_report_says_so(
    trained: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, first, _ = trained
    manifest = json.loads((model / MANIFEST).read_text())
    assert TRAINING_ROWS in manifest["files"] and manifest["training_rows"]["kept"] > 1000
    flows = load_flows(first)[0].height

    report = tmp_path / "report"
    code, out, err = run(capsys, "evaluate", model, first, "--report", report)
    assert code == 0, err
    assert WARNING in out and out.index(WARNING) < out.index("ROC-AUC"), out
    assert (out + err).count(WARNING) == 1, "the warning is shown once"
    page = (report / "report.html").read_text(encoding="utf-8")
    assert '<p class="warning">' in page and "optimistic" in page
    assert page.index('<p class="warning">') < page.index('<p class="lead">'), "the headline comes first"
    document = json.loads((report / "metrics.json").read_text())
    assert document["training_overlap"]["optimistic"] is True
    assert document["warnings"] and WARNING in document["warnings"][0]

    code, out, err = run(capsys, "evaluate", model, first, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert next(iter(result)) == "training_overlap"
    overlap = result["training_overlap"]
    assert overlap["rows"] == overlap["evaluated"] == flows and overlap["share"] == 1.0
    assert overlap["fingerprint_match"] is False and WARNING in overlap["warning"]
    assert result["binary"]["rows"] == flows
    assert err.count(WARNING) == 1, err


def test_evaluating_later_traffic_does_not_warn(
    trained: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    model, _, later = trained
    caplog.set_level(logging.INFO, logger="nadkit")
    outcome = evaluate_bundle(ModelBundle.load(model), later)
    assert outcome.overlap is not None and not outcome.overlap.optimistic
    assert outcome.overlap.share == 0.0 and outcome.overlap.rows == 0
    assert outcome.to_dict()["training_overlap"]["warning"] is None
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]

    code, out, err = run(capsys, "evaluate", model, later, "--json")
    assert code == 0, err
    assert json.loads(out)["training_overlap"]["optimistic"] is False
    assert WARNING not in out + err


def test_an_old_bundle_without_row_hashes_still_evaluates(
    trained: tuple[Path, Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model, first, later = trained
    old = tmp_path / "old"
    shutil.copytree(model, old)
    manifest = json.loads((old / MANIFEST).read_text())
    del manifest["training_rows"], manifest["files"][TRAINING_ROWS]
    (old / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    (old / TRAINING_ROWS).unlink()

    caplog.set_level(logging.DEBUG, logger="nadkit")
    bundle = ModelBundle.load(old)
    assert bundle.training_rows is None
    outcome = evaluate_bundle(bundle, later)
    overlap = outcome.overlap
    assert overlap is not None and overlap.compared is None and overlap.share is None
    assert not overlap.optimistic and "no training row hashes" in overlap.note
    assert outcome.metrics["binary"]["rows"] == overlap.evaluated
    assert any(
        "no training row hashes" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records
    )

    # the exact rows it was fitted on: the data fingerprint still tells
    fitted = tmp_path / "fitted.parquet"
    unsupervised_split(load_flows(first)[0], holdout_fraction=0.3, seed=0).train.write_parquet(fitted)
    caplog.clear()
    outcome = evaluate_bundle(bundle, fitted)
    matched = outcome.overlap
    assert matched is not None and matched.fingerprint_match and matched.optimistic
    assert outcome.warnings() and WARNING in outcome.warnings()[0]


def test_the_report_says_in_words_what_explains_each_incident(
    trained: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    model, _, later = trained
    outcome = evaluate_bundle(ModelBundle.load(model), later, report=tmp_path / "report")
    top = outcome.metrics["incidents"]["top"]
    assert top, "the later day's attacks make incidents"
    for item in top:
        assert item["top_feature"], item
        assert item["top_feature_label"] == feature_label(item["top_feature"]) != item["top_feature"]
    page = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    table = page[page.index('<table class="incidents">') :]
    table = table[: table.index("</table>")]
    assert top[0]["top_feature_label"] in html.unescape(table)
    assert f'title="{top[0]["top_feature"]}"' in table
