"""The live detection loop: micro-batches of flows from a source, scored with state carried from batch
to batch, records written to sinks, in bounded memory, stopped gracefully, restarted without
duplicates.

**Micro-batches.** The loop collects what the source hands over for ``batch_seconds`` (or until
``batch_rows`` flows) and pushes it to a :class:`~nadkit.detection.detect.Scorer`, which carries the counter,
segment and window state across batches; on shutdown it flushes what is held. The scores of a stream
therefore equal the scores of the same flows scored as one table, wherever the batch boundaries fall.

**Bounded memory.** Flows older than ``lateness_s`` behind the newest one seen are *late*: dropped and
counted. The scorer holds only what its windows need (the counters' look-back, open segments); the
held-rows gauge is reported, and past ``max_held`` rows a safety valve releases (scores early) or
drops everything held, counting it. Sources hand over through a bounded queue; the UDP collector
drops and counts packets when the queue is full, readers of files wait.

**Restarts.** With a checkpoint file, the loop records per source the time up to which every flow has
been written (the *complete-until* time) and the identities of records written after it; a restarted
stream skips records at or before that time and records already written, so replaying a source (a
followed file read again from its start) emits no duplicate. The file is replaced atomically.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from nadkit.alerts.incident_tracker import IncidentTracker
from nadkit.alerts.incidents import IncidentConfig
from nadkit.detection.detect import Scorer
from nadkit.errors import ConfigError, NadkitError
from nadkit.fileio import write_atomically
from nadkit.schema import CANONICAL, FLOW_KEY
from nadkit.sources import ROW
from nadkit.stream.continual import Continual, ContinualConfig
from nadkit.stream.netflow import RECEIVED
from nadkit.stream.retraining import Retrainer, RetrainSettings
from nadkit.stream.sinks import JsonLinesSink, Sink, model_version
from nadkit.stream.sources import END, Handoff, StreamSource
from nadkit.training.bundle import ModelBundle

log = logging.getLogger(__name__)

Overflow = Literal["release", "drop"]
#: the columns that identify a written record across restarts
IDENTITY = FLOW_KEY
CHECKPOINT_FORMAT = "nadkit-stream-checkpoint"
_HASH_SEED = 20_240_611


@dataclass(frozen=True)
class StreamConfig:
    """How the stream loop runs (module docstring). ``lateness_s`` None: the source's default."""

    batch_seconds: float = 1.0
    batch_rows: int = 50_000
    lateness_s: float | None = None
    threshold: float | None = None
    top: int = 5
    all_flows: bool = False
    max_held: int = 5_000_000
    overflow: Overflow = "release"
    queue_size: int = 20_000
    status_seconds: float = 10.0
    checkpoint: Path | None = None
    checkpoint_seconds: float = 0.0
    #: where incident updates go (JSON lines: one line each time a batch touches or closes one)
    incidents: Path | None = None
    #: the idle seconds that end an incident's episode
    incident_gap_s: float = 300.0
    #: drift measured per window, and the adaptive threshold (:mod:`nadkit.stream.continual`)
    continual: ContinualConfig = field(default_factory=ContinualConfig)
    #: scheduled retraining with a safe promotion (:mod:`nadkit.stream.retraining`); None: off
    retrain: RetrainSettings | None = None

    def __post_init__(self) -> None:
        if not self.batch_seconds > 0:
            raise ConfigError("batch_seconds must be positive")
        if self.batch_rows < 1:
            raise ConfigError("batch_rows must be at least 1")
        if self.lateness_s is not None and not self.lateness_s >= 0:
            raise ConfigError("lateness_s must be a non-negative number of seconds")
        if self.max_held < 1:
            raise ConfigError("max_held must be at least 1")
        if self.overflow not in ("release", "drop"):
            raise ConfigError(f"overflow must be 'release' or 'drop', not {self.overflow!r}")
        if self.queue_size < 1:
            raise ConfigError("queue_size must be at least 1")


