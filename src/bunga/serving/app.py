"""The FastAPI application: models loaded once at start-up (lifespan), routers, limits, errors."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from bunga import __version__
from bunga.catalog import load_catalog
from bunga.config import Settings, get_settings
from bunga.files import STALE_TEMP_S, remove_stale_temps
from bunga.garden.inbox import open_inbox
from bunga.monitor.log import PredictionLog
from bunga.serving.batching import PhotoBatcher
from bunga.serving.limits import ClientAddress, buckets
from bunga.serving.live_catalog import LiveCatalog, follow
from bunga.serving.metrics import Metrics
from bunga.serving.middleware import Guard
from bunga.serving.observations import ObservationBook
from bunga.serving.registry import FolderSource, ModelSource, RegistrySource
from bunga.serving.routes import admin, catalog, feedback, health, observation, ondevice, page, phone, predict, review
from bunga.serving.schemas import PredictRequest, Problem
from bunga.serving.store import ModelStore

log = logging.getLogger("bunga.serving")


def model_source(settings: Settings) -> ModelSource:
    """An exported folder when BUNGA_MODEL_DIR is set, otherwise the MLflow registry."""
    if settings.model_dir is not None:
        return FolderSource(settings.model_dir)
    names = {"measurements": settings.model_measurements, "photos": settings.model_photos}
    return RegistrySource(settings.mlflow_tracking_uri, names, settings.cache_dir, settings.artifact_dir)


async def _poll(store: ModelStore, interval: float) -> None:
    """Re-resolve the aliases every ``interval`` seconds. While a kind failed to load or serves a stale
    bundle (the registry is unreachable), retry with backoff from 1 s up to 8 intervals (60 s when
    polling is off); with polling off, stop once everything is loaded and fresh."""
    failures = 0
    while True:
        troubled = store.troubled()
        if interval <= 0 and not troubled:
            return
        cap = 8 * interval if interval > 0 else 60.0
        await asyncio.sleep(min(2.0**failures, cap) if troubled else interval)
        try:
            await run_in_threadpool(store.reload)
        except Exception:  # polling must never die
            log.exception("registry poll failed")
        failures = failures + 1 if store.troubled() else 0


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load the models once; optionally poll the registry for alias changes."""
    store: ModelStore = app.state.store
    settings: Settings = app.state.settings
    swept = remove_stale_temps(settings.inbox_dir, older_than_s=STALE_TEMP_S)
    if swept:
        log.info("removed %d temp files left in %s by an interrupted upload", swept, settings.inbox_dir)
    for result in await run_in_threadpool(store.reload):
        log.info("%s: %s %s", result.kind, result.status, result.new_version or result.error or "")
    # Everything loaded so far lives as long as the process: keep it out of the cyclic GC's scans,
    # whose full collections otherwise show up as tail-latency spikes.
    gc.collect()
    gc.freeze()
    interval = settings.reload_interval_s
    task = asyncio.create_task(_poll(store, interval)) if interval > 0 or store.troubled() else None
    prediction_log: PredictionLog | None = app.state.prediction_log
    if prediction_log is not None:
        prediction_log.start()
    catalog_task = asyncio.create_task(follow(app.state.catalog, settings.catalog_refresh_s))
    yield
    catalog_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await catalog_task
    await app.state.batcher.close()
    if prediction_log is not None:
        await run_in_threadpool(prediction_log.close)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", [])), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()[:20]
    ]
    return JSONResponse({"detail": errors}, status_code=422)


async def _server_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error on %s %s: %s", request.method, request.url.path, type(exc).__name__)
    return JSONResponse({"detail": "internal error; it has been logged"}, status_code=500)


def document_bodies(app: FastAPI, models: tuple[type[BaseModel], ...]) -> None:
    """Add the schemas of request bodies that endpoints parse themselves (``openapi_extra`` refers to
    them by name) to the app's OpenAPI components."""
    generate = app.openapi
    extra: dict[str, Any] = {}
    for model in models:
        found = model.model_json_schema(ref_template="#/components/schemas/{model}")
        extra.update(found.pop("$defs", {}))
        extra[model.__name__] = found

    def openapi() -> dict[str, Any]:
        schema = generate()
        schema.setdefault("components", {}).setdefault("schemas", {}).update(extra)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: Settings | None = None, store: ModelStore | None = None) -> FastAPI:
    """Build the app; models are loaded when it starts (lifespan)."""
    settings = settings or get_settings()
    app = FastAPIOffline(
        title="bunga",
        version=__version__,
        description="Flower species for Kebun Raya ITERA: from measurements or photos, with species "
        "information in Bahasa Indonesia and feedback that becomes new data.",
        lifespan=lifespan,
        responses={
            status: {"model": Problem, "description": text}
            for status, text in (
                (400, "Malformed request"),
                (408, "The request body arrived too slowly"),
                (413, "Too large"),
                (415, "Unsupported media type"),
                (422, "Invalid request"),
                (503, "No model loaded, or too busy"),
                (504, "Took too long"),
            )
        },
    )
    metrics = Metrics()
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.prediction_log = (
        PredictionLog(
            settings.monitor_db, settings.monitor_queue, settings.monitor_retention_days, metrics.log_dropped.inc
        )
        if settings.monitor_log
        else None
    )
    app.state.inbox = open_inbox(
        settings.inbox_dir,
        settings.inbox_db,
        settings.inbox_max_bytes,
        settings.inbox_max_files,
        settings.inbox_db_pool,
        settings.inbox_db_wait_s,
    )
    app.state.catalog = LiveCatalog(load_catalog(settings.catalog_file), app.state.inbox)
    app.state.client_address = ClientAddress(settings.trusted_proxies)
    app.state.feedback_buckets = buckets(settings.feedback_rate_per_min, settings.feedback_burst)
    app.state.predict_buckets = buckets(settings.predict_rate_per_min, settings.predict_burst)
    app.state.phone_buckets = buckets(settings.phone_rate_per_min, settings.phone_burst)
    app.state.signin_failures = buckets(settings.signin_failures_per_min, settings.signin_failures_burst)
    app.state.download_buckets = (
        buckets(settings.download_refill_bytes_per_hour / 60, settings.download_budget_bytes)
        if settings.download_budget_bytes
        else None
    )
    app.state.batcher = PhotoBatcher(settings.photo_batch_max, settings.photo_batch_wait_ms / 1000, metrics.batched)
    app.state.store = store or ModelStore(model_source(settings), list(settings.serve_kinds))
    app.state.served_versions = phone.ServedVersions(
        app.state.store, settings.monitor_db if settings.monitor_log else None
    )
    app.state.observations = ObservationBook(settings.monitor_db if settings.monitor_log else None)
    app.router.routes[:0] = predict.SERVED_DIRECTLY  # matched first, before its documented twin
    for module in (predict, observation, catalog, feedback, health, admin, review, ondevice, phone, page):
        app.include_router(module.router)
    document_bodies(app, (PredictRequest,))
    app.mount("/static", StaticFiles(directory=page.STATIC), name="static")
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _server_error)
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "Authorization"],
        )
    app.add_middleware(
        Guard,
        metrics=metrics,
        max_body=settings.max_body_bytes,
        max_upload=settings.max_upload_bytes,
        max_concurrency=settings.max_concurrency,
        timeout=settings.request_timeout_s,
        max_downloads=settings.download_max_concurrency,
        download_floor=(settings.download_min_rate, settings.download_rate_window_s),
    )
    return app
