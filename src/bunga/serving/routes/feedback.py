"""Visitor feedback: a confirmed or corrected label becomes new raw data for `bunga merge`."""

from __future__ import annotations

import re

from fastapi import APIRouter, HTTPException, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from bunga import inbox
from bunga.config import Settings
from bunga.serving.photos import decode_uploads, multipart_openapi, read_form
from bunga.serving.schemas import FeedbackResponse, MeasurementFeedback

router = APIRouter(tags=["feedback"])
_LABEL = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,99}$")

FEEDBACK_BODY = multipart_openapi(
    {
        "file": {"type": "string", "format": "binary", "description": "The photo"},
        "label": {"type": "string", "description": "Class id, or empty for 'I don't know'"},
        "predicted": {"type": "string", "description": "What the model said (optional)"},
    },
    {"application/json": {"schema": MeasurementFeedback.model_json_schema()}},
)


def _label(raw: str | None, known: set[str]) -> str | None:
    label = (raw or "").strip().lower().replace(" ", "_")
    if not label:
        return None
    if not _LABEL.match(label) or (known and label not in known):
        shown = ", ".join(sorted(known)[:30])
        raise HTTPException(422, f"unknown label {label[:100]!r}; use a class id ({shown}) or leave it empty")
    return label


def _version(request: Request, kind: str) -> str | None:
    slot = request.app.state.store.champions.get(kind)
    return slot.version if slot else None


@router.post(
    "/feedback",
    response_model=FeedbackResponse,
    status_code=201,
    openapi_extra=FEEDBACK_BODY,
    summary="Send a photo or a measurement with its label",
    responses={415: {"description": "Neither multipart nor JSON"}},
)
async def feedback(request: Request) -> FeedbackResponse:
    """Stores the photo (content-hash name, never the client's file name) or the measurement, with a
    metadata record, atomically in the collection inbox. Nothing is stored unless sent here."""
    settings: Settings = request.app.state.settings
    content_type = request.headers.get("content-type", "")
    store = request.app.state.store
    if content_type.startswith("application/json"):
        try:
            record = MeasurementFeedback.model_validate_json(await request.body())
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            raise HTTPException(422, f"{where}: {first['msg']}") from None
        slot = store.champions.get("measurements")
        known = set(slot.predictor.classes) if slot else set(settings.tabular_classes)
        label = _label(record.label, known)
        if label is None:
            raise HTTPException(422, "label: a measurement needs the species it is")
        specimen = await run_in_threadpool(
            inbox.store_measurement,
            settings.inbox_dir,
            record.as_row(),
            label,
            predicted=record.predicted,
            model_version=_version(request, "measurements"),
        )
        request.app.state.metrics.feedback.labels("measurements").inc()
        return FeedbackResponse(stored=True, kind="measurements", id=specimen, label=label)
    form = await read_form(request, 1)
    try:
        (upload,) = await decode_uploads(form, settings.serve_max_pixels, settings.max_upload_bytes)
        raw_label, predicted = form.get("label"), form.get("predicted")
    finally:
        await form.close()
    slot = store.champions.get("photos")
    known = set(slot.predictor.classes) | set(request.app.state.catalog.entries) if slot else set()
    label = _label(raw_label if isinstance(raw_label, str) else None, known)
    predicted_text = predicted[:100] if isinstance(predicted, str) else None
    sha = await run_in_threadpool(
        inbox.store_photo,
        settings.inbox_dir,
        upload.data,
        upload.info.suffix,
        label,
        predicted=predicted_text,
        model_version=_version(request, "photos"),
    )
    request.app.state.metrics.feedback.labels("photos").inc()
    return FeedbackResponse(stored=True, kind="photos", id=sha, label=label)
