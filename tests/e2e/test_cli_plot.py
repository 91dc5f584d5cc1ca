"""`nadkit plot groups` and `nadkit plot alert` on real files, and `nadkit evaluate` putting the
flow-groups picture into its report.

One run goes through a fresh process, as a user runs it; the others call the command line's entry
point in this process (same parsing, same one-line errors and exit codes), which saves starting
Python, torch and the aggregation compiler for every case.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from matplotlib import colors as mcolors
from matplotlib import image

from nadkit.simulate import SimulationConfig, simulate_day
from tests.e2e.test_cli_inputs import assert_one_line_error, nadkit

PORT_SWEEP = "Probing-Port sweep"


def colours_in(path: Path) -> set[tuple[int, int, int]]:
    values = np.rint(image.imread(io.BytesIO(path.read_bytes()), format="png")[..., :3] * 255).astype(int)
    return {tuple(int(v) for v in p) for p in np.unique(values.reshape(-1, 3), axis=0)}


def rgb(colour: str) -> tuple[int, int, int]:
    return tuple(round(255 * c) for c in mcolors.to_rgb(colour))  # type: ignore[return-value]


def sweep_colour(day: Path) -> tuple[int, int, int]:
    """The port sweep's colour in every figure of flows of ``day`` (the report's class colours)."""
    from nadkit.pictures import class_colours

    counts = dict(pl.read_parquet(day)["label"].value_counts().iter_rows())
    assert PORT_SWEEP in counts
    order = sorted(counts, key=lambda n: (n != "normal", -counts[n], n))
    return rgb(class_colours(order)[PORT_SWEEP])


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """Exit code, standard output and standard error of ``nadkit ARGS`` run in this process."""
    from nadkit import cli

    saved = sys.argv
    sys.argv = ["nadkit", *map(str, args)]
    try:
        cli.main()
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    finally:
        sys.argv = saved
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(outcome: tuple[int, str, str], *fragments: str) -> None:
    code, out, err = outcome
    assert code == 2, err + out
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def scored_day(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A simulated day as Parquet, and a fast unsupervised model trained on an earlier day."""
    from nadkit.training.fit import train_model

    root = tmp_path_factory.mktemp("cli-plot")
    config = SimulationConfig(days=2, flows_per_day=12_000, seed=8)
    train, test = root / "train.parquet", root / "day.parquet"
    simulate_day(config, 0).write_parquet(train)
    simulate_day(config, 1).write_parquet(test)
    model = root / "model"
    train_model(train, model, model="ecod")
    return test, model


@pytest.mark.slow
def test_plot_groups_png_with_predictions(scored_day: tuple[Path, Path], tmp_path: Path) -> None:
    day, model = scored_day
    out = tmp_path / "groups.png"
    result = nadkit(
        "plot", "groups", day, "--by", "src_port,dst_port", "--color", "label,prediction", "--bundle", model,
        "--time-bin", "10m", "--width", "500", "--height", "300", "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and out.name in result.stdout
    from nadkit.pictures import ALERT_COLOUR, NORMAL_TINT

    # normal traffic, the port sweep (true label) and the model's alerts (prediction) are all drawn
    assert {rgb(NORMAL_TINT), sweep_colour(day), rgb(ALERT_COLOUR)} <= colours_in(out)
    assert_one_line_error(nadkit("plot", "groups", day, "--out", out), "already exists", "--force")


def test_plot_groups_html_and_bad_input(
    scored_day: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    day, _ = scored_day
    page = tmp_path / "groups.html"
    code, out, err = run(capsys, "plot", "groups", day, "--by", "src_subnet,dst_subnet", "--out", page)
    assert code == 0, err
    text = page.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    assert text.count("data:image/png;base64,") >= 1 and '"legend"' in text

    out = tmp_path / "x.png"
    out.write_bytes(b"mine")
    one_line_error(run(capsys, "plot", "groups", day, "--out", out), "already exists", "--force")
    assert out.read_bytes() == b"mine"
    fresh = tmp_path / "y.png"
    one_line_error(run(capsys, "plot", "groups", day, "--out", fresh, "--color", "score"), "--bundle")
    one_line_error(run(capsys, "plot", "groups", day, "--out", fresh, "--by", "nosuch"), "nosuch")
    one_line_error(run(capsys, "plot", "groups", day, "--out", tmp_path / "y.gif"), ".png or .html")
    one_line_error(run(capsys, "plot", "groups", day, "--out", fresh, "--time-bin", "often"), "--time-bin")
    no_ports = tmp_path / "no_ports.parquet"
    pl.read_parquet(day).select("time", "src", "dst", "proto", "label").write_parquet(no_ports)
    one_line_error(run(capsys, "plot", "groups", no_ports, "--out", fresh), "'spt'", str(no_ports))
    code, _, err = run(capsys, "plot", "groups", no_ports, "--by", "src,dst", "--out", fresh)
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["groups.html", "no_ports.parquet", "x.png", "y.png"]


def test_plot_alert_from_detect_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    record = {
        "row": 42,
        "time": "2020-12-03T07:06:44.000000Z",
        "src": "10.0.0.7",
        "dst": "10.0.0.9",
        "spt": 51000,
        "dpt": 445,
        "proto": "tcp",
        "score": 9.5,
        "threshold": 3.0,
        "alert": True,
        "class": None,
        "top_features": [
            {"feature": "cnt_serv_src", "contribution": 5.0, "value": "300"},
            {"feature": "duration", "contribution": 2.5, "value": "0.0"},
        ],
    }
    alerts = tmp_path / "alerts.jsonl"
    alerts.write_text(json.dumps(dict(record, row=7)) + "\n" + json.dumps(record) + "\n")
    out = tmp_path / "alert.png"
    code, _, err = run(capsys, "plot", "alert", alerts, "--row", "42", "--out", out)
    assert code == 0, err
    assert rgb("#d62728") in colours_in(out)
    one_line_error(run(capsys, "plot", "alert", alerts, "--row", "5", "--out", tmp_path / "b.png"), "row 5")
    one_line_error(run(capsys, "plot", "alert", alerts, "--row", "42", "--out", out), "already exists")


def test_evaluate_report_holds_the_flow_groups_picture(
    scored_day: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    day, model = scored_day
    report = tmp_path / "report"
    code, _, err = run(capsys, "evaluate", model, day, "--report", report)
    assert code == 0, err
    picture = report / "flow_groups.png"
    assert picture.is_file()
    text = (report / "report.html").read_text(encoding="utf-8")
    assert 'id="flow_groups"' in text and "true labels and predictions" in text
    assert sweep_colour(day) in colours_in(picture)
