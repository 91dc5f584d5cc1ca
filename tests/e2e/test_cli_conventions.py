"""One convention for every command, checked on all of them: help that reads at 80 columns (no option
name cut, no `<bool>`, no line wider than the terminal, no command summary cut short), `--json` on
every command that reports something (valid JSON on standard output), and the old spellings of the
arguments still taken."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from typer.core import TyperArgument, TyperOption
from typer.testing import CliRunner

from nadkit.cli import app
from nadkit.cli.application import arguments
from nadkit.errors import NadkitError
from tests.conftest import data_dir
from tests.e2e.test_cli_inputs import assert_one_line_error, nadkit

#: commands that report nothing a script would read: a server and a guided walk-through
NOT_REPORTING = {"serve", "demo"}


def _commands() -> dict[str, object]:
    """Every command of the CLI by its full name (``models available``), groups included."""
    found: dict[str, object] = {}

    def walk(command: object, prefix: tuple[str, ...]) -> None:
        found[" ".join(prefix)] = command
        for name, sub in (getattr(command, "commands", None) or {}).items():
            walk(sub, (*prefix, name))

    walk(typer.main.get_command(app), ())
    return found


COMMANDS = _commands()
LEAVES = sorted(name for name, command in COMMANDS.items() if name and not hasattr(command, "commands"))


def _help(name: str) -> str:
    result = CliRunner().invoke(app, [*name.split(), "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("name", sorted(COMMANDS), ids=lambda n: n or "nadkit")
def test_help_reads_well_at_80_columns(name: str) -> None:
    text = _help(name)
    assert "<bool>" not in text, "a plain flag takes no value"
    assert "…" not in text, "nothing cut short"
    for line in text.splitlines():
        assert len(line) <= 80, f"wider than the terminal: {line!r}"
    summaries = text.split("Commands:")[1].splitlines() if "Commands:" in text else []
    for line in summaries:
        assert not line.rstrip().endswith("..."), f"a command's summary is cut: {line!r}"
    for param in COMMANDS[name].params:  # type: ignore[attr-defined]
        spellings = [*param.opts, *param.secondary_opts] if isinstance(param, TyperOption) else []
        if isinstance(param, TyperArgument):
            spellings = [param.metavar or param.name.upper()]
        for spelling in spellings:
            shown = re.search(rf"(?<![\w-]){re.escape(spelling)}(?![\w-])", text) is not None
            assert shown != bool(param.hidden), f"{spelling} {'shown' if shown else 'missing'} in {name}"


def test_every_reporting_command_has_json() -> None:
    for name in LEAVES:
        options = {opt for param in COMMANDS[name].params for opt in param.opts}  # type: ignore[attr-defined]
        assert ("--json" in options) == (name not in NOT_REPORTING), name


def test_models_available_speaks_to_users() -> None:
    result = nadkit("models", "available")
    assert result.returncode == 0, result.stderr
    assert "``" not in result.stdout and ":mod:" not in result.stdout and "docstring" not in result.stdout
    listed = json.loads(nadkit("models", "available", "--json").stdout)
    assert {"ae", "iforest", "multitask"} <= {row["name"] for row in listed}
    assert all(row["description"] and "`" not in row["description"] for row in listed)


def _stdin(*args: str | Path, given: Path) -> subprocess.CompletedProcess[str]:
    """`nadkit ARGS` with the file ``given`` on standard input."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    command = [sys.executable, "-m", "nadkit", *map(str, args)]
    with given.open() as stdin:
        return subprocess.run(command, stdin=stdin, capture_output=True, text=True, env=env, timeout=300)


