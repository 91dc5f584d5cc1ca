"""Traffic counters: hand-made flows with known counts for each window kind, ties and input order,
and a brute-force comparison on random flows (also through the slower paths for wide keys)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from nadkit.features import counters
from nadkit.features.counters import (
    COUNTER_COLUMNS,
    KEYS,
    REQUIRED,
    CounterConfig,
    add_traffic_counters,
    traffic_counters,
    window_columns,
)

T0 = datetime(2020, 12, 3, 8, 0, tzinfo=UTC)


def flows(rows: Sequence[tuple[float, str | None, str | None, str, int]]) -> pl.DataFrame:
    """Flows from (seconds after T0, src, dst, proto, dpt)."""
    return pl.DataFrame(
        {
            "time": [T0 + timedelta(seconds=r[0]) for r in rows],
            "src": [r[1] for r in rows],
            "dst": [r[2] for r in rows],
            "proto": [r[3] for r in rows],
            "dpt": [r[4] for r in rows],
        },
        schema_overrides={"time": pl.Datetime("us", "UTC"), "dpt": pl.Int64},
    )


def brute_force(frame: pl.DataFrame, config: CounterConfig) -> pl.DataFrame:
    """The counters by their definition, one row at a time (rows in time order, ties in input order)."""
    times = frame["time"].dt.epoch("us").to_numpy()
    order = np.argsort(times, kind="stable")
    keys = {
        stem: frame.select(
            pl.concat_str([pl.col(c).cast(pl.String).fill_null("<null>") for c in cols], separator="|")
        )
        .to_series()
        .to_numpy()[order]
        for stem, cols in KEYS.items()
    }
    t = times[order]
    widths = {"": round(config.window_s * 1e6), "_slow": round(config.slow_window_s * 1e6)}
    n = frame.height
    out = {name: np.zeros(n, dtype=np.int64) for name in COUNTER_COLUMNS}
    for i in range(n):
        for stem, key in keys.items():
            same = key[: i + 1] == key[i]
            for suffix, width in widths.items():
                out[stem + suffix][order[i]] = int(np.sum(same & (t[: i + 1] > t[i] - width)))
            start = max(0, i - config.connections + 1)
            out[stem + "_conn"][order[i]] = int(np.sum(same[start:]))
    return pl.DataFrame(out)


def random_flows(n: int, seed: int, span_s: float = 300.0, resolution_us: int = 1_000_000) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    steps = rng.integers(0, int(span_s * 1e6 / resolution_us), n) * resolution_us
    hosts = np.array([f"10.0.0.{i}" for i in range(12)] + ["2001:db8::1", "2001:db8::2"])
    src = hosts[rng.integers(0, len(hosts), n)].astype(object)
    src[rng.random(n) < 0.03] = None
    return pl.DataFrame(
        {
            "time": pl.Series((np.datetime64("2020-12-03T00:00:00", "us") + steps).astype("datetime64[us]")),
            "src": src,
            "dst": hosts[rng.integers(0, len(hosts), n)],
            "proto": np.array(["tcp", "udp", "icmp"])[rng.integers(0, 3, n)],
            "dpt": rng.choice([22, 53, 80, 443, 8080], n),
        }
    ).with_columns(pl.col("time").dt.replace_time_zone("UTC"))


# seconds, src, dst, proto, dpt
ROWS = (
    (0.0, "A", "X", "tcp", 80),
    (1.0, "A", "X", "tcp", 80),
    (1.5, "B", "X", "tcp", 443),
    (2.0, "A", "Y", "tcp", 80),  # exactly 2 s after the first flow: that one is out of the 2 s window
    (30.0, "A", "X", "udp", 80),  # another service (proto differs)
    (61.5, "A", "X", "tcp", 80),  # 61.5 s: flows at 0, 1 and 1.5 are out of the 60 s window
)


class TestKnownCounts:
    def test_time_windows(self) -> None:
        out = traffic_counters(flows(ROWS))
        assert out["cnt_src"].to_list() == [1, 2, 1, 2, 1, 1]
        assert out["cnt_dst"].to_list() == [1, 2, 3, 1, 1, 1]
        assert out["cnt_serv_src"].to_list() == [1, 2, 1, 2, 1, 1]
        assert out["cnt_serv_dst"].to_list() == [1, 2, 1, 1, 1, 1]
        assert out["cnt_src_slow"].to_list() == [1, 2, 1, 3, 4, 3]
        assert out["cnt_dst_slow"].to_list() == [1, 2, 3, 1, 4, 2]
        assert out["cnt_serv_src_slow"].to_list() == [1, 2, 1, 3, 1, 2]
        assert out["cnt_serv_dst_slow"].to_list() == [1, 2, 1, 1, 1, 1]

    def test_connection_window_counts_the_last_flows_of_all_traffic(self) -> None:
        out = traffic_counters(flows(ROWS), CounterConfig(connections=3))
        # the last 3 flows (itself included): row 5 sees rows 3, 4, 5
        assert out["cnt_src_conn"].to_list() == [1, 2, 1, 2, 2, 3]
        assert out["cnt_dst_conn"].to_list() == [1, 2, 3, 1, 2, 2]
        assert out["cnt_serv_src_conn"].to_list() == [1, 2, 1, 2, 1, 2]
        assert out["cnt_serv_dst_conn"].to_list() == [1, 2, 1, 1, 1, 1]

    def test_window_widths_come_from_the_config(self) -> None:
        out = traffic_counters(flows(ROWS), CounterConfig(window_s=2.5, slow_window_s=30.0))
        assert out["cnt_src"].to_list() == [1, 2, 1, 3, 1, 1]
        # at 30 s the window (0, 30] leaves out the flow at 0; at 61.5 s, (31.5, 61.5] holds only itself
        assert out["cnt_src_slow"].to_list() == [1, 2, 1, 3, 3, 1]

    def test_every_count_includes_the_flow_itself(self) -> None:
        out = traffic_counters(flows(ROWS))
        assert out.select(pl.min_horizontal(pl.all()).min()).item() == 1
        assert out.columns == list(COUNTER_COLUMNS)
        assert all(dtype == pl.Int64 for dtype in out.dtypes)


def test_ties_in_time_count_in_input_order() -> None:
    frame = flows([(5.0, "A", "X", "tcp", 80)] * 3 + [(5.0, "B", "X", "tcp", 80)])
    out = traffic_counters(frame)
    assert out["cnt_src"].to_list() == [1, 2, 3, 1]
    assert out["cnt_dst"].to_list() == [1, 2, 3, 4]
    assert out["cnt_dst_conn"].to_list() == [1, 2, 3, 4]


def test_unsorted_input_keeps_its_row_order() -> None:
    frame = flows(ROWS)
    permutation = [4, 0, 5, 2, 3, 1]
    shuffled = frame[permutation]
    expected = traffic_counters(frame)[permutation]
    assert traffic_counters(shuffled).equals(expected)
    assert traffic_counters(shuffled)["cnt_src_slow"].to_list() == [4, 1, 3, 1, 3, 2]


def test_missing_key_values_are_a_key_of_their_own() -> None:
    frame = flows([(0.0, None, "X", "tcp", 80), (1.0, None, "Y", "tcp", 80), (1.5, "A", "X", "tcp", 80)])
    out = traffic_counters(frame)
    assert out["cnt_src"].to_list() == [1, 2, 1]
    assert out["cnt_dst"].to_list() == [1, 1, 2]


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_brute_force_on_random_flows(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # a small search block exercises the blocked binary search on a small frame
    monkeypatch.setattr(counters, "_SEARCH_BLOCK", 64)
    frame = random_flows(2000, seed)
    config = CounterConfig(window_s=2.0, slow_window_s=20.0, connections=25)
    assert traffic_counters(frame, config).equals(brute_force(frame, config))


@pytest.mark.parametrize("pack_bits", [62, 40])
def test_matches_brute_force_with_microsecond_times_over_centuries(
    pack_bits: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # times over ~600 years at microsecond resolution do not fit beside the key in one integer: the
    # time windows are then counted by position; a narrower budget also forces dense key codes
    monkeypatch.setattr(counters, "_SEARCH_BLOCK", 64)
    monkeypatch.setattr(counters, "_PACK_BITS", pack_bits)
    caplog.set_level("DEBUG", logger="nadkit.features.counters")
    rng = np.random.default_rng(5)
    n = 1500
    frame = random_flows(n, 7, span_s=2e10, resolution_us=1).with_columns(
        dst=pl.Series([f"172.16.{i % 200}.{i % 7}" for i in rng.integers(0, 5000, n)]),
        dpt=pl.Series(rng.integers(0, 65536, n)),
    )
    config = CounterConfig(window_s=3e8, slow_window_s=3e9, connections=40)
    assert traffic_counters(frame, config).equals(brute_force(frame, config))
    assert "counting time windows by position" in caplog.text


def test_large_frames_agree_sorted_unsorted_and_without_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    # 60k rows: above the size where the four keys run in threads
    frame = random_flows(60_000, 3, span_s=3600.0)
    by_time = frame.with_row_index("row").sort("time", maintain_order=True)
    in_order = traffic_counters(by_time.drop("row"))
    shuffled = traffic_counters(frame)
    assert shuffled.equals(in_order.with_columns(by_time["row"]).sort("row").drop("row"))
    monkeypatch.setattr(counters.os, "cpu_count", lambda: 1)
    assert traffic_counters(frame).equals(shuffled)
    # 14 hosts, an hour: the 60 s window of a host holds about 60 * 60000 / 3600 / 14 flows
    assert 50 < shuffled["cnt_src_slow"].mean() < 90


def test_add_replaces_existing_counter_columns() -> None:
    frame = flows(ROWS).with_columns(pl.lit(99).alias("cnt_src"), pl.lit(1.5).alias("other"))
    out = add_traffic_counters(frame)
    assert out.columns == [*frame.columns[:5], "other", *COUNTER_COLUMNS]
    assert out["cnt_src"].to_list() == [1, 2, 1, 2, 1, 1]


def test_empty_frame_and_missing_columns() -> None:
    empty = flows([])
    out = traffic_counters(empty)
    assert out.height == 0 and out.columns == list(COUNTER_COLUMNS)
    for column in REQUIRED:
        with pytest.raises(KeyError, match=column):
            traffic_counters(flows(ROWS).drop(column))


def test_config_rejects_empty_windows() -> None:
    with pytest.raises(ValueError, match="positive"):
        CounterConfig(window_s=0)
    with pytest.raises(ValueError, match="at least 1"):
        CounterConfig(connections=0)


@pytest.mark.parametrize(
    "windows", [("fast",), ("slow",), ("connections",), ("fast", "connections"), ("slow", "connections"), ()]
)
def test_named_windows_give_the_same_values_as_all_twelve(
    windows: tuple[str, ...], caplog: pytest.LogCaptureFixture
) -> None:
    frame = random_flows(3000, 5, span_s=600.0)
    whole = traffic_counters(frame)
    some = traffic_counters(frame, windows=windows)
    assert some.columns == list(window_columns(windows))
    assert some.height == (frame.height if windows else 0)  # a frame without columns has no rows
    assert add_traffic_counters(frame, windows=windows).columns == [*frame.columns, *some.columns]
    assert some.equals(whole.select(some.columns))
    # the search by position (times over centuries at microsecond resolution do not fit beside the
    # keys in one integer) leaves the same windows out
    caplog.set_level("DEBUG", logger="nadkit.features.counters")
    wide = random_flows(1500, 7, span_s=2e10, resolution_us=1)
    config = CounterConfig(window_s=3e8, slow_window_s=3e9, connections=40)
    expected = traffic_counters(wide, config).select(some.columns)
    caplog.clear()
    assert traffic_counters(wide, config, windows).equals(expected)
    assert ("counting time windows by position" in caplog.text) == bool({"fast", "slow"} & set(windows))


def test_the_time_windows_a_count_looks_back_on() -> None:
    config = CounterConfig(window_s=2.0, slow_window_s=60.0, connections=100)
    assert config.spans_s(("fast", "slow", "connections")) == {"fast": 2.0, "slow": 60.0}
    assert config.spans_s(("slow", "connections")) == {"slow": 60.0}
    assert config.spans_s(("connections",)) == {}
