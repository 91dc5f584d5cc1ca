"""`nadkit train` and `nadkit models` run for real."""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from nadkit.simulate import SimulationConfig, simulate_day, write_nad_csv
from tests.e2e.test_cli_inputs import assert_one_line_error, nadkit


def test_models_lists_the_registry() -> None:
    result = nadkit("models", "available")
    assert result.returncode == 0, result.stderr
    for name in ("ae", "vae", "iforest", "ecod"):
        assert name in result.stdout


def test_models_show_names_a_detectors_settings_and_defaults(tmp_path: Path) -> None:
    """`nadkit models show ae` lists every setting `--config` may set with its default (what the
    Python API's and the README's advice points to), as a table or as JSON; an unknown name is a
    one-line error naming the known ones."""
    shown = nadkit("models", "show", "ae")
    assert shown.returncode == 0, shown.stderr
    for setting in ("hidden", "bottleneck", "members", "latent_neighbours", "weigh_errors"):
        assert setting in shown.stdout
    assert "tuple[int, ...]" in shown.stdout  # types shown as written, not read as markup
    described = json.loads(nadkit("models", "show", "multitask", "--json").stdout)
    assert described["kind"] == "supervised"
    defaults = {s["setting"]: s["default"] for s in described["settings"]}
    assert defaults["seed"] == 0 and "cmd_weight" in defaults
    # a default as shown is accepted back by --config
    settings = tmp_path / "ae.yaml"
    ae = json.loads(nadkit("models", "show", "ae", "--json").stdout)
    # every default as shown, but 2 epochs (the default 60 would only cost time here)
    shown_defaults = {s["setting"]: s["default"] for s in ae["settings"]}
    settings.write_text(json.dumps({**shown_defaults, "epochs": 2}))
    data = tmp_path / "day"
    assert nadkit("simulate", data, "--days", "1", "--flows-per-day", "1500", "--seed", "2").returncode == 0
    trained = nadkit("train", data, tmp_path / "model", "--config", settings)
    assert trained.returncode == 0, trained.stderr
    assert_one_line_error(nadkit("models", "show", "nope"), "unknown model 'nope' (known: ae,")


def test_train_writes_a_bundle_with_a_threshold(tmp_path: Path) -> None:
    data = tmp_path / "days"
    assert nadkit("simulate", data, "--days", "1", "--flows-per-day", "3000", "--seed", "8").returncode == 0
    settings = tmp_path / "ae.yaml"
    settings.write_text("epochs: 2\nbatch_size: 256\nhidden: [32]\nbottleneck: 4\n")
    out = tmp_path / "model"
    result = nadkit("train", data, out, "--model", "ae", "--config", settings)
    assert result.returncode == 0, result.stderr
    assert "ae trained" in result.stdout and "few normal rows" not in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"] == "ae"
    assert manifest["config"]["hidden"] == [32]
    threshold = json.loads((out / "threshold.json").read_text())
    # the simulated day has attacks in its hold-out: F1-optimal, or a bound of the 1%-5% band
    assert threshold["method"] in ("f_beta", "quantile")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["holdout"]["false_positive_rate"] <= 0.051
    assert metrics["history"]["epochs_run"] == 2
    assert 0.5 < metrics["holdout"]["roc_auc"] <= 1.0

    again = nadkit("train", data, out, "--model", "ae", "--config", settings)
    assert_one_line_error(again, "already exists")

    # weighed errors: half the normal hold-out sets the weights, the threshold is chosen on the rest
    settings.write_text("epochs: 2\nbatch_size: 256\nhidden: [32]\nbottleneck: 4\nweigh_errors: true\n")
    weighed = nadkit("train", data, tmp_path / "weighed", "--config", settings, "--json")
    assert weighed.returncode == 0, weighed.stderr
    summary = json.loads(weighed.stdout)
    held_normal = summary["holdout_rows"] - summary["holdout_attacks"]
    assert summary["weighing_rows"] > 0 and abs(summary["weighing_rows"] - held_normal) <= 1
    assert (
        json.loads((tmp_path / "weighed" / "metrics.json").read_text())["weighing_rows"]
        == summary["weighing_rows"]
    )
    shown = nadkit("train", data, tmp_path / "weighed-table", "--config", settings)
    assert "errors weighed on" in shown.stdout and "other normal hold-out rows" in shown.stdout


