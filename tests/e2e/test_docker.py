"""The container image: built from the Dockerfile, it runs nadkit and the service answers /health.
Needs a reachable Docker daemon (and network access for the image's packages); skipped otherwise."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "nadkit:test"

pytestmark = pytest.mark.slow


def _daemon() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


@pytest.fixture(scope="module")
def image() -> str:
    if not _daemon():
        pytest.skip("no Docker daemon reachable: the image is built where one runs")
    built = subprocess.run(
        ["docker", "build", "-t", IMAGE, str(ROOT)], capture_output=True, text=True, timeout=3000
    )
    assert built.returncode == 0, built.stderr[-4000:]
    return IMAGE


def test_the_image_runs_nadkit(image: str) -> None:
    result = subprocess.run(["docker", "run", "--rm", image, "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and "nadkit" in result.stdout


def test_the_service_answers_health(image: str, tmp_path: Path) -> None:
    from nadkit.simulate import SimulationConfig, simulate
    from nadkit.training.fit import fit

    flows = simulate(SimulationConfig(days=1, flows_per_day=2000, seed=2))
    fit(flows, model="iforest").save(tmp_path / "model", onnx=False)
    tmp_path.chmod(0o777)  # the image runs as an unprivileged user
    name = f"nadkit-test-{int(time.time())}"
    started = subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "--name",
            name,
            "-e",
            "NADKIT_TOKEN=" + "t" * 24,
            "-p",
            "127.0.0.1::8080",
            image,
            "serve",
            "--db",
            "/data/alerts.db",
            "--models",
            "/data/models",
            "--host",
            "0.0.0.0",
            "--port",
            "8080",
            "--insecure-localhost",
        ],
        capture_output=True,
        text=True,
    )
    try:
        assert started.returncode == 0, started.stderr
        port = subprocess.run(["docker", "port", name, "8080"], capture_output=True, text=True).stdout
        address = port.strip().splitlines()[0]
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://{address}/health", timeout=5) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline:
                    logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True)
                    raise AssertionError(logs.stdout[-2000:] + logs.stderr[-2000:]) from None
                time.sleep(2)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)
