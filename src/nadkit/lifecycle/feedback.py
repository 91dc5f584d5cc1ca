"""The feedback loop: analysts' verdicts on alerts become training data, a challenger model is
trained, and it is compared with the active model (the champion) before anyone activates it.

What each kind of model learns from:

- **unsupervised** models (trained on normal traffic) retrain on the new traffic plus the flows
  analysts marked ``false_positive`` or ``known_benign`` (repeated ``benign_weight`` times, so a few
  marked flows count). Flows analysts ``confirmed`` as attacks are never trained on: they join the
  labelled hold-out that sets the threshold. Flows of alerts nobody reviewed yet are left out of the
  new traffic (matched on time, addresses, ports and protocol), unless the traffic's own label says
  they are attacks: then, like confirmed ones, they only help set the threshold.
  A reviewed flow goes back into the traffic at its own time, so features that look across flows
  see it among its neighbours when the new traffic is the traffic it was alerted in. A model of
  time buckets retrains on the same bucket settings, and takes each reviewed flow once (repeating a
  flow would change its bucket's counts).
- **supervised** models (``detector.supervised``) train on the labelled new traffic plus every
  reviewed alert with its verdict as the label (benign verdicts as ``normal``, confirmed ones as
  their attack class), each repeated ``benign_weight`` times; unlabelled flows are not trained on.

In both cases the threshold is re-tuned on the validation part, as ``nadkit train`` does. A part of
the reviewed alerts (``feedback_holdout``, chosen by a hash of the alert id, so the same alerts stay
out from run to run) is kept out of training: the champion and the challenger are compared on it
(the alert rate on flows analysts marked benign: lower is better; on confirmed attacks: higher is
better), with the new traffic and all the reviewed flows shown beside it. Both models score the
same table, the way the service scores a request. Nothing is activated here.

Every rate comes with its Wilson score interval (95% by default; no sampling, so the same counts
give the same interval). The comparison names a better model only on enough held-out feedback
(:class:`EvidenceRule`: by default 50 held-out reviewed flows, at least 10 marked benign and 10
confirmed attacks) and only where a held-out rate's intervals for the two models do not overlap;
otherwise its verdict is "not enough evidence". The held-out rates alone decide: the other rates
are measured on flows the challenger was partly trained on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import polars as pl

from nadkit.alerts.store import AlertStore
from nadkit.alerts.values import BENIGN_VERDICTS
from nadkit.detection.detect import score_flows
from nadkit.errors import ConfigError
from nadkit.models.trainer import EpochReport
from nadkit.schema import FLOW_KEY, NORMAL
from nadkit.sources import load_flows
from nadkit.training.bundle import ModelBundle, carry_source_format
from nadkit.training.fit import TrainingResult, fit

log = logging.getLogger(__name__)

#: columns of the store's feedback table that describe the review, not the flow
REVIEW_COLUMNS = (
    "alert_id",
    "model_version",
    "score",
    "threshold",
    "verdict",
    "attack_class",
    "note",
    "analyst",
    "reviewed",
    "status",
)
#: columns a flow of the new traffic is matched on against stored alerts
MATCH_COLUMNS = FLOW_KEY
#: column marking the rows of the new traffic while the training table is built
TRAFFIC_ROW = "__traffic_row__"
#: column of :class:`LoopData.reviewed`: a reviewed flow's row in the comparison table
ALERT_ROWS = "evaluation_row"
#: config keys of the champion not carried over to the challenger
_NOT_CARRIED = frozenset({"device"})


@dataclass(frozen=True)
class Feedback:
    """Reviewed alerts as labelled flows (``label``: ``normal`` for benign verdicts, else the
    confirmed class), split into the part trained on and the part held out for the comparison;
    both keep ``alert_id`` and ``verdict``."""

    train: pl.DataFrame
    held_out: pl.DataFrame

    @property
    def all(self) -> pl.DataFrame:
        return pl.concat([self.train, self.held_out], how="diagonal_relaxed")

    def counts(self) -> dict[str, int]:
        """How many reviewed flows of each kind are trained on and held out."""
        out: dict[str, int] = {}
        for side, frame in (("train", self.train), ("held_out", self.held_out)):
            benign = int(_is_benign(frame).sum()) if frame.height else 0
            out[f"{side}_benign"] = benign
            out[f"{side}_attacks"] = frame.height - benign
        return out


def _is_benign(frame: pl.DataFrame) -> pl.Series:
    return frame["verdict"].is_in(list(BENIGN_VERDICTS))


def _hash_rank(alert_ids: pl.Series, seed: int) -> np.ndarray:
    """A stable pseudo-random number in [0, 1) per alert id (the same across runs and machines)."""
    values = []
    for identifier in alert_ids.to_list():
        digest = hashlib.sha256(f"{seed}:{identifier}".encode()).digest()
        values.append(int.from_bytes(digest[:8], "big") / 2**64)
    return np.asarray(values, dtype=np.float64)


def labelled_feedback(store: AlertStore) -> pl.DataFrame:
    """Every reviewed alert's flow with its latest verdict as ``label``."""
    frame = store.feedback_frame()
    if frame.height == 0:
        return frame
    label = (
        pl.when(pl.col("verdict").is_in(list(BENIGN_VERDICTS)))
        .then(pl.lit(NORMAL))
        .otherwise(pl.col("attack_class"))
        .alias("label")
    )
    return frame.with_columns(label).drop("label_original", strict=False)