def test_train_on_two_flows_says_they_are_too_few(shared_data: Path, tmp_path: Path) -> None:
    capture = shared_data / "pcaps" / "benign" / "ssh.pcap"  # one SSH session: two flows
    result = nadkit("train", capture, tmp_path / "m", "--model", "iforest")
    assert_one_line_error(result, "ssh.pcap", "2 flows are too few", "at least 10 normal flows")
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_train_on_a_few_hundred_normal_flows_says_how_rough_its_threshold_is(
    shared_data: Path, tmp_path: Path
) -> None:
    """IoT-23's honeypot conn.log holds 452 flows: the model is trained on about 340 of them and its
    threshold read off the tail of the largest hold-out scores; train says so, in its table and in
    its JSON, with what to check before trusting it."""
    conn_log = shared_data / "iot23" / "CTU-Honeypot-Capture-4-1" / "conn.log.labeled"
    first = nadkit("train", conn_log, "-o", tmp_path / "m", "--model", "iforest")
    assert first.returncode == 0, first.stderr
    assert "few normal rows" in first.stdout
    result = nadkit("train", conn_log, "-o", tmp_path / "m2", "--model", "iforest", "--json")
    assert result.returncode == 0, result.stderr
    caution = json.loads(result.stdout)["few_rows"]
    assert re.search(r"^3\d\d normal training rows; the threshold was read off the tail of the 10", caution)
    assert "alert rate" in caution and "--threshold spot" in caution
    # the table and the JSON say which counter windows the features read
    assert json.loads(result.stdout)["counter_windows"] == ["fast", "connections"]
    table = " ".join(first.stdout.replace("│", " ").split())  # the cells' text, unwrapped
    assert "2 s, the last 100 connections (computed from the flows); the 60 s window left out" in table

    # the minute's counters are left out unless asked for
    from nadkit.training.bundle import ModelBundle

    names = ModelBundle.load(tmp_path / "m").pipeline.feature_names_
    assert "cnt_src" in names and "cnt_src_conn" in names and not any("_slow" in n for n in names)
    result = nadkit("train", conn_log, "-o", tmp_path / "m3", "--model", "iforest", "--slow-counters")
    assert result.returncode == 0, result.stderr
    kept = ModelBundle.load(tmp_path / "m3").pipeline.feature_names_
    assert {"cnt_src_slow", "cnt_src_per_cnt_src_slow"} <= set(kept) and set(names) < set(kept)
    table = " ".join(result.stdout.replace("│", " ").split())
    assert "2 s, 60 s, the last 100 connections (computed from the flows)" in table


def test_train_rejects_unknown_model_and_option(tmp_path: Path) -> None:
    data = tmp_path / "days"
    assert nadkit("simulate", data, "--days", "1", "--flows-per-day", "1000").returncode == 0
    assert_one_line_error(nadkit("train", data, tmp_path / "m", "--model", "nope"), "unknown model 'nope'")
    settings = tmp_path / "bad.toml"
    settings.write_text("epochz = 3\n")
    assert_one_line_error(nadkit("train", data, tmp_path / "m", "--config", settings), "epochz")
    assert not (tmp_path / "m").exists()
    # the detector named where the flows go is told where it belongs, not taken for a file
    result = nadkit("train", "vae", data, "--out", tmp_path / "m", cwd=tmp_path)
    assert_one_line_error(result, "vae is a detector, not a file of flows: name it with --model")
    assert "--model vae" in result.stderr
    assert not (tmp_path / "m").exists()


def test_train_holds_out_stretches_of_flows_on_request(tmp_path: Path) -> None:
    data = tmp_path / "days"
    assert nadkit("simulate", data, "--days", "1", "--flows-per-day", "1500", "--seed", "3").returncode == 0
    out = tmp_path / "m"
    result = nadkit("train", data, out, "--model", "iforest", "--holdout-by", "time", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "threshold.json").read_text())["method"] in ("f_beta", "quantile")
    assert_one_line_error(
        nadkit("train", data, tmp_path / "m2", "--model", "iforest", "--holdout-by", "days"),
        "unknown hold-out",
    )
    assert not (tmp_path / "m2").exists()


