"""The flow-groups picture, its interactive page and the alert chart: the pictures carry what they
claim to show.

One simulated day is drawn; the tests look up where a known port sweep and a quiet stretch of normal
traffic fall in the image and read the pixel colours there.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from matplotlib import colors as mcolors
from matplotlib import image

from nadkit.errors import ConfigError, SchemaError
from nadkit.pictures import (
    ALERT,
    NORMAL_COLOUR,
    NORMAL_TINT,
    check_options,
    class_colours,
    draw_groups,
    groups_html,
    load_alert,
    parse_by,
    parse_duration,
    plot_alert,
    predicted_classes,
    render_groups,
    write_alert,
    write_groups,
)
from nadkit.simulate import SimulationConfig, simulate_day
from nadkit.sources import load_flows

PORT_SWEEP = "Probing-Port sweep"


def rgb(colour: str) -> tuple[int, int, int]:
    return tuple(round(255 * c) for c in mcolors.to_rgb(colour))  # type: ignore[return-value]


def pixels(png: bytes) -> np.ndarray:
    """The image as (height, width, 3) integers 0-255."""
    values = image.imread(io.BytesIO(png), format="png")
    return np.rint(values[..., :3] * 255).astype(np.int64)


def colour_at(picture: np.ndarray, where: tuple[int, int]) -> tuple[int, int, int]:
    row, column = where
    return tuple(int(v) for v in picture[row, column])  # type: ignore[return-value]


@pytest.fixture(scope="module")
def day() -> pl.DataFrame:
    return simulate_day(SimulationConfig(days=1, flows_per_day=30_000, seed=5), 0)


@pytest.fixture(scope="module")
def sweep(day: pl.DataFrame) -> dict:
    """The largest port sweep: one source and destination pair probing many destination ports."""
    episodes = (
        day.filter(pl.col("label") == PORT_SWEEP)
        .group_by("src", "dst")
        .agg(
            pl.len().alias("flows"),
            pl.col("dpt").n_unique().alias("ports"),
            pl.col("time").min().alias("start"),
            pl.col("time").max().alias("end"),
        )
        .sort("flows", descending=True)
    )
    assert episodes.height, "the simulated day has no port sweep"
    found = episodes.row(0, named=True)
    assert found["ports"] >= 20
    return found


def quiet_normal(day: pl.DataFrame, margin: timedelta) -> dict:
    """A flow of the busiest normal-only source and destination pair, at a time with no attack
    anywhere within ``margin``."""
    attacks = day.filter(pl.col("label") != "normal")
    moments = np.sort(attacks["time"].dt.epoch("us").to_numpy())
    times = day["time"].dt.epoch("us").to_numpy()
    after = np.searchsorted(moments, times).clip(1, len(moments) - 1)
    distance = np.minimum(np.abs(times - moments[after - 1]), np.abs(moments[after] - times))
    attack_pairs = attacks.select("src", "dst").unique()
    quiet = (
        day.filter(pl.Series(distance > margin.total_seconds() * 1e6) & (pl.col("label") == "normal"))
        .join(attack_pairs, on=["src", "dst"], how="anti")
        .with_columns(pl.len().over("src", "dst").alias("flows"))
        .sort("flows", "time", descending=[True, False])
    )
    assert quiet.height, "no quiet normal traffic found"
    return quiet.row(0, named=True)


def test_port_sweep_is_drawn_in_its_class_colour_and_quiet_traffic_in_normal_colour(
    day: pl.DataFrame, sweep: dict
) -> None:
    picture = draw_groups(day, by="src,dst", color="label", time_bin="5m", width=800, height=500)
    image_pixels = pixels(picture.png)
    colours = picture.colours
    assert colours["normal"] == NORMAL_TINT
    # the report's colours: the same palette, normal first, attacks by frequency
    counts = day["label"].value_counts().rows()
    order = sorted((n for n, _ in counts), key=lambda n: (n != "normal", -dict(counts)[n], n))
    assert {k: v for k, v in class_colours(order).items() if k != "normal"} == {
        k: v for k, v in colours.items() if k != "normal"
    }
    middle = sweep["start"] + (sweep["end"] - sweep["start"]) / 2
    for moment in (sweep["start"], middle, sweep["end"]):
        where = picture.locate((sweep["src"], sweep["dst"]), moment)
        assert colour_at(image_pixels, where) == rgb(colours[PORT_SWEEP]), moment
    quiet = quiet_normal(day, timedelta(minutes=5))
    where = picture.locate((quiet["src"], quiet["dst"]), quiet["time"])
    assert colour_at(image_pixels, where) == rgb(NORMAL_TINT)
    # the picture area is white where there are no flows, and the class colours are all there
    left, top, width, height = picture.panels[0]
    area = image_pixels[top : top + height, left : left + width].reshape(-1, 3)
    found = {tuple(int(v) for v in p) for p in np.unique(area, axis=0)}
    assert (255, 255, 255) in found
    for name in colours:
        assert rgb(colours[name]) in found, name


def test_sweep_shows_as_a_band_across_the_port_pair_picture(day: pl.DataFrame, sweep: dict) -> None:
    """By port pair in arbitrary order, the sweep's many new port pairs spread over the whole width:
    the sweep's time slot holds the sweep colour in many columns, the rows far from attacks none."""
    picture = draw_groups(day, by="src_port,dst_port", color="label", time_bin="2m", width=600, height=360)
    image_pixels = pixels(picture.png)
    left, _, width, _ = picture.panels[0]
    target = np.array(rgb(picture.colours[PORT_SWEEP]))
    middle = sweep["start"] + (sweep["end"] - sweep["start"]) / 2
    spt = day.filter(
        (pl.col("label") == PORT_SWEEP) & (pl.col("src") == sweep["src"]) & (pl.col("dst") == sweep["dst"])
    ).row(0, named=True)
    row, _ = picture.locate((spt["spt"], spt["dpt"]), middle)
    band = (image_pixels[row, left : left + width] == target).all(axis=1)
    assert band.sum() >= 10, f"only {band.sum()} sweep pixels across the sweep's row"
    runs = np.flatnonzero(band)
    assert runs.max() - runs.min() > width / 2, "the sweep does not span the picture"
    quiet = quiet_normal(day, timedelta(minutes=10))
    quiet_row, _ = picture.locate((quiet["spt"], quiet["dpt"]), quiet["time"])
    assert not (image_pixels[quiet_row, left : left + width] == target).all(axis=1).any()