def split_feedback(frame: pl.DataFrame, *, fraction: float = 0.3, seed: int = 0) -> Feedback:
    """Keep ``fraction`` of the benign and of the confirmed reviews out of training (at least one
    of a kind that has two or more, never all of them), chosen by a hash of the alert id."""
    if not 0 <= fraction < 1:
        raise ConfigError(f"the feedback hold-out fraction must be in [0, 1), got {fraction}")
    if frame.height == 0:
        return Feedback(frame, frame)
    rank = _hash_rank(frame["alert_id"], seed)
    held = np.zeros(frame.height, dtype=bool)
    benign = _is_benign(frame).to_numpy()
    for group in (benign, ~benign):
        members = np.flatnonzero(group)
        if len(members) < 2 or fraction == 0:
            continue
        count = min(len(members) - 1, max(1, round(len(members) * fraction)))
        chosen = members[np.argsort(rank[members], kind="stable")[:count]]
        held[chosen] = True
    mask = pl.Series(held)
    return Feedback(train=frame.filter(~mask), held_out=frame.filter(mask))


def match_flows(traffic: pl.DataFrame, flows: pl.DataFrame) -> pl.Series:
    """For each row of ``flows``, the 0-based row of the first flow of ``traffic`` with the same
    time, addresses, ports and protocol (those both tables have), or null where none matches or
    the tables cannot be matched (no time and no addresses)."""
    keys = [c for c in MATCH_COLUMNS if c in traffic.columns and c in flows.columns]
    nothing = pl.Series("traffic_row", [None] * flows.height, dtype=pl.Int64)
    if flows.height == 0 or traffic.height == 0 or ("time" not in keys and not {"src", "dst"} <= set(keys)):
        if flows.height and traffic.height:
            log.warning("stored alerts cannot be matched to the new traffic (no time or addresses in common)")
        return nothing
    try:
        left = flows.select(keys).cast({c: traffic.schema[c] for c in keys}).with_row_index("__i")
    except pl.exceptions.PolarsError:
        log.warning("stored alert flows do not have the new traffic's column types; none matched")
        return nothing
    right = (
        traffic.select(keys)
        .with_row_index("traffic_row")
        .unique(subset=keys, keep="first", maintain_order=True)
    )
    joined = left.join(right, on=keys, how="left", nulls_equal=True).sort("__i")
    return joined["traffic_row"].cast(pl.Int64)


