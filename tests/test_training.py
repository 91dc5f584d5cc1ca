"""Preparing flows for detectors: the unsupervised and supervised splits, the label column, the
supervised path of `train_model` (multitask, with target traffic), and the time-bucket view end to
end."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from nadkit.errors import ConfigError, NadkitError
from nadkit.evaluation.split import (
    MIN_WEIGHING_ROWS,
    session_groups,
    supervised_split,
    unsupervised_split,
    weighing_split,
)
from nadkit.evaluation.thresholds import fit_threshold
from nadkit.features.buckets import BucketScaling, bucket_detector_data
from nadkit.features.data import detector_data
from nadkit.features.series import BucketConfig, bucket_metrics
from nadkit.models import REGISTRY
from nadkit.models.base import DetectorData
from nadkit.models.neural import error_weights
from nadkit.schema import NORMAL
from nadkit.simulate import SimulationConfig, simulate
from nadkit.training.bundle import ModelBundle
from nadkit.training.fit import fit, fit_bundle, holdout_threshold, train_model, use_label_column
from nadkit.training.holdout import captures_in, read_training_flows
from tests.conftest import shared_file

#: a quick multitask configuration for training through `train_model`
QUICK_MULTITASK = {
    "width": 32,
    "latent": 8,
    "head_width": 16,
    "epochs": 6,
    "patience": 3,
    "batch_size": 256,
    "steps_per_epoch": 20,
    "seeds": 1,
    "attribution_steps": 8,
    "device": "cpu",
}


@pytest.fixture(scope="module")
def days() -> pl.DataFrame:
    return simulate(SimulationConfig(days=2, flows_per_day=8000, seed=12))


def test_unsupervised_split_trains_on_normal_rows_only(days: pl.DataFrame) -> None:
    split = unsupervised_split(days, holdout_fraction=0.3, seed=1)
    assert (split.train["label"] == NORMAL).all()
    attacks = int((days["label"] != NORMAL).sum())
    assert int((split.holdout["label"] != NORMAL).sum()) == attacks
    assert split.train.height + split.holdout.height == days.height
    normal = days.height - attacks
    assert abs((split.holdout.height - attacks) / normal - 0.3) < 0.03


def _stretches(held: np.ndarray) -> int:
    """How many runs of True ``held`` has."""
    return int(np.sum(np.diff(np.r_[0, held.astype(np.int8), 0]) == 1))


def test_flows_with_times_are_held_out_as_three_stretches_of_consecutive_normal_flows(
    days: pl.DataFrame,
) -> None:
    shuffled = days.with_row_index("row").sample(fraction=1.0, shuffle=True, seed=4)
    split = unsupervised_split(shuffled, holdout_fraction=0.3, seed=1, stretches=True)
    assert split.method == "normal-only, time-blocks"
    normal = shuffled.filter(pl.col("label") == NORMAL).sort("time", maintain_order=True)
    held = normal["row"].is_in(split.holdout["row"].to_list()).to_numpy()
    parts = [bool(part.all()) for part in np.array_split(held, 10) if part.all() or not part.any()]
    assert len(parts) == 10 and sum(parts) == 3, "three of ten stretches of the normal flows in time order"
    assert 1 <= _stretches(held) <= 3
    # every attack is held out, and rows keep their order on both sides
    assert int((split.holdout["label"] != NORMAL).sum()) == int((days["label"] != NORMAL).sum())
    order = shuffled["row"].to_list()
    for side in (split.train, split.holdout):
        rows = side["row"].to_list()
        assert rows == sorted(rows, key=order.index)
    # other seeds draw other stretches; other shares cut the time range finer or coarser
    other = unsupervised_split(shuffled, holdout_fraction=0.3, seed=2, stretches=True)
    assert set(other.holdout["row"].to_list()) != set(split.holdout["row"].to_list())
    small = unsupervised_split(shuffled, holdout_fraction=0.06, seed=1, stretches=True)
    held = normal["row"].is_in(small.holdout["row"].to_list()).to_numpy()
    assert 1 <= _stretches(held) <= 3 and held.mean() == pytest.approx(0.06, abs=0.01)


def test_rows_without_times_or_on_request_are_held_out_one_by_one(
    days: pl.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    for frame, stretches in ((days.drop("time"), True), (days, False)):
        with caplog.at_level(logging.WARNING, logger="nadkit.evaluation.split"):
            caplog.clear()
            split = unsupervised_split(
                frame.with_row_index("row"), holdout_fraction=0.3, seed=1, stretches=stretches
            )
        assert ("single rows are held out instead" in caplog.text) == stretches
        assert split.method == "normal-only, random"
        normal = frame.with_row_index("row").filter(pl.col("label") == NORMAL)
        held = normal["row"].is_in(split.holdout["row"].to_list()).to_numpy()
        assert _stretches(held) > 100
        assert held.mean() == pytest.approx(0.3, abs=0.03)
    unlabelled = unsupervised_split(days.drop("label"), holdout_fraction=0.3, seed=1, stretches=True)
    assert unlabelled.method == "time-blocks"
    assert unsupervised_split(days, holdout_fraction=0.3, seed=1).method == "normal-only, random", (
        "the default"
    )


@pytest.mark.parametrize("stretches", [False, True])
def test_rows_marked_train_only_are_never_held_out(days: pl.DataFrame, stretches: bool) -> None:
    keep = np.zeros(days.height, dtype=bool)
    keep[::7] = True
    split = unsupervised_split(
        days.with_row_index("row"), holdout_fraction=0.3, seed=1, train_only=keep, stretches=stretches
    )
    kept_rows = set(np.flatnonzero(keep & (days["label"] == NORMAL).to_numpy()).tolist())
    assert kept_rows <= set(split.train["row"].to_list())
    attacks = set(np.flatnonzero(keep & (days["label"] != NORMAL).to_numpy()).tolist())
    assert attacks <= set(split.holdout["row"].to_list()), "an attack is never trained on"
    with pytest.raises(ConfigError, match="train_only"):
        unsupervised_split(days, train_only=keep[:10])


def test_a_bundle_trained_on_a_few_dozen_normal_rows_keeps_its_tail_threshold(
    days: pl.DataFrame, tmp_path: Path
) -> None:
    few = days.filter(pl.col("label") == NORMAL).head(150)
    result = fit(few, model="iforest", seed=0)
    threshold = result.bundle.threshold
    assert threshold.method == "quantile" and threshold.params["peaks"] == 10, threshold
    result.save(tmp_path / "few", onnx=False)
    assert ModelBundle.load(tmp_path / "few").threshold == threshold


def test_training_holds_out_stretches_in_time_on_request(days: pl.DataFrame) -> None:
    first = days.filter(pl.col("day") == days["day"].min())
    small = {"epochs": 2, "hidden": (16,), "bottleneck": 4}
    by_time = fit(first, model="ae", config=small, seed=0, holdout_by="time")
    by_rows = fit(first, model="ae", config=small, seed=0)
    normal = int((first["label"] == NORMAL).sum())
    for result in (by_time, by_rows):
        assert result.train_rows + result.holdout_rows == first.height
        assert result.holdout_rows - result.holdout_attacks == pytest.approx(0.3 * normal, rel=0.05)
    assert by_time.bundle.threshold.value != by_rows.bundle.threshold.value
    with pytest.raises(ConfigError, match="hold-out 'days'"):
        fit(first, model="ae", config=small, holdout_by="days")


def test_weighing_takes_the_earlier_half_of_the_normal_hold_out_and_never_an_attack(
    days: pl.DataFrame,
) -> None:
    holdout = unsupervised_split(days, holdout_fraction=0.3, seed=2).holdout
    weighing = weighing_split(holdout, seed=0)
    assert weighing is not None
    normal = (holdout["label"] == NORMAL).to_numpy()
    assert not (weighing & ~normal).any(), "an attack never sets the weights"
    assert int(weighing.sum()) == int(normal.sum()) // 2
    times = holdout["time"].to_numpy()
    assert times[weighing].max() <= times[normal & ~weighing].min(), "the earlier half in time"
    # without times: a random half, drawn by the seed
    untimed = holdout.drop("time")
    first, again, other = (weighing_split(untimed, seed=s) for s in (0, 0, 1))
    assert first is not None and other is not None
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert int(first.sum()) == int(normal.sum()) // 2 and not (first & ~normal).any()
    # too few normal rows to halve
    normal_rows = holdout.filter(pl.col("label") == NORMAL)
    assert weighing_split(normal_rows.head(2 * MIN_WEIGHING_ROWS - 1)) is None
    enough = weighing_split(normal_rows.head(2 * MIN_WEIGHING_ROWS).drop("label"))
    assert enough is not None and int(enough.sum()) == MIN_WEIGHING_ROWS, "unlabelled rows count as normal"


def test_a_model_that_weighs_its_errors_does_so_on_hold_out_rows_it_sets_no_threshold_on(
    days: pl.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    first = days.filter(pl.col("day") == days["day"].min())
    small = {"epochs": 3, "hidden": (16,), "bottleneck": 4, "weigh_errors": True}
    result = fit(first, model="ae", config=small, seed=0)
    normal = int((first["label"] == NORMAL).sum())
    held_normal = result.holdout_rows - result.holdout_attacks
    assert result.weighing_rows == pytest.approx(0.15 * normal, rel=0.1)
    assert held_normal == pytest.approx(0.15 * normal, rel=0.1)
    assert result.train_rows + result.weighing_rows + result.holdout_rows == first.height
    assert result.bundle.metrics["weighing_rows"] == result.weighing_rows
    # the weights are those of the detector's mean errors on exactly those rows
    split = unsupervised_split(first, holdout_fraction=0.3, seed=0)
    mask = weighing_split(split.holdout, seed=0)
    assert mask is not None and int(mask.sum()) == result.weighing_rows
    bundle = result.bundle
    weighed = detector_data(bundle.pipeline, split.holdout).take(mask)
    detector = bundle.detector
    saved = detector.error_weights_
    detector.error_weights_ = None
    assert np.allclose(error_weights(detector.contributions(weighed).mean(axis=0)), saved, rtol=1e-4)
    detector.error_weights_ = saved
    # a hold-out too small to halve: the detector weighs on its own held-out tenth, and says so
    few = first.filter(pl.col("label") == NORMAL).head(100)
    with caplog.at_level(logging.WARNING, logger="nadkit.training.fit"):
        small_result = fit(few, model="ae", config=small, seed=0)
    assert small_result.weighing_rows == 0 and "too few normal rows to weigh" in caplog.text
    assert "weighing_rows" not in small_result.bundle.metrics


def test_a_hold_out_by_time_asked_of_a_bucket_model_says_it_does_not_apply(
    days: pl.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    first = days.filter(pl.col("day") == days["day"].min())
    with caplog.at_level(logging.WARNING, logger="nadkit.training.fit"):
        fit(first, model="iforest", buckets=BucketConfig(bucket_s=300), holdout_by="time")
    assert "only an unsupervised model of single flows" in caplog.text


@pytest.mark.parametrize("name", [n for n, c in sorted(REGISTRY.items()) if c.input == "windows"])
def test_windowed_detector_on_the_bucket_view(days: pl.DataFrame, name: str) -> None:
    """Train on one day's per-minute network metrics, score the next day's buckets with planted
    bursts, and carry the bucket scores to the flows of each bucket."""
    normal = days.filter(pl.col("label") == NORMAL)
    first, second = (normal.filter(pl.col("day") == d) for d in sorted(normal["day"].unique()))
    config = BucketConfig(bucket_s=60, span="full")
    train_series = bucket_metrics(first, config)
    test_series = bucket_metrics(second, BucketConfig(bucket_s=60, span="full", apps=train_series.apps))
    scaling = BucketScaling.fit(train_series)
    train = bucket_detector_data(train_series, scaling)
    test = bucket_detector_data(test_series, scaling)
    rng = np.random.default_rng(2)
    planted = np.zeros(len(test), dtype=bool)
    planted[rng.choice(len(test), size=max(5, len(test) // 20), replace=False)] = True
    features = test.features.copy()
    columns = [test.feature_names.index(c) for c in ("flows", "unique_dst", "unique_dpt")]
    features[np.ix_(planted, columns)] += 6.0  # several hundred times the usual counts, in log scale
    test = DetectorData(features, test.feature_names, entity=test.entity, time=test.time)

    cls = REGISTRY[name]
    detector = cls(cls.test_config()).fit(train)
    scores = detector.score(test)
    assert roc_auc_score(planted, scores) > 0.9
    per_flow = test_series.to_flows(scores)
    assert per_flow.shape == (second.height,)
    assert np.isfinite(per_flow).all()
    in_planted = planted[test_series.row_bucket]
    if in_planted.any():
        assert per_flow[in_planted].mean() > per_flow[~in_planted].mean()


def _shares(frame: pl.DataFrame) -> dict[str, float]:
    counts = frame["label"].value_counts()
    return {label: count / frame.height for label, count in counts.iter_rows()}


def test_supervised_split_keeps_sessions_whole_with_addresses(days: pl.DataFrame) -> None:
    split = supervised_split(days, validation_fraction=0.25, seed=2)
    assert split.method == "group"
    assert split.train.height + split.validation.height == days.height
    assert abs(split.validation.height / days.height - 0.25) < 0.03
    groups = session_groups(pl.concat([split.train, split.validation]))
    on_train = set(groups[: split.train.height].tolist())
    on_validation = set(groups[split.train.height :].tolist())
    assert not on_train & on_validation
    whole, validation = _shares(days), _shares(split.validation)
    for label, share in whole.items():
        assert abs(validation.get(label, 0.0) - share) < 0.01, label


def test_supervised_split_is_stratified_without_addresses(days: pl.DataFrame) -> None:
    frame = days.drop("src", "dst")
    split = supervised_split(frame, validation_fraction=0.3, seed=1)
    assert split.method == "stratified"
    counts = days["label"].value_counts()
    held = dict(split.validation["label"].value_counts().iter_rows())
    for label, count in counts.iter_rows():
        assert held[label] == round(count * 0.3), label
    assert split.report["rows"] == {"train": split.train.height, "validation": split.validation.height}


def test_supervised_split_needs_labels(days: pl.DataFrame) -> None:
    with pytest.raises(ConfigError, match="labelled"):
        supervised_split(days.drop("label"))
    with pytest.raises(ConfigError):
        supervised_split(days, validation_fraction=1.0)


def test_use_label_column_replaces_the_label_and_drops_the_column() -> None:
    frame = pl.DataFrame(
        {
            "duration": [1.0, 2.0, 3.0],
            "label": ["normal", "neptune", "ipsweep"],
            "attack_family": ["normal", "DoS", "Probe"],
            "flagged": [0, 1, 1],
        }
    )
    chosen = use_label_column(frame, "attack_family")
    assert chosen["label"].to_list() == ["normal", "DoS", "Probe"]
    assert "attack_family" not in chosen.columns
    numeric = use_label_column(frame, "flagged")  # benign values ("0") read as normal
    assert numeric["label"].to_list() == ["normal", "1", "1"]
    assert "flagged" not in numeric.columns
    assert use_label_column(frame) is frame
    with pytest.raises(ConfigError, match="no label column 'family'"):
        use_label_column(frame, "family")


@pytest.fixture(scope="module")
def simulated_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two labelled simulated days (training) and a later day (the target), as Parquet files."""
    folder = tmp_path_factory.mktemp("supervised")
    flows = simulate(SimulationConfig(days=3, flows_per_day=4000, seed=21))
    days_present = sorted(flows["day"].unique().to_list())
    train, target = folder / "train.parquet", folder / "target.parquet"
    flows.filter(pl.col("day") < days_present[-1]).drop("day").write_parquet(train)
    flows.filter(pl.col("day") == days_present[-1]).drop("day").write_parquet(target)
    return train, target


