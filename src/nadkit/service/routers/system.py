"""Health and metrics."""

from __future__ import annotations

import math

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from nadkit.features.labels import feature_label
from nadkit.service.routers.common import service_of
from nadkit.service.schemas import DriftOut, HealthOut
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


@router.get(
    "/v1/drift",
    response_model=DriftOut,
    summary="The active model's drift from its normal reference and its current threshold",
    description="Windows of scored flows compared with the bundle's normal hold-out (population "
    "stability index per feature and for the score, and a KS test of the scores); a window past the "
    "set level is a drift event. The threshold moves with the `spot`/`dspot` setting.",
)
def drift(request: Request) -> DriftOut:
    service = service_of(request)
    version, bundle = service.models.current()
    learning = service.learning(version, bundle)
    summary = learning.summary()
    if summary is not None:
        # the features in words, as the alerts' explanations name them
        for item in summary["most_moved"]:
            item["label"] = feature_label(item["feature"])
        if summary["last"] is not None:
            for item in summary["last"]["features"]:
                item["label"] = feature_label(item["feature"])
    return DriftOut(
        model_version=version,
        threshold=_finite(learning.threshold),
        bundle_threshold=_finite(learning.fixed),
        threshold_method=learning.method,
        drift=summary,
    )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
