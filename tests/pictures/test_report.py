"""The evaluation report: the page holds the header, the metrics and every figure (each also as a
PNG), escapes what the data says, and the figures agree with the numbers behind them."""

from __future__ import annotations

import base64
import io
import json
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from matplotlib import image
from sklearn.metrics import average_precision_score, roc_auc_score

from nadkit.errors import ConfigError
from nadkit.pictures import ALERT_COLOUR, NORMAL_COLOUR, class_colours, spans_decades
from nadkit.pictures.report import FIGURES, FLOW_GROUPS, ReportData, score_figures, write_report
from nadkit.pictures.report.data import prepare
from nadkit.pictures.report.scores import curves
from nadkit.pictures.report.timeline import (
    TIMELINE_FALSE_ALERT_POINTS,
    TIMELINE_NORMAL_POINTS,
    time_axis,
    timeline_sample,
)
from nadkit.version import __version__

IMAGE = '<img src="data:image/png;base64,'


def synthetic(
    rows: int,
    *,
    classes: tuple[str, ...] = ("normal", "dos", "<script>"),
    shares: tuple[float, ...] = (0.9, 0.07, 0.03),
    with_time: bool = True,
    history: bool = True,
    seed: int = 0,
    metrics: dict[str, Any] | None = None,
    **fields: Any,
) -> ReportData:
    """Normal scores ~ N(0, 1); each attack class shifted further up."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(np.array(classes), size=rows, p=np.array(shares) / sum(shares))
    shift = np.zeros(rows)
    for k, name in enumerate(classes[1:], start=1):
        shift[labels == name] = 1.5 * k
    scores = rng.normal(0.0, 1.0, rows) + shift
    threshold = 2.0
    if metrics is None:
        alerts = scores >= threshold
        metrics = {
            "binary": {
                "roc_auc": 0.9876,
                "pr_auc": 0.8123,
                "precision": 0.5,
                "recall": 0.25,
                "f1": 0.3333,
                "false_positive_rate": 0.0123,
                "threshold": threshold,
                "rows": rows,
                "attacks": int((labels != "normal").sum()),
            },
            "per_class": {
                name: {
                    "rows": int((labels == name).sum()),
                    "alerted": int((alerts & (labels == name)).sum()),
                    "rate": float((alerts & (labels == name)).sum() / max((labels == name).sum(), 1)),
                }
                for name in classes
            },
            "confusion": {"labels": ["normal", "attack"], "matrix": [[900, 12], [40, 60]]},
            "nad_score": None,
            "macro_f_beta": float("nan"),
        }
    start = np.datetime64("2024-05-01T08:00:00", "us")
    times = start + np.sort(rng.integers(0, 6 * 3600 * 10**6, rows)).astype("timedelta64[us]")
    curves = {
        "train_loss": [1.0, 0.6, 0.4, 0.35, 0.33],
        "validation_loss": [1.1, 0.7, 0.5, 0.48, 0.49],
        "selection": [0.6, 0.7, 0.8, 0.82, 0.81],
        "best_epoch": 4,
        "epochs_run": 5,
        "seconds": 3.2,
        "stopped": "early stopping",
        "device": "cpu",
    }
    values: dict[str, Any] = {
        "model": "ae",
        "bundle": "models/ae & co",
        "input": "data/<week 2>.parquet",
        "scores": scores,
        "labels": labels,
        "threshold": threshold,
        "threshold_method": "f_beta (beta=1)",
        "metrics": metrics,
        "time": times if with_time else None,
        "history": curves if history else None,
        "extra": {"training data": "sha256:0123abcd", "features": 42},
    }
    values.update(fields)
    return ReportData(**values)


def check_png(path: Path) -> None:
    pixels = image.imread(path)
    height, width = pixels.shape[:2]
    assert 250 <= height <= 3000 and 400 <= width <= 3000, (path.name, pixels.shape)
    assert float(pixels[..., :3].std()) > 0.02, f"{path.name} looks blank"


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(tmp_path_factory.mktemp("reports") / "full", synthetic(3000))


def test_report_holds_header_metrics_and_every_figure(full_report: Path) -> None:
    assert full_report.name == "report.html"
    text = full_report.read_text(encoding="utf-8")
    assert ">ae<" in text
    assert "models/ae &amp; co" in text and "data/&lt;week 2&gt;.parquet" in text
    assert "f_beta (beta=1)" in text and __version__ in text and "sha256:0123abcd" in text
    for value in ("0.9876", "0.8123", "0.5000", "0.2500", "0.0123", "3,000"):
        assert f'<td class="value">{value}</td>' in text, value
    # nad_score None and macro F-beta NaN are shown as a dash
    assert text.count('<td class="value">–</td>') >= 2
    assert text.count(IMAGE) == len(FIGURES) == 7
    assert "http://" not in text and "https://" not in text
    assert 'src="' not in text.replace(IMAGE, "")
    assert "<script" not in text.lower(), "class names must be escaped, and no script is needed"
    assert "&lt;script&gt;" in text


def test_every_figure_is_a_readable_png_also_embedded(full_report: Path) -> None:
    directory = full_report.parent
    text = full_report.read_text(encoding="utf-8")
    embedded = re.findall(r'data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    for name in FIGURES:
        path = directory / f"{name}.png"
        assert path.is_file(), name
        check_png(path)
        assert base64.b64encode(path.read_bytes()).decode() in embedded
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [*(f"{name}.png" for name in FIGURES), "metrics.json", "report.html"]
    )


def test_metrics_json_is_strict_json_with_the_header(full_report: Path) -> None:
    document = json.loads((full_report.parent / "metrics.json").read_text(encoding="utf-8"))
    assert document["model"] == "ae" and document["rows"] == 3000
    assert document["nadkit_version"] == __version__
    assert document["metrics"]["binary"]["roc_auc"] == 0.9876
    assert document["metrics"]["macro_f_beta"] is None  # NaN written as null
    assert document["training"]["best_epoch"] == 4


def test_single_class_without_time_history_or_metrics(tmp_path: Path) -> None:
    """The bare minimum: only normal flows, no time, no training history, no metrics; a supervised
    model's predictions give the confusion matrix. It replaces an existing folder when asked to."""
    target = tmp_path / "report"
    target.mkdir()
    (target / "old.txt").write_text("stale")
    data = synthetic(600, classes=("normal",), shares=(1.0,), with_time=False, history=False, metrics={})
    # a class name that would read as a formula in figure text
    predicted = np.where(np.random.default_rng(3).random(600) < 0.9, "normal", "cost $x_1$ & more")
    path = write_report(target, replace(data, predicted=predicted), overwrite=True)
    text = path.read_text(encoding="utf-8")
    assert not (target / "old.txt").exists()
    assert text.count("needs both normal and attack flows") == 2  # ROC and PR
    assert "no training history" in text
    assert "row order" in text
    assert text.count(IMAGE) == 4
    for name in ("roc", "pr", "training"):
        assert not (target / f"{name}.png").exists()
    for name in ("score_histogram", "score_timeline", "confusion", "per_class"):
        check_png(target / f"{name}.png")
    # every metric is missing: each is a dash, never "nan" or "None"
    visible = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
    assert visible.count('<td class="value">–</td>') >= 11
    assert not re.search(r"\b(nan|NaN|None)\b", visible)