def _flow_only(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.drop([c for c in (*REVIEW_COLUMNS, TRAFFIC_ROW, ALERT_ROWS) if c in frame.columns])


@dataclass(frozen=True)
class LoopData:
    """What one retraining works with.

    ``table``: the flows to train on (new traffic in time order, with :data:`TRAFFIC_ROW` giving
    each traffic flow's row, null for reviewed flows added from the store); ``evaluation``: the
    whole new traffic plus the reviewed flows not found in it, scored by both models for the
    comparison; ``reviewed``: each reviewed alert's ``alert_id``, ``benign`` (its verdict),
    ``held_out`` and its row in ``evaluation``; ``dropped``: traffic flows left out of training."""

    table: pl.DataFrame
    evaluation: pl.DataFrame
    reviewed: pl.DataFrame
    dropped: int


def loop_data(
    traffic: pl.DataFrame,
    alerts: pl.DataFrame,
    feedback: Feedback,
    *,
    supervised: bool,
    benign_weight: int = 10,
) -> LoopData:
    """Build the training table and the comparison table from the new traffic, the stored alerts
    (``AlertStore.alert_flows()``) and the split reviews (see the module docstring)."""
    if benign_weight < 1:
        raise ConfigError(f"the feedback weight must be at least 1, got {benign_weight}")
    traffic = traffic.drop([c for c in (TRAFFIC_ROW, "label_original") if c in traffic.columns])
    indexed = traffic.with_row_index(TRAFFIC_ROW).with_columns(pl.col(TRAFFIC_ROW).cast(pl.Int64))
    leave: set[int] = set()
    if alerts.height and not supervised:
        # flows alerted and not cleared by an analyst are never trained on as normal traffic; one
        # the traffic itself labels an attack stays (the split only uses it to set the threshold)
        flagged = alerts.filter(pl.col("status").is_in(["new", "confirmed"]))
        rows = match_flows(traffic, flagged).drop_nulls().unique()
        if "label" in traffic.columns:
            attack = (traffic["label"].fill_null(NORMAL) != NORMAL).to_numpy()
            rows = rows.filter(pl.Series(~attack[rows.to_numpy()]))
        leave.update(int(r) for r in rows.to_list())
    reviewed = feedback.all
    rows = match_flows(traffic, reviewed) if reviewed.height else pl.Series("traffic_row", [], dtype=pl.Int64)
    # reviewed flows come back from the store with their verdict as label (or stay out: held out)
    leave.update(int(r) for r in rows.drop_nulls().to_list())
    kept = indexed.filter(~pl.col(TRAFFIC_ROW).is_in(sorted(leave)))
    parts = [kept]
    if feedback.train.height:
        benign = feedback.train.filter(_is_benign(feedback.train))
        attacks = feedback.train.filter(~_is_benign(feedback.train))
        parts += [_flow_only(benign)] * benign_weight
        # an unsupervised split sends attack rows to the labelled hold-out only: never trained on
        parts += [_flow_only(attacks)] * (benign_weight if supervised else 1)
    table = pl.concat([p for p in parts if p.width], how="diagonal_relaxed")
    if "time" in table.columns:
        table = table.sort("time", maintain_order=True, nulls_last=False)

    unmatched = reviewed.filter(rows.is_null()) if reviewed.height else reviewed
    evaluation = (
        pl.concat(
            [p for p in (traffic, _flow_only(unmatched)) if p.width and p.height], how="diagonal_relaxed"
        )
        if (traffic.height or unmatched.height)
        else traffic
    )
    placed = np.full(reviewed.height, -1, dtype=np.int64)
    if reviewed.height:
        found = rows.to_numpy(allow_copy=True)
        present = ~rows.is_null().to_numpy()
        placed[present] = found[present]
        placed[~present] = traffic.height + np.arange(int((~present).sum()))
    held_ids = set(feedback.held_out["alert_id"].to_list()) if feedback.held_out.height else set()
    summary = pl.DataFrame(
        {
            "alert_id": reviewed["alert_id"] if reviewed.height else pl.Series([], dtype=pl.Int64),
            "benign": _is_benign(reviewed) if reviewed.height else pl.Series([], dtype=pl.Boolean),
            "held_out": pl.Series(
                [i in held_ids for i in (reviewed["alert_id"].to_list() if reviewed.height else [])],
                dtype=pl.Boolean,
            ),
            ALERT_ROWS: pl.Series(placed, dtype=pl.Int64),
        }
    )
    dropped = traffic.height - kept.height
    log.info(
        "training table: %d flows (%d traffic flows left out: unreviewed or confirmed alerts, reviews)",
        table.height,
        dropped,
    )
    return LoopData(table=table, evaluation=evaluation, reviewed=summary, dropped=dropped)


# ---------------------------------------------------------------------------------------------------
# the comparison
# ---------------------------------------------------------------------------------------------------


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """The Wilson score interval of the rate ``successes / trials`` at ``confidence`` (None without
    trials). Unlike the normal approximation it stays inside [0, 1] and is not empty at a rate of 0
    or 1, which small feedback often shows."""
    if trials <= 0:
        return None
    if not 0 <= successes <= trials:
        raise ValueError(f"{successes} successes out of {trials} trials")
    if not 0 < confidence < 1:
        raise ValueError(f"the confidence must be between 0 and 1, got {confidence}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    rate = successes / trials
    spread = z * z / trials
    centre = (rate + spread / 2) / (1 + spread)
    half = z * math.sqrt(rate * (1 - rate) / trials + spread / (4 * trials)) / (1 + spread)
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class EvidenceRule:
    """How much held-out feedback a comparison needs before it names a better model.

    ``flows``: held-out reviewed flows in all (default 50); ``per_kind``: at least this many marked
    benign and as many confirmed attacks (default 10); ``confidence``: of the rates' Wilson
    intervals (default 0.95). At 10 flows a rate's 95% interval is still up to 26 points either side
    of it, so only a large change can be shown; 50 in all keeps a handful of reviews from deciding.
    """

    flows: int = 50
    per_kind: int = 10
    confidence: float = 0.95

    def __post_init__(self) -> None:
        if self.flows < 1 or self.per_kind < 1:
            raise ConfigError(
                f"the held-out feedback minimum must be at least one flow, and one of each kind; "
                f"got {self.flows} and {self.per_kind}"
            )
        if not 0 < self.confidence < 1:
            raise ConfigError(f"the confidence must be between 0 and 1, got {self.confidence}")

    def describe(self) -> str:
        return (
            f"at least {self.flows} held-out reviewed flows, with {self.per_kind} marked benign "
            f"and {self.per_kind} confirmed attacks"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"flows": self.flows, "per_kind": self.per_kind, "confidence": self.confidence}


@dataclass(frozen=True)
class Measure:
    """One line of the comparison: a rate (or value) for the champion and for the challenger on
    ``rows`` flows; ``better``: ``lower``, ``higher`` or empty (informative only);
    ``champion_alerts`` and ``challenger_alerts``: the counts behind a rate (None for a value), from
    which its Wilson interval at ``confidence`` is computed."""

    name: str
    champion: float | None
    challenger: float | None
    rows: int
    better: str = ""
    champion_alerts: int | None = None
    challenger_alerts: int | None = None
    confidence: float = 0.95

    @property
    def improved(self) -> bool | None:
        """Whether the challenger's figure is the better one (point figures only; see
        :attr:`evidence`)."""
        if self.champion is None or self.challenger is None or not self.better:
            return None
        if self.better == "lower":
            return self.challenger < self.champion
        return self.challenger > self.champion

    @property
    def champion_interval(self) -> tuple[float, float] | None:
        if self.champion_alerts is None:
            return None
        return wilson_interval(self.champion_alerts, self.rows, self.confidence)

    @property
    def challenger_interval(self) -> tuple[float, float] | None:
        if self.challenger_alerts is None:
            return None
        return wilson_interval(self.challenger_alerts, self.rows, self.confidence)

    @property
    def evidence(self) -> Literal["better", "worse", "unclear"] | None:
        """``better`` (``worse``) when the challenger's interval lies wholly on the better (worse)
        side of the champion's, ``unclear`` when they overlap, None for an informative line or one
        without flows."""
        mine, theirs = self.challenger_interval, self.champion_interval
        if not self.better or mine is None or theirs is None:
            return None
        if mine[1] < theirs[0]:
            return "better" if self.better == "lower" else "worse"
        if mine[0] > theirs[1]:
            return "better" if self.better == "higher" else "worse"
        return "unclear"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "champion": self.champion,
            "challenger": self.challenger,
            "rows": self.rows,
            "better": self.better,
            "champion_interval": _listed(self.champion_interval),
            "challenger_interval": _listed(self.challenger_interval),
            "evidence": self.evidence,
        }


def _listed(interval: tuple[float, float] | None) -> list[float] | None:
    return None if interval is None else [interval[0], interval[1]]


CHALLENGER_BETTER = "challenger better"
CHAMPION_BETTER = "champion better"
TRADE_OFF = "trade-off"
NOT_ENOUGH_EVIDENCE = "not enough evidence"


@dataclass(frozen=True)
class Verdict:
    """What the held-out feedback supports: ``outcome`` is :data:`CHALLENGER_BETTER`,
    :data:`CHAMPION_BETTER`, :data:`TRADE_OFF` (better on one held-out rate, worse on the other) or
    :data:`NOT_ENOUGH_EVIDENCE`; ``reason`` says why; ``benign`` and ``attacks``: the held-out
    reviewed flows of each kind it was decided on."""

    outcome: str
    reason: str
    benign: int
    attacks: int
    rule: EvidenceRule = field(default_factory=EvidenceRule)

    @property
    def challenger_better(self) -> bool:
        return self.outcome == CHALLENGER_BETTER

    @property
    def enough_feedback(self) -> bool:
        rule = self.rule
        return self.benign + self.attacks >= rule.flows and min(self.benign, self.attacks) >= rule.per_kind

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "reason": self.reason,
            "held_out": {"flows": self.benign + self.attacks, "benign": self.benign, "attacks": self.attacks},
            "minimum": self.rule.to_dict(),
            "enough_feedback": self.enough_feedback,
        }


