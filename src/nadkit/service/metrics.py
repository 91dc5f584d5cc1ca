"""The service's own counters and latency histogram, exposed in the Prometheus text format by
``prometheus_client``, each service in a registry of its own (several services in one process, as
in the tests, keep their counts apart).

``nadkit_requests_total{method, route, status}``, ``nadkit_request_duration_seconds{route}`` (a
histogram), ``nadkit_flows_scored_total``, ``nadkit_alerts_raised_total`` (alerts among the scored
flows), ``nadkit_alerts_stored_total`` (new alerts written to the store; repeats of stored alerts are
not counted), ``nadkit_feedback_total{verdict}`` and ``nadkit_model_info{version, model}``. Routes
are the path templates (``/v1/alerts/{alert_id}``), so the label set stays small.

Drift (:mod:`nadkit.evaluation.drift`), per window of scored flows: ``nadkit_drift_windows_total``,
``nadkit_drift_events_total``, the last window's ``nadkit_drift_score_psi``,
``nadkit_drift_ks_statistic`` and ``nadkit_drift_feature_psi{feature}`` (the features that moved
most in it), and ``nadkit_alert_threshold`` (the threshold in use, which moves with ``spot``).
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

# the series of when each counter was created add nothing a scraper lacks (it knows when the service started)
disable_created_metrics()

#: latency bucket bounds in seconds
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """The counters of one service (thread-safe, as ``prometheus_client``'s metrics are)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "nadkit_requests",
            "HTTP requests answered.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self._latency = Histogram(
            "nadkit_request_duration_seconds",
            "Time to answer a request.",
            ("route",),
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._flows = Counter("nadkit_flows_scored", "Flows scored.", registry=self.registry)
        self._raised = Counter(
            "nadkit_alerts_raised", "Alerts among the scored flows.", registry=self.registry
        )
        self._stored = Counter(
            "nadkit_alerts_stored", "New alerts written to the alert store.", registry=self.registry
        )
        self._feedback = Counter(
            "nadkit_feedback", "Analyst verdicts recorded.", ("verdict",), registry=self.registry
        )
        self._model = Gauge(
            "nadkit_model_info", "The active model.", ("version", "model"), registry=self.registry
        )
        self.model: tuple[str, str] | None = None
        self._drift_windows = Counter(
            "nadkit_drift_windows", "Windows of scored flows judged for drift.", registry=self.registry
        )
        self._drift_events = Counter(
            "nadkit_drift_events", "Windows whose drift passed the set level.", registry=self.registry
        )
        self._score_psi = Gauge(
            "nadkit_drift_score_psi", "The score's PSI in the last drift window.", registry=self.registry
        )
        self._ks = Gauge(
            "nadkit_drift_ks_statistic",
            "The score's KS gap in the last drift window.",
            registry=self.registry,
        )
        self._feature_psi = Gauge(
            "nadkit_drift_feature_psi",
            "PSI of the features that moved most in the last drift window.",
            ("feature",),
            registry=self.registry,
        )
        self._threshold = Gauge(
            "nadkit_alert_threshold", "The alert threshold in use.", registry=self.registry
        )

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        self._requests.labels(method=method, route=route, status=str(status)).inc()
        self._latency.labels(route=route).observe(seconds)

    def scored(self, flows: int, alerts: int, stored: int) -> None:
        self._flows.inc(flows)
        self._raised.inc(alerts)
        self._stored.inc(stored)

    def feedback(self, verdict: str) -> None:
        self._feedback.labels(verdict=verdict).inc()

    def set_model(self, version: str, model: str) -> None:
        if self.model is not None:
            self._model.remove(*self.model)
        self.model = (version, model)
        self._model.labels(version=version, model=model).set(1)

    def drift(
        self, score_psi: float, ks_statistic: float, features: list[tuple[str, float]], event: bool
    ) -> None:
        """A drift window closed: its figures replace the last window's."""
        self._drift_windows.inc()
        if event:
            self._drift_events.inc()
        self._score_psi.set(score_psi)
        self._ks.set(ks_statistic)
        self._feature_psi.clear()
        for name, value in features:
            self._feature_psi.labels(feature=name).set(value)

    def threshold(self, value: float) -> None:
        self._threshold.set(value)

    def render(self) -> str:
        """Everything, in the Prometheus text exposition format (version 0.0.4)."""
        return generate_latest(self.registry).decode()