def test_train_auto_holds_out_whole_files_on_request(tmp_path: Path) -> None:
    """--auto with --holdout-by capture on a folder of flow files: every candidate's hold-out is whole
    files (days here), named in the JSON; by default single rows."""
    data = tmp_path / "days"
    assert nadkit("simulate", data, "--days", "3", "--flows-per-day", "1500", "--seed", "3").returncode == 0
    days = sorted(p.name for p in data.iterdir())
    args = ("--auto", "--candidates", "iforest,ecod", "--json")
    chosen = nadkit("train", data, "-o", tmp_path / "m", "--holdout-by", "capture", *args)
    assert chosen.returncode == 0, chosen.stderr
    summary = json.loads(chosen.stdout)
    assert summary["holdout_by"] == "capture"
    assert summary["held_out_captures"] and set(summary["held_out_captures"]) < set(days)
    plain = nadkit("train", data, "-o", tmp_path / "m2", *args)
    assert plain.returncode == 0, plain.stderr
    assert json.loads(plain.stdout)["holdout_by"] == "rows"


@pytest.mark.slow
def test_train_holds_out_whole_captures_on_request(shared_data: Path, tmp_path: Path) -> None:
    """--holdout-by capture on a folder of captures: the threshold is set on captures the model did
    not train on, and the table and JSON name them; one capture alone is refused in one line."""
    folder = tmp_path / "captures"
    folder.mkdir()
    names = ("zoom.pcap", "waze.pcap", "signal.pcap", "telegram.pcap", "whatsapp_login_call.pcap")
    for name in names:
        (folder / name).symlink_to(shared_data / "pcaps" / "benign" / name)
    out = tmp_path / "m"
    result = nadkit("train", folder, "-o", out, "--model", "iforest", "--holdout-by", "capture", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    held = summary["held_out_captures"]
    assert held and set(held) < set(names)
    assert "__file" not in json.loads((out / "manifest.json").read_text())["training_rows"]["columns"]
    assert summary["holdout_by"] == "capture"
    table = nadkit("train", folder, "-o", tmp_path / "m2", "--model", "iforest", "--holdout-by", "capture")
    assert table.returncode == 0 and "captures held out" in table.stdout
    assert "whole captures" in table.stdout
    one = nadkit("train", folder / "zoom.pcap", "-o", tmp_path / "m3", "--holdout-by", "capture")
    assert_one_line_error(one, "several captures")
    assert not (tmp_path / "m3").exists()
    # by default single rows, whatever the input
    plain = nadkit("train", folder, "-o", tmp_path / "m4", "--model", "iforest", "--json")
    assert plain.returncode == 0, plain.stderr
    plain_summary = json.loads(plain.stdout)
    assert plain_summary["holdout_by"] == "rows" and not plain_summary["held_out_captures"]
    # ... and told that whole captures are there for traffic of other devices
    assert plain_summary["captures"] == len(names)
    assert "--holdout-by capture" in plain_summary["captures_caution"]
    assert summary["captures"] == len(names) and summary["captures_caution"] is None
    # the same from Python: a folder read with each flow's file, for the hold-out only
    from nadkit import api

    model = api.train(folder, model="iforest", holdout_by="capture")
    assert model.training is not None and model.training.held_out_captures == tuple(held)
    assert model.training.captures == len(names)


#: a multitask configuration that trains in seconds (two networks, to show both in the summary)
QUICK_MULTITASK = """\
width: 32
latent: 8
head_width: 16
epochs: 6
patience: 3
batch_size: 256
steps_per_epoch: 20
seeds: 2
device: cpu
"""


@pytest.fixture(scope="module")
def labelled_days(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two simulated days whose classes are in an ``attack`` column (Parquet), and the next day as
    the NAD CSV a user would adapt to and score."""
    folder = tmp_path_factory.mktemp("labelled")
    config = SimulationConfig(days=3, flows_per_day=4000, seed=21)
    days = [simulate_day(config, index) for index in range(3)]
    train = folder / "train.parquet"
    # the fields of the NAD layout (no packet counts), as the later day's CSV has them
    labelled = pl.concat(days[:2]).rename({"label": "attack"})
    labelled.drop("label_original", "day", "out_pkts", "in_pkts").write_parquet(train)
    later = folder / "later.csv"
    write_nad_csv(days[2], later)
    return train, later


def _train_labelled(
    train: Path, tmp_path: Path, model_name: str, settings: str, *options: str | Path
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """`nadkit train` of ``model_name`` with the YAML ``settings`` on the labelled days' ``attack``
    column; the bundle's path and the finished command."""
    config = tmp_path / f"{model_name}.yaml"
    config.write_text(settings)
    model = tmp_path / "model"
    command = ("train", train, model, "--model", model_name, "--config", config, "--label-column", "attack")
    return model, nadkit(*command, *options)


@pytest.mark.slow
def test_train_multitask_with_target_then_detect_names_the_classes(
    labelled_days: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # networks this small train several times faster on one thread when the cores are shared
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    train, later = labelled_days
    model, result = _train_labelled(train, tmp_path, "multitask", QUICK_MULTITASK, "--target", later)
    assert result.returncode == 0, result.stderr
    summary = result.stdout
    metrics = json.loads((model / "metrics.json").read_text())
    classes = metrics["classification"]["classes"]
    assert classes[0] == "normal" and len(classes) == 5
    later_rows = len(later.read_text().splitlines()) - 1
    assert metrics["target_rows"] == later_rows
    assert "labelled training rows" in summary and "normal training rows" not in summary
    assert re.search(rf"CMD target rows +│ {later_rows:,} unlabelled, from .*later\.csv", summary)
    assert "epochs, seed 1/2" in summary and "epochs, seed 2/2" in summary
    assert "with model.onnx" in summary and (model / "model.onnx").is_file()
    for name in classes:  # the classes table: each class with its training and validation rows
        assert any(line.startswith(f"│ {name} ") for line in summary.splitlines()), name

    alerts = tmp_path / "alerts.jsonl"
    detected = nadkit("detect", model, later, "--out", alerts, "--json")
    assert detected.returncode == 0, detected.stderr
    counts = json.loads(detected.stdout)
    records = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert records and counts["alerts"] == len(records)
    named = {r["class"] for r in records}
    assert named <= set(classes) and named - {"normal"}
    assert counts["alerts_by_class"] == dict(Counter(r["class"] for r in records))
    assert all(len(r["top_features"]) == 5 for r in records)
    attacks = [r for r in records if r["label"] != "normal"]
    assert attacks and sum(r["class"] == r["label"] for r in attacks) / len(attacks) > 0.5


@pytest.mark.slow
def test_train_hybrid_chooses_the_network_share_on_the_latest_flows(
    labelled_days: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    train, later = labelled_days
    settings = QUICK_MULTITASK + "tree_iterations: 30\n"
    model, result = _train_labelled(train, tmp_path, "multitask_gbt", settings)
    assert result.returncode == 0, result.stderr
    choice = json.loads((model / "metrics.json").read_text())["network_weight"]
    assert choice["chosen_on"] == "later rows"
    assert choice["network_weight"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert set(choice["scores"]) == {"0.0", "0.25", "0.5", "0.75", "1.0"}
    assert re.search(
        r"network's share of the average +│ [0-9.]+ \(chosen on the latest rows by time", result.stdout
    )
    detected = nadkit("detect", model, later, "--out", tmp_path / "alerts.jsonl", "--json")
    assert detected.returncode == 0, detected.stderr
    assert json.loads(detected.stdout)["alerts"] > 0


def test_train_fits_the_chosen_threshold_and_saves_the_onnx_graph(
    labelled_days: tuple[Path, Path], tmp_path: Path
) -> None:
    _, later = labelled_days
    settings = tmp_path / "ae.yaml"
    settings.write_text("epochs: 2\nbatch_size: 256\nhidden: [32]\nbottleneck: 4\n")
    out = tmp_path / "model"
    command = ("train", later, out, "--config", settings, "--threshold-method", "pot", "--risk", "0.001")
    result = nadkit(*command)
    assert result.returncode == 0, result.stderr
    assert "normal training rows" in result.stdout and "with model.onnx" in result.stdout
    threshold = json.loads((out / "threshold.json").read_text())
    assert threshold["method"] == "pot" and threshold["risk"] == 0.001
    assert "model.onnx" in json.loads((out / "manifest.json").read_text())["files"]


@pytest.mark.slow
def test_train_options_are_checked_before_training(labelled_days: tuple[Path, Path], tmp_path: Path) -> None:
    train, later = labelled_days
    out = tmp_path / "model"
    target = nadkit("train", later, out, "--model", "ae", "--target", later)
    assert_one_line_error(target, "ae", "would not use target traffic")
    risk = nadkit("train", later, out, "--threshold-method", "quantile", "--risk", "0.001")
    assert_one_line_error(risk, "--risk applies to --threshold-method pot")
    assert_one_line_error(
        nadkit("train", later, out, "--threshold-method", "median"), "threshold method 'median'"
    )
    assert_one_line_error(nadkit("train", later, out, "--fpr", "1.5"), "false_positive_rate")
    missing = nadkit("train", train, out, "--model", "multitask", "--label-column", "family")
    assert_one_line_error(missing, "no label column 'family'")
    assert not out.exists()


@pytest.mark.slow
def test_train_detect_and_evaluate_a_model_of_time_buckets(tmp_path: Path) -> None:
    """`--view buckets`: a GRU over per-host minute metrics, trained, then detecting and evaluating a
    later day from the saved bundle; every alert names its bucket and the bucket's metrics."""
    data = tmp_path / "days"
    assert nadkit("simulate", data, "--days", "2", "--flows-per-day", "3000", "--seed", "4").returncode == 0
    first, second = sorted(data.iterdir())
    settings = tmp_path / "gru.yaml"
    settings.write_text("epochs: 2\nwindow: 6\nhidden: 16\nbatch_size: 256\n")
    out = tmp_path / "model"
    result = nadkit(
        "train", first, out, "--model", "gru", "--config", settings, "--view", "buckets",
        "--bucket-seconds", "60", "--bucket-by", "src",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "time buckets of 60 s, per src" in result.stdout
    assert "hold-out flows (attacks)" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["view"] == "buckets" and "flows" in manifest["features"]
    assert (out / "view.json").is_file() and not (out / "pipeline.json").exists()

    alerts = tmp_path / "alerts.jsonl"
    detected = nadkit("detect", out, second, "--out", alerts, "--chunk-rows", "1000")
    assert detected.returncode == 0, detected.stderr
    records = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert records, "no alert on a day with attacks"
    metrics = set(manifest["features"])
    for record in records:
        assert record["bucket"] <= record["time"]
        assert {item["feature"] for item in record["top_features"]} <= metrics

    report = tmp_path / "report"
    evaluated = nadkit("evaluate", out, second, "--report", report)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "ROC-AUC" in evaluated.stdout
    assert (report / "report.html").is_file()

    # flows without the columns the buckets need: one line naming the file and the column, no output
    from nadkit.sources import load_flows

    flows, _ = load_flows(second)
    for dropped, column in (("time", "time"), ("dpt", "dpt")):
        bad = tmp_path / f"no-{dropped}.parquet"
        flows.drop(dropped).write_parquet(bad)
        refused = tmp_path / f"refused-{dropped}.jsonl"
        assert_one_line_error(nadkit("detect", out, bad, "--out", refused), str(bad), f"column {column!r}")
        assert not refused.exists()


@pytest.mark.slow
def test_bucket_options_are_checked(tmp_path: Path) -> None:
    data = tmp_path / "days"
    assert nadkit("simulate", data, "--days", "1", "--flows-per-day", "1000").returncode == 0
    out = tmp_path / "m"
    assert_one_line_error(
        nadkit("train", data, out, "--bucket-by", "src"),
        "--bucket-seconds and --bucket-by apply to --view buckets",
    )
    assert_one_line_error(nadkit("train", data, out, "--view", "minutes"), "--view must be flows or buckets")
    assert_one_line_error(
        nadkit("train", data, out, "--view", "buckets", "--model", "multitask"),
        "the bucket view is for unsupervised models",
    )
    assert_one_line_error(
        nadkit("train", data, out, "--view", "buckets", "--bucket-seconds", "0"), "bucket_s must be positive"
    )
    assert_one_line_error(
        nadkit("train", data, out, "--view", "buckets", "--slow-counters"),
        "--slow-counters applies to --view flows",
    )
    assert not out.exists()


@pytest.mark.slow  # ten command lines, about a minute
def test_a_window_model_reads_the_time_of_day_when_its_training_days_teach_it(tmp_path: Path) -> None:
    """`nadkit train --model lstm` on two days: the time of day is among its features (the day of week
    is not: two days do not teach it), detection of a later day runs on them, and `--no-calendar`
    (or a row model, unless `--calendar`) leaves them out."""
    data = tmp_path / "days"
    assert nadkit("simulate", data, "--days", "3", "--flows-per-day", "2000", "--seed", "6").returncode == 0
    days = sorted(data.iterdir())
    train = tmp_path / "train"
    train.mkdir()
    for day in days[:2]:
        (train / day.name).symlink_to(day)
    settings = tmp_path / "lstm.yaml"
    settings.write_text("epochs: 1\nwindow: 4\nhidden: 8\nbatch_size: 256\n")

    def features(*options: str, model: str = "lstm") -> list[str]:
        out = tmp_path / f"{model}{''.join(options)}"
        config = ["--config", str(settings)] if model == "lstm" else []
        result = nadkit("train", train, out, "--model", model, *config, *options)
        assert result.returncode == 0, result.stderr
        return json.loads((out / "manifest.json").read_text())["features"]

    calendar = [name for name in features() if name.startswith(("time_of_day", "day_of_week"))]
    assert calendar == ["time_of_day_sin", "time_of_day_cos"]
    alerts = tmp_path / "alerts.jsonl"
    detected = nadkit("detect", tmp_path / "lstm", days[2], "--out", alerts)
    assert detected.returncode == 0, detected.stderr
    assert alerts.read_text().strip(), "no alert on a day with attacks"
    assert not [n for n in features("--no-calendar") if n.startswith("time_of_day")]
    assert not [n for n in features(model="iforest") if n.startswith("time_of_day")]
    assert "time_of_day_sin" in features("--calendar", model="iforest")
    # --names keeps the window model's calendar; flows without names simply have no name features
    with_names = features("--names")
    assert "time_of_day_sin" in with_names and not [n for n in with_names if n.startswith("server_name")]
    assert_one_line_error(
        nadkit("train", train, tmp_path / "buckets-names", "--view", "buckets", "--names"),
        "--names applies to --view flows",
    )
    # --cadence adds how often and how regularly each source came back to its destination and service;
    # detection in chunks gives the whole day's scores (the look-back carried from chunk to chunk)
    assert {"pair_repeats", "pair_gap_s", "pair_gap_cv"} <= set(features("--cadence", model="iforest"))
    whole, chunked = tmp_path / "whole.jsonl", tmp_path / "chunked.jsonl"
    bundle = tmp_path / "iforest--cadence"
    for out, chunk in ((whole, "1000000"), (chunked, "1000")):
        result = nadkit("detect", bundle, days[2], "--out", out, "--all", "--chunk-rows", chunk)
        assert result.returncode == 0, result.stderr
    scores = [[json.loads(line)["score"] for line in p.read_text().splitlines()] for p in (whole, chunked)]
    assert len(scores[0]) > 1000 and scores[0] == pytest.approx(scores[1], rel=1e-6)
    assert_one_line_error(
        nadkit("train", train, tmp_path / "buckets-cadence", "--view", "buckets", "--cadence"),
        "--cadence applies to --view flows",
    )


@pytest.mark.slow  # several command lines, each training its candidates (tests/test_choice.py: the rule)
def test_train_auto_keeps_the_candidate_that_ranks_the_holdout_attacks_best(tmp_path: Path) -> None:
    """`nadkit train --auto`: every candidate trains on the same split, the one with the best hold-out
    PR-AUC is saved, and the table and `--json` list them all; what it cannot do is a one-line error
    before anything is trained."""
    data = tmp_path / "day"
    assert nadkit("simulate", data, "--days", "1", "--flows-per-day", "3000", "--seed", "4").returncode == 0
    out = tmp_path / "auto"
    result = nadkit("train", data, "--out", out, "--auto", "--candidates", "iforest,ecod", "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    candidates = payload["auto"]["candidates"]
    assert [c["model"] for c in candidates] == ["iforest", "ecod"]
    best = max(candidates, key=lambda c: c["pr_auc"])["model"]
    assert payload["model"] == payload["auto"]["chosen"] == best
    assert payload["holdout"]["pr_auc"] == pytest.approx(max(c["pr_auc"] for c in candidates))
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["auto"]["chosen"] == best
    assert json.loads((out / "manifest.json").read_text())["model"] == best
    shown = nadkit("train", data, "--out", tmp_path / "shown", "--auto", "--candidates", "ecod,iforest")
    assert shown.returncode == 0, shown.stderr
    assert "kept by --auto" in shown.stdout and f"{best} (kept)" in shown.stdout
    assert_one_line_error(
        nadkit("train", data, "--out", tmp_path / "x", "--auto", "--model", "ae"), "--auto chooses among"
    )
    assert_one_line_error(
        nadkit("train", data, "--out", tmp_path / "x", "--candidates", "ae,vae"),
        "--candidates applies to --auto",
    )
    assert_one_line_error(
        nadkit("train", data, "--out", tmp_path / "x", "--auto", "--candidates", "ae,multitask"),
        "multitask is supervised",
    )
    assert not (tmp_path / "x").exists()
