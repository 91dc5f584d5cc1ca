"""Models of time buckets end to end: the time split, the fitted view, bundles that hold it, and
detection in chunks that gives the scores of one pass over the whole input."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from nadkit.detection.detect import BucketScorer, detect_file, score_flows, score_table
from nadkit.errors import ConfigError, NadkitError, SchemaError
from nadkit.evaluation.split import bucket_split
from nadkit.features.buckets import CALENDAR, BucketView, calendar_features, calendar_text
from nadkit.features.series import BucketConfig, bucket_metrics
from nadkit.lifecycle.registry import ModelRegistry
from nadkit.schema import NORMAL
from nadkit.simulate import SimulationConfig, simulate, write_nad_csv
from nadkit.sources import load_flows
from nadkit.training.bundle import MANIFEST, PIPELINE, VIEW, ModelBundle
from nadkit.training.fit import train_model

#: small, quick settings of the window models (and of ae for the row case)
QUICK = {"window": 6, "epochs": 3, "batch_size": 256, "device": "cpu"}
QUICK_LSTM = {**QUICK, "hidden": 16, "latent": 4}
QUICK_AE = {"hidden": [16], "bottleneck": 4, "epochs": 3, "batch_size": 256, "device": "cpu"}


@pytest.fixture(scope="module")
def days() -> pl.DataFrame:
    return simulate(SimulationConfig(days=2, flows_per_day=4000, seed=21))


@pytest.fixture(scope="module")
def days_file(days: pl.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("buckets") / "days.csv"
    write_nad_csv(days, path)
    return path


@pytest.fixture(scope="module")
def per_host(days_file: Path, tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    """An LSTM over per-host minute series."""
    out = tmp_path_factory.mktemp("model") / "lstm"
    result = train_model(
        days_file, out, model="lstm", config=QUICK_LSTM, buckets=BucketConfig(bucket_s=60, by="src")
    )
    return result.bundle


def test_bucket_split_is_in_time_and_trains_on_normal_flows(days: pl.DataFrame) -> None:
    split = bucket_split(days, BucketConfig(bucket_s=60), holdout_fraction=0.25)
    assert split.edge.second == 0 and split.edge.microsecond == 0  # a minute's edge
    assert split.train["time"].max() < split.edge <= split.holdout["time"].min()
    assert (split.train["label"] == NORMAL).all()
    attacks = days.filter(pl.col("label") != NORMAL)
    held_attacks = split.holdout.filter(pl.col("label") != NORMAL).height
    assert held_attacks == attacks.filter(pl.col("time") >= split.edge).height
    span = (days["time"].max() - days["time"].min()).total_seconds()  # type: ignore[operator]
    held_span = (days["time"].max() - split.edge).total_seconds()  # type: ignore[operator]
    assert abs(held_span / span - 0.25) < 0.02


def test_bucket_split_needs_times() -> None:
    with pytest.raises(ConfigError, match="no 'time' column"):
        bucket_split(pl.DataFrame({"src": ["a"]}), BucketConfig())
    one = pl.DataFrame({"time": [datetime(2021, 1, 1, 0, 0, 1, tzinfo=UTC)] * 3})
    with pytest.raises(ConfigError, match="one bucket"):
        bucket_split(one, BucketConfig())


def test_view_round_trips_through_json(days: pl.DataFrame) -> None:
    view = BucketView.fit(days, BucketConfig(bucket_s=30, by="src", top_apps=3))
    again = BucketView.from_dict(json.loads(json.dumps(view.to_dict())))
    assert again.config == view.config
    assert again.config.apps == view.config.apps and len(view.config.apps or ()) == 3
    np.testing.assert_array_equal(again.scaling.mean, view.scaling.mean)
    series = view.series(days)
    np.testing.assert_array_equal(again.data(series).features, view.data(series).features)
    with pytest.raises(ConfigError, match="span"):
        BucketView.fit(days, BucketConfig(span="full"))


def test_a_bundle_of_buckets_saves_its_view_and_scores_the_same_after_loading(
    per_host: ModelBundle, days: pl.DataFrame
) -> None:
    assert per_host.path is not None and per_host.view is not None
    files = json.loads((per_host.path / MANIFEST).read_text())["files"]
    assert VIEW in files and PIPELINE not in files
    manifest = json.loads((per_host.path / MANIFEST).read_text())
    assert manifest["view"] == "buckets"
    assert manifest["features"] == [*per_host.view.metrics, *CALENDAR]
    loaded = ModelBundle.load(per_host.path, engine="torch")
    assert loaded.view is not None and loaded.view.to_dict() == per_host.view.to_dict()
    day = days.filter(pl.col("day") == days["day"].max())
    np.testing.assert_allclose(loaded.score(day), per_host.score(day), rtol=1e-6)
    metrics = json.loads((per_host.path / "metrics.json").read_text())
    assert metrics["view"]["kind"] == "buckets"
    assert 0.0 <= metrics["holdout"]["roc_auc"] <= 1.0


def test_an_altered_view_file_is_refused(per_host: ModelBundle, tmp_path: Path) -> None:
    import shutil

    assert per_host.path is not None
    copy = tmp_path / "copy"
    shutil.copytree(per_host.path, copy)
    (copy / VIEW).write_text((copy / VIEW).read_text().replace('"bucket_s": 60', '"bucket_s": 30'))
    with pytest.raises(NadkitError, match=r"view\.json: checksum differs"):
        ModelBundle.load(copy)


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_detection_in_chunks_equals_scoring_the_whole_input(
    per_host: ModelBundle, days: pl.DataFrame, days_file: Path, engine: str
) -> None:
    """Small chunks split hosts' series anywhere, with idle gaps between a host's buckets: the
    remembered buckets and the empty ones filled in give every window what one pass gives it."""
    assert per_host.path is not None
    bundle = ModelBundle.load(per_host.path, engine=engine)  # type: ignore[arg-type]
    whole = bundle.score(days)
    chunked = score_table(bundle, days_file, chunk_rows=700)
    np.testing.assert_allclose(chunked.scores, whole, rtol=2e-5, atol=1e-5)
    one = score_table(bundle, days_file, chunk_rows=10_000_000)
    np.testing.assert_allclose(one.scores, chunked.scores, rtol=2e-5, atol=1e-5)
    assert chunked.frame["bucket"].dtype == pl.Datetime("us", "UTC")
    expected_bucket = days["time"].dt.truncate("1m")
    assert (chunked.frame["bucket"] == expected_bucket).all()


def test_alerts_are_explained_by_their_bucket_metrics(
    per_host: ModelBundle, days: pl.DataFrame, days_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "alerts.jsonl"
    result = detect_file(per_host, days_file, out, threshold=float(np.quantile(per_host.score(days), 0.95)))
    assert result.alerts > 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == result.alerts
    assert per_host.view is not None
    series = bucket_metrics(days, per_host.view.config)
    frame = series.frame
    for record in records[:50]:
        assert record["alert"] is True and record["bucket"].endswith(":00.000000Z")
        top = record["top_features"]
        assert [t["contribution"] for t in top] == sorted((t["contribution"] for t in top), reverse=True)
        bucket = datetime.fromisoformat(record["bucket"].replace("Z", "+00:00"))
        row = frame.filter((pl.col("src") == record["src"]) & (pl.col("bucket") == bucket))
        assert row.height == 1
        for item in top:
            value = float(row[item["feature"]][0])
            assert float(item["value"]) == pytest.approx(value, abs=5e-4)


def test_a_row_model_reads_one_network_wide_bucket(
    days_file: Path, days: pl.DataFrame, tmp_path: Path
) -> None:
    result = train_model(
        days_file, tmp_path / "ae", model="ae", config=QUICK_AE, buckets=BucketConfig(bucket_s=120)
    )
    bundle = result.bundle
    assert bundle.view is not None and bundle.view.config.by is None
    table = score_table(bundle, days_file, chunk_rows=900)
    np.testing.assert_allclose(table.scores, bundle.score(days), rtol=2e-5, atol=1e-5)
    # every flow of a bucket has the bucket's score
    per_bucket = table.frame.group_by("bucket").agg(pl.col("score").n_unique().alias("distinct"))
    assert (per_bucket["distinct"] == 1).all()


def test_flows_without_a_time_are_named(per_host: ModelBundle) -> None:
    scorer = BucketScorer(per_host, threshold=1.0)
    flows = pl.DataFrame(
        {
            "time": [datetime(2021, 1, 1, tzinfo=UTC), None],
            "src": ["10.0.0.1", "10.0.0.2"],
        },
        schema_overrides={"time": pl.Datetime("us", "UTC")},
    )
    with pytest.raises(SchemaError, match="row 2: no time"):
        scorer.push(flows)
    with pytest.raises(SchemaError, match="needs each flow's time"):
        scorer.push(pl.DataFrame({"src": ["10.0.0.1"]}))


def test_the_service_scores_a_model_of_buckets(
    per_host: ModelBundle, days_file: Path, tmp_path: Path
) -> None:
    """A request's flows are scored as the buckets they fill, as `nadkit detect` scores a file; the
    flow-by-flow scorer still says it reads single flows."""
    assert per_host.path is not None
    version = ModelRegistry(tmp_path / "models").register(per_host.path)
    assert version.version == "v1"
    flows, _ = load_flows(days_file)
    records = score_flows(per_host, flows)
    table = score_table(per_host, days_file)
    assert records["row"].to_list() == table.frame["row"].to_list()
    np.testing.assert_allclose(records["score"].to_numpy(), table.scores, rtol=1e-5, atol=1e-6)
    assert records.filter(pl.col("alert"))["top_features"].null_count() == 0
    from nadkit.detection.detect import Scorer

    with pytest.raises(ConfigError, match="flow-by-flow scoring does not support"):
        Scorer(per_host)


def test_supervised_models_do_not_read_buckets(days_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bucket view is for unsupervised models"):
        train_model(days_file, tmp_path / "m", model="multitask", buckets=BucketConfig())
    assert not (tmp_path / "m").exists()


def test_the_feedback_loop_refuses_a_model_of_buckets(
    per_host: ModelBundle, days_file: Path, tmp_path: Path
) -> None:
    from nadkit.alerts.store import AlertStore
    from nadkit.lifecycle.feedback import retrain

    with (
        AlertStore(tmp_path / "alerts.db") as store,
        pytest.raises(ConfigError, match="the feedback loop does not"),
    ):
        retrain(per_host, store, days_file, tmp_path / "challenger")
    assert not (tmp_path / "challenger").exists()


def test_calendar_features_place_each_bucket_on_the_day_and_the_week(days: pl.DataFrame) -> None:
    # Monday 2021-01-04 00:00 UTC is angle 0 of both circles; Thursday 18:00 is three quarters of a day
    monday = int(datetime(2021, 1, 4, tzinfo=UTC).timestamp() * 1e6)
    thursday_evening = monday + (3 * 24 + 18) * 3600 * 1_000_000
    values = calendar_features(np.array([monday, thursday_evening]))
    np.testing.assert_allclose(values[0], [0.0, 1.0, 0.0, 1.0], atol=1e-6)
    day, week = 0.75 * 2 * np.pi, (3.75 / 7) * 2 * np.pi
    np.testing.assert_allclose(values[1], [np.sin(day), np.cos(day), np.sin(week), np.cos(week)], atol=1e-6)
    assert calendar_text(thursday_evening) == "Thu 18:00 UTC"
    view = BucketView.fit(days, BucketConfig())
    data = view.data(view.series(days))
    assert data.feature_names == (*view.metrics, *CALENDAR) and data.width == len(view.metrics) + 4
    plain = BucketView.fit(days, BucketConfig(calendar=False))
    assert plain.data(plain.series(days)).feature_names == plain.metrics
    # a view saved before the calendar features existed reads as one without them
    saved = view.to_dict()
    del saved["config"]["calendar"]
    assert BucketView.from_dict(saved).features == view.metrics
