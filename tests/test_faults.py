"""Faults: a bundle writer killed outright at random points, a full disk under a bundle being saved and
under the alert store. Nothing half-written is ever taken for a bundle, temporary files of killed
writers are swept by the next write, and a full disk is a one-line error that leaves the store and
an earlier bundle as they were."""

from __future__ import annotations

import errno
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nadkit.errors import BundleError, NadkitError
from nadkit.training.bundle import ModelBundle

SAVER = """
import sys
from nadkit.training.bundle import ModelBundle
bundle = ModelBundle.load(sys.argv[1], key="")
print("ready", flush=True)
while True:
    bundle.save(sys.argv[2], overwrite=True, key="")
"""


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from nadkit.simulate import SimulationConfig, simulate
    from nadkit.training.fit import fit

    frame = simulate(SimulationConfig(days=1, flows_per_day=1500, seed=9)).drop("day")
    result = fit(frame, model="ae", config={"epochs": 1, "hidden": [8], "bottleneck": 3})
    return result.bundle.save(tmp_path_factory.mktemp("faults") / "model", key="")


@pytest.mark.slow
def test_a_bundle_writer_killed_at_random_points_never_leaves_a_half_written_bundle(
    seed: Path, tmp_path: Path
) -> None:
    target = tmp_path / "out" / "model"
    rng = random.Random(11)
    kills = 0
    for _ in range(12):
        saver = subprocess.Popen(
            [sys.executable, "-c", SAVER, str(seed), str(target)], stdout=subprocess.PIPE, text=True
        )
        assert saver.stdout is not None and saver.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.4))
        saver.send_signal(signal.SIGKILL)
        saver.wait(timeout=30)
        kills += 1
        if target.exists():  # whatever is at the target is a whole bundle
            ModelBundle.load(target, key="")
    assert kills == 12
    # the next write sweeps the killed writers' temporary directories
    ModelBundle.load(seed, key="").save(target, overwrite=True, key="")
    ModelBundle.load(target, key="")
    assert sorted(p.name for p in target.parent.iterdir() if ".part" in p.name) == []


def test_a_full_disk_while_saving_a_bundle_is_one_line_and_keeps_the_old_one(
    seed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "model"
    bundle = ModelBundle.load(seed, key="")
    bundle.save(target, key="")
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    real_write = Path.write_text

    def full(self: Path, *args: object, **kwargs: object) -> int:
        if self.name == "threshold.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(BundleError, match="cannot be written \\(No space left on device\\)") as caught:
        bundle.save(target, overwrite=True, key="")
    monkeypatch.undo()
    assert "\n" not in str(caught.value)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary directory left
    ModelBundle.load(target, key="")


def test_a_full_disk_under_the_alert_store_is_one_line_and_leaves_it_consistent(tmp_path: Path) -> None:
    """SQLite's page limit stands in for a full disk: it fails a write the way ENOSPC does
    (``database or disk is full``)."""
    from nadkit.alerts.store import AlertStore
    from nadkit.alerts.values import StoreError
    from tests.test_store import scored

    with AlertStore(tmp_path / "alerts.db") as store:
        store.add_alerts(scored(25), model_version="v1")
        connection = store._connect()
        pages = connection.execute("PRAGMA page_count").fetchone()[0]
        connection.execute(f"PRAGMA max_page_count = {pages + 4}")
        stored = store.count_alerts()
        with pytest.raises(StoreError, match="disk is full") as caught:
            for batch in range(1, 200):
                store.add_alerts(scored(50, offset=batch * 1000), model_version="v1")
                stored = store.count_alerts()
        assert "\n" not in str(caught.value)
        assert store.count_alerts() == stored  # the failed batch is stored not at all
        assert store.integrity_check() == "ok"
        connection.execute("PRAGMA max_page_count = 1073741823")  # space again: writable
        assert len(store.add_alerts(scored(5, offset=999_000), model_version="v1")) == 5


def test_a_registration_killed_while_copying_leaves_no_orphan_copy(seed: Path, tmp_path: Path) -> None:
    """A ``register`` killed outright leaves its staging copy; the next registration removes it (its
    process is gone) and registers whole bundles only."""
    from nadkit.lifecycle.registry import ModelRegistry

    SCRIPT = (
        "import sys, shutil\n"
        "from nadkit.lifecycle import registry\n"
        "def slow(*args, **kwargs):\n"
        "    print('copying', flush=True)\n"
        "    import time; time.sleep(60)\n"
        "registry.shutil.copytree = slow\n"
        "registry.ModelRegistry(sys.argv[1]).register(sys.argv[2])\n"
    )
    root = tmp_path / "models"
    writer = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(root), str(seed)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None and writer.stdout.readline().strip() == "copying"
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    versions = root / "versions"
    assert [p.name for p in versions.iterdir() if p.name.startswith(".register.")]  # the orphan
    registry = ModelRegistry(root)
    assert registry.list() == []  # nothing half-written is registered
    version = registry.register(seed).version
    assert [p.name for p in versions.iterdir() if p.name.startswith(".")] == [".lock"]  # the lock file only
    ModelBundle.load(registry.path(version), key="")


GAP = """
import os, signal, sys
from nadkit.training.bundle import ModelBundle
bundle = ModelBundle.load(sys.argv[1], key="")
real = os.replace
def replace(source, target):
    real(source, target)
    if os.path.basename(str(target)) == ".model.old":
        os.kill(os.getpid(), signal.SIGKILL)  # between the two renames of the overwrite
os.replace = replace
bundle.save(sys.argv[2], overwrite=True, key="")
"""


def _killed_between_the_renames(seed: Path, target: Path) -> None:
    done = subprocess.run([sys.executable, "-c", GAP, str(seed), str(target)], timeout=120)
    assert done.returncode == -signal.SIGKILL
    assert not target.exists() and (target.parent / ".model.old").is_dir()


def test_an_overwrite_killed_between_its_two_renames_is_recovered_by_the_next_load_or_write(
    seed: Path, tmp_path: Path
) -> None:
    """The old bundle sat only at ``.model.old`` with nothing at the target: the next load put it
    back, and so does the next write before it replaces it."""
    target = tmp_path / "model"
    ModelBundle.load(seed, key="").save(target, key="")
    before = (target / "manifest.json").read_bytes()
    _killed_between_the_renames(seed, target)
    ModelBundle.load(target, key="")  # the old one, put back
    assert (target / "manifest.json").read_bytes() == before
    assert not (tmp_path / ".model.old").exists()
    _killed_between_the_renames(seed, target)
    with pytest.raises(NadkitError, match="already exists"):
        ModelBundle.load(seed, key="").save(target, key="")  # put back first: nothing lost to overwrite
    assert (target / "manifest.json").read_bytes() == before
    _killed_between_the_renames(seed, target)
    ModelBundle.load(seed, key="").save(target, overwrite=True, key="")
    ModelBundle.load(target, key="")
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no .old, no killed writer's .part
