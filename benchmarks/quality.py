"""Detection quality on real data: one fixed protocol, every detector beside IsolationForest and ECOD on
the same features, mean and spread over seeds.

Protocol (the same for every detector; the test part is scored once, after every choice is made):

* the feature pipeline is fitted on the training part, which holds normal rows only, and every
  detector is trained on those rows;
* the threshold comes from the validation part by ``nadkit train``'s own rule: F1-optimal where it
  holds attack and normal rows, but kept between the scores exceeded by 1% and by 5% of its normal
  rows (known attacks, often floods, would otherwise pull it far above the normal scores, and a
  validation part that is mostly attacks far below them), else the 1% score; a detector that weighs
  its errors on held-out normal rows (``weigh_errors``) is given half the validation part's normal
  rows for it (the earlier half in time) and its threshold is chosen on the rest, as ``nadkit train``
  halves its hold-out;
* on the test part: ROC-AUC, PR-AUC, precision / recall / F1 and the false-positive rate at that
  threshold, training seconds (and, for the models that train in epochs, the epochs run and the
  seconds per epoch), and the detection rate of each attack class (or attack capture) with
  its macro mean, so that a few large floods cannot hide the attacks that matter most;
* the macro detection rate once more at one false-positive rate for every detector
  (``macro_detection_1pct``: the threshold exceeded by 1% of the validation part's normal rows, with
  the test part's false-positive rate there, ``fpr_1pct``): an F1-optimal threshold on a validation
  part full of floods can land very low for one detector and high for another, and detection rates
  at very different false-positive rates do not compare;
* ``fpr_at_997_recall``: the test part's false-positive rate where 99.7% of its attacks are flagged,
  a point of the ROC curve read off the test scores (a ranking figure, as ROC-AUC is, not a
  threshold anyone could have chosen);
* ``macro_detection_test_1pct``: the macro detection rate at the score exceeded by 1% of the test
  part's normal rows, read off the test scores the same way: every detector at exactly the same
  false-positive rate, so that a threshold that lands at 5% false positives on the test part for
  one detector and at 1% for another does not decide which ranks each attack class higher.

Data sets (``--data``, ``$NADKIT_DATA_DIR`` or ``../shared/data``):

* ``kdd``: NSL-KDD ``KDDTrain+_20Percent``. A third of the attack types (by seed) appear in the test
  part only (unseen attacks); the rest of the attack rows are split in half, stratified by type,
  into validation and test; normal rows 60 / 20 / 20. The test part's hard subset (difficulty below
  21, as in KDDTest-21) gets its own ROC-AUC.
* ``unsw``: UNSW-NB15 training-set file, the same protocol by ``attack_cat``.
* ``cic``: the time-sorted CIC-IDS2017 file with addresses and times. Train: the normal flows of
  Monday and Tuesday; validation: Wednesday (DoS); test: Thursday and Friday (web attacks,
  infiltration, botnet, port scans, DDoS), attacks none of which was seen before.
* ``cic_netflow``: the same flows and split with only what a NetFlow exporter sends, as the NF- data
  sets carry it: written as a NetFlow field-name CSV (addresses, ports, protocol number, bytes and
  packets each way, the OR of the TCP flags, duration in ms; no time, none of CICFlowMeter's
  statistics) and read back by the ``netflow`` reader.
* ``iot23``: the labelled Zeek conn.log of IoT-23 capture 42-1 (6 malicious flows of 4,426, all in
  its first minutes). In time order, test: the first 40% of the flows; validation (normal only, so
  the 1% quantile threshold): the next 15%; train: the normal rest. ``iot23_pcap``: the same on the
  capture the conn.log was made from, metered by nfstream, each flow labelled by the conn.log record
  of its 5-tuple (either direction) that started within 2 s of it.
* ``iot23_other``: another network: train on the benign conn.log of IoT-23's honeypot capture 4-1 (a
  Philips Hue bridge, 452 flows; the first 75% in time, validation the rest), test on the whole
  conn.log of capture 42-1, a different home network: how a model of one network's few normal flows
  ranks and thresholds another's traffic (the bundle's own false-positive rate does not carry over).
  ``iot23_other_normal``: the other way round, trained on capture 42-1 and tested on the honeypot's
  flows, all normal: the false-positive rates alone.
* ``pcaps``: the shared benign and attack captures, read through nfstream, whole captures held out:
  by seed, benign captures 60 / 20 / 20 to train / validation / test and the attack captures 3 to
  validation, the other 5 to test; per-capture detection rates.
* ``pcaps_netflow``: the same captures and split, metered by softflowd (``softflowd -r``, nfstream's
  timeouts) and decoded by nadkit's NetFlow collector: what live NetFlow detection sees of them
  (needs softflowd; no nDPI, no packet statistics, the TCP flags as nfdump's text).
* ``pcaps_argus`` and ``iot23_argus``: the shared captures (split as ``pcaps``) and the IoT-23
  capture (split and labelled as ``iot23_pcap``) metered by Argus (``argus -r``, a status record an
  hour) and printed by ``ra`` in CTU-13's binetflow columns (StartTime, Dur, Proto, SrcAddr, Sport,
  Dir, DstAddr, Dport, State, sTos, dTos, TotPkts, TotBytes, SrcBytes), read by the ``argus`` reader:
  Argus flows as the Stratosphere captures publish them (needs Debian's argus-server and
  argus-client).
* ``sim``: the simulator, train on the normal flows of days 1-2, validation day 3, test day 4.
* ``sim_week``: the simulator over nine days from a Monday (10,000 flows a day on average), train on
  the normal flows of the first week, validation day 8, test day 9: a training span that covers both
  the daily and the weekly cycle, for the calendar features.

``auto`` (a ``--models`` entry) is ``nadkit train --auto``: of the candidates measured in the same
run (``ae``, ``vae``, ``iforest``, ``ecod``, each with its defaults), the one with the highest PR-AUC
on the validation part, its test figures reported as ``auto`` (``chosen`` names it); only where the
validation part holds attacks (as `--auto` needs labelled attacks), so not with ``--train-rows``.

Settings: ``NAME:key=value;key=value`` trains ``NAME`` with those settings (values read as YAML),
e.g. ``ae:weigh_errors=true`` or ``ae:hidden=[64,32];bottleneck=8``.

Feature groups: each model is trained with the features ``nadkit train`` gives it (the calendar group
for the window models); ``NAME+GROUP`` adds a feature group, ``NAME-GROUP`` leaves it out (e.g.
``lstm-calendar``, ``ae-names``), to measure what it brings.

Few normal rows (``--train-rows 300``): the same data sets with only that many normal training rows
and a third as many normal validation rows, as a user with a small benign sample has them; the
threshold is then the 1% quantile of those few validation scores. Where rows have times, each part
is one stretch of consecutive flows (a short capture), not a sample scattered over days, whose
cross-flow windows would be nearly empty.

Peers: ``--models pyod_ae`` adds PyOD's AutoEncoder (20 epochs; its own defaults otherwise, its own
input standardisation) on the same features, for training time and quality side by side.

Seeds (``--seeds``, 3 by default) change the random splits and the detectors' seeds. Each neural fit
trains for at most ``--budget`` seconds (early stopping usually ends it sooner).

Run: ``.venv/bin/python benchmarks/quality.py [--datasets kdd unsw cic iot23 pcaps sim] [--models ae
vae iforest ecod] [--seeds 3] [--budget 60]``; prints a table per data set and writes
``benchmarks/results/quality.json`` and ``quality.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import RESULTS, cache_dir, console, data_dir, machine, settings_from
from nadkit.evaluation.metrics import binary_metrics, fpr_at_recall, roc_auc
from nadkit.evaluation.split import weighing_split
from nadkit.evaluation.thresholds import quantile_threshold
from nadkit.features.counters import COUNTER_WINDOWS
from nadkit.features.data import detector_data
from nadkit.features.pipeline import ALL_GROUPS, FeatureConfig, FeaturePipeline
from nadkit.models import REGISTRY, create
from nadkit.models.neural import NeuralConfig
from nadkit.schema import NORMAL
from nadkit.sources import load_flows
from nadkit.sources.labelling import carry_labels
from nadkit.training.choice import AUTO_CANDIDATES, best_index
from nadkit.training.fit import default_features, holdout_threshold

QUANTILE_FPR = 0.01
HARD_DIFFICULTY = 21


@dataclass(frozen=True)
class Protocol:
    """One data set cut for one seed: normal training rows, a validation and a test part; ``classes``
    names the column whose values are the attack classes (or captures) of the per-class rates."""

    name: str
    train: pl.DataFrame
    validation: pl.DataFrame
    test: pl.DataFrame
    classes: str = "label"
    note: str = ""


def _attack(frame: pl.DataFrame) -> np.ndarray:
    return (frame["label"].fill_null(NORMAL) != NORMAL).to_numpy()


def _shared(relative: str) -> Path:
    path = data_dir() / relative
    if not path.exists():
        raise FileNotFoundError(f"{path} not found (set NADKIT_DATA_DIR)")
    return path


def _by_type(frame: pl.DataFrame, seed: int, unseen_share: float = 1 / 3) -> Protocol:
    """Records without time: a share of the attack types in test only, the rest split stratified."""
    rng = np.random.default_rng(seed)
    labels = frame["label"].fill_null(NORMAL).to_numpy().astype(str)
    types = sorted(set(labels) - {NORMAL})
    unseen = set(rng.choice(types, max(1, round(len(types) * unseen_share)), replace=False).tolist())
    side = np.empty(frame.height, dtype=np.int8)  # 0 train, 1 validation, 2 test
    for label in [NORMAL, *types]:
        rows = rng.permutation(np.flatnonzero(labels == label))
        if label == NORMAL:
            cut1, cut2 = int(len(rows) * 0.6), int(len(rows) * 0.8)
            side[rows[:cut1]], side[rows[cut1:cut2]], side[rows[cut2:]] = 0, 1, 2
        elif label in unseen:
            side[rows] = 2
        else:
            middle = len(rows) // 2
            side[rows[:middle]], side[rows[middle:]] = 1, 2
    pick = pl.Series(side)
    note = "unseen in training and validation: " + ", ".join(sorted(unseen))
    return Protocol("", frame.filter(pick == 0), frame.filter(pick == 1), frame.filter(pick == 2), note=note)


def kdd(seed: int) -> Protocol:
    # the difficulty level is kept for the test part's hard subset (never a feature: NOT_FEATURES)
    frame, _ = load_flows(_shared("nsl_kdd/KDDTrain+_20Percent.txt"), format="kdd", difficulty=True)
    return dataclasses.replace(_by_type(frame, seed), name="kdd")


def unsw(seed: int) -> Protocol:
    frame, _ = load_flows(_shared("unsw_nb15/UNSW_NB15_training-set.csv"), format="unsw")
    return dataclasses.replace(_by_type(frame, seed), name="unsw")


def cic(seed: int) -> Protocol:
    frame, _ = load_flows(_shared("cicids2017/CICIDS2017_improved_rnd5000_timesorted.csv"), format="cic")
    day = pl.col("time").dt.weekday()  # Monday 1
    train = frame.filter((day <= 2) & (pl.col("label") == NORMAL))
    note = "train Mon-Tue normal, validation Wed, test Thu-Fri"
    return Protocol("cic", train, frame.filter(day == 3), frame.filter(day >= 4), note=note)


#: TCP flag bits of NetFlow's ``TCP_FLAGS`` (the OR of every packet's flags), by CICFlowMeter's counter
_TCP_FLAG_BITS = {"fin": 1, "syn": 2, "rst": 4, "psh": 8, "ack": 16, "urg": 32, "ece": 64, "cwr": 128}


def cic_netflow(seed: int) -> Protocol:
    """The ``cic`` split with only what a NetFlow v9 exporter sends, as the NF- data sets have it:
    the CIC-IDS2017 flows written as a NetFlow field-name CSV (addresses, ports, protocol number,
    bytes and packets each way, the OR of the TCP flags, duration in ms; no time) and read back by
    the ``netflow`` reader. The day split is taken from the original times before they are left out."""
    source = _shared("cicids2017/CICIDS2017_improved_rnd5000_timesorted.csv")
    frame, _ = load_flows(source, format="cic")
    written = cache_dir() / "quality-cic-netflow.csv"
    if not written.exists() or written.stat().st_mtime < source.stat().st_mtime:
        number = pl.read_csv(source, columns=["Protocol"])["Protocol"]
        flags = pl.sum_horizontal(
            pl.when(pl.col(f"{name}_flag_count") > 0).then(bit).otherwise(0)
            for name, bit in _TCP_FLAG_BITS.items()
        )
        normal = pl.col("label") == NORMAL
        frame.select(
            pl.col("src").alias("IPV4_SRC_ADDR"),
            pl.col("spt").alias("L4_SRC_PORT"),
            pl.col("dst").alias("IPV4_DST_ADDR"),
            pl.col("dpt").alias("L4_DST_PORT"),
            pl.lit(number).alias("PROTOCOL"),
            pl.col("out_bytes").alias("IN_BYTES"),
            pl.col("out_pkts").alias("IN_PKTS"),
            pl.col("in_bytes").alias("OUT_BYTES"),
            pl.col("in_pkts").alias("OUT_PKTS"),
            flags.alias("TCP_FLAGS"),
            (pl.col("duration") * 1000).round(0).cast(pl.Int64).alias("FLOW_DURATION_MILLISECONDS"),
            (~normal).cast(pl.Int8).alias("Label"),
            pl.when(normal).then(pl.lit("Benign")).otherwise(pl.col("label")).alias("Attack"),
        ).write_csv(written)
    flows, _ = load_flows(written, format="netflow")
    day = frame["time"].dt.weekday()  # Monday 1
    train = flows.filter((day <= 2) & (flows["label"] == NORMAL))
    note = "NetFlow fields only, no time; train Mon-Tue normal, validation Wed, test Thu-Fri"
    return Protocol("cic_netflow", train, flows.filter(day == 3), flows.filter(day >= 4), note=note)


def iot23(seed: int) -> Protocol:
    path = _shared("iot23/CTU-IoT-Malware-Capture-42-1/conn.log.labeled")
    return _time_ordered("iot23", load_flows(path, format="zeek")[0].sort("time"))


def iot23_pcap(seed: int) -> Protocol:
    """The capture behind the conn.log, metered by nfstream, each flow labelled by the conn.log record
    of its 5-tuple that started within 2 s of it (either direction)."""
    return _iot23_metered("iot23_pcap", "nfstream")


def iot23_argus(seed: int) -> Protocol:
    """The same capture metered by Argus and printed by ``ra`` in CTU-13's binetflow columns (no
    packets by direction, no TCP flags but Argus's state), labelled the same way."""
    return _iot23_metered("iot23_argus", "argus")