def test_train_model_supervised_with_target(simulated_files: tuple[Path, Path], tmp_path: Path) -> None:
    """The multitask bundle: classes, a threshold on 1 - P(normal) chosen on the validation part,
    the NAD score of the validation part, and scores that survive loading."""
    train, target = simulated_files
    out = tmp_path / "model"
    result = train_model(
        train, out, model="multitask", config=QUICK_MULTITASK, holdout_fraction=0.25, target=target
    )
    assert result.supervised
    assert result.classes[0] == NORMAL
    assert set(result.classes) == set(pl.read_parquet(train)["label"].unique().to_list())
    assert result.holdout_attacks > 0
    assert set(result.class_counts["train"]) == set(result.classes)
    assert sum(result.class_counts["train"].values()) == result.train_rows
    assert result.target_rows == pl.read_parquet(target).height
    assert result.onnx and (out / "model.onnx").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"]["method"] == "group"
    assert metrics["target_rows"] == pl.read_parquet(target).height
    assert metrics["classification"]["classes"] == list(result.classes)
    assert metrics["classification"]["nad_score"] > 0.3  # predicting all normal scores about 0.21
    assert metrics["holdout"]["roc_auc"] > 0.8
    threshold = json.loads((out / "threshold.json").read_text())
    assert threshold["method"] == "f_beta" and 0 < threshold["value"] < 1

    bundle = ModelBundle.load(out)
    assert bundle.detector.classes_ == result.classes
    frame = pl.read_parquet(target)
    data = bundle.data(frame)
    scores = bundle.score(frame)
    probabilities = bundle.detector.predict_proba(data)
    np.testing.assert_allclose(scores, 1.0 - probabilities[:, 0], atol=1e-6)
    np.testing.assert_array_equal(scores, result.bundle.detector.score(data))

    # detection works unchanged and alerts name the predicted class
    from nadkit.detection.detect import detect_file

    detected = detect_file(out, target, tmp_path / "alerts.jsonl")
    alerts = pl.read_ndjson(tmp_path / "alerts.jsonl")
    assert detected.alerts == alerts.height > 0
    assert set(alerts["class"].to_list()) <= set(result.classes)
    assert (alerts["score"] >= threshold["value"]).all()
    alerted_attacks = alerts.filter(pl.col("label") != NORMAL)
    assert (alerted_attacks["class"] == alerted_attacks["label"]).mean() > 0.5


