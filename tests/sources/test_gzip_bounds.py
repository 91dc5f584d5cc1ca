"""Gzip input is decompressed within bounds: a gzip bomb (small compressed, huge decompressed) is refused
with one line before it is read, quickly; the bounds are set by environment or command-line option."""

from __future__ import annotations

import gzip
import io
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nadkit.errors import ConfigError, FormatError
from nadkit.sources import load_flows
from nadkit.sources.base import MAX_DECOMPRESSED_ENV, MAX_RATIO_ENV

HEADER = "StartTime,SrcAddr,DstAddr,Sport,Dport,Proto,Dur,SrcBytes,DstBytes,Label"
ROW = "2021-01-01 00:00:01,10.0.0.1,10.0.0.2,40000,80,tcp,1.5,300,120,normal"
MAPPING = (
    "time=StartTime,src=SrcAddr,dst=DstAddr,spt=Sport,dpt=Dport,proto=Proto,duration=Dur,"
    "out_bytes=SrcBytes,in_bytes=DstBytes,label=Label"
)


def _bomb(path: Path, megabytes: int) -> Path:
    """A CSV whose rows repeat: a few hundred kB compressed, ``megabytes`` MiB decompressed."""
    block = ((ROW + "\n") * (1 + (1 << 20) // (len(ROW) + 1))).encode()[: 1 << 20]
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9) as packed:
        packed.write((HEADER + "\n").encode())
        for _ in range(megabytes):
            packed.write(block)
    path.write_bytes(buffer.getvalue())
    return path


def _plain(path: Path, rows: int) -> Path:
    """A gzip CSV of varied rows (compresses like real flow files)."""
    rng = random.Random(3)
    lines = [HEADER]
    for _ in range(rows):
        lines.append(
            f"2021-01-01 00:00:{rng.randrange(60):02d},10.0.{rng.randrange(256)}.{rng.randrange(256)},"
            f"10.1.{rng.randrange(256)}.{rng.randrange(256)},{rng.randrange(65536)},{rng.randrange(1024)},"
            f"tcp,{rng.random():.6f},{rng.randrange(10**6)},{rng.randrange(10**6)},normal"
        )
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


@pytest.fixture(autouse=True)
def _default_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MAX_DECOMPRESSED_ENV, raising=False)
    monkeypatch.delenv(MAX_RATIO_ENV, raising=False)


def test_a_gzip_bomb_is_refused_quickly(tmp_path: Path) -> None:
    bomb = _bomb(tmp_path / "flows.csv.gz", 256)
    assert bomb.stat().st_size < 2 << 20  # 256 MiB of rows, under 2 MiB on disk
    started = time.perf_counter()
    with pytest.raises(FormatError, match=r"times its compressed size.*gzip bomb") as caught:
        load_flows(bomb, mapping=MAPPING)
    assert time.perf_counter() - started < 10
    assert "\n" not in str(caught.value) and str(bomb) in str(caught.value)


def test_the_absolute_bound_is_set_by_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _plain(tmp_path / "flows.csv.gz", 30_000)  # about 2.5 MiB decompressed
    assert load_flows(path, mapping=MAPPING)[0].height == 30_000
    monkeypatch.setenv(MAX_DECOMPRESSED_ENV, "1")
    with pytest.raises(FormatError, match=r"more than 1 MiB \(NADKIT_MAX_DECOMPRESSED_MB\)"):
        load_flows(path, mapping=MAPPING)
    monkeypatch.setenv(MAX_DECOMPRESSED_ENV, "lots")
    with pytest.raises(ConfigError, match="NADKIT_MAX_DECOMPRESSED_MB must be a positive number"):
        load_flows(path, mapping=MAPPING)


def test_the_ratio_bound_is_set_by_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = _bomb(tmp_path / "flows.csv.gz", 24)
    monkeypatch.setenv(MAX_RATIO_ENV, "100000")
    monkeypatch.setenv(MAX_DECOMPRESSED_ENV, "20")
    with pytest.raises(FormatError, match="more than 20 MiB"):
        load_flows(bomb, mapping=MAPPING)


def test_a_gzip_bomb_on_the_command_line_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bomb = _bomb(tmp_path / "flows.csv.gz", 64)
    plain = _plain(tmp_path / "small.csv.gz", 30_000)
    env = {k: v for k, v in os.environ.items() if k not in (MAX_DECOMPRESSED_ENV, MAX_RATIO_ENV)}

    def nadkit(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "nadkit", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)

    done = nadkit("inspect", str(bomb), "--map", MAPPING)
    assert done.returncode == 2, done.stderr
    assert "gzip bomb" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    done = nadkit("--max-decompressed-mb", "1", "inspect", str(plain), "--map", MAPPING)
    assert done.returncode == 2 and "more than 1 MiB" in done.stderr, done.stderr