@dataclass(frozen=True)
class Comparison:
    """The champion and the challenger measured on the same flows, and what the held-out feedback
    supports (``verdict``)."""

    champion: str
    challenger: str
    measures: list[Measure] = field(default_factory=list)
    verdict: Verdict | None = None

    def measure(self, name: str) -> Measure:
        for item in self.measures:
            if item.name == name:
                return item
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "champion": self.champion,
            "challenger": self.challenger,
            "verdict": None if self.verdict is None else self.verdict.to_dict(),
            "measures": [m.to_dict() for m in self.measures],
        }


THRESHOLD = "threshold"
HELD_OUT_BENIGN = "alert rate on held-out benign feedback"
HELD_OUT_ATTACKS = "alert rate on held-out confirmed attacks"
ALL_BENIGN = "alert rate on all benign feedback"
ALL_ATTACKS = "alert rate on all confirmed attacks"
TRAFFIC_NORMAL = "alert rate on normal flows of the new traffic (partly trained on)"
TRAFFIC_ATTACKS = "alert rate on attacks of the new traffic (partly trained on)"
TRAFFIC_ALL = "alert rate on the new traffic (partly trained on)"


def alerts_of(bundle: ModelBundle, flows: pl.DataFrame) -> np.ndarray:
    """Which flows ``bundle`` alerts on, scoring ``flows`` as one table (as the service does)."""
    if flows.height == 0:
        return np.zeros(0, dtype=bool)
    return score_flows(bundle, _flow_only(flows))["alert"].to_numpy()


