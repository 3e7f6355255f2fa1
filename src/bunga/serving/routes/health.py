"""Probes, model information and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from bunga.garden.inbox import Inbox, InboxUnavailable
from bunga.serving.deps import MetricsDep, StoreDep
from bunga.serving.schemas import Health, InboxUsage, ModelInfo, ModelsResponse
from bunga.serving.store import Slot

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=Health, summary="Alive")
async def health() -> Health:
    """The process is up (says nothing about models)."""
    return Health(status="ok")


@router.get(
    "/ready",
    response_model=Health,
    summary="Ready to predict",
    responses={503: {"model": Health, "description": "No model loaded"}},
)
async def ready(store: StoreDep) -> Response:
    """200 once models are loaded and passed their check, 503 before. ``errors`` names every kind whose
    last load or reload failed, and why, also while an older version still serves it."""
    versions = {kind: slot.version for kind, slot in store.champions.items()}
    if not store.ready():
        body = Health(status="not ready", models={k: f"error: {v}" for k, v in store.errors.items()})
        return JSONResponse(body.model_dump(), status_code=503)
    errors = {k: f"error: {v}" for k, v in store.errors.items() if k not in versions}
    stale = {k: s.stale_since for k, s in store.champions.items() if s.stale_since}
    body = Health(status="ready", models={**errors, **versions}, stale=stale, errors=dict(store.errors))
    return JSONResponse(body.model_dump())


def _info(slot: Slot, challenger: Slot | None) -> ModelInfo:
    card = slot.card
    return ModelInfo(
        kind=card.kind,
        name=card.name,
        version=slot.version,
        alias=card.alias,
        run_id=card.run_id,
        trained_at=card.trained_at,
        metrics=card.metrics,
        classes=card.classes,
        dataset_digest=card.dataset_digest,
        family=card.family,
        challenger_version=challenger.version if challenger else None,
        stale=slot.stale_since is not None,
        stale_since=slot.stale_since,
        warnings=list(slot.warnings),
    )


@router.get("/model", response_model=ModelsResponse, summary="What is being served")
async def model(request: Request, store: StoreDep) -> ModelsResponse:
    """Per kind: name, version, alias, run id, training time, metrics, classes, dataset digest; and
    how full the feedback inbox is."""
    inbox: Inbox = request.app.state.inbox
    usage = await _usage(inbox)
    return ModelsResponse(
        models={k: _info(s, store.challengers.get(k)) for k, s in store.champions.items()},
        challenger_percent=store.challenger_percent,
        errors=dict(store.errors),
        inbox=None
        if usage is None
        else InboxUsage(bytes=usage[0], files=usage[1], max_bytes=inbox.max_bytes, max_files=inbox.max_files),
    )


async def _usage(inbox: Inbox) -> tuple[int, int] | None:
    """The inbox's usage (a file lock and read, or a query: off the event loop), or None while its
    database does not answer (the probes must not fail)."""
    try:
        return await run_in_threadpool(inbox.usage)
    except InboxUnavailable:
        return None


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request, store: StoreDep, m: MetricsDep) -> Response:
    """Requests, latency histograms, predictions per class, model versions in use, inbox usage."""
    inbox: Inbox = request.app.state.inbox
    usage = await _usage(inbox)
    if usage is not None:
        m.inbox_bytes.set(usage[0])
        m.inbox_files.set(usage[1])
    m.inbox_limit_bytes.set(inbox.max_bytes)
    m.model_version.clear()
    for alias, slots in (("champion", store.champions), ("challenger", store.challengers)):
        for kind, slot in slots.items():
            m.model_version.labels(kind, alias, slot.card.name, slot.version).set(1)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