class LatencyRecorder:
    """Seconds from a flow's arrival to its record being written: a uniform sample of all of them
    (for the summary) and the most recent ones (for status lines)."""

    def __init__(self, size: int = 200_000, recent: int = 20_000, seed: int = 0) -> None:
        self.size = size
        self.seen = 0
        self._sample = np.empty(size, dtype=np.float64)
        self._recent: deque[np.ndarray] = deque()
        self._recent_rows = 0
        self._recent_cap = recent
        self._rng = np.random.default_rng(seed)

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size == 0:
            return
        free = max(0, min(self.size - self.seen, values.size))
        if free:
            self._sample[self.seen : self.seen + free] = values[:free]
        rest = values[free:]
        if rest.size:
            positions = self.seen + free + np.arange(rest.size)
            slots = (self._rng.random(rest.size) * (positions + 1)).astype(np.int64)
            keep = slots < self.size
            self._sample[slots[keep]] = rest[keep]
        self.seen += values.size
        self._recent.append(values)
        self._recent_rows += values.size
        while self._recent_rows - self._recent[0].size >= self._recent_cap:
            self._recent_rows -= self._recent.popleft().size

    def quantiles(self, *, recent: bool = False) -> tuple[float, float] | None:
        """(p50, p99) in seconds, or None before any record."""
        if recent:
            if not self._recent:
                return None
            values = np.concatenate(list(self._recent))
        else:
            values = self._sample[: min(self.seen, self.size)]
        if values.size == 0:
            return None
        p50, p99 = np.quantile(values, [0.5, 0.99])
        return float(p50), float(p99)


@dataclass
class StreamStats:
    """What the stream did (counters since its start, gauges now)."""

    source: str = ""
    started: float = field(default_factory=time.time)
    seconds: float = 0.0
    batches: int = 0
    flows_in: int = 0
    #: flows received whose micro-batch has been processed (scored, or held for later flows)
    flows_done: int = 0
    #: when the last micro-batch finished (epoch seconds)
    last_batch_at: float = 0.0
    flows_scored: int = 0
    alerts: int = 0
    written: int = 0
    late_dropped: int = 0
    overflow_released: int = 0
    overflow_dropped: int = 0
    duplicates_suppressed: int = 0
    queue_dropped: int = 0
    queue_size: int = 0
    held_rows: int = 0
    max_held_rows: int = 0
    bad_batches: int = 0
    bad_items: int = 0
    sink_errors: int = 0
    #: incidents the alerts formed (open and closed)
    incidents: int = 0
    latency_p50_s: float | None = None
    latency_p99_s: float | None = None
    recent_latency_p99_s: float | None = None
    rate_flows_per_s: float = 0.0
    source_stats: dict[str, int] = field(default_factory=dict)
    sink_stats: dict[str, dict[str, int]] = field(default_factory=dict)
    #: drift windows and events, the last window, the adaptive threshold (:mod:`nadkit.stream.continual`)
    continual: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["started"] = datetime.fromtimestamp(self.started, UTC).isoformat(timespec="seconds")
        return out

    def line(self) -> str:
        """One status line."""
        parts = [
            f"{self.flows_in:,} flows ({self.rate_flows_per_s:,.0f}/s)",
            f"{self.alerts:,} alerts",
            *([f"{self.incidents:,} incidents"] if self.incidents else []),
            f"{self.written:,} written",
            f"held {self.held_rows:,}",
            f"queue {self.queue_size:,}",
        ]
        drops = {
            "queue": self.queue_dropped,
            "late": self.late_dropped,
            "overflow": self.overflow_dropped + self.overflow_released,
            "kernel": self.source_stats.get("kernel_drops", 0),
            "seq lost": self.source_stats.get("sequence_lost", 0),
            "bad lines": self.source_stats.get("bad_lines", 0),
            "rejected": sum(v for k, v in self.source_stats.items() if k.startswith("rejected_")),
        }
        shown = [f"{name} {count:,}" for name, count in drops.items() if count]
        parts.append("dropped: " + (", ".join(shown) if shown else "none"))
        if self.continual.get("drift_events"):
            parts.append(f"drift events {self.continual['drift_events']:,}")
        if self.continual.get("threshold_now") is not None:
            parts.append(f"threshold {self.continual['threshold_now']:.6g}")
        if self.latency_p50_s is not None and self.latency_p99_s is not None:
            parts.append(f"latency p50 {self.latency_p50_s:.3f} s, p99 {self.latency_p99_s:.3f} s")
        return "; ".join(parts)


