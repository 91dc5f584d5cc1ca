"""What one service process holds: its settings, the alert store, the model registry, the loaded
active model, and the metrics."""

from __future__ import annotations

import logging
import math
import threading
from typing import Any

import polars as pl

from nadkit.alerts.incident_tracker import IncidentTracker
from nadkit.alerts.store import AlertStore, top_features_json
from nadkit.errors import ConfigError
from nadkit.lifecycle.registry import ModelRegistry
from nadkit.service.learning import Learning
from nadkit.service.metrics import Metrics
from nadkit.service.scoring import InputError, canonical_flows, read_body, score_flows
from nadkit.service.settings import LOOPBACK, MIN_TOKEN_LENGTH, TOKEN_ENV, Settings, token_from
from nadkit.training.bundle import ModelBundle

__all__ = ["LOOPBACK", "MIN_TOKEN_LENGTH", "TOKEN_ENV", "ActiveModel", "Service", "Settings", "token_from"]

log = logging.getLogger(__name__)


class ActiveModel:
    """The registry's active model, loaded; reloaded when the active version changes (by this
    service or by ``nadkit models activate``)."""

    def __init__(
        self, registry: ModelRegistry, engine: str, metrics: Metrics, key: str | None = None
    ) -> None:
        self.registry = registry
        self.engine = engine
        self.metrics = metrics
        self.key = key  # the bundle signing key (None: NADKIT_BUNDLE_KEY, where set)
        self._lock = threading.Lock()
        self._stamp: int | None = None
        self._version: str | None = None
        self._bundle: ModelBundle | None = None

    def current(self) -> tuple[str, ModelBundle]:
        """The active version and its bundle; ConfigError when no version is active."""
        stamp = self.registry.active_stamp()
        if stamp != self._stamp or self._bundle is None:
            with self._lock:
                if stamp != self._stamp or self._bundle is None:
                    self._load(stamp)
        assert self._version is not None and self._bundle is not None
        return self._version, self._bundle

    def _load(self, stamp: int | None) -> None:
        version = self.registry.active_version()
        if version is None:
            raise ConfigError(
                f"{self.registry.root}: no active model (register one with --bundle, or activate a "
                "version with `nadkit models activate`)"
            )
        if version != self._version or self._bundle is None:
            bundle = ModelBundle.load(
                self.registry.path(version),
                engine=self.engine,  # type: ignore[arg-type]
                key=self.key,
            )
            self._bundle = bundle
            self._version = version
            self.metrics.set_model(version, bundle.detector.name)
            log.info("active model: %s (%s)", version, bundle.detector.name)
        self._stamp = stamp

    @property
    def version(self) -> str | None:
        return self._version


class Service:
    """The state of one service process, shared by its routes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.store = AlertStore(settings.db)
        self.registry = ModelRegistry(settings.registry_dir)
        self.models = ActiveModel(self.registry, settings.engine, self.metrics, key=settings.bundle_key)
        self._slots = threading.BoundedSemaphore(settings.scoring_slots)
        # one incident tracker per model version, restored from the store, updated one batch at a time
        self._trackers: dict[str, IncidentTracker] = {}
        self._incidents = threading.Lock()
        # per model version: drift and the adaptive threshold (nadkit.service.learning)
        self._learning: dict[str, Learning] = {}

    def close(self) -> None:
        self.store.close()

    def score_body(
        self, body: bytes, content_type: str | None, *, store: bool = True, alerts_only: bool = False
    ) -> dict[str, Any]:
        """Score the flows of a request body as one table, store its alerts; the answer's body."""
        try:
            flows = canonical_flows(read_body(body, content_type))
        except pl.exceptions.PanicException as error:  # no Exception: it would end the server's loop
            log.error("a request body made Polars panic: %s", str(error).strip().splitlines()[:1])
            raise InputError("body cannot be read (a value beyond what can be converted)", 422) from None
        if flows.height > self.settings.max_flows:
            raise InputError(
                f"too many flows in one request ({flows.height:,}; at most {self.settings.max_flows:,})", 413
            )
        version, bundle = self.models.current()
        learning = self.learning(version, bundle)
        threshold = learning.threshold
        answer: dict[str, Any] = {
            "model_version": version,
            "model": bundle.detector.name,
            "threshold": threshold,
            "flows": flows.height,
            "alerts": 0,
            "stored": 0,
            "results": [],
        }
        if flows.height == 0:
            return answer
        with self._slots:
            scored = score_flows(
                bundle,
                flows,
                top=self.settings.top,
                threshold=threshold if math.isfinite(threshold) else None,
                on_scored=learning.hook(threshold),
                alerts_only=alerts_only,
            )
        alerts = scored if alerts_only else scored.filter(pl.col("alert"))
        ids: dict[int, int] = {}
        if store and alerts.height:
            added = self.store.save_alerts(alerts, model_version=version)
            ids = dict(zip(alerts["row"].to_list(), added.ids, strict=True))
            answer["stored"] = added.new
            answer["incidents"] = self._group(alerts, added.ids, version)
        answer["alerts"] = alerts.height
        self.metrics.scored(flows.height, alerts.height, int(answer["stored"]))
        chosen = alerts if alerts_only else scored
        results = []
        scales = [c for c in ("score_percentile", "threshold_multiple", "severity") if c in chosen.columns]
        described = ["explanation"] if "explanation" in chosen.columns else []
        columns = ["row", "score", *scales, "alert", "class", "top_features", *described]
        for row in chosen.select(columns).iter_rows(named=True):
            score = row["score"]
            results.append(
                {
                    "row": row["row"],
                    "score": score if score is not None and math.isfinite(score) else None,
                    **{c: _finite(row[c]) if c != "severity" else row[c] for c in scales},
                    "alert": bool(row["alert"]),
                    "class": row["class"],
                    "alert_id": ids.get(row["row"]),
                    "top_features": top_features_json(row["top_features"]) if row["alert"] else None,
                    **({"explanation": row["explanation"]} if described else {}),
                }
            )
        answer["results"] = results
        return answer

    def learning(self, version: str, bundle: ModelBundle) -> Learning:
        """The drift monitor and adaptive threshold of ``version`` (made on first use)."""
        with self._incidents:
            found = self._learning.get(version)
            if found is None:
                found = self._learning[version] = Learning(
                    bundle,
                    self.metrics,
                    threshold=self.settings.threshold,
                    drift_window=self.settings.drift_window,
                )
            return found

    def _group(self, alerts: pl.DataFrame, ids: list[int], version: str) -> list[str]:
        """Group a request's stored alerts into the incidents of their model version (continuing
        the open ones); the ids of the incidents they joined."""
        stored = alerts.with_columns(pl.Series("alert_id", ids, dtype=pl.Int64)).unique(
            "alert_id", keep="first", maintain_order=True
        )
        with self._incidents:
            tracker = self._trackers.get(version)
            if tracker is None:
                tracker = self._trackers[version] = self.store.incidents.tracker(version)
            incidents = tracker.update(stored)
            self.store.incidents.record(incidents, model_version=version, tracker=tracker)
        return sorted(set(incidents.alerts["incident_id"].drop_nulls().to_list()))


def _finite(value: Any) -> Any:
    """``value``, or None where it is a float that JSON cannot hold (NaN, infinity)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value
