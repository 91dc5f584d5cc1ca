"""Scheduled retraining in the stream, with a safe promotion (`nadkit stream --retrain-every 1d`).

**The sample.** The stream keeps the flows it scored, with their live score, threshold and alert,
in blocks of stream time (a period's 144th: ten minutes for ``1d``). Blocks take turns, by their
index: four of every five are *training* blocks, the fifth is kept out for the *comparison*, so both
see every hour of the day. Memory is bounded (``max_rows``): past it, whole blocks are dropped at
random (each block draws a priority when it opens; the lowest go first), so what is kept is a
uniform sample of blocks whose flows stay together for the features that look across flows. The
traffic's own ``label`` column is never read: a live stream has no answers, and a replay's are the
answer key.

**The challenger.** At each boundary of stream time (a multiple of the period since the epoch: a
replay of several days retrains at midnight UTC) the period's blocks are taken out and a challenger
of the champion's kind and settings is fitted (:func:`~nadkit.training.fit.fit`) on the training
blocks' flows that were *not alerted*. With an alert store, analyst feedback joins as
:func:`~nadkit.lifecycle.feedback.loop_data` builds it: flows marked benign are trained on,
confirmed attacks never (they only help set the threshold inside ``fit``). The challenger's
threshold is then set again, on its scores of the whole sample scored in time order (so counters
see their neighbours, as live scoring does; ``fit`` scores its hold-out without them), at the
champion's false-positive budget: the score exceeded by that share of the non-alerted flows it was
trained on. Those are flows it has seen, so the threshold errs low (more alerts): the comparison on
the blocks kept out then shows what it really does. (Measured: a threshold taken on kept-out blocks
instead was thrown far up by activity that falls in one block of the day, which training never saw.)

**The promotion** (``promote``):

* with enough held-out labelled feedback (:class:`~nadkit.lifecycle.feedback.EvidenceRule`), the
  feedback decides, whatever the policy: the challenger is promoted only when
  :func:`~nadkit.lifecycle.feedback.compare` names it better (a held-out rate's Wilson intervals
  apart, on the better side) and its alert rate on confirmed attacks, held out and all, is not lower;
* without it, ``evidence`` (the default) and ``never`` keep the challenger for a person to review;
  ``auto-unlabelled`` promotes it when (a) its alert rate on the comparison blocks (every flow, as
  it came) is lower than the champion's live alert rate there with the intervals apart, (b) it
  still alerts on ``keep_strong`` of the champion's strong alerts there (score at least ``strong``
  times the threshold: what the champion was surest of) within the interval of that share, i.e. it
  is refused when even the upper end of the interval lies below ``keep_strong`` (a day may bring a
  handful of strong alerts, often false positives, and 4 of 5 is no evidence of a loss), and (c) it
  alerts on every confirmed attack of the store that the champion alerts on.

Every challenger is registered in the model registry (not active unless promoted) and every
promotion, refusal and rollback is recorded there with its figures
(:meth:`~nadkit.lifecycle.registry.ModelRegistry.record`). A promoted model is on *probation* for
its first ``probation_rows`` scored flows: then the model it replaced scores the same flows, and
when the new model's alert rate on them is higher with the intervals apart, the previous version is
activated again (a rollback). (Measured: judging the live rate against the rate the old model had
on the day before rolled back a good model the next morning, when the day's traffic moved both.)

**The swap.** The runner swaps between micro-batches: what the old scorer holds is scored by it and
written, a new scorer (and drift monitor and adaptive threshold, which start from the new model's
reference and threshold) takes over, and the checkpoint records the active version, so a restart
continues with it. Training runs in a background thread while batches go on with the champion
(``background``); with ``background=False`` (replays, tests) the stream waits for it, and the pause
is measured (``retrain_pause_s`` in the statistics).
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from nadkit.alerts.values import BENIGN_VERDICTS
from nadkit.detection.detect import score_flows
from nadkit.errors import ConfigError
from nadkit.evaluation.drift import DriftReference
from nadkit.evaluation.thresholds import Threshold
from nadkit.lifecycle.feedback import (
    ALL_ATTACKS,
    HELD_OUT_ATTACKS,
    EvidenceRule,
    Feedback,
    alerts_of,
    compare,
    labelled_feedback,
    loop_data,
    split_feedback,
    wilson_interval,
)
from nadkit.lifecycle.registry import ModelRegistry
from nadkit.sources import ROW
from nadkit.stream.netflow import RECEIVED
from nadkit.stream.sinks import model_version
from nadkit.training.bundle import ModelBundle, carry_source_format
from nadkit.training.fit import calibrate, fit

#: the :class:`~nadkit.stream.runner.StreamRunner` that hands itself to the hooks (it imports this
#: module, so it is not imported here)
Runner = Any

log = logging.getLogger(__name__)

Promote = Literal["evidence", "auto-unlabelled", "never"]
PROMOTE_POLICIES = ("evidence", "auto-unlabelled", "never")
#: columns the sample keeps beside the flow's own
SCORE, THRESHOLD, ALERT, BLOCK = "__live_score__", "__live_threshold__", "__live_alert__", "__block__"
#: the jobs of blocks in turn: four train, one is kept out for the comparison
ROLES = ("train", "train", "train", "train", "compare")
#: columns of the traffic never trained on or carried (the answers of a replay, the receiver's clock)
NOT_READ = ("label", "label_original", RECEIVED)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_NOT_CARRIED = frozenset({"device"})


def parse_duration(text: str) -> float:
    """Seconds of a duration such as ``1d``, ``6h``, ``30m``, ``90s`` or ``2w`` (a bare number: seconds)."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhdw]?)\s*", str(text))
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(f"not a duration: {text!r} (e.g. 1d, 6h, 30m, 90s)")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


