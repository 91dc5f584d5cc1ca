"""The CLI run for real (a subprocess) on good and bad input: one-line errors, exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sources.test_nad import HEADER, ROWS


def nadkit(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    # progress lines start after 2 s of work, which a loaded machine reaches on inputs that take a
    # second alone: off unless a test asks for them (NADKIT_PROGRESS_AFTER_S in its environment)
    env = {"NADKIT_PROGRESS_AFTER_S": "3600", **os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "nadkit", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture()
def nad_file(tmp_path: Path) -> Path:
    path = tmp_path / "day.csv"
    path.write_text("\n".join([HEADER, *ROWS]) + "\n")
    return path


def test_inspect_json(nad_file: Path) -> None:
    result = nadkit("inspect", nad_file, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["format"] == "nad"
    assert summary["rows"] == 4
    assert summary["labels"] == {"normal": 2, "DDOS-smurf": 1, "Probing-IP sweep": 1}
    assert summary["time_start"].startswith("2020-12-03T00:00:01")
    columns = {c["name"]: c["dtype"] for c in summary["columns"]}
    assert columns["dpt"] == "Int64"


def test_inspect_table(nad_file: Path) -> None:
    result = nadkit("inspect", nad_file)
    assert result.returncode == 0, result.stderr
    assert "format nad" in result.stdout
    assert "Probing-IP sweep" in result.stdout


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    assert_one_line_error(nadkit("inspect", path), str(path), "empty")


def test_truncated_csv(tmp_path: Path) -> None:
    text = "\n".join([HEADER, *ROWS])
    path = tmp_path / "cut.csv"
    path.write_text(text[: len(text) - 40])
    assert_one_line_error(nadkit("inspect", path), str(path), "truncated", "row 4")


def test_wrong_columns(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("alpha,beta,gamma\n1,2,3\n4,5,6\n")
    assert_one_line_error(nadkit("inspect", path), str(path), "unrecognised flow format")


def test_wrong_columns_for_forced_format(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("alpha,beta,gamma\n1,2,3\n")
    assert_one_line_error(nadkit("inspect", path, "--format", "nad"), str(path), "column")


def test_bad_value(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("\n".join([HEADER, *ROWS]).replace("51514", "5l514") + "\n")
    assert_one_line_error(nadkit("inspect", path), str(path), "'spt'", "row 2")


def test_binary_garbage(tmp_path: Path) -> None:
    path = tmp_path / "garbage.bin"
    path.write_bytes(bytes(range(256)) * 40)
    assert_one_line_error(nadkit("inspect", path), str(path), "binary")


def test_text_named_pcap(tmp_path: Path) -> None:
    path = tmp_path / "capture.pcap"
    path.write_text("this is not a capture\n" * 20)
    assert_one_line_error(nadkit("inspect", path), str(path))


def test_text_forced_as_pcap(tmp_path: Path) -> None:
    path = tmp_path / "capture.pcap"
    path.write_text("this is not a capture\n" * 20)
    assert_one_line_error(nadkit("inspect", path, "--format", "pcap"), str(path))


def test_unknown_format_name(nad_file: Path) -> None:
    assert_one_line_error(nadkit("inspect", nad_file, "--format", "nope"), "unknown format 'nope'")


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.csv"
    assert_one_line_error(nadkit("inspect", missing), str(missing), "no such file")


def test_bad_mapping(nad_file: Path) -> None:
    assert_one_line_error(nadkit("inspect", nad_file, "--map", "sauce=src"), "unknown canonical column")


def test_formats_lists_every_reader() -> None:
    result = nadkit("formats")
    assert result.returncode == 0
    for name in ("nad", "cic", "unsw", "kdd", "netflow", "nfdump", "zeek", "argus", "pcap", "parquet"):
        assert name in result.stdout


@pytest.mark.parametrize("position", [14, 40, 120])
def test_gzip_with_a_flipped_byte(tmp_path: Path, position: int) -> None:
    import gzip

    text = "\n".join([HEADER, *ROWS * 200]) + "\n"
    packed = bytearray(gzip.compress(text.encode()))
    packed[position] ^= 0x5A  # in the deflate stream: bad code lengths, distances or checksum
    path = tmp_path / "flows.csv.gz"
    path.write_bytes(bytes(packed))
    assert_one_line_error(nadkit("inspect", path), str(path))


@pytest.mark.slow
def test_invalid_rows_stop_or_are_skipped(tmp_path: Path) -> None:
    """An address that is no address stops `train` with the file, column and row named; with
    --on-bad-rows skip the row is dropped, counted, and training goes on."""
    rows = [ROWS[0], ROWS[1].replace("8.8.8.8", "999.8.8.8"), *ROWS[2:]] * 30
    source = tmp_path / "flows.csv"
    source.write_text("\n".join([HEADER, *rows]) + "\n")
    stopped = nadkit("train", source, tmp_path / "m", "--model", "iforest")
    assert_one_line_error(stopped, "flows.csv", "column 'dst'", "row 2", "not an IPv4 or IPv6 address")
    assert not (tmp_path / "m").exists()
    skipped = nadkit("train", source, tmp_path / "m", "--model", "iforest", "--on-bad-rows", "skip")
    assert skipped.returncode == 0, skipped.stderr
    assert "30 row(s) skipped" in " ".join(skipped.stderr.split())
    wrong = nadkit("train", source, tmp_path / "n", "--model", "iforest", "--on-bad-rows", "ignore")
    assert_one_line_error(wrong, "--on-bad-rows must be error or skip")


@pytest.mark.slow
def test_long_reads_report_progress_unless_quiet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading several files prints progress lines on stderr (no terminal here: lines, not a bar);
    --quiet prints none; training says when it is reading, which stage and which epoch it is at. (Lines start
    after 2 s of work; NADKIT_PROGRESS_AFTER_S=0 shows them for these small files.)"""
    monkeypatch.setenv("NADKIT_PROGRESS_AFTER_S", "0")
    folder = tmp_path / "flows"
    folder.mkdir()
    for index in range(3):  # enough normal flows to train on
        (folder / f"day{index}.csv").write_text("\n".join([HEADER, *ROWS * 5]) + "\n")
    shown = nadkit("inspect", folder)
    assert shown.returncode == 0, shown.stderr
    assert "reading: 3/3 files (day2.csv)" in shown.stderr
    quiet = nadkit("--quiet", "inspect", folder)
    assert quiet.returncode == 0 and "files (" not in quiet.stderr
    trained = nadkit("train", folder, tmp_path / "m", "--model", "ae", "--config", _epochs(tmp_path, 2))
    assert trained.returncode == 0, trained.stderr
    assert "training ae: reading flows: 3/3 files" in trained.stderr
    assert "training ae: epoch 2/2" in trained.stderr
    # each stage is named as it starts: the feature work before the first epoch, the threshold after
    stages = [line for line in trained.stderr.splitlines() if line.startswith("training ae: ")]
    named = [
        s
        for s in ("computing features", "training (", "choosing the threshold")
        if any(s in x for x in stages)
    ]
    assert named == ["computing features", "training (", "choosing the threshold"], stages


def _epochs(folder: Path, epochs: int) -> str:
    settings = folder / "model.json"
    settings.write_text(json.dumps({"epochs": epochs}))
    return str(settings)
