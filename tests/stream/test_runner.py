"""The stream loop end to end: micro-batches give the whole table's scores wherever they are cut, late
flows and the safety valve are accounted for, a restart writes no record twice."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nadkit.detection.detect import ScoredTable, score_table
from nadkit.errors import ConfigError
from nadkit.stream import FrameSource, StreamConfig, StreamRunner, StreamStats, model_version
from nadkit.stream.runner import Checkpoint, LatencyRecorder
from nadkit.training.bundle import ModelBundle
from tests.stream.conftest import MemorySink


@pytest.fixture(scope="module")
def whole(bundle: ModelBundle, test_day: tuple[pl.DataFrame, Path]) -> ScoredTable:
    return score_table(bundle, test_day[1], chunk_rows=10**9)


def cut(frame: pl.DataFrame, bounds: list[int]) -> list[pl.DataFrame]:
    edges = [0, *sorted(b for b in set(bounds) if 0 < b < frame.height), frame.height]
    return [frame.slice(a, b - a) for a, b in itertools.pairwise(edges)]


def stream(
    bundle: ModelBundle, frames: list[pl.DataFrame], **options: Any
) -> tuple[StreamStats, pl.DataFrame, StreamRunner]:
    settings_: dict[str, Any] = {"all_flows": True, "lateness_s": 0.0, "batch_rows": 1, "status_seconds": 60}
    settings_.update(options)
    sink = MemorySink()
    runner = StreamRunner(bundle, FrameSource(frames), [sink], StreamConfig(**settings_))
    stats = runner.run()
    assert sink.closed
    out = sink.frame()
    return stats, (out.sort("row") if out.height else out), runner


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_streamed_scores_equal_whole_table_scores(
    bundle: ModelBundle, test_day: tuple[pl.DataFrame, Path], whole: ScoredTable, data: st.DataObject
) -> None:
    frame, _ = test_day
    bounds = data.draw(st.lists(st.integers(1, frame.height - 1), max_size=10, unique=True), label="bounds")
    batch_rows = data.draw(st.sampled_from([1, 400, 10**6]), label="batch_rows")
    stats, out, runner = stream(bundle, cut(frame, bounds), batch_rows=batch_rows)
    assert out["row"].to_list() == list(range(1, frame.height + 1))
    np.testing.assert_allclose(out["score"].to_numpy(), whole.scores, rtol=1e-6, atol=1e-9)
    assert out["alert"].to_list() == whole.frame["alert"].to_list()
    assert out["src"].to_list() == frame["src"].to_list()
    assert stats.flows_in == stats.flows_scored == frame.height
    assert stats.written == frame.height and stats.late_dropped == 0
    assert stats.held_rows == 0 and runner.scorer.late_dropped == 0
    assert stats.alerts == int(whole.frame["alert"].sum())
    assert 0 < stats.max_held_rows < frame.height


def _disordered(frame: pl.DataFrame, seconds: float, seed: int = 1) -> tuple[pl.DataFrame, np.ndarray]:
    """``frame`` reordered so that each flow comes at most ``seconds`` after newer ones; and the
    permutation (arrival position -> row of ``frame``)."""
    rng = np.random.default_rng(seed)
    key = frame["time"].dt.epoch("us").to_numpy() + rng.uniform(0, seconds * 1e6, frame.height)
    order = np.argsort(key, kind="stable")
    return frame[order], order


def test_disorder_within_the_lateness_gives_the_same_scores(
    bundle: ModelBundle, test_day: tuple[pl.DataFrame, Path], tmp_path: Path
) -> None:
    frame, _ = test_day
    shuffled, _ = _disordered(frame, 120.0)
    assert not shuffled["time"].is_sorted()
    stats, out, _ = stream(bundle, cut(shuffled, list(range(250, frame.height, 250))), lateness_s=120.0)
    assert stats.late_dropped == 0
    # the batch pipeline on the same flows in time order (flows of one time in arrival order)
    in_order = shuffled.with_row_index("arrival").sort("time", maintain_order=True)
    in_order.drop("arrival").write_parquet(tmp_path / "sorted.parquet")
    reference = score_table(bundle, tmp_path / "sorted.parquet", chunk_rows=10**9)
    expected = np.empty(frame.height)
    expected[in_order["arrival"].to_numpy()] = reference.scores
    np.testing.assert_allclose(out["score"].to_numpy(), expected, rtol=1e-6, atol=1e-9)


def test_late_flows_are_dropped_and_every_flow_is_accounted_for(
    bundle: ModelBundle, test_day: tuple[pl.DataFrame, Path]
) -> None:
    frame, _ = test_day
    shuffled, _ = _disordered(frame, 600.0)
    stats, out, runner = stream(bundle, cut(shuffled, list(range(300, frame.height, 300))), lateness_s=30.0)
    assert stats.late_dropped > 0
    assert stats.flows_in == stats.flows_scored + stats.late_dropped == frame.height
    assert out.height == stats.flows_scored
    # the loop drops exactly what the scorer would: it never drops a flow behind the loop's back
    assert runner.scorer.late_dropped == 0
    assert runner.complete_until() is not None


@pytest.mark.parametrize("overflow", ["release", "drop"])
def test_the_safety_valve_bounds_what_is_held(
    bundle: ModelBundle, test_day: tuple[pl.DataFrame, Path], overflow: str, caplog: pytest.LogCaptureFixture
) -> None:
    frame, _ = test_day
    with caplog.at_level(logging.WARNING, logger="nadkit.stream"):
        stats, out, _ = stream(
            bundle, cut(frame, list(range(300, frame.height, 300))), max_held=50, overflow=overflow
        )
    if overflow == "release":
        assert stats.overflow_released > 0 and stats.overflow_dropped == 0
        assert stats.flows_scored == frame.height == out.height
    else:
        assert stats.overflow_dropped > 0 and stats.overflow_released == 0
        assert (
            stats.flows_scored + stats.overflow_dropped == frame.height == out.height + stats.overflow_dropped
        )
    assert "held (over 50)" in caplog.text
    assert stats.held_rows == 0


def test_restart_with_a_checkpoint_writes_no_record_twice(
    bundle: ModelBundle, test_day: tuple[pl.DataFrame, Path], whole: ScoredTable, tmp_path: Path
) -> None:
    frame, _ = test_day
    checkpoint = tmp_path / "stream.checkpoint"
    half = frame.height // 2
    # the first run sees half the input and stops (flushing what it held)
    first, written_first, _ = stream(bundle, cut(frame.head(half), [300, 900]), checkpoint=checkpoint)
    assert first.written == half
    # the restarted stream reads the input again from its start
    second, written_second, _ = stream(bundle, cut(frame, [500, 1500, 2500]), checkpoint=checkpoint)
    rows_first = set(written_first["row"].to_list())
    rows_second = set(written_second["row"].to_list())
    assert not rows_first & rows_second
    assert rows_first | rows_second == set(range(1, frame.height + 1))
    assert second.duplicates_suppressed == half
    # what the restarted run wrote was scored with the full state
    np.testing.assert_allclose(
        written_second["score"].to_numpy(),
        whole.scores[written_second["row"].to_numpy() - 1],
        rtol=1e-6,
        atol=1e-9,
    )
    # a third run has nothing left to write
    third, written_third, _ = stream(bundle, cut(frame, [1000]), checkpoint=checkpoint)
    assert third.written == 0 and written_third.height == 0
    assert third.duplicates_suppressed == frame.height


def test_checkpoint_files_keep_other_sources_and_reject_foreign_files(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.json"
    one = Checkpoint(path, "netflow://0.0.0.0:2055")
    one.save(1_000_000)
    two = Checkpoint(path, "follow:/var/log/conn.log")
    two.save(2_000_000)
    assert Checkpoint(path, "netflow://0.0.0.0:2055").complete_until == 1_000_000
    assert Checkpoint(path, "follow:/var/log/conn.log").complete_until == 2_000_000
    assert not list(tmp_path.glob(".checkpoint.json.*"))  # no temporary file left behind
    foreign = tmp_path / "other.json"
    foreign.write_text('{"hello": 1}')
    with pytest.raises(ConfigError, match="not a nadkit stream checkpoint"):
        Checkpoint(foreign, "x")


def test_columns_the_source_lacks_are_left_empty_with_a_warning(
    bundle: ModelBundle, test_day: tuple[pl.DataFrame, Path], caplog: pytest.LogCaptureFixture
) -> None:
    frame, _ = test_day
    assert "app" in bundle.pipeline.input_columns_
    with caplog.at_level(logging.WARNING, logger="nadkit.stream"):
        stats, out, _ = stream(bundle, cut(frame.drop("app"), [1000, 2000]), batch_rows=10**6)
    assert stats.flows_scored == frame.height == out.height
    assert caplog.text.count("has no app") == 1


def test_latency_recorder_quantiles() -> None:
    recorder = LatencyRecorder(size=1000, recent=100)
    assert recorder.quantiles() is None
    for start in range(0, 10_000, 500):
        recorder.add(np.arange(start, start + 500) / 10_000)
    p50, p99 = recorder.quantiles() or (0.0, 0.0)
    assert 0.4 < p50 < 0.6 and 0.95 < p99 <= 1.0
    recent = recorder.quantiles(recent=True)
    assert recent is not None and recent[0] > 0.9
    assert recorder.seen == 10_000


def test_status_lines_and_model_version(bundle: ModelBundle) -> None:
    stats = StreamStats(source="x", flows_in=1234, alerts=5, queue_dropped=7, late_dropped=2)
    line = stats.line()
    assert "1,234 flows" in line and "queue 7" in line and "late 2" in line
    assert stats.to_dict()["flows_in"] == 1234
    assert model_version(bundle).startswith("ae@")


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError):
        StreamConfig(batch_seconds=0)
    with pytest.raises(ConfigError):
        StreamConfig(overflow="explode")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        StreamConfig(lateness_s=-1)


def test_the_stream_groups_its_alerts_into_the_incidents_of_one_pass(
    bundle: ModelBundle, test_day: tuple[pl.DataFrame, Path], whole: ScoredTable, tmp_path: Path
) -> None:
    """Incident updates go to their file as batches grow or close incidents; the last word on each
    incident equals grouping every alert at once, and a restart continues the open ones."""
    from nadkit.alerts.incidents import group_alerts

    frame, _ = test_day
    out = tmp_path / "incidents.jsonl"
    stats, written, _ = stream(bundle, cut(frame, [700, 1900, 3100]), incidents=out, all_flows=False)
    updates = pl.read_ndjson(out)
    last = updates.group_by("incident_id", maintain_order=True).last()
    assert set(last["status"]) == {"closed"}  # the input ended: every incident is complete
    once = group_alerts(written.with_columns(pl.col("time").cast(pl.Datetime("us", "UTC")))).summary
    assert set(last["incident_id"]) == set(once["incident_id"]) and stats.incidents == once.height
    assert dict(zip(last["incident_id"], last["alerts"], strict=True)) == dict(
        zip(once["incident_id"], once["alerts"], strict=True)
    )

    checkpoint, restarted = tmp_path / "stream.checkpoint", tmp_path / "restarted.jsonl"
    half = frame.height // 2
    runner = StreamRunner(
        bundle,
        FrameSource(cut(frame.head(half), [400])),
        [MemorySink()],
        StreamConfig(lateness_s=0.0, batch_rows=1, checkpoint=checkpoint, incidents=restarted),
    )
    runner.run()
    assert Checkpoint(checkpoint, runner.source.name).incidents is not None