@dataclass(frozen=True)
class RetrainSettings:
    """How a stream retrains (module docstring). ``every_s``: the period in stream time;
    ``registry``: the model registry; ``store``: the alert store with analyst feedback (None: none);
    ``false_positive_rate``: the challenger's budget (None: the champion threshold's, else 1%)."""

    every_s: float
    registry: Path
    store: Path | None = None
    promote: Promote = "evidence"
    max_rows: int = 200_000
    min_rows: int = 1_000
    false_positive_rate: float | None = None
    strong: float = 2.0
    keep_strong: float = 0.9
    probation_rows: int = 2_000
    background: bool = True
    seed: int = 0
    engine: str = "auto"
    evidence: EvidenceRule = field(default_factory=EvidenceRule)

    def __post_init__(self) -> None:
        if not self.every_s >= 60:
            raise ConfigError(f"retraining needs a period of at least a minute, got {self.every_s:g} s")
        if self.promote not in PROMOTE_POLICIES:
            raise ConfigError(f"--promote must be one of {', '.join(PROMOTE_POLICIES)}, not {self.promote!r}")
        if self.min_rows < 100 or self.max_rows < self.min_rows:
            raise ConfigError("retraining needs min_rows >= 100 and max_rows >= min_rows")
        if self.false_positive_rate is not None and not 0 < self.false_positive_rate < 0.5:
            raise ConfigError(
                f"the false-positive budget must be in (0, 0.5), got {self.false_positive_rate}"
            )
        if not 0 < self.keep_strong <= 1 or self.strong < 1:
            raise ConfigError("keep_strong must be in (0, 1] and strong at least 1")

    @property
    def block_us(self) -> int:
        return max(1, int(self.every_s * 1e6 / 144))


# ---------------------------------------------------------------------------------------------------
# the sample
# ---------------------------------------------------------------------------------------------------


