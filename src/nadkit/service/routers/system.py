"""Health and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from nadkit.service.routers.common import service_of
from nadkit.service.schemas import HealthOut
from nadkit.version import __version__

router = APIRouter(tags=["system"])


@router.get(
    "/health", response_model=HealthOut, summary="Liveness, the active model, whether a token is needed"
)
def health(request: Request) -> HealthOut:
    service = service_of(request)
    return HealthOut(
        status="ok",
        version=__version__,
        model_version=service.models.version,
        auth_required=service.settings.auth_required,
    )


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    summary="Prometheus metrics: requests, flows scored, alerts stored, latency",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def metrics(request: Request) -> PlainTextResponse:
    text = service_of(request).metrics.render()
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")
