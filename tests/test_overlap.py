"""Row hashes of training data: the same flow hashes alike whatever file it comes from, a bounded
sample of them estimates the share of evaluated rows trained on, and the verdict follows the share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from nadkit.evaluation.overlap import (
    OVERLAP_SHARE,
    OverlapCounter,
    TrainingOverlap,
    TrainingRows,
    hashed_columns,
    row_hashes,
)
from nadkit.schema import CAPTURE_TIME
from nadkit.simulate import SimulationConfig, simulate, write_nad_csv
from nadkit.sources import load_flows


@pytest.fixture(scope="module")
def flows() -> pl.DataFrame:
    return simulate(SimulationConfig(days=2, flows_per_day=1500, seed=7)).drop("day")


def test_a_flow_hashes_alike_in_any_file_format_and_column_order(flows: pl.DataFrame, tmp_path: Path) -> None:
    write_nad_csv(flows, tmp_path / "flows.csv")
    from_csv, _ = load_flows(tmp_path / "flows.csv")
    from_csv.write_parquet(tmp_path / "flows.parquet")
    from_parquet, _ = load_flows(tmp_path / "flows.parquet")
    columns = hashed_columns(from_parquet)
    assert "label" not in columns and "label_original" not in columns and "time" in columns
    hashes = row_hashes(from_parquet, columns)
    assert hashes.dtype == np.uint64 and len(np.unique(hashes)) == flows.height
    np.testing.assert_array_equal(row_hashes(from_csv, columns), hashes)
    shuffled = from_parquet.select(list(reversed(from_parquet.columns)))
    np.testing.assert_array_equal(row_hashes(shuffled, columns), hashes)
    as_float = from_parquet.with_columns(pl.col("out_bytes").cast(pl.Float64))
    np.testing.assert_array_equal(row_hashes(as_float, columns), hashes)
    relabelled = from_parquet.with_columns(pl.lit("Probing-IP sweep").alias("label"))
    np.testing.assert_array_equal(row_hashes(relabelled, columns), hashes)
    moved = from_parquet.with_columns(pl.col("duration") + 0.001)
    assert not np.isin(row_hashes(moved, columns), hashes).any()


def test_known_rows_hash_to_fixed_values() -> None:
    """The hash depends on nothing but the values: a change of it must be a new scheme."""
    frame = pl.DataFrame({"a": [1, None], "b": ["x", "y"], "label": ["normal", "normal"]})
    assert row_hashes(frame, hashed_columns(frame)).tolist() == [
        int(v) for v in row_hashes(frame.select("b", "a"), ("a", "b"))
    ]
    expected = [4359211897173740902, 3151579713431325121]
    assert row_hashes(frame, ("a", "b")).tolist() == expected
    categorical = pl.DataFrame({"a": [1.0, None], "b": pl.Series(["x", "y"], dtype=pl.Categorical)})
    assert row_hashes(categorical, ("a", "b")).tolist() == expected


def test_training_rows_count_the_evaluated_rows_seen(flows: pl.DataFrame) -> None:
    train, later = flows.head(1500), flows.tail(flows.height - 1500)
    rows = TrainingRows.of(train.head(1000), train.tail(500))
    assert rows.rows == 1500 and rows.distinct == 1500 and not rows.sampled
    assert rows.count(train) == (1500, 1500)
    assert rows.count(later) == (later.height, 0)
    half = pl.concat([train.head(300), later.head(300)])
    assert rows.count(half) == (600, 300)


def test_a_bounded_sample_estimates_the_share(flows: pl.DataFrame) -> None:
    train, later = flows.head(1500), flows.tail(flows.height - 1500)
    rows = TrainingRows.of(train, limit=400)
    assert rows.sampled and len(rows.hashes) == 400 and rows.distinct == 1500
    assert np.all(np.diff(rows.hashes.astype(np.float64)) > 0)
    compared, found = rows.count(train)
    assert compared == found == 400
    compared, found = rows.count(pl.concat([train.head(750), later.head(750)]))
    assert 0.35 < found / compared < 0.65
    counter = OverlapCounter(rows)
    counter.add(train.head(700))
    counter.add(train.tail(800))
    overlap = counter.result()
    assert overlap.sampled and overlap.share == 1.0 and overlap.rows == 1500 and overlap.optimistic
    assert "about 1,500 of 1,500" in overlap.describe()


def test_the_manifest_round_trip_is_checked(flows: pl.DataFrame) -> None:
    rows = TrainingRows.of(flows)
    again = TrainingRows.from_manifest(rows.to_manifest(), rows.hashes)
    assert again.columns == rows.columns and again.distinct == rows.distinct
    with pytest.raises(ValueError, match="do not match"):
        TrainingRows.from_manifest(rows.to_manifest(), rows.hashes[::-1].copy())
    with pytest.raises(ValueError, match="uint64"):
        TrainingRows.from_manifest(rows.to_manifest(), rows.hashes.astype(np.int64))


def test_missing_columns_or_hashes_mean_no_comparison(flows: pl.DataFrame) -> None:
    counter = OverlapCounter(TrainingRows.of(flows))
    counter.add(flows.drop("app"))
    overlap = counter.result()
    assert overlap.compared is None and overlap.share is None and not overlap.optimistic
    assert "app" in overlap.note and overlap.evaluated == flows.height
    old = OverlapCounter(None)
    old.add(flows)
    assert "no training row hashes" in old.result().note
    matched = old.result(fingerprint_match=True)
    assert matched.optimistic and matched.share == 1.0 and "fingerprint" in matched.describe()


@pytest.mark.parametrize(
    ("found", "warned"),
    [(0, False), (int(1000 * OVERLAP_SHARE), False), (int(1000 * OVERLAP_SHARE) + 1, True)],
)
def test_a_small_overlap_is_no_warning(found: int, warned: bool) -> None:
    overlap = TrainingOverlap(evaluated=1000, compared=1000, found=found)
    assert overlap.optimistic is warned
    assert (overlap.warning() is not None) is warned
    assert overlap.to_dict()["rows"] == found


def test_flows_moved_in_time_are_known_by_their_own_time(flows: pl.DataFrame) -> None:
    """A mix of captures moves each capture in time and keeps a flow's own time as ``capture_time``:
    the flows a model was trained on are still found there, and a model trained on the mix knows
    the captures' own flows."""
    train, later = flows.head(1500), flows.tail(flows.height - 1500)
    shift = pl.duration(days=400)
    mixed = pl.concat([train, later]).with_columns(
        pl.col("time").alias(CAPTURE_TIME), (pl.col("time") + shift).alias("time")
    )
    rows = TrainingRows.of(train)
    assert CAPTURE_TIME not in hashed_columns(mixed)
    assert rows.count(mixed) == (mixed.height, 1500)
    assert rows.count(mixed.drop(CAPTURE_TIME)) == (mixed.height, 0), "moved without its own time"
    trained_on_mix = TrainingRows.of(mixed.head(1500))
    assert trained_on_mix.columns == rows.columns
    assert trained_on_mix.count(flows) == (flows.height, 1500)
    compared, found = rows.matches(mixed)
    assert compared.all() and found[:1500].all() and not found[1500:].any()


def test_training_rows_among_the_normal_flows_are_told(flows: pl.DataFrame) -> None:
    """Evaluated on many new attack flows and the training's normal flows, the share of all flows
    trained on is small, but the false-positive rate is measured on training rows: that is told."""
    normal = flows.filter(pl.col("label") == "normal").head(20)
    attacks = pl.concat([flows.filter(pl.col("label") != "normal")] * 40).with_columns(
        pl.col("duration") + pl.int_range(pl.len()).cast(pl.Float64) * 1e-3
    )
    counter = OverlapCounter(TrainingRows.of(normal))
    counter.add(pl.concat([normal, attacks]))
    overlap = counter.result()
    assert overlap.share is not None and overlap.share <= OVERLAP_SHARE
    assert overlap.normal_compared == overlap.normal_found == 20 and overlap.normal_share == 1.0
    assert overlap.optimistic and "20 of the 20 normal flows (100.0%)" in (overlap.warning() or "")
    assert overlap.to_dict()["normal_share"] == 1.0
    unlabelled = OverlapCounter(TrainingRows.of(normal))
    unlabelled.add(pl.concat([normal, attacks]).drop("label", "label_original"))
    assert unlabelled.result().normal_share is None and not unlabelled.result().optimistic
