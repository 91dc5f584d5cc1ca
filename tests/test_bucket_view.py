"""Models of time buckets end to end: the time split, the fitted view, bundles that hold it, and
detection in chunks that gives the scores of one pass over the whole input."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from nadkit.detection.detect import Scorer, detect_file, score_flows, score_table
from nadkit.errors import ConfigError, NadkitError, SchemaError
from nadkit.evaluation.split import bucket_split
from nadkit.features.buckets import CALENDAR, BucketView, calendar_text
from nadkit.features.calendar import calendar_matrix
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


@pytest.mark.slow
def test_a_bundle_of_buckets_saves_its_view_and_scores_the_same_after_loading(
    per_host: ModelBundle, days: pl.DataFrame
) -> None:
    assert per_host.path is not None and per_host.view is not None
    files = json.loads((per_host.path / MANIFEST).read_text())["files"]
    assert VIEW in files and PIPELINE not in files
    manifest = json.loads((per_host.path / MANIFEST).read_text())
    assert manifest["view"] == "buckets"
    # the training days span less than a week: the time of day only
    assert per_host.view.cycles == ("day",)
    assert manifest["features"] == [*per_host.view.metrics, "time_of_day_sin", "time_of_day_cos"]
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
    scorer = Scorer(per_host, threshold=1.0)
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
    """A request's flows are scored as the buckets they fill, as `nadkit detect` scores a file."""
    assert per_host.path is not None
    version = ModelRegistry(tmp_path / "models").register(per_host.path)
    assert version.version == "v1"
    flows, _ = load_flows(days_file)
    records = score_flows(per_host, flows)
    table = score_table(per_host, days_file)
    assert records["row"].to_list() == table.frame["row"].to_list()
    np.testing.assert_allclose(records["score"].to_numpy(), table.scores, rtol=1e-5, atol=1e-6)
    assert records.filter(pl.col("alert"))["top_features"].null_count() == 0


