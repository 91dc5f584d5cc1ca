"""Per-flow groups: vocabularies with an others bucket, zero flags, log transforms, ratios and
differences, and the pass-through of a source's own numeric columns."""

from __future__ import annotations

import logging
import math

import polars as pl
import pytest

from nadkit.features.base import FeatureGroup
from nadkit.features.flow import (
    DERIVED,
    ENUM_MIN_VALUES,
    CategoryGroup,
    LogGroup,
    RatioGroup,
    RawNumericGroup,
    SegmentGroup,
    ZeroFlagGroup,
)


def fitted(group: FeatureGroup, frame: pl.DataFrame) -> pl.DataFrame:
    return group.apply(frame, group.fit(frame))


class TestCategories:
    def frame(self) -> pl.DataFrame:
        # tcp 6, udp 3, icmp 1 (rare), the source's own "others" value 2, one missing value
        proto = ["tcp"] * 6 + ["udp"] * 3 + ["icmp"] + ["others"] * 2 + [None]
        return pl.DataFrame({"proto": proto})

    def test_vocabulary_keeps_values_above_the_minimum_count(self) -> None:
        group = CategoryGroup(("proto",), min_share=0.0, min_count=2)
        state = group.fit(self.frame())
        assert state == {"vocabularies": {"proto": ["tcp", "udp"]}}
        out = group.apply(self.frame(), state)
        assert out.columns == ["proto=tcp", "proto=udp", "proto=others"]
        assert out["proto=tcp"].sum() == 6
        assert out["proto=udp"].sum() == 3
        # rare icmp, the literal "others" and the missing value all land in the bucket
        assert out["proto=others"].sum() == 4
        assert (out.sum_horizontal() == 1.0).all()

    def test_minimum_share_and_maximum_size(self) -> None:
        frame = self.frame()
        by_share = CategoryGroup(("proto",), min_share=0.3, min_count=1).fit(frame)
        assert by_share["vocabularies"]["proto"] == ["tcp"]  # 3/13 < 0.3 <= 6/13
        capped = CategoryGroup(("proto",), min_share=0.0, min_count=1, max_values=2).fit(frame)
        assert capped["vocabularies"]["proto"] == ["tcp", "udp"]  # the two most frequent

    def test_unseen_values_go_to_others(self) -> None:
        group = CategoryGroup(("proto", "app"), min_share=0.0, min_count=1)
        state = group.fit(pl.DataFrame({"proto": ["tcp", "udp"], "app": ["http", "dns"]}))
        out = group.apply(pl.DataFrame({"proto": ["gre", "tcp"], "app": ["http", "quic"]}), state)
        assert out.columns == ["proto=tcp", "proto=udp", "proto=others", "app=dns", "app=http", "app=others"]
        assert out.row(0) == (0.0, 0.0, 1.0, 0.0, 1.0, 0.0)
        assert out.row(1) == (1.0, 0.0, 0.0, 0.0, 0.0, 1.0)

    def test_long_vocabulary_gives_the_same_one_hot_columns(self) -> None:
        # a vocabulary of ENUM_MIN_VALUES or more values is matched through an Enum code
        values = [f"app{i:02d}" for i in range(ENUM_MIN_VALUES + 3)]
        train = pl.DataFrame({"app": values * 3})
        new = pl.DataFrame({"app": [values[4], "unseen", None, "others", values[-1]]})
        long = CategoryGroup(("app",), min_share=0.0, min_count=1)
        state = long.fit(train)
        assert state["vocabularies"]["app"] == values
        out = long.apply(new, state)
        assert out.columns == [f"app={v}" for v in values] + ["app=others"]
        assert out["app=app04"].to_list() == [True, False, False, False, False]
        assert out[f"app={values[-1]}"].to_list() == [False, False, False, False, True]
        assert out["app=others"].to_list() == [False, True, True, True, False]
        assert (out.select(pl.sum_horizontal(pl.all())).to_series() == 1).all()
        # the same as value-by-value matching
        short = CategoryGroup(("app",), min_share=0.0, min_count=1)
        parts = [{"vocabularies": {"app": values[i : i + 4]}} for i in range(0, len(values), 4)]
        merged = pl.concat([short.apply(new, part).drop("app=others") for part in parts], how="horizontal")
        assert merged.equals(out.drop("app=others"))

    def test_absent_column_is_left_out(self) -> None:
        group = CategoryGroup(("proto", "app"))
        state = group.fit(pl.DataFrame({"proto": ["tcp"] * 10}))
        assert list(state["vocabularies"]) == ["proto"]

    def test_connection_states_are_encoded_unless_features_cover_them(self) -> None:
        zeek = pl.DataFrame({"proto": ["tcp"] * 10, "conn_state": ["SF"] * 5 + ["S0"] * 5})
        assert CategoryGroup().fit(zeek)["vocabularies"]["conn_state"] == ["S0", "SF"]
        argus = pl.DataFrame({"state": ["CON"] * 5 + ["S_"] * 5, "dir": ["<->"] * 5 + ["->"] * 5})
        assert CategoryGroup().fit(argus)["vocabularies"] == {"state": ["CON", "S_"], "dir": ["->", "<->"]}
        # NSL-KDD's error rates and UNSW-NB15's ct_state_ttl are computed from the state already
        kdd = pl.DataFrame({"flag": ["SF"] * 10, "serror_rate": [0.0] * 10})
        assert "flag" not in CategoryGroup().fit(kdd)["vocabularies"]
        unsw = pl.DataFrame({"state": ["FIN"] * 10, "ct_state_ttl": [0] * 10})
        assert "state" not in CategoryGroup().fit(unsw)["vocabularies"]

    def test_invalid_settings_are_rejected(self) -> None:
        with pytest.raises(ValueError, match="min_share"):
            CategoryGroup(min_share=1.5)