def _iot23_metered(name: str, meter: str) -> Protocol:
    folder = _shared("iot23/CTU-IoT-Malware-Capture-42-1")
    capture = next(folder.glob("*.pcap"))
    cache_name, read = _meter(meter)
    prefix = f"quality-iot23-{cache_name}"
    flows = _metered(capture, cache_dir() / f"{prefix}-{capture.name}.parquet", read)
    log = load_flows(folder / "conn.log.labeled", format="zeek")[0]
    # the conn.log's label of the same connection (either direction, nearest start within 2 s)
    flows = carry_labels(flows, log, unmatched="normal").frame.sort("time")
    return dataclasses.replace(_time_ordered(name, flows), note=f"capture 42-1 through {meter}; {_TIME_NOTE}")


def _conn_log(capture: str) -> pl.DataFrame:
    return load_flows(_shared(f"iot23/{capture}/conn.log.labeled"), format="zeek")[0].sort("time")


def _other_network(name: str, own: pl.DataFrame, other: pl.DataFrame, note: str) -> Protocol:
    """Train on the normal flows of the first 75% (in time) of ``own``, validation its rest, test on
    all of ``other``: another network's traffic."""
    cut = round(own.height * 0.75)
    train = own.head(cut)
    train = train.filter(~pl.Series(_attack(train)))
    return Protocol(name, train, own.slice(cut), other, note=note)


