"""The shapes of the API's requests and answers (they make the OpenAPI document)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Verdict = Literal["confirmed", "false_positive", "known_benign"]
Status = Literal["new", "confirmed", "false_positive", "known_benign"]
AlertOrder = Literal["time_desc", "time_asc", "score_desc", "score_asc", "id_desc", "id_asc"]


def _unicode(value: str | None) -> str | None:
    if value is None:
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode text") from None
    if "\x00" in value:
        raise ValueError("contains a NUL character")
    return value


class ErrorOut(BaseModel):
    """Every error answer: one line saying what is wrong (row and field where it applies)."""

    error: str


class TopFeature(BaseModel):
    feature: str | None = None
    contribution: float | None = None
    value: str | None = None
    label: str | None = Field(None, description="the feature in words", examples=["bytes sent"])
    share: float | None = Field(
        None, description="percent of the score (of the sum of absolute contributions)", examples=[61.2]
    )
    normal: str | None = Field(None, description="typical range on normal training traffic", examples=["1-4"])


class FlowIn(BaseModel):
    """A flow with canonical column names; every field is optional, but the model needs the
    fields it was trained on. Further numeric fields (source-specific counters) are allowed."""

    model_config = ConfigDict(extra="allow")

    time: str | float | None = Field(
        None,
        description="ISO-8601 time (UTC when no offset) or epoch seconds",
        examples=["2020-12-04T10:00:00Z"],
    )
    src: str | None = Field(None, description="source address", examples=["10.0.0.5"])
    dst: str | None = Field(None, description="destination address", examples=["10.0.0.9"])
    spt: int | None = Field(None, ge=0, le=65535, description="source port")
    dpt: int | None = Field(None, ge=0, le=65535, description="destination port")
    proto: str | int | None = Field(None, description="protocol name or IANA number", examples=["tcp"])
    app: str | None = Field(None, description="application", examples=["http"])
    duration: float | None = Field(None, ge=0, description="seconds")
    out_bytes: int | None = Field(None, ge=0)
    in_bytes: int | None = Field(None, ge=0)
    out_pkts: int | None = Field(None, ge=0)
    in_pkts: int | None = Field(None, ge=0)
    label: str | None = Field(None, description="known class, if any (normal or an attack class)")


class ScoredFlow(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    row: int = Field(description="1-based row of the flow in the request")
    score: float | None
    score_percentile: float | None = Field(
        None,
        description="the score's percentile among the normal hold-out scores of training (0-100; "
        "null for a model saved without them)",
    )
    threshold_multiple: float | None = Field(None, description="score / threshold")
    severity: Literal["low", "medium", "high", "critical"] | None = Field(
        None, description="for alerts: from the percentile and the threshold multiple"
    )
    alert: bool
    class_: str | None = Field(None, alias="class")
    alert_id: int | None = Field(None, description="the stored alert, for alerts when storing")
    top_features: list[TopFeature] | None = None
    explanation: str | None = Field(None, description="for alerts: the top features in words")


class ScoreOut(BaseModel):
    model_version: str
    model: str
    threshold: float
    flows: int
    alerts: int
    stored: int = Field(description="new alerts written to the store (repeats of stored alerts not counted)")
    incidents: list[str] = Field(default_factory=list, description="incidents the stored alerts joined")
    results: list[ScoredFlow]


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Verdict
    attack_class: str | None = Field(None, max_length=200, description="needed for confirmed")
    note: str = Field("", max_length=4000)
    analyst: str = Field(min_length=1, max_length=200)

    _text = field_validator("attack_class", "note", "analyst")(_unicode)


class FeedbackOut(BaseModel):
    id: int
    alert_id: int
    verdict: Verdict
    attack_class: str | None
    note: str
    analyst: str
    created: str


class AlertOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: int
    created: str
    model_version: str
    status: Status
    time: str | None
    src: str | None
    dst: str | None
    spt: int | None
    dpt: int | None
    proto: str | None
    app: str | None
    label: str | None
    row: int | None
    score: float
    threshold: float
    class_: str | None = Field(None, alias="class")
    confirmed_class: str | None
    incident_id: str | None = None
    severity: str | None = None
    score_percentile: float | None = None
    threshold_multiple: float | None = None
    explanation: str | None = None
    top_features: list[TopFeature]
    flow: dict[str, Any]
    feedback: list[FeedbackOut] | None = None


class AlertPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[AlertOut]


class FeedbackAnswer(BaseModel):
    feedback: FeedbackOut
    alert: AlertOut


Severity = Literal["low", "medium", "high", "critical"]
IncidentKind = Literal["flood", "scan", "pair", "host"]


class IncidentOut(BaseModel):
    id: str
    model_version: str
    kind: IncidentKind
    key: str
    severity: Severity
    status: Status
    first_seen: str | None
    last_seen: str | None
    alerts: int
    peak_score: float | None
    classes: list[str]
    verdict: Verdict | None
    attack_class: str | None
    note: str | None
    analyst: str | None
    reviewed: str | None
    summary: dict[str, Any] = Field(
        description="sources, destinations, ports, protocols (counts and top values), bytes, scores, "
        "the feature heading most explanations"
    )


class IncidentDetail(IncidentOut):
    alert_items: list[AlertOut] = Field(description="the incident's alerts, highest scores first")
    alert_total: int


class IncidentPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[IncidentOut]


class IncidentVerdictAnswer(BaseModel):
    incident: IncidentOut
    alerts: int = Field(description="alerts that took the verdict")


class SummaryOut(BaseModel):
    total: int
    by_status: dict[str, int]
    by_class: dict[str, int]
    by_model_version: dict[str, int]


class ModelOut(BaseModel):
    version: str
    model: str
    created: str
    registered: str
    digest: str
    source: str
    note: str
    threshold: float | None
    active: bool
    metrics: dict[str, Any]


class ModelsOut(BaseModel):
    active: str | None
    models: list[ModelOut]


class DriftOut(BaseModel):
    """The active model's drift and alert threshold as the service has measured them."""

    model_version: str
    threshold: float | None = Field(description="the threshold the next request is scored with")
    bundle_threshold: float | None = Field(description="the bundle's own threshold")
    threshold_method: str = Field(description="bundle (fixed), spot or dspot (adapting)")
    drift: dict[str, Any] | None = Field(
        description="windows judged, drift events, the last window, the features that moved most; "
        "null when the bundle keeps no reference or drift windows are off"
    )


class HealthOut(BaseModel):
    status: Literal["ok"]
    version: str
    model_version: str | None
    auth_required: bool