def test_supervised_models_do_not_read_buckets(days_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bucket view is for unsupervised models"):
        train_model(days_file, tmp_path / "m", model="multitask", buckets=BucketConfig())
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_the_feedback_loop_retrains_a_model_of_buckets(
    per_host: ModelBundle, days_file: Path, tmp_path: Path
) -> None:
    """Reviewed alerts of a bucket model feed a challenger of the same view: the same bucket
    settings, the flows analysts cleared taken once, confirmed ones only in the hold-out."""
    from nadkit.alerts.store import AlertStore
    from nadkit.lifecycle.feedback import retrain

    flows, _ = load_flows(days_file)
    alerts = score_flows(per_host, flows).filter(pl.col("alert"))
    assert alerts.height > 0
    with AlertStore(tmp_path / "alerts.db") as store:
        ids = store.add_alerts(alerts, model_version="v1")
        for identifier, label in zip(ids, alerts["label"].to_list(), strict=True):
            if label == NORMAL:
                store.add_feedback(identifier, "false_positive", analyst="ana")
            else:
                store.add_feedback(identifier, "confirmed", attack_class=label, analyst="ana")
        outcome = retrain(per_host, store, days_file, tmp_path / "challenger", champion_name="v1")
    challenger = ModelBundle.load(tmp_path / "challenger")
    assert challenger.view is not None and challenger.pipeline is None
    assert challenger.view.config.bucket_s == 60 and challenger.view.config.by == "src"
    assert challenger.detector.name == "lstm"
    recorded = json.loads((tmp_path / "challenger" / "metrics.json").read_text())["retrain"]
    assert recorded["benign_weight"] == 1, "a bucket model takes each reviewed flow once"
    assert outcome.comparison.verdict is not None
    # the challenger scores through the same one scorer
    assert score_flows(challenger, flows.head(500))["bucket"].null_count() == 0


def test_the_stream_scores_a_model_of_buckets_as_detect_does(per_host: ModelBundle, days_file: Path) -> None:
    """Micro-batches cut anywhere, flows arriving out of order within the lateness: every flow gets
    the score of its whole bucket, as one pass over the time-sorted input gives it."""
    from nadkit.stream import FrameSource, StreamConfig, StreamRunner
    from tests.stream.conftest import MemorySink

    flows, _ = load_flows(days_file)
    flows = flows.drop("__row__", strict=False)
    # each block of 25 flows arrives reversed: at most a few minutes late
    order = np.concatenate(
        [np.arange(a, min(a + 25, flows.height))[::-1] for a in range(0, flows.height, 25)]
    )
    arriving = flows[order]
    expected = score_flows(per_host, arriving)
    sink = MemorySink()
    config = StreamConfig(all_flows=True, lateness_s=3600.0, batch_rows=300, status_seconds=60)
    frames = [arriving.slice(a, 700) for a in range(0, arriving.height, 700)]
    stats = StreamRunner(per_host, FrameSource(frames), [sink], config).run()
    out = sink.frame().sort("row")
    assert out["row"].to_list() == expected["row"].to_list()
    np.testing.assert_allclose(out["score"].to_numpy(), expected["score"].to_numpy(), rtol=1e-5, atol=1e-6)
    assert out["bucket"].to_list() == expected["bucket"].to_list()
    assert stats.flows_scored == flows.height and stats.late_dropped == 0 and stats.held_rows == 0
    assert stats.alerts == int(expected["alert"].sum()) > 0


def test_a_flow_older_than_scored_buckets_is_refused_or_dropped(
    per_host: ModelBundle, days: pl.DataFrame
) -> None:
    from nadkit.features.incremental import OutOfOrderError

    early = days.sort("time").head(200)
    late = early.head(1)
    strict = Scorer(per_host, threshold=1.0)
    strict.push(early)
    with pytest.raises(OutOfOrderError, match="not in time order"):
        strict.push(late)
    lenient = Scorer(per_host, threshold=1.0, late="drop")
    scored = lenient.push(early).frame.height
    assert 0 < scored < early.height, "the newest bucket stays open"
    assert lenient.push(late).frame.height == 0 and lenient.late_dropped == 1
    scored += lenient.flush().frame.height
    assert scored == early.height, "the flows of the open bucket come out at the end"


def test_the_service_serves_a_model_of_buckets(
    per_host: ModelBundle, days_file: Path, tmp_path: Path
) -> None:
    """The real app with a bucket model active: a request's flows get their buckets' scores, and the
    alerts it stores carry their explanations."""
    from fastapi.testclient import TestClient

    from nadkit.service import create_app
    from nadkit.service.settings import Settings
    from tests.service.helpers import AUTH, TOKEN

    assert per_host.path is not None
    registry = ModelRegistry(tmp_path / "models")
    registry.activate(registry.register(per_host.path).version)
    everything = load_flows(days_file)[0]
    first = int(score_flows(per_host, everything)["alert"].arg_true()[0])
    flows = everything.slice(max(0, first - 750), 1500)  # around the first alert of the whole input
    flows = flows.select([c for c in flows.columns if not c.startswith("_")])
    body = flows.write_csv().encode()
    expected = score_flows(per_host, flows)
    settings = Settings(db=tmp_path / "alerts.db", registry=tmp_path / "models", token=TOKEN)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        response = client.post("/v1/score", content=body, headers={**AUTH, "Content-Type": "text/csv"})
        assert response.status_code == 200, response.text
        answer = response.json()
        stored = client.get("/v1/alerts", headers=AUTH, params={"limit": 500}).json()
    assert answer["alerts"] == int(expected["alert"].sum()) > 0, answer
    assert stored["total"] == answer["alerts"]
    assert all(a["top_features"] for a in stored["items"]), "every stored alert is explained"


def test_calendar_features_place_each_bucket_on_the_day_and_the_week(days: pl.DataFrame) -> None:
    # Monday 2021-01-04 00:00 UTC is angle 0 of both circles; Thursday 18:00 is three quarters of a day
    monday = int(datetime(2021, 1, 4, tzinfo=UTC).timestamp() * 1e6)
    thursday_evening = monday + (3 * 24 + 18) * 3600 * 1_000_000
    values = calendar_matrix(np.array([monday, thursday_evening]))
    np.testing.assert_allclose(values[0], [0.0, 1.0, 0.0, 1.0], atol=1e-6)
    day, week = 0.75 * 2 * np.pi, (3.75 / 7) * 2 * np.pi
    np.testing.assert_allclose(values[1], [np.sin(day), np.cos(day), np.sin(week), np.cos(week)], atol=1e-6)
    assert calendar_text(thursday_evening) == "Thu 18:00 UTC"
    view = BucketView.fit(days, BucketConfig())
    assert view.cycles == ("day",), "a few days teach the time of day, not the day of week"
    data = view.data(view.series(days))
    assert data.feature_names == (*view.metrics, *CALENDAR[:2]) and data.width == len(view.metrics) + 2
    np.testing.assert_allclose(data.features[:, -2:], calendar_matrix(data.time)[:, :2], atol=1e-6)
    # a week of buckets teaches both cycles
    week = dataclasses.replace(view, cycles=("day", "week"))
    assert week.data(week.series(days)).feature_names == (*view.metrics, *CALENDAR)
    # a view saved before the cycles were learnt reads both
    older = week.to_dict()
    del older["cycles"]
    assert BucketView.from_dict(older).cycles == ("day", "week")
    with pytest.raises(ConfigError, match="cycles"):
        BucketView.from_dict({**older, "cycles": ["month"]})
    plain = BucketView.fit(days, BucketConfig(calendar=False))
    assert plain.data(plain.series(days)).feature_names == plain.metrics
    # a view saved before the calendar features existed reads as one without them
    saved = view.to_dict()
    del saved["config"]["calendar"]
    assert BucketView.from_dict(saved).features == view.metrics


def test_buckets_of_stretches_far_apart_are_counted_as_silence_and_the_summary_says_so(
    days: pl.DataFrame, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from nadkit.cli.training import _training_json, silent_buckets_caution

    # a continuous stretch: the network's buckets all hold flows, nothing to say
    near = tmp_path / "near.parquet"
    days.head(3000).write_parquet(near)
    continuous = train_model(
        near, tmp_path / "near", model="ae", config=QUICK_AE, buckets=BucketConfig(bucket_s=3600)
    )
    assert continuous.silent_buckets < 0.9 * continuous.train_rows
    assert silent_buckets_caution(continuous) is None
    # the same flows as three captures a year apart each, as a folder of captures of different dates
    # is (the last is the hold-out, the first two with the year between them the training part)
    stretches = [
        days.slice(1000 * index, 1000).with_columns(pl.col("time") + pl.duration(days=365 * index))
        for index in range(3)
    ]
    far = tmp_path / "far.parquet"
    pl.concat(stretches).write_parquet(far)
    with caplog.at_level("WARNING"):
        apart = train_model(
            far,
            tmp_path / "apart",
            model="ae",
            config=QUICK_AE,
            buckets=BucketConfig(bucket_s=3600),
        )
    assert apart.silent_buckets >= 0.9 * apart.train_rows > 0
    caution = silent_buckets_caution(apart)
    assert caution is not None and f"{apart.silent_buckets:,} of {apart.train_rows:,}" in caution
    assert "mix-captures" in caution
    assert any("training buckets hold no flow" in r.getMessage() for r in caplog.records)
    assert _training_json("ae", apart)["silent_buckets"] == apart.silent_buckets