def iot23_other(seed: int) -> Protocol:
    """Another network: train on IoT-23's benign honeypot capture 4-1 (a Philips Hue bridge's home
    network, 452 flows), test on the whole conn.log of capture 42-1 (another home network, where a
    Raspberry Pi runs a trojan): what a model of one network's few normal flows makes of another's
    traffic. Seeds change only the detectors' seeds."""
    note = "train: capture 4-1 (honeypot), first 75% in time, validation its rest; test: all of 42-1"
    return _other_network(
        "iot23_other", _conn_log("CTU-Honeypot-Capture-4-1"), _conn_log("CTU-IoT-Malware-Capture-42-1"), note
    )


def iot23_other_normal(seed: int) -> Protocol:
    """The other way round: train on capture 42-1 (its normal flows of the first 75% in time), test
    on the honeypot capture 4-1, all normal: only the false-positive rates."""
    note = "train: capture 42-1, first 75% in time (normal flows), validation its rest; test: all of 4-1"
    return _other_network(
        "iot23_other_normal",
        _conn_log("CTU-IoT-Malware-Capture-42-1"),
        _conn_log("CTU-Honeypot-Capture-4-1"),
        note,
    )


_TIME_NOTE = (
    "in time order: test the first 40% of the flows, validation (normal only) the next 15%, train the rest"
)


