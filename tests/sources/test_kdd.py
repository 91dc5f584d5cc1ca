"""NSL-KDD (43 fields) and KDD Cup 1999 (42 fields, labels ending in '.') into the canonical table."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from nadkit.errors import FormatError, SchemaError
from nadkit.sources import detect_format, load_flows, read_flows
from nadkit.sources.kdd import ATTACK_FAMILIES
from tests.conftest import shared_file

NSL_ROWS = [
    "0,tcp,ftp_data,SF,491,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2,2,0.00,0.00,0.00,0.00,1.00,0.00,0.00,150,25,"
    "0.17,0.03,0.17,0.00,0.00,0.00,0.05,0.00,normal,20",
    "0,tcp,private,S0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,123,6,1.00,1.00,0.00,0.00,0.05,0.07,0.00,255,26,"
    "0.10,0.05,0.00,0.00,1.00,1.00,0.00,0.00,neptune,19",
    "2,tcp,IRC,RSTO,1200,3400,0,0,0,1,2,1,0,0,0,0,0,0,0,0,0,1,1,1,0.00,0.00,1.00,1.00,1.00,0.00,0.00,5,5,"
    "1.00,0.00,0.20,0.00,0.00,0.00,0.80,0.80,warezmaster,7",
    "0,icmp,ecr_i,SF,1032,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,511,511,0.00,0.00,0.00,0.00,1.00,0.00,0.00,255,"
    "255,1.00,0.00,1.00,0.00,0.00,0.00,0.00,0.00,mystery,18",
]
KDD99_ROWS = [
    "0,tcp,http,SF,181,5450,0,0,0,0,0,1,0,0,0,0,0,0,0,0,0,0,8,8,0.00,0.00,0.00,0.00,1.00,0.00,0.00,9,9,"
    "1.00,0.00,0.11,0.00,0.00,0.00,0.00,0.00,normal.",
    "0,icmp,ecr_i,SF,520,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,511,511,0.00,0.00,0.00,0.00,1.00,0.00,0.00,255,"
    "255,1.00,0.00,1.00,0.00,0.00,0.00,0.00,0.00,smurf.",
    "184,tcp,telnet,SF,1511,2957,0,0,0,3,0,1,2,1,0,0,1,0,0,0,0,0,1,1,0.00,0.00,0.00,0.00,1.00,0.00,0.00,1,3,"
    "1.00,0.00,1.00,0.67,0.00,0.00,0.00,0.00,buffer_overflow.",
]


def _write(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n")
    return path


def test_golden_nsl_kdd_rows(tmp_path: Path) -> None:
    path = _write(tmp_path / "KDDTest+.txt", NSL_ROWS)
    assert detect_format(path) == "kdd"
    frame, fmt = load_flows(path)
    assert fmt == "kdd"
    assert frame.height == 4
    assert frame.columns[:5] == ["proto", "app", "duration", "out_bytes", "in_bytes"]
    assert frame["proto"].to_list() == ["tcp", "tcp", "tcp", "icmp"]
    assert frame["app"].to_list() == ["ftp_data", "private", "irc", "ecr_i"]
    assert frame["duration"].to_list() == [0.0, 0.0, 2.0, 0.0]
    assert frame["out_bytes"].to_list() == [491, 0, 1200, 1032]
    assert frame["in_bytes"].to_list() == [0, 0, 3400, 0]
    assert frame["flag"].to_list() == ["SF", "S0", "RSTO", "SF"]
    assert frame["label"].to_list() == ["normal", "neptune", "warezmaster", "mystery"]
    assert frame["attack_family"].to_list() == ["normal", "DoS", "R2L", "unknown"]
    assert frame.schema["count"] == pl.Int64 and frame["count"].to_list() == [2, 123, 1, 511]
    assert frame.schema["serror_rate"] == pl.Float64 and frame["serror_rate"].to_list() == [
        0.0,
        1.0,
        0.0,
        0.0,
    ]
    assert frame["dst_host_srv_rerror_rate"].to_list() == [0.0, 0.0, 0.8, 0.0]
    assert frame["num_failed_logins"][2] == 2 and frame["is_guest_login"][2] == 1
    # difficulty describes the dataset, not the flow: only on request
    assert "difficulty" not in frame.columns
    assert not {"time", "src", "dst", "spt", "dpt"} & set(frame.columns)
    # 35 numeric features, 5 canonical, flag, label, label_original, attack_family
    assert len(frame.columns) == 35 + 5 + 1 + 3


def test_difficulty_on_request(tmp_path: Path) -> None:
    frame, _ = load_flows(_write(tmp_path / "nsl.txt", NSL_ROWS), difficulty=True)
    assert frame["difficulty"].to_list() == [20, 19, 7, 18]


def test_golden_kdd99_rows(tmp_path: Path) -> None:
    path = _write(tmp_path / "kddcup.data_10_percent", KDD99_ROWS)
    assert detect_format(path) == "kdd"
    frame, _ = load_flows(path)
    assert frame["label"].to_list() == ["normal", "smurf", "buffer_overflow"]
    assert frame["label_original"].to_list() == ["normal.", "smurf.", "buffer_overflow."]
    assert frame["attack_family"].to_list() == ["normal", "DoS", "U2R"]
    assert frame["duration"].to_list() == [0.0, 0.0, 184.0]
    assert frame["in_bytes"].to_list() == [5450, 0, 2957]
    assert frame["root_shell"].to_list() == [0, 0, 1]


def test_attack_families_cover_nsl_kdd_names() -> None:
    expected = {
        "DoS": {"back", "land", "neptune", "pod", "smurf", "teardrop", "apache2", "mailbomb", "processtable"}
        | {"udpstorm"},
        "Probe": {"ipsweep", "nmap", "portsweep", "satan", "mscan", "saint"},
        "R2L": {"ftp_write", "guess_passwd", "imap", "multihop", "phf", "spy", "warezclient", "warezmaster"}
        | {"sendmail", "named", "snmpgetattack", "snmpguess", "xlock", "xsnoop", "worm"},
        "U2R": {"buffer_overflow", "loadmodule", "perl", "rootkit", "httptunnel", "ps", "sqlattack", "xterm"},
    }
    for family, names in expected.items():
        assert {n for n, f in ATTACK_FAMILIES.items() if f == family} == names, family
    assert len(ATTACK_FAMILIES) == 39


def test_gzip_and_lazy(tmp_path: Path) -> None:
    path = tmp_path / "KDDTrain+.txt.gz"
    path.write_bytes(gzip.compress(("\n".join(NSL_ROWS) + "\n").encode()))
    assert detect_format(path) == "kdd"
    lazy, _ = read_flows(path)
    assert isinstance(lazy, pl.LazyFrame)
    frame, _ = load_flows(path)
    assert frame["out_bytes"].to_list() == [491, 0, 1200, 1032]


def test_bad_value_names_column_and_row(tmp_path: Path) -> None:
    rows = list(NSL_ROWS)
    rows[1] = rows[1].replace(",123,6,", ",12e,6,")
    with pytest.raises(SchemaError) as caught:
        load_flows(_write(tmp_path / "bad.txt", rows))
    assert (caught.value.column, caught.value.row) == ("count", 2)


def test_wrong_field_count_is_refused(tmp_path: Path) -> None:
    rows = [row.rsplit(",", 2)[0] for row in NSL_ROWS]  # 41 fields: no attack name
    path = _write(tmp_path / "features.txt", rows)
    with pytest.raises(FormatError):
        detect_format(path)
    with pytest.raises(SchemaError, match="41 fields"):
        load_flows(path, format="kdd")


def test_not_a_kdd_protocol_is_not_detected(tmp_path: Path) -> None:
    path = _write(tmp_path / "other.txt", [NSL_ROWS[0].replace(",tcp,", ",sctp,")])
    with pytest.raises(FormatError):
        detect_format(path)


def test_real_nsl_kdd_20_percent() -> None:
    path = shared_file("nsl_kdd/KDDTrain+_20Percent.txt")
    assert detect_format(path) == "kdd"
    frame, _ = load_flows(path)
    assert frame.height == 25_192
    labels = frame["label"].value_counts()
    assert dict(labels.iter_rows())["normal"] == 13_449
    assert labels.height == 22  # normal and 21 attack types
    families = dict(frame["attack_family"].value_counts().iter_rows())
    assert families == {"normal": 13_449, "DoS": 9_234, "Probe": 2_289, "R2L": 209, "U2R": 11}
    assert dict(frame["label"].value_counts().iter_rows())["neptune"] == 8_282
