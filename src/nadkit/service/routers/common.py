"""What the routers share: the service of the running application and the documented errors."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from nadkit.service.schemas import ErrorOut
from nadkit.service.state import Service


def service_of(request: Request) -> Service:
    """The :class:`Service` of the application answering ``request``."""
    service: Service = request.app.state.service
    return service


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error answers (each ``{"error": ...}``)."""
    descriptions = {
        400: "the body is not valid data of its Content-Type",
        404: "not found",
        409: "the request cannot be done in the current state",
        413: "the body is too large, or holds too many flows",
        415: "unsupported Content-Type",
        422: "invalid input (the error names the row and field)",
        503: "no model is active",
    }
    return {status: {"model": ErrorOut, "description": descriptions[status]} for status in statuses}