def test_predictions_side_by_side_show_a_faulty_model_as_noise(day: pl.DataFrame, sweep: dict) -> None:
    perfect = day.with_columns(pl.col("label").alias("class"))
    picture = draw_groups(
        perfect, by="src,dst", color="label,prediction", time_bin="5m", width=400, height=300
    )
    image_pixels = pixels(picture.png)
    (l1, t1, w1, h1), (l2, t2, w2, h2) = picture.panels
    assert (w1, h1) == (w2, h2) == (400, 300) and t1 == t2 and l2 > l1 + w1
    # a perfect model repeats the true-label picture
    assert np.array_equal(image_pixels[t1 : t1 + h1, l1 : l1 + w1], image_pixels[t2 : t2 + h2, l2 : l2 + w2])
    where = picture.locate((sweep["src"], sweep["dst"]), sweep["start"], panel=1)
    assert colour_at(image_pixels, where) == rgb(picture.colours[PORT_SWEEP])

    # a faulty model predicts classes at random: attack colours everywhere, bands nowhere
    rng = np.random.default_rng(1)
    names = np.array(sorted(day["label"].unique().to_list()))
    faulty = day.with_columns(pl.Series("class", rng.choice(names, day.height)))
    picture = draw_groups(
        faulty, by="src,dst", color="label,prediction", time_bin="5m", width=400, height=300
    )
    image_pixels = pixels(picture.png)
    normal_or_blank = np.array([rgb(NORMAL_TINT), (255, 255, 255)])

    def attack_rows(left: int, top: int, width: int, height: int) -> int:
        area = image_pixels[top : top + height, left : left + width]
        attack = ~(area[:, :, None, :] == normal_or_blank[None, None]).all(axis=-1).any(axis=-1)
        return int(attack.any(axis=1).sum())

    truth_rows, faulty_rows = attack_rows(*picture.panels[0]), attack_rows(*picture.panels[1])
    assert faulty_rows > 0.9 * 300 and truth_rows < 0.4 * 300, (truth_rows, faulty_rows)


