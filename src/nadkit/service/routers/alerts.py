"""Alerts and analyst feedback."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request

from nadkit.service.routers.common import errors, service_of
from nadkit.service.schemas import (
    AlertOrder,
    AlertOut,
    AlertPage,
    FeedbackAnswer,
    FeedbackIn,
    Status,
    SummaryOut,
)

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])

AlertId = Annotated[int, Path(ge=1, le=2**62, description="alert id")]


@router.get("", response_model=AlertPage, summary="Alerts, filtered and paginated", responses=errors(422))
def list_alerts(
    request: Request,
    status: Annotated[list[Status] | None, Query(description="review status (repeat for several)")] = None,
    attack_class: Annotated[
        str | None,
        Query(alias="class", min_length=1, max_length=200, description="predicted or confirmed class"),
    ] = None,
    min_score: Annotated[float | None, Query(ge=-1e300, le=1e300)] = None,
    since: Annotated[datetime | None, Query(description="flow time from (inclusive)")] = None,
    until: Annotated[datetime | None, Query(description="flow time until (exclusive)")] = None,
    src: Annotated[str | None, Query(min_length=1, max_length=200, description="source address")] = None,
    model_version: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    order: AlertOrder = "time_desc",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> AlertPage:
    store = service_of(request).store
    filters = {
        "status": status,
        "attack_class": attack_class,
        "min_score": min_score,
        "since": since,
        "until": until,
        "src": src,
        "model_version": model_version,
    }
    items = store.list_alerts(**filters, limit=limit, offset=offset, order=order)  # type: ignore[arg-type]
    total = store.count_alerts(**filters)  # type: ignore[arg-type]
    return AlertPage(
        total=total, limit=limit, offset=offset, items=[AlertOut.model_validate(item) for item in items]
    )


@router.get("/summary", response_model=SummaryOut, summary="Alert counts by status, class and model version")
def summary(request: Request) -> SummaryOut:
    return SummaryOut.model_validate(service_of(request).store.summary())


@router.get(
    "/{alert_id}",
    response_model=AlertOut,
    summary="One alert, its flow and its feedback",
    responses=errors(404, 422),
)
def get_alert(request: Request, alert_id: AlertId) -> AlertOut:
    alert = service_of(request).store.get_alert(alert_id)
    if alert is None:
        raise HTTPException(404, f"no alert with id {alert_id}")
    return AlertOut.model_validate(alert)


@router.post(
    "/{alert_id}/feedback",
    response_model=FeedbackAnswer,
    status_code=201,
    summary="Record an analyst's verdict on an alert",
    description=(
        "Verdicts: confirmed (an attack; attack_class names it), false_positive, known_benign. "
        "Earlier verdicts are kept; the alert's status follows the latest."
    ),
    responses=errors(400, 404, 422),
)
def add_feedback(request: Request, alert_id: AlertId, feedback: FeedbackIn) -> FeedbackAnswer:
    service = service_of(request)
    store = service.store
    identifier = store.add_feedback(
        alert_id,
        feedback.verdict,
        attack_class=feedback.attack_class,
        note=feedback.note,
        analyst=feedback.analyst,
    )
    service.metrics.feedback(feedback.verdict)
    alert = store.get_alert(alert_id)
    assert alert is not None
    given = next(item for item in alert["feedback"] if item["id"] == identifier)
    return FeedbackAnswer.model_validate({"feedback": given, "alert": alert})