def _time_ordered(name: str, frame: pl.DataFrame) -> Protocol:
    share = np.arange(frame.height) / frame.height
    test, validation = share < 0.4, (share >= 0.4) & (share < 0.55)
    train = ~(test | validation) & ~_attack(frame)
    part = lambda mask: frame.filter(pl.Series(mask))  # noqa: E731
    return Protocol(name, part(train), part(validation), part(test), note=_TIME_NOTE)


def _metered(path: Path, cached: Path, meter: Callable[[Path], pl.DataFrame]) -> pl.DataFrame:
    """The flows ``meter`` makes of the capture ``path``, kept in ``cached`` (Parquet) until the capture
    changes."""
    if cached.exists() and cached.stat().st_mtime >= path.stat().st_mtime:
        return pl.read_parquet(cached)
    flows = meter(path)
    flows.write_parquet(cached)
    return flows


def _nfstream(path: Path) -> pl.DataFrame:
    return load_flows(path, format="pcap")[0]


def _meter(meter: str) -> tuple[str, Callable[[Path], pl.DataFrame]]:
    """The cache name and the function that meters a capture: nfstream (nadkit's pcap reader),
    softflowd decoded by the NetFlow collector, or Argus printed by ``ra`` and read as Argus flows."""
    from benchmarks.captures import argus_table, softflowd_table

    # the cache name changes with what the meter's flows hold: "softflowd-initiator" since the collector
    # turns biflows round so that src opened the flow (earlier caches hold softflowd's address order),
    # "argus-icmp" since ICMP flows carry their type and code in dpt (earlier: in spt), "stats-midstream"
    # since nfstream's TCP flows met after their handshake name the client
    meters = {"nfstream": ("stats-midstream", _nfstream)}
    meters["softflowd"] = ("softflowd-initiator", softflowd_table)
    meters["argus"] = ("argus-icmp", argus_table)
    return meters[meter]


def _captures(kind: str, meter: str = "nfstream") -> dict[str, pl.DataFrame]:
    """Each shared capture of ``kind`` as flows (cached as Parquet), labelled by its file: metered by
    nfstream, or (``meter="softflowd"``) by softflowd and decoded by nadkit's NetFlow collector."""
    name, read = _meter(meter)
    folder = _shared(f"pcaps/{kind}")
    cache = cache_dir() / f"quality-pcaps-{name}-{kind}"
    cache.mkdir(parents=True, exist_ok=True)
    out = {}
    for path in sorted(folder.glob("*.pcap*")):
        flows = _metered(path, cache / f"{path.name}.parquet", read)
        label = NORMAL if kind == "benign" else path.stem
        out[path.stem] = flows.with_columns(pl.lit(label).alias("label"), pl.lit(path.stem).alias("capture"))
    return out


def pcaps(seed: int) -> Protocol:
    return _held_out_captures("pcaps", _captures("benign"), _captures("attack"), seed)


def pcaps_netflow(seed: int) -> Protocol:
    """``pcaps`` through softflowd and the NetFlow collector instead of nfstream: what live NetFlow
    detection sees of the same captures (bytes, packets, duration, the TCP flags as text; no nDPI)."""
    benign, attack = _captures("benign", "softflowd"), _captures("attack", "softflowd")
    return _held_out_captures("pcaps_netflow", benign, attack, seed)


def pcaps_argus(seed: int) -> Protocol:
    """``pcaps`` metered by Argus and printed by ``ra`` in CTU-13's binetflow columns: what a detector
    has of the same captures as Argus flows."""
    benign, attack = _captures("benign", "argus"), _captures("attack", "argus")
    return _held_out_captures("pcaps_argus", benign, attack, seed)