def test_unsupervised_predictions_are_alerts_and_scores_use_a_colour_map(
    day: pl.DataFrame, sweep: dict
) -> None:
    rng = np.random.default_rng(2)
    attack = (day["label"] != "normal").to_numpy()
    scores = np.where(attack, 20.0 + rng.random(day.height), rng.random(day.height))
    scored = day.with_columns(
        pl.Series("score", scores),
        pl.lit(10.0).alias("threshold"),
        pl.Series("alert", scores >= 10.0),
        pl.lit(None, dtype=pl.String).alias("class"),
    )
    assert set(predicted_classes(scored).unique().to_list()) == {"normal", ALERT}
    picture = draw_groups(
        scored, by="src,dst", color="prediction,score", time_bin="5m", width=400, height=300, model="ae"
    )
    image_pixels = pixels(picture.png)
    assert set(picture.colours) == {"normal", ALERT}
    where = picture.locate((sweep["src"], sweep["dst"]), sweep["start"], panel=0)
    assert colour_at(image_pixels, where) == rgb(picture.colours[ALERT])
    red, green, blue = colour_at(
        image_pixels, picture.locate((sweep["src"], sweep["dst"]), sweep["start"], 1)
    )
    assert red > 100 and red > green + 40 and red > blue + 40, "high scores are drawn in warm colours"
    quiet = quiet_normal(day, timedelta(minutes=5))
    red, green, blue = colour_at(image_pixels, picture.locate((quiet["src"], quiet["dst"]), quiet["time"], 1))
    assert blue > red, "scores below the threshold are drawn in blue-greys"


def test_subnets_few_groups_named_under_their_columns_and_row_order_without_time(day: pl.DataFrame) -> None:
    frame = pl.DataFrame(
        {
            "src": ["10.0.1.5", "10.0.1.9", "10.0.2.7", "2001:db8::1", "junk"] * 40,
            "dst": ["192.168.7.1"] * 200,
            "label": ["normal", "scan", "normal", "normal", "normal"] * 40,
        }
    )
    picture = draw_groups(frame, by="src_subnet,dst_subnet", color="label", width=300, height=200)
    keys = picture.groups.select("src_subnet").to_series().to_list()
    assert sorted(keys) == ["10.0.1.0/24", "10.0.2.0/24", "2001:db8::/64", "junk"]
    # 10.0.1.0/24 holds one normal and one scan flow per five rows: a tie, drawn as the attack
    image_pixels = pixels(picture.png)
    where = picture.locate(("10.0.1.0/24", "192.168.7.0/24"), 100)
    assert colour_at(image_pixels, where) == rgb(picture.colours["scan"])
    sixteen = draw_groups(frame, by="src_subnet/16", color="label", width=300, height=200)
    assert "10.0.0.0/16" in sixteen.groups["src_subnet/16"].to_list()


def test_options_and_bad_input_give_clear_errors(day: pl.DataFrame) -> None:
    assert parse_by(" src_port, dst_port ") == ("src_port", "dst_port")
    assert parse_duration("5m") == 300 and parse_duration("1h") == 3600 and parse_duration(30) == 30
    with pytest.raises(ConfigError, match="time-bin"):
        parse_duration("soon")
    with pytest.raises(ConfigError, match="twice"):
        parse_by("src,src")
    no_ports = day.drop("spt", "dpt")
    with pytest.raises(SchemaError, match="'spt'"):
        render_groups(no_ports, by="src_port,dst_port")
    with pytest.raises(ConfigError, match="--bundle"):
        render_groups(day, color="prediction")
    with pytest.raises(ConfigError, match="unknown colouring"):
        render_groups(day, color="rainbow")
    with pytest.raises(ConfigError, match="slots"):
        render_groups(day, time_bin="1s")
    with pytest.raises(ConfigError, match="width"):
        render_groups(day, width=5)
    with pytest.raises(ConfigError, match="no flows"):
        render_groups(day, start="2030-01-01T00:00")