def test_train_model_supervised_needs_labels(simulated_files: tuple[Path, Path], tmp_path: Path) -> None:
    train, _ = simulated_files
    unlabelled = tmp_path / "unlabelled.parquet"
    pl.read_parquet(train).drop("label", "label_original").write_parquet(unlabelled)
    with pytest.raises(ConfigError, match="no labels"):
        train_model(unlabelled, tmp_path / "model", model="multitask", config=QUICK_MULTITASK)
    assert not (tmp_path / "model").exists()


def test_train_model_learns_the_kdd_attack_family(tmp_path: Path) -> None:
    """NSL-KDD with ``label_column="attack_family"``: the classes are the families, split by rows."""
    source = shared_file("nsl_kdd/KDDTrain+_20Percent.txt")
    lines = source.read_text().splitlines()
    sample = tmp_path / "kdd.txt"
    sample.write_text("\n".join(lines[:4000]) + "\n")
    result = train_model(
        sample,
        tmp_path / "model",
        model="multitask",
        config=QUICK_MULTITASK,
        format="kdd",
        label_column="attack_family",
    )
    assert result.classes[0] == NORMAL
    assert {"DoS", "Probe"} <= set(result.classes)
    assert not {"neptune", "smurf"} & set(result.classes)
    metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert metrics["split"]["method"] == "stratified"
    assert metrics["classification"]["macro_f1"] > 0.5
    assert "attack_family" not in ModelBundle.load(tmp_path / "model").pipeline.feature_names_