def decide(measures: Sequence[Measure], rule: EvidenceRule | None = None) -> Verdict:
    """The verdict of the held-out lines of ``measures`` (:data:`HELD_OUT_BENIGN` and
    :data:`HELD_OUT_ATTACKS`) under ``rule``: a better model only on enough held-out feedback and
    where the intervals of a held-out rate do not overlap."""
    rule = rule or EvidenceRule()
    held = {m.name: m for m in measures if m.name in (HELD_OUT_BENIGN, HELD_OUT_ATTACKS)}
    benign = held[HELD_OUT_BENIGN].rows if HELD_OUT_BENIGN in held else 0
    attacks = held[HELD_OUT_ATTACKS].rows if HELD_OUT_ATTACKS in held else 0
    flows = benign + attacks
    if flows < rule.flows or min(benign, attacks) < rule.per_kind:
        reason = (
            f"{flows} held-out reviewed flow(s) ({benign} marked benign, {attacks} confirmed attack(s)); "
            f"the minimum to name a better model is {rule.describe()}"
        )
        return Verdict(NOT_ENOUGH_EVIDENCE, reason, benign, attacks, rule)
    level = f"{rule.confidence:.0%} intervals apart"
    opposite = {"lower": "higher", "higher": "lower"}
    better = [f"{m.better} {m.name}" for m in held.values() if m.evidence == "better"]
    worse = [f"{opposite[m.better]} {m.name}" for m in held.values() if m.evidence == "worse"]
    if better and worse:
        outcome = TRADE_OFF
        reason = f"the challenger has a {better[0]} but also a {worse[0]} ({level})"
    elif better:
        outcome, reason = CHALLENGER_BETTER, f"the challenger has a {' and a '.join(better)} ({level})"
    elif worse:
        outcome, reason = CHAMPION_BETTER, f"the challenger has a {' and a '.join(worse)} ({level})"
    else:
        outcome = NOT_ENOUGH_EVIDENCE
        reason = (
            f"the {rule.confidence:.0%} intervals of the two models overlap on every held-out rate: "
            "the feedback does not support a difference"
        )
    return Verdict(outcome, reason, benign, attacks, rule)


