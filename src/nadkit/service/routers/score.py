"""Scoring flows: ``POST /v1/score``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from nadkit.service.routers.common import errors, service_of
from nadkit.service.schemas import ScoreOut

router = APIRouter(tags=["scoring"])

BODY = {
    "requestBody": {
        "required": True,
        "description": (
            "Flows with canonical column names, as a JSON array of objects, CSV with a header line, "
            "or an Arrow IPC stream or file. The request is scored as one table of its own."
        ),
        "content": {
            "application/json": {
                "schema": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/FlowIn"},
                    "maxItems": 200000,
                }
            },
            "text/csv": {"schema": {"type": "string"}},
            "application/vnd.apache.arrow.stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


@router.post(
    "/v1/score",
    response_model=ScoreOut,
    summary="Score flows with the active model and store the alerts",
    description=(
        "Every flow gets a score; flows at or above the model's threshold are alerts, stored with "
        "their flow, explanation and model version (an alert already stored for the same flow and "
        "model version is not stored twice). Each request is scored as its own table: features "
        "that look across flows (counters, segments, windows) see only the flows of that request."
    ),
    responses=errors(400, 413, 415, 422, 503),
    openapi_extra=BODY,
)
async def score(
    request: Request,
    store: Annotated[bool, Query(description="store the alerts")] = True,
    alerts_only: Annotated[bool, Query(description="answer with the alerts only")] = False,
) -> JSONResponse:
    service = service_of(request)
    body = await request.body()
    answer = await run_in_threadpool(
        service.score_body, body, request.headers.get("content-type"), store=store, alerts_only=alerts_only
    )
    return JSONResponse(answer)
