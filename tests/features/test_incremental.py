"""Features computed piece by piece equal the features of the whole table."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nadkit.errors import SchemaError
from nadkit.features.cadence import CadenceConfig
from nadkit.features.incremental import SEQ, IncrementalFeatures, OutOfOrderError, augment_in_pieces
from nadkit.features.pipeline import GROUP_NAMES, FeatureConfig, FeaturePipeline
from nadkit.features.segments import SegmentConfig
from nadkit.simulate import SimulationConfig, simulate_day


@pytest.fixture(scope="module")
def flows() -> pl.DataFrame:
    """A simulated day without the cnt_* columns (so the pipeline computes the counters), time-sorted."""
    config = SimulationConfig(days=1, flows_per_day=6000, seed=3, start=date(2020, 12, 3))
    day = simulate_day(config, 0)
    return day.drop([c for c in day.columns if c.startswith("cnt_")] + ["day"], strict=False).sort(
        "time", maintain_order=True
    )


@pytest.fixture(scope="module")
def pipeline(flows: pl.DataFrame) -> FeaturePipeline:
    # a short segment gap makes many segments close inside the table, so holding and releasing is exercised;
    # a short cadence horizon makes pairs leave the look-back inside it
    config = FeatureConfig(
        groups=(*GROUP_NAMES, "cadence"),
        segments=SegmentConfig(gap_s=20.0),
        cadence=CadenceConfig(horizon_s=600.0, gaps=4),
    )
    fitted = FeaturePipeline(config).fit(flows)
    assert fitted.counters_computed_ and fitted.segments_computed_ and fitted.cadence_computed_
    return fitted


def _same(whole: pl.DataFrame, pieces: pl.DataFrame) -> None:
    assert pieces.height == whole.height
    assert pieces[SEQ].to_list() == list(range(whole.height))
    left = whole.select(whole.columns)
    right = pieces.select(whole.columns)
    for column in whole.columns:
        assert left[column].equals(right[column]), column


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_piece_boundaries_give_the_whole_tables_features(
    flows: pl.DataFrame, pipeline: FeaturePipeline, data: st.DataObject
) -> None:
    whole = pipeline.augment(flows)
    bounds = data.draw(st.lists(st.integers(1, flows.height - 1), max_size=12, unique=True))
    order_by = data.draw(st.sampled_from([None, ("src",)]))
    _same(whole, augment_in_pieces(pipeline, flows, bounds, order_by=order_by))


@pytest.mark.slow
def test_one_flow_at_a_time_near_the_end(flows: pl.DataFrame, pipeline: FeaturePipeline) -> None:
    head = flows.head(400)
    whole = pipeline.augment(head)
    _same(whole, augment_in_pieces(pipeline, head, list(range(1, 400))))


def test_scaled_features_of_pieces_equal_transform(flows: pl.DataFrame, pipeline: FeaturePipeline) -> None:
    pieces = augment_in_pieces(pipeline, flows, [1000, 2500, 2501, 5000])
    assert pipeline.transform_augmented(pieces).equals(pipeline.transform(flows))


def test_memory_holds_only_open_segments_and_the_counter_context(
    flows: pl.DataFrame, pipeline: FeaturePipeline
) -> None:
    state = IncrementalFeatures(pipeline)
    emitted = 0
    for start in range(0, flows.height, 500):
        emitted += state.push(flows.slice(start, 500)).height
        assert state.held_rows < flows.height / 2
    emitted += state.flush().height
    assert emitted == flows.height == state.stats.emitted
    assert state.held_rows == 0


def test_out_of_order_flows_are_an_error_or_dropped(flows: pl.DataFrame, pipeline: FeaturePipeline) -> None:
    late_piece = flows.slice(100, 50)
    state = IncrementalFeatures(pipeline)
    state.push(flows.slice(0, 3000))
    with pytest.raises(OutOfOrderError, match="not in time order"):
        state.push(late_piece)

    dropping = IncrementalFeatures(pipeline, late="drop")
    dropping.push(flows.slice(0, 3000))
    dropping.push(late_piece)
    assert dropping.stats.late_dropped == 50


def test_lateness_buffer_absorbs_small_disorder(flows: pl.DataFrame, pipeline: FeaturePipeline) -> None:
    # swap neighbouring pieces a few seconds apart: with enough lateness the result is the sorted table's
    head = flows.head(3000)
    shuffled = pl.concat(
        [head.slice(0, 1000), head.slice(1100, 100), head.slice(1000, 100), head.slice(1200, 1800)]
    )
    spread = (head["time"][1199] - head["time"][1000]).total_seconds()
    state = IncrementalFeatures(pipeline, lateness_s=spread + 1)
    parts = [state.push(shuffled.slice(s, 100)) for s in range(0, 3000, 100)]
    parts.append(state.flush())
    out = pl.concat([p for p in parts if p.height], how="diagonal_relaxed")
    assert state.stats.late_dropped == 0
    assert out.height == 3000
    # the same flows come out, each with the counters of the time-sorted table
    whole = pipeline.augment(head)
    key = ["time", "src", "dst", "spt", "dpt"]
    merged = out.join(whole, on=key, suffix="_whole")
    assert merged.height >= 3000
    assert (merged["cnt_src_slow"] == merged["cnt_src_slow_whole"]).mean() > 0.99


def test_a_stateless_pipeline_passes_pieces_straight_through(flows: pl.DataFrame) -> None:
    plain = FeaturePipeline(FeatureConfig(groups=("categories", "logs"), compute_counters=False)).fit(flows)
    assert not plain.stateful
    state = IncrementalFeatures(plain)
    piece = state.push(flows.head(10))
    assert piece.height == 10
    assert piece[SEQ].to_list() == list(range(10))
    assert state.flush().height == 0


def test_pieces_never_reorder_an_entitys_flows(flows: pl.DataFrame, pipeline: FeaturePipeline) -> None:
    state = IncrementalFeatures(pipeline, order_by=("src",))
    seen: dict[str, int] = {}
    for start in range(0, flows.height, 700):
        out = state.push(flows.slice(start, 700))
        for src, seq in out.select("src", SEQ).iter_rows():
            assert seq > seen.get(src, -1)
            seen[src] = seq
    for src, seq in state.flush().select("src", SEQ).iter_rows():
        assert seq > seen.get(src, -1)
        seen[src] = seq
    assert len(seen) > 10


def test_a_host_that_never_pauses_is_released_at_each_span_window() -> None:
    # three hours of one device reporting every 2 s: its segment never sees a 60 s pause, yet its flows
    # are released within a span window of the watermark, with the whole table's features
    start = datetime(2024, 5, 6, tzinfo=UTC)
    count = 5400
    chatty = pl.DataFrame(
        {
            "time": [start + timedelta(seconds=2 * i) for i in range(count)],
            "src": ["10.0.0.9"] * count,
            "dst": ["192.168.7.1"] * count,
            "spt": [40000 + i % 1000 for i in range(count)],
            "dpt": [8883] * count,
            "proto": ["tcp"] * count,
        }
    )
    fitted = FeaturePipeline(FeatureConfig(groups=("segments",), compute_counters=False)).fit(chatty)
    state = IncrementalFeatures(fitted)
    most = 0
    pieces = []
    for first in range(0, count, 100):
        pieces.append(state.push(chatty.slice(first, 100)))
        most = max(most, state.held_rows)
    pieces.append(state.flush())
    # at most one 300 s window (150 flows) and the piece that crossed into the next one
    assert most <= 150 + 100
    _same(fitted.augment(chatty), pl.concat(pieces).sort(SEQ))


def test_pieces_give_the_names_per_domain_of_the_whole_table(flows: pl.DataFrame) -> None:
    """Flows that carry the name they asked for (captures): ``seg_domain_names`` computed piece by
    piece equals the whole table's."""
    import numpy as np

    rng = np.random.default_rng(2)
    names = [
        None if rng.random() < 0.5 else f"q{rng.integers(0, 40)}.d{rng.integers(0, 3)}.net"
        for _ in range(flows.height)
    ]
    named = flows.with_columns(pl.Series("server_name", names, dtype=pl.String))
    fitted = FeaturePipeline(FeatureConfig(segments=SegmentConfig(gap_s=20.0))).fit(named)
    whole = fitted.augment(named)
    assert "seg_domain_names" in whole.columns and "seg_domain_names" in fitted.feature_names_
    assert whole["seg_domain_names"].max() > 1
    _same(whole, augment_in_pieces(fitted, named, [500, 1700, 1701, 4000]))


