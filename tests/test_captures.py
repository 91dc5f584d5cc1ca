"""Mixing captures labelled per file into one labelled table, and the real-traffic picture drawn from it."""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from matplotlib import colors as mcolors
from matplotlib import image

from nadkit.errors import ConfigError, SchemaError
from nadkit.pictures import draw_groups
from nadkit.schema import CAPTURE_TIME, NORMAL
from nadkit.sources import load_flows
from nadkit.sources.captures import CAPTURE, capture_files, compress_gaps, mix_captures
from tests.conftest import shared_file

BENIGN = ("ssh.pcap", "skype.pcap", "zoom.pcap", "instagram.pcap")
ATTACK = ("synscan.pcap", "masscan_udp_0_1000_20190821.pcap")


def test_long_idle_gaps_are_shortened_and_the_rest_kept() -> None:
    seconds = np.array([100.0, 101.0, 101.5, 5000.0, 5002.0])
    np.testing.assert_allclose(compress_gaps(seconds, 60.0), [0.0, 1.0, 1.5, 61.5, 63.5])
    assert compress_gaps(np.array([]), 60.0).size == 0


@pytest.fixture(scope="module")
def pcaps() -> Path:
    return shared_file("pcaps")


@pytest.fixture(scope="module")
def files(pcaps: Path) -> tuple[list[Path], list[Path]]:
    return [pcaps / "benign" / n for n in BENIGN], [pcaps / "attack" / n for n in ATTACK]


@pytest.fixture(scope="module")
def mixed(files: tuple[list[Path], list[Path]]):  # type: ignore[no-untyped-def]
    benign, attack = files
    return mix_captures(benign, attack, attack_labels={"synscan.pcap": "syn scan"}, span_s=300, seed=3)


def test_every_flow_is_labelled_by_its_capture(mixed, files: tuple[list[Path], list[Path]]) -> None:  # type: ignore[no-untyped-def]
    benign, attack = files
    frame = mixed.frame
    expected = {}
    for path in [*benign, *attack]:
        flows, _ = load_flows(path)
        expected[path.name] = flows.height
    assert frame.group_by(CAPTURE).len().sort(CAPTURE).rows() == sorted(expected.items())
    labels = dict(frame.select(CAPTURE, "label").unique().rows())
    assert {labels[p.name] for p in benign} == {NORMAL}
    assert labels["synscan.pcap"] == "syn scan"
    assert labels["masscan_udp_0_1000_20190821.pcap"] == "masscan_udp_0_1000_20190821"
    assert mixed.counts()[NORMAL] == sum(expected[p.name] for p in benign)


def test_captures_interleave_in_one_window_keeping_their_own_timing(mixed, files) -> None:  # type: ignore[no-untyped-def]
    frame = mixed.frame
    assert frame["time"].is_sorted()
    start, end = mixed.start, mixed.start + dt.timedelta(seconds=mixed.span_s)
    assert frame["time"].min() >= start and frame["time"].max() <= end
    # the spacing inside a capture is kept (its gaps are short)
    benign, _ = files
    original, _ = load_flows(benign[2])  # zoom: seven seconds, no long gap
    placed = frame.filter(pl.col(CAPTURE) == benign[2].name)
    np.testing.assert_allclose(
        np.diff(placed["time"].dt.epoch("us").to_numpy()),
        np.diff(original.sort("time")["time"].dt.epoch("us").to_numpy()),
    )
    # and each flow keeps its own time in its capture, by which a model trained on it knows it
    assert placed[CAPTURE_TIME].to_list() == original.sort("time")["time"].to_list()
    # instagram holds two sessions years apart: the gap is shortened to the default 60 s
    insta = frame.filter(pl.col(CAPTURE) == "instagram.pcap")["time"]
    assert (insta.max() - insta.min()).total_seconds() < 200
    # captures start at different places, and the seed fixes them
    starts = {c.path.name: c.start for c in mixed.captures}
    assert len(set(starts.values())) == len(starts)
    again = mix_captures(*files, attack_labels={"synscan.pcap": "syn scan"}, span_s=300, seed=3)
    assert again.frame.equals(frame)
    other = mix_captures(*files, span_s=300, seed=4)
    assert {c.path.name: c.start for c in other.captures} != starts