def compare(
    champion: ModelBundle,
    challenger: ModelBundle,
    data: LoopData,
    *,
    traffic_rows: int | None = None,
    names: tuple[str, str] = ("champion", "challenger"),
    rule: EvidenceRule | None = None,
) -> Comparison:
    """Both models score the same table (the new traffic, its first ``traffic_rows`` rows, and the
    reviewed flows not in it); the alert rates, with their intervals, are taken on the reviewed flows
    (held out, and all) and on the new traffic (by its own labels when it has them), and the held-out
    ones decide the verdict (see :func:`decide`)."""
    rule = rule or EvidenceRule()
    measures = [Measure(THRESHOLD, _threshold(champion), _threshold(challenger), 0)]
    flagged = [alerts_of(champion, data.evaluation), alerts_of(challenger, data.evaluation)]
    reviewed = data.reviewed
    groups: list[tuple[str, np.ndarray, str]] = []
    for name, mask, better in (
        (HELD_OUT_BENIGN, reviewed["held_out"] & reviewed["benign"], "lower"),
        (HELD_OUT_ATTACKS, reviewed["held_out"] & ~reviewed["benign"], "higher"),
        (ALL_BENIGN, reviewed["benign"], "lower"),
        (ALL_ATTACKS, ~reviewed["benign"], "higher"),
    ):
        groups.append((name, reviewed.filter(mask)[ALERT_ROWS].to_numpy(), better))
    traffic = np.arange(data.evaluation.height if traffic_rows is None else traffic_rows)
    if len(traffic):
        labels = data.evaluation["label"] if "label" in data.evaluation.columns else None
        if labels is not None and labels[: len(traffic)].null_count() < len(traffic):
            normal = (labels[: len(traffic)].fill_null(NORMAL) == NORMAL).to_numpy()
            groups.append((TRAFFIC_NORMAL, traffic[normal], "lower"))
            groups.append((TRAFFIC_ATTACKS, traffic[~normal], "higher"))
        else:
            groups.append((TRAFFIC_ALL, traffic, ""))
    for name, rows, better in groups:
        counts = [int(alerts[rows].sum()) for alerts in flagged]
        rates = [count / len(rows) if len(rows) else None for count in counts]
        measures.append(
            Measure(name, rates[0], rates[1], len(rows), better, counts[0], counts[1], rule.confidence)
        )
    verdict = decide(measures, rule)
    log.info("%s against %s: %s (%s)", names[1], names[0], verdict.outcome, verdict.reason)
    return Comparison(champion=names[0], challenger=names[1], measures=measures, verdict=verdict)