@pytest.mark.parametrize("column", ["time", "dst"])
def test_pieces_without_what_the_counters_read_are_refused(
    flows: pl.DataFrame, pipeline: FeaturePipeline, column: str
) -> None:
    """Counters and segments read times and addresses; a piece without one is refused by name, as
    the whole table is, before anything is held."""
    lacking = flows.head(50).drop(column)
    features = IncrementalFeatures(pipeline)
    with pytest.raises(SchemaError, match=f"column '{column}'") as caught:
        features.push(lacking)
    assert "computed from it" in str(caught.value)
    assert features.held_rows == 0
    with pytest.raises(SchemaError, match=f"column '{column}'"):
        pipeline.augment(lacking)


def test_pieces_count_only_the_windows_the_features_use(flows: pl.DataFrame) -> None:
    # without the 60 s window the look-back shrinks to the 2 s window and the last 100 flows
    config = FeatureConfig(counter_windows=("fast", "connections"), segments=SegmentConfig(gap_s=20.0))
    fitted = FeaturePipeline(config).fit(flows)
    whole = fitted.augment(flows)
    assert "cnt_src" in whole.columns and "cnt_src_conn" in whole.columns
    assert not [c for c in whole.columns if c.endswith("_slow")]
    _same(whole, augment_in_pieces(fitted, flows, [700, 2000, 2001, 4500]))
    state = IncrementalFeatures(fitted)
    assert state._context_us == 2_000_000 and state._context_rows == 100