def test_zero_flags() -> None:
    frame = pl.DataFrame(
        {
            "duration": [0.0, 0.5, 0.0],
            "in_bytes": [0, 10, 3],
            "out_bytes": [5, 0, 3],
            "cnt_serv_src": [0, 1, 2],
            "cnt_serv_dst_slow": [4, 0, 0],
            "cnt_src": [0, 0, 0],  # not a service counter: no flag
        }
    )
    out = fitted(ZeroFlagGroup(), frame)
    assert out.columns == [
        "duration_zero",
        "in_bytes_zero",
        "out_bytes_zero",
        "cnt_serv_src_zero",
        "cnt_serv_dst_slow_zero",
    ]
    assert out["duration_zero"].to_list() == [1.0, 0.0, 1.0]
    assert out["in_bytes_zero"].to_list() == [1.0, 0.0, 0.0]
    assert out["out_bytes_zero"].to_list() == [0.0, 1.0, 0.0]
    assert out["cnt_serv_src_zero"].to_list() == [1.0, 0.0, 0.0]
    assert out["cnt_serv_dst_slow_zero"].to_list() == [0.0, 1.0, 1.0]


def test_log1p_values() -> None:
    frame = pl.DataFrame(
        {
            "duration": [0.0, math.e - 1, -3.0],
            "out_bytes": [0, 99, 9],
            "in_pkts": [1, 0, None],
            "cnt_dst": [3, 0, 1],
        }
    )
    out = fitted(LogGroup(), frame)
    assert out.columns == ["log_duration", "log_out_bytes", "log_in_pkts", "log_cnt_dst"]
    assert out["log_duration"].to_list() == pytest.approx([0.0, 1.0, 0.0])  # a negative counts as 0
    assert out["log_out_bytes"].to_list() == pytest.approx([0.0, math.log(100), math.log(10)])
    assert out["log_in_pkts"].to_list()[:2] == pytest.approx([math.log(2), 0.0])
    assert out["log_in_pkts"][2] is None  # missing stays missing until scaling
    assert out["log_cnt_dst"].to_list() == pytest.approx([math.log(4), 0.0, math.log(2)])


