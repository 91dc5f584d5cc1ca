"""TCP flag features: the eight flags from NetFlow's number and from nfdump's text."""

from __future__ import annotations

import polars as pl
import pytest

from nadkit.features.pipeline import FeatureConfig, FeaturePipeline
from nadkit.features.tcp import FLAGS, TcpFlagGroup

NAMES = [f"tcp_{name}" for name in FLAGS]


def _seen(row: dict[str, bool]) -> set[str]:
    return {name.removeprefix("tcp_") for name, value in row.items() if value}


@pytest.mark.parametrize(
    ("number", "text", "expected"),
    [
        (2, "......S.", {"syn"}),
        (18, "...A..S.", {"syn", "ack"}),
        (27, "...AP.SF", {"fin", "syn", "psh", "ack"}),
        (4, ".....R..", {"rst"}),
        (255, "CEUAPRSF", set(FLAGS)),
        (0, "........", set()),
        (None, None, set()),
    ],
)
def test_the_number_and_the_text_give_the_same_flags(
    number: int | None, text: str | None, expected: set[str]
) -> None:
    group = TcpFlagGroup()
    as_number = pl.DataFrame({"tcp_flags": [number]}, schema={"tcp_flags": pl.Int64})
    as_text = pl.DataFrame({"tcp_flags": [text]}, schema={"tcp_flags": pl.String})
    from_number = group.apply(as_number, group.fit(as_number))
    from_text = group.apply(as_text, group.fit(as_text))
    assert from_number.columns == NAMES == from_text.columns
    assert _seen(from_number.row(0, named=True)) == expected == _seen(from_text.row(0, named=True))
    assert all(dtype == pl.Boolean for dtype in from_number.dtypes)


def test_nfdump_text_of_six_letters_reads_the_same() -> None:
    group = TcpFlagGroup()
    frame = pl.DataFrame({"tcp_flags": ["UAPRSF", ".A..S.", "......"]})
    out = group.apply(frame, group.fit(frame))
    assert [_seen(row) for row in out.iter_rows(named=True)] == [
        {"urg", "ack", "psh", "rst", "syn", "fin"},
        {"ack", "syn"},
        set(),
    ]


def test_the_pipeline_turns_the_field_into_flags_instead_of_passing_the_number() -> None:
    frame = pl.DataFrame(
        {
            "proto": ["tcp", "tcp", "udp", "tcp"] * 5,
            "out_bytes": [60, 400, 80, 40] * 5,
            "tcp_flags": [2, 27, None, 20] * 5,
        }
    )
    fitted = FeaturePipeline(FeatureConfig(vocabulary_min_count=1)).fit(frame)
    assert "tcp_flags" not in fitted.feature_names_
    assert [n for n in fitted.feature_names_ if n.startswith("tcp_")] == NAMES
    features = fitted.transform(frame.head(4))
    assert features["tcp_syn"].to_list() == [1.0, 1.0, 0.0, 0.0]
    assert features["tcp_rst"].to_list() == [0.0, 0.0, 0.0, 1.0]
    # without the group the number passes through as before, as one raw feature
    without = FeaturePipeline(FeatureConfig(groups=("logs", "raw"))).fit(frame)
    assert "tcp_flags" in without.feature_names_ and "tcp_syn" not in without.feature_names_


@pytest.mark.parametrize("fitted_on", [pl.String, pl.Int64])
@pytest.mark.parametrize("scored", [pl.String, pl.Int64, pl.Float64, pl.Null])
def test_any_type_of_the_field_at_scoring_time_gives_flags(
    fitted_on: pl.DataType, scored: pl.DataType
) -> None:
    """A stream's batch whose flows all lack the field (nulls of another type), or a file that writes
    the number as a float, scores as it should."""
    group = TcpFlagGroup()
    fit_frame = pl.DataFrame({"tcp_flags": ["...A..S." if fitted_on == pl.String else 18]})
    state = group.fit(fit_frame)
    values = {
        pl.String: ["...A..S.", None],
        pl.Int64: [18, None],
        pl.Float64: [18.0, None],
        pl.Null: [None, None],
    }
    out = group.apply(pl.DataFrame({"tcp_flags": values[scored]}, schema={"tcp_flags": scored}), state)
    rows = [_seen(row) for row in out.iter_rows(named=True)]
    assert rows == [set() if scored == pl.Null else {"syn", "ack"}, set()]


def test_the_group_needs_the_field() -> None:
    assert TcpFlagGroup().missing(["proto"]) == ["tcp_flags"]
    assert TcpFlagGroup().missing(["tcp_flags"]) == []


def test_nprobe_v2_fields_become_flags_by_side_and_codes_not_magnitudes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An NF- v2 record: the flags of each side become indicators, the codes (application, ICMP type,
    DNS query type, FTP reply) one-hot columns, and the DNS transaction id no feature at all."""
    from nadkit.sources import load_flows

    header = (
        "IPV4_SRC_ADDR,L4_SRC_PORT,IPV4_DST_ADDR,L4_DST_PORT,PROTOCOL,L7_PROTO,IN_BYTES,IN_PKTS,OUT_BYTES,"
        "OUT_PKTS,TCP_FLAGS,CLIENT_TCP_FLAGS,SERVER_TCP_FLAGS,FLOW_DURATION_MILLISECONDS,ICMP_TYPE,"
        "DNS_QUERY_ID,DNS_QUERY_TYPE,FTP_COMMAND_RET_CODE,Label,Attack"
    )
    rows = [
        "10.0.0.1,40000,10.0.0.2,80,6,7.0,500,5,900,4,27,26,27,30,0,0,0,0,0,Benign",  # SYN..FIN both ways
        "10.0.0.1,40001,10.0.0.2,22,6,92.0,60,1,54,1,22,2,20,1,0,0,0,0,0,Benign",  # SYN, answered RST-ACK
        "10.0.0.1,53000,10.0.0.3,53,17,5.0,70,1,120,1,0,0,0,2,0,4242,1,0,0,Benign",
        "10.0.0.1,0,10.0.0.4,0,1,81.0,84,1,84,1,0,0,0,1,2048,0,0,0,0,Benign",
    ] * 5
    path = tmp_path / "NF-v2.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    frame, _ = load_flows(path)
    pipeline = FeaturePipeline(FeatureConfig()).fit(frame)
    names = pipeline.feature_names_
    assert {"tcp_client_syn", "tcp_server_rst", "tcp_server_syn", "app=5.0", "app=7.0"} <= set(names)
    assert {"icmp_type=2048", "dns_query_type=1", "ftp_command_ret_code=0"} <= set(names)
    for passed_as_number in ("client_tcp_flags", "server_tcp_flags", "dns_query_id", "icmp_type", "app"):
        assert passed_as_number not in names
    out = pipeline.transform(frame).head(4)
    assert out["tcp_server_rst"].to_list() == [0, 1, 0, 0]
    assert out["tcp_server_syn"].to_list() == [1, 0, 0, 0]
    assert out["tcp_client_fin"].to_list() == [0, 0, 0, 0]  # 26: SYN, PSH, ACK from the client
    assert out["dns_query_type=1"].to_list() == [0, 0, 1, 0]
