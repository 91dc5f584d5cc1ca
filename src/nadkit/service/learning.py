"""What the service learns from the flows it scores, per model version: drift from the bundle's normal
reference (:mod:`nadkit.evaluation.drift`, windows of ``drift_window`` scored flows, shown in
``/metrics``) and, with the ``spot``/``dspot`` threshold setting, an alert threshold that adapts to
the scores of flows not alerted (:mod:`nadkit.evaluation.adaptive`). Requests may be scored in
parallel; what they teach is applied one at a time, in the order they finish."""

from __future__ import annotations

import logging
import math
import threading
from typing import Any

import numpy as np

from nadkit.errors import ConfigError
from nadkit.evaluation.adaptive import AdaptiveSettings, StreamThreshold
from nadkit.evaluation.drift import DriftLevels, DriftMonitor, describe
from nadkit.service.metrics import Metrics
from nadkit.training.bundle import ModelBundle

log = logging.getLogger(__name__)


class Learning:
    """The drift monitor and adaptive threshold of one model version (module docstring)."""

    def __init__(self, bundle: ModelBundle, metrics: Metrics, *, threshold: str, drift_window: int) -> None:
        self.metrics = metrics
        self._lock = threading.Lock()
        fixed = bundle.threshold.value if bundle.threshold is not None else math.nan
        self.monitor: DriftMonitor | None = None
        if drift_window > 0 and bundle.reference is not None:
            levels = DriftLevels(window=max(10, drift_window), min_rows=min(500, max(10, drift_window)))
            self.monitor = DriftMonitor(bundle.reference, levels)
        self.adaptive: StreamThreshold | None = None
        if threshold != "bundle" and math.isfinite(fixed):
            normal = bundle.calibration.normal if bundle.calibration is not None else None
            self.adaptive = StreamThreshold.begin(normal, fixed, AdaptiveSettings(method=threshold))
        self.fixed = fixed
        metrics.threshold(self.threshold)

    @property
    def threshold(self) -> float:
        """The threshold the next request is scored with."""
        return self.adaptive.value if self.adaptive is not None else self.fixed

    def hook(self, used: float) -> Any:
        """The scorer's ``on_scored`` hook for a request scored at threshold ``used``."""

        def scored(matrix: np.ndarray, scores: np.ndarray) -> None:
            with self._lock:
                self._learn(matrix, scores, used)

        return scored

    def _learn(self, matrix: np.ndarray, scores: np.ndarray, used: float) -> None:
        if self.adaptive is not None and len(scores):
            self.adaptive.update(scores, scores >= used)
            self.metrics.threshold(self.adaptive.value)
        if self.monitor is None:
            return
        try:
            closed = self.monitor.add(matrix, scores)
        except ConfigError as error:
            log.error("drift is no longer measured: %s", error)
            self.monitor = None
            return
        for window in closed:
            if window.drift:
                log.warning("drift event in window %d: %s", window.index, describe(window))
            self.metrics.drift(window.score_psi, window.ks_statistic, window.moved, window.drift)

    @property
    def method(self) -> str:
        """How the threshold is set: ``bundle`` (fixed), ``spot`` or ``dspot``."""
        return self.adaptive.settings.method if self.adaptive is not None else "bundle"

    def summary(self) -> dict[str, Any] | None:
        """The drift summary (None without a reference)."""
        with self._lock:
            return None if self.monitor is None else self.monitor.summary()


__all__ = ["Learning"]
