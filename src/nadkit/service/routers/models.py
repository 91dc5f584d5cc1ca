"""The model registry: list versions, activate one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool

from nadkit.lifecycle.registry import RegistryError
from nadkit.service.routers.common import errors, service_of
from nadkit.service.schemas import ModelOut, ModelsOut

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelsOut, summary="Registered model versions and the active one")
def list_models(request: Request) -> ModelsOut:
    registry = service_of(request).registry
    versions = registry.list()
    return ModelsOut(
        active=registry.active_version(), models=[ModelOut.model_validate(v.to_dict()) for v in versions]
    )


@router.post(
    "/{version}/activate",
    response_model=ModelOut,
    summary="Make a registered version the active model",
    description="The bundle is loaded and checked first; scoring switches to it at once.",
    responses=errors(404, 409, 422),
)
async def activate(
    request: Request, version: Annotated[str, Path(pattern=r"^v[1-9][0-9]{0,8}$", description="e.g. v2")]
) -> ModelOut:
    service = service_of(request)
    try:
        service.registry.path(version)
    except RegistryError as error:
        raise HTTPException(404, str(error)) from None
    activated = await run_in_threadpool(service.registry.activate, version, by="api")
    await run_in_threadpool(service.models.current)
    return ModelOut.model_validate(activated.to_dict())