def _plant_exfiltration(frame: pl.DataFrame, share: float, seed: int) -> tuple[pl.DataFrame, np.ndarray]:
    """``frame`` with a ``share`` of its normal flows turned into an ``exfiltration`` class that
    differs from normal in one field only: five gigabytes out."""
    rng = np.random.default_rng(seed)
    chosen = (frame["label"] == NORMAL).to_numpy() & (rng.random(frame.height) < share)
    mask = pl.Series(chosen)
    planted = frame.with_columns(
        pl.when(mask)
        .then(pl.lit(5_000_000_000))
        .otherwise(pl.col("out_bytes"))
        .cast(frame.schema["out_bytes"])
        .alias("out_bytes"),
        pl.when(mask).then(pl.lit("exfiltration")).otherwise(pl.col("label")).alias("label"),
    )
    return planted, chosen


def test_multitask_detection_explains_the_alerts_by_the_planted_feature(
    simulated_files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scoring a multitask bundle computes contributions for the alerts only (on ONNX Runtime, as
    the bundle is saved with its graph); an alert caused by one absurd field is explained by the
    features of that field, and gets the class that field stands for."""
    from nadkit.detection.detect import detect_file

    train, target = simulated_files
    planted_train, _ = _plant_exfiltration(pl.read_parquet(train), 0.03, seed=1)
    planted_target, chosen = _plant_exfiltration(pl.read_parquet(target), 0.03, seed=2)
    assert planted_target.columns == pl.read_parquet(target).columns
    train_path, target_path = tmp_path / "train.parquet", tmp_path / "target.parquet"
    planted_train.write_parquet(train_path)
    planted_target.write_parquet(target_path)
    result = train_model(
        train_path, tmp_path / "model", model="multitask", config=QUICK_MULTITASK, target=target_path
    )
    assert "exfiltration" in result.classes and result.onnx
    bundle = ModelBundle.load(tmp_path / "model")
    assert bundle.has_onnx and bundle.active_engine == "onnx"

    explained: list[int] = []
    contributions = ModelBundle.contributions

    def counting(self: ModelBundle, data: DetectorData, **options: bool) -> np.ndarray:
        explained.append(len(data))
        return contributions(self, data, **options)

    monkeypatch.setattr(ModelBundle, "contributions", counting)
    detected = detect_file(bundle, target_path, tmp_path / "all.parquet", alerts_only=False, top=3)
    records = pl.read_parquet(tmp_path / "all.parquet").sort("row")
    assert records.height == planted_target.height
    assert 0 < detected.alerts == int(records["alert"].sum()) == sum(explained) < records.height / 5
    assert (records["top_features"].is_null() == ~records["alert"]).all()
    # scores and classes are the model's own, for every flow
    data = bundle.data(planted_target)
    np.testing.assert_allclose(records["score"].to_numpy(), bundle.detector.score(data), rtol=1e-5, atol=1e-6)
    assert records["class"].to_list() == bundle.detector.predict(data).tolist()

    planted = records.filter(pl.Series(chosen) & pl.col("alert"))
    assert planted.height >= 0.8 * chosen.sum()
    assert (planted["class"] == "exfiltration").mean() > 0.9
    raw = bundle.pipeline.raw_columns_
    leading = [features[0]["feature"] for features in planted["top_features"].to_list()]
    assert np.mean(["out_bytes" in raw[name] for name in leading]) > 0.9, leading[:10]


def test_holdout_threshold_methods() -> None:
    rng = np.random.default_rng(5)
    scores = rng.exponential(size=4000)
    labels = np.where(rng.random(4000) < 0.05, "Probing-IP sweep", NORMAL)
    scores[labels != NORMAL] += 4.0
    normal = scores[labels == NORMAL]

    auto, measured = holdout_threshold(scores, labels, beta=2.0)
    assert auto.method == "f_beta" and auto.params["beta"] == 2.0
    assert auto.value == fit_threshold("f_beta", scores, labels, beta=2.0).value
    assert measured is not None and measured.recall > 0.9
    without_attacks, none = holdout_threshold(normal, None, 0.05)
    assert without_attacks.method == "quantile" and none is None
    assert without_attacks.value == pytest.approx(np.quantile(normal, 0.95), rel=0.01)

    quantile, measured = holdout_threshold(scores, labels, 0.02, method="quantile")
    assert quantile.method == "quantile" and quantile.params["false_positive_rate"] == 0.02
    assert measured is not None and measured.false_positive_rate == pytest.approx(0.02, abs=0.002)
    pot, _ = holdout_threshold(scores, labels, method="pot", risk=1e-3)
    assert pot.method == "pot" and pot.params["risk"] == 1e-3
    assert pot.value == fit_threshold("pot", scores, labels, risk=1e-3).value
    assert pot.value > quantile.value

    with pytest.raises(ConfigError, match="f_beta threshold needs labelled attack and normal rows"):
        holdout_threshold(normal, None, method="f_beta")
    with pytest.raises(ConfigError, match="'risk'"):
        holdout_threshold(scores, labels, risk=1e-3)  # auto fits f_beta or quantile
    with pytest.raises(ConfigError, match="unknown threshold method 'median'"):
        holdout_threshold(scores, labels, method="median")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"threshold_method": "median"}, "unknown threshold method 'median'"),
        ({"threshold_method": "pot", "threshold_params": {"beta": 2.0}}, "'beta'"),
        ({"threshold_method": "pot", "threshold_params": {"risk": 0.5}}, "'risk'"),
        (
            {"threshold_method": "quantile", "threshold_params": {"false_positive_rate": 1.5}},
            "false_positive_rate",
        ),
        ({"model": "ae", "config": {}, "target": "later-day.csv"}, "would not use target traffic"),
    ],
)
def test_train_model_checks_its_choices_before_training(
    simulated_files: tuple[Path, Path], tmp_path: Path, options: dict[str, object], message: str
) -> None:
    train, _ = simulated_files
    settings = {"model": "multitask", "config": QUICK_MULTITASK, **options}
    with pytest.raises(ConfigError, match=message):
        train_model(train, tmp_path / "model", **settings)  # type: ignore[arg-type]
    assert not (tmp_path / "model").exists()


def test_train_model_saves_the_onnx_graph_or_warns(
    simulated_files: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    train, _ = simulated_files
    config = {"epochs": 1, "batch_size": 256, "hidden": [16], "bottleneck": 4}
    result = train_model(
        train,
        tmp_path / "with",
        model="ae",
        config=config,
        threshold_method="pot",
        threshold_params={"risk": 1e-3},
    )
    assert result.onnx and not result.supervised
    assert result.class_counts["train"] == {NORMAL: result.train_rows}
    assert sum(result.class_counts["holdout"].values()) == result.holdout_rows
    bundle = ModelBundle.load(tmp_path / "with")
    assert bundle.has_onnx and bundle.active_engine == "onnx"
    assert bundle.threshold.method == "pot" and bundle.threshold.params["risk"] == 1e-3

    import nadkit.models.export

    def failing(*args: object, **kwargs: object) -> None:
        raise NadkitError("ae could not be exported to ONNX (no exporter today)")

    monkeypatch.setattr(nadkit.models.export, "export_onnx", failing)
    with caplog.at_level("WARNING", logger="nadkit.training.fit"):
        result = train_model(train, tmp_path / "without", model="ae", config=config)
    assert not result.onnx
    assert not ModelBundle.load(tmp_path / "without").has_onnx
    assert not (tmp_path / "without" / "model.onnx").exists()
    assert any(
        "saved without model.onnx" in r.getMessage() and "no exporter today" in r.getMessage()
        for r in caplog.records
    )


def test_auto_threshold_is_capped_at_the_false_positive_budget() -> None:
    from nadkit.training.fit import holdout_threshold

    rng = np.random.default_rng(0)
    normal = rng.normal(0.0, 1.0, 2000)
    # known attacks are a flood far out: the F1-optimal threshold sits just below them, far above
    # the normal scores; the cap brings it down to the score 1% of the normal rows exceed
    flood = rng.normal(50.0, 1.0, 500)
    scores = np.concatenate([normal, flood])
    labels = np.array(["normal"] * 2000 + ["flood"] * 500)
    capped, _ = holdout_threshold(scores, labels, 0.01)
    assert capped.method == "quantile"
    assert capped.value == pytest.approx(np.quantile(normal, 0.99), abs=0.05)
    uncapped, _ = holdout_threshold(scores, labels, 0.01, method="f_beta")
    assert uncapped.value > 40
    # attacks that overlap the normal scores: the F1-optimal threshold is already below the cap
    close = rng.normal(3.0, 1.0, 500)
    labels_close = np.array(["normal"] * 2000 + ["scan"] * 500)
    kept, _ = holdout_threshold(np.concatenate([normal, close]), labels_close, 0.01)
    assert kept.method == "f_beta" and kept.value < np.quantile(normal, 0.99)


def test_fit_trains_in_memory_and_saves_what_train_model_saves(days: pl.DataFrame, tmp_path: Path) -> None:
    """`fit` reads and writes no file; saving its result gives the bundle `train_model` writes from the
    same flows, and both score alike."""
    first, second = days.filter(pl.col("time").dt.day() == days["time"].dt.day().min()), days
    before = set(tmp_path.iterdir())
    result = fit(first, model="iforest", config={"trees": 50}, seed=3)
    assert set(tmp_path.iterdir()) == before and result.path is None and not result.onnx
    bundle = result.bundle
    assert bundle.threshold is not None and bundle.training_rows is not None
    assert bundle.manifest["data_fingerprint"]
    in_memory = bundle.score(second)

    saved = result.save(tmp_path / "saved", onnx=False)
    assert saved.path == tmp_path / "saved" and saved.bundle is bundle
    loaded = ModelBundle.load(tmp_path / "saved")
    np.testing.assert_allclose(loaded.score(second), in_memory, rtol=1e-5, atol=1e-6)
    assert loaded.threshold == bundle.threshold

    source = tmp_path / "first.parquet"
    first.write_parquet(source)
    trained = train_model(source, tmp_path / "trained", model="iforest", config={"trees": 50}, seed=3)
    assert trained.bundle.threshold == bundle.threshold
    assert (
        loaded.manifest["data_fingerprint"]
        == ModelBundle.load(tmp_path / "trained").manifest["data_fingerprint"]
    )
    with pytest.raises(ConfigError, match="already exists"):
        saved.save(tmp_path / "saved", onnx=False)
    assert fit_bundle(first, model="iforest", config={"trees": 50}, seed=3).threshold == bundle.threshold


def test_whole_captures_are_held_out_on_request(days: pl.DataFrame, caplog: pytest.LogCaptureFixture) -> None:
    """``--holdout-by capture``: the normal flows of whole captures are held out (about the share
    asked, never one capture on both sides, never all of them), attacks as always; one capture
    falls back to single rows with a warning; the fit names the captures it held out."""
    frame = days.with_row_index("row")
    groups = np.array([f"capture-{i % 9}.pcap" for i in range(frame.height)])
    groups[: 2 * frame.height // 3] = "big.pcap"  # more than twice the share asked
    split = unsupervised_split(frame, holdout_fraction=0.3, seed=2, groups=groups)
    assert split.method == "normal-only, captures"
    held = split.report["captures_held_out"]
    normal = (frame["label"] == NORMAL).to_numpy()
    trained = set(groups[np.isin(frame["row"].to_numpy(), split.train["row"].to_numpy())])
    assert held and not set(held) & trained and trained, "a capture is on one side only"
    assert "big.pcap" not in held
    share = np.isin(groups[normal], held).mean()
    assert 0.15 <= share <= 0.4
    attacks = frame.filter(pl.col("label") != NORMAL)["row"].to_list()
    assert set(attacks) <= set(split.holdout["row"].to_list())
    with caplog.at_level(logging.WARNING, logger="nadkit.evaluation.split"):
        single = unsupervised_split(frame, seed=2, groups=np.full(frame.height, "one.pcap"))
    assert single.method == "normal-only, random" and "one capture" in caplog.text
    with pytest.raises(ConfigError, match="not both"):
        unsupervised_split(frame, groups=groups, stretches=True)

    first = days.filter(pl.col("day") == days["day"].min())
    named = first.with_columns(pl.Series("capture", [f"c{i % 4}" for i in range(first.height)]))
    result = fit(named, model="iforest", seed=0, holdout_by="capture")
    assert result.held_out_captures and set(result.held_out_captures) < {"c0", "c1", "c2", "c3"}
    with pytest.raises(ConfigError, match="several captures"):
        fit(first, model="iforest", holdout_by="capture")


def test_the_fit_says_how_its_hold_out_was_drawn(days: pl.DataFrame) -> None:
    """``holdout_by`` as drawn: single rows by default, whole captures or stretches on request, and
    single rows where the flows name one capture only (the split falls back with a warning)."""
    first = days.filter(pl.col("day") == days["day"].min())
    named = first.with_columns(pl.Series("capture", [f"c{i % 4}" for i in range(first.height)]))
    assert fit(named, model="iforest", seed=0).holdout_by == "rows"
    assert fit(named, model="iforest", seed=0, holdout_by="capture").holdout_by == "capture"
    assert fit(first, model="iforest", seed=0, holdout_by="time").holdout_by == "time"
    one = named.with_columns(pl.lit("one").alias("capture"))
    alone = fit(one, model="iforest", seed=0, holdout_by="capture")
    assert alone.holdout_by == "rows" and alone.held_out_captures == ()


def test_captures_of_one_name_in_several_folders_are_told_apart(days: pl.DataFrame, tmp_path: Path) -> None:
    """``folder/*/conn.log``: files of one name are each a capture of their own (named by path)."""
    first = days.filter(pl.col("day") == days["day"].min())
    for index, part in enumerate(np.array_split(np.arange(first.height), 3)):
        (tmp_path / f"sensor{index}").mkdir()
        first[part.tolist()].write_parquet(tmp_path / f"sensor{index}" / "flows.parquet")
    frame, _, groups = read_training_flows(str(tmp_path / "*" / "flows.parquet"), holdout_by="capture")
    assert groups is not None and frame.height == first.height
    assert sorted(set(groups)) == [str(tmp_path / f"sensor{i}" / "flows.parquet") for i in range(3)]


def test_captures_are_counted_where_the_flows_come_from_several(days: pl.DataFrame, tmp_path: Path) -> None:
    """``captures_in``: a mix's capture column, the pcap files of a folder; flow records count none.
    `nadkit train` points a model of several captures held out as rows to whole captures."""
    from nadkit.cli.training import captures_caution

    first = days.filter(pl.col("day") == days["day"].min())
    named = first.with_columns(pl.Series("capture", [f"c{i % 4}" for i in range(first.height)]))
    assert captures_in("mix.parquet", named, "canonical") == 4
    assert captures_in(tmp_path, first, "nad") == 0
    folder = tmp_path / "captures"
    folder.mkdir()
    for name in ("zoom.pcap", "waze.pcap", "ssh.pcap"):
        (folder / name).write_bytes(b"")  # counted, not read
    assert captures_in(folder, first, "pcap") == 3
    result = fit(named, model="iforest", seed=0)
    assert captures_caution(result) is None  # flows given in memory: no captures counted
    several = replace(result, captures=3)
    assert "--holdout-by capture" in (captures_caution(several) or "")
    assert captures_caution(replace(several, holdout_by="capture")) is None
    assert captures_caution(replace(several, captures=2)) is None