def _held_out_captures(
    name: str, benign: dict[str, pl.DataFrame], attack: dict[str, pl.DataFrame], seed: int
) -> Protocol:
    rng = np.random.default_rng(seed)
    names = rng.permutation(sorted(benign)).tolist()
    cut1, cut2 = round(len(names) * 0.6), round(len(names) * 0.8)
    attacks = rng.permutation(sorted(attack)).tolist()

    def join(frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
        return pl.concat(frames, how="diagonal_relaxed").sort("time")

    train = join([benign[n] for n in names[:cut1]])
    validation = join([benign[n] for n in names[cut1:cut2]] + [attack[n] for n in attacks[:3]])
    test = join([benign[n] for n in names[cut2:]] + [attack[n] for n in attacks[3:]])
    note = "test captures: " + ", ".join(names[cut2:] + attacks[3:])
    return Protocol(name, train, validation, test, classes="capture", note=note)


def simulated(name: str, seed: int, train_days: int, flows_per_day: int) -> Protocol:
    """The simulator from a Monday: train on the normal flows of the first ``train_days`` days,
    validate on the next day, test on the day after."""
    from datetime import date

    from nadkit.simulate import SimulationConfig, simulate

    config = SimulationConfig(
        days=train_days + 2, flows_per_day=flows_per_day, seed=7 + seed, start=date(2021, 1, 4)
    )
    frame = simulate(config)
    days = sorted(frame["day"].unique().to_list())
    train = frame.filter(pl.col("day").is_in(days[:train_days]) & (pl.col("label") == NORMAL))
    validation = frame.filter(pl.col("day") == days[train_days])
    test = frame.filter(pl.col("day") == days[train_days + 1])
    trained = f"days 1-{train_days}" if train_days > 1 else "day 1"
    note = f"{trained} / {train_days + 1} / {train_days + 2}"
    return Protocol(name, train.drop("day"), validation.drop("day"), test.drop("day"), note=note)


def sim(seed: int) -> Protocol:
    return simulated("sim", seed, train_days=2, flows_per_day=40_000)


def sim_week(seed: int) -> Protocol:
    return simulated("sim_week", seed, train_days=7, flows_per_day=10_000)


DATASETS: dict[str, Callable[[int], Protocol]] = {
    "kdd": kdd,
    "unsw": unsw,
    "cic": cic,
    "cic_netflow": cic_netflow,
    "iot23": iot23,
    "iot23_pcap": iot23_pcap,
    "iot23_argus": iot23_argus,
    "iot23_other": iot23_other,
    "iot23_other_normal": iot23_other_normal,
    "pcaps": pcaps,
    "pcaps_netflow": pcaps_netflow,
    "pcaps_argus": pcaps_argus,
    "sim": sim,
    "sim_week": sim_week,
}


class PyodAutoencoder:
    """PyOD's AutoEncoder as a peer (20 epochs, its other settings as PyOD ships them), on the same
    features; fit and score take what nadkit's detectors take."""

    def __init__(self, seed: int, epochs: int = 20) -> None:
        from pyod.models.auto_encoder import AutoEncoder

        self.model = AutoEncoder(epoch_num=epochs, random_state=seed, verbose=0, contamination=0.01)
        self.epochs = epochs

    def fit(self, data: Any) -> PyodAutoencoder:
        self.model.fit(data.features)
        return self

    def score(self, data: Any) -> np.ndarray:
        return np.asarray(self.model.decision_function(data.features), dtype=np.float64)


#: peers that are not nadkit detectors, by the name ``--models`` takes
PEERS: dict[str, Callable[[int], Any]] = {"pyod_ae": PyodAutoencoder}


def configure(name: str, seed: int, budget_s: float, options: dict[str, Any] | None = None) -> Any:
    if name in PEERS:
        return PEERS[name](seed)
    cls = REGISTRY[name]
    config = dataclasses.replace(cls.config_class(), **(options or {}))
    config = dataclasses.replace(config, seed=seed)
    if isinstance(config, NeuralConfig):
        config = dataclasses.replace(config, time_budget_s=budget_s)
    return create(name, config)


def threshold(scores: np.ndarray, attack: np.ndarray) -> tuple[float, str]:
    """``nadkit train``'s own rule (``auto``): F1-optimal on a labelled validation part, capped at the
    score 1% of its normal rows exceed; without attacks, that score."""
    labels = np.where(attack, "attack", NORMAL)
    chosen, _ = holdout_threshold(scores, labels, QUANTILE_FPR)
    return chosen.value, chosen.method


def scored_metrics(scores: np.ndarray, attack: np.ndarray, value: float) -> dict[str, float]:
    """ROC-AUC, PR-AUC, precision / recall / F1 and the false-positive rate at threshold ``value``,
    and the false-positive rate at 99.7% recall; a test part of normal rows alone (another network's
    normal traffic) has the false-positive rate only."""
    if not attack.any():
        return {"fpr": float(np.mean(scores >= value))}
    metrics = binary_metrics(scores, attack, value)
    return {
        "roc_auc": metrics.roc_auc,
        "pr_auc": metrics.pr_auc,
        "precision": metrics.precision,
        "recall": metrics.recall,
        "f1": metrics.f1,
        "fpr": metrics.false_positive_rate,
        "fpr_at_997_recall": fpr_at_recall(scores, attack, 0.997),
    }


def per_class(test: pl.DataFrame, column: str, alerts: np.ndarray) -> dict[str, float]:
    """Detection rate of each attack class (or capture) in the test part."""
    attack = _attack(test)
    values = test[column].fill_null(NORMAL).to_numpy().astype(str)
    return {value: float(alerts[attack & (values == value)].mean()) for value in sorted(set(values[attack]))}


def split_name(name: str) -> tuple[str, dict[str, bool], dict[str, Any]]:
    """A ``--models`` entry as (model, feature groups to add (True) or leave out (False), settings):
    ``lstm-calendar`` -> (``lstm``, {"calendar": False}, {}), ``ae+calendar-names`` -> (``ae``,
    {"calendar": True, "names": False}, {}), ``ae:weigh_errors=true;hidden=[64,32]`` -> (``ae``, {},
    {"weigh_errors": True, "hidden": (64, 32)}): settings after a colon, separated by semicolons,
    each value read as YAML (lists become tuples); group changes at the end. A counter window is
    added or left out the same way: ``ae-slow_counters`` (see :data:`COUNTER_TOKENS`)."""
    groups: dict[str, bool] = {}
    tokens = (*ALL_GROUPS, *COUNTER_TOKENS)
    while True:
        found = next(
            ((group, sign == "+") for group in tokens for sign in "+-" if name.endswith(sign + group)),
            None,
        )
        if found is None:
            break
        group, added = found
        groups[group] = added
        name = name[: -len(group) - 1]
    model, _, text = name.partition(":")
    cls = REGISTRY.get(model)
    known = [f.name for f in dataclasses.fields(cls.config_class)] if cls is not None else []
    return model, groups, settings_from([i for i in text.split(";") if i], known, model)


#: ``--models`` suffixes that add or leave out the counters of one window (``ae+slow_counters``)
COUNTER_TOKENS = {f"{window}_counters": window for window in COUNTER_WINDOWS}


def feature_config(detector: Any, changes: dict[str, bool]) -> FeatureConfig:
    """What ``nadkit train`` gives ``detector`` (peers: the default groups), with the feature groups
    (and counter windows) ``changes`` adds (True) or leaves out (False)."""
    config = default_features(detector) if hasattr(detector, "wants_calendar") else FeatureConfig()
    if not changes:
        return config
    windows = {COUNTER_TOKENS[t]: on for t, on in changes.items() if t in COUNTER_TOKENS}
    groups = {g: on for g, on in changes.items() if g not in COUNTER_TOKENS}
    return dataclasses.replace(
        config,
        groups=_toggled(config.groups, groups, ALL_GROUPS),
        counter_windows=_toggled(config.counter_windows, windows, tuple(COUNTER_WINDOWS)),
    )


def _toggled(current: Sequence[str], changes: dict[str, bool], order: Sequence[str]) -> tuple[str, ...]:
    """``current`` with what ``changes`` adds (True) or leaves out (False), in ``order``."""
    kept = {x for x in current if changes.get(x, True)} | {x for x, on in changes.items() if on}
    return tuple(x for x in order if x in kept)


def evaluate(protocol: Protocol, models: Sequence[str], seed: int, budget_s: float) -> list[dict[str, Any]]:
    test_attack = _attack(protocol.test)
    hard = None
    if "difficulty" in protocol.test.columns:
        hard = protocol.test["difficulty"].to_numpy() < HARD_DIFFICULTY
    featurized: dict[FeatureConfig, dict[str, Any]] = {}
    rows = []
    for name in models:
        if name == AUTO:
            continue
        model, changes, options = split_name(name)
        detector = configure(model, seed, budget_s, options)
        features = feature_config(detector, changes)
        if features not in featurized:
            pipeline = FeaturePipeline(features).fit(protocol.train)
            featurized[features] = {
                part: detector_data(pipeline, getattr(protocol, part))
                for part in ("train", "validation", "test")
            }
            parts = featurized[features]
            console.print(
                f"[bold]{protocol.name}[/bold] seed {seed}: {len(parts['train']):,} training rows, "
                f"{len(parts['validation']):,} validation ({int(_attack(protocol.validation).sum()):,} "
                f"attacks), {len(parts['test']):,} test ({int(test_attack.sum()):,} attacks), "
                f"{parts['train'].width} features ({', '.join(features.groups)})"
            )
        parts = featurized[features]
        # a detector that weighs its errors does so on half the validation part's normal rows and
        # has its threshold chosen on the rest, as ``nadkit train`` halves its hold-out
        validation, validation_attack = parts["validation"], _attack(protocol.validation)
        weighing = weighing_split(protocol.validation, seed=seed) if _weighs(detector) else None
        started = time.perf_counter()
        if weighing is None:
            detector.fit(parts["train"])
        else:
            detector.fit(parts["train"], validation=validation.take(weighing))
            validation, validation_attack = validation.take(~weighing), validation_attack[~weighing]
        fit_s = time.perf_counter() - started
        validation_scores = detector.score(validation)
        value, how = threshold(validation_scores, validation_attack)
        scores = detector.score(parts["test"])
        rates = per_class(protocol.test, protocol.classes, scores >= value)
        # the same rates at one false-positive rate for every detector: 1% of the validation normals
        fixed = quantile_threshold(validation_scores[~validation_attack], QUANTILE_FPR)
        rates_fixed = per_class(protocol.test, protocol.classes, scores >= fixed)
        # and at exactly 1% of the test part's normal rows (a point of the curve, not a threshold)
        rates_test = (
            per_class(
                protocol.test,
                protocol.classes,
                scores >= quantile_threshold(scores[~test_attack], QUANTILE_FPR),
            )
            if (~test_attack).any()
            else {}
        )
        row = {
            "dataset": protocol.name,
            "seed": seed,
            "model": name,
            **scored_metrics(scores, test_attack, value),
            "macro_detection_test_1pct": float(np.mean(list(rates_test.values())))
            if rates_test
            else float("nan"),
            "macro_detection": float(np.mean(list(rates.values()))) if rates else float("nan"),
            "macro_detection_1pct": float(np.mean(list(rates_fixed.values())))
            if rates_fixed
            else float("nan"),
            "fpr_1pct": float(np.mean(scores[~test_attack] >= fixed))
            if (~test_attack).any()
            else float("nan"),
            "fit_s": fit_s,
            **_epochs(detector, fit_s),
            "threshold": how,
            "per_class": rates,
            "per_class_1pct": rates_fixed,
            "per_class_test_1pct": rates_test,
        }
        if validation_attack.any() and (~validation_attack).any():
            row["validation_roc_auc"] = roc_auc(validation_scores, validation_attack)
            row["validation_pr_auc"] = binary_metrics(validation_scores, validation_attack, value).pr_auc
        if hard is not None and (hard & test_attack).any() and (hard & ~test_attack).any():
            row["hard_roc_auc"] = roc_auc(scores[hard], test_attack[hard])
        shown = {key: row.get(key, float("nan")) for key in ("roc_auc", "pr_auc", "f1", "fpr")}
        console.print(
            f"  {name}: ROC-AUC {shown['roc_auc']:.4f} PR-AUC {shown['pr_auc']:.4f} F1 {shown['f1']:.4f} "
            f"FPR {shown['fpr']:.4f} macro detection {row['macro_detection']:.4f} ({fit_s:.1f} s)"
        )
        rows.append(row)
    if AUTO in models:
        rows += chosen_by_validation(rows)
    return rows


#: the ``--models`` entry for ``nadkit train --auto``'s choice
AUTO = "auto"


def chosen_by_validation(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``nadkit train --auto``'s row among ``rows`` (one data set and seed): the candidate of
    :data:`~nadkit.training.choice.AUTO_CANDIDATES` with the highest validation PR-AUC (ROC-AUC
    breaking ties, then the candidates' order), as ``auto``; none where no candidate has a
    validation PR-AUC (no attacks there)."""
    order = {name: index for index, name in enumerate(AUTO_CANDIDATES)}
    measured = sorted(
        (r for r in rows if r["model"] in order and "validation_pr_auc" in r), key=lambda r: order[r["model"]]
    )
    if not measured:
        return []
    best = measured[best_index([(r["validation_pr_auc"], r["validation_roc_auc"]) for r in measured])]
    console.print(f"  {AUTO}: {best['model']} (validation PR-AUC {best['validation_pr_auc']:.4f})")
    return [{**best, "model": AUTO, "chosen": best["model"]}]


def _weighs(detector: Any) -> bool:
    """Whether ``detector`` weighs its errors on normal rows it is given (peers never do)."""
    return bool(getattr(detector, "weighs_errors", False))


def _epochs(detector: Any, fit_s: float) -> dict[str, float]:
    """Epochs trained and seconds per epoch, for the detectors that train in epochs (none for the
    baselines); a detector that trains several networks counts the epochs of all of them."""
    histories = getattr(detector, "histories_", None) or [getattr(detector, "history_", None)]
    epochs = sum(h.epochs_run for h in histories if h is not None) or getattr(detector, "epochs", None)
    if not epochs:
        return {}
    return {"epochs": float(epochs), "epoch_s": fit_s / epochs}


SUMMARY = (
    "roc_auc",
    "pr_auc",
    "macro_detection",
    "f1",
    "fpr",
    "macro_detection_1pct",
    "fpr_1pct",
    "fpr_at_997_recall",
    "macro_detection_test_1pct",
    "hard_roc_auc",
    "validation_roc_auc",
    "validation_pr_auc",
    "fit_s",
    "epochs",
    "epoch_s",
)


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds, by data set and model."""
    out = []
    keys = sorted({(r["dataset"], r["model"]) for r in rows}, key=lambda k: (k[0], 0))
    order = {m: i for i, m in enumerate(dict.fromkeys(r["model"] for r in rows))}
    for dataset, model in sorted(keys, key=lambda k: (k[0], order[k[1]])):
        mine = [r for r in rows if r["dataset"] == dataset and r["model"] == model]
        entry: dict[str, Any] = {"dataset": dataset, "model": model, "seeds": len(mine)}
        for metric in SUMMARY:
            values = [r[metric] for r in mine if metric in r and r[metric] == r[metric]]
            if values:
                entry[metric] = float(np.mean(values))
                entry[f"{metric}_sd"] = float(np.std(values))
        if any("chosen" in r for r in mine):
            entry["chosen"] = [r.get("chosen") for r in mine]
        classes = sorted({c for r in mine for c in r["per_class"]})
        entry["per_class"] = {
            c: float(np.mean([r["per_class"][c] for r in mine if c in r["per_class"]])) for c in classes
        }
        out.append(entry)
    return out


def markdown(summary: list[dict[str, Any]], notes: dict[str, str]) -> str:
    lines = []
    for dataset in dict.fromkeys(s["dataset"] for s in summary):
        mine = [s for s in summary if s["dataset"] == dataset]
        lines += [f"### {dataset}", "", notes.get(dataset, ""), ""]
        columns = [m for m in SUMMARY if any(m in s for s in mine)]
        lines.append("| model | " + " | ".join(columns) + " |")
        lines.append("|---|" + "---|" * len(columns))
        for s in mine:
            cells = []
            for metric in columns:
                if metric not in s:
                    cells.append("-")
                elif metric in ("fit_s", "epochs"):
                    cells.append(f"{s[metric]:.1f}")
                elif metric == "epoch_s":
                    cells.append(f"{s[metric]:.3f}")
                else:
                    cells.append(f"{s[metric]:.4f} ± {s[metric + '_sd']:.4f}")
            lines.append(f"| {s['model']} | " + " | ".join(cells) + " |")
        lines.append("")
        for s in mine:
            if s.get("chosen"):
                lines += [f"{s['model']} chose, by seed: {', '.join(map(str, s['chosen']))}", ""]
        classes = sorted({c for s in mine for c in s["per_class"]})
        if classes:
            lines.append("| detection rate | " + " | ".join(s["model"] for s in mine) + " |")
            lines.append("|---|" + "---|" * len(mine))
            for c in classes:
                lines.append(
                    f"| {c} | "
                    + " | ".join(f"{s['per_class'].get(c, float('nan')):.3f}" for s in mine)
                    + " |"
                )
            lines.append("")
    return "\n".join(lines)


def _timed(frame: pl.DataFrame) -> bool:
    return "time" in frame.columns and frame["time"].null_count() < frame.height


def _stretch(frame: pl.DataFrame, rows: int, rng: np.random.Generator) -> pl.DataFrame:
    """``rows`` consecutive rows in time order from a random start, or a random sample of rows where
    the table has no times."""
    rows = min(rows, frame.height)
    if not _timed(frame):
        return frame.sample(n=rows, seed=int(rng.integers(2**31)))
    ordered = frame.sort("time", maintain_order=True)
    return ordered.slice(int(rng.integers(0, ordered.height - rows + 1)), rows)


def few_rows(protocol: Protocol, rows: int, seed: int) -> Protocol:
    """The protocol with ``rows`` normal training rows and a third as many normal validation rows
    (no attacks there, so the threshold is the false-positive quantile), drawn by ``seed``.

    Where the rows have times they are one stretch of consecutive flows, as a user's small benign
    sample is (a short capture or log): a random sample of a day's flows would thin out the windows
    of the cross-flow features, which no real traffic does; records without times are sampled."""
    rng = np.random.default_rng(seed)
    normal = protocol.validation.filter(~pl.Series(_attack(protocol.validation)))
    return dataclasses.replace(
        protocol,
        train=_stretch(protocol.train, rows, rng),
        validation=_stretch(normal, max(1, rows // 3), rng),
        note=f"{protocol.note} ({rows} training rows, {rows // 3} normal validation rows"
        + (", each one stretch in time)" if _timed(protocol.train) else ")"),
    )


def merged(
    path: Path, rows: list[dict[str, Any]], notes: dict[str, str]
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """``rows`` and ``notes`` with those of the earlier result file ``path`` for the (data set,
    model) pairs this run did not measure; nothing is kept where the file does not exist."""
    if not path.exists():
        return rows, notes
    earlier = json.loads(path.read_text())
    measured = {(r["dataset"], r["model"]) for r in rows}
    kept = [r for r in earlier.get("rows", []) if (r["dataset"], r["model"]) not in measured]
    kept_notes = {d: n for d, n in earlier.get("notes", {}).items() if d not in notes}
    return kept + rows, {**kept_notes, **notes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--models", nargs="+", default=["ae", "vae", "iforest", "ecod"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per neural fit at most")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", default="quality", help="name of the result files")
    parser.add_argument(
        "--train-rows",
        type=int,
        default=None,
        help="few normal rows: train on this many, set the threshold on a third as many normal "
        "validation rows (the 1%% quantile), test as usual",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the data sets and models of the existing result file that this run did not measure",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    notes: dict[str, str] = {}
    known = {*REGISTRY, *PEERS, AUTO}
    missing = [m for m in args.models if split_name(m)[0] not in known]
    if missing:
        parser.error(
            f"unknown model {missing[0]!r} (nadkit's: {', '.join(REGISTRY)}; peers: {', '.join(PEERS)})"
        )
    if "pyod_ae" in args.models:
        try:
            import pyod  # noqa: F401
        except ImportError:
            console.print("[yellow]pyod is not installed: the pyod_ae peer is left out")
            args.models = [m for m in args.models if m != "pyod_ae"]
    for dataset in args.datasets:
        for seed in range(args.seeds):
            try:
                protocol = DATASETS[dataset](seed)
            except FileNotFoundError as error:
                console.print(f"[yellow]skipping {dataset}: {error}")
                break
            if args.train_rows:
                protocol = few_rows(protocol, args.train_rows, seed)
            seen = notes.get(dataset)
            text = f"seed {seed}: {protocol.note}"
            notes[dataset] = text if seen is None or protocol.note in seen else f"{seen}; {text}"
            rows += evaluate(protocol, args.models, seed, args.budget)
    if args.merge:
        rows, notes = merged(RESULTS / f"{args.out}.json", rows, notes)
    summary = summarise(rows)
    text = markdown(summary, notes)
    console.print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "quality",
        "machine": machine(),
        "seconds": time.perf_counter() - started,
        "settings": vars(args),
        "summary": summary,
        "notes": notes,
        "rows": rows,
    }
    (RESULTS / f"{args.out}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    (RESULTS / f"{args.out}.md").write_text(text + "\n")
    console.print(f"results written to {RESULTS / args.out}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
