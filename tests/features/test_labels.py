"""Feature labels: every feature the pipeline makes reads in words, on simulated flows and on a
capture; unknown names fall back to a cleaned-up form; typical ranges read as text."""

from __future__ import annotations

import re

import polars as pl
import pytest

from nadkit.features.labels import clean_name, feature_label
from nadkit.features.pipeline import FeaturePipeline
from nadkit.features.ranges import FeatureRange, number_text, number_text_expr, typical_ranges
from nadkit.simulate import SimulationConfig, simulate
from tests.conftest import shared_file

#: a label still in code: an identifier with an underscore, or a ``name=value`` pair
CODE = re.compile(r"\b[a-z0-9]+_[a-z0-9_]+\b|=")


def _readable(name: str) -> bool:
    label = feature_label(name)
    return label != name and " " in label and CODE.search(label) is None


@pytest.fixture(scope="module")
def simulated() -> pl.DataFrame:
    flows = simulate(SimulationConfig(days=1, flows_per_day=3000, seed=5)).drop("day")
    # both ways: with the source's cnt_* columns and with the counters computed
    return flows


def test_every_feature_of_simulated_flows_has_a_label(simulated: pl.DataFrame) -> None:
    names = set(FeaturePipeline().fit(simulated).feature_names_)
    computed = simulated.drop([c for c in simulated.columns if c.startswith("cnt_")])
    names |= set(FeaturePipeline().fit(computed).feature_names_)
    unreadable = sorted(n for n in names if not _readable(n))
    assert not unreadable, [(n, feature_label(n)) for n in unreadable]
    coverage = sum(_readable(n) for n in names) / len(names)
    assert coverage == 1.0 and len(names) > 100


def test_every_feature_of_a_capture_has_a_label() -> None:
    pytest.importorskip("nfstream")
    from nadkit.sources import load_flows

    frame, _ = load_flows(shared_file("pcaps/benign/ftp.pcap"))
    names = FeaturePipeline().fit(frame).feature_names_
    unreadable = [n for n in names if not _readable(n)]
    assert not unreadable, [(n, feature_label(n)) for n in unreadable]


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("out_bytes", "bytes sent"),
        ("log_in_bytes", "bytes received"),
        ("in_bytes_zero", "no bytes received"),
        ("seg_unique_dpt", "distinct destination ports in this burst from the source to the subnet"),
        ("cnt_src_slow", "flows from this source in 60 s"),
        ("cnt_dst_minus_cnt_serv_dst", "flows to this destination on other services in 2 s"),
        ("proto=tcp", "protocol is tcp"),
        ("app=others", "application is another (rare or unseen) one"),
        ("src_one_bits", "bits set in the source address"),
        ("src2dst_mean_ps", "mean packet size sent (bytes)"),
        ("dst2src_rst_packets", "RST packets received"),
        ("bidirectional_max_piat_ms", "longest gap between packets (ms)"),
        ("unique_dpt", "distinct destination ports in the time bucket"),
        ("proto_share=udp", "share of udp flows in the time bucket"),
        ("time_of_day_sin", "time of day"),
        ("conn_state=S0", "connection state is S0 (attempt, no reply)"),
        ("conn_state=RSTR", "connection state is RSTR (established, the responder reset)"),
        ("state=INT", "connection state is INT (initial, one side only)"),
        ("state=SPA_FSRPA", "connection state is SPA_FSRPA (TCP flags sent SPA, answered FSRPA)"),
        ("state=S_", "connection state is S_ (TCP flags sent S, answered none)"),
        ("state=others", "connection state is another (rare or unseen) one"),
        ("dir=<->", "direction is <-> (both ways)"),
        ("flow_state=closed", "flow state is closed"),
    ],
)
def test_known_families(name: str, label: str) -> None:
    assert feature_label(name) == label


def test_unknown_names_are_cleaned_up() -> None:
    assert feature_label("num_failed_logins") == "number of failed logins"
    assert feature_label("dst_host_srv_count") == "destination host service count"
    assert clean_name("Flow_IAT_Mean") == "Flow IAT Mean"
    assert feature_label("sbytes_per_spkts") == "bytes sent per packets sent"


def test_numbers_and_ranges_read_as_text() -> None:
    assert [number_text(v) for v in (912.0, 12.346, 0.00423, 3.0000001, -2.5)] == [
        "912",
        "12.35",
        "0.0042",
        "3",
        "-2.5",
    ]
    column = pl.Series([912.0, 12.346, 0.00423, 3.0000001, None])
    texts = pl.select(number_text_expr(pl.lit(column)))[:, 0].to_list()
    assert texts == ["912", "12.35", "0.0042", "3", None]
    assert FeatureRange("raw", 1.0, 4.0).text() == "1-4"
    assert FeatureRange("feature", -3.0, 2.0).text() == "-3 to 2"
    assert FeatureRange("share", share=0.005).text() == "yes in 0.5% of flows"
    assert FeatureRange.from_dict(FeatureRange("raw", 1.0, 4.0, column="x").to_dict()).column == "x"


def test_typical_ranges_follow_the_raw_column_where_there_is_one(simulated: pl.DataFrame) -> None:
    normal = simulated.filter(pl.col("label") == "normal")
    pipeline = FeaturePipeline().fit(normal)
    ranges = typical_ranges(pipeline, normal)
    assert set(ranges) == set(pipeline.feature_names_)
    log_bytes = ranges["log_out_bytes"]
    assert log_bytes.kind == "raw" and log_bytes.column == "out_bytes"
    expected = normal["out_bytes"].cast(pl.Float64).quantile(0.95)
    assert log_bytes.high == pytest.approx(expected)
    assert ranges["proto=tcp"].kind == "share" and 0 < (ranges["proto=tcp"].share or 0) < 1
    assert ranges["in_bytes_share"].kind == "feature"  # two raw columns: the feature's own value
    assert ranges["src_one_bits"].kind == "feature"  # an address: the feature's own value
