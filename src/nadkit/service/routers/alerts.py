"""Alerts and analyst feedback."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response

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
    dst: Annotated[str | None, Query(min_length=1, max_length=200, description="destination address")] = None,
    port: Annotated[int | None, Query(ge=0, le=65535, description="source or destination port")] = None,
    incident: Annotated[str | None, Query(min_length=1, max_length=200, description="incident id")] = None,
    model_version: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    order: AlertOrder = "time_desc",
    limit: Annotated[int, Query(ge=1, le=5000)] = 50,
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
        "dst": dst,
        "port": port,
        "incident_id": incident,
        "model_version": model_version,
    }
    items = store.list_alerts(**filters, limit=limit, offset=offset, order=order)  # type: ignore[arg-type]
    total = store.count_alerts(**filters)  # type: ignore[arg-type]
    return AlertPage(
        total=total, limit=limit, offset=offset, items=[AlertOut.model_validate(item) for item in items]
    )


@router.get(
    "/export",
    summary="The alerts matching the filters as CSV or JSON (up to 100,000)",
    responses={**errors(422), 200: {"content": {"text/csv": {}, "application/json": {}}}},
)
def export_alerts(
    request: Request,
    format: Annotated[Literal["csv", "json"], Query(description="csv or json")] = "csv",
    status: Annotated[list[Status] | None, Query()] = None,
    attack_class: Annotated[str | None, Query(alias="class", min_length=1, max_length=200)] = None,
    since: Annotated[datetime | None, Query()] = None,
    until: Annotated[datetime | None, Query()] = None,
    src: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    dst: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    port: Annotated[int | None, Query(ge=0, le=65535)] = None,
    incident: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    min_score: Annotated[float | None, Query(ge=-1e300, le=1e300)] = None,
    model_version: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
) -> Response:
    items = service_of(request).store.list_alerts(
        status=status,  # type: ignore[arg-type]
        attack_class=attack_class,
        min_score=min_score,
        model_version=model_version,
        since=since,
        until=until,
        src=src,
        dst=dst,
        port=port,
        incident_id=incident,
        limit=EXPORT_LIMIT,
        order="time_asc",
    )
    if format == "json":
        return Response(json.dumps(items), media_type="application/json", headers=_attachment("alerts.json"))
    rows = [
        {
            **{k: v for k, v in item.items() if k not in ("top_features", "flow")},
            "top_features": "; ".join(
                f"{entry.get('feature')}={entry.get('value')}" for entry in item["top_features"]
            ),
        }
        for item in items
    ]
    return Response(csv_text(rows), media_type="text/csv", headers=_attachment("alerts.csv"))


#: the most rows one export answers with
EXPORT_LIMIT = 100_000


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


def csv_text(rows: list[dict[str, Any]]) -> str:
    """Rows of plain values as CSV text with a header (empty text for no rows)."""
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


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