def test_existing_folder_is_kept_without_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "kept"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=re.escape(str(target))):
        write_report(target, synthetic(100))
    assert (target / "notes.txt").read_text() == "mine"
    # an existing empty folder passes the folder check (here the data is refused next)
    empty = tmp_path / "empty"
    empty.mkdir()
    data = synthetic(100)
    with pytest.raises(ConfigError, match="same length"):
        write_report(empty, replace(data, labels=data.labels[:10]))
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        write_report(a_file, synthetic(100), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file", "kept"]


def test_inconsistent_inputs_are_refused(tmp_path: Path) -> None:
    data = synthetic(100)
    with pytest.raises(ConfigError, match="same length"):
        write_report(tmp_path / "a", replace(data, labels=data.labels[:50]))
    with pytest.raises(ConfigError, match="time"):
        write_report(tmp_path / "b", replace(data, time=data.time[:10]))
    with pytest.raises(ConfigError, match="no flows"):
        write_report(
            tmp_path / "c", replace(data, scores=np.empty(0), labels=np.empty(0, dtype=str), time=None)
        )
    with pytest.raises(ConfigError, match="threshold"):
        write_report(tmp_path / "d", replace(data, threshold=float("nan")))
    assert list(tmp_path.iterdir()) == []


def test_curves_agree_with_sklearn() -> None:
    data = synthetic(5000, seed=5)
    prepared = prepare(data)
    found = curves(prepared)
    truth = np.asarray(data.labels) != "normal"
    assert found.roc_auc == pytest.approx(roc_auc_score(truth, data.scores), abs=1e-12)
    assert found.average_precision == pytest.approx(average_precision_score(truth, data.scores), abs=1e-12)


def test_colours_are_stable_and_normal_is_blue_grey() -> None:
    colours = class_colours(["normal", "dos", "scan"], ["scan", "exfiltration"])
    assert colours["normal"] == NORMAL_COLOUR
    assert len(set(colours.values())) == 4
    prepared = prepare(synthetic(1000))
    assert prepared.class_names[0] == "normal"  # normal first, then attacks by size
    assert prepared.colours["dos"] != prepared.colours["<script>"]


def test_log_scale_only_for_positive_scores_spanning_decades() -> None:
    rng = np.random.default_rng(0)
    assert spans_decades(np.exp(rng.normal(0, 3, 10_000)), 1.0)
    assert not spans_decades(rng.normal(0, 1, 10_000), 1.0)
    assert not spans_decades(rng.uniform(1, 2, 10_000), 1.5)
    assert not spans_decades(np.exp(rng.normal(0, 3, 10_000)), -1.0)


def test_timeline_keeps_attacks_and_false_alarms_and_samples_the_rest() -> None:
    data = synthetic(200_000, shares=(0.98, 0.015, 0.005), history=False)
    prepared = prepare(data)
    _, usable = time_axis(prepared)
    sample = timeline_sample(prepared, usable)
    attacks = prepared.is_attack
    false_alarms = ~attacks & prepared.alerts
    quiet = ~attacks & ~prepared.alerts
    assert attacks[sample].sum() == attacks.sum()
    assert false_alarms[sample].sum() == min(int(false_alarms.sum()), TIMELINE_FALSE_ALERT_POINTS)
    assert quiet[sample].sum() == TIMELINE_NORMAL_POINTS
    assert len(np.unique(sample)) == len(sample)


@pytest.mark.slow
def test_a_million_rows_render_in_seconds(tmp_path: Path) -> None:
    data = synthetic(1_000_000, shares=(0.97, 0.02, 0.01), seed=9)
    # CPU time, not wall time: a busy machine must not fail this
    started = time.process_time()
    path = write_report(tmp_path / "big", data)
    elapsed = time.process_time() - started
    assert elapsed < 15.0, f"a 1M-row report took {elapsed:.1f} s of CPU"
    assert path.read_text(encoding="utf-8").count(IMAGE) == 7
    timeline = tmp_path / "big" / "score_timeline.png"
    check_png(timeline)
    assert timeline.stat().st_size < 2_000_000


def _flows(data: ReportData, seed: int = 0) -> pl.DataFrame:
    """Scored flows behind ``data``: attacks of one class come from one source port to many ports."""
    rng = np.random.default_rng(seed)
    rows = len(data.scores)
    labels = np.asarray(data.labels)
    spt = rng.integers(30_000, 60_000, rows)
    dpt = rng.choice([53, 80, 443], rows)
    dos = labels == "dos"
    spt[dos], dpt[dos] = 4444, rng.integers(1, 1024, int(dos.sum()))
    return pl.DataFrame(
        {"time": pl.Series(data.time).dt.replace_time_zone("UTC"), "spt": spt, "dpt": dpt}
    ).with_columns(pl.Series("score", data.scores))


def test_flow_groups_figure_shows_labels_beside_predictions(tmp_path: Path) -> None:
    data = synthetic(2000)
    data = replace(data, flows=_flows(data))
    path = write_report(tmp_path / "groups", data)
    text = path.read_text(encoding="utf-8")
    assert text.count(IMAGE) == len(FIGURES) + 1
    assert f'id="{FLOW_GROUPS}"' in text and "true labels and predictions" in text
    assert "<script" not in text.lower()
    picture = tmp_path / "groups" / f"{FLOW_GROUPS}.png"
    check_png(picture)
    pixels = np.rint(image.imread(picture)[..., :3] * 255).astype(int).reshape(-1, 3)
    found = {tuple(int(v) for v in p) for p in np.unique(pixels, axis=0)}
    prepared = prepare(data)

    def rgb(colour: str) -> tuple[int, int, int]:
        return tuple(int(colour[1 + i : 3 + i], 16) for i in (0, 2, 4))  # type: ignore[return-value]

    # the report's own class colours; an unsupervised model's prediction is "alert"
    assert rgb(prepared.colours["dos"]) in found and rgb(prepared.colours["<script>"]) in found
    assert rgb(ALERT_COLOUR) in found

    # a supervised model's predicted classes are drawn in the same colours as the true classes
    supervised = replace(data, predicted=np.asarray(data.labels))
    write_report(tmp_path / "supervised", supervised)
    pixels = np.rint(image.imread(tmp_path / "supervised" / f"{FLOW_GROUPS}.png")[..., :3] * 255)
    found = {tuple(int(v) for v in p) for p in np.unique(pixels.astype(int).reshape(-1, 3), axis=0)}
    assert rgb(prepared.colours["dos"]) in found and rgb(ALERT_COLOUR) not in found


def test_flow_groups_need_matching_rows_and_a_grouping_column(tmp_path: Path) -> None:
    data = synthetic(500)
    flows = _flows(data)
    with pytest.raises(ConfigError, match="flows must have one row per flow"):
        write_report(tmp_path / "a", replace(data, flows=flows.head(10)))
    path = write_report(tmp_path / "b", replace(data, flows=flows.select("score")))
    text = path.read_text(encoding="utf-8")
    assert "no ports, addresses, protocol or application" in text
    assert text.count(IMAGE) == len(FIGURES)


def test_score_figures_on_their_own() -> None:
    data = synthetic(1500)
    figures = score_figures(data.scores, data.labels, data.threshold, time=data.time)
    assert sorted(figures) == ["score_histogram", "score_timeline"]
    for png in figures.values():
        pixels = image.imread(io.BytesIO(png), format="png")
        assert pixels.shape[1] >= 400 and float(pixels[..., :3].std()) > 0.02
    assert score_figures(np.array([np.nan]), np.array(["normal"]), 1.0) == {}
