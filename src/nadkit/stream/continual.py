"""What a stream learns as it runs: drift of its traffic from the bundle's normal reference, and an
alert threshold that adapts to the scores of the flows it did not alert on.

:class:`Continual` is handed every scored chunk by the runner's
:class:`~nadkit.detection.detect.Scorer` (its ``on_scored`` hook: the units' detector input and
scores). It counts them into a :class:`~nadkit.evaluation.drift.DriftMonitor` (a window every
``drift_window`` units; a drift event is logged, counted in the stream's statistics and, with
``drift_out``, appended as one JSON line), and, with an adaptive threshold
(:class:`~nadkit.evaluation.adaptive.StreamThreshold`, SPOT or DSPOT), learns from the scores that
were not alerts and sets the scorer's threshold for the next chunk. Its state (the threshold, the
drift counters) goes into the stream's checkpoint and is restored on restart.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from nadkit.detection.detect import Scorer
from nadkit.errors import ConfigError
from nadkit.evaluation.adaptive import AdaptiveSettings, StreamThreshold
from nadkit.evaluation.drift import DriftLevels, DriftMonitor, DriftWindow, describe
from nadkit.training.bundle import ModelBundle

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ContinualConfig:
    """``drift``: the drift levels and window (None: no drift measured); ``drift_out``: where drift
    windows go (JSON lines, every window, ``"drift": true`` for events); ``adaptive``: the adaptive
    threshold's settings (None: the fixed threshold)."""

    drift: DriftLevels | None = field(default_factory=DriftLevels)
    drift_out: Path | None = None
    adaptive: AdaptiveSettings | None = None


class Continual:
    """The drift monitor and adaptive threshold of one stream (module docstring)."""

    def __init__(
        self,
        bundle: ModelBundle,
        scorer: Scorer,
        config: ContinualConfig,
        *,
        source: str = "",
        saved: dict[str, Any] | None = None,
    ) -> None:
        self.scorer = scorer
        self.config = config
        self.source = source
        self.monitor: DriftMonitor | None = None
        if config.drift is not None and bundle.reference is not None:
            self.monitor = DriftMonitor(bundle.reference, config.drift)
        elif config.drift is not None:
            log.info("the bundle keeps no drift reference (saved by an earlier nadkit): no drift measured")
        self.threshold: StreamThreshold | None = None
        saved = saved or {}
        if config.adaptive is not None:
            if saved.get("threshold"):
                self.threshold = StreamThreshold.from_dict(saved["threshold"], config.adaptive)
                log.info("%s threshold resumed at %.6g", config.adaptive.method, self.threshold.value)
            else:
                normal = bundle.calibration.normal if bundle.calibration is not None else None
                self.threshold = StreamThreshold.begin(normal, scorer.threshold, config.adaptive)
            scorer.threshold = self.threshold.value
        if self.monitor is not None:
            self.monitor.windows = int(saved.get("drift_windows", 0))
            self.monitor.events = int(saved.get("drift_events", 0))
        self.failed = False

    def scored(self, matrix: np.ndarray, scores: np.ndarray) -> None:
        """The scorer's hook: count the chunk for drift, learn the threshold from its non-alerts."""
        if self.threshold is not None and len(scores):
            alerted = scores >= self.scorer.threshold
            self.scorer.threshold = self.threshold.update(scores, alerted)
        if self.monitor is not None and not self.failed:
            try:
                closed = self.monitor.add(matrix, scores)
            except ConfigError as error:
                # a model whose input no longer matches its reference: stop measuring, keep scoring
                log.error("drift is no longer measured: %s", error)
                self.failed = True
                return
            self._write(closed)

    def close(self) -> None:
        """Judge the last, partial drift window (end of input)."""
        if self.monitor is not None and not self.failed:
            window = self.monitor.close()
            if window is not None:
                self._write([window])

    def _write(self, windows: list[DriftWindow]) -> None:
        if not windows:
            return
        for window in windows:
            if window.drift:
                log.warning("%s: drift event in window %d: %s", self.source, window.index, describe(window))
        if self.config.drift_out is None:
            return
        now = datetime.now(UTC).isoformat(timespec="seconds")
        lines = [
            json.dumps({**w.to_dict(), "source": self.source, "at": now}, separators=(",", ":"))
            for w in windows
        ]
        try:
            self.config.drift_out.parent.mkdir(parents=True, exist_ok=True)
            with self.config.drift_out.open("a") as handle:
                handle.write("\n".join(lines) + "\n")
        except OSError as error:
            log.error("drift events could not be written to %s (%s)", self.config.drift_out, error)

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps."""
        out: dict[str, Any] = {}
        if self.threshold is not None:
            out["threshold"] = self.threshold.to_dict()
        if self.monitor is not None:
            out["drift_windows"] = self.monitor.windows
            out["drift_events"] = self.monitor.events
        return out

    def stats(self) -> dict[str, Any]:
        """The stream statistics' share: drift windows and events, the last window, the threshold."""
        out: dict[str, Any] = {}
        if self.monitor is not None:
            out["drift_windows"] = self.monitor.windows
            out["drift_events"] = self.monitor.events
            last = self.monitor.last
            out["drift_last"] = None if last is None else last.to_dict()
            out["drift_most_moved"] = self.monitor.summary()["most_moved"]
        if self.threshold is not None:
            out["threshold_method"] = self.threshold.settings.method
            out["threshold_now"] = self.threshold.value
            out["threshold_start"] = self.threshold.start
        return out


__all__ = ["Continual", "ContinualConfig"]