def _threshold(bundle: ModelBundle) -> float | None:
    return bundle.threshold.value if bundle.threshold is not None else None


# ---------------------------------------------------------------------------------------------------
# retraining
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetrainResult:
    """What :func:`retrain` did."""

    path: Path
    training: TrainingResult
    comparison: Comparison
    feedback: dict[str, int]
    traffic_rows: int
    dropped: int
    supervised: bool


def retrain(
    champion: ModelBundle | str | Path,
    store: AlertStore,
    data: str | Path,
    out: str | Path,
    *,
    champion_name: str = "champion",
    config: Mapping[str, Any] | None = None,
    format: str | None = None,
    mapping: str | None = None,
    feedback_holdout: float = 0.3,
    benign_weight: int = 10,
    holdout_fraction: float = 0.3,
    seed: int = 0,
    overwrite: bool = False,
    progress: Callable[[EpochReport], None] | None = None,
    evidence: EvidenceRule | None = None,
) -> RetrainResult:
    """Train a challenger of the champion's kind and settings (``config`` overrides some) on the
    new traffic ``data`` and the store's feedback, save it to ``out`` and compare the two; the
    comparison names a better model only as ``evidence`` allows (see :class:`EvidenceRule`)."""
    if not isinstance(champion, ModelBundle):
        champion = ModelBundle.load(champion)
    buckets = None
    if champion.view is not None:
        # the challenger reads the same buckets, with its own application vocabulary; reviewed flows
        # go back once, at their own time: repeating them would change their buckets' counts
        buckets = dataclasses.replace(champion.view.config, apps=None)
        if benign_weight != 1:
            log.info("a model of time buckets takes each reviewed flow once (feedback weight not used)")
        benign_weight = 1
    out = Path(out)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out}: already exists (use --force to replace it)")
    supervised = bool(champion.detector.supervised)
    traffic, _ = load_flows(data, format=format, mapping=mapping)
    feedback = split_feedback(labelled_feedback(store), fraction=feedback_holdout, seed=seed)
    loop = loop_data(
        traffic, store.alert_flows(), feedback, supervised=supervised, benign_weight=benign_weight
    )
    # the reviewed flows added from the store (no traffic row) are trained on, never held out
    reviewed = loop.table[TRAFFIC_ROW].is_null().to_numpy()
    table = loop.table.drop(TRAFFIC_ROW)
    if table.height == 0:
        raise ConfigError(f"{data}: no flows to retrain on")
    options = {k: v for k, v in (champion.manifest.get("config") or {}).items() if k not in _NOT_CARRIED}
    options.update(config or {})
    training = fit(
        table,
        model=champion.detector.name,
        config=options,
        holdout_fraction=holdout_fraction,
        seed=seed,
        progress=progress,
        buckets=buckets,
        # the champion's feature settings (its groups, the calendar among them), not the defaults
        features=champion.pipeline.config if champion.pipeline is not None else None,
        train_only=reviewed,
    )
    challenger = training.bundle
    carry_source_format(champion, challenger)
    comparison = compare(
        champion,
        challenger,
        loop,
        traffic_rows=traffic.height,
        names=(champion_name, out.name),
        rule=evidence,
    )
    challenger.metrics["retrain"] = {
        "parent": str(champion.path) if champion.path else None,
        "parent_version": champion_name,
        "traffic": str(data),
        "traffic_rows": traffic.height,
        "left_out": loop.dropped,
        "feedback": feedback.counts(),
        "benign_weight": benign_weight,
        "comparison": comparison.to_dict(),
    }
    training = training.save(out, overwrite=overwrite, onnx=champion.has_onnx)
    log.info("challenger saved to %s", out)
    return RetrainResult(
        path=out,
        training=training,
        comparison=comparison,
        feedback=feedback.counts(),
        traffic_rows=traffic.height,
        dropped=loop.dropped,
        supervised=supervised,
    )
