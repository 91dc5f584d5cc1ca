"""Splitting: whole sessions on one side with the class mix and size of the request, determinism by
seed, day and time splits, the report, and errors for missing columns."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from rich.console import Console
from rich.table import Table

from nadkit.errors import ConfigError, SchemaError
from nadkit.evaluation.split import (
    DaySplit,
    GroupSplit,
    TimeSplit,
    assign_groups,
    render,
    session_groups,
    split_frame,
    stratified_holdout,
)

T0 = datetime(2020, 12, 3, tzinfo=UTC)
CLASSES = ("normal", "ipsweep", "portsweep", "smurf", "nmap")


def sessions(n_groups: int = 2000, seed: int = 1) -> pl.DataFrame:
    """Flows in ``n_groups`` (src, dst /24) sessions of skewed sizes (1 to 400 rows). Each session
    has one class (an attack session also carries 10 % normal rows); nmap is rare (about 1 % of
    sessions). Times spread over three days."""
    rng = np.random.default_rng(seed)
    sizes = np.minimum(rng.zipf(1.8, n_groups), 400)
    group = np.repeat(np.arange(n_groups), sizes)
    kind = rng.choice(len(CLASSES), n_groups, p=[0.8, 0.1, 0.06, 0.03, 0.01])
    label = np.array(CLASSES)[kind][group]
    label = np.where(rng.random(len(group)) < 0.1, "normal", label)
    # two sessions share each source, told apart by the destination /24; the last octet varies
    subnet = np.array([f"172.16.{i % 2}" for i in range(n_groups)])[group]
    dst = [f"{s}.{o}" for s, o in zip(subnet, rng.integers(1, 255, len(group)), strict=True)]
    src = np.array([f"10.{(i // 2) // 250}.{(i // 2) % 250}.1" for i in range(n_groups)])[group]
    seconds = rng.integers(0, 3 * 86400, len(group))
    return pl.DataFrame(
        {
            "time": [T0 + timedelta(seconds=int(s)) for s in seconds],
            "src": src,
            "dst": dst,
            "label": label,
        }
    )


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return sessions()


class TestGroupSplit:
    def test_no_session_on_both_sides(self, frame: pl.DataFrame) -> None:
        split = split_frame(frame, "group", validation_fraction=0.25, seed=0)
        # sessions recomputed independently of the library: (src, first three octets of dst)
        pairs = frame.select(
            pl.col("src"), pl.col("dst").str.replace(r"\.\d+$", ""), pl.Series("validation", split.validation)
        )
        sides = pairs.group_by("src", "dst").agg(pl.col("validation").n_unique().alias("sides"))
        assert sides.height == 2000
        assert sides["sides"].max() == 1
        report = split.report
        assert report.groups_on_both_sides == 0
        assert report.groups is not None and sum(report.groups.values()) == 2000
        assert 300 < report.groups["validation"] < 700  # not just a few huge sessions

    def test_share_and_class_mix(self, frame: pl.DataFrame) -> None:
        report = split_frame(frame, validation_fraction=0.25, seed=0).report
        assert abs(report.validation_share - 0.25) < 0.03
        assert report.max_class_deviation_points < 2.0
        for name in CLASSES:
            share_all = report.class_shares["all"][name]
            for side in ("train", "validation"):
                assert abs(report.class_shares[side][name] - share_all) * 100 < 2.0
        # the rare class is split too (relative deviation counts, not only points)
        nmap = report.class_counts
        assert nmap["validation"]["nmap"] > 0 and nmap["train"]["nmap"] > 0
        assert report.class_counts["all"]["nmap"] == frame.filter(pl.col("label") == "nmap").height

    def test_other_fractions(self, frame: pl.DataFrame) -> None:
        for fraction in (0.1, 0.5):
            report = split_frame(frame, validation_fraction=fraction, seed=3).report
            assert abs(report.validation_share - fraction) < 0.03
            assert report.max_class_deviation_points < 3.0

    def test_deterministic_by_seed(self, frame: pl.DataFrame) -> None:
        first = split_frame(frame, seed=7).validation
        assert np.array_equal(first, split_frame(frame, seed=7).validation)
        other = split_frame(frame, seed=8).validation
        assert not np.array_equal(first, other)
        assert abs(other.mean() - 0.25) < 0.03

    def test_segments_as_groups(self, frame: pl.DataFrame) -> None:
        split = GroupSplit(gap_s=3600.0).split(frame)
        groups = session_groups(frame, gap_s=3600.0)
        assert groups.max() + 1 > 2000  # sessions cut at pauses of more than an hour
        assert split.report.groups_on_both_sides == 0
        assert split.report.group_key == ("src", "dst_subnet", "gap 3600 s")

    def test_rows_blocks_without_addresses(self, frame: pl.DataFrame) -> None:
        split = GroupSplit(block_rows=100).split(frame.drop("src", "dst"))
        blocks = np.arange(frame.height) // 100
        per_block = (
            pl.DataFrame({"block": blocks, "v": split.validation})
            .group_by("block")
            .agg(pl.col("v").n_unique())
        )
        assert per_block["v"].max() == 1
        assert "blocks of 100 consecutive rows" in split.report.notes[0]
        assert abs(split.report.validation_share - 0.25) < 0.03

    def test_without_labels_only_the_size_is_balanced(self, frame: pl.DataFrame) -> None:
        report = split_frame(frame.drop("label")).report
        assert list(report.class_counts["all"]) == ["(no label)"]
        assert abs(report.validation_share - 0.25) < 0.01

    def test_missing_columns_and_bad_settings(self, frame: pl.DataFrame) -> None:
        with pytest.raises(SchemaError, match="dst"):
            split_frame(frame.drop("dst"))
        with pytest.raises(SchemaError, match="dpt"):
            split_frame(frame, key=("src", "dpt"))
        with pytest.raises(ConfigError):
            split_frame(frame, validation_fraction=1.0)
        with pytest.raises(ConfigError):
            split_frame(frame, "random")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_assign_groups_splits_each_class(seed: int) -> None:
    # single-class groups: 30 normal of 10 rows, 8 attack of 5 rows, 8 rare of 1 row; targets at
    # 25 %: 75 normal (70 or 80 reachable), 10 attack, 2 rare
    counts = np.zeros((46, 3))
    counts[:30, 0] = 10
    counts[30:38, 1] = 5
    counts[38:, 2] = 1
    chosen = assign_groups(counts, 0.25, seed=seed)
    per_class = counts[chosen].sum(axis=0).tolist()
    assert per_class[0] in (70.0, 80.0) and per_class[1:] == [10.0, 2.0]
    # a class in one group cannot be split: it stays on the training side
    lonely = np.array([[10.0, 0.0], [10.0, 0.0], [10.0, 0.0], [10.0, 0.0], [0.0, 3.0]])
    assert assign_groups(lonely, 0.25, seed=seed).tolist()[-1] is False


class TestDaySplit:
    def test_latest_days_closest_to_the_fraction(self, frame: pl.DataFrame) -> None:
        split = split_frame(frame, "day", validation_fraction=0.25)
        days = frame["time"].dt.date()
        assert set(days.filter(pl.Series(split.validation)).unique()) == {date(2020, 12, 5)}
        assert set(days.filter(pl.Series(split.train)).unique()) == {date(2020, 12, 3), date(2020, 12, 4)}
        assert split.report.notes == ("validation days: 2020-12-05",)
        # sessions span days, so a day split leaks sessions: the report says how many
        assert split.report.groups_on_both_sides is not None and split.report.groups_on_both_sides > 100
        two_days = split_frame(frame, "day", validation_fraction=0.6).report
        assert abs(two_days.validation_share - 2 / 3) < 0.02

    def test_named_days(self, frame: pl.DataFrame) -> None:
        split = DaySplit(validation_days=("2020-12-03", date(2020, 12, 4))).split(frame)
        days = frame["time"].dt.date()
        assert np.array_equal(split.validation, days.is_in([date(2020, 12, 3), date(2020, 12, 4)]).to_numpy())
        with pytest.raises(ConfigError, match="not in the data"):
            DaySplit(validation_days=("2020-12-09",)).split(frame)
        with pytest.raises(ConfigError, match="every day"):
            DaySplit(validation_days=("2020-12-03", "2020-12-04", "2020-12-05")).split(frame)

    def test_needs_two_days_and_a_time(self, frame: pl.DataFrame) -> None:
        one_day = frame.filter(pl.col("time").dt.date() == date(2020, 12, 3))
        with pytest.raises(ConfigError, match="two days"):
            DaySplit().split(one_day)
        with pytest.raises(SchemaError, match="time"):
            DaySplit().split(frame.drop("time"))


class TestTimeSplit:
    def test_by_fraction(self, frame: pl.DataFrame) -> None:
        split = TimeSplit(validation_fraction=0.25).split(frame)
        times = frame["time"]
        assert times.filter(pl.Series(split.train)).max() < times.filter(pl.Series(split.validation)).min()
        assert abs(split.report.validation_share - 0.25) < 0.01

    def test_by_cut(self, frame: pl.DataFrame) -> None:
        cut = datetime(2020, 12, 5, 12, 0, tzinfo=UTC)
        split = split_frame(frame, "time", cut=cut)
        assert np.array_equal(split.validation, (frame["time"] >= cut).to_numpy())
        naive = TimeSplit(cut=datetime(2020, 12, 5, 12, 0)).split(frame)  # naive means UTC
        assert np.array_equal(naive.validation, split.validation)
        assert split.report.notes == ("cut at 2020-12-05T12:00:00+00:00",)
        with pytest.raises(ConfigError, match="empty"):
            TimeSplit(cut=datetime(2021, 1, 1, tzinfo=UTC)).split(frame)
        with pytest.raises(SchemaError, match="time"):
            TimeSplit().split(frame.drop("time"))


def test_report_to_dict_and_render(frame: pl.DataFrame) -> None:
    split = split_frame(frame, seed=0)
    data = json.loads(json.dumps(split.report.to_dict()))
    assert data["method"] == "group"
    assert data["rows"]["train"] + data["rows"]["validation"] == frame.height
    assert data["group_key"] == ["src", "dst_subnet"]
    assert set(data["class_counts"]) == {"all", "train", "validation"}
    table = render(split.report)
    assert isinstance(table, Table)
    assert table.row_count == len(CLASSES)
    console = Console(width=200, record=True)
    console.print(table)
    text = console.export_text()
    assert "0 on both sides" in text and "nmap" in text
    train, validation = split.frames(frame)
    assert train.height == len(split.train_index()) and validation.height == len(split.validation_index())


def test_empty_frame_is_an_error(frame: pl.DataFrame) -> None:
    for method in ("group", "day", "time"):
        with pytest.raises(ConfigError):
            split_frame(frame.head(0), method)


def test_stratified_holdout_takes_the_fraction_of_every_class() -> None:
    codes = np.repeat([0, 1, 2, 3], [1000, 100, 10, 1])
    held = stratified_holdout(codes, 0.3, seed=4)
    assert [int(held[codes == c].sum()) for c in range(4)] == [300, 30, 3, 0]
    np.testing.assert_array_equal(held, stratified_holdout(codes, 0.3, seed=4))
    assert not np.array_equal(held, stratified_holdout(codes, 0.3, seed=5))
    with pytest.raises(ConfigError, match="between 0 and 1"):
        stratified_holdout(codes, 1.0)
