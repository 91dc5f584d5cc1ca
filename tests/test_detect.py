"""`detect`: chunked scoring equals whole-input scoring; alerts carry explanations; outputs are safe."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from nadkit.alerts.records import output_kind
from nadkit.detection.detect import Scorer, detect_file, score_table
from nadkit.errors import ConfigError, NadkitError, SchemaError
from nadkit.features.counters import COUNTER_COLUMNS
from nadkit.features.data import detector_data
from nadkit.features.pipeline import FeatureConfig, FeaturePipeline
from nadkit.features.segments import SegmentConfig
from nadkit.models import REGISTRY
from nadkit.models.base import DetectorData
from nadkit.schema import NORMAL
from nadkit.simulate import COLUMNS, SimulationConfig, simulate_day
from nadkit.sources import ROW
from nadkit.training.bundle import ModelBundle
from nadkit.training.fit import holdout_threshold


def _day(index: int, flows: int = 5000) -> pl.DataFrame:
    config = SimulationConfig(days=2, flows_per_day=flows, seed=21, start=date(2020, 12, 3))
    day = simulate_day(config, index)
    # without the cnt_* columns the pipeline computes the counters itself: the stateful path
    return day.drop([c for c in day.columns if c.startswith("cnt_")] + ["day"], strict=False)


@pytest.fixture(scope="module")
def days(tmp_path_factory: pytest.TempPathFactory) -> tuple[pl.DataFrame, Path]:
    folder = tmp_path_factory.mktemp("detect")
    test = _day(1)
    path = folder / "day2.parquet"
    test.write_parquet(path)
    return _day(0), path


def _bundle(name: str, train_flows: pl.DataFrame) -> ModelBundle:
    normal = train_flows.filter(pl.col("label") == NORMAL)
    pipeline = FeaturePipeline(FeatureConfig(segments=SegmentConfig(gap_s=30.0))).fit(normal)
    detector = REGISTRY[name](REGISTRY[name].test_config())
    detector.fit(detector_data(pipeline, normal))
    holdout = detector_data(pipeline, train_flows)
    threshold, _ = holdout_threshold(detector.score(holdout), holdout.labels)
    return ModelBundle(pipeline=pipeline, detector=detector, threshold=threshold, engine="torch")


@pytest.fixture(scope="module")
def ae_bundle(days: tuple[pl.DataFrame, Path]) -> ModelBundle:
    return _bundle("ae", days[0])


@pytest.mark.parametrize("chunk_rows", [997, 2500])
def test_chunked_scores_equal_whole_input_scores(
    ae_bundle: ModelBundle, days: tuple[pl.DataFrame, Path], chunk_rows: int
) -> None:
    _, path = days
    whole = score_table(ae_bundle, path, chunk_rows=10**9)
    chunked = score_table(ae_bundle, path, chunk_rows=chunk_rows)
    assert chunked.frame["row"].to_list() == list(range(1, whole.frame.height + 1))
    np.testing.assert_allclose(chunked.scores, whole.scores, rtol=1e-6, atol=1e-9)
    # and both equal the bundle scoring the whole table in memory
    table = pl.read_parquet(path)
    np.testing.assert_allclose(whole.scores, ae_bundle.score(table), rtol=1e-5, atol=1e-6)


def test_windowed_model_scores_in_chunks_equal_one_pass(days: tuple[pl.DataFrame, Path]) -> None:
    windowed = [name for name, cls in sorted(REGISTRY.items()) if cls.input == "windows"]
    assert windowed, "no windowed detector registered"
    bundle = _bundle(windowed[0], days[0])
    _, path = days
    whole = score_table(bundle, path, chunk_rows=10**9)
    chunked = score_table(bundle, path, chunk_rows=1234)
    np.testing.assert_allclose(chunked.scores, whole.scores, rtol=1e-5, atol=1e-6)


def test_one_call_scoring_equals_push_then_flush(days: tuple[pl.DataFrame, Path]) -> None:
    windowed = [name for name, cls in sorted(REGISTRY.items()) if cls.input == "windows"]
    _, path = days
    table = pl.read_parquet(path).with_row_index(ROW).with_columns(pl.col(ROW).cast(pl.Int64))
    for bundle in (_bundle("ae", days[0]), _bundle(windowed[0], days[0])):
        stepwise = Scorer(bundle)
        parts = [stepwise.push(table).frame, stepwise.flush().frame]
        expected = pl.concat([p for p in parts if p.height]).sort("row")
        once = Scorer(bundle).score_all(table).frame.sort("row")
        assert once["row"].to_list() == expected["row"].to_list()
        np.testing.assert_allclose(
            once["score"].to_numpy(), expected["score"].to_numpy(), rtol=1e-5, atol=1e-6
        )
        assert once["alert"].to_list() == expected["alert"].to_list()


def test_alerts_carry_fields_scores_and_top_features(
    ae_bundle: ModelBundle, days: tuple[pl.DataFrame, Path], tmp_path: Path
) -> None:
    _, path = days
    out = tmp_path / "alerts.jsonl"
    result = detect_file(ae_bundle, path, out, chunk_rows=2000, top=3)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == result.alerts == result.written > 0
    assert result.flows == pl.read_parquet(path).height
    first = records[0]
    for key in (
        "row",
        "time",
        "src",
        "dst",
        "dpt",
        "proto",
        "score",
        "threshold",
        "alert",
        "class",
        "top_features",
    ):
        assert key in first
    assert all(r["alert"] and r["score"] >= r["threshold"] for r in records)
    top = first["top_features"]
    assert len(top) == 3
    assert top[0]["contribution"] >= top[1]["contribution"] >= top[2]["contribution"]
    assert all(item["feature"] in ae_bundle.pipeline.feature_names_ for item in top)
    # the raw value behind a feature is the flow's own value
    table = pl.read_parquet(path)
    flow = table.row(first["row"] - 1, named=True)
    assert flow["src"] == first["src"] and flow["dpt"] == first["dpt"]
    assert any(item["value"] is not None for item in top)


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".jsonl"])
def test_every_output_type_holds_every_scored_flow(
    ae_bundle: ModelBundle, days: tuple[pl.DataFrame, Path], tmp_path: Path, suffix: str
) -> None:
    _, path = days
    out = tmp_path / f"scores{suffix}"
    result = detect_file(ae_bundle, path, out, alerts_only=False, chunk_rows=3000)
    read = {".parquet": pl.read_parquet, ".csv": pl.read_csv, ".jsonl": pl.read_ndjson}[suffix](out)
    assert read.height == result.flows == result.written
    assert read["alert"].sum() == result.alerts
    assert sorted(read["row"].to_list()) == list(range(1, result.flows + 1))


def test_outputs_are_never_overwritten_or_left_half_written(
    ae_bundle: ModelBundle, days: tuple[pl.DataFrame, Path], tmp_path: Path
) -> None:
    _, path = days
    out = tmp_path / "alerts.parquet"
    detect_file(ae_bundle, path, out)
    before = out.read_bytes()
    with pytest.raises(NadkitError, match="already exists"):
        detect_file(ae_bundle, path, out)
    assert out.read_bytes() == before
    with pytest.raises(ConfigError, match="unknown output type"):
        output_kind(tmp_path / "alerts.xlsx")

    # a bad value far into the input: a one-line error naming the row, and no output file at all
    table = pl.read_parquet(path).with_columns(pl.col("time").cast(pl.String))
    bad = tmp_path / "bad.csv"
    table.write_csv(bad)
    lines = bad.read_text().splitlines()
    fields = lines[4001].split(",")
    fields[table.columns.index("dpt")] = "eighty"
    lines[4001] = ",".join(fields)
    bad.write_text("\n".join(lines) + "\n")
    target = tmp_path / "never.jsonl"
    with pytest.raises(SchemaError) as caught:
        flow_columns = [c for c in COLUMNS if c not in COUNTER_COLUMNS and c not in ("label_original", "day")]
        mapping = ",".join(f"{c}={c}" for c in flow_columns)
        detect_file(ae_bundle, bad, target, chunk_rows=1000, mapping=mapping)
    assert "dpt" in str(caught.value)
    assert "4001" in str(caught.value)
    assert not target.exists()
    assert not list(tmp_path.glob(".never*"))


def test_threshold_override_and_missing_threshold(ae_bundle: ModelBundle) -> None:
    assert Scorer(ae_bundle, threshold=1.5).threshold == 1.5
    bare = ModelBundle(
        pipeline=ae_bundle.pipeline, detector=ae_bundle.detector, threshold=None, engine="torch"
    )
    with pytest.raises(ConfigError, match="no threshold"):
        Scorer(bare)


@pytest.fixture(scope="module")
def calibrated(days: tuple[pl.DataFrame, Path]) -> ModelBundle:
    """The autoencoder bundle with what training keeps to put scores on a scale and explain them."""
    from nadkit.training.fit import calibrate

    train = days[0]
    bundle = _bundle("ae", train)
    assert bundle.pipeline is not None
    holdout = detector_data(bundle.pipeline, train)
    normal = train.filter(pl.col("label") == NORMAL)
    bundle.calibration = calibrate(
        bundle.detector.score(holdout), holdout.labels, pipeline=bundle.pipeline, normal_train=normal
    )
    return bundle


def test_records_carry_the_score_scale_and_explanations(
    calibrated: ModelBundle, days: tuple[pl.DataFrame, Path], tmp_path: Path
) -> None:
    from nadkit.features.labels import feature_label

    _, path = days
    out = tmp_path / "all.jsonl"
    result = detect_file(calibrated, path, out, chunk_rows=2000, top=3, alerts_only=False)
    records = pl.read_ndjson(out)
    assert records.height == result.flows and result.alerts > 0
    percentile = records["score_percentile"].to_numpy()
    assert np.all((percentile >= 0) & (percentile <= 100))
    order = np.argsort(records["score"].to_numpy(), kind="stable")
    assert np.all(np.diff(percentile[order]) >= -1e-9)  # the percentile grows with the score
    np.testing.assert_allclose(records["threshold_multiple"], records["score"] / records["threshold"])
    alerts, others = records.filter(pl.col("alert")), records.filter(~pl.col("alert"))
    assert set(alerts["severity"].unique()) <= {"low", "medium", "high", "critical"}
    assert others["severity"].null_count() == others.height == others["explanation"].null_count()
    assert sum(result.by_severity.values()) == result.alerts
    assert result.top_alerts is not None and result.top_alerts["score"][0] == alerts["score"].max()
    for record in alerts.head(50).iter_rows(named=True):
        entries = record["top_features"]
        for entry in entries:
            assert entry["label"] == feature_label(entry["feature"]) != entry["feature"]
            assert entry["normal"]
            # an autoencoder's contributions are squared errors that sum to the score
            assert entry["share"] == pytest.approx(100 * entry["contribution"] / record["score"], rel=1e-4)
        assert sum(e["share"] for e in entries) <= 100 + 1e-6
        parts = record["explanation"].split("; ")
        assert len(parts) == len(entries)
        for part, entry in zip(parts, entries, strict=True):
            assert part.startswith(f"{entry['label']}: ")
            assert f"(normal: {entry['normal']})" in part and part.endswith("% of the score")


def test_severity_follows_percentile_and_multiple() -> None:
    from nadkit.errors import ConfigError as SettingsError
    from nadkit.evaluation.calibration import NormalScores, SeverityRules

    normal = NormalScores.of(np.random.default_rng(0).exponential(size=20_000))
    assert normal is not None
    scores = np.array([0.1, 5.0, 6.0, 7.5, 30.0])
    percentile = normal.percentile(scores)
    assert np.all(np.diff(percentile) >= 0) and percentile[-1] == 100.0
    alerts = np.array([False, True, True, True, True])
    multiple = scores / 4.6
    graded = SeverityRules().grade(alerts, percentile, multiple, normal.rows).to_list()
    assert graded[0] is None and graded[-1] == "critical"
    # a percentile cut point the hold-out is too small to measure is not used (99.9 needs 1,000 rows)
    assert SeverityRules().grade(alerts[-1:], np.array([100.0]), np.array([1.1]), 500).to_list() == ["medium"]
    assert SeverityRules().grade(alerts[-1:], None, np.array([1.1])).to_list() == ["low"]
    with pytest.raises(SettingsError):
        SeverityRules(high_multiple=20.0)


def test_custom_severity_rules_reach_the_records(
    calibrated: ModelBundle, days: tuple[pl.DataFrame, Path]
) -> None:
    from nadkit.detection.detect import score_flows
    from nadkit.evaluation.calibration import SeverityRules

    table = pl.read_parquet(days[1])
    strict = SeverityRules(
        critical_percentile=100.0,
        critical_multiple=1e9,
        high_percentile=100.0,
        high_multiple=1e9,
        medium_percentile=100.0,
        medium_multiple=1e9,
    )
    scored = score_flows(calibrated, table, severity=strict).filter(pl.col("alert"))
    assert scored.height and set(scored["severity"]) <= {"low", "medium"}
    assert "low" in set(scored["severity"])


def test_severity_cut_points_from_text() -> None:
    from nadkit.evaluation.calibration import SeverityRules

    rules = SeverityRules.parse("critical=99.95:5, high=99.6:2")
    assert (rules.critical_percentile, rules.critical_multiple, rules.high_multiple) == (99.95, 5.0, 2.0)
    assert rules.medium_multiple == SeverityRules().medium_multiple
    for bad in ("critical=10", "extreme=99:3", "high=x:3", "medium=99.95:1.5"):
        with pytest.raises(ConfigError):
            SeverityRules.parse(bad)


def test_reading_ahead_keeps_order_errors_and_stops_when_left() -> None:
    import threading

    from nadkit.detection.chunks import prefetched

    assert list(prefetched(iter(range(50)), depth=2)) == list(range(50))

    def failing() -> Iterator[int]:
        yield 1
        raise SchemaError("row 7: a broken value", column="dst")

    seen: list[int] = []
    with pytest.raises(SchemaError, match="row 7"):
        for item in prefetched(failing()):
            seen.append(item)
    assert seen == [1], "what came before the error still arrives"
    produced: list[int] = []

    def endless() -> Iterator[int]:
        for value in range(10**9):
            produced.append(value)
            yield value

    for value in prefetched(endless()):
        if value == 3:
            break
    assert len(produced) < 10, "the reader stops soon after the loop is left"
    assert not any(t.name == "nadkit-read-ahead" and t.is_alive() for t in threading.enumerate())


def test_stages_on_threads_stop_together_when_left() -> None:
    """A read-ahead stage that reads from another (features from read chunks, as
    :func:`score_chunks` does) stops both when the consumer leaves: the outer stage closes the
    inner one on its own thread."""
    import threading
    import time

    from nadkit.detection.chunks import prefetched

    produced: list[int] = []

    def endless() -> Iterator[int]:
        for value in range(10**9):
            produced.append(value)
            yield value

    def doubled() -> Iterator[int]:
        for value in prefetched(endless()):
            yield 2 * value

    for value in prefetched(doubled()):
        if value == 6:
            break
    deadline = time.monotonic() + 5
    while any(t.name == "nadkit-read-ahead" and t.is_alive() for t in threading.enumerate()):
        assert time.monotonic() < deadline, "a stage outlived its consumer"
        time.sleep(0.01)
    assert len(produced) < 12


def test_pipelined_chunks_report_held_flows_and_keep_order(
    ae_bundle: ModelBundle, days: tuple[pl.DataFrame, Path]
) -> None:
    """Chunks scored while the next chunk's features are computed come out as a single-threaded
    push/flush gives them, each with the flows held after it."""
    from nadkit.detection.detect import score_chunks

    _, path = days
    piped = [(chunk.frame, chunk.held_rows) for chunk, _ in score_chunks(ae_bundle, path, chunk_rows=1500)]
    table = pl.read_parquet(path)
    stepwise = Scorer(ae_bundle)
    expected = []
    for start in range(0, table.height, 1500):
        frame = stepwise.push(table.slice(start, 1500)).frame
        expected.append((frame, stepwise.held_rows))
    expected.append((stepwise.flush().frame, 0))
    assert [held for _, held in piped] == [held for _, held in expected]
    for (got, _), (want, _) in zip(piped, expected, strict=True):
        assert got.height == want.height
        if got.height:
            np.testing.assert_allclose(got["score"].to_numpy(), want["score"].to_numpy(), rtol=1e-6)


@pytest.mark.parametrize("top", [5, 0])
def test_a_scorer_that_keeps_the_alerts_only_gives_the_same_alert_records(
    ae_bundle: ModelBundle, days: tuple[pl.DataFrame, Path], top: int
) -> None:
    """``alerts_only`` (what ``nadkit detect`` writes by default) leaves the other flows out of each
    chunk's frame but counts them, and its alert records equal the full frame's alert rows."""
    from nadkit.detection.detect import score_chunks

    _, path = days
    full = [chunk for chunk, _ in score_chunks(ae_bundle, path, chunk_rows=1500, top=top)]
    kept = [chunk for chunk, _ in score_chunks(ae_bundle, path, chunk_rows=1500, top=top, alerts_only=True)]
    assert [c.flows for c in kept] == [c.frame.height for c in full]
    assert [c.alerts for c in kept] == [c.alerts for c in full]
    assert sum(c.alerts for c in kept) > 0
    for got, want in zip(kept, full, strict=True):
        assert got.frame.schema == want.frame.schema
        assert got.frame.equals(want.frame.filter(pl.col("alert")))


def test_one_table_scored_for_its_alerts_only_gives_the_same_records(
    ae_bundle: ModelBundle, days: tuple[pl.DataFrame, Path]
) -> None:
    """``score_flows(alerts_only=True)`` (the Python API's ``detect(alerts_only=True)``) gives the
    alerted rows of the full records, the input's other columns beside them, in input order."""
    from nadkit.detection.detect import score_flows

    table = pl.read_parquet(days[1])
    full = score_flows(ae_bundle, table)
    alerts = score_flows(ae_bundle, table, alerts_only=True)
    assert 0 < alerts.height < full.height
    assert alerts.equals(full.filter(pl.col("alert")))
    assert "label" in alerts.columns


def test_top_zero_scores_and_alerts_without_explaining(
    ae_bundle: ModelBundle, days: tuple[pl.DataFrame, Path], tmp_path: Path
) -> None:
    """``top=0`` (``nadkit detect --top 0``) gives the same scores and alerts, with no explanations."""
    _, path = days
    explained = detect_file(ae_bundle, path, tmp_path / "explained.jsonl")
    bare = detect_file(ae_bundle, path, tmp_path / "bare.jsonl", top=0)
    assert bare.alerts == explained.alerts > 0
    with_text = [json.loads(line) for line in (tmp_path / "explained.jsonl").read_text().splitlines()]
    without = [json.loads(line) for line in (tmp_path / "bare.jsonl").read_text().splitlines()]
    assert [r["score"] for r in without] == [r["score"] for r in with_text]
    assert all(r["top_features"] is None and r["explanation"] is None for r in without)
    assert all(r["top_features"] for r in with_text)


def test_a_failed_write_stops_detection_and_leaves_no_output(
    ae_bundle: ModelBundle, days: tuple[pl.DataFrame, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks are written on their own thread: a write that fails (a full disk) still ends
    detection with that error, and no output file is left."""
    from nadkit.alerts import records

    _, path = days
    written: list[int] = []
    original = records.RecordWriter.write

    def failing(self: records.RecordWriter, frame: pl.DataFrame) -> None:
        if written:
            raise OSError(28, "No space left on device")
        written.append(frame.height)
        original(self, frame)

    monkeypatch.setattr(records.RecordWriter, "write", failing)
    target = tmp_path / "alerts.jsonl"
    with pytest.raises(OSError, match="No space left"):
        detect_file(ae_bundle, path, target, chunk_rows=1000)
    assert written and not target.exists()
    assert not list(tmp_path.glob(".alerts*"))


def test_background_calls_run_in_order_and_raise_at_the_next_call() -> None:
    """:class:`Background` runs one call at a time on its own thread, in order; a failed call is
    raised at the next call or at ``finish``, and leaving the block after a failure raises nothing."""
    import threading

    from nadkit.detection.chunks import Background

    seen: list[tuple[int, str]] = []
    with Background(lambda i: seen.append((i, threading.current_thread().name)), "nadkit-test") as run:
        for i in range(20):
            run(i)
        run.finish()
    assert [i for i, _ in seen] == list(range(20))
    assert all(name.startswith("nadkit-test") for _, name in seen)

    def failing(i: int) -> None:
        if i == 1:
            raise ValueError("broken call")

    with Background(failing, "nadkit-test") as run:
        run(0)
        run(1)
        with pytest.raises(ValueError, match="broken call"):
            run(2)
    with Background(failing, "nadkit-test") as run:
        run(1)
        with pytest.raises(ValueError, match="broken call"):
            run.finish()
    with Background(failing, "nadkit-test") as run:
        run(1)  # never finished: the block's end waits, raising nothing


def test_the_scored_rows_hook_sees_every_row_in_order_off_the_scoring_thread(
    ae_bundle: ModelBundle, days: tuple[pl.DataFrame, Path], tmp_path: Path
) -> None:
    """The scored-rows hook (drift counting) runs beside scoring, yet sees every scored row once, in
    the order of the scores written, and has seen them all when detection returns; a hook that fails
    stops detection with its error and leaves no output."""
    import threading

    _, path = days
    seen: list[np.ndarray] = []
    threads: set[str] = set()

    def hook(features: np.ndarray, scores: np.ndarray) -> None:
        assert features.shape == (len(scores), len(ae_bundle.pipeline.feature_names_))
        threads.add(threading.current_thread().name)
        seen.append(np.array(scores))

    target = tmp_path / "all.parquet"
    result = detect_file(ae_bundle, path, target, alerts_only=False, chunk_rows=700, on_scored=hook)
    written = pl.read_parquet(target).sort("row")["score"].to_numpy()
    assert result.flows == len(written) == sum(len(s) for s in seen)
    np.testing.assert_allclose(np.sort(np.concatenate(seen)), np.sort(written))
    assert threads and all(name.startswith("nadkit-scored") for name in threads)

    # the rows it gets are the detector's input behind those scores, column-major (the drift
    # counts read each feature's values together)
    rows: list[tuple[np.ndarray, np.ndarray]] = []
    detect_file(
        ae_bundle, path, tmp_path / "again.jsonl", chunk_rows=700, on_scored=lambda f, s: rows.append((f, s))
    )
    assert rows and all(features.flags["F_CONTIGUOUS"] for features, _ in rows)
    names = tuple(ae_bundle.pipeline.feature_names_)
    for features, scores in rows:
        again = ae_bundle.score_data(
            DetectorData(features=np.ascontiguousarray(features), feature_names=names)
        )
        np.testing.assert_allclose(again, scores, rtol=1e-6)

    def failing(features: np.ndarray, scores: np.ndarray) -> None:
        raise RuntimeError("hook failed")

    broken = tmp_path / "broken.jsonl"
    with pytest.raises(RuntimeError, match="hook failed"):
        detect_file(ae_bundle, path, broken, chunk_rows=700, on_scored=failing)
    assert not broken.exists()
