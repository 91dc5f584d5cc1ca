"""`nadkit detect` and `nadkit evaluate` run for real on a trained bundle."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from nadkit.sources import load_flows
from tests.e2e.test_cli_inputs import assert_one_line_error, nadkit


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small autoencoder bundle trained on one simulated day, and a later day to score."""
    root = tmp_path_factory.mktemp("cli-detect")
    days = root / "days"
    result = nadkit("simulate", days, "--days", "2", "--flows-per-day", "4000", "--seed", "4")
    assert result.returncode == 0, result.stderr
    files = sorted(days.glob("*.csv"))
    settings = root / "ae.yaml"
    settings.write_text("epochs: 3\nbatch_size: 256\nhidden: [32]\nbottleneck: 6\n")
    model = root / "model"
    result = nadkit("train", files[0], model, "--model", "ae", "--config", settings)
    assert result.returncode == 0, result.stderr
    return model, files[1]


def test_detect_writes_explained_alerts_and_a_summary(trained: tuple[Path, Path], tmp_path: Path) -> None:
    model, day = trained
    out = tmp_path / "alerts.jsonl"
    result = nadkit("detect", model, day, "--out", out, "--top", "4")
    assert result.returncode == 0, result.stderr
    assert "flows" in result.stdout and "alerts" in result.stdout and str(out.name) in result.stdout
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records, "no alerts written"
    assert all(len(r["top_features"]) == 4 for r in records)
    assert {"src", "dst", "dpt", "score", "threshold"} <= set(records[0])

    as_json = nadkit("detect", model, day, "--out", tmp_path / "all.parquet", "--all", "--json")
    assert as_json.returncode == 0, as_json.stderr
    summary = json.loads(as_json.stdout)
    table = pl.read_parquet(tmp_path / "all.parquet")
    assert summary["flows"] == table.height == pl.read_csv(day).height
    assert summary["alerts"] == len(records) == int(table["alert"].sum())


