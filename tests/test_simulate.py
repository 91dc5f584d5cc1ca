"""The simulated enterprise network: determinism, schema, realism, attack shapes, day-to-day shift,
the NAD CSV round trip and the directory writer."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeClassifier

from nadkit.errors import ConfigError, NadkitError
from nadkit.features.counters import COUNTER_COLUMNS, traffic_counters
from nadkit.schema import CANONICAL, validate
from nadkit.simulate import (
    APPS,
    ATTACK_LABELS,
    COLUMNS,
    NAD_LABELS,
    SimulationConfig,
    driver,
    simulate,
    simulate_day,
    simulate_to_directory,
    write_nad_csv,
)
from nadkit.simulate.attacks import ATTACK_GENERATORS
from nadkit.simulate.config import ATTACK_SHARES, NORMAL_MIX
from nadkit.simulate.normal import NORMAL_GENERATORS
from nadkit.sources import load_flows
from nadkit.sources.nad import COLUMNS as NAD_COLUMNS

CONFIG = SimulationConfig(days=3, flows_per_day=20_000, seed=7)
SMALL = SimulationConfig(days=2, flows_per_day=2_000, seed=3)


@pytest.fixture(scope="module")
def flows() -> pl.DataFrame:
    """Three days (Thursday to Saturday) of a small network."""
    return simulate(CONFIG)


@pytest.fixture(scope="module")
def days(flows: pl.DataFrame) -> list[pl.DataFrame]:
    return flows.partition_by("day", maintain_order=True)


def _slash24(column: str) -> pl.Expr:
    return pl.col(column).str.replace(r"\.\d+$", "")


def _is_private(address: str) -> bool:
    return ipaddress.ip_address(address).is_private


# -- determinism --------------------------------------------------------------------------------------


def test_same_config_gives_identical_frames(flows: pl.DataFrame) -> None:
    assert simulate(CONFIG).equals(flows)


def test_different_seeds_differ() -> None:
    first = simulate(SMALL)
    second = simulate(SimulationConfig(days=2, flows_per_day=2_000, seed=4))
    assert not first.equals(second)
    assert first["src"].n_unique() > 10 and second["src"].n_unique() > 10
    assert set(first["src"].unique()) != set(second["src"].unique())


def test_a_day_does_not_depend_on_the_number_of_days(days: list[pl.DataFrame]) -> None:
    assert simulate_day(CONFIG, 1).equals(days[1])
    shorter = SimulationConfig(days=2, flows_per_day=20_000, seed=7)
    assert simulate_day(shorter, 1).equals(days[1])


# -- generator tables ---------------------------------------------------------------------------------


def test_every_normal_kind_has_a_generator_and_every_generator_a_kind() -> None:
    assert set(NORMAL_GENERATORS) == set(NORMAL_MIX)
    assert all(callable(generate) for generate in NORMAL_GENERATORS.values())
    # one function per kind: no kind silently reuses another kind's traffic
    assert len(set(NORMAL_GENERATORS.values())) == len(NORMAL_GENERATORS)
    assert all(share > 0 for share in NORMAL_MIX.values())


def test_every_attack_class_has_a_generator_and_every_generator_a_class() -> None:
    assert set(ATTACK_GENERATORS) == set(ATTACK_SHARES)
    assert {NAD_LABELS[label] for label in ATTACK_GENERATORS} == set(ATTACK_LABELS)
    assert len(set(ATTACK_GENERATORS.values())) == len(ATTACK_GENERATORS)


# -- schema ---------------------------------------------------------------------------------------------


def test_canonical_columns_and_dtypes(flows: pl.DataFrame) -> None:
    assert tuple(flows.columns) == COLUMNS
    for name, dtype in CANONICAL.items():
        assert flows.schema[name] == dtype, name
    for name in COUNTER_COLUMNS:
        assert flows.schema[name] == pl.Int64, name
    assert flows.schema["day"] == pl.Date
    assert flows.null_count().sum_horizontal().item() == 0
    report = validate(flows)
    assert report.rows == flows.height and report.missing_identifying == ()


def test_values_are_nad_values(flows: pl.DataFrame) -> None:
    assert flows["time"].is_sorted()
    assert (flows["time"].dt.microsecond() == 0).all()  # whole seconds, as in the NAD files
    assert set(flows["proto"].unique()) == {"tcp", "udp", "icmp", "igmp"}
    assert set(flows["app"].unique()) <= set(APPS)
    assert flows["app"].n_unique() >= 35
    assert set(flows["label_original"].unique()) == set(NAD_LABELS)
    normal = flows["label_original"] == "Normal"
    assert (flows.filter(normal)["label"] == "normal").all()
    attacks = flows.filter(~normal)
    assert (attacks["label"] == attacks["label_original"]).all()
    icmp = flows.filter(pl.col("proto").is_in(["icmp", "igmp"]))
    assert (icmp["dpt"] == 0).all() and (icmp["spt"] == 0).all()
    for column in ("src", "dst"):
        parsed = {ipaddress.ip_address(a) for a in flows[column].unique().to_list()}
        assert all(a.version == 4 for a in parsed)


# -- realism of normal traffic --------------------------------------------------------------------


def test_address_plan_has_private_enterprise_and_public_internet(days: list[pl.DataFrame]) -> None:
    day = days[0]
    sources = day.filter(pl.col("label") == "normal")["src"].unique().to_list()
    private = [a for a in sources if _is_private(a) and a != "0.0.0.0"]
    public = [a for a in sources if ipaddress.ip_address(a).is_global]
    assert len(private) > 150  # workstations and servers
    assert len(public) > 100  # internet clients of the public servers, background radiation
    https = day.filter((pl.col("app") == "https") & (pl.col("label") == "normal"))
    egress = https.filter(
        pl.col("src").map_elements(_is_private, return_dtype=pl.Boolean)
        & ~pl.col("dst").map_elements(_is_private, return_dtype=pl.Boolean)
    )
    assert egress.height > 0.5 * https.height


def test_applications_have_realistic_shapes(flows: pl.DataFrame) -> None:
    normal = flows.filter(pl.col("label") == "normal")
    dns = normal.filter((pl.col("app") == "domain") & (pl.col("proto") == "udp"))
    https = normal.filter((pl.col("app") == "https") & (pl.col("proto") == "tcp"))
    assert dns["out_bytes"].median() < 120 and dns["in_bytes"].median() < 400
    assert https["in_bytes"].median() > 10 * dns["in_bytes"].median()
    assert (dns["dpt"] == 53).all()
    # heavy tail: the largest transfers dwarf the typical one
    assert https["in_bytes"].quantile(0.999) > 500 * https["in_bytes"].median()
    # clients use ephemeral source ports
    assert (https["spt"] >= 32768).mean() > 0.95
    # some flows carry nothing back, some take no time
    assert 0.01 < (normal["in_bytes"] == 0).mean() < 0.3
    assert 0.05 < (normal["duration"] == 0).mean() < 0.4
    assert ((normal["out_bytes"] == 0) & (normal["in_bytes"] == 0)).sum() > 0
    # packets follow bytes
    assert ((flows["out_bytes"] > 0) == (flows["out_pkts"] > 0)).all()
    assert ((flows["in_bytes"] > 0) == (flows["in_pkts"] > 0)).all()
    assert (
        (flows.filter(pl.col("out_pkts") > 0).select(pl.col("out_bytes") / pl.col("out_pkts") <= 1500))
        .to_series()
        .all()
    )


def test_diurnal_and_weekly_load(days: list[pl.DataFrame]) -> None:
    thursday = days[0]
    assert thursday["day"][0].weekday() == 3
    hours = thursday["time"].dt.hour()
    night = int(hours.is_between(1, 4).sum())  # 01:00-04:59
    working = int(hours.is_between(9, 12).sum())  # 09:00-12:59
    assert working > 3 * night
    saturday = days[2]
    assert saturday["day"][0].weekday() == 5
    assert saturday.height < 0.8 * min(days[0].height, days[1].height)
    weekday_total = days[0].height + days[1].height
    assert 0.85 * 2 * CONFIG.flows_per_day < weekday_total < 1.5 * 2 * CONFIG.flows_per_day


# -- attacks ----------------------------------------------------------------------------------------------


def test_every_class_every_day_with_a_realistic_mix(days: list[pl.DataFrame]) -> None:
    for day in days:
        counts = dict(day["label_original"].value_counts().iter_rows())
        assert set(counts) == set(NAD_LABELS)
        assert min(counts[label] for label in ATTACK_LABELS) >= 30
        share = 1 - counts["Normal"] / day.height
        assert 0.01 < share < 0.08
        assert counts["Probing-IP sweep"] > counts["DDOS-smurf"]
        assert counts["Probing-IP sweep"] > counts["Probing-Nmap"]


def test_default_size_has_dozens_of_each_class() -> None:
    day = simulate_day(SimulationConfig(days=1), 0)
    counts = dict(day["label_original"].value_counts().iter_rows())
    assert min(counts[label] for label in ATTACK_LABELS) >= 36
    assert counts["Probing-IP sweep"] > counts["Probing-Port sweep"] > counts["Probing-Nmap"]
    assert 0.01 < 1 - counts["Normal"] / day.height < 0.05


def test_class_mix_shifts_between_days(days: list[pl.DataFrame]) -> None:
    shares = [(day["label"] == "Probing-IP sweep").mean() for day in days]
    assert max(shares) > 1.5 * min(shares)


def test_address_plans_differ_between_days(days: list[pl.DataFrame]) -> None:
    def internal_subnets(day: pl.DataFrame) -> set[str]:
        normal = day.filter(pl.col("label") == "normal")
        subnets = normal.select(_slash24("src")).to_series().unique().to_list()
        return {s for s in subnets if _is_private(s + ".0") and not s.startswith("0.")}

    first, second = internal_subnets(days[0]), internal_subnets(days[1])
    assert first != second
    assert first & second  # partly the same network
    attackers = [set(d.filter(pl.col("label") != "normal")["src"].unique()) for d in days]
    assert len(attackers[0] & attackers[1]) < 0.5 * len(attackers[0])


def test_smurf_is_icmp_to_broadcast_from_spoofed_victims(flows: pl.DataFrame) -> None:
    smurf = flows.filter(pl.col("label") == "DDOS-smurf")
    assert (smurf["proto"] == "icmp").all()
    assert smurf["dst"].str.ends_with(".255").all()
    assert (smurf["in_bytes"] == 0).mean() > 0.8
    # the same spoofed victim sends to the broadcast addresses many times
    per_victim = smurf.group_by("day", "src").len()
    assert per_victim["len"].max() >= 15


def test_ip_sweeps_hit_many_addresses_of_one_subnet(flows: pl.DataFrame) -> None:
    sweeps = flows.filter(pl.col("label") == "Probing-IP sweep").with_columns(net=_slash24("dst"))
    groups = sweeps.group_by("day", "src", "net", "dpt", "proto").agg(
        pl.len().alias("flows"), pl.col("dst").n_unique().alias("targets")
    )
    assert groups["targets"].max() >= 100
    # almost every sweep flow belongs to a (source, /24, service) group that covers many addresses
    covered = groups.filter(pl.col("targets") >= 16)["flows"].sum()
    assert covered > 0.9 * sweeps.height
    assert (groups["targets"] >= 0.9 * groups["flows"]).mean() > 0.8  # mostly distinct addresses
    assert (sweeps.filter(pl.col("proto") == "icmp")["dpt"] == 0).all()


def test_port_sweeps_hit_many_ports_of_one_host(flows: pl.DataFrame) -> None:
    sweeps = flows.filter(pl.col("label") == "Probing-Port sweep")
    pairs = sweeps.group_by("day", "src", "dst").agg(
        pl.len().alias("flows"), pl.col("dpt").n_unique().alias("ports")
    )
    assert pairs.filter(pl.col("ports") >= 20)["flows"].sum() > 0.8 * sweeps.height
    assert pairs["ports"].max() >= 50


def test_nmap_scans_several_hosts_of_one_range_with_short_flows(flows: pl.DataFrame) -> None:
    nmap = flows.filter(pl.col("label") == "Probing-Nmap")
    assert nmap["duration"].max() <= 0.01
    assert nmap["dst"].map_elements(_is_private, return_dtype=pl.Boolean).all()
    per_src = nmap.group_by("day", "src").agg(
        pl.col("dst").n_unique().alias("hosts"),
        pl.col("dpt").n_unique().alias("ports"),
        _slash24("dst").n_unique().alias("ranges"),
    )
    assert per_src["hosts"].max() >= 2
    assert per_src["ports"].max() >= 5
    ports_per_host = (
        nmap.filter(pl.col("proto") == "tcp").group_by("day", "src", "dst").agg(pl.col("dpt").n_unique())
    )
    assert ports_per_host["dpt"].max() >= 5
    assert (per_src["ranges"] <= 3).all()


def test_attacks_come_in_time_blocks(days: list[pl.DataFrame]) -> None:
    for day in days:
        hours = day.filter(pl.col("label") == "Probing-IP sweep")["time"].dt.hour().unique()
        assert hours.len() <= 16  # a few campaign blocks, not spread over the whole day


# -- not trivially separable -------------------------------------------------------------------------


def test_hard_negatives_exist(days: list[pl.DataFrame]) -> None:
    for day in days:
        normal = day.filter(pl.col("label") == "normal")
        icmp_broadcast = normal.filter((pl.col("proto") == "icmp") & pl.col("dst").str.ends_with(".255"))
        assert icmp_broadcast.height > 0
        assert normal.filter(pl.col("dst").str.ends_with(".255") & (pl.col("proto") == "udp")).height > 0
        fan_out = normal.group_by("src").agg(pl.col("dst").n_unique().alias("targets"))
        assert fan_out["targets"].max() >= 100  # resolvers and the monitoring server
        # a monitoring ping sweep: one source, many addresses of one /24, labelled normal
        pings = normal.filter(pl.col("proto") == "icmp").with_columns(net=_slash24("dst"))
        assert pings.group_by("src", "net").agg(pl.col("dst").n_unique())["dst"].max() >= 200


def test_some_probes_get_normal_looking_answers(flows: pl.DataFrame) -> None:
    probes = flows.filter(pl.col("label").is_in(["Probing-IP sweep", "Probing-Port sweep", "Probing-Nmap"]))
    replied = probes.filter(pl.col("in_bytes") > 0)
    assert 0.05 * probes.height < replied.height < 0.8 * probes.height
    # a banner grab: a short exchange with payload both ways, like a normal connection
    conversations = probes.filter((pl.col("in_bytes") > 200) & (pl.col("duration") > 0))
    assert 0 < conversations.height < 0.2 * probes.height


def test_a_shallow_tree_on_raw_columns_does_not_separate_another_day(days: list[pl.DataFrame]) -> None:
    columns = ["spt", "dpt", "duration", "out_bytes", "in_bytes", "out_pkts", "in_pkts", *COUNTER_COLUMNS]

    def matrix(day: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        protos = [(pl.col("proto") == p).cast(pl.Int8).alias(p) for p in ("tcp", "udp", "icmp", "igmp")]
        table = day.with_columns(protos).select([*columns, "tcp", "udp", "icmp", "igmp"])
        return table.to_numpy(), day["label"].to_numpy()

    train_x, train_y = matrix(days[0])
    test_x, test_y = matrix(days[1])
    shallow = DecisionTreeClassifier(max_depth=3, random_state=0).fit(train_x, train_y)
    assert f1_score(test_y, shallow.predict(test_x), average="macro") < 0.9
    deep = DecisionTreeClassifier(random_state=0).fit(train_x, train_y)
    across_days = f1_score(test_y, deep.predict(test_x), average="macro")
    assert across_days < 0.97
    # the data carries signal: within one day (a leaky random split) the same tree does well, but
    # still not perfectly, and better than across days (the shift between days is real)
    half_x, rest_x, half_y, rest_y = train_test_split(
        train_x, train_y, test_size=0.5, random_state=0, stratify=train_y
    )
    within = DecisionTreeClassifier(random_state=0).fit(half_x, half_y)
    within_day = f1_score(rest_y, within.predict(rest_x), average="macro")
    assert 0.7 < within_day < 0.99
    assert across_days < within_day


# -- NAD CSV round trip ---------------------------------------------------------------------------------


def test_nad_csv_round_trip(days: list[pl.DataFrame], tmp_path: Path) -> None:
    day = days[1]
    path = write_nad_csv(day, tmp_path / "day.csv")
    header = path.read_text().splitlines()[0].split(",")
    assert header == [*NAD_COLUMNS, "label"]
    first = path.read_text().splitlines()[1].split(",")
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", first[0])
    assert first[8] in {"1", "2", "6", "17"}
    assert first[-1] in NAD_LABELS
    read, fmt = load_flows(path)
    assert fmt == "nad"
    assert read.height == day.height
    same = ["time", "src", "dst", "spt", "dpt", "proto", "app", "duration", "out_bytes", "in_bytes"]
    assert read.select(same).equals(day.select(same))
    assert read.select("label", "label_original").equals(day.select("label", "label_original"))
    # the counters in the file are exactly what the feature code computes from the file
    assert read.select(COUNTER_COLUMNS).equals(traffic_counters(read))
    assert read.select(COUNTER_COLUMNS).equals(day.select(COUNTER_COLUMNS))


def test_write_nad_csv_refuses_to_overwrite(days: list[pl.DataFrame], tmp_path: Path) -> None:
    target = tmp_path / "day.csv"
    write_nad_csv(days[0].head(50), target)
    with pytest.raises(NadkitError, match="already exists"):
        write_nad_csv(days[0].head(50), target)
    write_nad_csv(days[0].head(10), target, overwrite=True)
    assert len(target.read_text().splitlines()) == 11


# -- directory output ------------------------------------------------------------------------------------


def test_simulate_to_directory_writes_one_file_per_day(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    files = simulate_to_directory(SMALL, out)
    assert [f.name for f in files] == ["2020-12-03.csv", "2020-12-04.csv"]
    assert sorted(p.name for p in out.iterdir()) == [f.name for f in files]
    expected = simulate(SMALL)
    read, _ = load_flows(out)
    assert read.height == expected.height
    assert read["label"].to_list() == expected["label"].to_list()


def test_simulate_to_directory_parquet_keeps_the_whole_table(tmp_path: Path) -> None:
    files = simulate_to_directory(SMALL, tmp_path / "pq", output_format="parquet")
    assert [f.suffix for f in files] == [".parquet", ".parquet"]
    table = pl.concat([pl.read_parquet(f) for f in files])
    assert table.equals(simulate(SMALL))
    assert {"out_pkts", "in_pkts", "day"} <= set(table.columns)


def test_simulate_to_directory_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    out.mkdir()  # an existing empty directory is fine
    simulate_to_directory(SMALL, out)
    before = (out / "2020-12-03.csv").read_bytes()
    with pytest.raises(NadkitError, match="not empty"):
        simulate_to_directory(SimulationConfig(days=1, flows_per_day=500, seed=9), out)
    assert (out / "2020-12-03.csv").read_bytes() == before
    files = simulate_to_directory(SimulationConfig(days=1, flows_per_day=500, seed=9), out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["2020-12-03.csv"] == [f.name for f in files]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(NadkitError, match="other files"):
        simulate_to_directory(SMALL, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="output format"):
        simulate_to_directory(SMALL, tmp_path / "other", output_format="json")


def test_simulate_to_directory_leaves_nothing_on_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    original = driver.write_nad_csv

    def fail_on_second_day(frame: pl.DataFrame, path: Path, **options: bool) -> Path:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return original(frame, path, **options)

    monkeypatch.setattr(driver, "write_nad_csv", fail_on_second_day)
    with pytest.raises(OSError, match="disk full"):
        simulate_to_directory(SMALL, tmp_path / "sim")
    assert list(tmp_path.iterdir()) == []


# -- configuration ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"days": 0}, "days"),
        ({"flows_per_day": 10}, "flows_per_day"),
        ({"seed": -1}, "seed"),
        ({"days": 2.5}, "days must be an integer"),
        ({"workstations": 1}, "workstations"),
        ({"attack_intensity": -0.5}, "attack_intensity"),
        ({"weekend_load": 0}, "weekend_load"),
        ({"start": "2020-12-03"}, "start"),
    ],
)
def test_invalid_configuration_is_rejected(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SimulationConfig(**changes)  # type: ignore[arg-type]


def test_day_index_is_checked_and_intensity_scales_attacks() -> None:
    with pytest.raises(ConfigError, match="day_index"):
        simulate_day(SMALL, 2)
    quiet = simulate_day(SimulationConfig(days=1, flows_per_day=5_000, attack_intensity=0), 0)
    assert (quiet["label"] == "normal").all()
    loud = simulate_day(SimulationConfig(days=1, flows_per_day=5_000, attack_intensity=3), 0)
    base = simulate_day(SimulationConfig(days=1, flows_per_day=5_000), 0)
    assert (loud["label"] != "normal").sum() > 2 * (base["label"] != "normal").sum()
    assert SimulationConfig().start == dt.date(2020, 12, 3)