def test_ratios_and_differences() -> None:
    frame = pl.DataFrame(
        {
            "duration": [2.0, 0.0],
            "out_bytes": [300, 1000],
            "in_bytes": [100, 0],
            "out_pkts": [3, 0],
            "in_pkts": [1, 0],
            "cnt_src": [10, 0],
            "cnt_dst": [4, 2],
            "cnt_serv_src": [5, 0],
            "cnt_src_slow": [25, 1],
        }
    )
    out = fitted(RatioGroup(), frame).row(0, named=True)
    second = fitted(RatioGroup(), frame).row(1, named=True)
    assert out["in_bytes_share"] == pytest.approx(0.25)
    assert out["log_out_bytes_minus_log_in_bytes"] == pytest.approx(math.log(301) - math.log(101))
    assert out["in_pkts_share"] == pytest.approx(0.25)
    assert out["out_bytes_per_out_pkts"] == pytest.approx(100.0)
    assert out["in_bytes_per_in_pkts"] == pytest.approx(100.0)
    assert out["log_bytes_per_s"] == pytest.approx(math.log1p(400 / 2))
    assert out["log_pkts_per_s"] == pytest.approx(math.log1p(4 / 2))
    assert out["cnt_serv_src_per_cnt_src"] == pytest.approx(0.5)
    assert out["cnt_src_minus_cnt_serv_src"] == 5.0
    assert out["cnt_src_minus_cnt_dst"] == 6.0
    assert out["log_cnt_src_minus_log_cnt_dst"] == pytest.approx(math.log(11) - math.log(5))
    assert out["cnt_src_slow_minus_cnt_src"] == 15.0
    assert out["cnt_src_per_cnt_src_slow"] == pytest.approx(0.4)
    # zero denominators stay finite: a / max(b, 1), and a zero-length flow divides by 1 ms
    assert second["out_bytes_per_out_pkts"] == pytest.approx(1000.0)
    assert second["in_bytes_share"] == 0.0
    assert second["cnt_serv_src_per_cnt_src"] == 0.0
    assert second["log_bytes_per_s"] == pytest.approx(math.log1p(1000 / 1e-3))
    # only features whose inputs are all present: no cnt_dst_slow, cnt_serv_dst, ... here
    names = fitted(RatioGroup(), frame).columns
    assert "cnt_serv_dst_per_cnt_dst" not in names
    assert "cnt_dst_slow_minus_cnt_dst" not in names
    expected = [d.name for d in DERIVED if set(d.inputs) <= set(frame.columns)]
    assert names == expected


def test_raw_numeric_passes_source_columns_through(caplog: pytest.LogCaptureFixture) -> None:
    frame = pl.DataFrame(
        {
            "time": [1, 2],
            "src": ["10.0.0.1", "10.0.0.2"],
            "spt": [1, 2],
            "dpt": [3, 4],
            "duration": [0.1, 0.2],
            "out_bytes": [1, 2],
            "proto": ["tcp", "udp"],
            "label": ["normal", "dos"],
            "sttl": [254, 62],
            "flow_iat_mean": [1.5, float("inf")],
            "is_ftp_login": [True, False],
            "cnt_src": [3, 4],
            "seg_flows": [1, 2],
            "id": [1, 2],
            "_hidden": [0, 0],
            "history": ["ShADadFf", "Dd"],
        }
    )
    group = RawNumericGroup(exclude=("id",))
    with caplog.at_level(logging.INFO, logger="nadkit.features.flow"):
        state = group.fit(frame)
    assert state["columns"] == ["sttl", "flow_iat_mean", "is_ftp_login", "cnt_src"]
    assert "history" in caplog.text  # the unused text column is named
    out = group.apply(frame, state)
    assert out.columns == ["sttl", "flow_iat_mean", "is_ftp_login", "cnt_src"]
    assert out.dtypes == [pl.Float64] * 4
    assert out["is_ftp_login"].to_list() == [1.0, 0.0]
    assert out["flow_iat_mean"][1] == float("inf")  # scaling clips it later


def test_segment_group_passes_segment_columns() -> None:
    frame = pl.DataFrame({"seg_flows": [3, 1], "seg_unique_dpt": [2, 1], "dpt": [80, 443]})
    out = fitted(SegmentGroup(), frame)
    assert out.columns == ["seg_flows", "seg_unique_dpt"]
    assert out["seg_unique_dpt"].to_list() == [2.0, 1.0]