def _json(*args: str | Path, given: Path | None = None) -> object:
    result = nadkit(*args, "--json") if given is None else _stdin(*args, "--json", given=given)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_every_reporting_command_prints_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands run one after the other as a user would, each with --json; retrain's JSON is
    checked in tests/test_feedback.py, which has the analysts' feedback it needs."""
    ran = set()

    def run(name: str, *args: str | Path, given: Path | None = None) -> object:
        ran.add(name)
        return _json(*name.split(), *args, given=given)

    assert {"pcap", "nad", "cic"} <= {row["name"] for row in run("formats")}  # type: ignore[union-attr]
    run("models available")
    assert run("models show", "ae")["name"] == "ae"  # type: ignore[index]
    sim = tmp_path / "sim"
    made = run("simulate", "--out", sim, "--days", "2", "--flows-per-day", "1500", "--seed", "3")
    first, last = (Path(f) for f in made["files"])  # type: ignore[index]
    assert run("inspect", first)["rows"] > 0  # type: ignore[index]
    run("split", first, "--out", tmp_path / "split")
    assert run("featurize", first, "--out", tmp_path / "f.parquet")["rows"] > 0  # type: ignore[index]
    trained = run("train", first, "-o", tmp_path / "model", "--model", "iforest")
    assert trained["bundle"] == str(tmp_path / "model") and trained["threshold"]["value"] > 0  # type: ignore[index]
    assert run("detect", tmp_path / "model", last, "-o", tmp_path / "a.jsonl", "--all")["flows"] > 0  # type: ignore[index]
    run("evaluate", tmp_path / "model", last, "-o", tmp_path / "report")
    assert (tmp_path / "report" / "report.html").is_file()
    streamed = run("stream", tmp_path / "model", "-", "--sink", f"file:{tmp_path / 's.jsonl'}", given=last)
    assert streamed["flows_in"] > 0  # type: ignore[index]
    registry = tmp_path / "models"
    assert run("models register", tmp_path / "model", "--models", registry)["version"] == "v1"  # type: ignore[index]
    assert run("models activate", "v1", "--models", registry)["version"] == "v1"  # type: ignore[index]
    assert [v["version"] for v in run("models list", "--models", registry)] == ["v1"]  # type: ignore[union-attr]
    drawn = run("plot groups", last, "-o", tmp_path / "g.png", "-b", tmp_path / "model", "--color", "score")
    assert Path(drawn["out"]).is_file()  # type: ignore[index]
    records = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    alert = next(record for record in records if record["alert"])
    assert Path(
        run("plot alert", tmp_path / "a.jsonl", "--row", str(alert["row"]), "-o", tmp_path / "a.png")["out"]
    ).is_file()  # type: ignore[index]
    captures = data_dir() / "pcaps"
    if captures.is_dir():
        mixed = run(
            "mix-captures", "-o", tmp_path / "mix.parquet", "--benign", captures / "benign" / "ssh.pcap",
            "--attack", captures / "attack" / "icmp-portscan.pcap",
        )  # fmt: skip
        assert {c["label"] for c in mixed["captures"]} == {"normal", "icmp-portscan"}  # type: ignore[index]
    iot23 = data_dir() / "iot23" / "CTU-IoT-Malware-Capture-42-1"
    if iot23.is_dir():
        capture, conn_log = next(iot23.glob("*.pcap")), iot23 / "conn.log.labeled"
        labelled = run("label-flows", capture, "--labels", conn_log, "-o", tmp_path / "l.parquet")
        assert labelled["matched"] > 0 and "normal" in labelled["labels"]  # type: ignore[index]
    monkeypatch.setenv("NADKIT_BUNDLE_KEY", "a test key, long enough to sign with")
    assert run("models sign", tmp_path / "model")["bundle"] == str(tmp_path / "model")  # type: ignore[index]
    without_captures = {"retrain", "mix-captures", "label-flows"}
    assert ran >= set(LEAVES) - NOT_REPORTING - without_captures, "a reporting command is not run"


@pytest.mark.slow
def test_stream_json_leaves_standard_output_to_the_records(tmp_path: Path) -> None:
    sim = tmp_path / "sim"
    nadkit("simulate", "-o", sim, "--days", "1", "--flows-per-day", "300", "--seed", "2")
    day = next(sim.iterdir())
    nadkit("train", day, "-o", tmp_path / "model", "--model", "iforest")
    result = _stdin("stream", tmp_path / "model", "-", "--all", "--json", given=day)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records and all("score" in record for record in records)
    assert '"flows_in"' in result.stderr


@pytest.mark.slow
def test_old_spellings_still_work(tmp_path: Path) -> None:
    """Scripts written for the earlier spellings keep working: output as a last argument,
    `stream --bundle/-b --source/-s`, `retrain --bundle --data OUT`."""
    assert nadkit("simulate", tmp_path / "sim", "--days", "1", "--flows-per-day", "300").returncode == 0
    day = next((tmp_path / "sim").iterdir())
    assert nadkit("train", day, tmp_path / "model", "--model", "iforest").returncode == 0
    old = _stdin("stream", "-b", tmp_path / "model", "-s", "-", "--all", given=day)
    mixed = _stdin("stream", "--bundle", tmp_path / "model", "-", "--all", given=day)
    new = _stdin("stream", tmp_path / "model", "-", "--all", given=day)
    assert old.returncode == mixed.returncode == new.returncode == 0, old.stderr + mixed.stderr + new.stderr
    assert len(old.stdout.splitlines()) == len(new.stdout.splitlines()) == len(mixed.stdout.splitlines()) > 0
    both = nadkit("train", day, tmp_path / "m2", "--out", tmp_path / "m3")
    assert both.returncode == 2 and "give the output once" in both.stderr


def test_a_second_input_file_taken_for_the_output_is_never_replaced(tmp_path: Path) -> None:
    """`nadkit train first.csv second.csv --force` reads the second file as the old-style output:
    it stops with one line before training, and the file is left as it was."""
    assert nadkit("simulate", tmp_path / "sim", "--days", "2", "--flows-per-day", "300").returncode == 0
    first, second = sorted((tmp_path / "sim").iterdir())
    before = second.read_bytes()
    result = nadkit("train", first, second, "--model", "iforest", "--force")
    assert_one_line_error(result, str(second), "is a file", "directory or a glob")
    assert second.is_file() and second.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "sim").iterdir()) == [first.name, second.name]


def test_arguments_fill_the_slots_the_old_options_left() -> None:
    assert arguments("retrain", {"BUNDLE": "v1", "DATA": "d", "--out": None}, ["out", None, None]) == {
        "BUNDLE": "v1",
        "DATA": "d",
        "--out": "out",
    }
    assert arguments("retrain", {"BUNDLE": None, "DATA": None, "--out": "o"}, ["v1", "d", None]) == {
        "BUNDLE": "v1",
        "DATA": "d",
        "--out": "o",
    }
    with pytest.raises(NadkitError, match="missing --out"):
        arguments("retrain", {"BUNDLE": None, "DATA": None, "--out": None}, ["v1", "d", None])
    with pytest.raises(NadkitError, match="unexpected argument x"):
        arguments("stream", {"BUNDLE": "m", "SOURCE": "-"}, ["x", None])
