"""The service's own counters and latency histogram, exposed in the Prometheus text format by
``prometheus_client``, each service in a registry of its own (several services in one process, as
in the tests, keep their counts apart).

``nadkit_requests_total{method, route, status}``, ``nadkit_request_duration_seconds{route}`` (a
histogram), ``nadkit_flows_scored_total``, ``nadkit_alerts_raised_total`` (alerts among the scored
flows), ``nadkit_alerts_stored_total`` (new alerts written to the store; repeats of stored alerts are
not counted), ``nadkit_feedback_total{verdict}`` and ``nadkit_model_info{version, model}``. Routes
are the path templates (``/v1/alerts/{alert_id}``), so the label set stays small.
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

    def render(self) -> str:
        """Everything, in the Prometheus text exposition format (version 0.0.4)."""
        return generate_latest(self.registry).decode()