@pytest.mark.slow
def test_detect_refuses_to_overwrite_and_reports_bad_input(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    model, day = trained
    out = tmp_path / "alerts.csv"
    assert nadkit("detect", model, day, "--out", out).returncode == 0
    before = out.read_bytes()
    assert_one_line_error(nadkit("detect", model, day, "--out", out), "already exists")
    assert out.read_bytes() == before
    assert_one_line_error(nadkit("detect", model, day, "--out", tmp_path / "a.xlsx"), "unknown output type")

    broken = tmp_path / "broken.csv"
    lines = day.read_text().splitlines()
    broken.write_text("\n".join([*lines[:-1], lines[-1][: len(lines[-1]) // 3]]) + "\n")
    target = tmp_path / "never.jsonl"
    assert_one_line_error(nadkit("detect", model, broken, "--out", target), "broken.csv")
    assert not target.exists()

    not_a_bundle = tmp_path / "nothing"
    not_a_bundle.mkdir()
    assert_one_line_error(nadkit("detect", not_a_bundle, day, "--out", tmp_path / "x.jsonl"), "bundle")


def test_flows_without_what_the_counters_read_are_refused_in_one_line(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    """A model trained on flows with times counts traffic per host over time; flows without a time
    column (another format, another export) end in one line naming it, for detect and evaluate, and
    nothing is written."""
    model, day = trained
    timeless = tmp_path / "timeless.parquet"
    load_flows(day)[0].drop("time").write_parquet(timeless)
    alerts, report = tmp_path / "alerts.jsonl", tmp_path / "report"
    assert_one_line_error(nadkit("detect", model, timeless, "--out", alerts), "timeless.parquet", "'time'")
    assert_one_line_error(nadkit("evaluate", model, timeless, "--out", report), "timeless.parquet", "'time'")
    assert not alerts.exists() and not report.exists()


@pytest.mark.slow  # three trained models side by side (tests/test_comparison.py: the rule)
def test_evaluate_compares_models_on_the_same_flows(trained: tuple[Path, Path], tmp_path: Path) -> None:
    """`--compare` scores the flows with each other bundle too: a table, and in the JSON one entry per
    model (the evaluated one first) at its own threshold and at 1% of the normal flows."""
    model, day = trained
    other = tmp_path / "iforest"
    first_day = sorted(day.parent.glob("*.csv"))[0]  # what the autoencoder was trained on
    result = nadkit("train", first_day, other, "--model", "iforest")
    assert result.returncode == 0, result.stderr
    report = tmp_path / "report"
    result = nadkit("evaluate", model, day, "--compare", other, "--report", report)
    assert result.returncode == 0, result.stderr
    assert "models compared on the labelled input" in result.stdout
    html = (report / "report.html").read_text()
    assert "Models compared" in html and "<td>iforest</td>" in html and "At 1% FPR" in html
    assert len(json.loads((report / "metrics.json").read_text())["metrics"]["comparison"]) == 2
    as_json = nadkit("evaluate", model, day, "--compare", other, "--json")
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)["comparison"]
    assert [row["model"] for row in rows] == ["ae", "iforest"]
    assert rows[1]["name"] == str(other)
    for row in rows:
        assert 0.5 < row["roc_auc"] <= 1.0 and 0 <= row["recall_same_fpr"] <= 1
        assert row["same_fpr"] <= 0.02
    missing = nadkit("evaluate", model, day, "--compare", tmp_path / "nothing")
    assert missing.returncode == 2 and "nothing" in missing.stderr and "Traceback" not in missing.stderr


def test_flows_of_another_format_are_told_which_the_model_was_trained_on(
    shared_data: Path, trained: tuple[Path, Path], tmp_path: Path
) -> None:
    """A model trained on Zeek conn.log records reads Zeek's own columns; flows metered from a
    capture have none of them: detect names the first, counts the others and the format the model
    was trained on, in one line, and writes nothing."""
    iot23 = shared_data / "iot23"
    settings = tmp_path / "ae.yaml"
    settings.write_text("epochs: 3\nhidden: [16]\nbottleneck: 4\n")
    model = tmp_path / "model"
    conn_log = iot23 / "CTU-Honeypot-Capture-4-1" / "conn.log.labeled"
    result = nadkit("train", conn_log, "-o", model, "--model", "ae", "--config", settings)
    assert result.returncode == 0, result.stderr
    capture = next((iot23 / "CTU-IoT-Malware-Capture-42-1").glob("*.pcap"))
    alerts = tmp_path / "alerts.jsonl"
    result = nadkit("detect", model, capture, "--out", alerts)
    assert_one_line_error(result, capture.name, "more of its columns are missing", "fitted on 'zeek' flows")
    assert not alerts.exists()
    # a compared model of another format: the error says which model cannot read the flows
    labelled = tmp_path / "conn.parquet"  # in time order, so that reading it warns of nothing
    load_flows(iot23 / "CTU-IoT-Malware-Capture-42-1" / "conn.log.labeled")[0].sort("time").write_parquet(
        labelled
    )
    report = tmp_path / "report"
    result = nadkit("evaluate", model, labelled, "--compare", trained[0], "--report", report)
    assert_one_line_error(result, f"(compared model {trained[0]})", "fitted on 'nad' flows")
    assert not report.exists()


@pytest.mark.slow
def test_evaluate_prints_metrics_and_writes_the_report(trained: tuple[Path, Path], tmp_path: Path) -> None:
    model, day = trained
    report = tmp_path / "report"
    result = nadkit("evaluate", model, day, "--report", report)
    assert result.returncode == 0, result.stderr
    assert "ROC-AUC" in result.stdout and "report.html" in result.stdout
    html = (report / "report.html").read_text()
    assert "ae" in html and "data:image/png;base64," in html
    assert (report / "metrics.json").is_file()
    assert list(report.glob("*.png"))

    as_json = nadkit("evaluate", model, day, "--json")
    assert as_json.returncode == 0, as_json.stderr
    metrics = json.loads(as_json.stdout)
    assert 0.5 < metrics["binary"]["roc_auc"] <= 1.0
    assert set(metrics["per_class"]) >= {"normal"}
    # a later day of the same network: its normal flows pass the threshold as the hold-out's did
    transfer = metrics["threshold_transfer"]
    assert transfer["normal_rows"] == metrics["per_class"]["normal"]["rows"]
    assert transfer["differs"] is False and transfer["warning"] is None
    assert "unlike the training traffic" not in result.stdout + as_json.stderr

    assert_one_line_error(nadkit("evaluate", model, day, "--report", report), "already exists")


@pytest.mark.slow
def test_evaluate_says_first_when_the_traffic_is_another_networks(tmp_path: Path) -> None:
    """Trained on a Philips Hue bridge's benign conn.log and evaluated on another IoT network's
    (IoT-23 capture 42-1), most of its normal flows are over the autoencoder's threshold: the
    command says so before its figures, in the JSON and at the top of the report."""
    from tests.conftest import shared_file

    benign = shared_file("iot23/CTU-Honeypot-Capture-4-1/conn.log.labeled")
    other = shared_file("iot23/CTU-IoT-Malware-Capture-42-1/conn.log.labeled")
    model = tmp_path / "model"
    result = nadkit("train", benign, model, "--model", "ae")
    assert result.returncode == 0, result.stderr
    report = tmp_path / "report"
    result = nadkit("evaluate", model, other, "--report", report)
    assert result.returncode == 0, result.stderr
    first = result.stdout.index("Normal traffic unlike the training traffic")
    assert first < result.stdout.index("ROC-AUC")
    assert "(traffic unlike the training traffic)" in result.stdout
    assert "Normal traffic unlike the training traffic" in (report / "report.html").read_text()

    as_json = nadkit("evaluate", model, other, "--json")
    assert as_json.returncode == 0, as_json.stderr
    transfer = json.loads(as_json.stdout)["threshold_transfer"]
    assert transfer["differs"] is True and transfer["normal_rate"] > 0.2
    assert transfer["normal_rows"] == 4_420 and transfer["holdout_rate"] < 0.05
    assert "unlike the training traffic" in as_json.stderr

    # detection has no labels: the alert rate against the hold-out's gets a note naming both causes
    result = nadkit("detect", model, other, "--out", tmp_path / "alerts.jsonl")
    assert result.returncode == 0, result.stderr
    assert "of the flows are alerts, where" in result.stdout
    as_json = nadkit("detect", model, other, "--out", tmp_path / "alerts.jsonl", "--force", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert "attack traffic" in json.loads(as_json.stdout)["alert_rate_note"]


def test_evaluate_says_how_to_label_flows_that_have_none(trained: tuple[Path, Path], tmp_path: Path) -> None:
    """Flows without labels are refused in one line that says what evaluation needs: a label column,
    or for packet captures (which carry none) `nadkit mix-captures`, which labels flows by file, or
    `nadkit label-flows`, which takes the labels of another meter's flows."""
    from nadkit.detection.evaluation import _labelling
    from tests.conftest import shared_file

    model, day = trained
    unlabelled = tmp_path / "unlabelled.csv"
    pl.read_csv(day).drop("label").write_csv(unlabelled)
    report = tmp_path / "report"
    result = nadkit("evaluate", model, unlabelled, "--report", report)
    assert_one_line_error(result, "has no label column", "a 'label' column: normal, or the attack's name")
    assert not report.exists()
    capture = shared_file("pcaps/attack/icmp-portscan.pcap")
    hint = _labelling(capture, None)
    assert "nadkit mix-captures" in hint and "nadkit label-flows" in hint
    assert "nadkit mix-captures" in _labelling(capture.parent, None)
    assert "label' column" in _labelling(unlabelled, None)
    assert "nadkit mix-captures" in _labelling(tmp_path / "missing.csv", "pcap")