# ---------------------------------------------------------------------------------------------------
# the checkpoint
# ---------------------------------------------------------------------------------------------------


def identities(records: pl.DataFrame) -> np.ndarray:
    """A 64-bit identity of each record from its time and 5-tuple (those columns present)."""
    columns = [c for c in IDENTITY if c in records.columns]
    if not columns:
        return np.zeros(records.height, dtype=np.uint64)
    return records.select(pl.struct(columns).hash(seed=_HASH_SEED)).to_series().to_numpy()


def _epoch_us(frame: pl.DataFrame) -> np.ndarray:
    if "time" not in frame.columns:
        return np.zeros(frame.height, dtype=np.int64)
    return frame["time"].dt.epoch("us").fill_null(0).to_numpy()


class Checkpoint:
    """Per source: the time up to which every flow has been written, and the identities of records
    written after it (bounded to ``max_ids``, newest kept). Shared by several sources in one file."""

    def __init__(self, path: str | Path, source: str, *, max_ids: int = 500_000) -> None:
        self.path = Path(path)
        self.source = source
        self.max_ids = max_ids
        self._hash_version = f"polars {pl.__version__}"
        self.complete_until: int | None = None  # as loaded (the previous run)
        self._old_ids = np.zeros(0, dtype=np.uint64)
        self._old_times = np.zeros(0, dtype=np.int64)
        self._new_ids: list[np.ndarray] = []
        self._new_times: list[np.ndarray] = []
        self.dirty = False
        #: the incident tracker's state, carried across restarts
        self.incidents: dict[str, Any] | None = None
        #: the adaptive threshold and drift counters (:mod:`nadkit.stream.continual`)
        self.continual: dict[str, Any] | None = None
        #: the retraining schedule and the active model version (:mod:`nadkit.stream.retraining`)
        self.retraining: dict[str, Any] | None = None
        self._load()

    def _load(self) -> None:
        if not self.path.exists():
            return
        try:
            content = json.loads(self.path.read_text())
        except (OSError, ValueError) as error:
            raise ConfigError(f"{self.path}: not a readable checkpoint ({error})") from error
        if content.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"{self.path}: not a nadkit stream checkpoint")
        entry = (content.get("sources") or {}).get(self.source)
        if not entry:
            return
        self.complete_until = entry.get("complete_until_us")
        self.incidents = entry.get("incidents")
        self.continual = entry.get("continual")
        self.retraining = entry.get("retraining")
        if content.get("hash") == self._hash_version:
            self._old_ids = np.asarray(entry.get("ids") or [], dtype=np.uint64)
            self._old_times = np.asarray(entry.get("id_times_us") or [], dtype=np.int64)
        else:
            log.warning(
                "%s: written by another polars version; duplicates after %s are not recognised",
                self.path,
                self.complete_until,
            )
        log.info(
            "checkpoint: %s complete until %s, %d record(s) written after it",
            self.source,
            _as_time(self.complete_until),
            len(self._old_ids),
        )

    def suppress(self, records: pl.DataFrame) -> tuple[pl.DataFrame, int]:
        """``records`` without those a previous run already wrote; and how many were left out."""
        if self.complete_until is None and len(self._old_ids) == 0:
            return records, 0
        times = _epoch_us(records)
        seen = np.zeros(records.height, dtype=bool)
        if self.complete_until is not None:
            seen |= times <= self.complete_until
        if len(self._old_ids):
            seen |= np.isin(identities(records), self._old_ids)
        count = int(seen.sum())
        return (records.filter(pl.Series(~seen)) if count else records), count

    def note(self, records: pl.DataFrame) -> None:
        """Remember records just written."""
        if records.height:
            self._new_ids.append(identities(records))
            self._new_times.append(_epoch_us(records))
            self.dirty = True

    def save(self, complete_until: int | None) -> None:
        """Write the checkpoint atomically; ``complete_until``: this run's complete-until time."""
        bound = max((t for t in (self.complete_until, complete_until) if t is not None), default=None)
        ids = np.concatenate([self._old_ids, *self._new_ids])
        times = np.concatenate([self._old_times, *self._new_times])
        if bound is not None:
            keep = times > bound
            ids, times = ids[keep], times[keep]
        if len(ids) > self.max_ids:
            newest = np.argsort(times, kind="stable")[-self.max_ids :]
            ids, times = ids[newest], times[newest]
        # the state carried on: what this run adds to what the previous one left
        self.complete_until = bound
        self._old_ids, self._old_times = ids, times
        self._new_ids, self._new_times = [], []
        content: dict[str, Any] = {"format": CHECKPOINT_FORMAT, "version": 1, "hash": self._hash_version}
        if self.path.exists():
            with contextlib.suppress(OSError, ValueError):
                previous = json.loads(self.path.read_text())
                if previous.get("format") == CHECKPOINT_FORMAT:
                    content["sources"] = previous.get("sources") or {}
        content.setdefault("sources", {})[self.source] = {
            "complete_until_us": bound,
            "complete_until": _as_time(bound),
            "ids": [int(i) for i in ids],
            "id_times_us": [int(t) for t in times],
            "incidents": self.incidents,
            "continual": self.continual,
            "retraining": self.retraining,
            "updated": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_atomically(self.path, json.dumps(content, separators=(",", ":")).encode())
        self.dirty = False


def _as_time(micros: int | None) -> str | None:
    if micros is None:
        return None
    return datetime.fromtimestamp(micros / 1e6, UTC).isoformat()


# ---------------------------------------------------------------------------------------------------
# the loop
# ---------------------------------------------------------------------------------------------------


class StreamRunner:
    """Runs one source through a bundle into sinks (module docstring). :meth:`run` blocks until the
    source ends or :meth:`stop` is called (from another thread or a signal handler)."""

    def __init__(
        self,
        bundle: ModelBundle,
        source: StreamSource,
        sinks: Sequence[Sink],
        config: StreamConfig | None = None,
        *,
        on_status: Callable[[StreamStats], None] | None = None,
    ) -> None:
        self.bundle = bundle
        self.source = source
        self.sinks = list(sinks)
        self.config = config or StreamConfig()
        self.on_status = on_status
        lateness = self.config.lateness_s
        self.lateness_s = float(source.default_lateness_s if lateness is None else lateness)
        self.checkpoint = Checkpoint(self.config.checkpoint, source.name) if self.config.checkpoint else None
        self.retrainer: Retrainer | None = None
        if self.config.retrain is not None:  # the model of a retraining stream: the checkpoint's version
            saved_model = self.checkpoint.retraining if self.checkpoint is not None else None
            self.retrainer = Retrainer(bundle, self.config.retrain, saved_model)
            self.bundle = bundle = self.retrainer.champion
        self.build_scorer(bundle)
        self._time_ordered = self.scorer.time_ordered
        self._lateness_us = self.scorer.lateness_us
        self.stats = StreamStats(source=source.name)
        self.latency = LatencyRecorder()
        self.handoff = Handoff(self.config.queue_size)
        self.tracker: IncidentTracker | None = None
        self._incident_sink: JsonLinesSink | None = None
        if self.config.incidents is not None:
            settings = IncidentConfig(gap_s=self.config.incident_gap_s)
            saved = self.checkpoint.incidents if self.checkpoint is not None else None
            self.tracker = IncidentTracker.from_state(saved, settings) if saved else IncidentTracker(settings)
            self._incident_sink = JsonLinesSink(self.config.incidents)
        self._seen_incidents: set[str] = set()
        self._stop = threading.Event()
        self._next_row = 0
        self._ledger = pl.DataFrame(schema={"row": pl.Int64, "time_us": pl.Int64, "received": pl.Float64})
        self._watermark: int | None = None
        self._max_seen: int | None = None
        self._filled: set[str] = set()
        self._last_status = time.monotonic()
        self._last_status_flows = 0
        self._last_checkpoint = time.monotonic()
        self._saved_until: int | None = None

    def build_scorer(self, bundle: ModelBundle, *, restart: bool = False) -> None:
        """The scorer, drift monitor and adaptive threshold of ``bundle`` (``restart``: a swapped-in
        model, whose threshold starts afresh; the drift counters go on)."""
        self.scorer = Scorer(
            bundle,
            threshold=self.config.threshold,
            top=self.config.top,
            lateness_s=self.lateness_s,
            late="drop",
        )
        saved = self.checkpoint.continual if self.checkpoint is not None and not restart else None
        if restart:
            saved = {k: v for k, v in self.continual.state().items() if k != "threshold"}
        self.continual = Continual(
            bundle, self.scorer, self.config.continual, source=self.source.name, saved=saved
        )
        self.scorer.on_scored = self.continual.scored

    # -- control ------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop after flushing what is held (safe from signal handlers and other threads)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> StreamStats:
        started = time.monotonic()
        self.source.start(self.handoff)
        log.info(
            "stream %s: batches of %.3g s / %d flows, lateness %.3g s, threshold %.6g",
            self.source.name,
            self.config.batch_seconds,
            self.config.batch_rows,
            self.lateness_s,
            self.scorer.threshold,
        )
        failure: BaseException | None = None
        try:
            ended = False
            while not ended and not self._stop.is_set():
                ended = self._batch()
                self._periodic()
            self.source.stop()
            if not ended:
                self._drain()
            failure = self.source.error
            if self.retrainer is not None:
                self.retrainer.finish(self)
            self._emit(self.scorer.flush().frame)
            if ended:
                self.continual.close()
            if ended and self.tracker is not None:
                # the input is over: its incidents are complete (a stopped stream keeps them open)
                self._write_incidents(self.tracker.close())
        finally:
            if self._incident_sink is not None:
                self._incident_sink.close()
            self.source.close()
            for sink in self.sinks:
                try:
                    sink.close()
                except Exception:
                    log.exception("sink %s failed to close", sink.name)
            self.stats.seconds = time.monotonic() - started
            self._refresh_stats()
            self.stats.rate_flows_per_s = (
                self.stats.flows_in / self.stats.seconds if self.stats.seconds else 0.0
            )
            self._save_checkpoint()
            self._report()
        if failure is not None:
            raise NadkitError(f"{self.source.name}: {failure}") from failure
        return self.stats

    # -- steps --------------------------------------------------------------------------------------

    def _batch(self) -> bool:
        """Collect one micro-batch and score it; True when the source has ended."""
        deadline = time.monotonic() + self.config.batch_seconds
        rows = 0
        ended = False
        while rows < self.config.batch_rows:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            item = self.handoff.get(timeout=min(remaining, 0.25))
            if item is None:
                if self._stop.is_set():
                    break
                continue
            if item is END:
                ended = True
                break
            rows += self._feed(item)
        self._take()
        return ended

    def _drain(self) -> None:
        """Score what the source handed over before it stopped."""
        rows = 0
        while True:
            item = self.handoff.get(timeout=0)
            if item is None or item is END:
                break
            rows += self._feed(item)
            if rows >= self.config.batch_rows:
                self._take()
                rows = 0
        self._take()

    def _feed(self, item: Any) -> int:
        """Hand one item to the source; an item it cannot take is counted and skipped, never fatal."""
        try:
            return self.source.feed(item)
        except Exception as error:
            self.stats.bad_items += 1
            log.debug("%s: an item could not be read", self.source.name, exc_info=True)
            if self.stats.bad_items == 1 or self.stats.bad_items % 1000 == 0:
                log.error("%s: an input item could not be read (%s); skipped", self.source.name, error)
            return 0

    def _take(self) -> None:
        try:
            frame = self.source.take()
        except Exception as error:
            self.stats.bad_batches += 1
            log.debug("%s: a batch could not be read", self.source.name, exc_info=True)
            log.error("%s: a batch could not be read (%s); skipped", self.source.name, error)
            return
        self.stats.batches += 1
        if frame.height:
            self._push(frame)

    def _conform(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Columns the model needs and the source lacks are added empty (noted once)."""
        missing = [c for c in self.scorer.input_columns if c not in frame.columns]
        if not missing:
            return frame
        new = [c for c in missing if c not in self._filled]
        if new:
            self._filled.update(new)
            log.warning(
                "%s has no %s; the model was trained with it: left empty (features that use it get "
                "their missing-value encoding)",
                self.source.name,
                ", ".join(new),
            )
        return frame.with_columns(
            pl.lit(None, dtype=CANONICAL.get(c, pl.Float64())).alias(c) for c in missing
        )

    def _push(self, frame: pl.DataFrame) -> None:
        frame = self._conform(frame)
        rows = frame.height
        frame = frame.with_columns(
            pl.int_range(self._next_row, self._next_row + rows, dtype=pl.Int64).alias(ROW)
        )
        self._next_row += rows
        self.stats.flows_in += rows
        received = frame[RECEIVED] if RECEIVED in frame.columns else pl.repeat(time.time(), rows, eager=True)
        times = _epoch_us(frame)
        if self._time_ordered and self._watermark is not None:
            # the scorer's rule for late flows, applied here so that every flow it keeps is accounted for
            late = times < self._watermark
            count = int(late.sum())
            if count:
                self.stats.late_dropped += count
                log.debug("%d late flow(s) dropped", count)
                keep = pl.Series(~late)
                frame, received, times = frame.filter(keep), received.filter(keep), times[~late]
        if len(times):
            newest = int(times.max())
            self._max_seen = newest if self._max_seen is None else max(self._max_seen, newest)
        entries = pl.DataFrame(
            {
                "row": frame[ROW] + 1,
                "time_us": pl.Series(times, dtype=pl.Int64),
                "received": received.cast(pl.Float64),
            }
        )
        self._ledger = pl.concat([self._ledger, entries], how="vertical")
        if self._time_ordered and self._max_seen is not None:
            bound = self._max_seen - self._lateness_us
            released = self._ledger.filter(pl.col("time_us") <= bound)["time_us"].max()
            if released is not None:
                released = int(released)  # type: ignore[arg-type]
                self._watermark = released if self._watermark is None else max(self._watermark, released)
        if frame.height:
            if self.retrainer is not None:
                self.retrainer.add(frame)
            self._emit(self.scorer.push(frame.drop(RECEIVED, strict=False)).frame)
        held = self.scorer.held_rows
        self.stats.max_held_rows = max(self.stats.max_held_rows, held)
        if held > self.config.max_held:
            self._overflow(held)
        self.stats.flows_done = self.stats.flows_in
        self.stats.last_batch_at = time.time()

    def _overflow(self, held: int) -> None:
        if self._time_ordered and self._ledger.height:
            newest = int(self._ledger["time_us"].max())  # type: ignore[arg-type]
            self._watermark = newest if self._watermark is None else max(self._watermark, newest)
        chunk = self.scorer.flush().frame
        if self.config.overflow == "release":
            self.stats.overflow_released += chunk.height
            log.warning(
                "%d flows held (over %d): released early, with the state cut short",
                held,
                self.config.max_held,
            )
            self._emit(chunk)
        else:
            self.stats.overflow_dropped += chunk.height
            log.warning("%d flows held (over %d): %d dropped", held, self.config.max_held, chunk.height)
            if chunk.height:
                self._ledger = self._ledger.join(chunk.select("row"), on="row", how="anti")

    def _emit(self, frame: pl.DataFrame) -> None:
        if frame.height == 0:
            return
        self.stats.flows_scored += frame.height
        self.stats.alerts += int(frame["alert"].sum())
        frame = frame.join(self._ledger.select("row", "received"), on="row", how="left")
        self._ledger = self._ledger.join(frame.select("row"), on="row", how="anti")
        if self.retrainer is not None:
            self.retrainer.scored(frame)
        records = frame if self.config.all_flows else frame.filter(pl.col("alert"))
        if records.height == 0:
            return
        if self.checkpoint is not None:
            records, suppressed = self.checkpoint.suppress(records)
            self.stats.duplicates_suppressed += suppressed
            if records.height == 0:
                return
        arrival = records["received"].to_numpy()
        records = records.with_columns(
            (pl.col("received") * 1e6)
            .round(0)
            .cast(pl.Int64)
            .cast(pl.Datetime("us"))
            .dt.replace_time_zone("UTC")
        )
        for sink in self.sinks:
            try:
                sink.write(records)
            except Exception as error:
                self.stats.sink_errors += 1
                log.error("sink %s failed: %s", sink.name, error)
        self.latency.add(time.time() - arrival)
        self.stats.written += records.height
        if self.checkpoint is not None:
            self.checkpoint.note(records)
        if self.tracker is not None:
            alerts = records.filter(pl.col("alert"))
            if alerts.height:
                self._write_incidents(self.tracker.update(alerts.drop("received")).summary)

    def _write_incidents(self, summary: pl.DataFrame) -> None:
        """Hand the incidents a batch touched or closed to the incident sink (one line each)."""
        if self._incident_sink is None or summary.height == 0:
            return
        try:
            self._incident_sink.write(summary)
        except Exception as error:
            self.stats.sink_errors += 1
            log.error("incident sink %s failed: %s", self._incident_sink.name, error)
        self._seen_incidents.update(summary["incident_id"].to_list())
        self.stats.incidents = len(self._seen_incidents)

    # -- reporting and checkpoints ------------------------------------------------------------------

    def complete_until(self) -> int | None:
        """Epoch microseconds up to which every flow received has been written (or dropped as late)."""
        if self._max_seen is None:
            return None
        # flows as old as the newest released one are not late: only older ones are complete
        bound = self._watermark if self._time_ordered else self._max_seen - self._lateness_us
        if bound is None:
            return None
        bound -= 1
        if self._ledger.height:
            oldest = int(self._ledger["time_us"].min()) - 1  # type: ignore[arg-type]
            bound = min(bound, oldest)
        return bound

    def _periodic(self) -> None:
        if self.retrainer is not None:
            self.retrainer.step(self)
        now = time.monotonic()
        if self.checkpoint is not None and now - self._last_checkpoint >= self.config.checkpoint_seconds:
            # after every batch that wrote records (a crash then repeats at most the batch being written)
            if self.checkpoint.dirty or self.complete_until() != self._saved_until:
                self._save_checkpoint()
            self._last_checkpoint = now
        if now - self._last_status >= self.config.status_seconds:
            self._refresh_stats()
            self.stats.rate_flows_per_s = (self.stats.flows_in - self._last_status_flows) / (
                now - self._last_status
            )
            self._last_status = now
            self._last_status_flows = self.stats.flows_in
            self._report()

    def _save_checkpoint(self) -> None:
        if self.checkpoint is None:
            return
        try:
            self._saved_until = self.complete_until()
            if self.tracker is not None:
                self.checkpoint.incidents = self.tracker.state()
            self.checkpoint.continual = self.continual.state()
            self.checkpoint.retraining = self.retrainer.state() if self.retrainer is not None else None
            self.checkpoint.save(self._saved_until)
        except OSError as error:
            log.error("checkpoint %s could not be written (%s)", self.checkpoint.path, error)

    def _refresh_stats(self) -> None:
        stats = self.stats
        stats.held_rows = self.scorer.held_rows
        stats.queue_size = self.handoff.qsize()
        stats.queue_dropped = self.handoff.dropped
        stats.source_stats = self.source.stats()
        stats.sink_stats = {sink.name: sink.stats() for sink in self.sinks}
        overall = self.latency.quantiles()
        recent = self.latency.quantiles(recent=True)
        stats.latency_p50_s, stats.latency_p99_s = overall if overall else (None, None)
        stats.recent_latency_p99_s = recent[1] if recent else None
        stats.continual = {**self.continual.stats(), **(self.retrainer.stats() if self.retrainer else {})}

    def _report(self) -> None:
        if self.on_status is not None:
            self.on_status(self.stats)
        else:
            log.info("stream %s: %s", self.source.name, self.stats.line())


@contextlib.contextmanager
def stop_on_signals(runner: StreamRunner) -> Iterator[None]:
    """SIGINT and SIGTERM stop ``runner`` gracefully (what it holds is flushed); a second signal
    interrupts at once. Only in the main thread (elsewhere this does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(number: int, _frame: object) -> None:
        if runner.stopping:
            raise KeyboardInterrupt
        log.warning("%s: stopping after flushing what is held", signal.Signals(number).name)
        runner.stop()

    previous = {number: signal.signal(number, handler) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


__all__ = [
    "Checkpoint",
    "LatencyRecorder",
    "StreamConfig",
    "StreamRunner",
    "StreamStats",
    "identities",
    "model_version",
    "stop_on_signals",
]
