"""Incidents: alerts grouped by attack shape, listed most severe first, one verdict for all of an
incident's alerts, and exports of what the filters select."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi import Path as PathParameter

from nadkit.alerts.incident_book import IncidentNotFoundError
from nadkit.service.routers.alerts import EXPORT_LIMIT, _attachment, csv_text
from nadkit.service.routers.common import errors, service_of
from nadkit.service.schemas import (
    FeedbackIn,
    IncidentDetail,
    IncidentKind,
    IncidentOut,
    IncidentPage,
    IncidentVerdictAnswer,
    Severity,
    Status,
)

router = APIRouter(prefix="/v1/incidents", tags=["incidents"])

IncidentId = Annotated[str, PathParameter(min_length=1, max_length=200, description="incident id")]


StatusQuery = Annotated[list[Status] | None, Query(description="review status (repeat for several)")]
SeverityQuery = Annotated[list[Severity] | None, Query(description="severity (repeat for several)")]
KindQuery = Annotated[list[IncidentKind] | None, Query(description="flood, scan, pair or host")]
ClassQuery = Annotated[str | None, Query(alias="class", min_length=1, max_length=200)]
AddressQuery = Annotated[str | None, Query(min_length=1, max_length=200)]
PortQuery = Annotated[int | None, Query(ge=0, le=65535, description="source or destination port")]
TimeQuery = Annotated[datetime | None, Query()]
VersionQuery = Annotated[str | None, Query(min_length=1, max_length=200)]


def incident_filters(
    status: StatusQuery = None,
    severity: SeverityQuery = None,
    kind: KindQuery = None,
    attack_class: ClassQuery = None,
    src: AddressQuery = None,
    dst: AddressQuery = None,
    port: PortQuery = None,
    since: TimeQuery = None,
    until: TimeQuery = None,
    model_version: VersionQuery = None,
) -> dict[str, object]:
    """The incident filters of a request (the same for the list and the export)."""
    return {
        "status": status,
        "severity": severity,
        "kind": kind,
        "attack_class": attack_class,
        "src": src,
        "dst": dst,
        "port": port,
        "since": since,
        "until": until,
        "model_version": model_version,
    }


Filters = Annotated[dict[str, object], Depends(incident_filters)]


@router.get("", response_model=IncidentPage, summary="Incidents, most severe first", responses=errors(422))
def list_incidents(
    request: Request,
    filters: Filters,
    limit: Annotated[int, Query(ge=1, le=5000)] = 50,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> IncidentPage:
    book = service_of(request).store.incidents
    items = book.list(limit=limit, offset=offset, **filters)
    return IncidentPage(
        total=book.count(**filters),
        limit=limit,
        offset=offset,
        items=[IncidentOut.model_validate(item) for item in items],
    )


@router.get(
    "/export",
    summary="The incidents matching the filters as CSV or JSON (up to 100,000)",
    responses={**errors(422), 200: {"content": {"text/csv": {}, "application/json": {}}}},
)
def export_incidents(
    request: Request,
    filters: Filters,
    format: Annotated[Literal["csv", "json"], Query(description="csv or json")] = "csv",
) -> Response:
    book = service_of(request).store.incidents
    items = book.list(limit=EXPORT_LIMIT, **filters)
    if format == "json":
        return Response(
            json.dumps(items), media_type="application/json", headers=_attachment("incidents.json")
        )
    return Response(
        csv_text(book.frame(items).to_dicts()), media_type="text/csv", headers=_attachment("incidents.csv")
    )


@router.get(
    "/{incident_id}",
    response_model=IncidentDetail,
    summary="One incident with its alerts (highest scores first)",
    responses=errors(404, 422),
)
def get_incident(
    request: Request, incident_id: IncidentId, alerts: Annotated[int, Query(ge=0, le=5000)] = 100
) -> IncidentDetail:
    service = service_of(request)
    try:
        incident = service.store.incidents.get(incident_id, alerts=alerts)
    except IncidentNotFoundError:
        raise HTTPException(404, f"no incident with id {incident_id}") from None
    incident["alert_total"] = service.store.count_alerts(incident_id=incident_id)
    return IncidentDetail.model_validate(incident)


@router.post(
    "/{incident_id}/feedback",
    response_model=IncidentVerdictAnswer,
    status_code=201,
    summary="One verdict for an incident and all its alerts",
    description=(
        "The incident records the verdict once, with the analyst and the note; each of its alerts takes "
        "it as its status and gets its own feedback entry, so retraining uses them."
    ),
    responses=errors(400, 404, 422),
)
def incident_feedback(
    request: Request, incident_id: IncidentId, feedback: FeedbackIn
) -> IncidentVerdictAnswer:
    service = service_of(request)
    book = service.store.incidents
    try:
        count = book.give_verdict(
            incident_id,
            feedback.verdict,
            attack_class=feedback.attack_class,
            note=feedback.note,
            analyst=feedback.analyst,
        )
    except IncidentNotFoundError:
        raise HTTPException(404, f"no incident with id {incident_id}") from None
    service.metrics.feedback(feedback.verdict)
    incident = book.get(incident_id, alerts=0)
    return IncidentVerdictAnswer(incident=IncidentOut.model_validate(incident), alerts=count)