def test_bad_mixes_are_refused(files: tuple[list[Path], list[Path]], tmp_path: Path) -> None:
    benign, attack = files
    with pytest.raises(SchemaError, match="no such file"):
        mix_captures([tmp_path / "missing.pcap"], attack)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SchemaError, match="no capture files"):
        mix_captures([tmp_path / "empty"], attack)
    with pytest.raises(ConfigError, match="both benign and attack"):
        mix_captures(benign, [benign[0]])
    with pytest.raises(ConfigError, match="attack label"):
        mix_captures(benign, attack, attack_labels={"synscan": "benign"})
    with pytest.raises(ConfigError, match="longer than"):
        mix_captures(benign, attack, span_s=5)
    assert capture_files([benign[0], benign[0]]) == [benign[0]]


def _pixels(png: bytes) -> np.ndarray:
    values = image.imread(io.BytesIO(png), format="png")
    return np.rint(values[..., :3] * 255).astype(np.int64)


def test_real_traffic_picture_shows_each_scan_as_a_band_of_its_colour(mixed) -> None:  # type: ignore[no-untyped-def]
    """By port pair, a scan's thousand new port pairs spread across the picture in the scan's colour
    at the scan's time; the rows of quiet benign traffic hold none of it."""
    frame = mixed.frame
    picture = draw_groups(frame, by="src_port,dst_port", color="label", width=600, height=400)
    pixels = _pixels(picture.png)
    left, _, width, _ = picture.panels[0]
    for name in ("syn scan", "masscan_udp_0_1000_20190821"):
        flows = frame.filter(pl.col("label") == name)
        middle = flows["time"].sort()[flows.height // 2]
        first = flows.row(flows.height // 2, named=True)
        row, _ = picture.locate((first["spt"], first["dpt"]), middle)
        target = np.array([round(255 * c) for c in mcolors.to_rgb(picture.colours[name])])
        band = (pixels[row, left : left + width] == target).all(axis=1)
        assert band.sum() >= 20, f"{name}: only {band.sum()} pixels of its colour across its row"
        span = np.flatnonzero(band)
        assert span.max() - span.min() > width / 2, f"{name} does not spread across the picture"


@pytest.mark.slow
def test_cli_writes_the_mix_once_and_names_bad_labels(pcaps: Path, tmp_path: Path) -> None:
    out = tmp_path / "mix.parquet"
    command = [
        sys.executable,
        "-m",
        "nadkit",
        "mix-captures",
        str(out),
        "--benign",
        str(pcaps / "benign" / "ssh.pcap"),
    ]
    command += [
        "--attack",
        str(pcaps / "attack" / "icmp-portscan.pcap"),
        "--label",
        "icmp-portscan.pcap=icmp scan",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    written = pl.read_parquet(out)
    assert set(written["label"]) == {NORMAL, "icmp scan"}
    before = out.read_bytes()
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "already exists" in again.stderr
    assert out.read_bytes() == before
    bad = subprocess.run(
        [*command[:-2], "--label", "nonsense", "--force"], capture_output=True, text=True, timeout=300
    )
    assert bad.returncode != 0 and "FILE=NAME" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert out.read_bytes() == before


@pytest.mark.slow
def test_evaluating_a_mix_of_the_training_captures_says_so(pcaps: Path, tmp_path: Path) -> None:
    """A model trained on benign captures, evaluated on a mix of those captures with an attack
    capture: the mix moves every capture in time, yet `nadkit evaluate` finds the training flows
    among its normal flows (by their own times) and says first that the figures are optimistic."""
    from tests.e2e.test_cli_inputs import nadkit

    benign = tmp_path / "benign"
    benign.mkdir()
    for name in ("zoom.pcap", "waze.pcap", "signal.pcap"):
        (benign / name).symlink_to(pcaps / "benign" / name)
    model, mix = tmp_path / "model", tmp_path / "mix.parquet"
    trained = nadkit("train", benign, "-o", model, "--model", "iforest")
    assert trained.returncode == 0, trained.stderr
    attack = pcaps / "attack" / "synscan.pcap"
    made = nadkit("mix-captures", "-o", mix, "--benign", benign, "--attack", attack)
    assert made.returncode == 0, made.stderr
    normal = pl.read_parquet(mix).filter(pl.col("label") == NORMAL).height
    result = nadkit("evaluate", model, mix, "--json")
    assert result.returncode == 0, result.stderr
    overlap = json.loads(result.stdout)["training_overlap"]
    assert overlap["optimistic"] is True
    assert overlap["normal_found"] == overlap["normal_compared"] == normal
    assert f"{normal} of the {normal} normal flows" in overlap["warning"]
    assert "Measured on training data" in result.stderr
