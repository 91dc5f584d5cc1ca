"""The service's own counters and latency histogram, written in the Prometheus text format.

``nadkit_requests_total{method, route, status}``, ``nadkit_request_duration_seconds{route}`` (a
histogram), ``nadkit_flows_scored_total``, ``nadkit_alerts_raised_total`` (alerts among the scored
flows), ``nadkit_alerts_stored_total`` (new alerts written to the store; repeats of stored alerts are
not counted), ``nadkit_feedback_total{verdict}`` and ``nadkit_model_info{version, model}``. Routes
are the path templates (``/v1/alerts/{alert_id}``), so the label set stays small.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from dataclasses import dataclass, field

#: latency bucket bounds in seconds
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in pairs) + "}"


def _number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    observations: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, value)] += 1
        self.total += value
        self.observations += 1


class Metrics:
    """Thread-safe counters of one service process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self._latency: dict[str, _Histogram] = defaultdict(_Histogram)
        self._feedback: dict[str, int] = defaultdict(int)
        self.flows_scored = 0
        self.alerts_raised = 0
        self.alerts_stored = 0
        self.model: tuple[str, str] | None = None

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(method, route, str(status))] += 1
            self._latency[route].observe(seconds)

    def scored(self, flows: int, alerts: int, stored: int) -> None:
        with self._lock:
            self.flows_scored += flows
            self.alerts_raised += alerts
            self.alerts_stored += stored

    def feedback(self, verdict: str) -> None:
        with self._lock:
            self._feedback[verdict] += 1

    def set_model(self, version: str, model: str) -> None:
        with self._lock:
            self.model = (version, model)

    def render(self) -> str:
        """Everything, in the Prometheus text exposition format (version 0.0.4)."""
        lines: list[str] = []
        with self._lock:
            lines += [
                "# HELP nadkit_requests_total HTTP requests answered.",
                "# TYPE nadkit_requests_total counter",
            ]
            for (method, route, status), count in sorted(self._requests.items()):
                labels = _labels((("method", method), ("route", route), ("status", status)))
                lines.append(f"nadkit_requests_total{labels} {count}")
            lines += [
                "# HELP nadkit_request_duration_seconds Time to answer a request.",
                "# TYPE nadkit_request_duration_seconds histogram",
            ]
            for route, histogram in sorted(self._latency.items()):
                cumulative = 0
                for bound, count in zip((*BUCKETS, float("inf")), histogram.counts, strict=True):
                    cumulative += count
                    le = "+Inf" if bound == float("inf") else _number(bound)
                    labels = _labels((("route", route), ("le", le)))
                    lines.append(f"nadkit_request_duration_seconds_bucket{labels} {cumulative}")
                labels = _labels((("route", route),))
                lines.append(f"nadkit_request_duration_seconds_sum{labels} {histogram.total!r}")
                lines.append(f"nadkit_request_duration_seconds_count{labels} {histogram.observations}")
            for name, help_text, value in (
                ("nadkit_flows_scored_total", "Flows scored.", self.flows_scored),
                ("nadkit_alerts_raised_total", "Alerts among the scored flows.", self.alerts_raised),
                ("nadkit_alerts_stored_total", "New alerts written to the alert store.", self.alerts_stored),
            ):
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name} {value}"]
            lines += [
                "# HELP nadkit_feedback_total Analyst verdicts recorded.",
                "# TYPE nadkit_feedback_total counter",
            ]
            for verdict, count in sorted(self._feedback.items()):
                lines.append(f"nadkit_feedback_total{_labels((('verdict', verdict),))} {count}")
            if self.model is not None:
                lines += [
                    "# HELP nadkit_model_info The active model.",
                    "# TYPE nadkit_model_info gauge",
                    f"nadkit_model_info{_labels((('version', self.model[0]), ('model', self.model[1])))} 1",
                ]
        return "\n".join(lines) + "\n"