class FlowSample:
    """The scored flows of the stream, in blocks of stream time, bounded to ``max_rows`` (module
    docstring). Raw flows come at push (:meth:`add`), their live scores when written (:meth:`scored`)."""

    def __init__(self, block_us: int, max_rows: int, seed: int = 0) -> None:
        self.block_us = block_us
        self.max_rows = max_rows
        self._rng = np.random.default_rng(seed)
        self._pending: list[pl.DataFrame] = []
        self._scores: list[pl.DataFrame] = []
        self.blocks: dict[int, list[pl.DataFrame]] = {}
        self._priority: dict[int, float] = {}
        self.rows = 0
        self.dropped = 0

    def add(self, flows: pl.DataFrame) -> None:
        if flows.height and "time" in flows.columns:
            self._pending.append(flows.drop([c for c in NOT_READ if c in flows.columns]))

    def scored(self, records: pl.DataFrame) -> None:
        if records.height == 0:
            return
        self._scores.append(
            records.select(
                (pl.col("row") - 1).cast(pl.Int64).alias(ROW),
                pl.col("score").alias(SCORE),
                pl.col("threshold").alias(THRESHOLD),
                pl.col("alert").alias(ALERT),
            )
        )
        self._settle()

    def _settle(self) -> None:
        if not self._pending or not self._scores:
            return
        pending = pl.concat(self._pending, how="diagonal_relaxed").with_columns(pl.col(ROW).cast(pl.Int64))
        scores = pl.concat(self._scores, how="vertical_relaxed")
        done = pending.join(scores, on=ROW, how="inner")
        rest = pending.join(scores, on=ROW, how="anti")
        self._pending = [rest] if rest.height else []
        self._scores = []
        if done.height == 0:
            return
        done = done.with_columns((pl.col("time").dt.epoch("us") // self.block_us).alias(BLOCK))
        for (block,), part in done.partition_by(BLOCK, as_dict=True, maintain_order=True).items():
            index = int(block)  # type: ignore[arg-type]
            if index not in self.blocks:
                self.blocks[index] = []
                self._priority[index] = float(self._rng.random())
            self.blocks[index].append(part)
            self.rows += part.height
        newest = max(self.blocks)
        while self.rows > self.max_rows and len(self.blocks) > 1:
            lowest = min((b for b in self.blocks if b != newest), key=self._priority.__getitem__)
            removed = sum(p.height for p in self.blocks.pop(lowest))
            self._priority.pop(lowest)
            self.rows -= removed
            self.dropped += removed

    def rows_before(self, bound_us: int) -> int:
        return sum(
            sum(p.height for p in parts) for b, parts in self.blocks.items() if b * self.block_us < bound_us
        )

    def take(self, bound_us: int) -> pl.DataFrame:
        """The settled flows of blocks that start before ``bound_us``, in time order (removed)."""
        chosen = sorted(b for b in self.blocks if b * self.block_us < bound_us)
        parts = [p for b in chosen for p in self.blocks.pop(b)]
        for b in chosen:
            self._priority.pop(b, None)
        if not parts:
            return pl.DataFrame()
        frame = pl.concat(parts, how="diagonal_relaxed")
        self.rows -= frame.height
        return frame.sort("time", maintain_order=True).drop(ROW)


# ---------------------------------------------------------------------------------------------------
# one retraining: fit, threshold, compare, decide
# ---------------------------------------------------------------------------------------------------


@dataclass
class Decision:
    """What one retraining decided: ``kind`` ``promotion`` or ``refusal``; ``version``: the
    challenger's registry version (None where it could not be trained or registered)."""

    kind: str
    reason: str
    version: str | None
    champion: str | None
    figures: dict[str, Any]
    path: Path | None = None
    seconds: float = 0.0


def _rate(alerts: np.ndarray, confidence: float) -> dict[str, Any]:
    count, rows = int(np.sum(alerts)), len(alerts)
    interval = wilson_interval(count, rows, confidence)
    return {
        "rate": count / rows if rows else None,
        "alerts": count,
        "rows": rows,
        "interval": None if interval is None else list(interval),
    }


def _apart_lower(mine: dict[str, Any], theirs: dict[str, Any]) -> bool:
    return bool(mine["interval"] and theirs["interval"] and mine["interval"][1] < theirs["interval"][0])


def budget(champion: ModelBundle, settings: RetrainSettings) -> float:
    """The challenger's false-positive budget: the settings', else the champion threshold's, else 1%."""
    if settings.false_positive_rate is not None:
        return settings.false_positive_rate
    params = champion.threshold.params if champion.threshold is not None else {}
    value = params.get("false_positive_rate")
    return float(value) if isinstance(value, int | float) and 0 < value < 0.5 else 0.01


def challenge(
    champion: ModelBundle,
    sample: pl.DataFrame,
    settings: RetrainSettings,
    *,
    feedback: Feedback | None = None,
    store_alerts: pl.DataFrame | None = None,
) -> tuple[ModelBundle, Decision]:
    """Fit a challenger on ``sample`` (from :meth:`FlowSample.take`) and decide on it (module
    docstring); the challenger is returned in memory, not yet registered."""
    confidence = settings.evidence.confidence
    role = pl.Series([ROLES[int(b) % len(ROLES)] for b in sample[BLOCK].to_list()], dtype=pl.String)
    alerted = sample[ALERT].fill_null(True).to_numpy()
    flows = sample.drop(SCORE, THRESHOLD, ALERT, BLOCK)
    train = flows.filter((role == "train") & pl.Series(~alerted))
    feedback = feedback or Feedback(pl.DataFrame(), pl.DataFrame())
    reviewed = feedback.all if feedback.train.height or feedback.held_out.height else pl.DataFrame()
    table = train
    if reviewed.height:
        loop = loop_data(
            train, store_alerts if store_alerts is not None else pl.DataFrame(), feedback, supervised=False
        )
        table = loop.table.drop("__traffic_row__", strict=False)
    options = {k: v for k, v in (champion.manifest.get("config") or {}).items() if k not in _NOT_CARRIED}
    features = champion.pipeline.config if champion.pipeline is not None else None  # the champion's groups
    challenger = fit(
        table, model=champion.detector.name, config=options, seed=settings.seed, features=features
    ).bundle
    carry_source_format(champion, challenger)
    # the threshold, on scores taken in context (the whole sample in time order, as live scoring)
    matrices: list[np.ndarray] = []
    scored = score_flows(challenger, flows, on_scored=lambda matrix, _: matrices.append(np.asarray(matrix)))
    scores = scored["score"].to_numpy()
    rate = budget(champion, settings)
    ref = ((role == "train").to_numpy()) & ~alerted
    if ref.sum() < 50:
        raise ConfigError(
            f"{int(ref.sum())} non-alerted flows in the training blocks: too few for a threshold"
        )
    value = float(np.quantile(scores[ref], 1 - rate, method="higher"))
    challenger.threshold = Threshold("quantile", value, {"false_positive_rate": rate}, rows=int(ref.sum()))
    # the scale, explanations and drift reference follow the scores the threshold was set on
    challenger.calibration = calibrate(scores[ref], None, pipeline=challenger.pipeline, normal_train=train)
    matrix = np.concatenate(matrices) if matrices else np.zeros((0, 0))
    if challenger.reference is not None and len(matrix) == len(scores):
        challenger.reference = DriftReference.of(matrix[ref], scores[ref], challenger.reference.names)
    challenger.metrics["retrain"] = {"parent_version": None, "stream_rows": sample.height}
    held = (role == "compare").to_numpy()
    live = sample[SCORE].to_numpy()[held]
    strong = live >= settings.strong * sample[THRESHOLD].to_numpy()[held]
    mine = scores[held] >= value
    figures: dict[str, Any] = {
        "sample_rows": sample.height,
        "trained_on": table.height,
        "left_out_alerted": int(alerted[(role == "train").to_numpy()].sum()),
        "threshold": {
            "champion": champion.threshold.value if champion.threshold else None,
            "challenger": value,
        },
        "false_positive_budget": rate,
        "recent_traffic": {
            "champion": _rate(alerted[held], confidence),
            "challenger": _rate(mine, confidence),
        },
        "strong_alerts": {"champion": int(strong.sum()), "kept": int(mine[strong].sum())},
        "feedback": feedback.counts() if reviewed.height else {},
    }
    attacks = (
        reviewed.filter(~pl.col("verdict").is_in(list(BENIGN_VERDICTS))) if reviewed.height else reviewed
    )
    if attacks.height:
        figures["confirmed_attacks"] = {
            "rows": attacks.height,
            "champion": int(alerts_of(champion, attacks).sum()),
            "challenger": int(alerts_of(challenger, attacks).sum()),
        }
    kind, reason = _decide(champion, challenger, flows.filter(pl.Series(held)), feedback, figures, settings)
    return challenger, Decision(kind, reason, None, None, figures)


def _decide(
    champion: ModelBundle,
    challenger: ModelBundle,
    compared: pl.DataFrame,
    feedback: Feedback,
    figures: dict[str, Any],
    settings: RetrainSettings,
) -> tuple[str, str]:
    """``promotion`` or ``refusal``, and why (module docstring)."""
    attacks = figures.get("confirmed_attacks")
    loses_attacks = bool(attacks and attacks["challenger"] < attacks["champion"])
    if feedback.held_out.height:
        loop = loop_data(compared, pl.DataFrame(), feedback, supervised=False)
        comparison = compare(champion, challenger, loop, traffic_rows=compared.height, rule=settings.evidence)
        figures["comparison"] = comparison.to_dict()
        verdict = comparison.verdict
        if verdict is not None and verdict.enough_feedback:
            lost = [
                name
                for name in (HELD_OUT_ATTACKS, ALL_ATTACKS)
                if (m := comparison.measure(name)).challenger is not None
                and m.champion is not None
                and m.challenger < m.champion
            ]
            if settings.promote == "never":
                return "refusal", f"promotion is off (--promote never); the feedback says: {verdict.reason}"
            if not verdict.challenger_better:
                return "refusal", f"labelled feedback: {verdict.outcome}: {verdict.reason}"
            if lost or loses_attacks:
                return "refusal", "the challenger alerts on fewer confirmed attacks than the champion"
            return "promotion", f"labelled feedback: {verdict.reason}"
    if settings.promote != "auto-unlabelled":
        return "refusal", (
            "not enough labelled feedback to show the challenger better; kept for review "
            "(promotion without it needs --promote auto-unlabelled)"
        )
    recent = figures["recent_traffic"]
    strong = figures["strong_alerts"]
    if not _apart_lower(recent["challenger"], recent["champion"]):
        return "refusal", (
            f"alert rate on held-out recent traffic {recent['challenger']['rate']:.4f} against the "
            f"champion's {recent['champion']['rate']:.4f}: not lower with the intervals apart"
        )
    kept = wilson_interval(strong["kept"], strong["champion"], settings.evidence.confidence)
    if kept is not None and kept[1] < settings.keep_strong:
        return "refusal", (
            f"the challenger keeps {strong['kept']} of the champion's {strong['champion']} strong alerts "
            f"(at least {settings.keep_strong:.0%} needed, within the interval)"
        )
    if loses_attacks:
        return "refusal", "the challenger alerts on fewer confirmed attacks than the champion"
    return "promotion", (
        f"no labelled feedback (--promote auto-unlabelled): alert rate on held-out recent traffic "
        f"{recent['challenger']['rate']:.4f} against {recent['champion']['rate']:.4f} (intervals apart), "
        f"{strong['kept']} of {strong['champion']} strong alerts kept"
    )


# ---------------------------------------------------------------------------------------------------
# the retrainer of a stream
# ---------------------------------------------------------------------------------------------------


class Retrainer:
    """The schedule, the sample, the background job and the registry records of one stream."""

    def __init__(
        self, bundle: ModelBundle, settings: RetrainSettings, saved: dict[str, Any] | None = None
    ) -> None:
        if bundle.view is not None or bundle.detector.supervised or bundle.pipeline is None:
            raise ConfigError("retraining in the stream takes unsupervised per-flow models only")
        self.settings = settings
        self.registry = ModelRegistry(settings.registry)
        self.sample = FlowSample(settings.block_us, settings.max_rows, settings.seed)
        saved = saved or {}
        self.champion = bundle
        self.version: str | None = saved.get("version")
        self.previous: str | None = saved.get("previous")
        if self.version:
            self.champion = ModelBundle.load(self.registry.path(self.version), engine=settings.engine)  # type: ignore[arg-type]
            log.info("retraining: continuing with %s from the checkpoint", self.version)
        else:
            self.version = self._register_champion(bundle)
        self.next_due: int | None = saved.get("next_due_us")
        self.probation: dict[str, Any] | None = saved.get("probation")
        self.counts: dict[str, int] = dict(saved.get("counts") or {})
        self.pause_s = 0.0
        self.last: dict[str, Any] | None = saved.get("last")
        self._job: threading.Thread | None = None
        self._result: tuple[ModelBundle | None, Decision] | None = None

    def _register_champion(self, bundle: ModelBundle) -> str:
        if bundle.path is not None and (bundle.path / "manifest.json").is_file():
            version = self.registry.register(bundle.path, note="the stream's first champion").version
        else:
            with tempfile.TemporaryDirectory(dir=self._staging()) as folder:
                bundle.save(Path(folder) / "bundle")
                version = self.registry.register(
                    Path(folder) / "bundle", note="the stream's first champion"
                ).version
        if self.registry.active_version() is None:
            self.registry.activate(version, by="stream", verify=False)
        return version

    def _staging(self) -> Path:
        self.registry.root.mkdir(parents=True, exist_ok=True)
        return self.registry.root

    # -- the runner's hooks ---------------------------------------------------------------------------

    def add(self, flows: pl.DataFrame) -> None:
        self.sample.add(flows)

    def scored(self, records: pl.DataFrame) -> None:
        self.sample.scored(records)
        if self.probation is not None and records.height:
            self.probation["rows"] += records.height

    def step(self, runner: Runner) -> None:
        """Between batches: apply a finished job, judge probation, start a job when a boundary passed."""
        if self._result is not None and (self._job is None or not self._job.is_alive()):
            self._apply(runner)
        self._judge_probation(runner)
        newest = runner._max_seen
        if newest is None:
            return
        period = int(self.settings.every_s * 1e6)
        if self.next_due is None:
            self.next_due = (newest // period + 1) * period
        if newest < self.next_due or self._job is not None:
            return
        bound = self.next_due
        while self.next_due <= newest:
            self.next_due += period
        if self.sample.rows_before(bound) < self.settings.min_rows:
            log.info(
                "retraining skipped at %s: fewer than %d flows kept", _iso(bound), self.settings.min_rows
            )
            self.counts["skipped"] = self.counts.get("skipped", 0) + 1
            return
        sample = self.sample.take(bound)
        self._job = threading.Thread(target=self._work, args=(sample,), name="nadkit-retrain", daemon=True)
        started = time.perf_counter()
        self._job.start()
        if not self.settings.background:
            self._job.join()
            self.pause_s += time.perf_counter() - started
            self._apply(runner)

    def finish(self, runner: Runner) -> None:
        """End of input: wait for a running job and apply it."""
        if self._job is not None:
            self._job.join()
            self._apply(runner)

    # -- the job --------------------------------------------------------------------------------------

    def _work(self, sample: pl.DataFrame) -> None:
        started = time.perf_counter()
        challenger: ModelBundle | None = None
        try:
            feedback, store_alerts = self._feedback()
            challenger, decision = challenge(
                self.champion, sample, self.settings, feedback=feedback, store_alerts=store_alerts
            )
            challenger.metrics["retrain"]["parent_version"] = self.version
            decision.champion = self.version
            with tempfile.TemporaryDirectory(dir=self._staging()) as folder:
                challenger.save(Path(folder) / "bundle")
                note = f"retrained in the stream from {self.version}; {decision.kind}: {decision.reason}"
                registered = self.registry.register(Path(folder) / "bundle", note=note)
            decision.version, decision.path = registered.version, registered.path
            decision.seconds = time.perf_counter() - started
            decision.figures["seconds"] = round(decision.seconds, 3)
            self.registry.record(
                "refusal" if decision.kind == "refusal" else "promotion",
                registered.version,
                champion=self.version,
                reason=decision.reason,
                figures=decision.figures,
                by="stream",
            )
        except Exception as error:  # a failed retraining must not stop the stream: logged, counted
            log.error("retraining failed: %s", error)
            log.debug("retraining failed", exc_info=True)
            decision = Decision("failed", str(error), None, self.version, {"sample_rows": sample.height})
            challenger = None
        self._result = (challenger, decision)

    def _feedback(self) -> tuple[Feedback | None, pl.DataFrame | None]:
        if self.settings.store is None or not Path(self.settings.store).exists():
            return None, None
        from nadkit.alerts.store import AlertStore

        store = AlertStore(self.settings.store)
        try:
            feedback = split_feedback(labelled_feedback(store), seed=self.settings.seed)
            return feedback, store.alert_flows()
        finally:
            close = getattr(store, "close", None)
            if callable(close):
                close()

    def _apply(self, runner: Runner) -> None:
        result, self._result, self._job = self._result, None, None
        if result is None:
            return
        _, decision = result
        self.counts[decision.kind] = self.counts.get(decision.kind, 0) + 1
        self.last = {
            "kind": decision.kind,
            "version": decision.version,
            "reason": decision.reason,
            "seconds": round(decision.seconds, 3),
        }
        if decision.kind != "promotion" or decision.version is None:
            return
        self.probation = {
            "version": decision.version,
            "rows": 0,
            "replaced": self.version,
            "from_row": runner._next_row,
        }
        self._switch(runner, decision.version)

    def _switch(self, runner: Runner, version: str) -> None:
        self.registry.activate(version, by="stream")
        bundle = ModelBundle.load(self.registry.path(version), engine=self.settings.engine)  # type: ignore[arg-type]
        self.previous, self.version, self.champion = self.version, version, bundle
        swap(runner, bundle)

    def _judge_probation(self, runner: Runner) -> None:
        """After ``probation_rows`` flows scored by a promoted model, the model it replaced scores the
        same flows (kept in the sample); the promotion is rolled back when the new model's alert rate
        on them is higher with the intervals apart."""
        trial = self.probation
        if trial is None or trial["rows"] < self.settings.probation_rows or not trial.get("replaced"):
            return
        if self._job is not None:  # judged once the running job is applied (it compares to this model)
            return
        self.probation = None
        self.sample._settle()
        parts = [p.filter(pl.col(ROW) >= trial["from_row"]) for ps in self.sample.blocks.values() for p in ps]
        flows = (
            pl.concat([p for p in parts if p.height], how="diagonal_relaxed")
            if any(p.height for p in parts)
            else pl.DataFrame()
        )
        if flows.height == 0:
            return
        flows = flows.sort("time", maintain_order=True)
        live = flows[ALERT].fill_null(False).to_numpy()
        replaced = ModelBundle.load(self.registry.path(trial["replaced"]), engine=self.settings.engine)  # type: ignore[arg-type]
        before = score_flows(replaced, flows.drop(ROW, SCORE, THRESHOLD, ALERT, BLOCK))["alert"].to_numpy()
        confidence = self.settings.evidence.confidence
        figures = {"promoted": _rate(live, confidence), "replaced": _rate(before, confidence)}
        if not _apart_lower(figures["replaced"], figures["promoted"]):
            log.info("retraining: %s passed its probation on %d flows", trial["version"], flows.height)
            return
        reason = (
            f"on the {flows.height} flows since its promotion it alerts on {figures['promoted']['rate']:.4f} "
            f"of them, the model it replaced on {figures['replaced']['rate']:.4f} (intervals apart)"
        )
        self.registry.record(
            "rollback",
            trial["version"],
            champion=trial["replaced"],
            reason=reason,
            figures=figures,
            by="stream",
        )
        self.counts["rollback"] = self.counts.get("rollback", 0) + 1
        self.last = {"kind": "rollback", "version": trial["replaced"], "reason": reason, "seconds": 0.0}
        self._switch(runner, trial["replaced"])

    # -- state ----------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "previous": self.previous,
            "next_due_us": self.next_due,
            "probation": self.probation,
            "counts": self.counts,
            "last": self.last,
        }

    def stats(self) -> dict[str, Any]:
        return {
            "model_version": self.version,
            "retrain_counts": dict(self.counts),
            "retrain_last": self.last,
            "retrain_pause_s": round(self.pause_s, 3),
            "retrain_sample_rows": self.sample.rows,
            "retrain_running": self._job is not None,
        }


def swap(runner: Runner, bundle: ModelBundle) -> None:
    """Swap the runner's model between batches: what the old scorer holds is scored by it, then a new
    scorer, drift monitor and adaptive threshold start from ``bundle``; the sinks name the new model."""
    started = time.perf_counter()
    runner._emit(runner.scorer.flush().frame)
    runner.bundle = bundle
    runner.build_scorer(bundle, restart=True)
    for sink in runner.sinks:
        if hasattr(sink, "model_version"):
            sink.model_version = model_version(bundle)
    runner._save_checkpoint()
    log.info(
        "stream %s: now scoring with %s (swapped in %.2f s)",
        runner.source.name,
        model_version(bundle),
        time.perf_counter() - started,
    )


def _iso(micros: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(micros / 1e6, UTC).isoformat()


__all__ = [
    "PROMOTE_POLICIES",
    "Decision",
    "FlowSample",
    "RetrainSettings",
    "Retrainer",
    "budget",
    "challenge",
    "parse_duration",
    "swap",
]
