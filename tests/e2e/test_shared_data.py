"""Every file of the shared real-data folder is read by `nadkit inspect`, with the expected format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import data_dir
from tests.e2e.test_cli_inputs import nadkit

EXPECTED_FORMAT = {
    "unsw_nb15": "unsw",
    "nsl_kdd": "kdd",
    "cicids2017": "cic",
    "pcaps": "pcap",
    "iot23": "zeek",  # labelled conn.log files, beside the capture they were made from
}
#: files of another format than their folder's, by suffix
EXPECTED_BY_SUFFIX = {".pcap": "pcap", ".pcapng": "pcap"}


def expected_format(path: Path) -> str:
    """The format ``nadkit inspect`` must find for a shared file."""
    return EXPECTED_BY_SUFFIX.get(path.suffix, EXPECTED_FORMAT[path.relative_to(data_dir()).parts[0]])


def _shared_files() -> list[Path]:
    root = data_dir()
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name not in {"README.md", "SHA256SUMS"})


@pytest.mark.parametrize("path", _shared_files(), ids=lambda p: str(p.relative_to(data_dir())))
def test_inspect_reads_shared_file(path: Path) -> None:
    from nadkit.sources.inspection import inspect_path

    summary = inspect_path(path)
    assert summary.format == expected_format(path)
    assert summary.rows > 0
    if summary.format == "pcap":
        assert summary.missing_identifying == []
        assert summary.time_start is not None


def test_shared_folder_present_or_skip() -> None:
    if not data_dir().is_dir():
        pytest.skip(f"real datasets not found at {data_dir()} (set NADKIT_DATA_DIR)")
    assert _shared_files(), f"{data_dir()} holds no data files"


@pytest.mark.slow
def test_cli_inspects_pcap_directory() -> None:
    folder = data_dir() / "pcaps" / "attack"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found (set NADKIT_DATA_DIR)")
    result = nadkit("inspect", folder, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["format"] == "pcap"
    assert summary["files"] == len(list(folder.glob("*.pcap*")))
    assert summary["rows"] > 1000


def test_pcap_flows_featurize_with_computed_counters() -> None:
    """Captures carry no counters: the pipeline computes them, and every address/port group runs."""
    import numpy as np
    import polars as pl

    from nadkit.features.counters import COUNTER_COLUMNS
    from nadkit.features.pipeline import FeaturePipeline
    from nadkit.sources import load_flows

    folder = data_dir() / "pcaps"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found (set NADKIT_DATA_DIR)")
    benign, _ = load_flows(folder / "benign", label="normal")
    attack, _ = load_flows(folder / "attack" / "synscan.pcap", label="portscan")
    flows = pl.concat([benign, attack], how="diagonal_relaxed")
    pipeline = FeaturePipeline().fit(benign)
    assert pipeline.counters_computed_ and pipeline.segments_computed_
    # nfstream meters each flag's packets (bidirectional_syn_packets, ...), not NetFlow's OR of them
    assert pipeline.skipped_groups_ == {"tcp": ["tcp_flags"]}
    names = set(pipeline.feature_names_)
    assert {"ip_binary_match", "dpt_area=well_known", "seg_unique_dpt", *COUNTER_COLUMNS} <= names
    features = pipeline.transform(flows)
    assert np.isfinite(features.to_numpy()).all()
    # the SYN scan's segments touch far more destination ports than any benign segment
    scan = features.filter(pl.Series(flows["label"] == "portscan"))
    normal = features.filter(pl.Series(flows["label"] == "normal"))
    assert scan["seg_unique_dpt"].median() > normal["seg_unique_dpt"].max()


def test_iot23_conn_log_labels() -> None:
    """IoT-23 keeps ``label`` and ``detailed-label`` in one last column: the detailed label is the class."""
    from nadkit.sources import load_flows

    path = data_dir() / "iot23" / "CTU-IoT-Malware-Capture-42-1" / "conn.log.labeled"
    if not path.exists():
        pytest.skip(f"{path} not found (set NADKIT_DATA_DIR)")
    flows, fmt = load_flows(path)
    assert fmt == "zeek" and flows.height == 4426
    counts = dict(flows["label"].value_counts().iter_rows())
    assert counts == {"normal": 4420, "FileDownload": 3, "C&C-FileDownload": 3}
    attacks = flows.filter(flows["label"] != "normal")
    assert set(attacks["src"]) == {"192.168.1.197"} and set(attacks["dpt"]) == {80}
