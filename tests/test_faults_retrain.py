"""`nadkit retrain` killed outright (``kill -9``): inside the challenger's write, between the two renames
of an overwrite, while registering it, and at random points. What is at ``--out`` is a whole bundle or
nothing (an overwrite cut between its renames is put back by the next load or write), the registry lists
only whole bundles, and the next run leaves no temporary directory, stale copy or empty version."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nadkit.lifecycle.registry import ModelRegistry, bundle_digest
from nadkit.training.bundle import ModelBundle
from tests.service.helpers import Kit, registry_with, session_kit

pytestmark = pytest.mark.slow

#: runs `nadkit` with argv[2:], killing itself (SIGKILL) at the point argv[1] names
KILLER = r"""
import os, signal, sys
point = sys.argv[1]
real_replace = os.replace

def die():
    print("killed at " + point, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

if point == "challenger":  # the weights are written into the challenger's temporary directory
    import safetensors.numpy
    real_save = safetensors.numpy.save_file
    def save_file(arrays, name, *args, **kwargs):
        real_save(arrays, name, *args, **kwargs)
        if ".part" in name:
            die()
    safetensors.numpy.save_file = save_file
elif point == "overwrite":  # the old challenger moved aside, the new one not yet in place
    def replace(source, target):
        real_replace(source, target)
        if os.path.basename(str(target)) == ".challenger.old":
            die()
    os.replace = replace
elif point == "version":  # the version name claimed and its record written, the bundle not yet moved in
    from nadkit.lifecycle import registry
    def replace(source, target):
        if registry.VERSION_PATTERN.match(os.path.basename(str(target))):
            die()
        real_replace(source, target)
    os.replace = replace
elif point == "record":  # the version name claimed, its record not yet written
    from nadkit.lifecycle import registry
    def atomic_path(*args, **kwargs):
        die()
    registry.atomic_path = atomic_path
sys.argv = ["nadkit", *sys.argv[2:]]
from nadkit.cli import main
main()
"""


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return session_kit(tmp_path_factory)


def _leftovers(*folders: Path) -> list[str]:
    """Temporary directories, stale copies and empty versions in ``folders``."""
    found = []
    for folder in folders:
        for entry in folder.iterdir() if folder.is_dir() else ():
            stale = entry.name.startswith(".") and entry.name not in (".active", ".lock")
            empty = entry.is_dir() and not any(entry.iterdir())
            if stale or empty:
                found.append(entry.name)
    return found


def _consistent(out: Path, models: Path) -> list[str]:
    """What a user finds after a kill: ``out`` is a whole bundle or absent, every listed version loads;
    the registered versions."""
    if out.exists() or (out.parent / f".{out.name}.old").exists():
        ModelBundle.load(out, key="")  # puts back an overwrite cut between its renames
    versions = [v.version for v in ModelRegistry(models).list()]
    for version in versions:
        ModelBundle.load(ModelRegistry(models).path(version), key="")
    return versions


def test_retrain_killed_while_writing_and_registering_leaves_no_half_bundle(kit: Kit, tmp_path: Path) -> None:
    from tests.test_feedback import _store_with_reviews

    db = tmp_path / "alerts.db"
    _store_with_reviews(kit, db, benign=4, attacks=4).close()
    models = tmp_path / "models"
    registry_with(kit, models)
    settings = tmp_path / "quick.yaml"
    settings.write_text("epochs: 2\n")
    out = tmp_path / "out" / "challenger"
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "NADKIT_BUNDLE_KEY": ""}

    def command(seed: int, point: str = "none") -> list[str]:
        args = ["retrain", "v1", str(kit.test_day), "--db", str(db), "--models", str(models)]
        args += ["--out", str(out), "--config", str(settings), "--seed", str(seed), "--force"]
        return [sys.executable, "-c", KILLER, point, *args]

    def killed_at(point: str, seed: int) -> None:
        done = subprocess.run(command(seed, point), capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == -signal.SIGKILL, done.stdout[-2000:] + done.stderr[-2000:]
        assert f"killed at {point}" in done.stdout

    killed_at("challenger", 1)
    assert not out.exists() and _consistent(out, models) == ["v1"]
    started = time.monotonic()
    done = subprocess.run(command(2), capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    took = time.monotonic() - started
    assert _consistent(out, models) == ["v1", "v2"]
    killed_at("overwrite", 3)
    assert not out.exists() and (out.parent / ".challenger.old").is_dir()
    assert _consistent(out, models) == ["v1", "v2"] and out.is_dir()  # the last whole challenger, back
    killed_at("record", 4)
    assert (models / "versions" / "v3").is_dir() and not (models / "versions" / "v3.json").exists()
    assert _consistent(out, models) == ["v1", "v2"]  # claimed, empty: no version
    killed_at("version", 5)  # the next registration sweeps the empty name and claims it again
    assert (models / "versions" / "v3.json").is_file() and not any((models / "versions" / "v3").iterdir())
    assert _consistent(out, models) == ["v1", "v2"]  # a record without its bundle is no version
    rng = random.Random(17)
    kills = 0
    for tries, seed in enumerate(range(6, 24), start=1):  # six retrains or more, until three were killed
        started = time.monotonic()
        process = subprocess.Popen(
            command(seed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        time.sleep(rng.uniform(0.5, took))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        else:  # the machine got quicker: kill the next ones sooner
            took = max(0.6, min(took, time.monotonic() - started))
        process.wait(timeout=60)
        _consistent(out, models)
        if tries >= 6 and kills >= 3:
            break
    assert kills >= 3
    done = subprocess.run(command(99), capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    versions = _consistent(out, models)
    assert versions[:3] == ["v1", "v2", "v3"] and len(versions) == len(set(versions))
    assert _leftovers(out.parent, models / "versions") == []
    # every version has its own record, none a killed registration's
    for version in versions:
        record = ModelRegistry(models).info(version)
        assert record.registered and record.digest == bundle_digest(models / "versions" / version)
