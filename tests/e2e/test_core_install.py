"""nadkit with only its core dependencies: the extras' packages (pcap, onnx, service, pictures,
spark) are made unimportable in a child process, which then trains, detects and evaluates on a CSV
through the command line, as a user of `pip install nadkit` would."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from nadkit.simulate import SimulationConfig, simulate_to_directory

ROOT = Path(__file__).resolve().parents[2]
#: the top-level modules the extras bring, with the extra that brings each
EXTRA_MODULES = {
    "nfstream": "pcap",
    "onnx": "onnx",
    "onnxscript": "onnx",
    "onnxruntime": "onnx",
    "fastapi": "service",
    "uvicorn": "service",
    "starlette": "service",
    "datashader": "pictures",
    "pandas": "pictures",
    "pyspark": "spark",
}

CHILD = """
import importlib.abc
import importlib.machinery
import sys

BLOCKED = set(sys.argv[1].split(","))


class Absent(importlib.abc.MetaPathFinder):
    # a spec without a loader: `import x` raises ImportError, as for a package that is not installed,
    # while libraries that merely probe for x with find_spec (and import it lazily) carry on
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            return importlib.machinery.ModuleSpec(name, None)
        return None


sys.meta_path.insert(0, Absent())
sys.argv = ["nadkit", *sys.argv[2:]]
from nadkit.cli import main

main()
"""


def _nadkit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    blocked = ",".join(EXTRA_MODULES)
    return subprocess.run(
        [sys.executable, "-c", CHILD, blocked, *args], capture_output=True, text=True, timeout=600, cwd=cwd
    )


def test_the_core_dependencies_leave_the_extras_out() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {d.split(">")[0].split("<")[0].split("=")[0].split("[")[0] for d in project["dependencies"]}
    extras = project["optional-dependencies"]
    assert not core & {"nfstream", "onnx", "onnxruntime", "fastapi", "uvicorn", "datashader", "pyspark"}
    for module, extra in EXTRA_MODULES.items():
        names = " ".join(extras[extra]).lower()
        assert module.lower() in names or (module == "PIL" and "pillow" in names) or module == "starlette"
    assert set(extras["all"][0].split("[")[1].rstrip("]").split(",")) == {
        "pcap",
        "onnx",
        "service",
        "pictures",
        "spark",
    }


@pytest.mark.slow
def test_train_detect_evaluate_with_the_core_only(tmp_path: Path) -> None:
    days = simulate_to_directory(SimulationConfig(days=2, flows_per_day=4000, seed=5), tmp_path / "flows")
    model = tmp_path / "model"
    trained = _nadkit("train", str(days[0]), str(model), "--model", "ae")
    assert trained.returncode == 0, trained.stderr
    manifest = json.loads((model / "manifest.json").read_text())
    assert "model.onnx" not in manifest["files"]  # no ONNX without the onnx extra: scored on torch
    assert "nadkit[onnx]" in trained.stderr + trained.stdout
    alerts = tmp_path / "alerts.jsonl"
    detected = _nadkit("detect", str(model), str(days[1]), "--out", str(alerts))
    assert detected.returncode == 0, detected.stderr
    assert alerts.stat().st_size > 0
    report = tmp_path / "report"
    evaluated = _nadkit("evaluate", str(model), str(days[1]), "--report", str(report))
    assert evaluated.returncode == 0, evaluated.stderr
    assert (report / "report.html").is_file()


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (("serve", "--db", "alerts.db", "--bundle", "model"), "service"),
        (("plot", "groups", "flows.csv", "-o", "x.png"), "pictures"),
    ],
)
def test_an_extra_that_is_missing_is_named(tmp_path: Path, args: tuple[str, ...], extra: str) -> None:
    (tmp_path / "flows.csv").write_text("time,src,dst\n")
    result = _nadkit(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert f"nadkit[{extra}]" in result.stdout + result.stderr, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
