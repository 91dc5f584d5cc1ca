from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from nadkit.errors import NadkitError
from nadkit.fileio import atomic_directory, atomic_path


def test_atomic_path_renames_on_success_and_keeps_default_mode(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with atomic_path(target) as temporary:
        temporary.write_text("done")
        assert not target.exists()
    assert target.read_text() == "done"
    assert stat.S_IMODE(target.stat().st_mode) & 0o044  # readable by group/others as with open()
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_path_leaves_nothing_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_refuses_to_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "saved.txt"
    target.write_text("precious")
    with pytest.raises(NadkitError, match="already exists"), atomic_path(target):
        pass
    assert target.read_text() == "precious"
    with atomic_path(target, overwrite=True) as temporary:
        temporary.write_text("new")
    assert target.read_text() == "new"


def test_atomic_directory_replaces_whole(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    with atomic_directory(target) as temporary:
        (temporary / "a").write_text("1")
    with pytest.raises(RuntimeError), atomic_directory(target, overwrite=True) as temporary:
        (temporary / "b").write_text("2")
        raise RuntimeError("boom")
    assert sorted(p.name for p in target.iterdir()) == ["a"]
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]


def test_a_writer_killed_outright_leaves_nothing_after_the_next_write(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    target = tmp_path / "alerts.jsonl"
    script = (
        "import sys, time\n"
        "from nadkit.fileio import atomic_path, atomic_directory\n"
        "with atomic_path(sys.argv[1]) as part, atomic_directory(sys.argv[1] + '.d') as folder:\n"
        "    part.write_text('half')\n"
        "    (folder / 'x').write_text('half')\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
    )
    writer = subprocess.Popen([sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == 2 and all(name.endswith(".part") for name in left), left
    time.sleep(0.1)
    with atomic_path(target) as part:
        part.write_text("whole")
    with atomic_directory(tmp_path / "alerts.jsonl.d") as folder:
        (folder / "x").write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alerts.jsonl", "alerts.jsonl.d"]
    assert target.read_text() == "whole"


def test_recover_directory_puts_back_the_old_one_only_when_the_new_one_is_missing_or_incomplete(
    tmp_path: Path,
) -> None:
    from nadkit.fileio import backup_path, recover_directory

    target = tmp_path / "model"
    backup = backup_path(target)
    backup.mkdir()
    (backup / "manifest.json").write_text("old")
    target.mkdir()  # an incomplete directory at the target: no manifest
    assert recover_directory(target, complete=lambda folder: (folder / "manifest.json").is_file())
    assert (target / "manifest.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    backup.mkdir()  # a stale copy beside a whole target (a writer killed before removing it) goes
    assert not recover_directory(target, complete=lambda folder: (folder / "manifest.json").is_file())
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    target.rename(backup)
    live = tmp_path / f".model.{os.getppid()}.abc.part"  # a live writer between its renames
    live.mkdir()
    assert not recover_directory(target) and not target.exists()
    live.rmdir()
    assert recover_directory(target) and (target / "manifest.json").read_text() == "old"


def test_atomic_directory_never_replaces_a_file(tmp_path: Path) -> None:
    target = tmp_path / "flows.csv"
    target.write_text("precious")
    for overwrite in (False, True):
        with pytest.raises(NadkitError, match="is a file"), atomic_directory(target, overwrite=overwrite):
            pass
    assert target.read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["flows.csv"]