def test_time_window_and_png_file_written_atomically(day: pl.DataFrame, sweep: dict, tmp_path: Path) -> None:
    source = tmp_path / "day.parquet"
    day.write_parquet(source)
    # the flows as the picture needs them: only its columns are read
    flows, _ = load_flows(source, columns=("time", "label", "src", "dst"))
    assert sorted(flows.columns) == ["dst", "label", "src", "time"] and flows.height == day.height
    out = tmp_path / "sweep.png"
    start = (sweep["start"] - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S")
    end = (sweep["end"] + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S")
    write_groups(flows, out, by="src,dst", start=start, end=end, width=300, height=200, source=source)
    assert out.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ConfigError, match="already exists"):
        write_groups(flows, out, by="src,dst")
    with pytest.raises(ConfigError, match=r"\.png or \.html"):
        write_groups(flows, tmp_path / "x.jpg")
    page = write_groups(flows, tmp_path / "sweep.html", by="src,dst", width=300, height=200, levels=0)
    assert page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["day.parquet", "sweep.html", "sweep.png"]


def test_options_are_checked_before_any_flow_is_read() -> None:
    assert check_options(by="src_subnet/16,dst", color="label,score") == (
        ("src_subnet/16", "dst"),
        ("label", "score"),
    )
    for options, message in (
        ({"by": "src_subnet/40"}, "prefix length"),
        ({"color": "label,label"}, "twice"),
        ({"width": 50}, "--width"),
        ({"time_bin": "soon"}, "--time-bin"),
        ({"order": "random"}, "--order"),
        ({"start": "2021-01-02", "end": "2021-01-01"}, "later than --start"),
    ):
        with pytest.raises(ConfigError, match=message):
            check_options(**options)


def _page_data(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="picture-data">(.*?)</script>', page, re.S)
    assert match
    return json.loads(match.group(1).replace("<\\/", "</"))


def test_interactive_page_zoom_levels_and_no_external_references(day: pl.DataFrame) -> None:
    perfect = day.with_columns(pl.col("label").alias("class"))
    page = groups_html(perfect, by="src_port,dst_port", color="label,prediction", levels=2, width=400,
                       height=300)  # fmt: skip
    assert "http://" not in page and "https://" not in page and "//cdn" not in page
    assert not re.search(r'\b(src|href)="(?!data:)', page)
    data = _page_data(page)
    assert data["panels"] == ["true label", "model prediction"]
    assert len(data["levels"]) == 3  # many more groups than pixels: every level is worth having
    for level, info in enumerate(data["levels"]):
        for panel in info["tiles"]:
            assert len(panel) == 2**level and all(len(row) == 2**level for row in panel)
    tile = data["levels"][0]["tiles"][0][0][0]
    png = base64.b64decode(tile.removeprefix("data:image/png;base64,"))
    assert png.startswith(b"\x89PNG")
    names = [entry["name"] for entry in data["legend"]]
    assert names[0] == "normal" and PORT_SWEEP in names
    node = shutil.which("node")
    if node:
        script = page.rsplit("<script>", 1)[1].split("</script>", 1)[0]
        checked = subprocess.run([node, "--check", "-"], input=script, text=True, capture_output=True)
        assert checked.returncode == 0, checked.stderr


def test_alert_chart_shows_the_contributions(tmp_path: Path) -> None:
    record = {
        "row": 17,
        "time": "2020-12-03T07:06:44.000000Z",
        "src": "24.195.234.220",
        "dst": "10.91.170.159",
        "spt": 41000,
        "dpt": 22,
        "proto": "tcp",
        "score": 12.5,
        "threshold": 4.0,
        "alert": True,
        "class": None,
        "top_features": [
            {"feature": "cnt_serv_src", "contribution": 6.0, "value": "512"},
            {"feature": "duration", "contribution": 3.5, "value": "0.0"},
            {"feature": "in_bytes", "contribution": -0.5, "value": "0"},
        ],
    }
    png = plot_alert(record)
    picture = pixels(png)
    found = {tuple(int(v) for v in p) for p in np.unique(picture.reshape(-1, 3), axis=0)}
    assert rgb("#d62728") in found and rgb(NORMAL_COLOUR) in found and rgb("#b0b7bf") in found
    alerts = tmp_path / "alerts.jsonl"
    other = dict(record, row=3)
    alerts.write_text(json.dumps(other) + "\n" + json.dumps(record) + "\n")
    assert load_alert(alerts, 17)["score"] == 12.5
    with pytest.raises(ConfigError, match="no alert for row 99"):
        load_alert(alerts, 99)
    with pytest.raises(ConfigError, match="not an alert"):
        plot_alert(dict(record, top_features=None))
    parquet = tmp_path / "alerts.parquet"
    pl.DataFrame([record, other]).with_columns(
        pl.lit(datetime(2020, 12, 3, 7, 6, 44, tzinfo=UTC)).alias("time")
    ).write_parquet(parquet)
    assert load_alert(parquet, 17)["top_features"][0]["feature"] == "cnt_serv_src"
    out = write_alert(load_alert(parquet, 17), tmp_path / "alert.png")
    assert out.read_bytes().startswith(b"\x89PNG")
    with pytest.raises(ConfigError, match="already exists"):
        write_alert(record, out)
    with pytest.raises(ConfigError, match=r"must be \.png"):
        write_alert(record, tmp_path / "alert.html")
