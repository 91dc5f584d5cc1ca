"""Shared fixtures. Real data comes from ../shared/data or $NADKIT_DATA_DIR; tests that need it skip,
with the reason, when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """Where the shared real datasets live."""
    return Path(os.environ.get("NADKIT_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data folder; skips the test with a clear reason when it is missing."""
    path = data_dir()
    if not path.is_dir():
        pytest.skip(f"real datasets not found at {path} (set NADKIT_DATA_DIR to their folder)")
    return path


def shared_file(relative: str) -> Path:
    """A file under the shared data folder, or a skip naming it."""
    path = data_dir() / relative
    if not path.exists():
        pytest.skip(f"real dataset file {path} not found (set NADKIT_DATA_DIR)")
    return path


@pytest.fixture(scope="session", autouse=True)
def _single_torch_thread() -> None:
    """The test networks are tiny: one thread avoids thread start-up and contention costs, which
    dominate their run time on small machines."""
    import torch

    torch.set_num_threads(1)


#: skip reasons that mean a real component (browser, NetFlow tools, Java, the shared data) is missing
MISSING_COMPONENT = (
    "not installed",
    "not found",
    "no Chromium",
    "no Java runtime",
    "no captures under",
)


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """In CI (``CI=true``) a test skipped because a real component is missing fails instead, so a
    green run always means the browser, NetFlow, Spark and real-data tests ran."""
    outcome = yield
    report = outcome.get_result()
    if not (_in_ci() and report.skipped and isinstance(report.longrepr, tuple)):
        return
    reason = str(report.longrepr[2])
    if any(marker in reason for marker in MISSING_COMPONENT):
        report.outcome = "failed"
        report.longrepr = f"CI must run this test, but: {reason.removeprefix('Skipped: ')}"


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # type: ignore[no-untyped-def]
    """One line at the end naming what was skipped because a real component is missing, and why."""
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        if not isinstance(report.longrepr, tuple):
            continue
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        if any(marker in reason for marker in (*MISSING_COMPONENT, "no Docker daemon")):
            reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        total = sum(reasons.values())
        listed = "; ".join(f"{reason} ({count})" for reason, count in sorted(reasons.items()))
        terminalreporter.write_line(
            f"{total} test(s) skipped because a component is missing (see make system-packages): {listed}",
            yellow=True,
        )
