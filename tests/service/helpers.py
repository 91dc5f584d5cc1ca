"""What the service tests share: a small trained model with its traffic (built once per test
session), a registry and store around it, and a live server on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: a small autoencoder that trains in seconds and separates the simulated attacks well
MODEL_CONFIG = {"epochs": 30, "hidden": [32], "bottleneck": 6, "batch_size": 256, "patience": 30}
FLOWS_PER_DAY = 4000


@dataclass(frozen=True)
class Kit:
    """A trained bundle and the simulated days around it: ``train_day`` (its training traffic, NAD
    CSV), ``test_day`` (unseen traffic, NAD CSV) and ``test_csv`` (the same flows as a canonical
    CSV, the body a client sends)."""

    bundle: Path
    train_day: Path
    test_day: Path
    test_csv: Path

    def test_flows(self) -> pl.DataFrame:
        from nadkit.sources import load_flows

        frame, _ = load_flows(self.test_day)
        return frame


def build_kit(folder: Path) -> Kit:
    """Simulate two days, train the small autoencoder on the first, write the second as CSV."""
    from nadkit.simulate import SimulationConfig, simulate_to_directory
    from nadkit.sources import load_flows
    from nadkit.training.fit import train_model

    days = simulate_to_directory(
        SimulationConfig(days=2, flows_per_day=FLOWS_PER_DAY, seed=3), folder / "days"
    )
    bundle = folder / "model"
    train_model(days[0], bundle, model="ae", config=MODEL_CONFIG, seed=0)
    frame, _ = load_flows(days[1])
    test_csv = folder / "test-day.csv"
    frame.drop("label_original").write_csv(test_csv)
    return Kit(bundle=bundle, train_day=days[0], test_day=days[1], test_csv=test_csv)


def session_kit(factory: pytest.TempPathFactory) -> Kit:
    """The session's kit, built by the first test that asks for it and reused by the others."""
    folder = factory.getbasetemp() / "nadkit-service-kit"
    ready = folder / "ready.json"
    if ready.is_file():
        return Kit(**{k: Path(v) for k, v in json.loads(ready.read_text()).items()})
    folder.mkdir(parents=True, exist_ok=True)
    kit = build_kit(folder)
    ready.write_text(json.dumps({k: str(v) for k, v in kit.__dict__.items()}))
    return kit


def registry_with(kit: Kit, root: Path) -> str:
    """A registry at ``root`` holding the kit's model, active; its version."""
    from nadkit.lifecycle.registry import ModelRegistry

    registry = ModelRegistry(root)
    version = registry.register(kit.bundle).version
    registry.activate(version)
    return version


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def live_server(settings: object) -> Iterator[str]:
    """The service for ``settings`` on 127.0.0.1 in a thread; yields its base URL."""
    import uvicorn

    from nadkit.service import create_app

    app = create_app(settings)  # type: ignore[arg-type]
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextlib.contextmanager
def serve_process(*args: str | Path, token: str | None = TOKEN, cwd: Path | None = None) -> Iterator[str]:
    """``nadkit serve ARGS --port 0`` as a subprocess; yields its base URL, stops it with SIGTERM."""
    import os
    import re
    import signal
    import subprocess
    import sys

    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1"}
    env.pop("NADKIT_TOKEN", None)
    if token is not None:
        env["NADKIT_TOKEN"] = token
    process = subprocess.Popen(
        [sys.executable, "-m", "nadkit", "serve", *map(str, args), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )
    assert process.stdout is not None
    url = None
    seen = []
    for line in process.stdout:
        seen.append(line)
        found = re.search(r"http://127\.0\.0\.1:\d+", line)
        if found:
            url = found.group(0)
            break
    if url is None:
        process.wait(timeout=30)
        raise RuntimeError(
            f"nadkit serve did not start: {''.join(seen)} {process.stderr.read() if process.stderr else ''}"
        )
    try:
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        stderr = process.stderr.read() if process.stderr else ""
        assert "Traceback" not in stderr, stderr
        assert process.returncode == 0, stderr
