"""The service killed outright (``kill -9``) while it scores and stores: every alert it acknowledged is in
the store after a restart, none twice, and the store is consistent."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import polars as pl
import pytest

from tests.service.helpers import TOKEN, Kit

pytestmark = pytest.mark.slow


def _start(db: Path, bundle: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "NADKIT_TOKEN": TOKEN, "COLUMNS": "250", "NO_COLOR": "1"}
    command = [
        sys.executable,
        "-m",
        "nadkit",
        "serve",
        "--db",
        str(db),
        "--bundle",
        str(bundle),
        "--port",
        "0",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert process.stdout is not None
    for line in process.stdout:
        found = re.search(r"http://127\.0\.0\.1:\d+", line)
        if found:
            return process, found.group(0)
    process.wait(timeout=30)
    raise RuntimeError("nadkit serve did not start")


def _post(url: str, body: bytes) -> dict | None:
    request = urllib.request.Request(
        f"{url}/v1/score",
        data=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/csv"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.loads(answer.read())
    except (urllib.error.URLError, ConnectionError, OSError):
        return None  # the server died under the request: not acknowledged


def test_kill_9_while_scoring_and_storing_loses_no_acknowledged_alert(kit: Kit, tmp_path: Path) -> None:
    flows = pl.read_csv(kit.test_csv)
    bodies = [flows.slice(start, 400).write_csv().encode() for start in range(0, flows.height, 400)]
    db = tmp_path / "alerts.db"
    rng = random.Random(5)
    acknowledged: set[int] = set()
    kills = 0
    for _ in range(4):
        process, url = _start(db, kit.bundle)
        timer = threading.Timer(rng.uniform(0.5, 3.0), lambda p=process: p.send_signal(signal.SIGKILL))
        timer.start()
        for body in rng.sample(bodies, len(bodies)):
            answer = _post(url, body)
            if answer is None:
                break
            acknowledged.update(r["alert_id"] for r in answer["results"] if r.get("alert_id") is not None)
        timer.cancel()
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        kills += process.returncode == -signal.SIGKILL
    assert kills == 4 and acknowledged
    # a restart replays every body: acknowledged alerts are all there, and nothing is stored twice
    process, url = _start(db, kit.bundle)
    try:
        for body in bodies:
            assert _post(url, body) is not None
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {row[0] for row in connection.execute("SELECT id FROM alerts")}
        twice = connection.execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM alerts GROUP BY model_version, flow_key HAVING COUNT(*) > 1)"
        ).fetchone()[0]
    assert acknowledged <= stored, f"{len(acknowledged - stored)} acknowledged alerts lost"
    assert twice == 0
    leftovers = [p.name for p in tmp_path.rglob("*.part")]
    assert leftovers == []
