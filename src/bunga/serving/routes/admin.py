"""Admin endpoints (off unless BUNGA_ADMIN_TOKEN is set): reload models, canary traffic."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from bunga.errors import BungaError
from bunga.serving.deps import AdminDep, StoreDep
from bunga.serving.routes.health import model
from bunga.serving.schemas import ModelsResponse, ReloadResponse, TrafficRequest

router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[AdminDep],
    responses={
        401: {"description": "No token"},
        403: {"description": "Wrong token"},
        429: {"description": "Too many wrong tokens from this address (see Retry-After)"},
        404: {"description": "Admin disabled"},
    },
)


@router.post("/reload", response_model=ReloadResponse, summary="Re-resolve aliases and swap")
async def reload(store: StoreDep) -> ReloadResponse:
    """Load what the aliases point at now; swap each kind only after its new model passed a smoke
    prediction. A failed load leaves the old version serving and is reported."""
    return ReloadResponse(results=await run_in_threadpool(store.reload))


@router.post("/traffic", response_model=ModelsResponse, summary="Canary share for the challenger")
async def traffic(request: Request, body: TrafficRequest, store: StoreDep) -> ModelsResponse:
    """Send a percentage of requests to the ``challenger`` alias; responses name the version."""
    try:
        await run_in_threadpool(store.set_traffic, body.challenger_percent)
    except BungaError as err:
        raise HTTPException(409, str(err)) from None
    return await model(request, store)
