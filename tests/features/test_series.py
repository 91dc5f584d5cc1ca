"""Time-series views: per-entity flow windows (index arrays, padding, gathering in batches) and
regular time-bucket metrics with their windows and the flow-to-bucket mapping, on hand-made flows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from nadkit.errors import ConfigError, SchemaError
from nadkit.features.series import (
    BucketConfig,
    bucket_metrics,
    flow_windows,
    gather,
    sliding_windows,
)

T0 = datetime(2020, 12, 3, 8, 0, tzinfo=UTC)


def flows() -> pl.DataFrame:
    """Two hosts and one flow without a source; rows not in time order."""
    rows = [
        # seconds, src, dst, dpt, proto, app, out_bytes, in_bytes, out_pkts, in_pkts
        (70, "a", "x", 443, "udp", "domain", 3, 30, 1, 1),
        (0, "a", "x", 80, "tcp", "http", 1, 10, 1, 2),
        (10, "a", "y", 80, "tcp", "http", 2, 20, 2, 2),
        (5, "b", "x", 53, "udp", "domain", 5, 50, 1, 1),
        (200, "a", "x", 0, "icmp", "icmp", 4, 40, 1, 0),
        (15, "b", "x", 53, "gre", None, 6, 60, 1, 1),
        (30, None, "z", 53, None, "x", 7, 70, 1, 1),
    ]
    names = ["seconds", "src", "dst", "dpt", "proto", "app", "out_bytes", "in_bytes", "out_pkts", "in_pkts"]
    frame = pl.DataFrame(rows, schema=names, orient="row")
    return frame.with_columns((pl.lit(T0) + pl.duration(seconds=pl.col("seconds"))).alias("time")).drop(
        "seconds"
    )


class TestFlowWindows:
    def test_index_mask_and_lengths(self) -> None:
        windows = flow_windows(flows(), length=3)
        # host a in time order: rows 1 (0 s), 2 (10 s), 0 (70 s), 4 (200 s); host b: 3, 5; null: 6
        assert windows.index().tolist() == [
            [1, 2, 0],
            [-1, -1, 1],
            [-1, 1, 2],
            [-1, -1, 3],
            [2, 0, 4],
            [-1, 3, 5],
            [-1, -1, 6],
        ]
        assert windows.lengths().tolist() == [3, 1, 2, 1, 3, 2, 1]
        assert windows.mask([1, 4]).tolist() == [[False, False, True], [True, True, True]]
        assert windows.index(slice(4, 6)).tolist() == [[2, 0, 4], [-1, 3, 5]]
        assert len(windows) == 7

    def test_last_column_is_the_scored_row(self) -> None:
        windows = flow_windows(flows(), length=4, key=("src", "dst"))
        assert windows.index()[:, -1].tolist() == list(range(7))
        # host a to x: rows 1, 0, 4; a to y: row 2 alone
        assert windows.index([4, 2]).tolist() == [[-1, 1, 0, 4], [-1, -1, -1, 2]]

    def test_ties_keep_row_order_and_one_entity(self) -> None:
        windows = sliding_windows(None, np.array([5, 5, 1, 5]), length=2)
        assert windows.index().tolist() == [[2, 0], [0, 1], [-1, 2], [1, 3]]
        by_order = sliding_windows(np.array(["p", "q", "p", "p"]), None, length=2)
        assert by_order.index().tolist() == [[-1, 0], [-1, 1], [0, 2], [2, 3]]

    def test_gather_fills_padding_and_keeps_the_dtype(self) -> None:
        features = np.arange(14, dtype=np.float32).reshape(7, 2)
        windows = flow_windows(flows(), length=3)
        batch = gather(features, windows.index([1, 4]), fill=-1.0)
        assert batch.dtype == np.float32 and batch.shape == (2, 3, 2)
        assert batch[0].tolist() == [[-1, -1], [-1, -1], [2, 3]]
        assert batch[1].tolist() == [[4, 5], [0, 1], [8, 9]]
        assert gather(np.arange(7.0), windows.index([5]))[0, :, 0].tolist() == [0.0, 3.0, 5.0]

    def test_batches_cover_every_row_once(self) -> None:
        windows = flow_windows(flows(), length=2)
        plain = list(windows.batches(3))
        assert [b.tolist() for b in plain] == [[0, 1, 2], [3, 4, 5], [6]]
        shuffled = np.concatenate(list(windows.batches(2, shuffle=True, seed=4)))
        assert sorted(shuffled.tolist()) == list(range(7)) and shuffled.tolist() != list(range(7))
        again = np.concatenate(list(windows.batches(2, shuffle=True, seed=4)))
        assert again.tolist() == shuffled.tolist()
        assert [b.tolist() for b in windows.batches(5, rows=np.array([6, 0]))] == [[6, 0]]

    def test_bad_arguments(self) -> None:
        with pytest.raises(ConfigError):
            flow_windows(flows(), length=0)
        with pytest.raises(SchemaError, match="src"):
            flow_windows(flows().drop("src"), length=2)
        with pytest.raises(ConfigError):
            sliding_windows(np.array([1, 2]), np.array([1, 2, 3]), length=2)
        with pytest.raises(ConfigError):
            list(flow_windows(flows(), length=2).batches(0))

    def test_empty(self) -> None:
        windows = flow_windows(flows().head(0), length=3)
        assert windows.index().shape == (0, 3)


class TestBucketMetrics:
    def test_whole_network(self) -> None:
        series = bucket_metrics(flows())
        frame = series.frame
        assert frame["bucket"].to_list() == [T0 + timedelta(minutes=m) for m in range(4)]
        assert frame["flows"].to_list() == [5, 1, 0, 1]  # the empty third minute is filled
        assert frame["out_bytes"].to_list() == [1 + 2 + 5 + 6 + 7, 3, 0, 4]
        assert frame["in_pkts"].to_list() == [2 + 2 + 1 + 1 + 1, 1, 0, 0]
        assert frame["unique_dst"].to_list() == [3, 1, 0, 1]
        assert frame["unique_dpt"].to_list() == [2, 1, 0, 1]
        assert frame["unique_src"].to_list() == [3, 1, 0, 1]  # a missing src counts as one value
        assert frame["proto_share=tcp"].to_list() == [0.4, 0.0, 0.0, 0.0]
        assert frame["proto_share=udp"].to_list() == [0.2, 1.0, 0.0, 0.0]
        assert frame["proto_share=icmp"].to_list() == [0.0, 0.0, 0.0, 1.0]
        assert frame["proto_share=other"].to_list() == [0.4, 0.0, 0.0, 0.0]  # gre and a missing proto
        # apps by flow count, ties by name: domain 2, http 2, icmp 1, x 1
        assert series.apps == ("domain", "http", "icmp", "x")
        assert frame["app_share=http"].to_list() == [0.4, 0.0, 0.0, 0.0]
        assert frame["app_share=others"].to_list() == [0.2, 0.0, 0.0, 0.0]  # the missing app
        assert series.row_bucket.tolist() == [1, 0, 0, 0, 3, 0, 0]
        assert series.matrix().shape == (4, len(series.metrics))
        assert series.matrix().dtype == np.float32

    def test_per_host_with_active_and_full_spans(self) -> None:
        config = BucketConfig(by="src", apps=("http",))
        series = bucket_metrics(flows(), config)
        frame = series.frame
        assert frame["src"].to_list() == ["a", "a", "a", "a", "b", None]
        assert frame["flows"].to_list() == [2, 1, 0, 1, 2, 1]
        assert frame.columns[-2:] == ["app_share=http", "app_share=others"]
        assert series.row_bucket.tolist() == [1, 0, 0, 4, 3, 4, 5]
        full = bucket_metrics(flows(), BucketConfig(by="src", span="full")).frame
        assert full.height == 3 * 4
        assert full.filter(pl.col("src") == "b")["flows"].to_list() == [2, 0, 0, 0]

    def test_windows_over_buckets_and_scores_back_to_flows(self) -> None:
        series = bucket_metrics(flows(), BucketConfig(by="src"))
        windows = series.windows(2)
        assert windows.index().tolist() == [[-1, 0], [0, 1], [1, 2], [2, 3], [-1, 4], [-1, 5]]
        scores = np.array([10.0, 11.0, 12.0, 13.0, 20.0, 30.0])
        assert series.to_flows(scores).tolist() == [11.0, 10.0, 10.0, 20.0, 13.0, 20.0, 30.0]

    def test_bucket_width_and_flows_without_time(self) -> None:
        frame = flows().with_columns(
            pl.when(pl.col("dst") == "z").then(None).otherwise(pl.col("time")).alias("time")
        )
        series = bucket_metrics(frame, BucketConfig(bucket_s=100.0))
        # 100 s buckets aligned to the epoch: 08:00:00 is 1606982400 s, a multiple of 100
        assert series.frame["flows"].to_list() == [5, 0, 1]
        assert series.row_bucket.tolist() == [0, 0, 0, 0, 2, 0, -1]
        assert np.isnan(series.to_flows(np.array([1.0, 2.0, 3.0]))[-1])

    def test_metrics_follow_the_columns(self) -> None:
        series = bucket_metrics(flows().select("time", "dst"))
        assert series.metrics == ("flows", "unique_dst")
        with pytest.raises(SchemaError, match="time"):
            bucket_metrics(flows().drop("time"))
        with pytest.raises(SchemaError, match="host"):
            bucket_metrics(flows(), BucketConfig(by="host"))
        with pytest.raises(ConfigError):
            BucketConfig(bucket_s=0)
        empty = bucket_metrics(flows().head(0))
        assert empty.frame.height == 0 and len(empty.row_bucket) == 0


def test_an_app_named_others_falls_in_the_others_share() -> None:
    frame = flows().with_columns(
        pl.when(pl.col("app") == "x").then(pl.lit("others")).otherwise("app").alias("app")
    )
    series = bucket_metrics(frame)
    assert "others" not in series.apps
    assert series.frame.columns.count("app_share=others") == 1
    # the first minute: the missing app and the app named others
    assert series.frame["app_share=others"].to_list()[0] == 0.4
    given = bucket_metrics(frame, BucketConfig(apps=("http", "others")))
    assert given.apps == ("http",)


def test_full_span_windows_restart_at_each_host() -> None:
    series = bucket_metrics(flows(), BucketConfig(by="src", span="full"))
    windows = series.windows(3)
    assert windows.lengths().tolist() == [1, 2, 3, 3] * 3
    assert windows.index([4, 5]).tolist() == [[-1, -1, 4], [-1, 4, 5]]
