"""Segment features: the article's example, known values on hand-made flows, subnets of IPv4 and
IPv6 destinations, row order, missing columns, and a brute-force comparison on random flows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from nadkit.errors import ConfigError, SchemaError
from nadkit.features.segments import (
    NEEDS,
    REQUIRED,
    SEGMENT_COLUMNS,
    SegmentConfig,
    add_segment_features,
    segment_features,
    segment_features_and_ends,
    segment_ids,
    subnet,
    subnet_codes,
)

T0 = datetime(2020, 12, 3, 8, 0, tzinfo=UTC)
#: the segment columns of flows without the names they asked for, their packets and their bytes
WITHOUT_NAMES = [c for c in SEGMENT_COLUMNS if NEEDS.get(c) not in ("server_name", "in_pkts", "out_bytes")]


def at(seconds: list[float]) -> list[datetime]:
    return [T0 + timedelta(seconds=s) for s in seconds]


def groups_of(ids: list[int], values: list[float]) -> list[list[float]]:
    """Values grouped by segment id, segments in order of first appearance."""
    out: dict[int, list[float]] = {}
    for segment, value in zip(ids, values, strict=True):
        out.setdefault(segment, []).append(value)
    return list(out.values())


ARTICLE_TIMES = [1.0, 2.0, 3.0, 7.0, 8.0, 9.0, 10.0, 15.0]


def article_frame() -> pl.DataFrame:
    n = len(ARTICLE_TIMES)
    return pl.DataFrame(
        {
            "time": at(ARTICLE_TIMES),
            "src": ["10.0.0.1"] * n,
            "dst": [f"10.0.1.{i}" for i in range(n)],
        }
    )


class TestArticleExample:
    @pytest.mark.parametrize("gap_s", [1.0, 3.0, 3.99])
    def test_gaps_of_4_and_5_seconds_cut(self, gap_s: float) -> None:
        ids = segment_ids(article_frame(), SegmentConfig(gap_s=gap_s)).to_list()
        assert groups_of(ids, ARTICLE_TIMES) == [[1, 2, 3], [7, 8, 9, 10], [15]]
        assert ids == [0, 0, 0, 1, 1, 1, 1, 2]

    def test_a_gap_equal_to_gap_s_does_not_cut(self) -> None:
        # 3 -> 7 is a 4 s gap: not longer than 4 s; 10 -> 15 is 5 s
        ids = segment_ids(article_frame(), SegmentConfig(gap_s=4.0)).to_list()
        assert groups_of(ids, ARTICLE_TIMES) == [[1, 2, 3, 7, 8, 9, 10], [15]]
        # with 5 s no gap is longer: one segment
        assert segment_ids(article_frame(), SegmentConfig(gap_s=5.0)).n_unique() == 1

    def test_features_of_the_example(self) -> None:
        out = segment_features(article_frame(), SegmentConfig(gap_s=3.0))
        assert out.columns == ["seg_flows", "seg_span_s", "seg_unique_dst"]
        assert out["seg_flows"].to_list() == [3, 3, 3, 4, 4, 4, 4, 1]
        assert out["seg_span_s"].to_list() == [2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0, 0.0]
        assert out["seg_unique_dst"].to_list() == [3, 3, 3, 4, 4, 4, 4, 1]


def scan_frame() -> pl.DataFrame:
    """A sweep from one host over a /24 and ports, mixed with other traffic, rows not in time order."""
    rows = [
        # seconds, src, dst, spt, dpt, app
        (0, "10.0.0.5", "192.168.1.1", 40000, 22, "ssh"),
        (5, "10.0.0.5", "192.168.1.2", 40001, 22, "ssh"),
        (10, "10.0.0.5", "192.168.1.2", 40001, 23, "telnet"),
        (20, "10.0.0.5", "192.168.1.3", 40002, 80, "http"),
        (200, "10.0.0.5", "192.168.1.9", 40003, 80, "http"),  # after a 180 s pause: new segment
        (1, "10.0.0.5", "192.168.2.1", 40000, 22, "ssh"),  # another /24: another group
        (2, "10.0.0.6", "192.168.1.1", 50000, 443, "https"),  # another source
        (3, "10.0.0.6", "192.168.1.1", 50000, 443, None),
    ]
    order = [4, 0, 6, 2, 5, 1, 7, 3]
    rows = [rows[i] for i in order]
    return pl.DataFrame(
        {
            "time": at([r[0] for r in rows]),
            "src": [r[1] for r in rows],
            "dst": [r[2] for r in rows],
            "spt": [r[3] for r in rows],
            "dpt": [r[4] for r in rows],
            "app": [r[5] for r in rows],
        }
    )


def test_known_values_with_rows_in_any_order() -> None:
    frame = scan_frame()
    out = segment_features(frame)  # default: key (src, dst_subnet), gap 60 s
    assert out.columns == WITHOUT_NAMES
    by_time = frame.hstack(out).sort("time")
    assert by_time["seg_flows"].to_list() == [4, 1, 2, 2, 4, 4, 4, 1]
    assert by_time["seg_span_s"].to_list() == [20.0, 0.0, 1.0, 1.0, 20.0, 20.0, 20.0, 0.0]
    assert by_time["seg_unique_dst"].to_list() == [3, 1, 1, 1, 3, 3, 3, 1]
    assert by_time["seg_unique_spt"].to_list() == [3, 1, 1, 1, 3, 3, 3, 1]
    assert by_time["seg_unique_dpt"].to_list() == [3, 1, 1, 1, 3, 3, 3, 1]
    # a missing app counts as a value of its own
    assert by_time["seg_unique_app"].to_list() == [3, 1, 2, 2, 3, 3, 3, 1]
    # the row order of the input is kept: the first input row is the flow at 200 s
    assert out.row(0) == (1, 0.0, 1, 1, 1, 1)


def test_segment_ids_follow_first_appearance() -> None:
    frame = scan_frame()
    ids = segment_ids(frame)
    assert ids.name == "segment" and ids.dtype == pl.Int64
    # input rows: 200 s sweep tail, sweep start, 10.0.0.6, sweep, other /24, sweep, 10.0.0.6, sweep
    assert ids.to_list() == [0, 1, 2, 1, 3, 1, 2, 1]
    reversed_ids = segment_ids(frame.reverse()).to_list()
    assert groups_of(reversed_ids, list(range(8))) == [[0, 2, 4, 6], [1, 5], [3], [7]]
    assert reversed_ids[:4] == [0, 1, 0, 2]


def test_other_keys() -> None:
    frame = scan_frame()
    by_source = segment_ids(frame, SegmentConfig(key=("src",))).to_list()
    assert len(set(by_source)) == 3  # 10.0.0.5 until 20 s, 10.0.0.5 at 200 s, 10.0.0.6
    by_port = segment_features(frame, SegmentConfig(key=("src", "dpt"), gap_s=60.0))
    # (10.0.0.5, 22) at 0, 1, 5 s; (10.0.0.6, 443) at 2, 3 s; port 80 at 20 s and 200 s: two segments
    assert frame.hstack(by_port).sort("time")["seg_flows"].to_list() == [3, 3, 2, 2, 3, 1, 1, 1]
    assert SegmentConfig(key="src").key == ("src",)
    assert SegmentConfig(key=["src", "dst"]).needs() == ("time", "src", "dst")  # type: ignore[arg-type]
    assert SegmentConfig().needs() == ("time", "src", "dst")


def test_subnets_of_ipv4_and_ipv6() -> None:
    addresses = pl.Series(
        "dst",
        [
            "10.1.2.3",
            " 192.168.0.77 ",
            "2001:db8:0:1::a",
            "2001:0db8:0000:0001:0000:0000:0000:00b",
            "2001:db8:0:2::a",
            "::ffff:10.1.2.99",
            "fe80::1%eth0",
            "not-an-address",
            None,
        ],
    )
    assert subnet(addresses).to_list() == [
        "10.1.2.0/24",
        "192.168.0.0/24",
        "2001:db8:0:1::/64",
        "2001:db8:0:1::/64",
        "2001:db8:0:2::/64",
        "10.1.2.0/24",
        "fe80::/64",
        "not-an-address",
        None,
    ]
    codes, bound = subnet_codes(addresses)
    assert codes[0] == codes[5] and codes[2] == codes[3]
    assert len({codes[0], codes[1], codes[2], codes[4], codes[6], codes[7], codes[8]}) == 7
    assert codes.max() < bound


def test_ipv6_flows_group_by_the_64() -> None:
    frame = pl.DataFrame(
        {
            "time": at([0, 1, 2, 3]),
            "src": ["2001:db8::5"] * 4,
            "dst": ["2001:db8:0:1::a", "2001:db8:0:1::b", "2001:db8:0:1:0:0:0:a", "2001:db8:0:2::a"],
        }
    )
    out = segment_features(frame)
    assert out["seg_flows"].to_list() == [3, 3, 3, 1]
    # the two spellings of 2001:db8:0:1::a are the same text only after parsing: distinct as text
    assert out["seg_unique_dst"].to_list() == [3, 3, 3, 1]


def test_missing_columns() -> None:
    frame = scan_frame()
    out = segment_features(frame.drop("spt", "app"))
    assert out.columns == ["seg_flows", "seg_span_s", "seg_unique_dst", "seg_unique_dpt"]
    for column in REQUIRED:
        with pytest.raises(SchemaError, match=column):
            segment_features(frame.drop(column))
    with pytest.raises(SchemaError, match="dpt"):
        segment_ids(frame.drop("dpt"), SegmentConfig(key=("src", "dpt")))
    # an existing dst_subnet column is used as it is
    given = frame.with_columns(pl.lit("one").alias("dst_subnet"))
    assert segment_ids(given, SegmentConfig(key=("dst_subnet",))).n_unique() == 2  # the 180 s pause


def test_empty_frame_and_config_checks() -> None:
    empty = scan_frame().head(0)
    out = segment_features(empty)
    assert out.height == 0 and out.columns == WITHOUT_NAMES
    assert out.schema["seg_span_s"] == pl.Float64
    assert segment_ids(empty).len() == 0
    with pytest.raises(ConfigError):
        SegmentConfig(gap_s=-1)
    with pytest.raises(ConfigError):
        SegmentConfig(key=())


def test_add_replaces_existing_columns() -> None:
    frame = scan_frame().with_columns(pl.lit(0).alias("seg_flows"))
    out = add_segment_features(frame)
    assert out.columns == [*frame.columns[:-1], *WITHOUT_NAMES]
    assert out.sort("time")["seg_flows"].to_list() == [4, 1, 2, 2, 4, 4, 4, 1]


def test_null_keys_and_times() -> None:
    frame = pl.DataFrame(
        {
            "time": [T0, T0 + timedelta(seconds=1), None, None],
            "src": [None, None, "a", "a"],
            "dst": ["10.0.0.1", "10.0.0.2", None, None],
        },
        schema_overrides={"time": pl.Datetime("us", "UTC")},
    )
    out = segment_features(frame)
    assert out["seg_flows"].to_list() == [2, 2, 2, 2]
    assert out["seg_unique_dst"].to_list() == [2, 2, 1, 1]


def brute_force_segments(
    frame: pl.DataFrame, gap_s: float, max_span_s: float | None
) -> list[tuple[int, float, int, int]]:
    """(flows, span, distinct dst, distinct dpt) of each row's segment, one group at a time: a flow
    joins the segment before it when the gap is at most ``gap_s`` and both lie in one
    ``max_span_s`` window of the epoch."""

    def window(row: dict) -> float:
        return 0.0 if max_span_s is None else row["time"].timestamp() // max_span_s

    rows = frame.with_row_index("row").to_dicts()
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["src"], row["dst"].rsplit(".", 1)[0]), []).append(row)
    result: dict[int, tuple[int, float, int, int]] = {}
    for members in groups.values():
        members.sort(key=lambda r: (r["time"], r["row"]))
        segment = [members[0]]
        for previous, row in zip(members, [*members[1:], None], strict=True):
            if (
                row is not None
                and (row["time"] - previous["time"]).total_seconds() <= gap_s
                and window(row) == window(previous)
            ):
                segment.append(row)
                continue
            span = (segment[-1]["time"] - segment[0]["time"]).total_seconds()
            facts = (len(segment), span, len({r["dst"] for r in segment}), len({r["dpt"] for r in segment}))
            for member in segment:
                result[member["row"]] = facts
            if row is not None:
                segment = [row]
    return [result[i] for i in range(len(rows))]


def random_flows(seed: int, n: int, seconds: int, hosts: int, **columns: object) -> pl.DataFrame:
    """``n`` flows at random whole seconds of ``seconds`` from three sources to ``hosts`` addresses in
    each of four /24s, with ``columns`` added (each a function of the generator and ``n``)."""
    rng = np.random.default_rng(seed)
    subnets, addresses = rng.integers(0, 4, n), rng.integers(0, hosts, n)
    return pl.DataFrame(
        {
            "time": at(rng.integers(0, seconds, n).tolist()),
            "src": rng.choice(["10.0.0.1", "10.0.0.2", "10.0.0.3"], n),
            "dst": [f"192.168.{a}.{b}" for a, b in zip(subnets, addresses, strict=True)],
            **{name: make(rng, n) for name, make in columns.items()},  # type: ignore[operator]
        }
    )


@pytest.mark.parametrize("max_span_s", [None, 300.0, 45.0])
def test_matches_brute_force_on_random_flows(max_span_s: float | None) -> None:
    frame = random_flows(11, 1500, 3000, 6, dpt=lambda rng, n: rng.choice([22, 80, 443, 8080], n))
    config = SegmentConfig(gap_s=15.0, max_span_s=max_span_s)
    out = segment_features(frame, config)
    expected = brute_force_segments(frame, 15.0, max_span_s)
    got = list(
        zip(
            *(out[c].to_list() for c in ("seg_flows", "seg_span_s", "seg_unique_dst", "seg_unique_dpt")),
            strict=True,
        )
    )
    assert got == expected
    assert len(set(segment_ids(frame, config).to_list())) > 50
    if max_span_s is not None:
        assert max(span for _, span, _, _ in got) <= max_span_s


@pytest.mark.parametrize("max_span_s", [None, 45.0])
def test_each_rows_segment_end_is_its_latest_flow(max_span_s: float | None) -> None:
    frame = random_flows(5, 1200, 3000, 6, dpt=lambda rng, n: rng.choice([22, 80, 443], n))
    config = SegmentConfig(gap_s=15.0, max_span_s=max_span_s)
    features, ends = segment_features_and_ends(frame, config)
    assert features.equals(segment_features(frame, config))
    latest = (
        frame.with_columns(segment_ids(frame, config), pl.col("time").dt.epoch("us").alias("us"))
        .with_columns(pl.col("us").max().over("segment").alias("end"))["end"]
        .to_numpy()
    )
    np.testing.assert_array_equal(ends, latest)
    # the span is the end less the first flow of the segment, in seconds
    first = (ends - (features["seg_span_s"].to_numpy() * 1e6).round()).astype(np.int64)
    assert (first <= frame["time"].dt.epoch("us").to_numpy()).all()
    empty, none = segment_features_and_ends(frame.head(0), config)
    assert empty.height == 0 and len(none) == 0


def chatty_frame(seconds: int, every_s: float = 5.0, start: datetime = T0) -> pl.DataFrame:
    """One device reporting to one server every ``every_s`` seconds for ``seconds``: never a pause."""
    count = int(seconds / every_s)
    return pl.DataFrame(
        {
            "time": [start + timedelta(seconds=i * every_s) for i in range(count)],
            "src": ["10.0.0.9"] * count,
            "dst": ["192.168.7.1"] * count,
        }
    )


def test_a_host_that_never_pauses_is_cut_at_the_span_windows() -> None:
    # an hour of reports every 5 s: one segment without the limit, twelve 5-minute ones with it
    frame = chatty_frame(3600)
    unlimited = segment_features(frame, SegmentConfig(max_span_s=None))
    assert unlimited["seg_flows"].unique().to_list() == [720]
    assert unlimited["seg_span_s"].max() == 3595.0
    limited = segment_features(frame, SegmentConfig())
    assert SegmentConfig().max_span_s == 300.0
    assert limited["seg_flows"].unique().to_list() == [60]
    assert limited["seg_span_s"].unique().to_list() == [295.0]
    assert segment_ids(frame, SegmentConfig()).n_unique() == 12


def test_the_segment_features_do_not_grow_with_the_length_of_the_data() -> None:
    # ten minutes and a day of the same steady traffic give the same distribution of segment facts
    short = segment_features(chatty_frame(600), SegmentConfig())
    long = segment_features(chatty_frame(86_400), SegmentConfig())
    assert long["seg_flows"].max() == short["seg_flows"].max() == 60
    assert long["seg_span_s"].max() == short["seg_span_s"].max() == 295.0


def test_span_windows_are_aligned_to_the_epoch() -> None:
    # flows at 08:04:50, 08:04:55 and 08:05:00: the window of 08:05:00 starts a new segment, wherever
    # the data begins
    frame = chatty_frame(15, start=T0 + timedelta(seconds=290))
    assert segment_ids(frame, SegmentConfig()).to_list() == [0, 0, 1]
    assert segment_ids(frame, SegmentConfig(max_span_s=None)).to_list() == [0, 0, 0]
    assert segment_ids(frame, SegmentConfig(max_span_s=3600)).to_list() == [0, 0, 0]


def test_span_settings_are_checked() -> None:
    for bad in (0, -5.0):
        with pytest.raises(ConfigError, match="max_span_s"):
            SegmentConfig(max_span_s=bad)


def test_distinct_names_under_each_flows_domain() -> None:
    """``seg_domain_names``: the names of the flow's segment under its own domain (last two labels,
    case and a trailing dot ignored); 0 for a flow without a name."""
    from nadkit.features.segments import domain_of

    names = [
        "a1.t.tunnel.net",
        "b2.t.tunnel.net",
        "C3.T.Tunnel.net.",
        "a1.t.tunnel.net",  # asked again: not a new name
        "www.example.org",
        None,
        "",
        "a1.t.tunnel.net",  # another source
    ]
    frame = pl.DataFrame(
        {
            "time": at([0, 1, 2, 3, 4, 5, 6, 7]),
            "src": ["10.0.0.1"] * 7 + ["10.0.0.2"],
            "dst": ["10.0.0.53"] * 8,
            "server_name": names,
        }
    )
    out = segment_features(frame)
    assert out["seg_domain_names"].to_list() == [3, 3, 3, 3, 1, 0, 0, 1]
    assert domain_of(pl.Series(["R3.sn-4g5e.googlevideo.com.", "localhost", None])).to_list() == [
        "googlevideo.com",
        "localhost",
        None,
    ]
    # without names there is no such column; a later segment starts counting afresh
    assert "seg_domain_names" not in segment_features(frame.drop("server_name")).columns
    later = frame.with_columns(pl.Series("time", at([0, 1, 2, 500, 501, 502, 503, 504])))
    assert segment_features(later)["seg_domain_names"].to_list()[:4] == [3, 3, 3, 1]


def test_names_per_domain_match_brute_force_on_random_flows() -> None:
    rng = np.random.default_rng(5)
    n = 2000
    domains = ["a.net", "b.org", "c.com"]
    names = [
        None if rng.random() < 0.2 else f"h{rng.integers(0, 12)}.{domains[rng.integers(0, 3)]}"
        for _ in range(n)
    ]
    frame = pl.DataFrame(
        {
            "time": at(rng.integers(0, 2000, n).tolist()),
            "src": rng.choice(["10.0.0.1", "10.0.0.2"], n),
            "dst": rng.choice(["192.168.0.1", "192.168.1.1"], n),
            "server_name": names,
        }
    )
    config = SegmentConfig(gap_s=20.0)
    got = segment_features(frame, config)["seg_domain_names"].to_list()
    ids = segment_ids(frame, config).to_list()
    expected = []
    for i in range(n):
        if names[i] is None:
            expected.append(0)
            continue
        domain = names[i].split(".", 1)[1]
        same = {names[j] for j in range(n) if ids[j] == ids[i] and names[j] and names[j].endswith(domain)}
        expected.append(len(same))
    assert got == expected


def test_how_each_burst_went_unanswered_flows_and_the_spread_of_sizes() -> None:
    frame = scan_frame().with_columns(
        # by input row (the order of scan_frame's rows): packets back and bytes each way
        pl.Series("in_pkts", [3, 0, 5, None, 0, 0, 2, 1]),
        pl.Series("out_bytes", [100, 60, 500, 60, 60, 60, 1500, 60]),
        pl.Series("in_bytes", [200, 0, 4000, 0, 0, 0, 9000, 40]),
    )
    out = frame.hstack(segment_features(frame)).sort("time")
    # by time: 10.0.0.5 -> 192.168.1.0/24 at 0, 5, 10, 20 s (one segment), the flow at 200 s alone,
    # 10.0.0.5 -> 192.168.2.1 alone, and 10.0.0.6's two flows
    rows = {(r["src"], r["dst"], r["time"]): r for r in out.iter_rows(named=True)}
    first = rows[("10.0.0.5", "192.168.1.1", T0)]
    # its four flows: 0 packets back (5 s), none (a null: 10 s), 0 (20 s), 0 (0 s)
    members = out.filter((pl.col("src") == "10.0.0.5") & (pl.col("seg_flows") == 4))
    back = members["in_pkts"].fill_null(0).to_numpy()
    assert first["seg_unanswered"] == pytest.approx(float(np.mean(back <= 0)))
    sizes = (members["out_bytes"] + members["in_bytes"]).to_numpy().astype(float)
    assert first["seg_size_spread"] == pytest.approx(float(np.std(sizes) / np.mean(sizes)))
    assert set(members["seg_unanswered"].to_list()) == {first["seg_unanswered"]}
    # a segment of one flow: no spread; answered or not as that flow was
    alone = out.filter(pl.col("seg_flows") == 1)
    assert alone["seg_size_spread"].to_list() == [0.0] * alone.height
    assert alone["seg_unanswered"].to_list() == [float(v <= 0) for v in alone["in_pkts"].fill_null(0)]
    # the same exchange repeated has no spread; without in_bytes the sizes are the bytes sent
    repeated = frame.with_columns(pl.lit(60).alias("out_bytes")).drop("in_bytes")
    assert set(segment_features(repeated)["seg_size_spread"].to_list()) == {0.0}
    assert "seg_unanswered" not in segment_features(frame.drop("in_pkts")).columns


def test_unanswered_and_spread_match_a_group_by_on_random_flows() -> None:
    frame = random_flows(
        5,
        2000,
        4000,
        9,
        in_pkts=lambda rng, n: rng.choice([0, 0, 1, 4, 30], n),
        out_bytes=lambda rng, n: rng.integers(40, 5000, n),
        in_bytes=lambda rng, n: rng.integers(0, 90000, n),
    )
    config = SegmentConfig(gap_s=20.0)
    got = segment_features(frame, config)
    size = pl.col("out_bytes").cast(pl.Float64) + pl.col("in_bytes")
    expected = frame.with_columns(segment_ids(frame, config)).with_columns(
        (pl.col("in_pkts") <= 0).cast(pl.Float64).mean().over("segment").alias("unanswered"),
        (size.std(ddof=0) / size.mean()).over("segment").alias("spread"),
    )
    assert got["seg_unanswered"].to_list() == pytest.approx(expected["unanswered"].to_list())
    assert got["seg_size_spread"].to_list() == pytest.approx(expected["spread"].to_list(), abs=1e-9)
    assert got["seg_flows"].max() > 5
